"""``LightHamHead``, the SegNeXt decode head (`SegNeXt <https://arxiv.org/abs/2209.08575>`_),
after HamNet's Hamburger (`Is Attention Better Than Matrix Decomposition?
<https://arxiv.org/abs/2109.04553>`_), as MMSegmentation's.

The selected maps are resized to the first, concatenated, squeezed by a 1x1 ConvModule,
passed through the Hamburger (1x1 conv, ReLU, non-negative matrix factorisation by
multiplicative updates, 1x1 conv + norm, residual ReLU) and aligned by another 1x1
ConvModule before ``conv_seg``.

Keys: ``squeeze``, ``hamburger.ham_in.conv``, ``hamburger.ham_out.conv`` / ``.gn`` (the
head's norm), ``align``, ``conv_seg``; with ``ham_kwargs=dict(rand_init=False)`` also
``hamburger.ham.bases``, created at the first forward as MMSegmentation does.

Randomness: with ``rand_init=True`` (every shipped config) the NMF bases are drawn afresh
at every forward, in evaluation too, so the output depends on torch's global RNG. The draw
is MMSegmentation's exactly (``torch.rand((B * S, D, R))`` on the CPU generator, moved to
the input's device, L2-normalised over ``D``), so under the same ``torch.manual_seed`` both
compute the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.heads.decode_head import BaseDecodeHead
from vistra.models.layers import ConvModule
from vistra.models.utils.seg_utils import resize
from vistra.registry import MODELS

_HAM_KWARGS = ("MD_S", "MD_R", "train_steps", "eval_steps", "inv_t", "rand_init")


class NMF2D(nn.Module):
    """Non-negative matrix factorisation of each ``(D, N)`` slice: ``x ~ bases @ coef^T``
    with ``R`` bases, ``train_steps`` / ``eval_steps`` multiplicative updates and one final
    update of the coefficients.

    ``MD_S`` splits the channels into ``S`` groups of ``D = C / S``. ``inv_t`` is accepted
    but, as in MMSegmentation, NMF always uses 1 (the initial coefficients are
    ``softmax(x^T @ bases)``).
    """

    def __init__(self, args: dict | None = None) -> None:
        super().__init__()
        args = dict(args or {})
        unknown = sorted(set(args) - set(_HAM_KWARGS))
        if unknown:
            raise TypeError(f"ham_kwargs: unknown key(s) {unknown}; valid: {list(_HAM_KWARGS)}")
        self.S = args.get("MD_S", 1)
        self.R = args.get("MD_R", 64)
        self.train_steps = args.get("train_steps", 6)
        self.eval_steps = args.get("eval_steps", 7)
        self.rand_init = args.get("rand_init", True)
        self.inv_t = 1  # MMSegmentation's NMF2D overrides the configured inv_t with 1

    @staticmethod
    def _build_bases(batch: int, s: int, d: int, r: int, device: torch.device) -> torch.Tensor:
        # drawn on the CPU generator then moved, exactly as MMSegmentation: the same seed
        # gives the same bases on any device
        bases = torch.rand((batch * s, d, r)).to(device)
        return F.normalize(bases, dim=1)

    @staticmethod
    def _update_coef(x: torch.Tensor, bases: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
        numerator = torch.bmm(x.transpose(1, 2), bases)  # (BS, N, R)
        denominator = coef.bmm(bases.transpose(1, 2).bmm(bases))
        return coef * numerator / (denominator + 1e-6)

    @staticmethod
    def _update_bases(x: torch.Tensor, bases: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
        numerator = torch.bmm(x, coef)  # (BS, D, R)
        denominator = bases.bmm(coef.transpose(1, 2).bmm(coef))
        return bases * numerator / (denominator + 1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        d = c // self.S
        x = x.view(b * self.S, d, h * w)
        if self.rand_init:
            bases = self._build_bases(b, self.S, d, self.R, x.device)
        else:
            if not hasattr(self, "bases"):  # fixed bases, drawn once (a buffer from then on)
                self.register_buffer("bases", self._build_bases(1, self.S, d, self.R, x.device))
            bases = self.bases.repeat(b, 1, 1)
        coef = F.softmax(self.inv_t * torch.bmm(x.transpose(1, 2), bases), dim=-1)
        for _ in range(self.train_steps if self.training else self.eval_steps):
            coef = self._update_coef(x, bases, coef)
            bases = self._update_bases(x, bases, coef)
        coef = self._update_coef(x, bases, coef)
        return torch.bmm(bases, coef.transpose(1, 2)).view(b, c, h, w)


class Hamburger(nn.Module):
    """``relu(x + ham_out(nmf(relu(ham_in(x)))))``; ``ham_out`` carries ``norm_cfg``."""

    def __init__(
        self,
        ham_channels: int = 512,
        ham_kwargs: dict | None = None,
        norm_cfg: dict | None = None,
        **kwargs,
    ) -> None:
        super().__init__()
        self.ham_in = ConvModule(ham_channels, ham_channels, 1, norm_cfg=None, act_cfg=None)
        self.ham = NMF2D(ham_kwargs)
        self.ham_out = ConvModule(ham_channels, ham_channels, 1, norm_cfg=norm_cfg, act_cfg=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        enjoy = F.relu(self.ham_in(x), inplace=True)
        enjoy = self.ham_out(self.ham(enjoy))
        return F.relu(x + enjoy, inplace=True)


@MODELS.register_module()
class LightHamHead(BaseDecodeHead):
    """SegNeXt's head; ``in_index`` lists the maps (always ``multiple_select``),
    ``ham_channels`` the Hamburger's width, ``ham_kwargs`` the NMF settings (``MD_S``,
    ``MD_R``, ``train_steps``, ``eval_steps``, ``inv_t``, ``rand_init``)."""

    def __init__(self, ham_channels: int = 512, ham_kwargs: dict | None = None, **kwargs) -> None:
        if "input_transform" in kwargs:
            raise TypeError(
                "LightHamHead sets input_transform='multiple_select' itself; remove "
                f"input_transform={kwargs['input_transform']!r} from its config"
            )
        super().__init__(input_transform="multiple_select", **kwargs)
        self.ham_channels = ham_channels
        common = dict(conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)
        self.squeeze = ConvModule(sum(self.in_channels), ham_channels, 1, **common)
        self.hamburger = Hamburger(ham_channels, ham_kwargs, norm_cfg=self.norm_cfg)
        self.align = ConvModule(ham_channels, self.channels, 1, **common)

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        maps = self._transform_inputs(inputs)
        size = maps[0].shape[2:]
        maps = [
            resize(m, size=size, mode="bilinear", align_corners=self.align_corners) for m in maps
        ]
        x = self.hamburger(self.squeeze(torch.cat(maps, dim=1)))
        return self.cls_seg(self.align(x))
