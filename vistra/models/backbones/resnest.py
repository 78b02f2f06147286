"""MMPretrain's ResNeSt backbone (`ResNeSt: Split-Attention Networks
<https://arxiv.org/abs/2004.08955>`__), the plain registry entry.

A ResNetV1d (deep stem of three 3x3 convs, average-pooled strided shortcuts) whose
bottleneck 3x3 conv is a split-attention conv: ``radix`` grouped branches are summed,
pooled, squeezed to ``max(width * radix // reduction_factor, 32)`` channels and expanded
to a softmax over the branches (a sigmoid when ``radix=1``) that weights their sum. With
``avg_down_stride`` a strided block runs that conv at stride 1 and downsamples after it
with a 3x3 average pool. The block is MMSegmentation's (``resnest_mmseg.py``, the same
computation and the same block keys); the two ``ResNeSt`` entries differ by the ResNet
around it (MMPretrain's nested stem, ``stem.{0,1,2}.conv`` / ``.bn``, against
MMSegmentation's flat ``stem.{0..8}``), by ``width_per_group`` (MMSegmentation's
``base_width``) and by the depths.

Arch table (``depth``): 50 (3, 4, 6, 3), 101 (3, 4, 23, 3), 152 (3, 8, 36, 3),
200 (3, 24, 36, 3), 269 (3, 30, 48, 8) bottlenecks.

Keys per block, besides ResNetV1d's stem and ``downsample.{0,1}`` (after the parameterless
pool of strided shortcuts) and ``conv1``/``bn1``, ``conv3``/``bn3``: ``conv2.conv``
(grouped, ``radix * width`` outputs), ``conv2.bn0``, ``conv2.fc1`` and ``conv2.fc2`` (1x1
convs with bias), ``conv2.bn1``; there is no ``bn2``.
"""

from __future__ import annotations

from vistra.models.backbones.resnest_mmseg import Bottleneck as _SplitAttentionBottleneck
from vistra.models.backbones.resnet import ResLayer, ResNetV1d
from vistra.models.backbones.resnext import check_depth, check_groups, grouped_width
from vistra.registry import MODELS


class Bottleneck(_SplitAttentionBottleneck):
    """MMSegmentation's ResNeSt bottleneck under MMPretrain's argument names: the
    split-attention width is ResNeXt's (``groups * width_per_group`` per ``base_channels``
    of a ResNet bottleneck's width), which must then be a multiple of ``base_channels``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        groups: int = 1,
        width_per_group: int = 4,
        base_channels: int = 64,
        radix: int = 2,
        reduction_factor: int = 4,
        avg_down_stride: bool = True,
        **kwargs,
    ) -> None:
        # MMSegmentation floors planes * base_width / base_channels, MMPretrain demands an
        # exact multiple; with the check the two widths agree
        grouped_width(
            out_channels, kwargs.get("expansion", 4), groups, width_per_group, base_channels
        )
        super().__init__(
            in_channels, out_channels, groups=groups, base_width=width_per_group,
            base_channels=base_channels, radix=radix, reduction_factor=reduction_factor,
            avg_down_stride=avg_down_stride, **kwargs,
        )  # fmt: skip
        self.groups, self.width_per_group = groups, width_per_group


@MODELS.register_module()
class ResNeSt(ResNetV1d):
    """ResNeSt backbone (`paper <https://arxiv.org/abs/2004.08955>`__).

    ``groups``/``width_per_group`` set the split-attention width, ``radix`` the branches,
    ``reduction_factor`` the attention squeeze, ``avg_down_stride`` strides by average
    pooling; every other argument is ResNetV1d's (``depth``, ``stem_channels``,
    ``out_indices``, ``frozen_stages``, ``norm_eval``, ...).
    """

    arch_settings = {
        50: (Bottleneck, (3, 4, 6, 3)),
        101: (Bottleneck, (3, 4, 23, 3)),
        152: (Bottleneck, (3, 8, 36, 3)),
        200: (Bottleneck, (3, 24, 36, 3)),
        269: (Bottleneck, (3, 30, 48, 8)),
    }

    def __init__(
        self,
        depth: int,
        groups: int = 1,
        width_per_group: int = 4,
        radix: int = 2,
        reduction_factor: int = 4,
        avg_down_stride: bool = True,
        **kwargs,
    ) -> None:
        check_depth("ResNeSt", depth, self.arch_settings)
        check_groups("ResNeSt", groups, width_per_group)
        for name, value in (("radix", radix), ("reduction_factor", reduction_factor)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ResNeSt {name} must be a positive int, got {value!r}")
        # read by make_res_layer during the base constructor
        self.groups, self.width_per_group = groups, width_per_group
        self.radix, self.reduction_factor = radix, reduction_factor
        self.avg_down_stride = avg_down_stride
        super().__init__(depth=depth, **kwargs)

    def make_res_layer(self, **kwargs) -> ResLayer:
        return ResLayer(
            groups=self.groups,
            width_per_group=self.width_per_group,
            base_channels=self.base_channels,
            radix=self.radix,
            reduction_factor=self.reduction_factor,
            avg_down_stride=self.avg_down_stride,
            **kwargs,
        )
