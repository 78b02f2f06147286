"""``PSAHead`` (`PSANet: Point-wise Spatial Attention Network for Scene Parsing
<https://hszhao.github.io/papers/eccv18_psanet.pdf>`_), MMSegmentation 1.x.

Keys: ``reduce``, ``attention.0`` (ConvModule) and ``attention.1`` (the 1x1 conv to
``mask_h * mask_w`` channels, no bias); with ``psa_type='bi-direction'`` also
``reduce_p`` and ``attention_p`` (the distribute branch); ``proj``, ``bottleneck``,
``conv_seg``. The PSA mask op has no parameters (``vistra.models.layers.psa_mask``).

Upstream runs MMCV's compiled ``PSAMask``; vistra's is plain PyTorch, checked against a
per-pixel reference in the tests (mmcv-lite has no kernel, so upstream cannot run this
head's forward there).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.heads.decode_head import BaseDecodeHead
from vistra.models.layers import ConvModule
from vistra.models.layers.psa_mask import PSAMask
from vistra.models.utils.seg_utils import resize
from vistra.registry import MODELS

PSA_TYPES = ("collect", "distribute", "bi-direction")


@MODELS.register_module()
class PSAHead(BaseDecodeHead):
    """Point-wise spatial attention: the reduced features (``shrink_factor`` times smaller)
    predict an ``mask_size`` attention mask per position, re-indexed by ``PSAMask`` into
    an all-pairs map that aggregates the features (``'collect'``, ``'distribute'`` or
    both, ``'bi-direction'``); ``psa_softmax`` normalises it, ``normalization_factor``
    (None: ``mask_h * mask_w``) divides the result. ``compact`` takes the attention as an
    ``(HW, HW)`` map directly (then ``mask_size`` must equal the shrunk feature size).
    The aggregated features are projected back, concatenated with the input and fused.
    """

    def __init__(
        self,
        mask_size: Sequence[int],
        psa_type: str = "bi-direction",
        compact: bool = False,
        shrink_factor: int = 2,
        normalization_factor: float | None = 1.0,
        psa_softmax: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if psa_type not in PSA_TYPES:
            raise ValueError(f"PSAHead psa_type={psa_type!r}: valid: {list(PSA_TYPES)}")
        if not isinstance(mask_size, (list, tuple)) or len(mask_size) != 2:
            raise TypeError(f"PSAHead mask_size must be (mask_h, mask_w), got {mask_size!r}")
        self.psa_type, self.compact, self.shrink_factor = psa_type, compact, shrink_factor
        self.mask_size, self.psa_softmax = tuple(mask_size), psa_softmax
        mask_h, mask_w = mask_size
        if normalization_factor is None:
            normalization_factor = mask_h * mask_w
        self.normalization_factor = normalization_factor
        common = dict(conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)

        def attention() -> nn.Sequential:
            return nn.Sequential(
                ConvModule(self.channels, self.channels, 1, **common),
                nn.Conv2d(self.channels, mask_h * mask_w, kernel_size=1, bias=False),
            )

        self.reduce = ConvModule(self.in_channels, self.channels, 1, **common)
        self.attention = attention()
        if psa_type == "bi-direction":
            self.reduce_p = ConvModule(self.in_channels, self.channels, 1, **common)
            self.attention_p = attention()
            self.psamask_collect = PSAMask("collect", self.mask_size)
            self.psamask_distribute = PSAMask("distribute", self.mask_size)
        else:
            self.psamask = PSAMask(psa_type, self.mask_size)
        # padding=1 on a 1x1 conv, as upstream: the map grows by 2 and is resized back
        self.proj = ConvModule(
            self.channels * (2 if psa_type == "bi-direction" else 1), self.in_channels, 1,
            padding=1, **common,
        )  # fmt: skip
        self.bottleneck = ConvModule(self.in_channels * 2, self.channels, 3, padding=1, **common)

    def _shrink(self, h: int, w: int) -> tuple[int, int, bool]:
        """The attention map size and the align_corners of the resizes (upstream's rule:
        odd sizes in both dimensions keep the corners, else floor division)."""
        f = self.shrink_factor
        if h % f and w % f:
            return (h - 1) // f + 1, (w - 1) // f + 1, True
        return h // f, w // f, False

    def _aggregate(self, feat: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        n, c, h, w = feat.shape
        if self.psa_softmax:
            attn = F.softmax(attn, dim=1)
        out = torch.bmm(feat.reshape(n, c, h * w), attn.reshape(n, h * w, h * w))
        return out.view(n, c, h, w) * (1.0 / self.normalization_factor)

    def _compact_transpose(self, y: torch.Tensor) -> torch.Tensor:
        n, _, h, w = y.shape
        return y.view(n, h * w, h * w).transpose(1, 2).reshape(n, h * w, h, w)

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self._transform_inputs(inputs)
        identity = x
        align_corners = self.align_corners
        branches = [self.reduce(x)]
        if self.psa_type == "bi-direction":
            branches.append(self.reduce_p(x))
        h, w = branches[0].shape[2:]
        if self.shrink_factor != 1:
            h, w, align_corners = self._shrink(h, w)
            branches = [
                resize(b, size=(h, w), mode="bilinear", align_corners=align_corners)
                for b in branches
            ]
        if self.psa_type == "bi-direction":
            x_col, x_dis = branches
            y_col, y_dis = self.attention(x_col), self.attention_p(x_dis)
            if self.compact:
                y_dis = self._compact_transpose(y_dis)
            else:
                y_col, y_dis = self.psamask_collect(y_col), self.psamask_distribute(y_dis)
            out = torch.cat([self._aggregate(x_col, y_col), self._aggregate(x_dis, y_dis)], 1)
        else:
            feat = branches[0]
            y = self.attention(feat)
            if self.compact:
                if self.psa_type == "collect":
                    y = self._compact_transpose(y)
            else:
                y = self.psamask(y)
            out = self._aggregate(feat, y)
        out = self.proj(out)
        out = resize(out, size=identity.shape[2:], mode="bilinear", align_corners=align_corners)
        out = self.bottleneck(torch.cat((identity, out), dim=1))
        return self.cls_seg(out)
