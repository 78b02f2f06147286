"""CSPNet backbones (`CSPNet: A New Backbone that can Enhance Learning Capability of CNN
<https://arxiv.org/abs/1911.11929>`__): CSPDarkNet (YOLOv4's), CSPResNet, CSPResNeXt, with
MMPretrain's arguments and checkpoint keys.

A Cross Stage Partial stage optionally downsamples (a 3x3 stride-2 conv), expands with a 1x1
conv, splits the channels in two halves, runs only the second half through its blocks (and
a 1x1 "transition" conv), concatenates the halves and fuses them with a final 1x1 conv: half
of the features skip the blocks, which halves their cost and the duplicated gradients.
The blocks are DarkNet's (1x1 then 3x3 conv, each with BN and LeakyReLU, plus identity),
ResNet's or ResNeXt's bottlenecks (with LeakyReLU; ResNeXt's counting ``base_channels=32``,
and a 32-grouped downsampling conv).

Arch table (``depth``, as upstream's ``arch_settings``):

===========  =====  ==============================  ===============  ============
class        depth  out channels                    blocks           stem
===========  =====  ==============================  ===============  ============
CSPDarkNet   53     64, 128, 256, 512, 1024         1, 2, 8, 8, 4    3x3 stride 1
CSPResNet    50     128, 256, 512, 1024             3, 3, 5, 2       7x7 s2 + max pool
CSPResNeXt   50     256, 512, 1024, 2048            3, 3, 5, 2       7x7 s2 + max pool
===========  =====  ==============================  ===============  ============

Keys: ``stem`` (a ConvModule, ``stem.conv``/``stem.bn``, for CSPDarkNet; ``stem.0`` (and
``stem.{1,2}`` with ``deep_stem``) for the others), then per stage ``stages.{i}.``
``downsample_conv``, ``expand_conv``, ``blocks.{j}.*`` (the block's own keys),
``atfer_blocks_conv`` (MMPretrain's spelling, kept for its checkpoints) and ``final_conv``,
each a ConvModule (``.conv``, ``.bn``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from vistra.models.backbones.resnet import Bottleneck as ResNetBottleneck
from vistra.models.backbones.resnext import Bottleneck as ResNeXtBottleneck
from vistra.models.backbones.resnext import check_depth
from vistra.models.base import BaseModule
from vistra.models.layers import ConvModule, DepthwiseSeparableConvModule, DropPath
from vistra.models.utils.out_indices import parse_out_indices
from vistra.registry import MODELS

_EPS = 1.0e-5
_BN = dict(type="BN", eps=1e-5)
_LEAKY = dict(type="LeakyReLU", inplace=True)
# MMPretrain's CSPDarkNet default: PyTorch's own conv initialisation (kaiming_uniform, a=sqrt(5))
_DARKNET_INIT = dict(
    type="Kaiming", layer="Conv2d", a=math.sqrt(5), distribution="uniform", mode="fan_in",
    nonlinearity="leaky_relu",
)  # fmt: skip
# the per-stage keys of a CSPNet arch (each one value for all stages or one per stage)
_STAGE_KEYS = (
    "block_fn", "in_channels", "out_channels", "num_blocks", "expand_ratio", "bottle_ratio",
    "has_downsampler", "down_growth", "block_args",
)  # fmt: skip
_REQUIRED_KEYS = ("block_fn", "in_channels", "out_channels", "num_blocks")


class DarknetBottleneck(BaseModule):
    """DarkNet's residual block: a 1x1 ConvModule to ``out_channels / expansion`` channels,
    a 3x3 one back (depthwise-separable with ``use_depthwise``), plus the input when
    ``add_identity`` and the widths match."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expansion: float = 2,
        add_identity: bool = True,
        use_depthwise: bool = False,
        conv_cfg: dict | None = None,
        drop_path_rate: float = 0,
        norm_cfg: dict = _BN,
        act_cfg: dict = _LEAKY,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        hidden = int(out_channels / expansion)
        common = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.conv1 = ConvModule(in_channels, hidden, 1, **common)
        conv = DepthwiseSeparableConvModule if use_depthwise else ConvModule
        self.conv2 = conv(hidden, out_channels, 3, stride=1, padding=1, **common)
        self.add_identity = add_identity and in_channels == out_channels
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > _EPS else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.drop_path(self.conv2(self.conv1(x)))
        return out + x if self.add_identity else out


class CSPStage(BaseModule):
    """One Cross Stage Partial stage (see the module docstring).

    ``down_growth`` makes the downsampling conv widen to ``out_channels`` (else it keeps
    ``in_channels``); the expand conv widens that by ``expand_ratio``; the blocks run on
    half of it, each with ``expansion=bottle_ratio`` and ``block_args``; ``block_dpr`` is
    their drop-path rate (one, or one per block).
    """

    def __init__(
        self,
        block_fn: Callable[..., nn.Module],
        in_channels: int,
        out_channels: int,
        has_downsampler: bool = True,
        down_growth: bool = False,
        expand_ratio: float = 0.5,
        bottle_ratio: float = 2,
        num_blocks: int = 1,
        block_dpr: float | Sequence[float] = 0,
        block_args: Mapping[str, Any] | None = None,
        conv_cfg: dict | None = None,
        norm_cfg: dict = _BN,
        act_cfg: dict = _LEAKY,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        down_channels = out_channels if down_growth else in_channels
        rates = [block_dpr] * num_blocks if isinstance(block_dpr, int | float) else block_dpr
        if len(rates) != num_blocks:
            raise ValueError(f"CSPStage block_dpr: {len(rates)} rates for {num_blocks} blocks")
        if has_downsampler:
            self.downsample_conv: nn.Module = ConvModule(
                in_channels, down_channels, 3, stride=2, padding=1,
                # ResNeXt stages downsample with a grouped conv too
                groups=32 if block_fn is ResNeXtBottleneck else 1,
                norm_cfg=norm_cfg, act_cfg=act_cfg,
            )  # fmt: skip
        else:
            self.downsample_conv = nn.Identity()
        exp_channels = int(down_channels * expand_ratio)
        if exp_channels % 2:
            raise ValueError(
                f"CSPStage: the expanded width {exp_channels} (channels {down_channels} x "
                f"expand_ratio {expand_ratio}) must be even to split in two halves"
            )
        # ResNet-style blocks start with a 1x1 conv of their own: no activation before it
        self.expand_conv = ConvModule(
            down_channels, exp_channels, 1, norm_cfg=norm_cfg,
            act_cfg=act_cfg if block_fn is DarknetBottleneck else None,
        )  # fmt: skip
        half = exp_channels // 2
        self.blocks = nn.Sequential(
            *(
                block_fn(
                    in_channels=half,
                    out_channels=half,
                    expansion=bottle_ratio,
                    drop_path_rate=rates[i],
                    conv_cfg=conv_cfg,
                    norm_cfg=norm_cfg,
                    act_cfg=act_cfg,
                    **(block_args or {}),
                )  # fmt: skip
                for i in range(num_blocks)
            )
        )
        self.atfer_blocks_conv = ConvModule(half, half, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.final_conv = ConvModule(2 * half, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.expand_conv(self.downsample_conv(x))
        half = x.shape[1] // 2
        xa, xb = x[:, :half], x[:, half:]
        xb = self.atfer_blocks_conv(self.blocks(xb)).contiguous()
        return self.final_conv(torch.cat((xa, xb), dim=1))


class CSPNet(BaseModule):
    """The generic CSP network (not registered, as upstream's): a stem from ``stem_fn``
    (called with the input channels) and one :class:`CSPStage` per entry of ``arch``.

    ``arch`` holds ``block_fn``, ``in_channels``, ``out_channels``, ``num_blocks`` and
    optionally ``expand_ratio``, ``bottle_ratio``, ``has_downsampler``, ``down_growth``,
    ``block_args``, each one value for every stage or one per stage. ``out_indices`` may
    count from the end (``-1``: the last stage); ``frozen_stages=k`` freezes the stem and
    stages ``0..k`` (MMPretrain's rule: ``0`` already freezes the first stage);
    ``drop_path_rate`` rises linearly over all blocks.
    """

    def __init__(
        self,
        arch: Mapping[str, Any],
        stem_fn: Callable[[int], nn.Module],
        in_channels: int = 3,
        out_indices: int | Sequence[int] = -1,
        frozen_stages: int = -1,
        drop_path_rate: float = 0.0,
        conv_cfg: dict | None = None,
        norm_cfg: dict = _BN,
        act_cfg: dict = _LEAKY,
        norm_eval: bool = False,
        init_cfg: dict | list[dict] | None = dict(type="Kaiming", layer="Conv2d"),  # noqa: B006
    ) -> None:
        super().__init__(init_cfg)
        family = type(self).__name__
        self.arch = self.expand_arch(arch, family)
        self.num_stages = len(self.arch["in_channels"])
        self.conv_cfg, self.norm_cfg, self.act_cfg = conv_cfg, norm_cfg, act_cfg
        self.norm_eval = norm_eval
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages < self.num_stages:
            raise ValueError(
                f"{family} frozen_stages must be in -1..{self.num_stages - 1}, got {frozen_stages!r}"
            )
        self.frozen_stages = frozen_stages
        self.out_indices = parse_out_indices(out_indices, self.num_stages, family)
        self.stem = stem_fn(in_channels)
        depths = self.arch["num_blocks"]
        rates = torch.linspace(0, drop_path_rate, sum(depths)).split(list(depths))
        self.stages = nn.Sequential(
            *(
                CSPStage(
                    **{k: v[i] for k, v in self.arch.items()},
                    block_dpr=rates[i].tolist(),
                    conv_cfg=conv_cfg,
                    norm_cfg=norm_cfg,
                    act_cfg=act_cfg,
                )  # fmt: skip
                for i in range(self.num_stages)
            )
        )
        self._freeze_stages()

    @staticmethod
    def expand_arch(arch: Mapping[str, Any], family: str = "CSPNet") -> dict[str, tuple]:
        """``arch`` with every key as a per-stage tuple (``block_args`` defaults to ``{}``)."""
        if not isinstance(arch, Mapping) or not set(_REQUIRED_KEYS) <= set(arch):
            raise ValueError(f"a {family} arch must be a dict with {_REQUIRED_KEYS}, got {arch!r}")
        unknown = sorted(set(arch) - set(_STAGE_KEYS))
        if unknown:
            raise ValueError(f"{family} arch: unknown keys {unknown}; valid: {list(_STAGE_KEYS)}")
        num_stages = len(arch["in_channels"])
        full = {}
        for key, value in {"block_args": {}, **arch}.items():
            if isinstance(value, list | tuple):
                if len(value) != num_stages:
                    raise ValueError(
                        f"{family} arch[{key!r}] has {len(value)} values for {num_stages} stages"
                    )
                full[key] = tuple(value)
            else:
                full[key] = (value,) * num_stages
        return full

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        for m in [self.stem, *self.stages[: self.frozen_stages + 1]]:
            m.eval()
            for param in m.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> CSPNet:
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)


@MODELS.register_module()
class CSPDarkNet(CSPNet):
    """CSP-DarkNet backbone (YOLOv4's): a stride-1 3x3 stem conv and five stages of
    DarkNet blocks, each widening in its downsampling conv."""

    arch_settings = {
        53: dict(
            block_fn=DarknetBottleneck,
            in_channels=(32, 64, 128, 256, 512),
            out_channels=(64, 128, 256, 512, 1024),
            num_blocks=(1, 2, 8, 8, 4),
            expand_ratio=(2, 1, 1, 1, 1),
            bottle_ratio=(2, 1, 1, 1, 1),
            has_downsampler=True,
            down_growth=True,
        ),
    }

    def __init__(
        self,
        depth: int,
        in_channels: int = 3,
        out_indices: int | Sequence[int] = (4,),
        frozen_stages: int = -1,
        conv_cfg: dict | None = None,
        norm_cfg: dict = _BN,
        act_cfg: dict = _LEAKY,
        norm_eval: bool = False,
        init_cfg: dict | list[dict] | None = _DARKNET_INIT,  # noqa: B006 (copied by BaseModule)
    ) -> None:
        check_depth("CSPDarkNet", depth, self.arch_settings)
        super().__init__(
            arch=self.arch_settings[depth], stem_fn=self._make_stem_layer,
            in_channels=in_channels, out_indices=out_indices, frozen_stages=frozen_stages,
            conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg, norm_eval=norm_eval,
            init_cfg=init_cfg,
        )  # fmt: skip

    def _make_stem_layer(self, in_channels: int) -> nn.Module:
        # the stem keeps the resolution and gives the first stage's input width
        return ConvModule(
            in_channels, self.arch["in_channels"][0], 3, padding=1,
            norm_cfg=self.norm_cfg, act_cfg=self.act_cfg,
        )  # fmt: skip


@MODELS.register_module()
class CSPResNet(CSPNet):
    """CSP-ResNet backbone: ResNet's stem (7x7 stride-2 conv and max pool, or three 3x3
    convs with ``deep_stem``) and four stages of ResNet bottlenecks, the first one without
    a downsampling conv."""

    arch_settings = {
        50: dict(
            block_fn=ResNetBottleneck,
            in_channels=(64, 128, 256, 512),
            out_channels=(128, 256, 512, 1024),
            num_blocks=(3, 3, 5, 2),
            expand_ratio=4,
            bottle_ratio=2,
            has_downsampler=(False, True, True, True),
            down_growth=False,
        ),
    }

    def __init__(
        self,
        depth: int,
        in_channels: int = 3,
        out_indices: int | Sequence[int] = (3,),
        frozen_stages: int = -1,
        deep_stem: bool = False,
        conv_cfg: dict | None = None,
        norm_cfg: dict = _BN,
        act_cfg: dict = _LEAKY,
        norm_eval: bool = False,
        init_cfg: dict | list[dict] | None = dict(type="Kaiming", layer="Conv2d"),  # noqa: B006
    ) -> None:
        check_depth(type(self).__name__, depth, self.arch_settings)
        # read by _make_stem_layer during the base constructor
        self.deep_stem = deep_stem
        super().__init__(
            arch=self.arch_settings[depth], stem_fn=self._make_stem_layer,
            in_channels=in_channels, out_indices=out_indices, frozen_stages=frozen_stages,
            conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg, norm_eval=norm_eval,
            init_cfg=init_cfg,
        )  # fmt: skip

    def _make_stem_layer(self, in_channels: int) -> nn.Module:
        width = self.arch["in_channels"][0]
        common = dict(conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)
        if self.deep_stem:
            return nn.Sequential(
                ConvModule(in_channels, width // 2, 3, stride=2, padding=1, **common),
                ConvModule(width // 2, width // 2, 3, stride=1, padding=1, **common),
                ConvModule(width // 2, width, 3, stride=1, padding=1, **common),
            )
        return nn.Sequential(
            ConvModule(in_channels, width, 7, stride=2, padding=3, **common),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )


@MODELS.register_module()
class CSPResNeXt(CSPResNet):
    """CSP-ResNeXt backbone: CSPResNet with ResNeXt bottlenecks (32 groups, widths counted
    from ``base_channels=32``) and 32-grouped downsampling convs; CSPResNet's arguments."""

    arch_settings = {
        50: dict(
            block_fn=ResNeXtBottleneck,
            in_channels=(64, 256, 512, 1024),
            out_channels=(256, 512, 1024, 2048),
            num_blocks=(3, 3, 5, 2),
            expand_ratio=(4, 2, 2, 2),
            bottle_ratio=4,
            has_downsampler=(False, True, True, True),
            down_growth=False,
            # CSPNet halves the block widths, so the groups count from 32 channels
            block_args=dict(base_channels=32),
        ),
    }
