"""SEResNeXt backbone (`Squeeze-and-Excitation Networks <https://arxiv.org/abs/1709.01507>`__
on `ResNeXt <https://arxiv.org/abs/1611.05431>`__), with MMPretrain's arguments and keys.

SEResNet's blocks (``seresnet.py``) with ResNeXt's grouped 3x3 convs (``resnext.py``):
``groups`` paths of ``width_per_group`` channels in the first stage, doubling per stage.

Arch table (``depth``): 50 (3, 4, 6, 3), 101 (3, 4, 23, 3), 152 (3, 8, 36, 3) bottlenecks.

Keys: SEResNet's (ResNet's plus ``layer{i}.{j}.se_layer.conv{1,2}.conv``), with ResNeXt's
widths and grouped ``conv2`` weights.

MMPretrain 1.2.0's SEResNeXt never hands ``se_ratio`` to its blocks: they squeeze by 16
whatever the argument says. vistra builds the same layers (so that its checkpoints load
both ways) and warns when another ratio is asked for.
"""

from __future__ import annotations

import warnings

from vistra.models.backbones.resnet import ResLayer
from vistra.models.backbones.resnext import check_groups, grouped_width
from vistra.models.backbones.seresnet import SEBottleneck as _SEBottleneck
from vistra.models.backbones.seresnet import SEResNet
from vistra.registry import MODELS

# the squeeze ratio MMPretrain's SEResNeXt blocks get, whatever ``se_ratio`` is
_BUILT_SE_RATIO = 16


class SEBottleneck(_SEBottleneck):
    """SEResNet's bottleneck with a ``groups``-grouped 3x3 conv of ResNeXt's width."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        base_channels: int = 64,
        groups: int = 32,
        width_per_group: int = 4,
        se_ratio: int = 16,
        expansion: int = 4,
        **kwargs,
    ) -> None:
        mid = grouped_width(out_channels, expansion, groups, width_per_group, base_channels)
        super().__init__(
            in_channels, out_channels, se_ratio=se_ratio, expansion=expansion, groups=groups,
            mid_channels=mid, **kwargs,
        )  # fmt: skip
        self.width_per_group = width_per_group


@MODELS.register_module()
class SEResNeXt(SEResNet):
    """SEResNeXt backbone: ``groups``/``width_per_group`` as ResNeXt's, ``se_ratio`` as
    SEResNet's; every other argument is ResNet's."""

    arch_settings = {
        50: (SEBottleneck, (3, 4, 6, 3)),
        101: (SEBottleneck, (3, 4, 23, 3)),
        152: (SEBottleneck, (3, 8, 36, 3)),
    }

    def __init__(self, depth: int, groups: int = 32, width_per_group: int = 4, **kwargs) -> None:
        check_groups("SEResNeXt", groups, width_per_group)
        se_ratio = kwargs.get("se_ratio", _BUILT_SE_RATIO)
        if se_ratio != _BUILT_SE_RATIO:
            warnings.warn(
                f"SEResNeXt(se_ratio={se_ratio!r}) builds SE layers of ratio "
                f"{_BUILT_SE_RATIO}, as MMPretrain 1.2.0 does (its SEResNeXt ignores se_ratio); "
                "the checkpoints of such configs have ratio-16 layers",
                UserWarning,
                stacklevel=2,
            )
        # read by make_res_layer during the base constructor
        self.groups, self.width_per_group = groups, width_per_group
        super().__init__(depth=depth, **kwargs)

    def make_res_layer(self, **kwargs) -> ResLayer:
        return ResLayer(
            groups=self.groups,
            width_per_group=self.width_per_group,
            base_channels=self.base_channels,
            se_ratio=_BUILT_SE_RATIO,
            **kwargs,
        )
