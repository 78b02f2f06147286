"""XCiT backbone (`XCiT: Cross-Covariance Image Transformers
<https://arxiv.org/abs/2106.09681>`_), with MMPretrain's arguments and keys.

Model-family file, in the order: attention layers, embeddings, blocks, backbone. XCiT has
no ``arch`` table: its configs give ``embed_dims``, ``depth``, ``num_heads`` directly.

Layout: a convolutional patch embedding (3x3 stride-2 conv + BN + GELU, four of them for
16x16 patches, three for 8x8), a Fourier position encoding added to the patch tokens,
``depth`` XCA blocks over the patch tokens (cross-covariance attention, then a local patch
interaction, then an FFN), then ``cls_attn_layers`` class-attention blocks that attend from
the class token only, and a final norm.

Keys: ``cls_token``, ``patch_embed.proj.{i}.conv`` / ``.bn``,
``pos_embed.token_projection.conv``, ``xca_layers.{i}.norm1`` / ``attn.{temperature,qkv,proj}``
/ ``norm3`` / ``local_mp.conv1.{conv,bn}`` / ``local_mp.conv2.conv`` / ``norm2`` /
``ffn.layers.0.0`` / ``ffn.layers.1`` / ``gamma1`` / ``gamma3`` / ``gamma2``,
``ca_layers.{i}.norm1`` / ``attn.{q,k,v,proj}`` / ``norm2`` / ``ffn.*`` / ``gamma1`` /
``gamma2``, and ``norm``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers.conv_module import ConvModule
from vistra.models.layers.drop import DropPath
from vistra.models.layers.norm import build_norm_layer
from vistra.models.layers.pos_embed import to_2tuple
from vistra.models.layers.transformer import FFN
from vistra.registry import MODELS

OUT_TYPES = ("raw", "featmap", "avg_featmap", "cls_token")


class ClassAttention(BaseModule):
    """Attention from the class token (the first token) to all tokens (CaiT): only the
    class token is updated, which keeps the cost linear in the number of tokens."""

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if dim % num_heads:
            raise ValueError(f"embed_dims={dim} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.k = nn.Linear(dim, dim, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, C)`` tokens -> the class token's update ``(B, 1, C)``."""
        batch, tokens, channels = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:  # (B, L, C) -> (B, heads, L, C / heads)
            return t.reshape(batch, t.shape[1], self.num_heads, -1).transpose(1, 2)

        q, k, v = heads(self.q(x[:, :1])), heads(self.k(x)), heads(self.v(x))
        drop = self.attn_drop if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        out = out.transpose(1, 2).reshape(batch, 1, channels)
        return self.proj_drop(self.proj(out))


class XCA(BaseModule):
    """Cross-covariance attention: the attention map is ``d_h x d_h`` between channels
    (softmax of the L2-normalised ``q^T k`` times a learned per-head ``temperature``), so
    the cost is linear in the number of tokens."""

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if dim % num_heads:
            raise ValueError(f"embed_dims={dim} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, channels = x.shape
        # (3, B, heads, C / heads, N): the "sequence" axis of the attention is the channels
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 4, 1)
        q, k, v = qkv.unbind(0)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        # the per-head temperature scales the logits; folded into q so SDPA can run it
        drop = self.attn_drop if self.training else 0.0
        out = F.scaled_dot_product_attention(q * self.temperature, k, v, dropout_p=drop, scale=1.0)
        out = out.permute(0, 3, 1, 2).reshape(batch, tokens, channels)
        return self.proj_drop(self.proj(out))


class PositionalEncodingFourier(BaseModule):
    """Sine/cosine features of the normalised (y, x) patch coordinates (``hidden_dim``
    frequencies each, as in DETR), projected to ``dim`` by a 1x1 conv."""

    def __init__(
        self,
        hidden_dim: int = 32,
        dim: int = 768,
        temperature: float = 10000,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.token_projection = ConvModule(hidden_dim * 2, dim, 1, norm_cfg=None, act_cfg=None)
        self.hidden_dim, self.dim, self.temperature = hidden_dim, dim, temperature
        self.scale = 2 * math.pi
        self.eps = 1e-6

    def forward(self, batch: int, height: int, width: int) -> torch.Tensor:
        """The encoding of an ``height x width`` grid, ``(batch, dim, height, width)``."""
        device = self.token_projection.conv.weight.device
        y = torch.arange(1, height + 1, device=device, dtype=torch.float32)
        x = torch.arange(1, width + 1, device=device, dtype=torch.float32)
        # coordinates in (0, 2 pi]; the eps keeps the last one just under 2 pi
        y = (y / (y[-1:] + self.eps) * self.scale)[:, None].expand(height, width)
        x = (x / (x[-1:] + self.eps) * self.scale)[None, :].expand(height, width)
        dim_t = torch.arange(self.hidden_dim, device=device, dtype=torch.float32)
        dim_t = self.temperature ** (
            2 * torch.div(dim_t, 2, rounding_mode="floor") / self.hidden_dim
        )

        def encode(coord: torch.Tensor) -> torch.Tensor:  # (H, W) -> (H, W, hidden_dim)
            angles = coord[..., None] / dim_t
            return torch.stack([angles[..., 0::2].sin(), angles[..., 1::2].cos()], -1).flatten(2)

        pos = torch.cat([encode(y), encode(x)], dim=-1).permute(2, 0, 1)[None]
        return self.token_projection(pos).expand(batch, -1, -1, -1)


class ConvPatchEmbed(BaseModule):
    """Patch embedding by 3x3 stride-2 conv + norm + activation layers (no activation on
    the last): four for 16x16 patches, three for 8x8."""

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        in_channels: int = 3,
        embed_dims: int = 768,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        norm_cfg = dict(type="BN") if norm_cfg is None else norm_cfg
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        if patch_size == 16:
            widths = [embed_dims // 8, embed_dims // 4, embed_dims // 2, embed_dims]
        elif patch_size == 8:
            widths = [embed_dims // 4, embed_dims // 2, embed_dims]
        else:
            raise ValueError(f"XCiT patch_size must be 16 or 8, got {patch_size!r}")
        self.img_size, self.patch_size = to_2tuple(img_size), patch_size
        layers = []
        for i, (c_in, c_out) in enumerate(zip([in_channels, *widths[:-1]], widths)):
            last = i == len(widths) - 1
            layers.append(
                ConvModule(
                    c_in, c_out, 3, stride=2, padding=1, norm_cfg=norm_cfg,
                    act_cfg=None if last else act_cfg,
                )
            )  # fmt: skip
        self.proj = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x = self.proj(x)
        hw = (int(x.shape[2]), int(x.shape[3]))
        return x.flatten(2).transpose(1, 2), hw


class LPI(BaseModule):
    """Local patch interaction: two depthwise ``kernel_size`` convs (conv -> act -> norm,
    then a plain conv) over the token grid, the only spatial mixing of an XCA block."""

    def __init__(
        self,
        in_features: int,
        out_features: int | None = None,
        kernel_size: int = 3,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        norm_cfg = dict(type="BN") if norm_cfg is None else norm_cfg
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        out_features = out_features or in_features
        padding = kernel_size // 2
        with warnings.catch_warnings():
            # the bias is not redundant here: the activation sits between conv and norm
            warnings.filterwarnings("ignore", "Unnecessary conv bias", UserWarning)
            self.conv1 = ConvModule(
                in_features, in_features, kernel_size, padding=padding, groups=in_features,
                bias=True, norm_cfg=norm_cfg, act_cfg=act_cfg, order=("conv", "act", "norm"),
            )  # fmt: skip
        self.conv2 = ConvModule(
            in_features, out_features, kernel_size, padding=padding, groups=out_features,
            norm_cfg=None, act_cfg=None,
        )  # fmt: skip

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch, tokens, channels = x.shape
        x = x.transpose(1, 2).reshape(batch, channels, height, width)
        x = self.conv2(self.conv1(x))
        return x.reshape(batch, -1, tokens).transpose(1, 2)


class XCABlock(BaseModule):
    """``x + g1 * XCA(norm1(x))``, ``x + g3 * LPI(norm3(x))``, ``x + g2 * FFN(norm2(x))``
    (the official code's order, hence norm3 before norm2)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        layer_scale_init_value: float = 1.0,
        bn_norm_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        norm_cfg = dict(type="LN", eps=1e-6) if norm_cfg is None else norm_cfg
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        self.norm1 = build_norm_layer(norm_cfg, dim)[1]
        self.attn = XCA(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm3 = build_norm_layer(norm_cfg, dim)[1]
        self.local_mp = LPI(dim, norm_cfg=bn_norm_cfg, act_cfg=act_cfg)
        self.norm2 = build_norm_layer(norm_cfg, dim)[1]
        self.ffn = FFN(
            embed_dims=dim, feedforward_channels=int(dim * mlp_ratio), act_cfg=act_cfg,
            ffn_drop=drop, add_identity=False,
        )  # fmt: skip
        self.gamma1 = nn.Parameter(layer_scale_init_value * torch.ones(dim))
        self.gamma3 = nn.Parameter(layer_scale_init_value * torch.ones(dim))
        self.gamma2 = nn.Parameter(layer_scale_init_value * torch.ones(dim))

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        x = x + self.drop_path(self.gamma1 * self.attn(self.norm1(x)))
        x = x + self.drop_path(self.gamma3 * self.local_mp(self.norm3(x), height, width))
        return x + self.drop_path(self.gamma2 * self.ffn(self.norm2(x)))


class ClassAttentionBlock(BaseModule):
    """Class attention then an FFN on the class token.

    As the official XCiT code (and so its checkpoints), the attention branch carries the
    *normalised* patch tokens next to the class token's update, and the FFN residual adds
    the patch tokens to themselves; with ``tokens_norm=False`` only the class token goes
    through ``norm2``. ``layer_scale_init_value <= 0`` means no ``gamma1``/``gamma2``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        layer_scale_init_value: float = 1.0,
        tokens_norm: bool = False,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        norm_cfg = dict(type="LN", eps=1e-6) if norm_cfg is None else norm_cfg
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        self.norm1 = build_norm_layer(norm_cfg, dim)[1]
        self.attn = ClassAttention(
            dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = build_norm_layer(norm_cfg, dim)[1]
        self.ffn = FFN(
            embed_dims=dim, feedforward_channels=int(dim * mlp_ratio), act_cfg=act_cfg,
            ffn_drop=drop, add_identity=False,
        )  # fmt: skip
        if layer_scale_init_value > 0:
            self.gamma1: nn.Parameter | None = nn.Parameter(
                layer_scale_init_value * torch.ones(dim)
            )
            self.gamma2: nn.Parameter | None = nn.Parameter(
                layer_scale_init_value * torch.ones(dim)
            )
        else:
            self.gamma1 = self.gamma2 = None
        self.tokens_norm = tokens_norm

    def _scale(self, gamma: nn.Parameter | None, x: torch.Tensor) -> torch.Tensor:
        return x if gamma is None else gamma * x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = self.norm1(x)
        branch = torch.cat([self.attn(normed), normed[:, 1:]], dim=1)
        x = x + self.drop_path(self._scale(self.gamma1, branch))
        if self.tokens_norm:
            x = self.norm2(x)
        else:
            x = torch.cat([self.norm2(x[:, :1]), x[:, 1:]], dim=1)
        cls_token = self._scale(self.gamma2, self.ffn(x[:, :1]))
        return x + self.drop_path(torch.cat([cls_token, x[:, 1:]], dim=1))


@MODELS.register_module()
class XCiT(BaseModule):
    """XCiT: convolutional patch embedding, XCA blocks, class-attention blocks.

    Layers are numbered over both kinds: ``0 .. depth-1`` are the XCA blocks (patch tokens
    only, no class token yet), ``depth .. depth+cls_attn_layers-1`` the class-attention
    blocks. ``out_indices`` picks layers; ``out_type`` shapes each output: ``'cls_token'``
    ``(B, C)`` (class-attention layers only), ``'featmap'`` ``(B, C, h, w)``,
    ``'avg_featmap'`` ``(B, C)`` (mean patch token) or ``'raw'`` ``(B, L, C)``. The final
    ``norm`` applies after the last layer.

    ``frozen_stages`` follows MMPretrain: ``0`` freezes the patch and position embeddings,
    ``n > 0`` also the first ``n - 1`` layers (the class token once a class-attention layer
    is frozen, the final norm once all layers are); ``-1`` freezes nothing. XCA blocks all
    share the one ``drop_path_rate`` (as the paper); class-attention blocks have none.
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        in_channels: int = 3,
        embed_dims: int = 768,
        depth: int = 12,
        cls_attn_layers: int = 2,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        use_pos_embed: bool = True,
        layer_scale_init_value: float = 1.0,
        tokens_norm: bool = False,
        out_type: str = "cls_token",
        out_indices: int | Sequence[int] = (-1,),
        final_norm: bool = True,
        frozen_stages: int = -1,
        bn_norm_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        init_cfg: dict | list[dict] | None = dict(type="TruncNormal", layer="Linear"),  # noqa: B006
    ) -> None:
        super().__init__(init_cfg)
        bn_norm_cfg = dict(type="BN") if bn_norm_cfg is None else bn_norm_cfg
        norm_cfg = dict(type="LN", eps=1e-6) if norm_cfg is None else norm_cfg
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        img_hw = to_2tuple(img_size)
        if img_hw[0] % patch_size or img_hw[1] % patch_size:
            raise ValueError(f"patch_size={patch_size} must divide img_size={img_hw} evenly")
        if out_type not in OUT_TYPES:
            raise ValueError(f"out_type={out_type!r} is not one of {OUT_TYPES}")
        self.embed_dims, self.out_type = embed_dims, out_type
        self.num_layers = depth + cls_attn_layers
        self.out_indices = self._parse_out_indices(out_indices, depth)
        if not -1 <= frozen_stages <= self.num_layers + 1:
            raise ValueError(
                f"frozen_stages={frozen_stages} must be in [-1, {self.num_layers + 1}] "
                f"for {self.num_layers} layers"
            )
        self.frozen_stages = frozen_stages

        self.patch_embed = ConvPatchEmbed(
            img_size, patch_size, in_channels, embed_dims, norm_cfg=bn_norm_cfg, act_cfg=act_cfg
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims))
        self.use_pos_embed = use_pos_embed
        if use_pos_embed:
            self.pos_embed = PositionalEncodingFourier(dim=embed_dims)
        self.pos_drop = nn.Dropout(p=drop_rate)
        common = dict(
            dim=embed_dims, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
            drop=drop_rate, attn_drop=attn_drop_rate, norm_cfg=norm_cfg, act_cfg=act_cfg,
            layer_scale_init_value=layer_scale_init_value,
        )  # fmt: skip
        self.xca_layers = nn.ModuleList(
            XCABlock(drop_path=drop_path_rate, bn_norm_cfg=bn_norm_cfg, **common)
            for _ in range(depth)
        )
        self.ca_layers = nn.ModuleList(
            ClassAttentionBlock(tokens_norm=tokens_norm, **common) for _ in range(cls_attn_layers)
        )
        self.final_norm = final_norm
        if final_norm:
            self.norm = build_norm_layer(norm_cfg, embed_dims)[1]
        self._freeze_stages()

    def _parse_out_indices(self, out_indices: int | Sequence[int], depth: int) -> list[int]:
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        if not isinstance(out_indices, Sequence) or isinstance(out_indices, str):
            raise TypeError(f"out_indices must be an int or a sequence, got {out_indices!r}")
        parsed = []
        for index in out_indices:
            resolved = self.num_layers + index if index < 0 else index
            if not 0 <= resolved < self.num_layers:
                raise ValueError(
                    f"out_indices entry {index} is out of range for {self.num_layers} layers"
                )
            if self.out_type == "cls_token" and resolved < depth:
                raise ValueError(
                    f"out_indices entry {index} is an XCA layer, which has no class token: "
                    "out_type='cls_token' needs class-attention layers "
                    f"({depth}..{self.num_layers - 1})"
                )
            parsed.append(resolved)
        return parsed

    def init_weights(self) -> None:
        if self.is_init:
            return
        super().init_weights()
        cfgs = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg or {}]
        if not any(c.get("type") == "Pretrained" for c in cfgs):
            nn.init.trunc_normal_(self.cls_token, std=0.02)

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        frozen: list[nn.Module] = [self.patch_embed, self.pos_drop]
        if self.use_pos_embed:
            frozen.append(self.pos_embed)
        layers = [*self.xca_layers, *self.ca_layers]
        frozen += layers[: max(self.frozen_stages - 1, 0)]
        if self.frozen_stages > len(self.xca_layers):
            self.cls_token.requires_grad = False  # the class token is used from here on
        if self.frozen_stages >= self.num_layers and self.final_norm:
            frozen.append(self.norm)
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> XCiT:
        super().train(mode)
        self._freeze_stages()
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        batch = x.shape[0]
        x, hw = self.patch_embed(x)
        if self.use_pos_embed:
            x = x + self.pos_embed(batch, *hw).flatten(2).transpose(1, 2)
        x = self.pos_drop(x)
        outs = []
        for i, layer in enumerate(self.xca_layers):
            x = layer(x, *hw)
            if i in self.out_indices:
                outs.append(self._format_output(x, hw, with_cls_token=False))
        x = torch.cat((self.cls_token.expand(batch, -1, -1), x), dim=1)
        for i, layer in enumerate(self.ca_layers):
            x = layer(x)
            if i == len(self.ca_layers) - 1 and self.final_norm:
                x = self.norm(x)
            if i + len(self.xca_layers) in self.out_indices:
                outs.append(self._format_output(x, hw, with_cls_token=True))
        return tuple(outs)

    def _format_output(
        self, x: torch.Tensor, hw: tuple[int, int], with_cls_token: bool
    ) -> torch.Tensor:
        if self.out_type == "raw":
            return x
        if self.out_type == "cls_token":
            return x[:, 0]
        patch_tokens = x[:, 1:] if with_cls_token else x
        if self.out_type == "featmap":
            return patch_tokens.reshape(x.shape[0], *hw, -1).permute(0, 3, 1, 2)
        return patch_tokens.mean(dim=1)  # 'avg_featmap'
