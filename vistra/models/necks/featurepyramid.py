"""``Feature2Pyramid``: MMSegmentation's neck that makes a four-level pyramid out of four
same-stride ViT (BEiT / MAE) feature maps, by transposed-conv upsampling and max-pool
downsampling (`BEiT <https://arxiv.org/abs/2106.08254>`_'s segmentation recipe).

Keys: ``upsample_4x.0`` (ConvTranspose2d 2x2/2), ``upsample_4x.1`` (the norm),
``upsample_4x.3`` (ConvTranspose2d; ``.2`` is GELU), ``upsample_2x.0``; ``identity`` and
the max pools hold no parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers.norm import build_norm_layer
from vistra.registry import MODELS

VALID_RESCALES = (4, 2, 1, 0.5, 0.25)


@MODELS.register_module()
class Feature2Pyramid(BaseModule):
    """One operation per entry of ``rescales``: 4 (two transposed convs with norm and
    GELU between), 2 (one transposed conv), 1 (identity), 0.5 / 0.25 (max pooling).

    As upstream, the inputs are mapped by position, not by the ``rescales`` values: with a
    4 among them the operations are (4x, 2x, 1x, 0.5x), otherwise (2x, 1x, 0.5x, 0.25x).
    """

    def __init__(
        self,
        embed_dim: int,
        rescales: Sequence[float] = (4, 2, 1, 0.5),
        norm_cfg: dict = dict(type="SyncBN", requires_grad=True),  # noqa: B006 (never mutated)
    ) -> None:
        super().__init__()
        bad = [k for k in rescales if k not in VALID_RESCALES]
        if bad:
            raise KeyError(
                f"Feature2Pyramid rescales {list(rescales)}: {bad} not in {VALID_RESCALES}"
            )
        self.rescales = list(rescales)
        self.upsample_4x = None
        for k in self.rescales:
            if k == 4:
                self.upsample_4x = nn.Sequential(
                    nn.ConvTranspose2d(embed_dim, embed_dim, kernel_size=2, stride=2),
                    build_norm_layer(norm_cfg, embed_dim)[1],
                    nn.GELU(),
                    nn.ConvTranspose2d(embed_dim, embed_dim, kernel_size=2, stride=2),
                )
            elif k == 2:
                self.upsample_2x = nn.Sequential(
                    nn.ConvTranspose2d(embed_dim, embed_dim, kernel_size=2, stride=2)
                )
            elif k == 1:
                self.identity = nn.Identity()
            elif k == 0.5:
                self.downsample_2x = nn.MaxPool2d(kernel_size=2, stride=2)
            else:
                self.downsample_4x = nn.MaxPool2d(kernel_size=4, stride=4)

    def forward(self, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        if len(inputs) != len(self.rescales):
            raise ValueError(
                f"Feature2Pyramid expects {len(self.rescales)} inputs (rescales="
                f"{self.rescales}), got {len(inputs)}"
            )
        names = (
            ("upsample_4x", "upsample_2x", "identity", "downsample_2x")
            if self.upsample_4x is not None
            else ("upsample_2x", "identity", "downsample_2x", "downsample_4x")
        )
        return tuple(getattr(self, names[i])(x) for i, x in enumerate(inputs))
