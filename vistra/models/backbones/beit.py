"""MMPretrain's BEiT-style ViT backbone (``BEiTViT``), `BEiT: BERT Pre-Training of Image
Transformers <https://arxiv.org/abs/2106.08254>`_ (also BEiT v2, CAE and EVA fine-tuning).

A ViT whose attention adds a learned relative position bias (per layer, or one table
shared by all layers), whose residual branches carry a layer scale, whose key projection
has no bias (``bias='qv_bias'``: learned query and value biases only), and which may have
no absolute position embedding. Keys:

- ``cls_token``; ``pos_embed`` only with ``use_abs_pos_emb``; ``patch_embed.projection``;
- ``layers.{i}.ln1`` / ``ln2``, ``layers.{i}.gamma_1`` / ``gamma_2`` (layer scale, when
  ``layer_scale_init_value > 0``), ``layers.{i}.attn.qkv`` (no bias unless ``bias=True``),
  ``attn.q_bias`` / ``attn.v_bias`` (``bias='qv_bias'``), ``attn.proj``,
  ``attn.relative_position_bias_table`` ``((2h-1)(2w-1)+3, heads)`` and its
  ``attn.relative_position_index`` buffer (``use_rel_pos_bias``),
  ``layers.{i}.ffn.layers.0.0`` / ``ffn.layers.1``;
- ``rel_pos_bias.relative_position_bias_table`` / ``relative_position_index`` with
  ``use_shared_rel_pos_bias``; ``ln1`` with ``final_norm``, ``ln2`` with
  ``out_type='avg_featmap'`` (the default: the normed mean of the patch tokens).

The bias tables are sized for the ``img_size // patch_size`` grid, so the input must give
that grid. Loading a checkpoint copies a shared table into every layer when the layers
have their own (BEiT pre-training shares one, fine-tuning does not) and resizes a table of
another grid (the geometric-spacing interpolation of the BEiT fine-tuning code).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.backbones.vision_transformer import (
    VisionTransformer,
    _arch,
    with_layer_defaults,
)
from vistra.models.base import BaseModule
from vistra.models.layers.drop import DropPath
from vistra.models.layers.norm import build_norm_layer
from vistra.models.layers.relative_position_bias import (
    RelativePositionBias,
    gather_relative_position_bias,
    num_relative_distances,
    relative_position_index,
    resize_relative_position_bias_table,
)
from vistra.models.layers.transformer import FFN
from vistra.registry import MODELS

logger = logging.getLogger(__name__)

QKV_BIASES = ("qv_bias", True, False)


class BEiTAttention(BaseModule):
    """Self-attention over the class token and a ``window_size`` patch grid, with the
    layer's own relative position bias (``use_rel_pos_bias``) and/or a shared one given to
    ``forward``. ``bias``: ``'qv_bias'`` (learned query and value biases, none on the
    key), ``True`` (a ``qkv`` bias) or ``False``."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        window_size: Sequence[int] | None,
        use_rel_pos_bias: bool,
        bias: bool | str = "qv_bias",
        qk_scale: float | None = None,
        attn_drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if bias not in QKV_BIASES:
            raise ValueError(f"BEiTAttention: bias must be one of {QKV_BIASES}, got {bias!r}")
        if use_rel_pos_bias and window_size is None:
            raise ValueError("BEiTAttention: use_rel_pos_bias=True needs a window_size")
        self.embed_dims, self.num_heads, self.bias = embed_dims, num_heads, bias
        self.scale = qk_scale or (embed_dims // num_heads) ** -0.5
        if bias == "qv_bias":
            self.q_bias = nn.Parameter(torch.zeros(embed_dims))
            self.v_bias = nn.Parameter(torch.zeros(embed_dims))
        self.use_rel_pos_bias = use_rel_pos_bias
        self.window_size = tuple(window_size) if use_rel_pos_bias else None
        if use_rel_pos_bias:
            self.relative_position_bias_table: nn.Parameter | None = nn.Parameter(
                torch.zeros(num_relative_distances(self.window_size), num_heads)
            )
            self.register_buffer("relative_position_index", relative_position_index(window_size))
        else:
            self.relative_position_bias_table = None
            self.relative_position_index = None
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=bias is True)
        self.attn_drop = attn_drop_rate
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop_rate)

    def init_weights(self) -> None:
        if self.is_init:
            return
        super().init_weights()
        if self.relative_position_bias_table is not None:
            nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, rel_pos_bias: torch.Tensor | None = None) -> torch.Tensor:
        batch, tokens, channels = x.shape
        if self.bias == "qv_bias":
            qkv_bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
            qkv = F.linear(x, self.qkv.weight, qkv_bias)
        else:
            qkv = self.qkv(x)
        q, k, v = qkv.reshape(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        mask = rel_pos_bias
        if self.relative_position_bias_table is not None:
            if tokens != self.relative_position_index.shape[0]:
                raise ValueError(
                    f"BEiTAttention: the relative position bias is sized for a "
                    f"{self.window_size[0]}x{self.window_size[1]} patch grid and the class "
                    f"token ({self.relative_position_index.shape[0]} tokens), got {tokens}; "
                    "give the backbone's img_size the input size"
                )
            own = gather_relative_position_bias(
                self.relative_position_bias_table, self.relative_position_index
            )
            mask = own if mask is None else own + mask
        if mask is not None:
            mask = mask.to(q.dtype)  # SDPA wants the bias in the query's dtype (autocast)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.attn_drop if self.training else 0.0,
            scale=self.scale,
        )
        out = out.transpose(1, 2).reshape(batch, tokens, channels)
        return self.proj_drop(self.proj(out))


class BEiTTransformerEncoderLayer(BaseModule):
    """``x + drop_path(gamma_1 * attn(ln1(x)))`` then ``x + drop_path(gamma_2 *
    ffn(ln2(x)))``; no ``gamma`` when ``layer_scale_init_value`` is 0.

    As upstream, the attention's own dropouts are 0 (``attn_cfg`` can set them), and the
    FFN applies stochastic depth itself before the layer applies it again: the drop-path
    rate of the FFN branch is compounded in training, as in MMPretrain's training recipes.
    """

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        feedforward_channels: int,
        layer_scale_init_value: float,
        window_size: Sequence[int] | None,
        use_rel_pos_bias: bool,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        num_fcs: int = 2,
        bias: bool | str = "qv_bias",
        act_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        attn_cfg: dict | None = None,
        ffn_cfg: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        # upstream hands attn_drop_rate/drop_rate to its attention under names it does not
        # take, so they have no effect there; kept in the signature for configs
        del attn_drop_rate
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        norm_cfg = dict(type="LN") if norm_cfg is None else norm_cfg
        self.embed_dims = embed_dims
        self.ln1 = build_norm_layer(norm_cfg, embed_dims)[1]
        attn_args = dict(
            embed_dims=embed_dims,
            num_heads=num_heads,
            window_size=window_size,
            use_rel_pos_bias=use_rel_pos_bias,
            bias=bias,
        )
        self.attn = BEiTAttention(**{**attn_args, **(attn_cfg or {})})
        self.ln2 = build_norm_layer(norm_cfg, embed_dims)[1]
        drop_path = dict(type="DropPath", drop_prob=float(drop_path_rate))
        ffn_args = dict(
            embed_dims=embed_dims,
            feedforward_channels=feedforward_channels,
            num_fcs=num_fcs,
            ffn_drop=drop_rate,
            dropout_layer=drop_path,
            act_cfg=act_cfg,
            add_identity=False,
        )
        self.ffn = FFN(**{**ffn_args, **(ffn_cfg or {})})
        self.drop_path = DropPath(float(drop_path_rate))
        if layer_scale_init_value > 0:
            self.gamma_1: nn.Parameter | None = nn.Parameter(
                layer_scale_init_value * torch.ones(embed_dims)
            )
            self.gamma_2: nn.Parameter | None = nn.Parameter(
                layer_scale_init_value * torch.ones(embed_dims)
            )
        else:
            self.gamma_1, self.gamma_2 = None, None

    def init_weights(self) -> None:
        if self.is_init:
            return
        super().init_weights()
        # as the ViT layer BEiT's derives from upstream: Xavier FFN weights, tiny biases
        for module in self.ffn.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.normal_(module.bias, std=1e-6)

    def forward(self, x: torch.Tensor, rel_pos_bias: torch.Tensor | None = None) -> torch.Tensor:
        attn = self.attn(self.ln1(x), rel_pos_bias=rel_pos_bias)
        x = x + self.drop_path(attn if self.gamma_1 is None else self.gamma_1 * attn)
        ffn = self.ffn(self.ln2(x))
        return x + self.drop_path(ffn if self.gamma_2 is None else self.gamma_2 * ffn)


@MODELS.register_module()
class BEiTViT(VisionTransformer):
    """BEiT-style ViT; the arguments the ViT has mean the same, and:

    ``bias`` (``'qv_bias'``, True, False) the query/key/value biases; ``use_abs_pos_emb``
    an absolute position embedding; ``use_rel_pos_bias`` a relative position bias in every
    layer; ``use_shared_rel_pos_bias`` one for all layers (not both);
    ``layer_scale_init_value`` the layer-scale start (0: none).
    """

    arch_zoo = {
        **dict.fromkeys(["s", "small"], _arch(768, 8, 8, 768 * 3)),
        **dict.fromkeys(["b", "base"], _arch(768, 12, 12, 3072)),
        **dict.fromkeys(["l", "large"], _arch(1024, 24, 16, 4096)),
        **dict.fromkeys(["eva-g", "eva-giant"], _arch(1408, 40, 16, 6144)),
        **dict.fromkeys(["deit-t", "deit-tiny"], _arch(192, 12, 3, 192 * 4)),
        **dict.fromkeys(["deit-s", "deit-small"], _arch(384, 12, 6, 384 * 4)),
        **dict.fromkeys(["deit-b", "deit-base"], _arch(768, 12, 12, 768 * 4)),
    }

    def __init__(
        self,
        arch: str | dict = "base",
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 16,
        in_channels: int = 3,
        out_indices: int | Sequence[int] = -1,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        bias: bool | str = "qv_bias",
        norm_cfg: dict | None = None,
        final_norm: bool = False,
        out_type: str = "avg_featmap",
        with_cls_token: bool = True,
        frozen_stages: int = -1,
        use_abs_pos_emb: bool = False,
        use_rel_pos_bias: bool = True,
        use_shared_rel_pos_bias: bool = False,
        interpolate_mode: str = "bicubic",
        layer_scale_init_value: float = 0.1,
        patch_cfg: dict | None = None,
        layer_cfgs: dict | Sequence[dict] | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        if bias not in QKV_BIASES:
            raise ValueError(f"BEiTViT: bias must be one of {QKV_BIASES}, got {bias!r}")
        if use_rel_pos_bias and use_shared_rel_pos_bias:
            raise ValueError(
                "BEiTViT: use_rel_pos_bias and use_shared_rel_pos_bias cannot both be True "
                "(a bias per layer, or one shared by all layers)"
            )
        super().__init__(
            arch=arch,
            img_size=img_size,
            patch_size=patch_size,
            in_channels=in_channels,
            out_indices=out_indices,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            norm_cfg=norm_cfg,
            final_norm=final_norm,
            out_type=out_type,
            with_cls_token=with_cls_token,
            frozen_stages=frozen_stages,
            interpolate_mode=interpolate_mode,
            layer_scale_init_value=layer_scale_init_value,
            patch_cfg=patch_cfg,
            layer_cfgs=with_layer_defaults(
                dict(bias=bias, use_rel_pos_bias=use_rel_pos_bias), layer_cfgs
            ),
            init_cfg=init_cfg,
        )
        self.use_rel_pos_bias = use_rel_pos_bias
        if not use_abs_pos_emb:
            self.pos_embed = None
        self.rel_pos_bias = (
            RelativePositionBias(self.patch_resolution, self.arch_settings["num_heads"])
            if use_shared_rel_pos_bias
            else None
        )

    def _make_layer(self, index: int, args: dict) -> nn.Module:
        args.pop("qkv_bias", None)  # BEiT layers take `bias`
        args.setdefault("window_size", self.patch_resolution)
        return BEiTTransformerEncoderLayer(**args)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x, patch_resolution = self._embed(x)
        shared = self.rel_pos_bias() if self.rel_pos_bias is not None else None
        return self._encode(x, patch_resolution, rel_pos_bias=shared)

    # ------------------------------------------------------------------ checkpoints
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
        self._prepare_relative_position_bias(state_dict, prefix)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def _prepare_relative_position_bias(self, state_dict: dict, prefix: str) -> None:
        """A shared table (pre-training) copied into every layer that has its own, and
        tables of another grid resized to this one (their index taken from this model)."""
        shared = prefix + "rel_pos_bias.relative_position_bias_table"
        if self.use_rel_pos_bias and self.rel_pos_bias is None and shared in state_dict:
            logger.info("Expand the shared relative position bias table to every layer.")
            table = state_dict.pop(shared)
            state_dict.pop(prefix + "rel_pos_bias.relative_position_index", None)
            for i, layer in enumerate(self.layers):
                state_dict[f"{prefix}layers.{i}.attn.relative_position_bias_table"] = table.clone()
                index = f"{prefix}layers.{i}.attn.relative_position_index"
                state_dict.setdefault(index, layer.attn.relative_position_index.clone())
        for name, module in self.named_modules():
            table = getattr(module, "relative_position_bias_table", None)
            key = f"{prefix}{name}.relative_position_bias_table"
            ckpt = state_dict.get(key)
            if not isinstance(table, nn.Parameter) or not isinstance(ckpt, torch.Tensor):
                continue
            if ckpt.shape == table.shape or ckpt.ndim != 2 or ckpt.shape[1] != table.shape[1]:
                continue  # equal, or not a table of this many heads: the shape report's
            window = module.window_size
            logger.info("Resize %s from %s to %s.", key, tuple(ckpt.shape), tuple(table.shape))
            state_dict[key] = resize_relative_position_bias_table(ckpt, window)
            state_dict[f"{prefix}{name}.relative_position_index"] = (
                module.relative_position_index.clone()
            )
