"""MMSegmentation's ResNet, ResNetV1c and ResNetV1d (registry scope ``mmseg``).

The same networks as ``resnet.py`` (and the same code), with MMSegmentation 1.x's
arguments, defaults and key layout, so that MMSegmentation checkpoints load strictly and
what vistra saves loads strictly into MMSegmentation:

- the deep stem is a flat ``Sequential`` (conv, norm, ReLU) x 3: keys ``stem.{0,3,6}``
  (convs) and ``stem.{1,4,7}`` (norms), where MMPretrain nests ConvModules
  (``stem.{0,1,2}.conv`` / ``.bn``);
- with ``avg_down`` every shortcut starts with an average pool, an identity one
  (kernel 1) in stride-1 stages: keys ``layer1.0.downsample.1`` (conv) and ``.2`` (norm),
  where MMPretrain has ``.0`` and ``.1``;
- ``out_indices`` defaults to all four stages; there is no ``expansion`` or
  ``drop_path_rate``; ``zero_init_residual`` applies only with the default ``init_cfg``
  (MMSegmentation sets it through the blocks' init configs), never with ``init_cfg`` or
  ``pretrained`` given, and giving both of those is an error.

Checkpoints in MMPretrain's layout (vistra saved segmentation ResNets that way before
these variants existed) still load: the keys are renamed and every rename is listed
(``remap_state_dict``, see ``vistra.models.layers.key_remap``).
"""

from __future__ import annotations

from collections.abc import Sequence

from vistra.models.backbones.resnet import _DEFAULT_INIT, ResNet, _no_override
from vistra.registry import MODELS


@MODELS.register_module(name="ResNet", scope="mmseg")
class SegResNet(ResNet):
    """MMSegmentation's ``ResNet`` (`paper <https://arxiv.org/abs/1512.03385>`__)."""

    flat_stem = True
    pool_every_shortcut = True

    def __init__(
        self,
        depth: int,
        in_channels: int = 3,
        stem_channels: int = 64,
        base_channels: int = 64,
        num_stages: int = 4,
        strides: Sequence[int] = (1, 2, 2, 2),
        dilations: Sequence[int] = (1, 1, 1, 1),
        out_indices: Sequence[int] = (0, 1, 2, 3),
        style: str = "pytorch",
        deep_stem: bool = False,
        avg_down: bool = False,
        frozen_stages: int = -1,
        conv_cfg: dict | None = None,
        norm_cfg: dict = dict(type="BN", requires_grad=True),  # noqa: B006 (never mutated)
        norm_eval: bool = False,
        dcn: dict | None = None,
        stage_with_dcn: Sequence[bool] = (False, False, False, False),
        plugins: list[dict] | None = None,
        multi_grid: Sequence[int] | None = None,
        contract_dilation: bool = False,
        with_cp: bool = False,
        zero_init_residual: bool = True,
        pretrained: str | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        if init_cfg and pretrained:
            raise ValueError(
                "ResNet: init_cfg and pretrained cannot be set at the same time; "
                "use init_cfg=dict(type='Pretrained', checkpoint=...)"
            )
        default_init = init_cfg is None and pretrained is None
        super().__init__(
            depth, in_channels=in_channels, stem_channels=stem_channels,
            base_channels=base_channels, num_stages=num_stages, strides=strides,
            dilations=dilations, out_indices=out_indices, style=style, deep_stem=deep_stem,
            avg_down=avg_down, frozen_stages=frozen_stages, conv_cfg=conv_cfg,
            norm_cfg=norm_cfg, norm_eval=norm_eval, with_cp=with_cp,
            zero_init_residual=zero_init_residual and default_init,
            init_cfg=_DEFAULT_INIT if init_cfg is None else init_cfg,
            contract_dilation=contract_dilation, multi_grid=multi_grid, plugins=plugins,
            dcn=dcn, stage_with_dcn=stage_with_dcn, pretrained=pretrained,
        )  # fmt: skip


@MODELS.register_module(name="ResNetV1c", scope="mmseg")
class SegResNetV1c(SegResNet):
    """MMSegmentation's ``ResNetV1c``: the deep (three 3x3 convs) stem."""

    def __init__(self, **kwargs) -> None:
        _no_override(kwargs, "ResNetV1c")
        super().__init__(deep_stem=True, avg_down=False, **kwargs)


@MODELS.register_module(name="ResNetV1d", scope="mmseg")
class SegResNetV1d(SegResNet):
    """MMSegmentation's ``ResNetV1d``: deep stem and average-pooled shortcuts."""

    def __init__(self, **kwargs) -> None:
        _no_override(kwargs, "ResNetV1d")
        super().__init__(deep_stem=True, avg_down=True, **kwargs)
