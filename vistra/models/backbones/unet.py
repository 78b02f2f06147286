"""``UNet`` backbone (`U-Net <https://arxiv.org/abs/1505.04597>`_), MMSegmentation 1.x.

Keys: ``encoder.{i}`` is a Sequential of an optional ``MaxPool2d`` (then the conv block is
``encoder.{i}.1``) and a ``BasicConvBlock`` (``convs.{j}.conv``/``.bn``); ``decoder.{i}``
is an ``UpConvBlock`` with ``conv_block.convs.{j}`` and ``upsample`` -- an ``InterpConv``
(``upsample.interp_upsample.1.conv``), a ``DeconvModule``
(``upsample.deconv_upsamping.0``/``.1``, MMSegmentation's spelling) or a 1x1 ConvModule
when the stage does not downsample.

Order: blocks, upsample modules, backbone.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from vistra.models.base import BaseModule
from vistra.models.layers import ConvModule, build_activation_layer, build_norm_layer
from vistra.models.utils.seg_utils import Upsample
from vistra.registry import MODELS

_DEFAULT_INIT = [
    dict(type="Kaiming", layer="Conv2d"),
    dict(type="Constant", val=1, layer=["_BatchNorm", "GroupNorm"]),
]


def _run(module: nn.Module, x: torch.Tensor, with_cp: bool) -> torch.Tensor:
    """``module(x)``, recomputed in backward instead of stored when ``with_cp``."""
    if with_cp and x.requires_grad:
        return checkpoint(module, x, use_reentrant=False)
    return module(x)


def _no_extras(dcn: dict | None, plugins: list | None, where: str) -> None:
    if dcn is not None or plugins is not None:
        raise NotImplementedError(
            f"{where}: dcn and plugins are not implemented (as in MMSegmentation); remove them"
        )


# ----------------------------------------------------------------------------- blocks
class BasicConvBlock(nn.Module):
    """``num_convs`` 3x3 ConvModules; only the first may stride, the others use ``dilation``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_convs: int = 2,
        stride: int = 1,
        dilation: int = 1,
        with_cp: bool = False,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = dict(type="BN"),  # noqa: B006 (never mutated)
        act_cfg: dict | None = dict(type="ReLU"),  # noqa: B006 (never mutated)
        dcn: dict | None = None,
        plugins: list | None = None,
    ) -> None:
        super().__init__()
        _no_extras(dcn, plugins, "BasicConvBlock")
        self.with_cp = with_cp
        self.convs = nn.Sequential(
            *(
                ConvModule(
                    in_channels if i == 0 else out_channels,
                    out_channels,
                    3,
                    stride=stride if i == 0 else 1,
                    dilation=1 if i == 0 else dilation,
                    padding=1 if i == 0 else dilation,
                    conv_cfg=conv_cfg,
                    norm_cfg=norm_cfg,
                    act_cfg=act_cfg,
                )
                for i in range(num_convs)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _run(self.convs, x, self.with_cp)


class UpConvBlock(nn.Module):
    """Upsample the deeper map to the skip's channels, concatenate ``[skip, up]``, fuse
    with ``conv_block``. ``upsample_cfg=None`` (a stage that did not downsample) uses a 1x1
    ConvModule instead of an upsampler."""

    def __init__(
        self,
        conv_block: type[nn.Module],
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        num_convs: int = 2,
        stride: int = 1,
        dilation: int = 1,
        with_cp: bool = False,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = dict(type="BN"),  # noqa: B006 (never mutated)
        act_cfg: dict | None = dict(type="ReLU"),  # noqa: B006 (never mutated)
        upsample_cfg: dict | None = dict(type="InterpConv"),  # noqa: B006 (never mutated)
        dcn: dict | None = None,
        plugins: list | None = None,
    ) -> None:
        super().__init__()
        _no_extras(dcn, plugins, "UpConvBlock")
        self.conv_block = conv_block(
            in_channels=2 * skip_channels, out_channels=out_channels, num_convs=num_convs,
            stride=stride, dilation=dilation, with_cp=with_cp, conv_cfg=conv_cfg,
            norm_cfg=norm_cfg, act_cfg=act_cfg, dcn=None, plugins=None,
        )  # fmt: skip
        if upsample_cfg is not None:
            self.upsample = MODELS.build(
                upsample_cfg,
                default_args=dict(
                    in_channels=in_channels,
                    out_channels=skip_channels,
                    with_cp=with_cp,
                    norm_cfg=norm_cfg,
                    act_cfg=act_cfg,
                ),
                key_path="backbone.upsample_cfg",
            )
        else:
            self.upsample = ConvModule(
                in_channels, skip_channels, 1, conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg
            )

    def forward(self, skip: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.conv_block(torch.cat([skip, self.upsample(x)], dim=1))


# ----------------------------------------------------------------------------- upsamplers
@MODELS.register_module()
class DeconvModule(nn.Module):
    """Transposed-conv upsampling by ``scale_factor`` (stride), then norm and activation.
    ``kernel_size - scale_factor`` must be even and >= 0."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        with_cp: bool = False,
        norm_cfg: dict = dict(type="BN"),  # noqa: B006 (never mutated)
        act_cfg: dict = dict(type="ReLU"),  # noqa: B006 (never mutated)
        *,
        kernel_size: int = 4,
        scale_factor: int = 2,
    ) -> None:
        super().__init__()
        if kernel_size < scale_factor or (kernel_size - scale_factor) % 2:
            raise ValueError(
                "kernel_size should be greater than or equal to scale_factor and "
                "(kernel_size - scale_factor) should be even numbers, while the kernel size "
                f"is {kernel_size} and scale_factor is {scale_factor}."
            )
        self.with_cp = with_cp
        deconv = nn.ConvTranspose2d(
            in_channels, out_channels, kernel_size=kernel_size, stride=scale_factor,
            padding=(kernel_size - scale_factor) // 2,
        )  # fmt: skip
        _, norm = build_norm_layer(norm_cfg, out_channels)
        self.deconv_upsamping = nn.Sequential(deconv, norm, build_activation_layer(act_cfg))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _run(self.deconv_upsamping, x, self.with_cp)


@MODELS.register_module()
class InterpConv(nn.Module):
    """Interpolation upsampling and a ConvModule (upsample first unless ``conv_first``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        with_cp: bool = False,
        norm_cfg: dict | None = dict(type="BN"),  # noqa: B006 (never mutated)
        act_cfg: dict | None = dict(type="ReLU"),  # noqa: B006 (never mutated)
        *,
        conv_cfg: dict | None = None,
        conv_first: bool = False,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int = 0,
        upsample_cfg: dict = dict(  # noqa: B006 (never mutated)
            scale_factor=2, mode="bilinear", align_corners=False
        ),
    ) -> None:
        super().__init__()
        self.with_cp = with_cp
        conv = ConvModule(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding,
            conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg,
        )  # fmt: skip
        upsample = Upsample(**upsample_cfg)
        layers = (conv, upsample) if conv_first else (upsample, conv)
        self.interp_upsample = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _run(self.interp_upsample, x, self.with_cp)


# ----------------------------------------------------------------------------- backbone
@MODELS.register_module()
class UNet(BaseModule):
    """UNet encoder-decoder; returns the deepest encoder map and every decoder output,
    coarse to fine (``num_stages`` maps; the last has ``base_channels`` channels and the
    input's resolution when the first stride is 1).

    Stage ``i > 0`` downsamples by a stride-2 first conv (``strides[i] == 2``) or, failing
    that, by a 2x2 max pool when ``downsamples[i-1]``. The input size must be divisible by
    the product of those factors.
    """

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 64,
        num_stages: int = 5,
        strides: Sequence[int] = (1, 1, 1, 1, 1),
        enc_num_convs: Sequence[int] = (2, 2, 2, 2, 2),
        dec_num_convs: Sequence[int] = (2, 2, 2, 2),
        downsamples: Sequence[bool] = (True, True, True, True),
        enc_dilations: Sequence[int] = (1, 1, 1, 1, 1),
        dec_dilations: Sequence[int] = (1, 1, 1, 1),
        with_cp: bool = False,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = dict(type="BN"),  # noqa: B006 (never mutated)
        act_cfg: dict | None = dict(type="ReLU"),  # noqa: B006 (never mutated)
        upsample_cfg: dict = dict(type="InterpConv"),  # noqa: B006 (never mutated)
        norm_eval: bool = False,
        dcn: dict | None = None,
        plugins: list | None = None,
        pretrained: str | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(_unet_init_cfg(pretrained, init_cfg))
        _no_extras(dcn, plugins, "UNet")
        _check_lengths(
            num_stages, strides=strides, enc_num_convs=enc_num_convs, dec_num_convs=dec_num_convs,
            downsamples=downsamples, enc_dilations=enc_dilations, dec_dilations=dec_dilations,
        )  # fmt: skip
        self.num_stages, self.strides = num_stages, tuple(strides)
        self.downsamples, self.norm_eval = tuple(downsamples), norm_eval
        self.base_channels = base_channels
        common = dict(with_cp=with_cp, conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.encoder, self.decoder = nn.ModuleList(), nn.ModuleList()
        for i in range(num_stages):
            layers: list[nn.Module] = []
            if i != 0:
                if strides[i] == 1 and downsamples[i - 1]:
                    layers.append(nn.MaxPool2d(kernel_size=2))
                upsample = strides[i] != 1 or downsamples[i - 1]
                self.decoder.append(
                    _decoder_block(
                        base_channels * 2**i,
                        dec_num_convs[i - 1],
                        dec_dilations[i - 1],
                        upsample_cfg if upsample else None,
                        common,
                    )
                )
            enc = BasicConvBlock(
                in_channels, base_channels * 2**i, num_convs=enc_num_convs[i],
                stride=strides[i], dilation=enc_dilations[i], **common,
            )  # fmt: skip
            self.encoder.append(nn.Sequential(*layers, enc))
            in_channels = base_channels * 2**i

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        self._check_input_divisible(x)
        enc_outs = []
        for enc in self.encoder:
            x = enc(x)
            enc_outs.append(x)
        dec_outs = [x]
        for i in reversed(range(len(self.decoder))):
            x = self.decoder[i](enc_outs[i], x)
            dec_outs.append(x)
        return dec_outs

    def train(self, mode: bool = True) -> UNet:
        """Train mode, keeping BatchNorm layers in eval mode when ``norm_eval``."""
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    @property
    def whole_downsample_rate(self) -> int:
        """The factor by which the encoder shrinks its input."""
        rate = 1
        for i in range(1, self.num_stages):
            if self.strides[i] == 2 or self.downsamples[i - 1]:
                rate *= 2
        return rate

    def _check_input_divisible(self, x: torch.Tensor) -> None:
        h, w = x.shape[-2:]
        rate = self.whole_downsample_rate
        if h % rate or w % rate:
            raise ValueError(
                f"The input image size {(int(h), int(w))} should be divisible by the whole "
                f"downsample rate {rate}, when num_stages is {self.num_stages}, strides is "
                f"{self.strides}, and downsamples is {self.downsamples}."
            )


def _unet_init_cfg(pretrained: str | None, init_cfg: dict | list[dict] | None) -> dict | list[dict]:
    """The init config after MMSegmentation's rules for the deprecated ``pretrained``."""
    if init_cfg and pretrained:
        raise ValueError("UNet: init_cfg and pretrained cannot be set at the same time")
    if pretrained is not None:
        if not isinstance(pretrained, str):
            raise TypeError(f"pretrained must be a str or None, got {pretrained!r}")
        warnings.warn(
            "UNet(pretrained=...) is deprecated, use init_cfg=dict(type='Pretrained', checkpoint=...)",
            DeprecationWarning,
            stacklevel=3,
        )
        return dict(type="Pretrained", checkpoint=pretrained)
    return _DEFAULT_INIT if init_cfg is None else init_cfg


def _decoder_block(
    in_channels: int, num_convs: int, dilation: int, upsample_cfg: dict | None, common: dict
) -> UpConvBlock:
    """The decoder block fusing a stage of ``in_channels`` with the skip of half as many."""
    return UpConvBlock(
        conv_block=BasicConvBlock, in_channels=in_channels, skip_channels=in_channels // 2,
        out_channels=in_channels // 2, num_convs=num_convs, stride=1, dilation=dilation,
        upsample_cfg=upsample_cfg, **common,
    )  # fmt: skip


def _check_lengths(num_stages: int, **values: Sequence) -> None:
    """Per-stage arguments need ``num_stages`` values; per-decoder ones ``num_stages - 1``."""
    per_stage = ("strides", "enc_num_convs", "enc_dilations")
    for name, value in values.items():
        expected = num_stages if name in per_stage else num_stages - 1
        if len(value) != expected:
            raise ValueError(
                f"The length of {name} should be equal to "
                f"{'num_stages' if name in per_stage else '(num_stages-1)'}, while the {name} "
                f"is {tuple(value)}, the length of {name} is {len(value)}, and the num_stages "
                f"is {num_stages}."
            )
