"""Distilled DeiT backbone, `Training data-efficient image transformers & distillation
through attention <https://arxiv.org/abs/2012.12877>`_, with MMPretrain's arguments and keys.

The plain DeiT models are :class:`~vistra.models.backbones.vision_transformer.VisionTransformer`
with a ``deit-*`` arch; the distilled ones add a second learned token, the distillation
token, right after the class token. Keys are the ViT's plus ``dist_token`` ``(1, 1, C)``;
``pos_embed`` has two extra rows ``(1, 2 + h*w, C)``. With ``out_type='cls_token'`` each
output is the pair ``(class token, distillation token)``, which ``DeiTClsHead`` averages
over its two classifiers.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vistra.models.backbones.vision_transformer import VisionTransformer, _has_pretrained
from vistra.models.layers.transformer import resize_pos_embed
from vistra.registry import MODELS


@MODELS.register_module()
class DistilledVisionTransformer(VisionTransformer):
    """DeiT with a distillation token; ``arch`` and the other arguments as
    :class:`VisionTransformer` (``with_cls_token`` is always True: the class token is
    part of the model)."""

    num_extra_tokens = 2  # the class token and the distillation token

    def __init__(self, arch: str | dict = "deit-base", **kwargs: Any) -> None:
        if not kwargs.pop("with_cls_token", True):
            raise ValueError("DistilledVisionTransformer: with_cls_token must be True")
        super().__init__(arch=arch, with_cls_token=True, **kwargs)
        self.dist_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims))

    def init_weights(self) -> None:
        if self.is_init:
            return
        super().init_weights()
        if not _has_pretrained(self.init_cfg):
            nn.init.trunc_normal_(self.dist_token, std=0.02)

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        # [class, distillation, patches]; as upstream, no pre_norm here
        batch = x.shape[0]
        x, patch_resolution = self.patch_embed(x)
        tokens = (self.cls_token.expand(batch, -1, -1), self.dist_token.expand(batch, -1, -1))
        x = torch.cat((*tokens, x), dim=1)
        x = x + resize_pos_embed(
            self.pos_embed,
            self.patch_resolution,
            patch_resolution,
            mode=self.interpolate_mode,
            num_extra_tokens=self.num_extra_tokens,
        )
        return self.drop_after_pos(x), patch_resolution

    def _format_output(  # type: ignore[override]
        self, x: torch.Tensor, hw: tuple[int, int]
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.out_type == "cls_token":
            return x[:, 0], x[:, 1]
        return super()._format_output(x, hw)
