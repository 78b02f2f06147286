"""The ViT image encoder of SAM (``ViTSAM``), `Segment Anything
<https://arxiv.org/abs/2304.02643>`_, with MMPretrain's arguments and keys.

A ViT on a ``(B, H, W, C)`` token grid without a class token: most layers attend within
non-overlapping ``window_size`` windows (the grid is zero-padded to whole windows), the
layers of ``global_attn_indexes`` over the whole grid; attention adds MViTv2's decomposed
relative position bias (a learned embedding per row offset and per column offset, read
through the query). A neck of 1x1 and 3x3 convolutions with LayerNorm2d reduces the
channels to ``out_channels``. Keys:

- ``pos_embed`` ``(1, h, w, C)`` (``use_abs_pos``), ``patch_embed.projection``;
- ``layers.{i}.ln1``, ``layers.{i}.attn.qkv`` / ``attn.proj``,
  ``layers.{i}.attn.rel_pos_h`` / ``rel_pos_w`` ``(2s-1, head_dims)`` with ``s`` the
  window (or, in global layers, the ``img_size`` grid) side (``use_rel_pos``),
  ``layers.{i}.ln2``, ``layers.{i}.ffn.layers.0.0`` / ``ffn.layers.1``;
- ``channel_reduction.{0,2}`` (convolutions) / ``.{1,3}`` (LayerNorm2d), when
  ``out_channels > 0``.

Another input size works: the position embedding is interpolated to the grid and the
relative embeddings of global layers linearly to its offsets, as upstream.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.backbones.vision_transformer import _has_pretrained
from vistra.models.base import BaseModule
from vistra.models.layers.norm import LayerNorm2d, build_norm_layer
from vistra.models.layers.pos_embed import to_2tuple
from vistra.models.layers.transformer import FFN, PatchEmbed, resize_pos_embed
from vistra.models.utils.arch import pick_arch
from vistra.registry import MODELS

logger = logging.getLogger(__name__)


def _arch(embed_dims: int, num_layers: int, num_heads: int, ffn: int, global_attn: list[int]):
    return dict(
        embed_dims=embed_dims,
        num_layers=num_layers,
        num_heads=num_heads,
        feedforward_channels=ffn,
        global_attn_indexes=global_attn,
    )


# ----------------------------------------------------------------------------- windows
def window_partition(x: torch.Tensor, window_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """``(B, H, W, C)`` -> ``(B * windows, ws, ws, C)`` (the grid zero-padded at the
    bottom and right to whole windows) and the padded ``(Hp, Wp)``."""
    b, h, w, c = x.shape
    pad_h, pad_w = (-h) % window_size, (-w) % window_size
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window_size, window_size, wp // window_size, window_size, c)
    windows = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size, window_size, c)
    return windows, (hp, wp)


def window_unpartition(
    windows: torch.Tensor, window_size: int, padded_hw: tuple[int, int], hw: tuple[int, int]
) -> torch.Tensor:
    """The inverse of :func:`window_partition`, the padding cut off: ``(B, H, W, C)``."""
    hp, wp = padded_hw
    b = windows.shape[0] // ((hp // window_size) * (wp // window_size))
    x = windows.view(b, hp // window_size, wp // window_size, window_size, window_size, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    return x[:, : hw[0], : hw[1]].contiguous()


# ----------------------------------------------------------------------------- rel. pos.
def interpolate_rel_pos(rel_pos: torch.Tensor, length: int) -> torch.Tensor:
    """A ``(L, C)`` relative embedding linearly resampled to ``length`` offsets."""
    if rel_pos.shape[0] == length:
        return rel_pos
    resized = F.interpolate(rel_pos.t().unsqueeze(0), size=length, mode="linear")
    return resized.squeeze(0).t()


def get_rel_pos(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """``(q_size, k_size, C)`` embeddings of every (query, key) offset along one axis; the
    coordinates of the shorter side are stretched to the longer one."""
    rel_pos = interpolate_rel_pos(rel_pos, 2 * max(q_size, k_size) - 1)
    q_ratio, k_ratio = max(k_size / q_size, 1.0), max(q_size / k_size, 1.0)
    q_coords = torch.arange(q_size, device=rel_pos.device)[:, None] * q_ratio
    k_coords = torch.arange(k_size, device=rel_pos.device)[None, :] * k_ratio
    offsets = q_coords - k_coords + (k_size - 1) * k_ratio
    return rel_pos[offsets.long()]


def decomposed_rel_pos_bias(
    q: torch.Tensor,
    rel_pos_h: torch.Tensor,
    rel_pos_w: torch.Tensor,
    q_size: tuple[int, int],
    k_size: tuple[int, int],
) -> torch.Tensor:
    """MViTv2's decomposed relative position bias ``(B, q_h*q_w, k_h*k_w)`` of queries
    ``(B, q_h*q_w, C)``: ``q . R_h[dy] + q . R_w[dx]`` for each (query, key) pair."""
    (q_h, q_w), (k_h, k_w) = q_size, k_size
    r_h = get_rel_pos(q_h, k_h, rel_pos_h)
    r_w = get_rel_pos(q_w, k_w, rel_pos_w)
    b, _, dims = q.shape
    grid = q.reshape(b, q_h, q_w, dims)
    rel_h = torch.einsum("bhwc,hkc->bhwk", grid, r_h)
    rel_w = torch.einsum("bhwc,wkc->bhwk", grid, r_w)
    bias = rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]
    return bias.reshape(b, q_h * q_w, k_h * k_w)


class SAMAttention(nn.Module):
    """Multi-head self-attention over a ``(B, H, W, C)`` grid with the decomposed relative
    position bias (``use_rel_pos``; its embeddings sized for ``input_size``)."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        use_rel_pos: bool = False,
        input_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dims = embed_dims // num_heads
        self.scale = head_dims**-0.5
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=qkv_bias)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            if input_size is None:
                raise ValueError("SAM attention: use_rel_pos=True needs the input_size")
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dims))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, heads, h*w, head_dims)
        bias = None
        if self.use_rel_pos:
            flat_q = q.reshape(b * self.num_heads, h * w, -1)
            bias = decomposed_rel_pos_bias(flat_q, self.rel_pos_h, self.rel_pos_w, (h, w), (h, w))
            bias = bias.view(b, self.num_heads, h * w, h * w).to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        out = out.view(b, self.num_heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)
        return self.proj(out)


class SAMTransformerEncoderLayer(BaseModule):
    """``x + attn(ln1(x))`` (windowed when ``window_size > 0``; no drop path on this
    branch, as upstream) then ``x + drop_path(ffn(ln2(x)))``."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        feedforward_channels: int,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        num_fcs: int = 2,
        qkv_bias: bool = True,
        act_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        use_rel_pos: bool = False,
        window_size: int = 0,
        input_size: tuple[int, int] | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        norm_cfg = dict(type="LN") if norm_cfg is None else norm_cfg
        self.embed_dims, self.window_size = embed_dims, window_size
        self.ln1 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.attn = SAMAttention(
            embed_dims,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            use_rel_pos=use_rel_pos,
            input_size=input_size if window_size == 0 else (window_size, window_size),
        )
        self.ln2 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.ffn = FFN(
            embed_dims=embed_dims,
            feedforward_channels=feedforward_channels,
            num_fcs=num_fcs,
            ffn_drop=drop_rate,
            dropout_layer=dict(type="DropPath", drop_prob=float(drop_path_rate)),
            act_cfg=act_cfg,
        )

    @property
    def norm1(self) -> nn.Module:
        return self.ln1

    @property
    def norm2(self) -> nn.Module:
        return self.ln2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.ln1(x)
        if self.window_size > 0:
            hw = (x.shape[1], x.shape[2])
            windows, padded_hw = window_partition(x, self.window_size)
            x = window_unpartition(self.attn(windows), self.window_size, padded_hw, hw)
        else:
            x = self.attn(x)
        x = shortcut + x
        return self.ffn(self.ln2(x), identity=x)


@MODELS.register_module()
class ViTSAM(BaseModule):
    """SAM's ViT encoder; arguments and keys in the module docstring.

    ``arch``: a name of ``arch_zoo`` or a dict with ``embed_dims``, ``num_layers``,
    ``num_heads``, ``feedforward_channels`` and ``global_attn_indexes``. ``forward``
    returns one ``(B, out_channels or C, h, w)`` map per ``out_indices`` layer
    (``out_type`` ``'raw'`` / ``'featmap'``), or its spatial mean (``'avg_featmap'``).
    ``frozen_stages=n`` freezes the embeddings and the first ``n`` layers (all of them:
    the neck too).
    """

    arch_zoo = {
        **dict.fromkeys(["b", "base"], _arch(768, 12, 12, 3072, [2, 5, 8, 11])),
        **dict.fromkeys(["l", "large"], _arch(1024, 24, 16, 4096, [5, 11, 17, 23])),
        **dict.fromkeys(["h", "huge"], _arch(1280, 32, 16, 5120, [7, 15, 23, 31])),
    }
    OUT_TYPES = ("raw", "featmap", "avg_featmap")

    def __init__(
        self,
        arch: str | dict = "base",
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 16,
        in_channels: int = 3,
        out_channels: int = 256,
        out_indices: int | Sequence[int] = -1,
        out_type: str = "raw",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        qkv_bias: bool = True,
        use_abs_pos: bool = True,
        use_rel_pos: bool = True,
        window_size: int = 14,
        norm_cfg: dict | None = None,
        frozen_stages: int = -1,
        interpolate_mode: str = "bicubic",
        patch_cfg: dict | None = None,
        layer_cfgs: dict | Sequence[dict] | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if out_type not in self.OUT_TYPES:
            raise ValueError(
                f"ViTSAM: unsupported out_type {out_type!r}; choose from {self.OUT_TYPES}"
            )
        norm_cfg = dict(type="LN", eps=1e-6) if norm_cfg is None else norm_cfg
        arch = arch.lower() if isinstance(arch, str) else arch
        self.arch_settings = pick_arch(
            arch, self.arch_zoo, "ViTSAM", next(iter(self.arch_zoo.values())).keys()
        )
        self.embed_dims = self.arch_settings["embed_dims"]
        self.num_layers = self.arch_settings["num_layers"]
        self.global_attn_indexes = list(self.arch_settings["global_attn_indexes"])
        self.img_size = to_2tuple(img_size)
        self.out_type = out_type

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

        self.use_abs_pos = use_abs_pos
        self.interpolate_mode = interpolate_mode
        self.pos_embed: nn.Parameter | None = None
        if use_abs_pos:
            self.pos_embed = nn.Parameter(torch.zeros(1, *self.patch_resolution, self.embed_dims))
        self.drop_after_pos = nn.Dropout(p=drop_rate)
        self.out_indices = _parse_out_indices(out_indices, self.num_layers)

        self.layers = self._build_layers(
            layer_cfgs, drop_rate, drop_path_rate, qkv_bias, window_size, use_rel_pos, norm_cfg
        )
        self.out_channels = out_channels
        if out_channels > 0:
            self.channel_reduction = nn.Sequential(
                nn.Conv2d(self.embed_dims, out_channels, kernel_size=1, bias=False),
                LayerNorm2d(out_channels, eps=1e-6),
                nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
                LayerNorm2d(out_channels, eps=1e-6),
            )
        self.frozen_stages = frozen_stages
        if frozen_stages > 0:
            self._freeze_stages()

    def _build_layers(
        self,
        layer_cfgs: dict | Sequence[dict] | None,
        drop_rate: float,
        drop_path_rate: float,
        qkv_bias: bool,
        window_size: int,
        use_rel_pos: bool,
        norm_cfg: dict,
    ) -> nn.ModuleList:
        if layer_cfgs is None or isinstance(layer_cfgs, dict):
            layer_cfgs = [dict(layer_cfgs or {}) for _ in range(self.num_layers)]
        elif len(layer_cfgs) != self.num_layers:
            raise ValueError(
                f"ViTSAM: layer_cfgs has {len(layer_cfgs)} entries for {self.num_layers} layers"
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
                window_size=0 if i in self.global_attn_indexes else window_size,
                input_size=self.patch_resolution,
                use_rel_pos=use_rel_pos,
                norm_cfg=norm_cfg,
            )
            args.update(layer_cfg)
            layers.append(SAMTransformerEncoderLayer(**args))
        return layers

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
        self._prepare_relative_position(state_dict, prefix)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def _prepare_pos_embed(self, state_dict: dict, prefix: str) -> None:
        """A ``(1, h, w, C)`` embedding of another grid interpolated to this model's."""
        name = prefix + "pos_embed"
        ckpt = state_dict.get(name)
        if self.pos_embed is None or not isinstance(ckpt, torch.Tensor):
            return
        if ckpt.shape == self.pos_embed.shape or ckpt.ndim != 4:
            return
        if ckpt.shape[-1] != self.embed_dims:
            return  # another width: the shape-mismatch report's
        logger.info("Resize the pos_embed shape from %s to %s.", tuple(ckpt.shape),
                    tuple(self.pos_embed.shape))  # fmt: skip
        grid = self.patch_embed.init_out_size
        resized = resize_pos_embed(
            ckpt.flatten(1, 2), ckpt.shape[1:3], grid, self.interpolate_mode, 0
        )
        state_dict[name] = resized.view(1, *grid, self.embed_dims)

    def _prepare_relative_position(self, state_dict: dict, prefix: str) -> None:
        """Relative embeddings of another length resampled linearly to this model's."""
        for name, param in self.named_parameters():
            if "rel_pos_" not in name:
                continue
            ckpt = state_dict.get(prefix + name)
            if not isinstance(ckpt, torch.Tensor) or ckpt.ndim != 2 or ckpt.shape == param.shape:
                continue
            if ckpt.shape[1] != param.shape[1]:
                continue
            logger.info("Resize %s from %s to %s.", prefix + name, tuple(ckpt.shape),
                        tuple(param.shape))  # fmt: skip
            state_dict[prefix + name] = interpolate_rel_pos(ckpt, param.shape[0])

    # ------------------------------------------------------------------ freezing
    def _freeze_stages(self) -> None:
        frozen: list[nn.Module] = [self.drop_after_pos, self.patch_embed]
        frozen += list(self.layers[: self.frozen_stages])
        if self.frozen_stages >= self.num_layers and self.out_channels > 0:
            frozen.append(self.channel_reduction)
        if self.pos_embed is not None:
            self.pos_embed.requires_grad = False
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> ViTSAM:
        super().train(mode)
        if mode and self.frozen_stages > 0:
            self._freeze_stages()
        return self

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        batch = x.shape[0]
        x, patch_resolution = self.patch_embed(x)
        x = x.view(batch, *patch_resolution, self.embed_dims)
        if self.pos_embed is not None:
            pos = resize_pos_embed(
                self.pos_embed.flatten(1, 2),
                self.patch_resolution,
                patch_resolution,
                mode=self.interpolate_mode,
                num_extra_tokens=0,
            )
            x = self.drop_after_pos(x + pos.view(1, *patch_resolution, self.embed_dims))
        outs = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in self.out_indices:
                feat = x.permute(0, 3, 1, 2)
                if self.out_channels > 0:
                    feat = self.channel_reduction(feat)
                outs.append(feat.mean(dim=(2, 3)) if self.out_type == "avg_featmap" else feat)
        return tuple(outs)

    def get_layer_depth(self, param_name: str, prefix: str = "") -> tuple[int, int]:
        """``(depth, num_depths)`` for layer-wise learning-rate decay, as the ViT's."""
        num_depths = self.num_layers + 2
        if not param_name.startswith(prefix):
            return num_depths - 1, num_depths
        name = param_name[len(prefix) :]
        if name in ("cls_token", "pos_embed") or name.startswith("patch_embed"):
            return 0, num_depths
        if name.startswith("layers"):
            return int(name.split(".")[1]) + 1, num_depths
        return num_depths - 1, num_depths


def _parse_out_indices(out_indices: int | Sequence[int], num_layers: int) -> list[int]:
    if isinstance(out_indices, int):
        out_indices = [out_indices]
    if not isinstance(out_indices, Sequence):
        raise TypeError(f"out_indices must be an int or a sequence of ints, got {out_indices!r}")
    parsed = []
    for index in out_indices:
        absolute = num_layers + index if index < 0 else index
        if not 0 <= absolute < num_layers:
            raise ValueError(
                f"out_indices entry {index} is out of range for {num_layers} layers "
                f"(valid: {-num_layers} to {num_layers - 1})"
            )
        parsed.append(absolute)
    return parsed
