"""``ContrastiveHead`` (MMPretrain, MMSelfSup 1.x): InfoNCE from positive and negative
similarities.

The head has no parameters; it turns similarities into a classification problem whose
right answer is always column 0 (the positive), divided by a temperature.
"""

from __future__ import annotations

import torch

from vistra.models.base import BaseModule
from vistra.registry import MODELS


@MODELS.register_module()
class ContrastiveHead(BaseModule):
    """Cross entropy over ``[pos, neg_1, ..., neg_k] / temperature`` with target 0.

    ``loss`` is a loss config (MMPretrain's SimCLR uses ``dict(type='CrossEntropyLoss')``).
    """

    def __init__(
        self,
        loss: dict,
        temperature: float = 0.1,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if temperature <= 0:
            raise ValueError(f"ContrastiveHead temperature must be > 0, got {temperature}")
        self.loss_module = MODELS.build(loss, key_path="model.head.loss")
        self.temperature = temperature

    def loss(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """``pos``: ``(N, 1)`` similarities to the positive; ``neg``: ``(N, k)`` to negatives."""
        logits = torch.cat((pos, neg), dim=1) / self.temperature
        labels = torch.zeros(pos.size(0), dtype=torch.long, device=pos.device)
        return self.loss_module(logits, labels)

    def forward(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """MMSelfSup 1.x calls the head itself (``head(pos, neg)``): the same loss."""
        return self.loss(pos, neg)
