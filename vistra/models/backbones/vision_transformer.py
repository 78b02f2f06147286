"""Vision Transformer (ViT, DeiT) backbone with MMPretrain's arguments and checkpoint keys.

Model-family file, in the order: encoder layer, backbone. Keys match MMPretrain 1.x
(``cls_token``, ``pos_embed``, ``patch_embed.projection``, ``layers.{i}.ln1`` /
``attn.qkv`` / ``attn.proj`` / ``ln2`` / ``ffn.layers.0.0`` / ``ffn.layers.1``, final norm
``ln1``, ``pre_norm``, ``ln2`` for ``out_type='avg_featmap'``) so published MMPretrain ViT
checkpoints load with ``strict=True``; a checkpoint whose ``pos_embed`` was trained on
another patch grid is resized while loading.

Variants (distilled DeiT, DeiT III, BEiT, EVA-02) subclass the backbone through its steps:
``_embed`` (tokens and position embedding), ``_make_layer`` (one encoder layer; their
own layer arguments arrive through :func:`with_layer_defaults`), ``_encode`` (the layers,
the final norm, the outputs) and ``_format_output``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers.norm import build_norm_layer
from vistra.models.layers.pos_embed import to_2tuple
from vistra.models.layers.transformer import (
    FFN,
    MultiheadAttention,
    PatchEmbed,
    SwiGLUFFNFused,
    resize_pos_embed,
)
from vistra.registry import MODELS, did_you_mean

logger = logging.getLogger(__name__)

FFN_TYPES = ("origin", "swiglu_fused")


class TransformerEncoderLayer(BaseModule):
    """One pre-norm encoder layer: ``x + attn(ln1(x))`` then ``x + ffn(ln2(x))``.

    ``drop_rate`` is the dropout after the attention projection and inside the FFN,
    ``drop_path_rate`` the stochastic depth of both residual branches. Subclasses (MAE,
    BEiT-style backbones) reuse it to keep the same parameter names.
    """

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        feedforward_channels: int,
        layer_scale_init_value: float = 0.0,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        num_fcs: int = 2,
        qkv_bias: bool = True,
        ffn_type: str = "origin",
        act_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        norm_cfg = dict(type="LN") if norm_cfg is None else norm_cfg
        self.embed_dims = embed_dims
        drop_path = dict(type="DropPath", drop_prob=float(drop_path_rate))
        self.ln1 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.attn = MultiheadAttention(
            embed_dims=embed_dims,
            num_heads=num_heads,
            attn_drop=attn_drop_rate,
            proj_drop=drop_rate,
            dropout_layer=drop_path,
            qkv_bias=qkv_bias,
            layer_scale_init_value=layer_scale_init_value,
        )
        self.ln2 = build_norm_layer(norm_cfg, embed_dims)[1]
        if ffn_type == "origin":
            self.ffn: nn.Module = FFN(
                embed_dims=embed_dims,
                feedforward_channels=feedforward_channels,
                num_fcs=num_fcs,
                ffn_drop=drop_rate,
                dropout_layer=drop_path,
                act_cfg=act_cfg,
                layer_scale_init_value=layer_scale_init_value,
            )
        elif ffn_type == "swiglu_fused":
            self.ffn = SwiGLUFFNFused(
                embed_dims=embed_dims,
                feedforward_channels=feedforward_channels,
                layer_scale_init_value=layer_scale_init_value,
            )
        else:
            raise ValueError(f"unknown ffn_type {ffn_type!r}; choose from {FFN_TYPES}")

    @property
    def norm1(self) -> nn.Module:
        return self.ln1

    @property
    def norm2(self) -> nn.Module:
        return self.ln2

    def init_weights(self) -> None:
        if self.is_init:
            return
        super().init_weights()
        # As MMPretrain (after the official ViT): Xavier FFN weights, near-zero biases.
        for module in self.ffn.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.normal_(module.bias, std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return self.ffn(self.ln2(x), identity=x)


def _arch(embed_dims: int, num_layers: int, num_heads: int, feedforward_channels: int) -> dict:
    return dict(
        embed_dims=embed_dims,
        num_layers=num_layers,
        num_heads=num_heads,
        feedforward_channels=feedforward_channels,
    )


def mmcls_out_type(avg_token: bool | None, output_cls_token: bool | None, out_type: str) -> str:
    """MMClassification 1.0rc's ``avg_token``/``output_cls_token`` (MMSelfSup 1.x's
    benchmark configs use them) as MMPretrain's ``out_type``.

    ``avg_token=True, output_cls_token=False`` is ``'avg_featmap'`` (the mean patch token
    through ``ln2``: the same key), both False is ``'featmap'``, and ``output_cls_token``
    alone is ``'cls_token'``: vistra's heads take the class token itself where MMCls gave
    ``[patch map, class token]``. Both True (the averaged map *and* the class token) has no
    MMPretrain equivalent and is refused.
    """
    if out_type != "cls_token":
        raise ValueError(
            f"VisionTransformer: give either out_type={out_type!r} or MMCls's avg_token/"
            "output_cls_token, not both"
        )
    avg, cls = bool(avg_token), output_cls_token is None or bool(output_cls_token)
    if avg and cls:
        raise ValueError(
            "VisionTransformer(avg_token=True, output_cls_token=True) (MMCls 1.0rc's averaged "
            "patch token together with the class token) is not supported; set "
            "output_cls_token=False for the averaged token (out_type='avg_featmap')"
        )
    return "avg_featmap" if avg else ("cls_token" if cls else "featmap")


@MODELS.register_module()
class VisionTransformer(BaseModule):
    """Vision Transformer, `An Image is Worth 16x16 Words <https://arxiv.org/abs/2010.11929>`_.

    ``arch`` is a name from ``arch_zoo`` or a dict with ``embed_dims``, ``num_layers``,
    ``num_heads`` and ``feedforward_channels``. ``forward`` returns a tuple with one entry
    per ``out_indices`` layer, shaped by ``out_type``: ``'cls_token'`` ``(B, C)``,
    ``'featmap'`` ``(B, C, h, w)``, ``'avg_featmap'`` ``(B, C)`` (mean patch token, normed
    by ``ln2``) or ``'raw'`` ``(B, L, C)``. Inputs of another size than ``img_size`` work:
    the position embedding is interpolated to the patch grid (``interpolate_mode``).
    ``frozen_stages=n`` freezes the embeddings and the first ``n`` layers (and keeps them
    in eval mode through ``train()``).
    """

    arch_zoo = {
        **dict.fromkeys(["s", "small"], _arch(768, 8, 8, 768 * 3)),
        **dict.fromkeys(["b", "base"], _arch(768, 12, 12, 3072)),
        **dict.fromkeys(["l", "large"], _arch(1024, 24, 16, 4096)),
        **dict.fromkeys(["h", "huge"], _arch(1280, 32, 16, 5120)),
        **dict.fromkeys(["eva-g", "eva-giant"], _arch(1408, 40, 16, 6144)),
        **dict.fromkeys(["deit-t", "deit-tiny"], _arch(192, 12, 3, 192 * 4)),
        **dict.fromkeys(
            ["deit-s", "deit-small", "dinov2-s", "dinov2-small"], _arch(384, 12, 6, 384 * 4)
        ),
        **dict.fromkeys(["deit-b", "deit-base"], _arch(768, 12, 12, 768 * 4)),
        **dict.fromkeys(["dinov2-g", "dinov2-giant"], _arch(1536, 40, 24, 6144)),
    }
    num_extra_tokens = 1  # the class token
    OUT_TYPES = ("raw", "cls_token", "featmap", "avg_featmap")

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
        frozen_stages: int = -1,
        interpolate_mode: str = "bicubic",
        layer_scale_init_value: float = 0.0,
        patch_cfg: dict | None = None,
        layer_cfgs: dict | Sequence[dict] | None = None,
        pre_norm: bool = False,
        avg_token: bool | None = None,
        output_cls_token: bool | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if avg_token is not None or output_cls_token is not None:
            out_type = mmcls_out_type(avg_token, output_cls_token, out_type)
        if out_type not in self.OUT_TYPES:
            raise ValueError(f"unsupported out_type {out_type!r}; choose from {self.OUT_TYPES}")
        self.out_type = out_type
        norm_cfg = dict(type="LN", eps=1e-6) if norm_cfg is None else norm_cfg
        self.arch_settings = self._parse_arch(arch)
        self.embed_dims = self.arch_settings["embed_dims"]
        self.num_layers = self.arch_settings["num_layers"]
        self.img_size = to_2tuple(img_size)

        embed_cfg = dict(
            in_channels=in_channels,
            input_size=img_size,
            embed_dims=self.embed_dims,
            conv_type="Conv2d",
            kernel_size=patch_size,
            stride=patch_size,
            bias=not pre_norm,  # CLIP-style pre-norm models have no patch bias
        )
        embed_cfg.update(patch_cfg or {})
        self.patch_embed = PatchEmbed(**embed_cfg)
        self.patch_resolution = self.patch_embed.init_out_size
        num_patches = self.patch_resolution[0] * self.patch_resolution[1]

        self.with_cls_token = with_cls_token
        if with_cls_token:
            self.cls_token: nn.Parameter | None = nn.Parameter(torch.zeros(1, 1, self.embed_dims))
        elif out_type != "cls_token":
            self.cls_token = None
            self.num_extra_tokens = 0
        else:
            raise ValueError('with_cls_token must be True when out_type="cls_token"')

        self.interpolate_mode = interpolate_mode
        self.pos_embed = nn.Parameter(
            torch.zeros(1, num_patches + self.num_extra_tokens, self.embed_dims)
        )
        self.drop_after_pos = nn.Dropout(p=drop_rate)
        self.out_indices = self._parse_out_indices(out_indices)

        self.layers = self._build_layers(
            layer_cfgs,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            qkv_bias=qkv_bias,
            norm_cfg=norm_cfg,
            layer_scale_init_value=layer_scale_init_value,
        )
        self.frozen_stages = frozen_stages
        self.pre_norm = (
            build_norm_layer(norm_cfg, self.embed_dims)[1] if pre_norm else nn.Identity()
        )
        self.final_norm = final_norm
        if final_norm:
            self.ln1 = build_norm_layer(norm_cfg, self.embed_dims)[1]
        if self.out_type == "avg_featmap":
            self.ln2 = build_norm_layer(norm_cfg, self.embed_dims)[1]
        if self.frozen_stages > 0:
            self._freeze_stages()

    # ------------------------------------------------------------------ construction
    @classmethod
    def _parse_arch(cls, arch: str | dict) -> dict:
        if isinstance(arch, str):
            key = arch.lower()
            if key not in cls.arch_zoo:
                hint = did_you_mean(key, list(cls.arch_zoo))
                raise ValueError(
                    f"{cls.__name__}: unknown arch {arch!r}.{hint} Valid: {sorted(cls.arch_zoo)}"
                )
            return dict(cls.arch_zoo[key])
        essential = {"embed_dims", "num_layers", "num_heads", "feedforward_channels"}
        if not isinstance(arch, dict) or not essential <= set(arch):
            missing = sorted(essential - set(arch)) if isinstance(arch, dict) else sorted(essential)
            raise ValueError(f"{cls.__name__}: a custom arch dict needs the keys {missing}")
        return dict(arch)

    def _parse_out_indices(self, out_indices: int | Sequence[int]) -> list[int]:
        indices = [out_indices] if isinstance(out_indices, int) else list(out_indices)
        parsed = []
        for index in indices:
            absolute = self.num_layers + index if index < 0 else index
            if not 0 <= absolute < self.num_layers:
                raise ValueError(
                    f"out_indices entry {index} is out of range for {self.num_layers} layers"
                )
            parsed.append(absolute)
        return parsed

    def _build_layers(
        self, layer_cfgs: dict | Sequence[dict] | None, drop_path_rate: float, **common: object
    ) -> nn.ModuleList:
        """The encoder layers; ``layer_cfgs`` (one dict for all, or one per layer) override
        the shared arguments, and stochastic depth rises linearly to ``drop_path_rate``."""
        if layer_cfgs is None or isinstance(layer_cfgs, dict):
            layer_cfgs = [dict(layer_cfgs or {}) for _ in range(self.num_layers)]
        elif len(layer_cfgs) != self.num_layers:
            raise ValueError(
                f"layer_cfgs has {len(layer_cfgs)} entries but the arch has {self.num_layers} layers"
            )
        rates = np.linspace(0, drop_path_rate, self.num_layers)
        layers = nn.ModuleList()
        for index, (rate, layer_cfg) in enumerate(zip(rates, layer_cfgs)):
            args = dict(
                embed_dims=self.embed_dims,
                num_heads=self.arch_settings["num_heads"],
                feedforward_channels=self.arch_settings["feedforward_channels"],
                drop_path_rate=float(rate),
                **common,
            )
            args.update(layer_cfg)
            layers.append(self._make_layer(index, args))
        return layers

    def _make_layer(self, index: int, args: dict) -> nn.Module:
        """Encoder layer ``index`` from its arguments (the shared ones, then ``layer_cfgs``).
        Variants with a layer of their own (DeiT III, BEiT, EVA-02) override this; the
        arguments they add reach it through :func:`with_layer_defaults`."""
        return TransformerEncoderLayer(**args)

    @property
    def norm1(self) -> nn.Module:
        return self.ln1

    @property
    def norm2(self) -> nn.Module:
        return self.ln2

    # ------------------------------------------------------------------ weights
    def init_weights(self) -> None:
        if self.is_init:
            return
        super().init_weights()
        if not _has_pretrained(self.init_cfg) and self.pos_embed is not None:
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
        """Fit a checkpoint's ``pos_embed`` to this model: drop its class-token row when
        this model has no class token, and interpolate a square patch grid of another size.
        """
        name = prefix + "pos_embed"
        if name not in state_dict or self.pos_embed is None:
            return
        ckpt = state_dict[name]
        if not self.with_cls_token and ckpt.shape[1] == self.pos_embed.shape[1] + 1:
            ckpt = ckpt[:, 1:]
        if ckpt.shape != self.pos_embed.shape and ckpt.ndim == 3:
            if ckpt.shape[2] != self.pos_embed.shape[2]:
                state_dict[name] = ckpt  # a width mismatch: leave it to the shape report
                return
            num_patches = ckpt.shape[1] - self.num_extra_tokens
            side = int(round(num_patches**0.5))
            if side * side != num_patches:
                raise ValueError(
                    f"cannot resize checkpoint key {name!r} of shape {tuple(ckpt.shape)}: its "
                    f"{num_patches} patch tokens are not a square grid"
                )
            logger.info(
                "Resize the pos_embed shape from %s to %s.",
                tuple(ckpt.shape),
                tuple(self.pos_embed.shape),
            )
            ckpt = resize_pos_embed(
                ckpt,
                (side, side),
                self.patch_embed.init_out_size,
                self.interpolate_mode,
                self.num_extra_tokens,
            )
        state_dict[name] = ckpt

    # ------------------------------------------------------------------ freezing
    def _freeze_stages(self) -> None:
        frozen: list[nn.Module] = [self.drop_after_pos, self.patch_embed, self.pre_norm]
        frozen += list(self.layers[: self.frozen_stages])
        if self.frozen_stages >= len(self.layers):  # all layers: the output norms too
            if self.final_norm:
                frozen.append(self.ln1)
            if self.out_type == "avg_featmap":
                frozen.append(self.ln2)
        for param in (self.pos_embed, self.cls_token):
            if param is not None:
                param.requires_grad = False
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> VisionTransformer:
        super().train(mode)
        if mode and self.frozen_stages > 0:
            self._freeze_stages()  # frozen layers stay in eval mode (no dropout, no drop path)
        return self

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x, patch_resolution = self._embed(x)
        return self._encode(x, patch_resolution)

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Patch tokens with the class token in front and the position embedding added
        (interpolated to this input's patch grid), then dropout and ``pre_norm``."""
        batch = x.shape[0]
        x, patch_resolution = self.patch_embed(x)
        if self.cls_token is not None:
            x = torch.cat((self.cls_token.expand(batch, -1, -1), x), dim=1)
        if self.pos_embed is not None:  # BEiT-style variants may have none
            x = x + resize_pos_embed(
                self.pos_embed,
                self.patch_resolution,
                patch_resolution,
                mode=self.interpolate_mode,
                num_extra_tokens=self.num_extra_tokens,
            )
        return self.pre_norm(self.drop_after_pos(x)), patch_resolution

    def _encode(
        self, x: torch.Tensor, patch_resolution: tuple[int, int], /, **layer_kwargs: object
    ) -> tuple[torch.Tensor, ...]:
        """The encoder layers (each called as ``layer(x, **layer_kwargs)``), the final
        norm after the last one, and the ``out_indices`` outputs shaped by ``out_type``."""
        outs = []
        for i, layer in enumerate(self.layers):
            x = layer(x, **layer_kwargs)
            if i == len(self.layers) - 1 and self.final_norm:
                x = self.ln1(x)
            if i in self.out_indices:
                outs.append(self._format_output(x, patch_resolution))
        return tuple(outs)

    def _format_output(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        if self.out_type == "raw":
            return x
        if self.out_type == "cls_token":
            return x[:, 0]
        patch_tokens = x[:, self.num_extra_tokens :]
        if self.out_type == "featmap":
            return patch_tokens.reshape(x.shape[0], *hw, -1).permute(0, 3, 1, 2)
        return self.ln2(patch_tokens.mean(dim=1))  # 'avg_featmap'

    def get_layer_depth(self, param_name: str, prefix: str = "") -> tuple[int, int]:
        """``(depth, num_depths)`` of a parameter for layer-wise learning-rate decay:
        embeddings are depth 0, layer ``i`` is ``i + 1``, everything after is the last."""
        num_depths = self.num_layers + 2
        if not param_name.startswith(prefix):
            return num_depths - 1, num_depths  # a module after the backbone (the head)
        name = param_name[len(prefix) :]
        if name in ("cls_token", "pos_embed") or name.startswith("patch_embed"):
            return 0, num_depths
        if name.startswith("layers"):
            return int(name.split(".")[1]) + 1, num_depths
        return num_depths - 1, num_depths


def with_layer_defaults(
    defaults: dict, layer_cfgs: dict | Sequence[dict] | None
) -> dict | list[dict]:
    """``layer_cfgs`` with ``defaults`` under every entry (a key the entry names wins), the
    way a ViT variant hands its own layer arguments (BEiT's ``bias``, EVA-02's ``sub_ln``)
    to :meth:`VisionTransformer._make_layer` while a config's ``layer_cfgs`` still
    override them, as upstream's do."""
    if layer_cfgs is None or isinstance(layer_cfgs, dict):
        return {**defaults, **(layer_cfgs or {})}
    return [{**defaults, **cfg} for cfg in layer_cfgs]


def _has_pretrained(init_cfg: dict | list[dict] | None) -> bool:
    cfgs = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg] if init_cfg else []
    return any(c.get("type") == "Pretrained" for c in cfgs)
