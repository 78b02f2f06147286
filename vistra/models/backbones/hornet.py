"""HorNet backbone (`HorNet: Efficient High-Order Spatial Interactions with Recursive
Gated Convolutions <https://arxiv.org/abs/2207.14284>`_), with MMPretrain's arguments and
keys.

ConvNeXt's macro design (patchify stem, four stages with norm + 2x2 conv downsampling)
with the depthwise conv replaced by the recursive gated convolution ``gnConv`` of order
``n``: one projection splits into a gate and ``n`` depthwise-conv maps of widths
``dim / 2**(n-1) .. dim``, multiplied in one after another through 1x1 convs. The ``-gf``
archs mix the last two stages with a global filter instead of a 7x7 depthwise conv: half
the channels through a 3x3 depthwise conv, half multiplied by learnt weights in the 2-D
Fourier domain (``torch.fft``; the weights are resized bilinearly when the map's spectrum
has another size than ``(h, w // 2 + 1)`` of the preset).

Keys: ``downsample_layers.0.{0,1}`` (stem conv, norm), ``downsample_layers.{i}.{0,1}`` (norm,
conv), ``stages.{i}.{j}`` with ``norm1``, ``gnconv.{proj_in,dwconv,proj_out,projs.{k}}``
(a global filter's ``dwconv`` has ``complex_weight``, ``dw``, ``pre_norm``, ``post_norm``),
``norm2``, ``pwconv1``, ``pwconv2``, ``gamma1.weight``, ``gamma2.weight`` (layer scales),
and ``norm{i}`` for each index of ``out_indices``.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers import DropPath
from vistra.models.layers.norm import LayerNorm2d
from vistra.models.layers.transformer import LayerScale
from vistra.models.utils.arch import pick_arch
from vistra.models.utils.out_indices import parse_out_indices
from vistra.registry import MODELS

_EPS = 1e-6  # of every HorNet LayerNorm


def _ln2d(channels: int) -> LayerNorm2d:
    return LayerNorm2d(channels, eps=_EPS)


class GlobalLocalFilter(nn.Module):
    """Half the channels through a 3x3 depthwise conv (local), half filtered in the 2-D
    Fourier domain by ``complex_weight`` (global); the halves are interleaved channel by
    channel, between two channel LayerNorms."""

    def __init__(self, dim: int, h: int = 14, w: int = 8) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"GlobalLocalFilter dim must be even (two halves), got {dim}")
        half = dim // 2
        self.dw = nn.Conv2d(half, half, kernel_size=3, padding=1, groups=half, bias=False)
        # (real, imaginary) pairs of the filter over the rfft2 spectrum (h, w)
        self.complex_weight = nn.Parameter(torch.randn(half, h, w, 2) * 0.02)
        self.pre_norm = _ln2d(dim)
        self.post_norm = _ln2d(dim)

    def _filter(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[2:]
        # FFTs in float32 (half precision has no general-size rfft2)
        spectrum = torch.fft.rfft2(x.float(), dim=(2, 3), norm="ortho")
        weight = self.complex_weight
        if weight.shape[1:3] != spectrum.shape[2:4]:
            # another input size than the preset's: resample the filter over the spectrum
            weight = F.interpolate(
                weight.permute(3, 0, 1, 2), size=spectrum.shape[2:4], mode="bilinear",
                align_corners=True,
            ).permute(1, 2, 3, 0)  # fmt: skip
        spectrum = spectrum * torch.view_as_complex(weight.float().contiguous())
        return torch.fft.irfft2(spectrum, s=(height, width), dim=(2, 3), norm="ortho")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre_norm(x)
        local, glob = torch.chunk(x, 2, dim=1)
        local, glob = self.dw(local), self._filter(glob).to(local.dtype)
        n, c, h, w = local.shape
        # interleave: channel 2k is local k, channel 2k + 1 global k
        x = torch.stack([local, glob], dim=2).reshape(n, 2 * c, h, w)
        return self.post_norm(x)


class gnConv(nn.Module):  # noqa: N801 (MMPretrain's name)
    """Recursive gated convolution of order ``order``: ``proj_in`` to ``2 * dim``, split into
    the gate (``dims[0]`` channels) and the ``sum(dims)`` channels the depthwise layer
    (``dw_cfg``: a ``'DW'`` conv or a ``'GF'`` global filter) mixes, scaled by ``scale``;
    then ``x = gate * dw_0``, ``x = projs[k](x) * dw_{k+1}``, and ``proj_out``."""

    def __init__(
        self,
        dim: int,
        order: int = 5,
        dw_cfg: dict = dict(type="DW", kernel_size=7),  # noqa: B006 (never mutated)
        scale: float = 1.0,
    ) -> None:
        super().__init__()
        if not isinstance(order, int) or order < 1 or dim % 2 ** (order - 1):
            raise ValueError(
                f"gnConv order must be a positive int with dim divisible by 2**(order-1), got "
                f"order={order!r}, dim={dim}"
            )
        self.order, self.scale = order, scale
        self.dims = [dim // 2**i for i in range(order)][::-1]  # narrowest first
        total = sum(self.dims)
        self.proj_in = nn.Conv2d(dim, 2 * dim, kernel_size=1)
        self.dwconv = self._depthwise(total, dw_cfg)
        self.proj_out = nn.Conv2d(dim, dim, kernel_size=1)
        self.projs = nn.ModuleList(
            nn.Conv2d(self.dims[i], self.dims[i + 1], kernel_size=1) for i in range(order - 1)
        )

    @staticmethod
    def _depthwise(channels: int, dw_cfg: dict) -> nn.Module:
        cfg = dict(dw_cfg)
        kind = cfg.pop("type", None)
        if kind == "DW":
            kernel = cfg.pop("kernel_size", 7)
            layer: nn.Module = nn.Conv2d(
                channels, channels, kernel, padding=(kernel - 1) // 2, groups=channels
            )
        elif kind == "GF":
            layer = GlobalLocalFilter(channels, h=cfg.pop("h", 14), w=cfg.pop("w", 8))
        else:
            raise ValueError(f"HorNet dw_cfg type must be 'DW' or 'GF', got {dw_cfg!r}")
        if cfg:
            raise ValueError(f"HorNet dw_cfg {dw_cfg!r}: unknown keys {sorted(cfg)}")
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, mixed = torch.split(self.proj_in(x), (self.dims[0], sum(self.dims)), dim=1)
        mixed = torch.split(self.dwconv(mixed) * self.scale, self.dims, dim=1)
        x = gate * mixed[0]
        for proj, dw in zip(self.projs, mixed[1:]):
            x = proj(x) * dw
        return self.proj_out(x)


class HorNetBlock(nn.Module):
    """``x + drop_path(gamma1(gnConv(norm1(x))))``, then the ConvNeXt MLP
    ``x + drop_path(gamma2(pwconv2(act(pwconv1(norm2(x))))))`` on channel-last tokens."""

    def __init__(
        self,
        dim: int,
        order: int = 5,
        dw_cfg: dict = dict(type="DW", kernel_size=7),  # noqa: B006 (never mutated)
        scale: float = 1.0,
        drop_path_rate: float = 0.0,
        use_layer_scale: bool = True,
    ) -> None:
        super().__init__()
        self.norm1 = _ln2d(dim)
        self.gnconv = gnConv(dim, order, dw_cfg, scale)
        self.norm2 = nn.LayerNorm(dim, eps=_EPS)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        if use_layer_scale:
            self.gamma1: nn.Module = LayerScale(dim, data_format="channels_first")
            self.gamma2: nn.Module = LayerScale(dim)
        else:
            self.gamma1, self.gamma2 = nn.Identity(), nn.Identity()
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.gamma1(self.gnconv(self.norm1(x))))
        y = x.permute(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
        y = self.gamma2(self.pwconv2(self.act(self.pwconv1(self.norm2(y)))))
        return x + self.drop_path(y.permute(0, 3, 1, 2))


def _dw(kernel_size: int = 7) -> dict:
    return dict(type="DW", kernel_size=kernel_size)


def _gf(h: int, w: int) -> dict:
    return dict(type="GF", h=h, w=w)


def _arch(base_dim: int, dw_cfg: list[dict]) -> dict:
    return dict(base_dim=base_dim, depths=[2, 3, 18, 2], orders=[2, 3, 4, 5], dw_cfg=dw_cfg)


_DW = [_dw()] * 4
_GF = [_dw(), _dw(), _gf(14, 8), _gf(7, 4)]  # 224px: spectra of 14x14 and 7x7 maps
_GF384 = [_dw(), _dw(), _gf(24, 12), _gf(13, 7)]


@MODELS.register_module()
class HorNet(BaseModule):
    """HorNet.

    Args:
        arch: a name of ``arch_zoo`` or a dict with ``base_dim``, ``depths``, ``orders``
            and ``dw_cfg`` (one per stage; widths are ``base_dim * 2**i``).
        in_channels: image channels.
        drop_path_rate: stochastic depth, growing linearly over all blocks.
        scale: multiplies the depthwise layer's output in every gnConv.
        use_layer_scale: per-channel scales on both residual branches.
        out_indices: stages whose outputs are returned (normalised; globally averaged to
            ``(N, C)`` first with ``gap_before_final_norm``).
        frozen_stages: freeze stages ``0..n`` (their downsampling and, for output stages,
            their norm) and keep them in eval mode; ``-1`` freezes nothing.
        with_cp: gradient checkpointing per block.
        gap_before_final_norm: average before the output norm (classification).
    """

    arch_zoo = {
        **dict.fromkeys(["t", "tiny"], _arch(64, _DW)),
        **dict.fromkeys(["t-gf", "tiny-gf"], _arch(64, _GF)),
        **dict.fromkeys(["s", "small"], _arch(96, _DW)),
        **dict.fromkeys(["s-gf", "small-gf"], _arch(96, _GF)),
        **dict.fromkeys(["b", "base"], _arch(128, _DW)),
        **dict.fromkeys(["b-gf", "base-gf"], _arch(128, _GF)),
        **dict.fromkeys(["b-gf384", "base-gf384"], _arch(128, _GF384)),
        **dict.fromkeys(["l", "large"], _arch(192, _DW)),
        **dict.fromkeys(["l-gf", "large-gf"], _arch(192, _GF)),
        **dict.fromkeys(["l-gf384", "large-gf384"], _arch(192, _GF384)),
    }

    def __init__(
        self,
        arch: str | dict = "tiny",
        in_channels: int = 3,
        drop_path_rate: float = 0.0,
        scale: float = 1 / 3,
        use_layer_scale: bool = True,
        out_indices: int | Sequence[int] = (3,),
        frozen_stages: int = -1,
        with_cp: bool = False,
        gap_before_final_norm: bool = True,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        arch = pick_arch(arch, self.arch_zoo, "HorNet", ("base_dim", "depths", "orders", "dw_cfg"))
        self.depths, self.orders = list(arch["depths"]), list(arch["orders"])
        self.dw_cfg = list(arch["dw_cfg"])
        self.num_stages = len(self.depths)
        if not len(self.orders) == len(self.dw_cfg) == self.num_stages:
            raise ValueError(
                f"HorNet arch depths {self.depths}, orders {self.orders} and dw_cfg "
                f"{self.dw_cfg} must have one entry per stage"
            )
        self.dims = [arch["base_dim"] * 2**i for i in range(self.num_stages)]
        self.out_indices = parse_out_indices(out_indices, self.num_stages, "HorNet")
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages < self.num_stages:
            raise ValueError(
                f"HorNet frozen_stages must be in -1..{self.num_stages - 1}, got {frozen_stages!r}"
            )
        self.frozen_stages = frozen_stages
        self.with_cp, self.gap_before_final_norm = with_cp, gap_before_final_norm

        self.downsample_layers = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(in_channels, self.dims[0], 4, stride=4), _ln2d(self.dims[0]))]
        )
        for i in range(1, self.num_stages):
            self.downsample_layers.append(
                nn.Sequential(_ln2d(self.dims[i - 1]), nn.Conv2d(self.dims[i - 1], self.dims[i], 2, stride=2))
            )  # fmt: skip
        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, sum(self.depths))]
        self.stages = nn.ModuleList()
        block_idx = 0
        for i, depth in enumerate(self.depths):
            self.stages.append(
                nn.Sequential(
                    *[
                        HorNetBlock(
                            self.dims[i], order=self.orders[i], dw_cfg=self.dw_cfg[i],
                            scale=scale, drop_path_rate=dpr[block_idx + j],
                            use_layer_scale=use_layer_scale,
                        )
                        for j in range(depth)
                    ]
                )
            )  # fmt: skip
            block_idx += depth
        for i in self.out_indices:
            self.add_module(f"norm{i}", _ln2d(self.dims[i]))
        self._freeze_stages()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = []
        for i, (downsample, stage) in enumerate(zip(self.downsample_layers, self.stages)):
            x = downsample(x)
            for block in stage:
                if self.with_cp and x.requires_grad:
                    x = cp.checkpoint(block, x, use_reentrant=False)
                else:
                    x = block(x)
            if i in self.out_indices:
                norm = getattr(self, f"norm{i}")
                if self.gap_before_final_norm:
                    outs.append(norm(x.mean([-2, -1], keepdim=True)).flatten(1))
                else:
                    outs.append(norm(x))
        return tuple(outs)

    def _freeze_stages(self) -> None:
        # frozen_stages=n freezes stages 0..n, as upstream. (Upstream then freezes norm{i+1}
        # for an output stage i, an off-by-one that fails without that norm; this freezes
        # the stage's own norm{i}.)
        for i in range(self.frozen_stages + 1):
            parts = [self.downsample_layers[i], self.stages[i]]
            if i in self.out_indices:
                parts.append(getattr(self, f"norm{i}"))
            for part in parts:
                part.eval()
            for param in chain.from_iterable(p.parameters() for p in parts):
                param.requires_grad = False

    def train(self, mode: bool = True) -> HorNet:
        super().train(mode)
        self._freeze_stages()
        return self
