"""Tokens-to-Token ViT (`Tokens-to-Token ViT: Training Vision Transformers from Scratch on
ImageNet <https://arxiv.org/abs/2101.11986>`_), with MMPretrain's arguments and keys.

Model-family file, in the order: transformer layer, T2T module, position table, backbone.
T2T-ViT has no ``arch`` table: its configs give ``embed_dims``, ``num_layers`` and the
layers' ``num_heads``/``feedforward_channels`` (``layer_cfgs``) directly.

Layout: the T2T module re-structures the image three times by soft splits (overlapping
unfolds: 7x7 stride 4, then 3x3 stride 2 twice) with a single-head transformer layer
between them, then projects the tokens to ``embed_dims``; a class token and a fixed
sinusoid position table are added and ``num_layers`` pre-norm transformer layers follow.

Keys: ``cls_token``, ``pos_embed`` (a buffer, saved with the weights),
``tokens_to_token.attention{1,2}.{ln1,attn.qkv,attn.proj,ln2,ffn.layers.0.0,ffn.layers.1}``,
``tokens_to_token.project``, ``encoder.{i}.{ln1,attn.qkv,attn.proj,ln2,ffn.*}`` and ``norm``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers.norm import build_norm_layer
from vistra.models.layers.pos_embed import to_2tuple
from vistra.models.layers.transformer import FFN, MultiheadAttention, resize_pos_embed
from vistra.registry import MODELS

logger = logging.getLogger(__name__)

OUT_TYPES = ("raw", "cls_token", "featmap", "avg_featmap")


class T2TTransformerLayer(BaseModule):
    """Pre-norm transformer layer whose input width may differ from ``embed_dims``.

    With ``input_dims`` set (the T2T module's layers) the attention's residual is its own
    (single-head) values instead of the input, since the widths differ.

    The attention logits are scaled as MMPretrain 1.2.0 scales them, which is not what
    ``qk_scale`` says: T2T-ViT always hands its attention a ``qk_scale`` (the official
    ``(input_dims // num_heads) ** -0.5`` by default), and any ``qk_scale`` makes
    MMPretrain's attention *divide* the logits by ``head_dims ** -0.5``, i.e. multiply them
    by ``sqrt(head_dims)``, whatever its value. Published MMPretrain T2T-ViT numbers come
    from that code, so the same is computed here; ``qk_scale`` is accepted for the
    signature only.
    """

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        feedforward_channels: int,
        input_dims: int | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        num_fcs: int = 2,
        qkv_bias: bool = False,
        qk_scale: float | None = None,
        act_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        norm_cfg = dict(type="LN") if norm_cfg is None else norm_cfg
        self.v_shortcut = input_dims is not None
        input_dims = input_dims or embed_dims
        drop_path = dict(type="DropPath", drop_prob=float(drop_path_rate))
        self.ln1 = build_norm_layer(norm_cfg, input_dims)[1]
        self.attn = MultiheadAttention(
            embed_dims=embed_dims,
            num_heads=num_heads,
            input_dims=input_dims,
            attn_drop=attn_drop_rate,
            proj_drop=drop_rate,
            dropout_layer=drop_path,
            qkv_bias=qkv_bias,
            qk_scale=(embed_dims // num_heads) ** 0.5,  # see the class docstring
            v_shortcut=self.v_shortcut,
        )
        self.ln2 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.ffn = FFN(
            embed_dims=embed_dims,
            feedforward_channels=feedforward_channels,
            num_fcs=num_fcs,
            ffn_drop=drop_rate,
            dropout_layer=drop_path,
            act_cfg=act_cfg,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn = self.attn(self.ln1(x))
        x = attn if self.v_shortcut else x + attn
        return self.ffn(self.ln2(x), identity=x)


def _unfold_size(unfold: nn.Unfold, size: Sequence[int]) -> tuple[int, int]:
    """The grid an ``nn.Unfold`` leaves of an ``(H, W)`` input."""
    out = []
    for i, length in enumerate(size):
        k, s, p, d = (to_2tuple(v)[i] for v in (unfold.kernel_size, unfold.stride,
                                                 unfold.padding, unfold.dilation))  # fmt: skip
        out.append((length + 2 * p - d * (k - 1) - 1) // s + 1)
    return out[0], out[1]


class T2TModule(BaseModule):
    """Tokens-to-token: three soft splits (7x7/4, 3x3/2, 3x3/2 unfolds) with a
    single-head ``token_dims`` transformer layer after the first two, then a linear
    projection to ``embed_dims``; the tokens come out 16 times coarser than the image."""

    def __init__(
        self,
        img_size: int = 224,
        in_channels: int = 3,
        embed_dims: int = 384,
        token_dims: int = 64,
        use_performer: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if use_performer:
            raise ValueError(
                "t2t_cfg use_performer=True is not supported (MMPretrain has no Performer "
                "attention either); use use_performer=False"
            )
        self.embed_dims = embed_dims
        self.soft_split0 = nn.Unfold(kernel_size=(7, 7), stride=(4, 4), padding=(2, 2))
        self.soft_split1 = nn.Unfold(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))
        self.soft_split2 = nn.Unfold(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))
        self.attention1 = T2TTransformerLayer(
            input_dims=in_channels * 7 * 7, embed_dims=token_dims, num_heads=1,
            feedforward_channels=token_dims,
        )  # fmt: skip
        self.attention2 = T2TTransformerLayer(
            input_dims=token_dims * 3 * 3, embed_dims=token_dims, num_heads=1,
            feedforward_channels=token_dims,
        )  # fmt: skip
        self.project = nn.Linear(token_dims * 3 * 3, embed_dims)
        side = to_2tuple(img_size)[0] // (4 * 2 * 2)  # the three soft splits' strides
        self.init_out_size = [side, side]
        self.num_patches = side**2

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        hw = _unfold_size(self.soft_split0, x.shape[2:])
        x = self.soft_split0(x).transpose(1, 2)
        for attention, soft_split in (
            (self.attention1, self.soft_split1),
            (self.attention2, self.soft_split2),
        ):
            # re-structurise the tokens into a map, then split it again
            x = attention(x).transpose(1, 2)
            x = x.reshape(x.shape[0], x.shape[1], *hw)
            hw = _unfold_size(soft_split, hw)
            x = soft_split(x).transpose(1, 2)
        return self.project(x), hw


def sinusoid_encoding(num_positions: int, embed_dims: int) -> torch.Tensor:
    """The fixed sin/cos table of `Attention Is All You Need`, ``(1, L, C)``: channel
    ``2i`` is ``sin(pos / 10000^(2i/C))``, channel ``2i+1`` the cosine of the same angle."""
    # float64 then float32, as the numpy table of the official code
    pos = np.arange(num_positions, dtype=np.float64)[:, None]
    exponent = 2 * (np.arange(embed_dims) // 2) / embed_dims
    table = pos / np.power(10000, exponent)[None, :]
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return torch.tensor(table, dtype=torch.float32)[None]  # on the default device


@MODELS.register_module()
class T2T_ViT(BaseModule):  # noqa: N801 (MMPretrain's registered name)
    """T2T-ViT: the T2T module, a class token, a fixed sinusoid position table and
    ``num_layers`` transformer layers.

    ``layer_cfgs`` (one dict for all layers, or one per layer) overrides each layer's
    arguments (defaults: 6 heads, ``3 * embed_dims`` FFN channels, no qkv bias, stochastic
    depth rising linearly to ``drop_path_rate``); ``t2t_cfg`` goes to the T2T module
    (``token_dims``, ``use_performer``). ``out_type`` shapes the ``out_indices`` outputs as
    ViT's: ``'cls_token'`` ``(B, C)``, ``'featmap'`` ``(B, C, h, w)``, ``'avg_featmap'``
    ``(B, C)`` (mean patch token), ``'raw'`` ``(B, L, C)``. Other input sizes than
    ``img_size`` work: the position table is interpolated (``interpolate_mode``), and a
    checkpoint's table of another grid is resized while loading.
    """

    OUT_TYPES = OUT_TYPES

    def __init__(
        self,
        img_size: int = 224,
        in_channels: int = 3,
        embed_dims: int = 384,
        num_layers: int = 14,
        out_indices: int | Sequence[int] = -1,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_cfg: dict | None = None,
        final_norm: bool = True,
        out_type: str = "cls_token",
        with_cls_token: bool = True,
        interpolate_mode: str = "bicubic",
        t2t_cfg: dict | None = None,
        layer_cfgs: dict | Sequence[dict] | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        norm_cfg = dict(type="LN") if norm_cfg is None else norm_cfg
        if out_type not in OUT_TYPES:
            raise ValueError(f"out_type={out_type!r} is not one of {OUT_TYPES}")
        self.out_type = out_type
        self.embed_dims, self.num_layers = embed_dims, num_layers
        self.tokens_to_token = T2TModule(
            img_size=img_size, in_channels=in_channels, embed_dims=embed_dims, **(t2t_cfg or {})
        )
        self.patch_resolution = self.tokens_to_token.init_out_size
        num_patches = self.patch_resolution[0] * self.patch_resolution[1]

        if with_cls_token:
            self.cls_token: nn.Parameter | None = nn.Parameter(torch.zeros(1, 1, embed_dims))
            self.num_extra_tokens = 1
        elif out_type != "cls_token":
            self.cls_token = None
            self.num_extra_tokens = 0
        else:
            raise ValueError("with_cls_token must be True when out_type='cls_token'")
        self.with_cls_token = with_cls_token
        self.interpolate_mode = interpolate_mode
        self.register_buffer(
            "pos_embed", sinusoid_encoding(num_patches + self.num_extra_tokens, embed_dims)
        )
        self.drop_after_pos = nn.Dropout(p=drop_rate)
        self.out_indices = self._parse_out_indices(out_indices)
        self.encoder = self._build_layers(layer_cfgs, drop_path_rate, norm_cfg)
        self.final_norm = final_norm
        self.norm = build_norm_layer(norm_cfg, embed_dims)[1] if final_norm else nn.Identity()

    def _parse_out_indices(self, out_indices: int | Sequence[int]) -> list[int]:
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
            parsed.append(resolved)
        return parsed

    def _build_layers(
        self, layer_cfgs: dict | Sequence[dict] | None, drop_path_rate: float, norm_cfg: dict
    ) -> nn.ModuleList:
        if layer_cfgs is None or isinstance(layer_cfgs, dict):
            layer_cfgs = [dict(layer_cfgs or {}) for _ in range(self.num_layers)]
        elif len(layer_cfgs) != self.num_layers:
            raise ValueError(
                f"layer_cfgs has {len(layer_cfgs)} entries but num_layers={self.num_layers}"
            )
        rates = np.linspace(0, drop_path_rate, self.num_layers)
        layers = nn.ModuleList()
        for rate, layer_cfg in zip(rates, layer_cfgs):
            args = dict(
                embed_dims=self.embed_dims,
                num_heads=6,
                feedforward_channels=3 * self.embed_dims,
                drop_path_rate=float(rate),
                qkv_bias=False,
                norm_cfg=norm_cfg,
            )
            args.update(layer_cfg)
            layers.append(T2TTransformerLayer(**args))
        return layers

    def init_weights(self) -> None:
        if self.is_init:
            return
        super().init_weights()
        cfgs = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg or {}]
        if self.cls_token is not None and not any(c.get("type") == "Pretrained" for c in cfgs):
            nn.init.trunc_normal_(self.cls_token, std=0.02)

    def _load_from_state_dict(
        self,
        state_dict: dict,
        prefix: str,
        local_metadata: dict,
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # a checkpoint trained at another resolution holds a table of another grid
        name = prefix + "pos_embed"
        ckpt = state_dict.get(name)
        if ckpt is not None and ckpt.shape != self.pos_embed.shape and ckpt.ndim == 3:
            side = int(math.isqrt(ckpt.shape[1] - self.num_extra_tokens))
            logger.info(
                "Resize the pos_embed shape from %s to %s.",
                tuple(ckpt.shape),
                tuple(self.pos_embed.shape),
            )
            state_dict[name] = resize_pos_embed(
                ckpt, (side, side), self.patch_resolution, self.interpolate_mode,
                self.num_extra_tokens,
            )  # fmt: skip
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        batch = x.shape[0]
        x, hw = self.tokens_to_token(x)
        if self.cls_token is not None:
            x = torch.cat((self.cls_token.expand(batch, -1, -1), x), dim=1)
        x = x + resize_pos_embed(
            self.pos_embed, self.patch_resolution, hw, mode=self.interpolate_mode,
            num_extra_tokens=self.num_extra_tokens,
        )  # fmt: skip
        x = self.drop_after_pos(x)
        outs = []
        for i, layer in enumerate(self.encoder):
            x = layer(x)
            if i == len(self.encoder) - 1 and self.final_norm:
                x = self.norm(x)
            if i in self.out_indices:
                outs.append(self._format_output(x, hw))
        return tuple(outs)

    def _format_output(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        if self.out_type == "raw":
            return x
        if self.out_type == "cls_token":
            return x[:, 0]
        patch_tokens = x[:, self.num_extra_tokens :]
        if self.out_type == "featmap":
            return patch_tokens.reshape(x.shape[0], *hw, -1).permute(0, 3, 1, 2)
        return patch_tokens.mean(dim=1)  # 'avg_featmap'
