"""Classification head for vision transformers (MMPretrain's ``VisionTransformerClsHead``).

Keys: ``layers.head`` and, with ``hidden_dim``, ``layers.pre_logits`` (the pre-training
"representation" layer of the original ViT, followed by ``act_cfg``).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from vistra.models.heads.cls_head import ClsHead
from vistra.models.layers.activation import build_activation_layer
from vistra.registry import MODELS

# MMPretrain's default: a zero classifier. An explicit ``init_cfg=None`` means no init.
ZERO_LINEAR_INIT = dict(type="Constant", layer="Linear", val=0)


@MODELS.register_module()
class VisionTransformerClsHead(ClsHead):
    """Linear classifier on the class token of the last backbone output.

    The weights start at zero by default (``init_cfg`` Constant 0 on Linear, as MMPretrain);
    ``layers.pre_logits`` then gets a LeCun-normal init. Remaining keyword arguments
    (``loss``, ``topk``, ``cal_acc``) go to ``ClsHead``.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        hidden_dim: int | None = None,
        act_cfg: dict | None = None,
        init_cfg: dict | list[dict] | None = ZERO_LINEAR_INIT,
        **kwargs: Any,
    ) -> None:
        super().__init__(init_cfg=init_cfg, **kwargs)
        if num_classes <= 0:
            raise ValueError(f"num_classes={num_classes} must be a positive integer")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.hidden_dim = hidden_dim
        self.act_cfg = dict(type="Tanh") if act_cfg is None else act_cfg
        if hidden_dim is None:
            layers = [("head", nn.Linear(in_channels, num_classes))]
        else:
            layers = [
                ("pre_logits", nn.Linear(in_channels, hidden_dim)),
                ("act", build_activation_layer(self.act_cfg)),
                ("head", nn.Linear(hidden_dim, num_classes)),
            ]
        self.layers = nn.Sequential(OrderedDict(layers))

    def init_weights(self) -> None:
        if self.is_init:
            return
        super().init_weights()
        if self.hidden_dim is not None:
            pre_logits = self.layers.pre_logits
            nn.init.trunc_normal_(pre_logits.weight, std=math.sqrt(1 / pre_logits.in_features))
            nn.init.zeros_(pre_logits.bias)

    def pre_logits(self, feats: tuple[torch.Tensor | list[torch.Tensor], ...]) -> torch.Tensor:
        """The class token of the last stage, through the hidden layer if there is one.

        A stage given as a list (MMPretrain 0.x ``[patch_tokens, cls_token]`` output) uses
        its last entry.
        """
        feat = feats[-1]
        cls_token = feat[-1] if isinstance(feat, list) else feat
        if self.hidden_dim is None:
            return cls_token
        return self.layers.act(self.layers.pre_logits(cls_token))

    def forward(self, feats: tuple[torch.Tensor | list[torch.Tensor], ...]) -> torch.Tensor:
        return self.layers.head(self.pre_logits(feats))
