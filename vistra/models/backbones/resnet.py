"""ResNet family (ResNet, ResNetV1c, ResNetV1d), `paper <https://arxiv.org/abs/1512.03385>`__,
with MMPretrain's arguments and checkpoint keys.

Arch table (``depth``): 18, 34 (BasicBlock), 50, 101, 152 (Bottleneck). The classes here
are the plain registry entries (MMPretrain / mmcls configs); they also take
MMSegmentation's ``contract_dilation``, ``multi_grid`` and ``pretrained``.
MMSegmentation's own variants (``resnet_mmseg.py``, scope ``mmseg``) and MMSelfSup's
(``resnet_selfsup.py``, scope ``mmselfsup``) share this code and differ only by two
layout switches and their arguments:

=====================  ===========================================  ==============================
key layout             MMPretrain / MMSelfSup (here)                MMSegmentation / MMCV
=====================  ===========================================  ==============================
deep stem              ``stem.{0,1,2}.conv``, ``stem.{0,1,2}.bn``   ``stem.{0,3,6}``, ``stem.{1,4,7}``
stride-1 ``avg_down``  ``downsample.0`` conv, ``.1`` norm           identity pool, ``.1`` conv, ``.2`` norm
=====================  ===========================================  ==============================

(``flat_stem``, ``pool_every_shortcut``). Either variant loads the other's layout (and
vistra's earlier saves, always MMPretrain's): ``remap_state_dict`` renames the keys and
returns every rename, for the load report (``vistra.models.layers.key_remap``).

Order: blocks, residual layer, backbone, variants.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from vistra.models.base import BaseModule
from vistra.models.init import constant_init
from vistra.models.layers import (
    ConvModule,
    DropPath,
    build_activation_layer,
    build_conv_layer,
    build_norm_layer,
)
from vistra.models.layers.key_remap import Renames, install_remap_hook, rename_prefix
from vistra.registry import MODELS

_EPS = 1.0e-5
_DEFAULT_INIT = [
    dict(type="Kaiming", layer=["Conv2d"]),
    dict(type="Constant", val=1, layer=["_BatchNorm", "GroupNorm"]),
]
_RELU = dict(type="ReLU", inplace=True)


# ----------------------------------------------------------------------------- blocks
class _ResBlock(BaseModule):
    """What both blocks share: checkpointed forward, drop path, final ReLU."""

    with_cp: bool

    def _inner_forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            out = checkpoint(self._inner_forward, x, use_reentrant=False)
        else:
            out = self._inner_forward(x)
        return self.relu(out)

    def _finish(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.drop_path(out)
        out += identity
        return out


class BasicBlock(_ResBlock):
    """Two 3x3 convs (ResNet-18/34). ``expansion`` must be 1."""

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expansion: int = 1,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
        style: str = "pytorch",
        with_cp: bool = False,
        conv_cfg: dict | None = None,
        norm_cfg: dict = dict(type="BN"),  # noqa: B006 (never mutated)
        drop_path_rate: float = 0.0,
        init_cfg: dict | list[dict] | None = None,
        act_cfg: dict = _RELU,
    ) -> None:
        super().__init__(init_cfg)
        if expansion != 1:
            raise ValueError(f"BasicBlock expansion must be 1, got {expansion}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.expansion, self.mid_channels = expansion, out_channels
        self.stride, self.dilation, self.style, self.with_cp = stride, dilation, style, with_cp
        self.norm1_name, norm1 = build_norm_layer(norm_cfg, self.mid_channels, postfix=1)
        self.norm2_name, norm2 = build_norm_layer(norm_cfg, out_channels, postfix=2)
        self.conv1 = build_conv_layer(
            conv_cfg, in_channels, self.mid_channels, 3, stride=stride,
            padding=dilation, dilation=dilation, bias=False,
        )  # fmt: skip
        self.add_module(self.norm1_name, norm1)
        self.conv2 = build_conv_layer(
            conv_cfg, self.mid_channels, out_channels, 3, padding=1, bias=False
        )
        self.add_module(self.norm2_name, norm2)
        self.relu = build_activation_layer(act_cfg)
        self.downsample = downsample
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > _EPS else nn.Identity()

    @property
    def norm1(self) -> nn.Module:
        return getattr(self, self.norm1_name)

    @property
    def norm2(self) -> nn.Module:
        return getattr(self, self.norm2_name)

    def _inner_forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self._finish(out, x)


class Bottleneck(_ResBlock):
    """1x1 -> 3x3 -> 1x1 (ResNet-50 and deeper). ``style='pytorch'`` strides the 3x3 conv,
    ``'caffe'`` the first 1x1.

    The hooks the relatives build on (``resnext.py``, ``res2net.py``, ``regnet.py``, ...):
    ``mid_channels`` overrides the inner width (``out_channels // expansion``), ``groups``
    groups the 3x3 conv, and a subclass may replace :meth:`_make_conv2` (the 3x3 conv and
    its norm) by another middle.
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expansion: int = 4,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
        style: str = "pytorch",
        with_cp: bool = False,
        conv_cfg: dict | None = None,
        norm_cfg: dict = dict(type="BN"),  # noqa: B006 (never mutated)
        drop_path_rate: float = 0.0,
        init_cfg: dict | list[dict] | None = None,
        act_cfg: dict = _RELU,
        groups: int = 1,
        mid_channels: int | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if style not in ("pytorch", "caffe"):
            raise ValueError(f"ResNet style must be 'pytorch' or 'caffe', got {style!r}")
        if out_channels % expansion:
            raise ValueError(
                f"out_channels {out_channels} is not divisible by expansion {expansion}"
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.expansion = expansion
        self.mid_channels = out_channels // expansion if mid_channels is None else mid_channels
        self.stride, self.dilation, self.style, self.with_cp = stride, dilation, style, with_cp
        self.groups, self.conv_cfg, self.norm_cfg = groups, conv_cfg, norm_cfg
        self.conv1_stride, self.conv2_stride = (1, stride) if style == "pytorch" else (stride, 1)
        mid = self.mid_channels
        self.norm1_name, norm1 = build_norm_layer(norm_cfg, mid, postfix=1)
        self.norm3_name, norm3 = build_norm_layer(norm_cfg, out_channels, postfix=3)
        self.conv1 = build_conv_layer(
            conv_cfg, in_channels, mid, 1, stride=self.conv1_stride, bias=False
        )
        self.add_module(self.norm1_name, norm1)
        self._make_conv2()
        self.conv3 = build_conv_layer(conv_cfg, mid, out_channels, 1, bias=False)
        self.add_module(self.norm3_name, norm3)
        self.relu = build_activation_layer(act_cfg)
        self.downsample = downsample
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > _EPS else nn.Identity()

    @property
    def norm1(self) -> nn.Module:
        return getattr(self, self.norm1_name)

    @property
    def norm2(self) -> nn.Module:
        return getattr(self, self.norm2_name)

    @property
    def norm3(self) -> nn.Module:
        return getattr(self, self.norm3_name)

    def _make_conv2(self) -> None:
        """The middle of the block: the (grouped) 3x3 conv ``conv2`` and its norm."""
        mid = self.mid_channels
        self.norm2_name, norm2 = build_norm_layer(self.norm_cfg, mid, postfix=2)
        self.conv2 = build_conv_layer(
            self.conv_cfg, mid, mid, 3, stride=self.conv2_stride, padding=self.dilation,
            dilation=self.dilation, groups=self.groups, bias=False,
        )  # fmt: skip
        self.add_module(self.norm2_name, norm2)

    def _inner_forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.relu(self.norm2(self.conv2(out)))
        out = self.norm3(self.conv3(out))
        return self._finish(out, x)


def get_expansion(block: type, expansion: int | None = None) -> int:
    """``expansion`` if given, else the block's own (1 for BasicBlock, 4 for Bottleneck)."""
    if isinstance(expansion, int) and not isinstance(expansion, bool):
        if expansion <= 0:
            raise ValueError(f"expansion must be positive, got {expansion}")
        return expansion
    if expansion is not None:
        raise TypeError(f"expansion must be an int or None, got {expansion!r}")
    if hasattr(block, "expansion"):
        return block.expansion
    raise TypeError(f"expansion is not specified for {block.__name__}")


# ----------------------------------------------------------------------------- layer
class ResLayer(nn.Sequential):
    """One stage: ``num_blocks`` blocks, the first one strided and with the shortcut conv.

    ``dilation`` and ``drop_path_rate`` are one value for every block or one per block
    (MMSegmentation's ``contract_dilation``/``multi_grid`` give per-block rates, MMPretrain's
    stochastic depth a linear ramp). With ``avg_down`` the shortcut average-pools before
    its stride-1 conv; ``always_pool`` (MMSegmentation's layout) keeps a 1x1 identity pool
    in stride-1 shortcuts too, which moves the conv and norm keys to ``downsample.1/2``.
    A subclass's ``first_block_kwargs`` go to the first block only (Res2Net's stage block).
    """

    first_block_kwargs: Mapping[str, Any] = MappingProxyType({})

    def __init__(
        self,
        block: type[_ResBlock],
        num_blocks: int,
        in_channels: int,
        out_channels: int,
        expansion: int | None = None,
        stride: int = 1,
        dilation: int | Sequence[int] = 1,
        avg_down: bool = False,
        conv_cfg: dict | None = None,
        norm_cfg: dict = dict(type="BN"),  # noqa: B006 (never mutated)
        drop_path_rate: float | Sequence[float] = 0.0,
        always_pool: bool = False,
        **block_kwargs,
    ) -> None:
        self.block = block
        self.expansion = get_expansion(block, expansion)
        dilations = _per_block(dilation, num_blocks, "dilation rates")
        drop_rates = _per_block(drop_path_rate, num_blocks, "drop path rates")
        downsample = None
        if stride != 1 or in_channels != out_channels:
            parts: list[nn.Module] = []
            conv_stride = stride
            if avg_down and (stride != 1 or always_pool):
                conv_stride = 1
                parts.append(nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False))
            parts.append(
                build_conv_layer(
                    conv_cfg, in_channels, out_channels, 1, stride=conv_stride, bias=False
                )
            )
            parts.append(build_norm_layer(norm_cfg, out_channels)[1])
            downsample = nn.Sequential(*parts)
        layers = []
        for i in range(num_blocks):
            layers.append(
                block(
                    in_channels=in_channels if i == 0 else out_channels,
                    out_channels=out_channels,
                    expansion=self.expansion,
                    stride=stride if i == 0 else 1,
                    dilation=dilations[i],
                    downsample=downsample if i == 0 else None,
                    conv_cfg=conv_cfg,
                    norm_cfg=norm_cfg,
                    drop_path_rate=drop_rates[i],
                    **block_kwargs,
                    **(self.first_block_kwargs if i == 0 else {}),
                )
            )
        super().__init__(*layers)


def _per_block(value: float | Sequence[float], num_blocks: int, what: str) -> list:
    values = [value] * num_blocks if isinstance(value, int | float) else list(value)
    if len(values) != num_blocks:
        raise ValueError(f"got {len(values)} {what} for a stage of {num_blocks} blocks")
    return values


def stage_dilations(
    num_blocks: int,
    dilation: int,
    contract_dilation: bool = False,
    multi_grid: Sequence[int] | None = None,
) -> list[int]:
    """Per-block dilation rates of one stage, MMSegmentation's rule.

    ``multi_grid`` gives every rate; otherwise all blocks use ``dilation``, except that
    ``contract_dilation`` halves the first block's rate when it is above 1.
    """
    if multi_grid is not None:
        if len(multi_grid) != num_blocks:
            raise ValueError(
                f"multi_grid {tuple(multi_grid)} needs one rate per block ({num_blocks})"
            )
        return list(multi_grid)
    first = dilation // 2 if dilation > 1 and contract_dilation else dilation
    return [first] + [dilation] * (num_blocks - 1)


# ----------------------------------------------------------------------------- backbone
@MODELS.register_module()
class ResNet(BaseModule):
    """ResNet backbone (`paper <https://arxiv.org/abs/1512.03385>`__).

    Returns a tuple with the feature maps of the stages in ``out_indices``.
    ``frozen_stages=k`` freezes the stem and the first ``k`` stages (no grads, BN in eval);
    ``norm_eval`` keeps every BN in eval mode while training; ``with_cp`` recomputes
    block activations in backward to save memory. ``pretrained`` (MMSegmentation's
    deprecated form) becomes ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)``.
    ``drop_path_rate`` rises linearly from 0 over all blocks (MMPretrain's rule).
    """

    # key layout (see the module docstring): MMPretrain's
    flat_stem = False
    pool_every_shortcut = False

    arch_settings = {
        18: (BasicBlock, (2, 2, 2, 2)),
        34: (BasicBlock, (3, 4, 6, 3)),
        50: (Bottleneck, (3, 4, 6, 3)),
        101: (Bottleneck, (3, 4, 23, 3)),
        152: (Bottleneck, (3, 8, 36, 3)),
    }

    def __init__(
        self,
        depth: int,
        in_channels: int = 3,
        stem_channels: int = 64,
        base_channels: int = 64,
        expansion: int | None = None,
        num_stages: int = 4,
        strides: Sequence[int] = (1, 2, 2, 2),
        dilations: Sequence[int] = (1, 1, 1, 1),
        out_indices: Sequence[int] = (3,),
        style: str = "pytorch",
        deep_stem: bool = False,
        avg_down: bool = False,
        frozen_stages: int = -1,
        conv_cfg: dict | None = None,
        norm_cfg: dict = dict(type="BN", requires_grad=True),  # noqa: B006 (never mutated)
        norm_eval: bool = False,
        with_cp: bool = False,
        zero_init_residual: bool = True,
        init_cfg: dict | list[dict] | None = _DEFAULT_INIT,  # noqa: B006 (copied by BaseModule)
        drop_path_rate: float = 0.0,
        contract_dilation: bool = False,
        multi_grid: Sequence[int] | None = None,
        plugins: list[dict] | None = None,
        dcn: dict | None = None,
        stage_with_dcn: Sequence[bool] = (False, False, False, False),
        pretrained: str | None = None,
    ) -> None:
        if pretrained is not None:
            if not isinstance(pretrained, str):
                raise TypeError(f"pretrained must be a str or None, got {pretrained!r}")
            warnings.warn(
                "ResNet(pretrained=...) is deprecated, use init_cfg=dict(type='Pretrained', checkpoint=...)",
                DeprecationWarning,
                stacklevel=2,
            )
            init_cfg = dict(type="Pretrained", checkpoint=pretrained)
        super().__init__(init_cfg)
        _check_unsupported(plugins, dcn, stage_with_dcn)
        if depth not in self.arch_settings:
            raise KeyError(
                f"invalid depth {depth} for ResNet; choose from {sorted(self.arch_settings)}"
            )
        _check_stages(num_stages, strides, dilations, out_indices, frozen_stages, style)
        self.depth, self.stem_channels, self.base_channels = depth, stem_channels, base_channels
        self.num_stages, self.strides, self.dilations = num_stages, tuple(strides), tuple(dilations)
        self.out_indices = tuple(out_indices)
        self.style, self.deep_stem, self.avg_down = style, deep_stem, avg_down
        self.frozen_stages, self.conv_cfg, self.norm_cfg = frozen_stages, conv_cfg, norm_cfg
        self.with_cp, self.norm_eval, self.zero_init_residual = (
            with_cp,
            norm_eval,
            zero_init_residual,
        )
        self.block, stage_blocks = self.arch_settings[depth]
        self.stage_blocks = stage_blocks[:num_stages]
        self.expansion = get_expansion(self.block, expansion)

        self._make_stem_layer(in_channels, stem_channels)
        self.res_layers: list[str] = []
        in_ch, out_ch = stem_channels, base_channels * self.expansion
        # stochastic depth rises linearly over the blocks of the full arch
        rates = np.linspace(0, drop_path_rate, sum(stage_blocks)).tolist()
        for i, num_blocks in enumerate(self.stage_blocks):
            last = i == len(self.stage_blocks) - 1
            block_dilations = stage_dilations(
                num_blocks, dilations[i], contract_dilation, multi_grid if last else None
            )
            res_layer = self.make_res_layer(
                block=self.block, num_blocks=num_blocks, in_channels=in_ch, out_channels=out_ch,
                expansion=self.expansion, stride=strides[i], dilation=block_dilations,
                style=style, avg_down=avg_down, with_cp=with_cp, conv_cfg=conv_cfg,
                norm_cfg=norm_cfg, drop_path_rate=rates[:num_blocks],
                always_pool=self.pool_every_shortcut,
            )  # fmt: skip
            rates = rates[num_blocks:]
            in_ch, out_ch = out_ch, out_ch * 2
            self.add_module(f"layer{i + 1}", res_layer)
            self.res_layers.append(f"layer{i + 1}")
        self.feat_dim = res_layer[-1].out_channels
        self._freeze_stages()
        install_remap_hook(self)

    def make_res_layer(self, **kwargs) -> ResLayer:
        return ResLayer(**kwargs)

    @property
    def norm1(self) -> nn.Module:
        return getattr(self, self.norm1_name)

    def _make_stem_layer(self, in_channels: int, stem_channels: int) -> None:
        if self.deep_stem and self.flat_stem:
            widths = (in_channels, stem_channels // 2, stem_channels // 2, stem_channels)
            parts: list[nn.Module] = []
            for i, (cin, cout) in enumerate(zip(widths, widths[1:])):
                conv = build_conv_layer(
                    self.conv_cfg, cin, cout, 3, 2 if i == 0 else 1, 1, bias=False
                )
                parts += [conv, build_norm_layer(self.norm_cfg, cout)[1], nn.ReLU(inplace=True)]
            self.stem = nn.Sequential(*parts)
        elif self.deep_stem:
            half = stem_channels // 2
            common = dict(padding=1, conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, inplace=True)
            self.stem = nn.Sequential(
                ConvModule(in_channels, half, 3, stride=2, **common),
                ConvModule(half, half, 3, stride=1, **common),
                ConvModule(half, stem_channels, 3, stride=1, **common),
            )
        else:
            self.conv1 = build_conv_layer(
                self.conv_cfg,
                in_channels,
                stem_channels,
                kernel_size=7,
                stride=2,
                padding=3,
                bias=False,
            )
            self.norm1_name, norm1 = build_norm_layer(self.norm_cfg, stem_channels, postfix=1)
            self.add_module(self.norm1_name, norm1)
            self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        if self.deep_stem:
            return self.stem(x)
        return self.relu(self.norm1(self.conv1(x)))

    def _freeze_stages(self) -> None:
        if self.frozen_stages >= 0:
            stem = [self.stem] if self.deep_stem else [self.conv1, self.norm1]
            for i in range(1, self.frozen_stages + 1):
                stem.append(getattr(self, f"layer{i}"))
            for m in stem:
                m.eval()
                for param in m.parameters():
                    param.requires_grad = False

    def init_weights(self) -> None:
        if self.is_init:
            return
        super().init_weights()
        # A pretrained checkpoint must not have its last BN of each block zeroed afterwards.
        if self.zero_init_residual and not _has_pretrained(self.init_cfg):
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    constant_init(m.norm3, 0)
                elif isinstance(m, BasicBlock):
                    constant_init(m.norm2, 0)

    def remap_state_dict(self, state_dict: dict, prefix: str = "") -> Renames:
        """Rename, in place, this backbone's keys saved in the other layout (see the module
        docstring) to its own; return the renames. Keys already in this layout stay."""
        renamed: Renames = []
        if self.deep_stem:
            norm = build_norm_layer(self.norm_cfg, 1)[0]  # 'bn', 'gn', ...: a ConvModule's name
            pairs = [(f"{i}.conv.", f"{3 * i}.") for i in range(3)]
            pairs += [(f"{i}.{norm}.", f"{3 * i + 1}.") for i in range(3)]
            for nested, flat in pairs:
                old, new = (nested, flat) if self.flat_stem else (flat, nested)
                old, new = f"{prefix}stem.{old}", f"{prefix}stem.{new}"
                for key in [k for k in state_dict if k.startswith(old)]:
                    if "." in key[len(old) :]:
                        continue  # a flat prefix 'stem.1.' must not take 'stem.1.conv.weight'
                    target = new + key[len(old) :]
                    state_dict[target] = state_dict.pop(key)
                    renamed.append((key, target))
        if self.avg_down:
            for name in self.res_layers:
                block = getattr(self, name)[0]
                if block.downsample is None or block.stride != 1:
                    continue  # strided shortcuts pool first in both layouts
                base = f"{prefix}{name}.0.downsample."
                if self.pool_every_shortcut and base + "0.weight" in state_dict:
                    rename_prefix(state_dict, base + "1.", base + "2.", renamed)
                    rename_prefix(state_dict, base + "0.", base + "1.", renamed)
                elif not self.pool_every_shortcut and base + "2.weight" in state_dict:
                    rename_prefix(state_dict, base + "1.", base + "0.", renamed)
                    rename_prefix(state_dict, base + "2.", base + "1.", renamed)
        return renamed

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.maxpool(self._stem(x))
        outs = []
        for i, name in enumerate(self.res_layers):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def train(self, mode: bool = True) -> ResNet:
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self


@MODELS.register_module()
class ResNetV1c(ResNet):
    """ResNet with the 7x7 stem conv replaced by three 3x3 convs (Bag of Tricks)."""

    def __init__(self, **kwargs) -> None:
        _no_override(kwargs, "ResNetV1c")
        super().__init__(deep_stem=True, avg_down=False, **kwargs)


@MODELS.register_module()
class ResNetV1d(ResNet):
    """ResNetV1c plus an average pool before each strided shortcut conv (Bag of Tricks)."""

    def __init__(self, **kwargs) -> None:
        _no_override(kwargs, "ResNetV1d")
        super().__init__(deep_stem=True, avg_down=True, **kwargs)


# ----------------------------------------------------------------------------- helpers
def _no_override(kwargs: dict, name: str) -> None:
    fixed = sorted({"deep_stem", "avg_down"} & set(kwargs))
    if fixed:
        raise TypeError(f"{name} fixes {', '.join(fixed)}; use type='ResNet' to set them freely")


def _check_unsupported(
    plugins: list | None, dcn: dict | None, stage_with_dcn: Sequence[bool]
) -> None:
    if plugins:
        raise NotImplementedError(f"ResNet plugins are not supported by vistra (got {plugins})")
    if dcn is not None or any(stage_with_dcn):
        raise NotImplementedError(
            "ResNet dcn (deformable convolution) needs MMCV's compiled ops, which vistra does "
            "not use; remove 'dcn'/'stage_with_dcn' from the backbone config"
        )


def _check_stages(
    num_stages: int,
    strides: Sequence[int],
    dilations: Sequence[int],
    out_indices: Sequence[int],
    frozen_stages: int,
    style: str,
) -> None:
    if not 1 <= num_stages <= 4:
        raise ValueError(f"num_stages must be in 1..4, got {num_stages}")
    if len(strides) != num_stages or len(dilations) != num_stages:
        raise ValueError(
            f"strides {tuple(strides)} and dilations {tuple(dilations)} need one value per stage "
            f"(num_stages={num_stages})"
        )
    bad = [i for i in out_indices if not 0 <= i < num_stages]
    if not out_indices or bad:
        raise ValueError(
            f"out_indices {tuple(out_indices)} must be stage indices in 0..{num_stages - 1}"
        )
    if not -1 <= frozen_stages <= num_stages:
        raise ValueError(f"frozen_stages must be in -1..{num_stages}, got {frozen_stages}")
    if style not in ("pytorch", "caffe"):
        raise ValueError(f"ResNet style must be 'pytorch' or 'caffe', got {style!r}")


def _has_pretrained(init_cfg: dict | list[dict] | None) -> bool:
    cfgs = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]
    return any(isinstance(c, dict) and c.get("type") == "Pretrained" for c in cfgs)
