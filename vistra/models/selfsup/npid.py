"""NPID: non-parametric instance discrimination with a memory bank (MMSelfSup 1.x).

Wu et al., "Unsupervised Feature Learning via Non-parametric Instance Discrimination"
(2018). Every image of the dataset is its own class: its L2-normalised projection must
pick its own memory-bank feature out of ``neg_num`` features sampled uniformly from the
bank (``SimpleMemory.multinomial``, the alias method); the head is InfoNCE over
``[pos, negs] / temperature``. The bank then takes the batch's features as a running
average. With ``ensure_neg`` negatives equal to the sample's own index are redrawn.

Random draws are MMSelfSup's, in its order: ``bs * neg_num`` alias draws (uniform
``random_`` then ``bernoulli``), then per redraw round as many as there were hits.
``state_dict`` keys match MMSelfSup's: ``backbone.*``, ``neck.fc.*``,
``memory_bank.feature_bank``, ``memory_bank.multinomial.{prob,alias}``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.data.structures import DataSample
from vistra.models.selfsup import memories  # noqa: F401 (registers)
from vistra.models.selfsup.base import BaseSelfSupervisor, stacked_field
from vistra.registry import MODELS


def first_view(inputs: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """The one batch of a single-view pipeline (MMSelfSup packs it as a list of one)."""
    if isinstance(inputs, (list, tuple)):
        return inputs[0]
    return inputs


def sample_indices(data_samples: Sequence[DataSample] | None) -> torch.Tensor:
    """The dataset index of every sample, flat ``(N,)`` long."""
    if not data_samples:
        raise ValueError(
            "the memory-bank algorithms need each sample's dataset index: pack it with "
            "PackSelfSupInputs(algorithm_keys=['sample_idx'])"
        )
    return stacked_field(data_samples, "sample_idx").long().flatten()


@MODELS.register_module(name="NPID", scope="mmselfsup")
class NPID(BaseSelfSupervisor):
    """NPID with MMSelfSup's arguments (``memory_bank`` a ``SimpleMemory`` config)."""

    def __init__(
        self,
        backbone: dict,
        neck: dict,
        head: dict,
        memory_bank: dict,
        neg_num: int = 65536,
        ensure_neg: bool = False,
        pretrained: str | None = None,
        data_preprocessor: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(
            backbone=backbone, neck=neck, head=head, pretrained=pretrained,
            data_preprocessor=data_preprocessor, init_cfg=init_cfg,
        )  # fmt: skip
        if memory_bank is None:
            raise ValueError("NPID needs a memory_bank config (dict(type='SimpleMemory', ...))")
        if neg_num < 1:
            raise ValueError(f"NPID neg_num must be >= 1, got {neg_num}")
        self.memory_bank = MODELS.build(memory_bank, key_path="model.memory_bank")
        self.neg_num = neg_num
        self.ensure_neg = ensure_neg

    def extract_feat(self, inputs: torch.Tensor | Sequence[torch.Tensor]) -> tuple:
        return self.backbone(first_view(inputs))

    def _negatives(self, idx: torch.Tensor) -> torch.Tensor:
        draw = self.memory_bank.multinomial.draw
        neg_idx = draw(idx.numel() * self.neg_num)
        if not self.ensure_neg:
            return neg_idx
        neg_idx = neg_idx.view(idx.numel(), -1)
        while True:
            wrong = neg_idx == idx.view(-1, 1)
            hits = int(wrong.sum().item())
            if hits == 0:
                return neg_idx.flatten()
            neg_idx[wrong] = draw(hits)

    def loss(
        self,
        inputs: torch.Tensor | Sequence[torch.Tensor],
        data_samples: Sequence[DataSample] | None = None,
    ) -> dict[str, torch.Tensor]:
        feature = self.backbone(first_view(inputs))
        idx = sample_indices(data_samples).to(self.memory_bank.feature_bank.device)
        if self.with_neck:
            feature = self.neck(feature)[0]
        feature = nn.functional.normalize(feature)
        bs, dim = feature.shape[:2]
        neg_idx = self._negatives(idx)
        bank = self.memory_bank.feature_bank
        pos = (bank.index_select(0, idx) * feature).sum(dim=1, keepdim=True)
        neg_feat = bank.index_select(0, neg_idx).view(bs, self.neg_num, dim)
        neg = torch.bmm(neg_feat, feature.unsqueeze(2)).squeeze(2)
        losses = dict(loss=self.head(pos, neg))
        self.memory_bank.update(idx, feature.detach())
        return losses
