"""``CSRAClsHead`` (MMPretrain): class-specific residual attention, `Residual Attention: A
Simple but Effective Method for Multi-Label Recognition <https://arxiv.org/abs/2108.02456>`_
(ICCV 2021). A multi-label head on a feature map.

Each of ``num_heads`` heads scores every location for every class with a 1x1 conv whose
per-class weight vectors are normalised to unit length, then adds to the average-pooled
score ``lam`` times an attention-pooled one: the softmax over locations at temperature
``T`` weights the scores (``T = 99`` stands for T -> infinity, i.e. max pooling). The heads'
temperatures are the paper's: 1 -> [1], 2 -> [1, 99], 4 -> [1, 2, 4, 99],
6 -> [1, 2, 3, 4, 5, 99], 8 -> [1, 2, 3, 4, 5, 6, 7, 99]. Keys: ``csra_heads.{i}.head.weight``.
"""

from __future__ import annotations

import torch
from torch import nn

from vistra.models.heads.multi_label_head import _BCE, MultiLabelClsHead
from vistra.registry import MODELS

TEMPERATURES = {
    1: [1],
    2: [1, 99],
    4: [1, 2, 4, 99],
    6: [1, 2, 3, 4, 5, 99],
    8: [1, 2, 3, 4, 5, 6, 7, 99],
}
MAX_POOL_T = 99  # the paper's stand-in for an infinite temperature


class CSRAModule(nn.Module):
    """One residual-attention head at temperature ``T``."""

    def __init__(self, num_classes: int, in_channels: int, T: int, lam: float) -> None:  # noqa: N803
        super().__init__()
        self.T, self.lam = T, lam
        self.head = nn.Conv2d(in_channels, num_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = self.head.weight.norm(dim=1, keepdim=True).transpose(0, 1)  # (1, C, 1, 1)
        score = (self.head(x) / norm).flatten(2)  # (N, C, HW)
        base = score.mean(dim=2)
        if self.T == MAX_POOL_T:
            attended = score.max(dim=2).values
        else:
            attended = (score * torch.softmax(score * self.T, dim=2)).sum(dim=2)
        return base + self.lam * attended


@MODELS.register_module()
class CSRAClsHead(MultiLabelClsHead):
    """Sum of ``num_heads`` :class:`CSRAModule` heads on ``feats[-1]`` (N, C, H, W); loss and
    predictions as :class:`MultiLabelClsHead`."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        num_heads: int,
        lam: float,
        loss: dict | nn.Module = _BCE,
        thr: float | None = None,
        topk: int | None = None,
        init_cfg: dict | list[dict] | None = dict(type="Normal", layer="Linear", std=0.01),  # noqa: B006
    ) -> None:
        super().__init__(loss=loss, thr=thr, topk=topk, init_cfg=init_cfg)
        if num_heads not in TEMPERATURES:
            raise ValueError(f"CSRAClsHead num_heads={num_heads!r}; valid: {sorted(TEMPERATURES)}")
        if num_classes <= 0:
            raise ValueError(f"num_classes={num_classes} must be a positive integer")
        self.num_classes, self.in_channels, self.lam = num_classes, in_channels, lam
        self.csra_heads = nn.ModuleList(
            CSRAModule(num_classes, in_channels, t, lam) for t in TEMPERATURES[num_heads]
        )

    def forward(self, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x = self.pre_logits(feats)
        if x.dim() != 4:
            raise ValueError(
                f"CSRAClsHead needs a (N, C, H, W) feature map (no neck), got {tuple(x.shape)}"
            )
        return sum(head(x) for head in self.csra_heads)
