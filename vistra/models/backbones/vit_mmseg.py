"""MMSegmentation's Vision Transformer (registry scope ``mmseg``), `paper
<https://arxiv.org/abs/2010.11929>`__.

MMSegmentation's ``VisionTransformer`` is not MMPretrain's (``vision_transformer.py``):
it takes the sizes directly (``embed_dims``, ``num_layers``, ``num_heads``,
``mlp_ratio``; no ``arch`` table), returns feature maps of the ``out_indices`` layers,
and is built from mmcv's transformer bricks, so its keys are

- ``patch_embed.projection`` (no bias by default: ``patch_bias=False``), ``patch_embed.norm``
  with ``patch_norm``; ``cls_token``, ``pos_embed`` (always with the class token's row);
- ``layers.{i}.ln1``, ``layers.{i}.attn.attn.in_proj_weight`` / ``in_proj_bias`` /
  ``out_proj.weight`` / ``out_proj.bias`` (mmcv's ``MultiheadAttention`` wraps
  ``nn.MultiheadAttention``), ``layers.{i}.ln2``, ``layers.{i}.ffn.layers.0.0`` /
  ``ffn.layers.1``;
- ``ln_pre`` with ``pre_norm``, ``ln1`` with ``final_norm``.

Semantics kept: stochastic depth only on the FFN branch (the attention branch has none),
the position embedding is interpolated only when the token count differs from the
``img_size`` grid, ``with_cls_token=False`` drops the class token after the position
embedding, ``output_cls_token`` gives ``[featmap, cls_token]`` per output,
``frozen_exclude`` freezes every parameter whose name contains none of its entries.
Attention runs through ``F.scaled_dot_product_attention`` (``MMCVMultiheadAttention``).

Order: encoder layer, backbone.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from vistra.models.base import BaseModule
from vistra.models.layers.mmcv_attention import MMCVMultiheadAttention
from vistra.models.layers.norm import build_norm_layer
from vistra.models.layers.patch_embed import PatchEmbed
from vistra.models.layers.pos_embed import resize_pos_embed, to_2tuple
from vistra.models.layers.transformer import FFN
from vistra.registry import MODELS

logger = logging.getLogger(__name__)


class SegTransformerEncoderLayer(BaseModule):
    """MMSegmentation's ``TransformerEncoderLayer``: ``x = attn(norm1(x), identity=x)``,
    then ``x = ffn(norm2(x), identity=x)``; also the Segmenter mask head's layers."""

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
        batch_first: bool = True,
        attn_cfg: dict | None = None,
        ffn_cfg: dict | None = None,
        with_cp: bool = False,
    ) -> None:
        super().__init__()
        self.norm1_name, norm1 = build_norm_layer(norm_cfg, embed_dims, postfix=1)
        self.add_module(self.norm1_name, norm1)
        attn_args = dict(attn_cfg or {})
        attn_args.update(
            embed_dims=embed_dims, num_heads=num_heads, attn_drop=attn_drop_rate,
            proj_drop=drop_rate, batch_first=batch_first, bias=qkv_bias,
        )  # fmt: skip
        self.attn = MMCVMultiheadAttention(**attn_args)
        self.norm2_name, norm2 = build_norm_layer(norm_cfg, embed_dims, postfix=2)
        self.add_module(self.norm2_name, norm2)
        drop_path = dict(type="DropPath", drop_prob=drop_path_rate) if drop_path_rate > 0 else None
        ffn_args = dict(ffn_cfg or {})
        ffn_args.update(
            embed_dims=embed_dims, feedforward_channels=feedforward_channels, num_fcs=num_fcs,
            ffn_drop=drop_rate, dropout_layer=drop_path, act_cfg=act_cfg,
        )  # fmt: skip
        self.ffn = FFN(**ffn_args)
        self.with_cp = with_cp

    @property
    def norm1(self) -> nn.Module:
        return getattr(self, self.norm1_name)

    @property
    def norm2(self) -> nn.Module:
        return getattr(self, self.norm2_name)

    def _inner_forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn(self.norm1(x), identity=x)
        return self.ffn(self.norm2(x), identity=x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return checkpoint(self._inner_forward, x, use_reentrant=False)
        return self._inner_forward(x)


@MODELS.register_module(name="VisionTransformer", scope="mmseg")
class SegVisionTransformer(BaseModule):
    """MMSegmentation's ``VisionTransformer``; arguments and keys in the module docstring.

    ``out_indices`` is a layer index (``-1``: the last) or a sequence of indices; each
    output is ``(B, C, h, w)``. ``out_origin`` adds the embedded input as a first output.
    """

    def __init__(
        self,
        img_size: int | Sequence[int] = 224,
        patch_size: int = 16,
        patch_pad: str | int = "corner",
        in_channels: int = 3,
        embed_dims: int = 768,
        num_layers: int = 12,
        num_heads: int = 12,
        mlp_ratio: int = 4,
        out_origin: bool = False,
        out_indices: int | Sequence[int] = -1,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        with_cls_token: bool = True,
        output_cls_token: bool = False,
        norm_cfg: dict = dict(type="LN"),  # noqa: B006 (never mutated)
        act_cfg: dict = dict(type="GELU"),  # noqa: B006 (never mutated)
        patch_norm: bool = False,
        patch_bias: bool = False,
        pre_norm: bool = False,
        final_norm: bool = False,
        interpolate_mode: str = "bicubic",
        num_fcs: int = 2,
        norm_eval: bool = False,
        with_cp: bool = False,
        frozen_exclude: Sequence[str] = ("all",),
        pretrained: str | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        if init_cfg and pretrained:
            raise ValueError("VisionTransformer: init_cfg and pretrained cannot both be set")
        if pretrained is not None:
            if not isinstance(pretrained, str):
                raise TypeError(f"pretrained must be a str or None, got {pretrained!r}")
            init_cfg = dict(type="Pretrained", checkpoint=pretrained)
        super().__init__(init_cfg)
        if output_cls_token and not with_cls_token:
            raise ValueError("output_cls_token=True needs with_cls_token=True")
        img_size = (
            (img_size[0],) * 2 if not isinstance(img_size, int) and len(img_size) == 1 else img_size
        )
        self.img_size = to_2tuple(img_size)
        self.patch_size, self.interpolate_mode = patch_size, interpolate_mode
        self.norm_eval, self.out_origin = norm_eval, out_origin
        self.frozen_exclude = list(frozen_exclude)
        self.with_cls_token, self.output_cls_token = with_cls_token, output_cls_token
        self.patch_embed = PatchEmbed(
            in_channels=in_channels, embed_dims=embed_dims, kernel_size=patch_size,
            stride=patch_size, padding=patch_pad, bias=patch_bias,
            norm_cfg=norm_cfg if patch_norm else None,
        )  # fmt: skip
        self.pos_grid = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims))
        self.pos_embed = nn.Parameter(torch.zeros(1, math.prod(self.pos_grid) + 1, embed_dims))
        self.drop_after_pos = nn.Dropout(p=drop_rate)
        self.pre_norm = pre_norm
        if pre_norm:
            self.pre_ln_name, pre_ln = build_norm_layer(norm_cfg, embed_dims, postfix="_pre")
            self.add_module(self.pre_ln_name, pre_ln)
        self.out_indices = _out_indices(out_indices, num_layers)
        rates = np.linspace(0, drop_path_rate, num_layers).tolist()
        self.layers = nn.ModuleList(
            SegTransformerEncoderLayer(
                embed_dims=embed_dims,
                num_heads=num_heads,
                feedforward_channels=mlp_ratio * embed_dims,
                attn_drop_rate=attn_drop_rate,
                drop_rate=drop_rate,
                drop_path_rate=rate,
                num_fcs=num_fcs,
                qkv_bias=qkv_bias,
                act_cfg=act_cfg,
                norm_cfg=norm_cfg,
                with_cp=with_cp,
                batch_first=True,
            )  # fmt: skip
            for rate in rates
        )
        self.final_norm = final_norm
        if final_norm:
            self.norm1_name, norm1 = build_norm_layer(norm_cfg, embed_dims, postfix=1)
            self.add_module(self.norm1_name, norm1)
        self._freeze()

    @property
    def pre_ln(self) -> nn.Module:
        return getattr(self, self.pre_ln_name)

    @property
    def norm1(self) -> nn.Module:
        return getattr(self, self.norm1_name)

    # ------------------------------------------------------------------ weights
    def init_weights(self) -> None:
        if self.is_init:
            return
        if self.init_cfg is not None:
            super().init_weights()
            return
        # MMSegmentation's default: truncated-normal embeddings and linears, tiny FFN biases
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    if "ffn" in name:
                        nn.init.normal_(m.bias, mean=0.0, std=1e-6)
                    else:
                        nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm | nn.GroupNorm | nn.modules.batchnorm._BatchNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self._is_init = True

    def remap_state_dict(self, state_dict: dict, prefix: str = "") -> list[tuple[str, str]]:
        """Fit a pretrained ``pos_embed`` of another (square) grid to ``img_size``, as
        MMSegmentation does when it loads pretrained weights. Renames nothing."""
        key = prefix + "pos_embed"
        ckpt = state_dict.get(key)
        if not isinstance(ckpt, torch.Tensor) or ckpt.shape == self.pos_embed.shape:
            return []
        if ckpt.ndim == 3 and ckpt.shape[2] == self.pos_embed.shape[2]:
            side = int(math.sqrt(ckpt.shape[1] - 1))
            if side * side == ckpt.shape[1] - 1:
                logger.info("Resize the pos_embed shape from %s to %s.", tuple(ckpt.shape),
                            tuple(self.pos_embed.shape))  # fmt: skip
                state_dict[key] = resize_pos_embed(
                    ckpt, (side, side), self.pos_grid, self.interpolate_mode
                )
        return []

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args) -> None:
        self.remap_state_dict(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def _freeze(self) -> None:
        if "all" in self.frozen_exclude:
            return
        for name, param in self.named_parameters():
            if not any(exclude in name for exclude in self.frozen_exclude):
                param.requires_grad = False

    def train(self, mode: bool = True) -> SegVisionTransformer:
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.LayerNorm):
                    m.eval()
        return self

    # ------------------------------------------------------------------ forward
    def _pos_embedding(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        pos_embed = self.pos_embed
        if x.shape[1] != pos_embed.shape[1]:  # only a different token count resizes
            pos_embed = resize_pos_embed(pos_embed, self.pos_grid, hw, self.interpolate_mode)
        return self.drop_after_pos(x + pos_embed)

    def _output(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor | list:
        tokens = x[:, 1:] if self.with_cls_token else x
        out = tokens.reshape(x.shape[0], *hw, -1).permute(0, 3, 1, 2).contiguous()
        return [out, x[:, 0]] if self.output_cls_token else out

    def forward(self, inputs: torch.Tensor) -> tuple:
        x, hw = self.patch_embed(inputs)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = self._pos_embedding(x, hw)
        if not self.with_cls_token:
            x = x[:, 1:]
        if self.pre_norm:
            x = self.pre_ln(x)
        outs = [self._output(x, hw)] if self.out_origin else []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i == len(self.layers) - 1 and self.final_norm:
                x = self.norm1(x)
            if i in self.out_indices:
                outs.append(self._output(x, hw))
        return tuple(outs)


def _out_indices(out_indices: int | Sequence[int], num_layers: int) -> list[int]:
    if isinstance(out_indices, int):
        return [num_layers - 1 if out_indices == -1 else out_indices]
    if not isinstance(out_indices, Sequence):
        raise TypeError(f"out_indices must be an int, list or tuple, got {out_indices!r}")
    bad = [i for i in out_indices if not 0 <= i < num_layers]
    if bad:
        raise ValueError(
            f"out_indices {list(out_indices)}: {bad} not a layer index in 0..{num_layers - 1}"
        )
    return list(out_indices)
