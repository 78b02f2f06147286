"""ConvMixer backbone (`Patches Are All You Need? <https://arxiv.org/abs/2201.09792>`_),
with MMPretrain's arguments and keys.

A patchify stem, then ``depth`` layers at one resolution, each a residual depthwise conv
(spatial mixing) followed by a pointwise conv (channel mixing), every conv followed by the
activation and a BatchNorm. The arch names read ``<embed_dims>/<depth>``.

Keys: ``stem.{0,2}`` (patch conv, norm), ``stages.{i}.0.fn.{0,2}`` (the residual depthwise
conv and its norm) and ``stages.{i}.{1,3}`` (the pointwise conv and its norm). One
activation module (``act``) is shared by every position, as upstream, so an activation with
parameters (PReLU) has one set of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers import build_activation_layer, build_norm_layer
from vistra.models.utils.arch import pick_arch
from vistra.models.utils.out_indices import parse_out_indices
from vistra.registry import MODELS


class Residual(nn.Module):
    """``x + fn(x)``."""

    def __init__(self, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x) + x


@MODELS.register_module()
class ConvMixer(BaseModule):
    """ConvMixer. ``arch`` is a name of ``arch_settings`` or a dict with ``embed_dims``,
    ``depth``, ``patch_size`` and ``kernel_size``. ``out_indices`` picks layers (``-1``:
    the last) whose ``(N, embed_dims, H / patch, W / patch)`` maps are returned;
    ``frozen_stages=n`` freezes the first ``n`` layers (the stem stays trainable, as
    upstream)."""

    arch_settings = {
        "768/32": {"embed_dims": 768, "depth": 32, "patch_size": 7, "kernel_size": 7},
        "1024/20": {"embed_dims": 1024, "depth": 20, "patch_size": 14, "kernel_size": 9},
        "1536/20": {"embed_dims": 1536, "depth": 20, "patch_size": 7, "kernel_size": 9},
    }

    def __init__(
        self,
        arch: str | dict = "768/32",
        in_channels: int = 3,
        norm_cfg: dict = dict(type="BN"),  # noqa: B006 (never mutated)
        act_cfg: dict = dict(type="GELU"),  # noqa: B006 (never mutated)
        out_indices: int | Sequence[int] = -1,
        frozen_stages: int = 0,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        arch = pick_arch(
            arch,
            self.arch_settings,
            "ConvMixer",
            ("embed_dims", "depth", "patch_size", "kernel_size"),
        )
        self.embed_dims, self.depth = arch["embed_dims"], arch["depth"]
        self.patch_size, self.kernel_size = arch["patch_size"], arch["kernel_size"]
        self.out_indices = parse_out_indices(out_indices, self.depth, "ConvMixer")
        if not isinstance(frozen_stages, int) or not 0 <= frozen_stages <= self.depth:
            raise ValueError(
                f"ConvMixer frozen_stages must be in 0..{self.depth}, got {frozen_stages!r}"
            )
        self.frozen_stages = frozen_stages

        dim = self.embed_dims
        self.act = build_activation_layer(act_cfg)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, dim, kernel_size=self.patch_size, stride=self.patch_size),
            self.act,
            build_norm_layer(norm_cfg, dim)[1],
        )
        self.stages = nn.Sequential(
            *[
                nn.Sequential(
                    Residual(
                        nn.Sequential(
                            nn.Conv2d(dim, dim, self.kernel_size, groups=dim, padding="same"),
                            self.act,
                            build_norm_layer(norm_cfg, dim)[1],
                        )
                    ),
                    nn.Conv2d(dim, dim, kernel_size=1),
                    self.act,
                    build_norm_layer(norm_cfg, dim)[1],
                )
                for _ in range(self.depth)
            ]
        )
        self._freeze_stages()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _freeze_stages(self) -> None:
        for stage in self.stages[: self.frozen_stages]:
            stage.eval()
            for param in stage.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> ConvMixer:
        super().train(mode)
        self._freeze_stages()
        return self
