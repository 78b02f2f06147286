"""ShuffleNetV2 backbone (`ShuffleNet V2: Practical Guidelines for Efficient CNN
Architecture Design <https://arxiv.org/abs/1807.11164>`_), with MMPretrain's arguments and
keys.

Each unit splits its channels in two, transforms one half (1x1, depthwise 3x3, 1x1) and
concatenates it to the other, then shuffles the two groups. A stage's first unit
downsamples and transforms both halves (``branch1`` on the whole input beside
``branch2``).

Keys: ``conv1.{conv,bn}`` (the stem), ``layers.{0..2}.{j}.branch1.{0,1}`` (first units
only) and ``.branch2.{0,1,2}`` (each ``{conv,bn}``), ``layers.3.{conv,bn}`` (the final 1x1
conv).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from vistra.models.backbones.mobilenet_v2 import check_frozen_stages, check_out_indices
from vistra.models.backbones.shufflenet_v1 import shufflenet_init
from vistra.models.base import BaseModule
from vistra.models.layers.channel_shuffle import channel_shuffle
from vistra.models.layers.conv_module import ConvModule
from vistra.registry import MODELS

_BN = dict(type="BN")
_RELU = dict(type="ReLU")


class InvertedResidual(nn.Module):
    """A ShuffleNetV2 unit. With ``stride == 1`` it needs ``in_channels == out_channels``
    (one half passes through); with ``stride > 1`` both halves come from the whole input."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = _BN,
        act_cfg: dict | None = _RELU,
        with_cp: bool = False,
    ) -> None:
        super().__init__()
        self.stride, self.with_cp = stride, with_cp
        branch = out_channels // 2
        if stride == 1 and in_channels != branch * 2:
            raise ValueError(
                "ShuffleNetV2 InvertedResidual with stride 1 needs in_channels == 2 * "
                f"(out_channels // 2), got {in_channels} -> {out_channels}"
            )
        common = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        if stride > 1:
            self.branch1 = nn.Sequential(
                ConvModule(
                    in_channels, in_channels, 3, stride=stride, padding=1, groups=in_channels,
                    act_cfg=None, **common,
                ),
                ConvModule(in_channels, branch, 1, act_cfg=act_cfg, **common),
            )  # fmt: skip
        self.branch2 = nn.Sequential(
            ConvModule(in_channels if stride > 1 else branch, branch, 1, act_cfg=act_cfg, **common),
            ConvModule(
                branch, branch, 3, stride=stride, padding=1, groups=branch, act_cfg=None, **common
            ),
            ConvModule(branch, branch, 1, act_cfg=act_cfg, **common),
        )

    def _inner_forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        else:
            kept = (x.shape[1] + 1) // 2
            out = torch.cat((x[:, :kept], self.branch2(x[:, kept:])), dim=1)
        return channel_shuffle(out, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return checkpoint(self._inner_forward, x, use_reentrant=False)
        return self._inner_forward(x)


@MODELS.register_module()
class ShuffleNetV2(BaseModule):
    """ShuffleNetV2: a strided 3x3 stem (24 channels) and max pool, three stages of 4, 8 and
    4 units, and a final 1x1 conv, returned as layers 0..3 (3: the final conv).

    ``widen_factor`` (0.5, 1.0, 1.5 or 2.0) picks the widths (the paper's Table 5).
    ``frozen_stages=n`` (``-1``: none) stops the stem's gradients and freezes layers
    ``0..n-1`` (in eval mode); ``norm_eval`` keeps every BatchNorm in eval mode while
    training.
    """

    # stage widths and the final conv's, for each widen_factor
    arch_settings = {
        0.5: (48, 96, 192, 1024),
        1.0: (116, 232, 464, 1024),
        1.5: (176, 352, 704, 1024),
        2.0: (244, 488, 976, 2048),
    }
    stage_blocks = (4, 8, 4)

    def __init__(
        self,
        widen_factor: float = 1.0,
        out_indices: int | Sequence[int] = (3,),
        frozen_stages: int = -1,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = _BN,
        act_cfg: dict | None = _RELU,
        norm_eval: bool = False,
        with_cp: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if widen_factor not in self.arch_settings:
            raise ValueError(
                f"widen_factor must be one of {sorted(self.arch_settings)}, got {widen_factor!r}"
            )
        num_layers = len(self.stage_blocks) + 1
        self.out_indices = check_out_indices(out_indices, num_layers)
        self.frozen_stages = check_frozen_stages(frozen_stages, -1, num_layers)
        self.conv_cfg, self.norm_cfg, self.act_cfg = conv_cfg, norm_cfg, act_cfg
        self.norm_eval, self.with_cp = norm_eval, with_cp

        *channels, final = self.arch_settings[widen_factor]
        common = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.in_channels = 24
        self.conv1 = ConvModule(3, self.in_channels, 3, stride=2, padding=1, **common)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layers = nn.ModuleList(
            self._make_layer(out, num_blocks)
            for out, num_blocks in zip(channels, self.stage_blocks, strict=True)
        )
        self.layers.append(ConvModule(self.in_channels, final, 1, **common))
        self._freeze_stages()

    def _make_layer(self, out_channels: int, num_blocks: int) -> nn.Sequential:
        units = []
        for i in range(num_blocks):
            units.append(
                InvertedResidual(
                    self.in_channels, out_channels, stride=2 if i == 0 else 1,
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
        # MMPretrain 1.2.0 means to set the norms' bias to 1e-4 here but its call leaves
        # them as built (weight 1, bias 0); 0 keeps its training runs reproducible
        shufflenet_init(self, norm_bias=0.0)

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

    def train(self, mode: bool = True) -> ShuffleNetV2:
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self
