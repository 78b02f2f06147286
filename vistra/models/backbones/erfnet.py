"""``ERFNet`` backbone (`ERFNet: Efficient Residual Factorized ConvNet for Real-time
Semantic Segmentation <https://ieeexplore.ieee.org/document/8063438>`_), MMSegmentation 1.x.

Keys: ``encoder.{i}`` holds ``DownsamplerBlock`` (``conv``, ``bn``) and
``NonBottleneck1d`` blocks (``convs_layers.{0,2,5,7}`` are the 3x1/1x3 convs,
``convs_layers.{3,8}`` the norms; the other indices are parameter-free activations and
dropout); ``decoder.{i}`` holds ``UpsamplerBlock`` (``conv`` transposed, ``bn``) and
``NonBottleneck1d`` blocks.

As upstream builds them, the blocks use their own defaults (BN with ``eps=1e-3``, ReLU,
plain convs): the backbone's ``conv_cfg``/``norm_cfg``/``act_cfg`` are stored but not
passed on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers import build_activation_layer, build_conv_layer, build_norm_layer
from vistra.models.utils.seg_utils import resize
from vistra.registry import MODELS

_BLOCK_NORM = dict(type="BN", eps=1e-3)


class DownsamplerBlock(BaseModule):
    """A strided 3x3 conv to ``out_channels - in_channels`` channels beside a 2x2 max
    pool of the input, concatenated, normed and activated."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = _BLOCK_NORM,
        act_cfg: dict | None = dict(type="ReLU"),  # noqa: B006 (never mutated)
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if out_channels <= in_channels:
            raise ValueError(
                f"DownsamplerBlock needs out_channels > in_channels, got {out_channels} and "
                f"{in_channels}"
            )
        self.conv_cfg, self.norm_cfg, self.act_cfg = conv_cfg, norm_cfg, act_cfg
        self.conv = build_conv_layer(
            conv_cfg, in_channels, out_channels - in_channels, kernel_size=3, stride=2, padding=1
        )
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.bn = build_norm_layer(norm_cfg, out_channels)[1]
        self.act = build_activation_layer(act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv_out = self.conv(x)
        # the pool floors odd sizes where the conv rounds up: resize to the conv's size
        pool_out = resize(self.pool(x), conv_out.shape[2:], mode="bilinear", align_corners=False)
        return self.act(self.bn(torch.cat([conv_out, pool_out], dim=1)))


class NonBottleneck1d(BaseModule):
    """Residual block of ``num_conv_layer`` factorised (3x1 then 1x3) conv pairs, each
    pair normed; the pairs after the first are dilated and end in dropout instead of an
    activation. The sum with the input is activated."""

    def __init__(
        self,
        channels: int,
        drop_rate: float = 0,
        dilation: int = 1,
        num_conv_layer: int = 2,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = _BLOCK_NORM,
        act_cfg: dict | None = dict(type="ReLU"),  # noqa: B006 (never mutated)
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.conv_cfg, self.norm_cfg, self.act_cfg = conv_cfg, norm_cfg, act_cfg
        self.act = build_activation_layer(act_cfg)
        # one ModuleList in upstream's order, so the parameter indices match
        self.convs_layers = nn.ModuleList()
        for i in range(num_conv_layer):
            d = 1 if i == 0 else dilation
            self.convs_layers.append(
                build_conv_layer(
                    conv_cfg, channels, channels, kernel_size=(3, 1), padding=(d, 0),
                    dilation=(d, 1), bias=True,
                )
            )  # fmt: skip
            self.convs_layers.append(self.act)
            self.convs_layers.append(
                build_conv_layer(
                    conv_cfg, channels, channels, kernel_size=(1, 3), padding=(0, d),
                    dilation=(1, d), bias=True,
                )
            )  # fmt: skip
            self.convs_layers.append(build_norm_layer(norm_cfg, channels)[1])
            self.convs_layers.append(self.act if i == 0 else nn.Dropout(p=drop_rate))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.convs_layers:
            out = layer(out)
        return self.act(out + x)


class UpsamplerBlock(BaseModule):
    """A stride-2 transposed 3x3 conv (doubling the size exactly), norm and activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = _BLOCK_NORM,
        act_cfg: dict | None = dict(type="ReLU"),  # noqa: B006 (never mutated)
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.conv_cfg, self.norm_cfg, self.act_cfg = conv_cfg, norm_cfg, act_cfg
        self.conv = nn.ConvTranspose2d(
            in_channels, out_channels, kernel_size=3, stride=2, padding=1, output_padding=1,
            bias=True,
        )  # fmt: skip
        self.bn = build_norm_layer(norm_cfg, out_channels)[1]
        self.act = build_activation_layer(act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


@MODELS.register_module()
class ERFNet(BaseModule):
    """Encoder of downsamplers (1/2, 1/4, 1/8) each followed by non-bottleneck blocks (the
    last stage cycles through ``enc_non_bottleneck_dilations``), decoder of upsamplers
    back to 1/2. Returns ``[x]``, the decoder's output."""

    def __init__(
        self,
        in_channels: int = 3,
        enc_downsample_channels: Sequence[int] = (16, 64, 128),
        enc_stage_non_bottlenecks: Sequence[int] = (5, 8),
        enc_non_bottleneck_dilations: Sequence[int] = (2, 4, 8, 16),
        enc_non_bottleneck_channels: Sequence[int] = (64, 128),
        dec_upsample_channels: Sequence[int] = (64, 16),
        dec_stages_non_bottleneck: Sequence[int] = (2, 2),
        dec_non_bottleneck_channels: Sequence[int] = (64, 16),
        dropout_ratio: float = 0.1,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = dict(type="BN", requires_grad=True),  # noqa: B006 (never mutated)
        act_cfg: dict | None = dict(type="ReLU"),  # noqa: B006
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        num_down = len(enc_downsample_channels)
        checks = [
            (len(dec_upsample_channels) + 1, "dec_upsample_channels", "one entry fewer than"),
            (len(enc_stage_non_bottlenecks) + 1, "enc_stage_non_bottlenecks", "one entry fewer than"),
            (len(enc_non_bottleneck_channels) + 1, "enc_non_bottleneck_channels", "one entry fewer than"),
        ]  # fmt: skip
        for expected, name, how in checks:
            if expected != num_down:
                raise ValueError(
                    f"ERFNet {name} must have {how} enc_downsample_channels="
                    f"{tuple(enc_downsample_channels)}"
                )
        if enc_stage_non_bottlenecks[-1] % len(enc_non_bottleneck_dilations):
            raise ValueError(
                f"ERFNet enc_stage_non_bottlenecks[-1]={enc_stage_non_bottlenecks[-1]} must be a "
                f"multiple of len(enc_non_bottleneck_dilations)={len(enc_non_bottleneck_dilations)}"
            )
        if (
            not len(dec_upsample_channels)
            == len(dec_stages_non_bottleneck)
            == len(dec_non_bottleneck_channels)
        ):
            raise ValueError(
                "ERFNet dec_upsample_channels, dec_stages_non_bottleneck and "
                "dec_non_bottleneck_channels must have the same length"
            )
        self.in_channels = in_channels
        self.enc_downsample_channels = enc_downsample_channels
        self.enc_stage_non_bottlenecks = enc_stage_non_bottlenecks
        self.enc_non_bottleneck_dilations = enc_non_bottleneck_dilations
        self.enc_non_bottleneck_channels = enc_non_bottleneck_channels
        self.dec_upsample_channels = dec_upsample_channels
        self.dec_stages_non_bottleneck = dec_stages_non_bottleneck
        self.dec_non_bottleneck_channels = dec_non_bottleneck_channels
        self.dropout_ratio = dropout_ratio
        self.conv_cfg, self.norm_cfg, self.act_cfg = conv_cfg, norm_cfg, act_cfg

        self.encoder = nn.ModuleList([DownsamplerBlock(in_channels, enc_downsample_channels[0])])
        for i in range(num_down - 1):
            channels = enc_downsample_channels[i + 1]
            self.encoder.append(DownsamplerBlock(enc_downsample_channels[i], channels))
            if i == num_down - 2:  # last stage: dilations cycled, with dropout
                rounds = enc_stage_non_bottlenecks[-1] // len(enc_non_bottleneck_dilations)
                for _ in range(rounds):
                    for d in enc_non_bottleneck_dilations:
                        self.encoder.append(NonBottleneck1d(channels, dropout_ratio, d))
            else:
                for _ in range(enc_stage_non_bottlenecks[i]):
                    self.encoder.append(NonBottleneck1d(channels, dropout_ratio))
        self.decoder = nn.ModuleList()
        for i, num_blocks in enumerate(dec_stages_non_bottleneck):
            in_ch = enc_downsample_channels[-1] if i == 0 else dec_non_bottleneck_channels[i - 1]
            self.decoder.append(UpsamplerBlock(in_ch, dec_non_bottleneck_channels[i]))
            for _ in range(num_blocks):
                self.decoder.append(NonBottleneck1d(dec_non_bottleneck_channels[i]))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        for block in self.encoder:
            x = block(x)
        for block in self.decoder:
            x = block(x)
        return [x]
