"""Twins (`paper <https://arxiv.org/abs/2104.13840>`__): ``PCPVT`` and ``SVT``, as
MMSegmentation's.

Both are four-stage (or as many as ``depths`` has) pyramids; no ``arch`` table, the sizes
are given directly. Keys:

- ``patch_embeds.{i}.projection`` / ``.norm``: the stage's (non-overlapping) patch embedding;
- ``position_encodings.{i}.proj``: the conditional position encoding, a 3x3 depthwise
  conv applied (with a residual) after the stage's first block;
- ``layers.{i}.{j}.norm1``, ``.attn.*``, ``.norm2``, ``.ffn.layers.0.0`` / ``.ffn.layers.1``;
  PCPVT's blocks (and SVT's odd blocks) use global sub-sampled attention, the keys of
  SegFormer's efficient attention (``attn.attn.in_proj_weight``, ``attn.attn.out_proj``,
  ``attn.sr`` / ``attn.norm`` for ``sr_ratio > 1``); SVT's even blocks use locally
  grouped self-attention (``attn.qkv``, ``attn.proj``);
- ``norm_list.{i}`` with ``norm_after_stage`` (SVT's default).

Semantics kept from upstream: stochastic depth is applied twice per branch in training
(inside the attention / FFN and again around them), the blocks always use plain LayerNorm
and GELU whatever ``norm_cfg`` says (``norm_cfg`` goes to the patch embeddings and
``norm_list``), and the local attention masks the padding of a map only when it is padded
both at the bottom and at the right (upstream's ``mask[:, -0:]`` marks the whole map when
one of the pads is zero, which then masks nothing). ``SVT``'s window argument keeps
upstream's spelling ``windiow_sizes``.

Order: global sub-sampled attention, its layer, locally grouped attention, its layer,
conditional position encoding, PCPVT, SVT.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.backbones.mit import EfficientMultiheadAttention
from vistra.models.base import BaseModule
from vistra.models.init import constant_init, normal_init, trunc_normal_init
from vistra.models.layers.drop import build_dropout
from vistra.models.layers.norm import build_norm_layer
from vistra.models.layers.patch_embed import PatchEmbed
from vistra.models.layers.transformer import FFN
from vistra.registry import MODELS


class GlobalSubsampledAttention(EfficientMultiheadAttention):
    """Twins' GSA: SegFormer's efficient attention (keys/values from the ``sr_ratio``
    sub-sampled map), with ``qkv_bias=True`` by default."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        dropout_layer: dict | None = None,
        batch_first: bool = True,
        qkv_bias: bool = True,
        norm_cfg: dict = dict(type="LN"),  # noqa: B006 (never mutated)
        sr_ratio: int = 1,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(
            embed_dims,
            num_heads,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            dropout_layer=dropout_layer,
            batch_first=batch_first,
            qkv_bias=qkv_bias,
            norm_cfg=norm_cfg,
            sr_ratio=sr_ratio,
            init_cfg=init_cfg,
        )


def _drop_path(rate: float) -> nn.Module:
    return build_dropout(dict(type="DropPath", drop_prob=rate)) if rate > 0 else nn.Identity()


class GSAEncoderLayer(BaseModule):
    """``x = x + drop_path(gsa(norm1(x)))``, then ``x = x + drop_path(ffn(norm2(x)))``."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        feedforward_channels: int,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        num_fcs: int = 2,
        qkv_bias: bool = True,
        act_cfg: dict = dict(type="GELU"),  # noqa: B006 (never mutated)
        norm_cfg: dict = dict(type="LN"),  # noqa: B006 (never mutated)
        sr_ratio: float = 1.0,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        inner_drop = dict(type="DropPath", drop_prob=drop_path_rate)
        self.norm1 = build_norm_layer(norm_cfg, embed_dims, postfix=1)[1]
        self.attn = GlobalSubsampledAttention(
            embed_dims=embed_dims,
            num_heads=num_heads,
            attn_drop=attn_drop_rate,
            proj_drop=drop_rate,
            dropout_layer=inner_drop,
            qkv_bias=qkv_bias,
            norm_cfg=norm_cfg,
            sr_ratio=int(sr_ratio),
        )
        self.norm2 = build_norm_layer(norm_cfg, embed_dims, postfix=2)[1]
        self.ffn = FFN(
            embed_dims=embed_dims,
            feedforward_channels=feedforward_channels,
            num_fcs=num_fcs,
            ffn_drop=drop_rate,
            dropout_layer=inner_drop,
            act_cfg=act_cfg,
            add_identity=False,
        )
        self.drop_path = _drop_path(drop_path_rate)

    def forward(self, x: torch.Tensor, hw_shape: Sequence[int]) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), hw_shape, identity=0.0))
        return x + self.drop_path(self.ffn(self.norm2(x)))


class LocallyGroupedSelfAttention(BaseModule):
    """Twins' LSA: multi-head self-attention within non-overlapping ``window_size``
    windows of the (bottom/right zero-padded) map. Keys ``qkv``, ``proj``."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int = 8,
        qkv_bias: bool = False,
        qk_scale: float | None = None,
        attn_drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        window_size: int = 1,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if embed_dims % num_heads:
            raise ValueError(f"embed_dims={embed_dims} must be divisible by num_heads={num_heads}")
        self.embed_dims, self.num_heads, self.window_size = embed_dims, num_heads, window_size
        self.scale = qk_scale or (embed_dims // num_heads) ** -0.5
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=qkv_bias)
        self.attn_drop = attn_drop_rate
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop_rate)

    def _padding_mask(self, hp: int, wp: int, pad_b: int, pad_r: int, device) -> torch.Tensor:
        """``(1, nW, 1, ws*ws, ws*ws)`` additive mask, ``-1000`` between padded and real
        positions. Upstream marks rows ``-pad_b:`` and columns ``-pad_r:``; a zero pad
        marks everything (``-0:``), which is kept here."""
        ws = self.window_size
        rows = torch.arange(hp, device=device)[:, None]
        cols = torch.arange(wp, device=device)[None, :]
        padded = (rows >= (hp - pad_b if pad_b else 0)) | (cols >= (wp - pad_r if pad_r else 0))
        padded = padded.float().reshape(hp // ws, ws, wp // ws, ws).transpose(1, 2)
        padded = padded.reshape(1, -1, ws * ws)
        diff = padded.unsqueeze(2) - padded.unsqueeze(3)
        mask = diff.masked_fill(diff != 0, -1000.0).masked_fill(diff == 0, 0.0)
        return mask.unsqueeze(2)

    def forward(self, x: torch.Tensor, hw_shape: Sequence[int]) -> torch.Tensor:
        b, n, c = x.shape
        h, w = hw_shape
        ws = self.window_size
        pad_r, pad_b = (ws - w % ws) % ws, (ws - h % ws) % ws
        x = F.pad(x.view(b, h, w, c), (0, 0, 0, pad_r, 0, pad_b))
        hp, wp = x.shape[1], x.shape[2]
        gh, gw = hp // ws, wp // ws
        x = x.reshape(b, gh, ws, gw, ws, c).transpose(2, 3)  # (b, gh, gw, ws, ws, c)
        qkv = self.qkv(x).reshape(b, gh * gw, ws * ws, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # (b, nW, heads, ws*ws, d)
        mask = self._padding_mask(hp, wp, pad_b, pad_r, x.device).to(q.dtype)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.attn_drop if self.training else 0.0,
            scale=self.scale,
        )
        out = out.transpose(2, 3).reshape(b, gh, gw, ws, ws, c).transpose(2, 3)
        out = out.reshape(b, hp, wp, c)[:, :h, :w, :].reshape(b, n, c)
        return self.proj_drop(self.proj(out))


class LSAEncoderLayer(BaseModule):
    """``x = x + drop_path(lsa(norm1(x)))``, then ``x = x + drop_path(ffn(norm2(x)))``."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        feedforward_channels: int,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        num_fcs: int = 2,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        act_cfg: dict = dict(type="GELU"),  # noqa: B006 (never mutated)
        norm_cfg: dict = dict(type="LN"),  # noqa: B006 (never mutated)
        window_size: int = 1,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.norm1 = build_norm_layer(norm_cfg, embed_dims, postfix=1)[1]
        self.attn = LocallyGroupedSelfAttention(
            embed_dims, num_heads, qkv_bias, qk_scale, attn_drop_rate, drop_rate, window_size
        )
        self.norm2 = build_norm_layer(norm_cfg, embed_dims, postfix=2)[1]
        self.ffn = FFN(
            embed_dims=embed_dims,
            feedforward_channels=feedforward_channels,
            num_fcs=num_fcs,
            ffn_drop=drop_rate,
            dropout_layer=dict(type="DropPath", drop_prob=drop_path_rate),
            act_cfg=act_cfg,
            add_identity=False,
        )
        self.drop_path = _drop_path(drop_path_rate)

    def forward(self, x: torch.Tensor, hw_shape: Sequence[int]) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), hw_shape))
        return x + self.drop_path(self.ffn(self.norm2(x)))


class ConditionalPositionEncoding(BaseModule):
    """Position encoding generated from the tokens by a 3x3 depthwise conv ``proj``
    (``x + proj(x)`` at ``stride=1``, ``proj(x)`` otherwise)."""

    def __init__(
        self,
        in_channels: int,
        embed_dims: int = 768,
        stride: int = 1,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.proj = nn.Conv2d(
            in_channels, embed_dims, 3, stride=stride, padding=1, bias=True, groups=embed_dims
        )
        self.stride = stride

    def forward(self, x: torch.Tensor, hw_shape: Sequence[int]) -> torch.Tensor:
        b, n, c = x.shape
        feat = x.transpose(1, 2).view(b, c, *hw_shape)
        out = self.proj(feat) + feat if self.stride == 1 else self.proj(feat)
        return out.flatten(2).transpose(1, 2)


@MODELS.register_module()
class PCPVT(BaseModule):
    """Twins-PCPVT: a pyramid of global sub-sampled attention blocks with conditional
    position encodings; returns a tuple of ``(B, embed_dims[i], H_i, W_i)`` maps for the
    ``out_indices`` stages."""

    def __init__(
        self,
        in_channels: int = 3,
        embed_dims: Sequence[int] = (64, 128, 256, 512),
        patch_sizes: Sequence[int] = (4, 2, 2, 2),
        strides: Sequence[int] = (4, 2, 2, 2),
        num_heads: Sequence[int] = (1, 2, 4, 8),
        mlp_ratios: Sequence[int] = (4, 4, 4, 4),
        out_indices: Sequence[int] = (0, 1, 2, 3),
        qkv_bias: bool = False,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_cfg: dict = dict(type="LN"),  # noqa: B006 (never mutated)
        depths: Sequence[int] = (3, 4, 6, 3),
        sr_ratios: Sequence[int] = (8, 4, 2, 1),
        norm_after_stage: bool = False,
        pretrained: str | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        if init_cfg and pretrained:
            raise ValueError(f"{type(self).__name__}: init_cfg and pretrained cannot both be set")
        if pretrained is not None:
            if not isinstance(pretrained, str):
                raise TypeError(f"pretrained must be a str or None, got {pretrained!r}")
            init_cfg = dict(type="Pretrained", checkpoint=pretrained)
        super().__init__(init_cfg)
        per_stage = dict(
            embed_dims=embed_dims,
            patch_sizes=patch_sizes,
            strides=strides,
            num_heads=num_heads,
            mlp_ratios=mlp_ratios,
            sr_ratios=sr_ratios,
        )
        short = {k: list(v) for k, v in per_stage.items() if len(v) < len(depths)}
        if short:
            raise ValueError(f"depths={list(depths)}: these need one entry per stage: {short}")
        self.depths, self.out_indices = list(depths), tuple(out_indices)
        self.patch_embeds = nn.ModuleList(
            PatchEmbed(
                in_channels=in_channels if i == 0 else embed_dims[i - 1],
                embed_dims=embed_dims[i],
                kernel_size=patch_sizes[i],
                stride=strides[i],
                padding="corner",
                norm_cfg=norm_cfg,
            )
            for i in range(len(depths))
        )
        self.position_encoding_drops = nn.ModuleList(
            nn.Dropout(p=drop_rate) for _ in range(len(depths))
        )
        self.position_encodings = nn.ModuleList(
            ConditionalPositionEncoding(dims, dims) for dims in embed_dims
        )
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.layers = nn.ModuleList()
        cur = 0
        for k, depth in enumerate(depths):
            self.layers.append(
                nn.ModuleList(
                    GSAEncoderLayer(
                        embed_dims=embed_dims[k],
                        num_heads=num_heads[k],
                        feedforward_channels=mlp_ratios[k] * embed_dims[k],
                        attn_drop_rate=attn_drop_rate,
                        drop_rate=drop_rate,
                        drop_path_rate=rates[cur + i],
                        num_fcs=2,
                        qkv_bias=qkv_bias,
                        sr_ratio=sr_ratios[k],
                    )
                    for i in range(depth)
                )
            )
            cur += depth
        self.norm_after_stage = norm_after_stage
        if norm_after_stage:
            self.norm_list = nn.ModuleList(build_norm_layer(norm_cfg, d)[1] for d in embed_dims)

    def init_weights(self) -> None:
        if self.is_init:
            return
        if self.init_cfg is not None:
            super().init_weights()
            return
        # upstream's default: truncated-normal linears, unit norms, He-normal convs by
        # fan-out per group
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_init(m, std=0.02, bias=0.0)
            elif isinstance(m, nn.modules.batchnorm._BatchNorm | nn.GroupNorm | nn.LayerNorm):
                constant_init(m, val=1.0, bias=0.0)
            elif isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                normal_init(m, mean=0.0, std=math.sqrt(2.0 / fan_out), bias=0.0)
        self._is_init = True

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = []
        b = x.shape[0]
        for i in range(len(self.depths)):
            x, hw_shape = self.patch_embeds[i](x)
            x = self.position_encoding_drops[i](x)
            for j, block in enumerate(self.layers[i]):
                x = block(x, hw_shape)
                if j == 0:  # the position encoding follows the first block
                    x = self.position_encodings[i](x, hw_shape)
            if self.norm_after_stage:
                x = self.norm_list[i](x)
            x = x.reshape(b, *hw_shape, -1).permute(0, 3, 1, 2).contiguous()
            if i in self.out_indices:
                outputs.append(x)
        return tuple(outputs)


@MODELS.register_module()
class SVT(PCPVT):
    """Twins-SVT: PCPVT whose even blocks are locally grouped (windowed) attention with
    ``windiow_sizes[i]`` windows (upstream's spelling) and odd blocks global sub-sampled
    attention; normalises each stage output by default."""

    def __init__(
        self,
        in_channels: int = 3,
        embed_dims: Sequence[int] = (64, 128, 256),
        patch_sizes: Sequence[int] = (4, 2, 2, 2),
        strides: Sequence[int] = (4, 2, 2, 2),
        num_heads: Sequence[int] = (1, 2, 4),
        mlp_ratios: Sequence[int] = (4, 4, 4),
        out_indices: Sequence[int] = (0, 1, 2, 3),
        qkv_bias: bool = False,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.2,
        norm_cfg: dict = dict(type="LN"),  # noqa: B006 (never mutated)
        depths: Sequence[int] = (4, 4, 4),
        sr_ratios: Sequence[int] = (4, 2, 1),
        windiow_sizes: Sequence[int] = (7, 7, 7),
        norm_after_stage: bool = True,
        pretrained: str | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            embed_dims,
            patch_sizes,
            strides,
            num_heads,
            mlp_ratios,
            out_indices,
            qkv_bias,
            drop_rate,
            attn_drop_rate,
            drop_path_rate,
            norm_cfg,
            depths,
            sr_ratios,
            norm_after_stage,
            pretrained,
            init_cfg,
        )
        if len(windiow_sizes) < len(depths):
            raise ValueError(
                f"depths={list(depths)}: windiow_sizes={list(windiow_sizes)} needs one entry "
                "per stage"
            )
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        for k, depth in enumerate(depths):
            for i in range(0, depth, 2):
                self.layers[k][i] = LSAEncoderLayer(
                    embed_dims=embed_dims[k],
                    num_heads=num_heads[k],
                    feedforward_channels=mlp_ratios[k] * embed_dims[k],
                    drop_rate=drop_rate,
                    attn_drop_rate=attn_drop_rate,
                    drop_path_rate=rates[sum(depths[:k]) + i],
                    qkv_bias=qkv_bias,
                    window_size=windiow_sizes[k],
                )
