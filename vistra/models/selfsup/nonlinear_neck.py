"""``NonLinearNeck`` (MMPretrain): the MLP projector of SimCLR, BYOL and SimSiam.

Layout ``fc0 - bn0 - [relu - fc_i - bn_i]`` with ``num_layers - 1`` bracketed blocks; the
attribute names (``fc0``, ``bn0``, ``fc1``, ``bn1``, ...) are the checkpoint keys
(``neck.fc0.weight``, ``neck.bn1.running_var``, ...), as in MMPretrain.
"""

from __future__ import annotations

import torch
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers.norm import build_norm_layer
from vistra.registry import MODELS


def _norm_2d(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply ``norm`` to ``(N, C)`` features whatever its flavour.

    A ``BatchNorm2d`` (a ``norm_cfg=dict(type='BN')``) insists on
    4-D input, so it sees ``(N, C, 1, 1)``; the statistics are the same.
    """
    if isinstance(norm, nn.BatchNorm2d):
        return norm(x[:, :, None, None]).flatten(1)
    return norm(x)


@MODELS.register_module()
class NonLinearNeck(BaseModule):
    """MLP projection head with MMPretrain's arguments.

    ``with_bias`` puts biases in the hidden fc layers, ``with_last_bias`` in the last one;
    ``with_last_bn`` / ``with_last_bn_affine`` control the last norm layer. With
    ``with_avg_pool`` a feature map is averaged to a vector first. ``vit_backbone=True``
    takes the last item of a ViT's output (its class token) instead of the feature map.
    """

    def __init__(
        self,
        in_channels: int,
        hid_channels: int,
        out_channels: int,
        num_layers: int = 2,
        with_bias: bool = False,
        with_last_bn: bool = True,
        with_last_bn_affine: bool = True,
        with_last_bias: bool = False,
        with_avg_pool: bool = True,
        vit_backbone: bool = False,
        norm_cfg: dict = dict(type="SyncBN"),  # noqa: B006 (never mutated)
        init_cfg: dict | list[dict] | None = [  # noqa: B006 (copied by BaseModule)
            dict(type="Constant", val=1, layer=["_BatchNorm", "GroupNorm"])
        ],
    ) -> None:
        super().__init__(init_cfg)
        if num_layers < 1:
            raise ValueError(f"NonLinearNeck num_layers must be >= 1, got {num_layers}")
        self.with_avg_pool = with_avg_pool
        self.vit_backbone = vit_backbone
        if with_avg_pool:
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.relu = nn.ReLU(inplace=True)
        self.fc0 = nn.Linear(in_channels, hid_channels, bias=with_bias)
        self.bn0 = build_norm_layer(norm_cfg, hid_channels)[1]
        # (fc, norm or None) names of the bracketed blocks, in order
        self.fc_names: list[str] = []
        self.bn_names: list[str | None] = []
        for i in range(1, num_layers):
            last = i == num_layers - 1
            width = out_channels if last else hid_channels
            self.add_module(
                f"fc{i}", nn.Linear(hid_channels, width, bias=with_last_bias if last else with_bias)
            )
            self.fc_names.append(f"fc{i}")
            if last and not with_last_bn:
                self.bn_names.append(None)
                continue
            cfg = dict(norm_cfg, affine=with_last_bn_affine) if last else norm_cfg
            self.add_module(f"bn{i}", build_norm_layer(cfg, width)[1])
            self.bn_names.append(f"bn{i}")

    def forward(self, x: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor]:
        """One backbone output (a 1-tuple) -> a 1-tuple of ``(N, out_channels)``."""
        if len(x) != 1:
            raise ValueError(
                f"NonLinearNeck takes one backbone output, got {len(x)}; set the backbone's "
                "out_indices to a single stage (e.g. out_indices=(3,) for a ResNet)"
            )
        feat = x[0]
        if self.vit_backbone and isinstance(feat, (list, tuple)):
            feat = feat[-1]  # MMCls's [patch map, class token]: the class token
        if self.with_avg_pool:
            feat = self.avgpool(feat)
        feat = _norm_2d(self.bn0, self.fc0(feat.flatten(1)))
        for fc_name, bn_name in zip(self.fc_names, self.bn_names):
            feat = getattr(self, fc_name)(self.relu(feat))
            if bn_name is not None:
                feat = _norm_2d(getattr(self, bn_name), feat)
        return (feat,)
