"""Reversible Vision Transformer (``RevVisionTransformer``), `Reversible Vision Transformers
<https://openaccess.thecvf.com/content/CVPR2022/html/Mangalam_Reversible_Vision_Transformers_CVPR_2022_paper.html>`_,
with MMPretrain's arguments and keys.

The tokens are duplicated into two streams ``(x1, x2)`` of width ``C``; each layer computes
``y1 = x1 + attn(ln1(x2))`` and ``y2 = x2 + ffn(ln2(y1))``, so its inputs can be recomputed
from its outputs. The streams are concatenated (``2C`` channels), normed by ``ln1`` and
fused (``fusion_mode``: ``'concat'`` keeps ``2C`` channels; ``'add'``, ``'max'``, ``'min'``,
``'avg'`` give ``C``). Keys: ``cls_token`` (with ``with_cls_token``), ``pos_embed``,
``patch_embed.projection``, ``layers.{i}.ln1``, ``layers.{i}.attn.qkv`` / ``attn.proj``,
``layers.{i}.ln2``, ``layers.{i}.ffn.layers.0.0`` / ``ffn.layers.1``, and ``ln1`` of
``2C`` channels (``final_norm``).

Training runs through plain autograd: the outputs and gradients are the reversible
backward's, but activations are stored rather than recomputed (no memory saving;
``no_custom_backward`` is accepted and has nothing left to switch). Within a layer both
branches drop the same samples (stochastic depth drops the whole layer per sample), as
upstream's seeded recomputation does; stochastic depth is off in eval mode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from vistra.models.backbones.vision_transformer import _has_pretrained
from vistra.models.base import BaseModule
from vistra.models.layers.norm import build_norm_layer
from vistra.models.layers.pos_embed import to_2tuple
from vistra.models.layers.transformer import FFN, MultiheadAttention, PatchEmbed, resize_pos_embed
from vistra.models.utils.arch import pick_arch
from vistra.registry import MODELS

ARCH_KEYS = ("embed_dims", "num_layers", "num_heads", "feedforward_channels")


def _arch(embed_dims: int, num_layers: int, num_heads: int, feedforward_channels: int) -> dict:
    return dict(zip(ARCH_KEYS, (embed_dims, num_layers, num_heads, feedforward_channels)))


class RevTransformerEncoderLayer(BaseModule):
    """One reversible layer: ``(x1, x2) -> (x1 + f(x2), x2 + g(x1 + f(x2)))`` with ``f``
    the attention branch and ``g`` the FFN branch, no identity inside the FFN."""

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
        act_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        layer_id: int = 0,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        norm_cfg = dict(type="LN") if norm_cfg is None else norm_cfg
        self.embed_dims, self.layer_id = embed_dims, layer_id
        self.drop_path_rate = float(drop_path_rate)
        self.ln1 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.attn = MultiheadAttention(
            embed_dims=embed_dims,
            num_heads=num_heads,
            attn_drop=attn_drop_rate,
            proj_drop=drop_rate,
            qkv_bias=qkv_bias,
        )
        self.ln2 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.ffn = FFN(
            embed_dims=embed_dims,
            feedforward_channels=feedforward_channels,
            num_fcs=num_fcs,
            ffn_drop=drop_rate,
            act_cfg=act_cfg,
            add_identity=False,
        )

    def init_weights(self) -> None:
        if self.is_init:
            return
        super().init_weights()
        for module in self.ffn.modules():  # as the ViT layer: Xavier FFN, tiny biases
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.normal_(module.bias, std=1e-6)

    def _keep_mask(self, x: torch.Tensor) -> torch.Tensor | None:
        """Per-sample scale ``0`` or ``1/keep`` for both branches; None when not dropping."""
        if not self.training or self.drop_path_rate == 0.0:
            return None
        keep = 1.0 - self.drop_path_rate
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x.new_empty(shape).bernoulli_(keep).div_(keep)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keep = self._keep_mask(x2)
        f_x2 = self.attn(self.ln1(x2))
        y1 = x1 + (f_x2 if keep is None else f_x2 * keep)
        g_y1 = self.ffn(self.ln2(y1))
        y2 = x2 + (g_y1 if keep is None else g_y1 * keep)
        return y1, y2


FUSIONS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "add": lambda a, b: a + b,
    "max": torch.maximum,
    "min": torch.minimum,
    "avg": lambda a, b: (a + b) / 2,
    "concat": lambda a, b: torch.cat((a, b), dim=-1),
}


class TwoStreamFusion(nn.Module):
    """Fuses the two halves of the last (channel) axis by ``mode``."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        if mode not in FUSIONS:
            raise ValueError(f"fusion_mode must be one of {sorted(FUSIONS)}, got {mode!r}")
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return FUSIONS[self.mode](*torch.chunk(x, 2, dim=-1))


@MODELS.register_module()
class RevVisionTransformer(BaseModule):
    """RevViT; arguments as :class:`VisionTransformer`'s where they share a name (no
    ``out_indices``: the output is the last layer's), plus ``fusion_mode`` and
    ``no_custom_backward`` (see the module docstring). ``out_type='avg_featmap'`` (the
    default) is the plain mean of the patch tokens.
    """

    arch_zoo = {
        **dict.fromkeys(["s", "small"], _arch(768, 8, 8, 768 * 3)),
        **dict.fromkeys(["b", "base"], _arch(768, 12, 12, 3072)),
        **dict.fromkeys(["l", "large"], _arch(1024, 24, 16, 4096)),
        **dict.fromkeys(["h", "huge"], _arch(1280, 32, 16, 5120)),
        **dict.fromkeys(["deit-t", "deit-tiny"], _arch(192, 12, 3, 192 * 4)),
        **dict.fromkeys(["deit-s", "deit-small"], _arch(384, 12, 6, 384 * 4)),
        **dict.fromkeys(["deit-b", "deit-base"], _arch(768, 12, 12, 768 * 4)),
    }
    OUT_TYPES = ("raw", "cls_token", "featmap", "avg_featmap")

    def __init__(
        self,
        arch: str | dict = "base",
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 16,
        in_channels: int = 3,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        qkv_bias: bool = True,
        norm_cfg: dict | None = None,
        final_norm: bool = True,
        out_type: str = "avg_featmap",
        with_cls_token: bool = False,
        frozen_stages: int = -1,
        interpolate_mode: str = "bicubic",
        patch_cfg: dict | None = None,
        layer_cfgs: dict | Sequence[dict] | None = None,
        fusion_mode: str = "concat",
        no_custom_backward: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if out_type not in self.OUT_TYPES:
            raise ValueError(
                f"RevVisionTransformer: unsupported out_type {out_type!r}; choose from "
                f"{self.OUT_TYPES}"
            )
        if out_type == "cls_token" and not with_cls_token:
            raise ValueError('with_cls_token must be True when out_type="cls_token"')
        norm_cfg = dict(type="LN", eps=1e-6) if norm_cfg is None else norm_cfg
        arch = arch.lower() if isinstance(arch, str) else arch
        self.arch_settings = pick_arch(arch, self.arch_zoo, "RevVisionTransformer", ARCH_KEYS)
        self.embed_dims = self.arch_settings["embed_dims"]
        self.num_layers = self.arch_settings["num_layers"]
        self.img_size = to_2tuple(img_size)
        self.out_type = out_type
        self.no_custom_backward = no_custom_backward

        embed_cfg = dict(
            in_channels=in_channels,
            input_size=img_size,
            embed_dims=self.embed_dims,
            conv_type="Conv2d",
            kernel_size=patch_size,
            stride=patch_size,
        )
        embed_cfg.update(patch_cfg or {})
        self.patch_embed = PatchEmbed(**embed_cfg)
        self.patch_resolution = self.patch_embed.init_out_size
        num_patches = self.patch_resolution[0] * self.patch_resolution[1]

        self.with_cls_token = with_cls_token
        self.num_extra_tokens = 1 if with_cls_token else 0
        self.cls_token = (
            nn.Parameter(torch.zeros(1, 1, self.embed_dims)) if with_cls_token else None
        )
        self.interpolate_mode = interpolate_mode
        self.pos_embed = nn.Parameter(
            torch.zeros(1, num_patches + self.num_extra_tokens, self.embed_dims)
        )
        self.drop_after_pos = nn.Dropout(p=drop_rate)
        self.layers = self._build_layers(layer_cfgs, drop_rate, drop_path_rate, qkv_bias, norm_cfg)
        self.fusion_layer = TwoStreamFusion(fusion_mode)
        self.final_norm = final_norm
        if final_norm:
            self.ln1 = build_norm_layer(norm_cfg, self.embed_dims * 2)[1]
        self.frozen_stages = frozen_stages
        if frozen_stages > 0:
            self._freeze_stages()

    def _build_layers(
        self,
        layer_cfgs: dict | Sequence[dict] | None,
        drop_rate: float,
        drop_path_rate: float,
        qkv_bias: bool,
        norm_cfg: dict,
    ) -> nn.ModuleList:
        if layer_cfgs is None or isinstance(layer_cfgs, dict):
            layer_cfgs = [dict(layer_cfgs or {}) for _ in range(self.num_layers)]
        elif len(layer_cfgs) != self.num_layers:
            raise ValueError(
                f"RevVisionTransformer: layer_cfgs has {len(layer_cfgs)} entries for "
                f"{self.num_layers} layers"
            )
        rates = np.linspace(0, drop_path_rate, self.num_layers)
        layers = nn.ModuleList()
        for i, (rate, layer_cfg) in enumerate(zip(rates, layer_cfgs)):
            args = dict(
                embed_dims=self.embed_dims,
                num_heads=self.arch_settings["num_heads"],
                feedforward_channels=self.arch_settings["feedforward_channels"],
                drop_rate=drop_rate,
                drop_path_rate=float(rate),
                qkv_bias=qkv_bias,
                layer_id=i,
                norm_cfg=norm_cfg,
            )
            args.update(layer_cfg)
            layers.append(RevTransformerEncoderLayer(**args))
        return layers

    # ------------------------------------------------------------------ weights
    def init_weights(self) -> None:
        if self.is_init:
            return
        super().init_weights()
        if not _has_pretrained(self.init_cfg):
            nn.init.trunc_normal_(self.pos_embed, std=0.02)

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
        self._prepare_pos_embed(state_dict, prefix)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def _prepare_pos_embed(self, state_dict: dict, prefix: str) -> None:
        """A checkpoint's ``pos_embed`` of another square grid interpolated to this one."""
        name = prefix + "pos_embed"
        ckpt = state_dict.get(name)
        if not isinstance(ckpt, torch.Tensor) or ckpt.shape == self.pos_embed.shape:
            return
        if ckpt.ndim != 3 or ckpt.shape[2] != self.embed_dims:
            return  # another width: the shape-mismatch report's
        num_patches = ckpt.shape[1] - self.num_extra_tokens
        side = int(round(num_patches**0.5))
        if side * side != num_patches:
            raise ValueError(
                f"cannot resize checkpoint key {name!r} of shape {tuple(ckpt.shape)}: its "
                f"{num_patches} patch tokens are not a square grid"
            )
        state_dict[name] = resize_pos_embed(
            ckpt,
            (side, side),
            self.patch_embed.init_out_size,
            self.interpolate_mode,
            self.num_extra_tokens,
        )

    # ------------------------------------------------------------------ freezing
    def _freeze_stages(self) -> None:
        frozen: list[nn.Module] = [self.drop_after_pos, self.patch_embed]
        frozen += list(self.layers[: self.frozen_stages])
        if self.frozen_stages >= self.num_layers and self.final_norm:
            frozen.append(self.ln1)
        self.pos_embed.requires_grad = False
        if self.cls_token is not None:
            self.cls_token.requires_grad = False
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> RevVisionTransformer:
        super().train(mode)
        if mode and self.frozen_stages > 0:
            self._freeze_stages()
        return self

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        batch = x.shape[0]
        x, patch_resolution = self.patch_embed(x)
        if self.cls_token is not None:
            x = torch.cat((self.cls_token.expand(batch, -1, -1), x), dim=1)
        x = x + resize_pos_embed(
            self.pos_embed,
            self.patch_resolution,
            patch_resolution,
            mode=self.interpolate_mode,
            num_extra_tokens=self.num_extra_tokens,
        )
        x1 = x2 = self.drop_after_pos(x)  # two streams, both the embedded tokens
        for layer in self.layers:
            x1, x2 = layer(x1, x2)
        x = torch.cat((x1, x2), dim=-1)
        if self.final_norm:
            x = self.ln1(x)
        return (self._format_output(self.fusion_layer(x), patch_resolution),)

    def _format_output(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        if self.out_type == "raw":
            return x
        if self.out_type == "cls_token":
            return x[:, 0]
        patch_tokens = x[:, self.num_extra_tokens :]
        if self.out_type == "featmap":
            return patch_tokens.reshape(x.shape[0], *hw, -1).permute(0, 3, 1, 2)
        return patch_tokens.mean(dim=1)  # 'avg_featmap'
