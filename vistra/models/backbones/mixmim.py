"""MixMIM backbone (`MixMIM: Mixed and Masked Image Modeling for Efficient Visual
Representation Learning <https://arxiv.org/abs/2205.13137>`_), MMPretrain's classification
family ``MixMIMTransformer``.

A hierarchical, Swin-like encoder: a ``patch_size`` convolutional patch embedding with a
LayerNorm, a fixed (not trained) absolute position embedding, four stages of pre-norm
window-attention blocks (no shifted windows) joined by patch merging, a final norm and a
global average pool. Each block optionally takes a ``(1, L, 1)`` 0/1 "mix" mask: tokens
may only attend to tokens of the same mask value, so the two images mixed into one input
by MixMIM pre-training (:mod:`vistra.models.selfsup.mixmim`) do not see each other.

Arch table (``arch``): ``b``/``base`` (128 wide, depths 2-2-18-2, heads 4-8-16-32),
``l``/``large`` (192, heads 6-12-24-48), ``h``/``huge`` (352, heads 11-22-44-88).

State-dict keys are MMPretrain's: ``patch_embed.projection``/``patch_embed.norm``,
``absolute_pos_embed``, ``layers.{i}.blocks.{j}.{ln1,attn,ln2,ffn}``,
``layers.{i}.downsample.{norm,reduction}`` and ``norm``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import nn

from vistra.models.backbones.vision_transformer import TransformerEncoderLayer
from vistra.models.base import BaseModule
from vistra.models.layers.drop import DropPath
from vistra.models.layers.norm import build_norm_layer
from vistra.models.layers.patch_embed import PatchEmbed
from vistra.models.layers.patch_merging import PatchMerging
from vistra.models.layers.pos_embed import to_2tuple
from vistra.models.layers.window_attention import WindowMSA, window_partition, window_reverse
from vistra.models.utils.arch import pick_arch
from vistra.registry import MODELS

__all__ = ["MixMIMBlock", "MixMIMLayer", "MixMIMTransformer", "MixMIMWindowAttention"]


class _CaseFreeTable(dict):
    """An arch table that also holds the upper-case spellings (``arch='B'`` in the MixMIM
    configs; upstream lower-cases the name), so argument checks see them as valid."""

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key.lower() if isinstance(key, str) else key)


ARCH_ZOO = _CaseFreeTable(
    {
        **dict.fromkeys(
            ["b", "base"], {"embed_dims": 128, "depths": [2, 2, 18, 2], "num_heads": [4, 8, 16, 32]}
        ),
        **dict.fromkeys(
            ["l", "large"],
            {"embed_dims": 192, "depths": [2, 2, 18, 2], "num_heads": [6, 12, 24, 48]},
        ),
        **dict.fromkeys(
            ["h", "huge"],
            {"embed_dims": 352, "depths": [2, 2, 18, 2], "num_heads": [11, 22, 44, 88]},
        ),
    }
)


class MixMIMWindowAttention(WindowMSA):
    """Window attention whose optional ``mask`` ``(B * nW, N, 1)`` (1: a token of the
    second, mixed-in image) forbids attention between tokens of different mask values.

    Forbidden logits get ``-1e30`` (``-65500`` in float16), as upstream, rather than
    ``-inf``: every token still sees itself, so no row is empty either way."""

    def __init__(
        self,
        embed_dims: int,
        window_size: Sequence[int],
        num_heads: int,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(
            embed_dims=embed_dims,
            window_size=window_size,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            attn_drop=attn_drop_rate,
            proj_drop=proj_drop_rate,
            init_cfg=init_cfg,
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (B*nW, heads, N, d)
        attn_mask = self.relative_position_bias().to(q.dtype).unsqueeze(0)
        if mask is not None:
            m = mask.reshape(b, 1, 1, n).to(q.dtype)
            different = m != m.transpose(2, 3)  # (B*nW, 1, N, N)
            big = 65500.0 if q.dtype == torch.float16 else 1e30
            attn_mask = attn_mask - big * different.to(q.dtype)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            dropout_p=self.attn_drop if self.training else 0.0,
            scale=self.scale,
        )
        out = out.transpose(1, 2).reshape(b, n, c)
        return self.proj_drop(self.proj(out))


class MixMIMBlock(TransformerEncoderLayer):
    """One block: ``x + drop_path(window_attn(ln1(x)))`` then ``x + ffn(ln2(x))``.

    The window shrinks to the map when the map is no larger than ``window_size``."""

    def __init__(
        self,
        embed_dims: int,
        input_resolution: Sequence[int],
        num_heads: int,
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        num_fcs: int = 2,
        qkv_bias: bool = True,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        act_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(
            embed_dims=embed_dims,
            num_heads=num_heads,
            feedforward_channels=int(mlp_ratio * embed_dims),
            drop_rate=proj_drop_rate,
            attn_drop_rate=attn_drop_rate,
            drop_path_rate=drop_path_rate,
            num_fcs=num_fcs,
            qkv_bias=qkv_bias,
            act_cfg=act_cfg,
            norm_cfg=norm_cfg,
            init_cfg=init_cfg,
        )
        self.input_resolution = tuple(input_resolution)
        self.window_size = min(window_size, min(self.input_resolution))
        h, w = self.input_resolution
        if h % self.window_size or w % self.window_size:
            raise ValueError(
                f"MixMIMBlock: a {h}x{w} map is not a whole number of {self.window_size}-wide "
                "windows; choose img_size/window_size so that every stage's map divides"
            )
        self.attn = MixMIMWindowAttention(
            embed_dims=embed_dims,
            window_size=to_2tuple(self.window_size),
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            attn_drop_rate=attn_drop_rate,
            proj_drop_rate=proj_drop_rate,
        )
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0.0 else nn.Identity()

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        h, w = self.input_resolution
        b, length, c = x.shape
        ws = self.window_size
        shortcut = x
        windows = window_partition(self.ln1(x).view(b, h, w, c), ws).view(-1, ws * ws, c)
        if attn_mask is not None:
            # one mask for the whole batch, split into the same windows as the tokens
            attn_mask = attn_mask.repeat(b, 1, 1).view(b, h, w, 1)
            attn_mask = window_partition(attn_mask, ws).view(-1, ws * ws, 1)
        windows = self.attn(windows, mask=attn_mask)
        x = window_reverse(windows.view(-1, ws, ws, c), h, w).reshape(b, h * w, c)
        x = shortcut + self.drop_path(x)
        return self.ffn(self.ln2(x), identity=x)  # the FFN applies its own drop path


class MixMIMLayer(BaseModule):
    """One stage: ``depth`` blocks, then (``downsample``) a 2x2 patch merging to twice the
    width. ``drop_path_rate`` is one rate per block."""

    def __init__(
        self,
        embed_dims: int,
        input_resolution: Sequence[int],
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: Sequence[float] = (0.0,),
        norm_cfg: dict | None = None,
        downsample: type[nn.Module] | None = None,
        use_checkpoint: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        norm_cfg = dict(type="LN") if norm_cfg is None else norm_cfg
        if len(drop_path_rate) != depth:
            raise ValueError(
                f"MixMIMLayer(depth={depth}) needs one drop_path_rate per block, got "
                f"{len(drop_path_rate)}"
            )
        self.embed_dims = embed_dims
        self.input_resolution = tuple(input_resolution)
        self.depth = depth
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(
            MixMIMBlock(
                embed_dims=embed_dims,
                input_resolution=input_resolution,
                num_heads=num_heads,
                window_size=window_size,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                proj_drop_rate=proj_drop_rate,
                attn_drop_rate=attn_drop_rate,
                drop_path_rate=drop_path_rate[i],
                norm_cfg=norm_cfg,
            )
            for i in range(depth)
        )
        self.downsample = (
            downsample(in_channels=embed_dims, out_channels=2 * embed_dims, norm_cfg=norm_cfg)
            if downsample is not None
            else None
        )

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.blocks:
            if self.use_checkpoint and x.requires_grad:
                x = cp.checkpoint(block, x, attn_mask, use_reentrant=False)
            else:
                x = block(x, attn_mask=attn_mask)
        if self.downsample is not None:
            x, _ = self.downsample(x, self.input_resolution)
        return x


@MODELS.register_module()
class MixMIMTransformer(BaseModule):
    """MixMIM encoder with MMPretrain's arguments; ``forward`` returns ``(pooled,)``, the
    ``(B, C)`` average of the final normed tokens.

    The input must be ``img_size``: the absolute position embedding has one row per patch.
    ``window_size`` is one window per stage; ``drop_path_rate`` grows linearly over all
    blocks. ``use_checkpoint`` recomputes blocks in the backward pass to save memory.
    """

    arch_zoo = ARCH_ZOO

    def __init__(
        self,
        arch: str | dict = "base",
        mlp_ratio: float = 4,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 4,
        in_channels: int = 3,
        window_size: Sequence[int] = (14, 14, 14, 7),
        qkv_bias: bool = True,
        patch_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        use_checkpoint: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        norm_cfg = dict(type="LN") if norm_cfg is None else norm_cfg
        if isinstance(arch, str):
            arch = arch.lower()
        settings = pick_arch(
            arch, ARCH_ZOO, "MixMIMTransformer", ("embed_dims", "depths", "num_heads")
        )
        self.arch_settings = settings
        self.embed_dims = settings["embed_dims"]
        self.depths = list(settings["depths"])
        self.num_heads = list(settings["num_heads"])
        self.num_layers = len(self.depths)
        if len(self.num_heads) != self.num_layers or len(window_size) != self.num_layers:
            raise ValueError(
                f"MixMIMTransformer: depths {self.depths}, num_heads {self.num_heads} and "
                f"window_size {list(window_size)} must have one entry per stage"
            )
        self.encoder_stride = 32
        self.mlp_ratio = mlp_ratio
        self.window_size = list(window_size)
        self.qkv_bias = qkv_bias
        self.drop_rate = drop_rate
        self.attn_drop_rate = attn_drop_rate
        self.use_checkpoint = use_checkpoint
        embed_cfg = dict(
            in_channels=in_channels,
            input_size=img_size,
            embed_dims=self.embed_dims,
            conv_type="Conv2d",
            kernel_size=patch_size,
            stride=patch_size,
            norm_cfg=dict(type="LN"),
        )
        embed_cfg.update(patch_cfg or {})
        self.patch_embed = PatchEmbed(**embed_cfg)
        self.patch_resolution = self.patch_embed.init_out_size
        self.dpr = [x.item() for x in torch.linspace(0, drop_path_rate, sum(self.depths))]
        self.layers = nn.ModuleList()
        for i in range(self.num_layers):
            start, end = sum(self.depths[:i]), sum(self.depths[: i + 1])
            self.layers.append(
                MixMIMLayer(
                    embed_dims=int(self.embed_dims * 2**i),
                    input_resolution=(
                        self.patch_resolution[0] // 2**i,
                        self.patch_resolution[1] // 2**i,
                    ),
                    depth=self.depths[i],
                    num_heads=self.num_heads[i],
                    window_size=self.window_size[i],
                    mlp_ratio=mlp_ratio,
                    qkv_bias=qkv_bias,
                    proj_drop_rate=drop_rate,
                    attn_drop_rate=attn_drop_rate,
                    drop_path_rate=self.dpr[start:end],
                    norm_cfg=norm_cfg,
                    downsample=PatchMerging if i < self.num_layers - 1 else None,
                    use_checkpoint=use_checkpoint,
                )
            )
        self.num_features = int(self.embed_dims * 2 ** (self.num_layers - 1))
        self.drop_after_pos = nn.Dropout(p=drop_rate)
        self.avgpool = nn.AdaptiveAvgPool1d(1)
        self.num_patches = self.patch_resolution[0] * self.patch_resolution[1]
        # fixed: zeros for classification (a checkpoint brings its values), sin-cos in
        # pre-training
        self.absolute_pos_embed = nn.Parameter(
            torch.zeros(1, self.num_patches, self.embed_dims), requires_grad=False
        )
        self.norm = build_norm_layer(norm_cfg, self.num_features)[1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        x, _ = self.patch_embed(x)
        x = self.drop_after_pos(x + self.absolute_pos_embed)
        for layer in self.layers:
            x = layer(x, attn_mask=None)
        x = self.norm(x)
        return (torch.flatten(self.avgpool(x.transpose(1, 2)), 1),)

    def get_layer_depth(self, param_name: str, prefix: str = "") -> tuple[int, int]:
        """``(layer id, number of layers)`` for layer-wise lr decay, as MMPretrain: the
        stem (patch embedding, position embedding) is 0, block ``j`` of stage ``i`` is
        ``sum(depths[:i]) + j + 1``, a stage's patch merging counts with its last block,
        the final norm is second to last, and outside the backbone a neck is second to
        last, anything else last."""
        num_layers = sum(self.depths) + 2
        if not param_name.startswith(prefix):
            if param_name.startswith("neck"):
                return num_layers - 2, num_layers
            return num_layers - 1, num_layers
        name = param_name[len(prefix) :]
        if any(stem in name for stem in ("patch_embed", "absolute_pos_embed", "pos_embed")):
            return 0, num_layers
        if name.startswith("layers"):
            parts = name.split(".")
            layer_id, block_id = int(parts[1]), parts[3]
            if block_id in ("downsample", "reduction", "norm"):
                return sum(self.depths[: layer_id + 1]), num_layers
            return sum(self.depths[:layer_id]) + int(block_id) + 1, num_layers
        return num_layers - 2, num_layers
