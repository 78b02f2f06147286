"""Mix Transformer (MiT), the SegFormer backbone, `paper <https://arxiv.org/abs/2105.15203>`__,
as MMSegmentation's ``MixVisionTransformer``.

Each of ``num_stages`` stages embeds its input by an overlapping strided convolution
(``kernel = patch_sizes[i]``, ``padding = kernel // 2``), runs ``num_layers[i]`` encoder
layers at width ``embed_dims * num_heads[i]`` and normalises the tokens. Keys:

- ``layers.{i}.0.projection`` / ``layers.{i}.0.norm``: the stage's patch embedding;
- ``layers.{i}.1.{j}.norm1``, ``.attn.attn.in_proj_weight`` / ``in_proj_bias`` /
  ``out_proj.*`` (mmcv's ``MultiheadAttention`` around ``nn.MultiheadAttention``),
  ``.attn.sr`` / ``.attn.norm`` (the spatial-reduction conv and its LayerNorm, only when
  ``sr_ratios[i] > 1``), ``.norm2``, ``.ffn.layers.{0,1,4}`` (MixFFN: 1x1 conv,
  3x3 depthwise conv, activation, dropout, 1x1 conv);
- ``layers.{i}.2``: the stage's final LayerNorm.

Efficient attention: keys and values come from the tokens reduced by an
``sr_ratio``-strided convolution, so attention costs ``N * N / sr_ratio**2``. Stochastic
depth grows linearly over all layers of all stages, on both residual branches.

Order: MixFFN, efficient attention, encoder layer, backbone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from vistra.models.base import BaseModule
from vistra.models.init import constant_init, normal_init, trunc_normal_init
from vistra.models.layers.activation import build_activation_layer
from vistra.models.layers.drop import build_dropout
from vistra.models.layers.mmcv_attention import MMCVMultiheadAttention
from vistra.models.layers.norm import build_norm_layer
from vistra.models.layers.patch_embed import PatchEmbed
from vistra.models.layers.shape_convert import nchw_to_nlc, nlc_to_nchw
from vistra.registry import MODELS


class MixFFN(BaseModule):
    """FFN of 1x1 convolutions with a 3x3 depthwise convolution between them, which gives
    the tokens their position information (SegFormer has no position embedding)."""

    def __init__(
        self,
        embed_dims: int,
        feedforward_channels: int,
        act_cfg: dict = dict(type="GELU"),  # noqa: B006 (never mutated)
        ffn_drop: float = 0.0,
        dropout_layer: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.embed_dims, self.feedforward_channels = embed_dims, feedforward_channels
        hidden = feedforward_channels
        drop = nn.Dropout(ffn_drop)  # one module twice, as upstream (indices 3 and 5)
        self.layers = nn.Sequential(
            nn.Conv2d(embed_dims, hidden, 1),
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden),
            build_activation_layer(act_cfg),
            drop,
            nn.Conv2d(hidden, embed_dims, 1),
            drop,
        )
        self.dropout_layer = build_dropout(dropout_layer) if dropout_layer else nn.Identity()

    def forward(
        self, x: torch.Tensor, hw_shape: Sequence[int], identity: torch.Tensor | None = None
    ) -> torch.Tensor:
        out = nchw_to_nlc(self.layers(nlc_to_nchw(x, hw_shape)))
        return (x if identity is None else identity) + self.dropout_layer(out)


class EfficientMultiheadAttention(MMCVMultiheadAttention):
    """mmcv's multi-head attention whose keys/values are the tokens spatially reduced by an
    ``sr_ratio``-strided ``sr`` conv and a ``norm`` (only for ``sr_ratio > 1``).
    ``qkv_bias`` gives the input and the output projection a bias (mmcv's ``bias``)."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        dropout_layer: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
        batch_first: bool = True,
        qkv_bias: bool = False,
        norm_cfg: dict = dict(type="LN"),  # noqa: B006 (never mutated)
        sr_ratio: int = 1,
    ) -> None:
        super().__init__(
            embed_dims,
            num_heads,
            attn_drop,
            proj_drop,
            dropout_layer=dropout_layer,
            init_cfg=init_cfg,
            batch_first=batch_first,
            bias=qkv_bias,
        )
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(embed_dims, embed_dims, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = build_norm_layer(norm_cfg, embed_dims)[1]

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, hw_shape: Sequence[int], identity: torch.Tensor | None = None
    ) -> torch.Tensor:
        x_kv = x
        if self.sr_ratio > 1:
            x_kv = self.norm(nchw_to_nlc(self.sr(nlc_to_nchw(x, hw_shape))))
        identity = x if identity is None else identity
        if not self.batch_first:  # (N, B, C) -> (B, N, C)
            x, x_kv = x.transpose(0, 1), x_kv.transpose(0, 1)
        out = self._attention(x, x_kv, x_kv, None, None)
        if not self.batch_first:
            out = out.transpose(0, 1)
        return identity + self.dropout_layer(self.proj_drop(out))


class MiTEncoderLayer(BaseModule):
    """``x = attn(norm1(x), identity=x)``, then ``x = ffn(norm2(x), identity=x)``
    (MMSegmentation's ``mit.TransformerEncoderLayer``)."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        feedforward_channels: int,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        qkv_bias: bool = True,
        act_cfg: dict = dict(type="GELU"),  # noqa: B006 (never mutated)
        norm_cfg: dict = dict(type="LN"),  # noqa: B006 (never mutated)
        batch_first: bool = True,
        sr_ratio: int = 1,
        with_cp: bool = False,
    ) -> None:
        super().__init__()
        drop_path = dict(type="DropPath", drop_prob=drop_path_rate)
        self.norm1 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.attn = EfficientMultiheadAttention(
            embed_dims=embed_dims,
            num_heads=num_heads,
            attn_drop=attn_drop_rate,
            proj_drop=drop_rate,
            dropout_layer=drop_path,
            batch_first=batch_first,
            qkv_bias=qkv_bias,
            norm_cfg=norm_cfg,
            sr_ratio=sr_ratio,
        )
        self.norm2 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.ffn = MixFFN(
            embed_dims=embed_dims,
            feedforward_channels=feedforward_channels,
            ffn_drop=drop_rate,
            dropout_layer=drop_path,
            act_cfg=act_cfg,
        )
        self.with_cp = with_cp

    def forward(self, x: torch.Tensor, hw_shape: Sequence[int]) -> torch.Tensor:
        def inner(x: torch.Tensor) -> torch.Tensor:
            x = self.attn(self.norm1(x), hw_shape, identity=x)
            return self.ffn(self.norm2(x), hw_shape, identity=x)

        if self.with_cp and x.requires_grad:
            return checkpoint(inner, x, use_reentrant=False)
        return inner(x)


@MODELS.register_module()
class MixVisionTransformer(BaseModule):
    """SegFormer's hierarchical encoder; returns the ``(B, C_i, H_i, W_i)`` maps of the
    ``out_indices`` stages. Stage ``i`` is ``embed_dims * num_heads[i]`` wide."""

    def __init__(
        self,
        in_channels: int = 3,
        embed_dims: int = 64,
        num_stages: int = 4,
        num_layers: Sequence[int] = (3, 4, 6, 3),
        num_heads: Sequence[int] = (1, 2, 4, 8),
        patch_sizes: Sequence[int] = (7, 3, 3, 3),
        strides: Sequence[int] = (4, 2, 2, 2),
        sr_ratios: Sequence[int] = (8, 4, 2, 1),
        out_indices: Sequence[int] = (0, 1, 2, 3),
        mlp_ratio: int = 4,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        act_cfg: dict = dict(type="GELU"),  # noqa: B006 (never mutated)
        norm_cfg: dict = dict(type="LN", eps=1e-6),  # noqa: B006 (never mutated)
        pretrained: str | None = None,
        init_cfg: dict | list[dict] | None = None,
        with_cp: bool = False,
    ) -> None:
        if init_cfg and pretrained:
            raise ValueError("MixVisionTransformer: init_cfg and pretrained cannot both be set")
        if pretrained is not None:
            if not isinstance(pretrained, str):
                raise TypeError(f"pretrained must be a str or None, got {pretrained!r}")
            init_cfg = dict(type="Pretrained", checkpoint=pretrained)
        super().__init__(init_cfg)
        per_stage = dict(
            num_layers=num_layers,
            num_heads=num_heads,
            patch_sizes=patch_sizes,
            strides=strides,
            sr_ratios=sr_ratios,
        )
        wrong = {k: list(v) for k, v in per_stage.items() if len(v) != num_stages}
        if wrong:
            raise ValueError(f"num_stages={num_stages}: these need one entry per stage: {wrong}")
        out_indices = [out_indices] if isinstance(out_indices, int) else list(out_indices)
        if not out_indices or max(out_indices) >= num_stages:
            raise ValueError(
                f"out_indices={out_indices}: each must be a stage index in 0..{num_stages - 1}"
            )
        self.embed_dims, self.num_stages = embed_dims, num_stages
        self.num_layers, self.num_heads = list(num_layers), list(num_heads)
        self.patch_sizes, self.strides = list(patch_sizes), list(strides)
        self.sr_ratios, self.out_indices, self.with_cp = list(sr_ratios), out_indices, with_cp

        rates = torch.linspace(0, drop_path_rate, sum(num_layers)).tolist()
        self.layers = nn.ModuleList()
        cur = 0
        for i, depth in enumerate(num_layers):
            dims = embed_dims * num_heads[i]
            patch_embed = PatchEmbed(
                in_channels=in_channels,
                embed_dims=dims,
                kernel_size=patch_sizes[i],
                stride=strides[i],
                padding=patch_sizes[i] // 2,
                norm_cfg=norm_cfg,
            )
            blocks = nn.ModuleList(
                MiTEncoderLayer(
                    embed_dims=dims,
                    num_heads=num_heads[i],
                    feedforward_channels=mlp_ratio * dims,
                    drop_rate=drop_rate,
                    attn_drop_rate=attn_drop_rate,
                    drop_path_rate=rates[cur + j],
                    qkv_bias=qkv_bias,
                    act_cfg=act_cfg,
                    norm_cfg=norm_cfg,
                    with_cp=with_cp,
                    sr_ratio=sr_ratios[i],
                )
                for j in range(depth)
            )
            norm = build_norm_layer(norm_cfg, dims)[1]
            self.layers.append(nn.ModuleList([patch_embed, blocks, norm]))
            in_channels = dims
            cur += depth

    def init_weights(self) -> None:
        if self.is_init:
            return
        if self.init_cfg is not None:
            super().init_weights()
            return
        # upstream's default: truncated-normal linears, unit LayerNorms and He-normal convs by
        # fan-out per group (the depthwise convs included)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_init(m, std=0.02, bias=0.0)
            elif isinstance(m, nn.LayerNorm):
                constant_init(m, val=1.0, bias=0.0)
            elif isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                normal_init(m, mean=0.0, std=math.sqrt(2.0 / fan_out), bias=0.0)
        self._is_init = True

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i, (patch_embed, blocks, norm) in enumerate(self.layers):
            x, hw_shape = patch_embed(x)
            for block in blocks:
                x = block(x, hw_shape)
            x = nlc_to_nchw(norm(x), hw_shape)
            if i in self.out_indices:
                outs.append(x)
        return outs
