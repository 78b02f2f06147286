"""ShuffleNetV1 backbone (`ShuffleNet: An Extremely Efficient Convolutional Neural Network
for Mobile Devices <https://arxiv.org/abs/1707.01083>`_), with MMPretrain's arguments and
keys.

Each unit: grouped 1x1 compression to a quarter of the output width, channel shuffle
(between the depthwise conv and the expansion, where MMPretrain puts it), depthwise 3x3,
grouped 1x1 expansion. A stage's first unit halves the resolution and concatenates its
output to the 3x3-average-pooled input; the others add theirs to the input.

Keys: ``conv1.{conv,bn}`` (the stem), ``layers.{0..2}.{j}.g_conv_1x1_compress``,
``.depthwise_conv3x3_bn``, ``.g_conv_1x1_expand`` (each ``{conv,bn}``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from vistra.models.backbones.mobilenet_v2 import check_frozen_stages, check_out_indices
from vistra.models.base import BaseModule
from vistra.models.layers.activation import build_activation_layer
from vistra.models.layers.channel_shuffle import channel_shuffle
from vistra.models.layers.conv_module import ConvModule
from vistra.models.layers.make_divisible import make_divisible
from vistra.registry import MODELS

_BN = dict(type="BN")
_RELU = dict(type="ReLU")


class ShuffleUnit(nn.Module):
    """One ShuffleNet unit; ``combine='add'`` (stride 1, ``in_channels == out_channels``)
    or ``'concat'`` (stride 2; the branch makes ``out_channels - in_channels`` channels).
    ``first_block=True`` makes the compression conv ungrouped (the network's first unit,
    whose input is too narrow to group)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        groups: int = 3,
        first_block: bool = True,
        combine: str = "add",
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = _BN,
        act_cfg: dict | None = _RELU,
        with_cp: bool = False,
    ) -> None:
        super().__init__()
        if combine == "add":
            if in_channels != out_channels:
                raise ValueError(
                    f"ShuffleUnit combine='add' needs in_channels == out_channels, got "
                    f"{in_channels} and {out_channels}"
                )
            stride, branch_channels = 1, out_channels
        elif combine == "concat":
            stride, branch_channels = 2, out_channels - in_channels
            self.avgpool = nn.AvgPool2d(kernel_size=3, stride=2, padding=1)
        else:
            raise ValueError(f"ShuffleUnit combine must be 'add' or 'concat', got {combine!r}")
        self.in_channels, self.out_channels = in_channels, branch_channels
        self.groups, self.first_block, self.combine = groups, first_block, combine
        self.with_cp = with_cp
        self.bottleneck_channels = out_channels // 4
        common = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        self.g_conv_1x1_compress = ConvModule(
            in_channels, self.bottleneck_channels, 1, groups=1 if first_block else groups,
            act_cfg=act_cfg, **common,
        )  # fmt: skip
        self.depthwise_conv3x3_bn = ConvModule(
            self.bottleneck_channels, self.bottleneck_channels, 3, stride=stride, padding=1,
            groups=self.bottleneck_channels, act_cfg=None, **common,
        )  # fmt: skip
        self.g_conv_1x1_expand = ConvModule(
            self.bottleneck_channels, branch_channels, 1, groups=groups, act_cfg=None, **common
        )
        self.act = build_activation_layer(act_cfg)

    def _inner_forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.depthwise_conv3x3_bn(self.g_conv_1x1_compress(x))
        if self.groups > 1:
            out = channel_shuffle(out, self.groups)
        out = self.g_conv_1x1_expand(out)
        if self.combine == "concat":
            return torch.cat((self.avgpool(x), self.act(out)), dim=1)
        return self.act(x + out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return checkpoint(self._inner_forward, x, use_reentrant=False)
        return self._inner_forward(x)


@MODELS.register_module()
class ShuffleNetV1(BaseModule):
    """ShuffleNetV1: a strided 3x3 stem and max pool, then three stages of 4, 8 and 4
    ShuffleUnits, returned as stages 0..2.

    ``groups`` (1, 2, 3, 4 or 8) sets the grouped convs and the stage widths (the paper's
    Table 1), ``widen_factor`` scales them. ``frozen_stages=n`` (``-1``: none) stops the
    stem's gradients and freezes stages ``0..n-1`` (in eval mode); ``norm_eval`` keeps every
    BatchNorm in eval mode while training.
    """

    # stage widths for each number of groups
    arch_settings = {
        1: (144, 288, 576),
        2: (200, 400, 800),
        3: (240, 480, 960),
        4: (272, 544, 1088),
        8: (384, 768, 1536),
    }
    stage_blocks = (4, 8, 4)

    def __init__(
        self,
        groups: int = 3,
        widen_factor: float = 1.0,
        out_indices: int | Sequence[int] = (2,),
        frozen_stages: int = -1,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = _BN,
        act_cfg: dict | None = _RELU,
        norm_eval: bool = False,
        with_cp: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if groups not in self.arch_settings:
            raise ValueError(f"groups must be one of {sorted(self.arch_settings)}, got {groups!r}")
        if not isinstance(widen_factor, (int, float)) or widen_factor <= 0:
            raise ValueError(f"widen_factor must be a positive number, got {widen_factor!r}")
        self.groups = groups
        self.out_indices = check_out_indices(out_indices, len(self.stage_blocks))
        self.frozen_stages = check_frozen_stages(frozen_stages, -1, len(self.stage_blocks))
        self.conv_cfg, self.norm_cfg, self.act_cfg = conv_cfg, norm_cfg, act_cfg
        self.norm_eval, self.with_cp = norm_eval, with_cp

        channels = [make_divisible(c * widen_factor, 8) for c in self.arch_settings[groups]]
        self.in_channels = int(24 * widen_factor)
        self.conv1 = ConvModule(
            3, self.in_channels, 3, stride=2, padding=1, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
            act_cfg=act_cfg,
        )  # fmt: skip
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layers = nn.ModuleList(
            self.make_layer(out, num_blocks, first_block=i == 0)
            for i, (out, num_blocks) in enumerate(zip(channels, self.stage_blocks, strict=True))
        )
        self._freeze_stages()

    def make_layer(
        self, out_channels: int, num_blocks: int, first_block: bool = False
    ) -> nn.Sequential:
        """A stage: one downsampling 'concat' unit, then ``num_blocks - 1`` 'add' units."""
        units = []
        for i in range(num_blocks):
            units.append(
                ShuffleUnit(
                    self.in_channels, out_channels, groups=self.groups,
                    first_block=first_block and i == 0, combine="concat" if i == 0 else "add",
                    conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg,
                    with_cp=self.with_cp,
                )
            )  # fmt: skip
            self.in_channels = out_channels
        return nn.Sequential(*units)

    def init_weights(self) -> None:
        super().init_weights()
        if isinstance(self.init_cfg, dict) and self.init_cfg.get("type") == "Pretrained":
            return
        shufflenet_init(self, norm_bias=1e-4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.maxpool(self.conv1(x))
        outs = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _freeze_stages(self) -> None:
        if self.frozen_stages >= 0:
            # MMPretrain stops the stem's gradients but leaves its BatchNorm in train mode
            for param in self.conv1.parameters():
                param.requires_grad = False
        for layer in self.layers[: self.frozen_stages]:
            layer.eval()
            for param in layer.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> ShuffleNetV1:
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self


def shufflenet_init(model: nn.Module, norm_bias: float) -> None:
    """The ShuffleNet papers' initialisation: the stem conv ~ N(0, 0.01), other convs
    ~ N(0, 1 / fan-in channels), norms weight 1 and bias ``norm_bias``, zero running mean."""
    from vistra.models.init import constant_init, normal_init  # torch-heavy; when used

    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            normal_init(m, mean=0, std=0.01 if "conv1" in name else 1.0 / m.weight.shape[1])
        elif isinstance(m, (_BatchNorm, nn.GroupNorm)):
            constant_init(m, val=1, bias=norm_bias)
            if isinstance(m, _BatchNorm) and m.running_mean is not None:
                nn.init.constant_(m.running_mean, 0)
