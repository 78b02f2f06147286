"""ResNeXt backbone (`Aggregated Residual Transformations for Deep Neural Networks
<https://arxiv.org/abs/1611.05431>`__), with MMPretrain's arguments and checkpoint keys.

A ResNet whose bottleneck 3x3 conv is split into ``groups`` paths of ``width_per_group``
channels each ("32x4d": 32 groups of 4 channels in the first stage). The inner width of a
block is ``groups * width_per_group * (out_channels / expansion) / base_channels``: it
doubles from stage to stage as a ResNet's does.

Arch table (``depth``): 50 (3, 4, 6, 3), 101 (3, 4, 23, 3), 152 (3, 8, 36, 3) bottlenecks.

Keys: those of :class:`~vistra.models.backbones.resnet.ResNet` (``conv1``/``bn1`` stem,
``layer{i}.{j}.conv{1,2,3}`` / ``bn{1,2,3}`` / ``downsample.{0,1}``); only the widths and
the grouped ``conv2`` weights (``[mid, mid // groups, 3, 3]``) differ.

The block and :func:`grouped_width` are shared by SEResNeXt, RegNet and CSPResNeXt.
"""

from __future__ import annotations

from vistra.models.backbones.resnet import Bottleneck as _Bottleneck
from vistra.models.backbones.resnet import ResLayer, ResNet
from vistra.registry import MODELS


def grouped_width(
    out_channels: int, expansion: int, groups: int, width_per_group: int, base_channels: int
) -> int:
    """The inner width of a ResNeXt bottleneck: a ResNet's ``out_channels // expansion``,
    rescaled by ``groups * width_per_group / base_channels`` when the conv is grouped."""
    mid = out_channels // expansion
    if groups == 1:
        return mid  # a plain ResNet bottleneck, whatever width_per_group says
    if mid % base_channels:
        raise ValueError(
            f"a grouped bottleneck's width {mid} (out_channels={out_channels} // "
            f"expansion={expansion}) must be a multiple of base_channels={base_channels}"
        )
    return groups * width_per_group * mid // base_channels


class Bottleneck(_Bottleneck):
    """ResNet's bottleneck with a ``groups``-grouped 3x3 conv of :func:`grouped_width`
    channels."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        base_channels: int = 64,
        groups: int = 32,
        width_per_group: int = 4,
        expansion: int = 4,
        **kwargs,
    ) -> None:
        mid = grouped_width(out_channels, expansion, groups, width_per_group, base_channels)
        super().__init__(
            in_channels, out_channels, expansion=expansion, groups=groups, mid_channels=mid,
            **kwargs,
        )  # fmt: skip
        self.width_per_group = width_per_group


def check_groups(family: str, groups: int, width_per_group: int) -> None:
    """``groups`` and ``width_per_group`` of a ResNeXt-like backbone are positive ints."""
    for name, value in (("groups", groups), ("width_per_group", width_per_group)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{family} {name} must be a positive int, got {value!r}")


def check_depth(family: str, depth: int, table: dict) -> None:
    """A ``depth`` outside the family's arch table, named with the valid ones (ResNet's own
    check raises a KeyError, as MMPretrain's does; the relatives raise ValueError)."""
    if depth not in table:
        raise ValueError(f"depth={depth!r} is not a {family} depth; valid: {sorted(table)}")


@MODELS.register_module()
class ResNeXt(ResNet):
    """ResNeXt backbone (`paper <https://arxiv.org/abs/1611.05431>`__).

    ``groups`` and ``width_per_group`` set the grouped 3x3 convs (``32x4d`` is
    ``groups=32, width_per_group=4``); every other argument is ResNet's (``depth``,
    ``out_indices``, ``frozen_stages``, ``norm_eval``, ``deep_stem``, ``avg_down``, ...).
    """

    arch_settings = {
        50: (Bottleneck, (3, 4, 6, 3)),
        101: (Bottleneck, (3, 4, 23, 3)),
        152: (Bottleneck, (3, 8, 36, 3)),
    }

    def __init__(self, depth: int, groups: int = 32, width_per_group: int = 4, **kwargs) -> None:
        check_depth("ResNeXt", depth, self.arch_settings)
        check_groups("ResNeXt", groups, width_per_group)
        # read by make_res_layer during the base constructor (plain attributes may be set
        # before nn.Module.__init__)
        self.groups, self.width_per_group = groups, width_per_group
        super().__init__(depth=depth, **kwargs)

    def make_res_layer(self, **kwargs) -> ResLayer:
        return ResLayer(
            groups=self.groups,
            width_per_group=self.width_per_group,
            base_channels=self.base_channels,
            **kwargs,
        )
