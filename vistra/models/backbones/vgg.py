"""VGG backbone (`Very Deep Convolutional Networks for Large-Scale Image Recognition
<https://arxiv.org/abs/1409.1556>`_), with MMPretrain's arguments and keys.

Five stages of 3x3 ConvModules (64, 128, 256, 512, 512 channels), each closed by a 2x2
max pool; with ``num_classes > 0`` the three fully connected layers of the paper follow
(on the flattened 7x7 map of a 224x224 input, so that size is the only one they take).
``norm_cfg=dict(type='BN')`` gives the ``vgg*bn`` variants.

Keys: ``features.{k}.conv`` (+ ``.bn`` with a norm) where ``k`` counts convs and pools
together (pools have no parameters), and ``classifier.{0,3,6}`` (the linear layers).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from vistra.models.base import BaseModule
from vistra.models.layers import ConvModule
from vistra.models.utils.out_indices import parse_out_indices
from vistra.registry import MODELS

_DEFAULT_INIT = [
    dict(type="Kaiming", layer=["Conv2d"]),
    dict(type="Constant", val=1.0, layer=["_BatchNorm"]),
    dict(type="Normal", std=0.01, layer=["Linear"]),
]
_CHANNELS = (64, 128, 256, 512, 512)  # per stage


@MODELS.register_module()
class VGG(BaseModule):
    """VGG-11/13/16/19 (``depth``), optionally with its classifier.

    Args:
        depth: 11, 13, 16 or 19 (the convs per stage are ``arch_settings[depth]``).
        num_classes: > 0 adds the classifier and its output becomes index
            ``num_stages`` of ``out_indices``.
        num_stages: how many of the five stages to build.
        dilations: dilation of each stage's convs.
        out_indices: stages whose (pooled) maps are returned; ``None`` means the
            classifier's scores when ``num_classes > 0``, else the last stage.
        frozen_stages: freeze the first ``n`` stages (``-1``: none).
        conv_cfg / norm_cfg / act_cfg: of every ConvModule (no norm by default).
        norm_eval: keep BatchNorms in eval mode while training.
        ceil_mode: of the max pools.
        with_last_pool: keep the last stage's max pool.
    """

    arch_settings = {
        11: (1, 1, 2, 2, 2),
        13: (2, 2, 2, 2, 2),
        16: (2, 2, 3, 3, 3),
        19: (2, 2, 4, 4, 4),
    }

    def __init__(
        self,
        depth: int,
        num_classes: int = -1,
        num_stages: int = 5,
        dilations: Sequence[int] = (1, 1, 1, 1, 1),
        out_indices: Sequence[int] | None = None,
        frozen_stages: int = -1,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = dict(type="ReLU"),  # noqa: B006 (never mutated)
        norm_eval: bool = False,
        ceil_mode: bool = False,
        with_last_pool: bool = True,
        init_cfg: dict | list[dict] | None = _DEFAULT_INIT,  # copied by BaseModule
    ) -> None:
        super().__init__(init_cfg)
        if depth not in self.arch_settings:
            raise ValueError(f"VGG depth={depth!r} is invalid; valid: {sorted(self.arch_settings)}")
        if not isinstance(num_stages, int) or not 1 <= num_stages <= 5:
            raise ValueError(f"VGG num_stages must be in 1..5, got {num_stages!r}")
        if len(dilations) != num_stages:
            raise ValueError(
                f"VGG dilations {tuple(dilations)} must have num_stages={num_stages} entries"
            )
        self.stage_blocks = self.arch_settings[depth][:num_stages]
        self.num_classes = num_classes
        self.num_stages = num_stages
        self.norm_eval = norm_eval
        with_classifier = num_classes > 0
        if out_indices is None:
            out_indices = (num_stages,) if with_classifier else (num_stages - 1,)
        # index num_stages is the classifier's output, when there is one
        self.out_indices = parse_out_indices(
            out_indices, num_stages + int(with_classifier), "VGG", allow_negative=False
        )
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= num_stages:
            raise ValueError(
                f"VGG frozen_stages must be in -1..{num_stages}, got {frozen_stages!r}"
            )
        self.frozen_stages = frozen_stages

        layers: list[nn.Module] = []
        # [start, end) of each stage in ``features``, for outputs and freezing
        self.range_sub_modules: list[list[int]] = []
        in_channels = 3
        for i, num_blocks in enumerate(self.stage_blocks):
            start = len(layers)
            out_channels, dilation = _CHANNELS[i], dilations[i]
            for _ in range(num_blocks):
                with warnings.catch_warnings():
                    # upstream's convs keep their bias before the norm (the checkpoints
                    # have it): not worth a warning per conv
                    warnings.filterwarnings("ignore", message="Unnecessary conv bias")
                    conv = ConvModule(
                        in_channels, out_channels, 3, padding=dilation, dilation=dilation,
                        bias=True, conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg,
                    )  # fmt: skip
                layers.append(conv)
                in_channels = out_channels
            if with_last_pool or i < num_stages - 1:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=ceil_mode))
            self.range_sub_modules.append([start, len(layers)])
        self.features = nn.Sequential(*layers)
        if with_classifier:
            self.classifier = nn.Sequential(
                nn.Linear(512 * 7 * 7, 4096),
                nn.ReLU(True),
                nn.Dropout(),
                nn.Linear(4096, 4096),
                nn.ReLU(True),
                nn.Dropout(),
                nn.Linear(4096, num_classes),
            )
        self._freeze_stages()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = []
        for i, (start, end) in enumerate(self.range_sub_modules):
            for j in range(start, end):
                x = self.features[j](x)
            if i in self.out_indices:
                outs.append(x)
        if self.num_classes > 0:
            x = self.classifier(x.flatten(1))
            if self.num_stages in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _freeze_stages(self) -> None:
        for start, end in self.range_sub_modules[: max(self.frozen_stages, 0)]:
            for j in range(start, end):
                module = self.features[j]
                module.eval()
                for param in module.parameters():
                    param.requires_grad = False

    def train(self, mode: bool = True) -> VGG:
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self
