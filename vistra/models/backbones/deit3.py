"""DeiT III backbone, `DeiT III: Revenge of the ViT <https://arxiv.org/abs/2204.07118>`_,
with MMPretrain's arguments and keys.

A ViT with LayerScale on both residual branches (``layers.{i}.attn.gamma1.weight``,
``layers.{i}.ffn.gamma2.weight``, started at 1e-5) and a position embedding for the
patches only: ``pos_embed`` is ``(1, h*w, C)`` and is added *before* the class token is
put in front. Other keys as :class:`~vistra.models.backbones.vision_transformer.VisionTransformer`.

As MMPretrain 1.2.0 (whose published DeiT III checkpoints were converted for it), each
layer's FFN reads ``ln1(x)``, not ``ln2(x)``: ``ln2`` is built and kept in the state dict
but takes no part in the forward. Changing that would change every published model's
outputs, so it is kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.backbones.vision_transformer import (
    TransformerEncoderLayer,
    VisionTransformer,
    _arch,
    with_layer_defaults,
)
from vistra.models.layers.transformer import resize_pos_embed
from vistra.registry import MODELS

LAYER_SCALE_INIT = 1e-5  # DeiT III's LayerScale start value


class DeiT3TransformerEncoderLayer(TransformerEncoderLayer):
    """``x + attn(ln1(x))`` then ``x + ffn(ln1(x))`` (see the module docstring), with
    LayerScale on both branches when ``use_layer_scale``."""

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
        use_layer_scale: bool = True,
        act_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(
            embed_dims=embed_dims,
            num_heads=num_heads,
            feedforward_channels=feedforward_channels,
            layer_scale_init_value=LAYER_SCALE_INIT if use_layer_scale else 0.0,
            drop_rate=drop_rate,
            attn_drop_rate=attn_drop_rate,
            drop_path_rate=drop_path_rate,
            num_fcs=num_fcs,
            qkv_bias=qkv_bias,
            act_cfg=act_cfg,
            norm_cfg=norm_cfg,
            init_cfg=init_cfg,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return self.ffn(self.ln1(x), identity=x)  # ln1, as upstream (module docstring)


@MODELS.register_module()
class DeiT3(VisionTransformer):
    """DeiT III; ``arch`` is a name of ``arch_zoo`` or a dict with ``embed_dims``,
    ``num_layers``, ``num_heads`` and ``feedforward_channels``. ``forward`` returns one
    output per ``out_indices`` layer shaped by ``out_type`` as the ViT's."""

    arch_zoo = {
        **dict.fromkeys(["s", "small"], _arch(384, 12, 6, 1536)),
        **dict.fromkeys(["m", "medium"], _arch(512, 12, 8, 2048)),
        **dict.fromkeys(["b", "base"], _arch(768, 12, 12, 3072)),
        **dict.fromkeys(["l", "large"], _arch(1024, 24, 16, 4096)),
        **dict.fromkeys(["h", "huge"], _arch(1280, 32, 16, 5120)),
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
        qkv_bias: bool = True,
        norm_cfg: dict | None = None,
        final_norm: bool = True,
        out_type: str = "cls_token",
        with_cls_token: bool = True,
        use_layer_scale: bool = True,
        interpolate_mode: str = "bicubic",
        patch_cfg: dict | None = None,
        layer_cfgs: dict | Sequence[dict] | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(
            arch=arch,
            img_size=img_size,
            patch_size=patch_size,
            in_channels=in_channels,
            out_indices=out_indices,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            qkv_bias=qkv_bias,
            norm_cfg=norm_cfg,
            final_norm=final_norm,
            out_type=out_type,
            with_cls_token=with_cls_token,
            interpolate_mode=interpolate_mode,
            patch_cfg=patch_cfg,
            layer_cfgs=with_layer_defaults(dict(use_layer_scale=use_layer_scale), layer_cfgs),
            init_cfg=init_cfg,
        )
        # the position embedding covers the patches only (the class token joins after it)
        num_patches = self.patch_resolution[0] * self.patch_resolution[1]
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, self.embed_dims))

    def _make_layer(self, index: int, args: dict) -> nn.Module:
        args.pop("layer_scale_init_value", None)  # DeiT III's layers take use_layer_scale
        return DeiT3TransformerEncoderLayer(**args)

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        batch = x.shape[0]
        x, patch_resolution = self.patch_embed(x)
        x = x + resize_pos_embed(
            self.pos_embed,
            self.patch_resolution,
            patch_resolution,
            mode=self.interpolate_mode,
            num_extra_tokens=0,
        )
        x = self.drop_after_pos(x)
        if self.cls_token is not None:
            x = torch.cat((self.cls_token.expand(batch, -1, -1), x), dim=1)
        return x, patch_resolution

    def _prepare_pos_embed(self, state_dict: dict, prefix: str) -> None:
        """A checkpoint's ``pos_embed`` of another square patch grid, interpolated to this
        model's (it has no class-token row to keep aside)."""
        name = prefix + "pos_embed"
        ckpt = state_dict.get(name)
        if not isinstance(ckpt, torch.Tensor) or ckpt.shape == self.pos_embed.shape:
            return
        if ckpt.ndim != 3 or ckpt.shape[2] != self.pos_embed.shape[2]:
            return  # not a grid of this width: left to the shape-mismatch report
        side = int(round(ckpt.shape[1] ** 0.5))
        if side * side != ckpt.shape[1]:
            raise ValueError(
                f"cannot resize checkpoint key {name!r} of shape {tuple(ckpt.shape)}: its "
                f"{ckpt.shape[1]} tokens are not a square patch grid"
            )
        state_dict[name] = resize_pos_embed(
            ckpt, (side, side), self.patch_embed.init_out_size, self.interpolate_mode, 0
        )
