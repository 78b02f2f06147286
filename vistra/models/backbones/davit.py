"""DaViT backbone (`DaViT: Dual Attention Vision Transformers
<https://arxiv.org/abs/2204.03645>`_), with MMPretrain's arguments and keys.

Each DaViT block is a spatial block (window self-attention, no position bias, no shift)
followed by a channel block (self-attention over the channels of each head: the
``d x d`` attention of keys and values, applied to the queries); each is preceded in both
of its halves by a conditional position encoding (``x + dwconv3x3(x)``).

Keys:

- ``patch_embed.projection`` (7x7, stride ``patch_size``, ``'same'`` padding) /
  ``patch_embed.norm``;
- ``stages.{i}.blocks.{j}.spatial_block.{cpe1.proj, norm1, attn.w_msa.qkv,
  attn.w_msa.proj, cpe2.proj, norm2, ffn.layers.0.0, ffn.layers.1}`` and
  ``.channel_block.{cpe1.proj, norm1, attn.qkv, attn.proj, cpe2.proj, norm2, ffn.*}``;
- ``stages.{i}.downsample.norm`` / ``.projection`` (LayerNorm, then a 2x2 stride-2 conv)
  closing every stage but the last;
- ``norm{i}`` for each index of ``out_indices``.

Semantics kept from upstream: the small-map rules of the window attention
(``pad_small_map=False``: a map smaller than the window is an error, so 224-pixel inputs
for window 7), a stage's output taken before its downsampling unless
``out_after_downsample``, ``frozen_stages=k`` freezing the patch embedding and stages
``0..k``, the channel blocks never checkpointed (``with_cp`` is the spatial blocks').
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import nn

from vistra.models.backbones.swin import check_out_indices, drop_path_rates, per_item
from vistra.models.base import BaseModule
from vistra.models.layers.norm import build_norm_layer
from vistra.models.layers.patch_embed import PatchEmbed
from vistra.models.layers.pos_embed import to_2tuple
from vistra.models.layers.transformer import FFN
from vistra.models.layers.window_attention import ShiftWindowMSA, windowed_attention
from vistra.models.utils.arch import pick_arch
from vistra.registry import MODELS


class DaViTWindowMSA(BaseModule):
    """Multi-head self-attention inside windows, without a relative position bias."""

    def __init__(
        self,
        embed_dims: int,
        window_size: Sequence[int],
        num_heads: int,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if embed_dims % num_heads:
            raise ValueError(f"embed_dims={embed_dims} must be divisible by num_heads={num_heads}")
        self.embed_dims, self.num_heads = embed_dims, num_heads
        self.window_size = to_2tuple(window_size)
        self.scale = qk_scale or (embed_dims // num_heads) ** -0.5
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = windowed_attention(
            q, k, v, None, mask, self.scale, self.attn_drop if self.training else 0.0
        )
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))


class ConvPosEnc(BaseModule):
    """Conditional position encoding ``x + dwconv(x)`` over ``(B, H*W, C)`` tokens."""

    def __init__(
        self, embed_dims: int, kernel_size: int = 3, init_cfg: dict | list[dict] | None = None
    ) -> None:
        super().__init__(init_cfg)
        self.proj = nn.Conv2d(
            embed_dims, embed_dims, kernel_size, stride=1, padding=kernel_size // 2,
            groups=embed_dims,
        )  # fmt: skip

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        b, n, c = x.shape
        h, w = size
        if n != h * w:
            raise ValueError(f"ConvPosEnc: {n} tokens do not make an {h}x{w} map")
        feat = self.proj(x.transpose(1, 2).view(b, c, h, w))
        return x + feat.flatten(2).transpose(1, 2)


class DaViTDownSample(BaseModule):
    """``norm`` (over ``in_channels``) then a strided conv ``projection`` over the map.

    Upstream's string ``padding`` pads the *token* tensor ``(B, H*W, C)``, which is a
    no-op for the even token counts and widths it accepts (anything else stops it with an
    assertion); so here a string ``padding`` leaves the map unpadded and the conv rounds
    down, which is upstream's result wherever it runs. An int pads the conv."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        conv_type: str = "Conv2d",
        kernel_size: int = 2,
        stride: int | None = 2,
        padding: int | tuple[int, int] | str = "same",
        dilation: int = 1,
        bias: bool = True,
        norm_cfg: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if conv_type != "Conv2d":
            raise ValueError(f"DaViTDownSample supports conv_type='Conv2d' only, got {conv_type!r}")
        self.out_channels = out_channels
        stride = kernel_size if stride is None else stride
        conv_padding = (0, 0) if isinstance(padding, str) else to_2tuple(padding)
        self.projection = nn.Conv2d(
            in_channels, out_channels, to_2tuple(kernel_size), stride=to_2tuple(stride),
            padding=conv_padding, dilation=to_2tuple(dilation), bias=bias,
        )  # fmt: skip
        self.norm = build_norm_layer(norm_cfg, in_channels)[1] if norm_cfg is not None else None

    def forward(
        self, x: torch.Tensor, input_size: Sequence[int]
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        h, w = input_size
        b, length, c = x.shape
        if length != h * w:
            raise ValueError(f"DaViTDownSample: {length} tokens do not make an {h}x{w} map")
        if self.norm is not None:
            x = self.norm(x)
        x = self.projection(x.reshape(b, h, w, c).permute(0, 3, 1, 2))
        out_size = (int(x.shape[2]), int(x.shape[3]))
        return x.flatten(2).transpose(1, 2), out_size


class ChannelAttention(BaseModule):
    """Attention across channels: per head, ``softmax(scale * k^T v)`` (``d x d``) mixes
    the channels of ``q``. Keys ``qkv``, ``proj``."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int = 8,
        qkv_bias: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if embed_dims % num_heads:
            raise ValueError(f"embed_dims={embed_dims} must be divisible by num_heads={num_heads}")
        self.embed_dims, self.num_heads = embed_dims, num_heads
        self.head_dims = embed_dims // num_heads
        self.scale = self.head_dims**-0.5
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=qkv_bias)
        self.proj = nn.Linear(embed_dims, embed_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dims)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, heads, N, d)
        # channels as the "tokens": queries k^T, keys v^T, values q^T (B, heads, d, N)
        out = F.scaled_dot_product_attention(
            k.transpose(-1, -2), v.transpose(-1, -2), q.transpose(-1, -2), scale=self.scale
        )
        out = out.permute(0, 3, 1, 2).reshape(b, n, self.embed_dims)
        return self.proj(out)


class _ConvPosEncBlock(BaseModule):
    """``cpe1``, ``x + mix(norm1(x))`` with the block's ``attn``, ``cpe2``,
    ``x + ffn(norm2(x))``: the frame shared by the spatial and the channel block."""

    def __init__(
        self,
        embed_dims: int,
        attn: nn.Module,
        ffn_ratio: float,
        drop_path: float,
        ffn_cfgs: dict | None,
        norm_cfg: dict | None,
        with_cp: bool,
        init_cfg: dict | list[dict] | None,
    ) -> None:
        super().__init__(init_cfg)
        norm_cfg = dict(type="LN") if norm_cfg is None else norm_cfg
        self.with_cp = with_cp
        self.cpe1 = ConvPosEnc(embed_dims=embed_dims, kernel_size=3)
        self.norm1 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.attn = attn
        self.cpe2 = ConvPosEnc(embed_dims=embed_dims, kernel_size=3)
        self.norm2 = build_norm_layer(norm_cfg, embed_dims)[1]
        ffn_args = dict(
            embed_dims=embed_dims,
            feedforward_channels=int(embed_dims * ffn_ratio),
            num_fcs=2,
            ffn_drop=0,
            dropout_layer=dict(type="DropPath", drop_prob=drop_path),
            act_cfg=dict(type="GELU"),
        )
        self.ffn = FFN(**{**ffn_args, **(ffn_cfgs or {})})

    def _mix(self, x: torch.Tensor, hw_shape: Sequence[int]) -> torch.Tensor:
        raise NotImplementedError

    def _inner_forward(self, x: torch.Tensor, hw_shape: Sequence[int]) -> torch.Tensor:
        x = self.cpe1(x, hw_shape)
        x = x + self._mix(self.norm1(x), hw_shape)
        x = self.cpe2(x, hw_shape)
        return self.ffn(self.norm2(x), identity=x)

    def forward(self, x: torch.Tensor, hw_shape: Sequence[int]) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._inner_forward, x, hw_shape, use_reentrant=False)
        return self._inner_forward(x, hw_shape)


class ChannelBlock(_ConvPosEncBlock):
    """The block with channel attention (``attn.qkv``, ``attn.proj``)."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        ffn_ratio: float = 4.0,
        qkv_bias: bool = False,
        drop_path: float = 0.0,
        ffn_cfgs: dict | None = None,
        norm_cfg: dict | None = None,
        with_cp: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        attn = ChannelAttention(embed_dims, num_heads=num_heads, qkv_bias=qkv_bias)
        super().__init__(embed_dims, attn, ffn_ratio, drop_path, ffn_cfgs, norm_cfg, with_cp,
                         init_cfg)  # fmt: skip

    def _mix(self, x: torch.Tensor, hw_shape: Sequence[int]) -> torch.Tensor:
        return self.attn(x)


class SpatialBlock(_ConvPosEncBlock):
    """The block with window attention (``attn.w_msa``, never shifted; DropPath inside)."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        window_size: int = 7,
        ffn_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        pad_small_map: bool = False,
        attn_cfgs: dict | None = None,
        ffn_cfgs: dict | None = None,
        norm_cfg: dict | None = None,
        with_cp: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        attn_args = dict(
            embed_dims=embed_dims,
            num_heads=num_heads,
            shift_size=0,
            window_size=window_size,
            dropout_layer=dict(type="DropPath", drop_prob=drop_path),
            qkv_bias=qkv_bias,
            pad_small_map=pad_small_map,
            window_msa=DaViTWindowMSA,
        )
        attn = ShiftWindowMSA(**{**attn_args, **(attn_cfgs or {})})
        super().__init__(embed_dims, attn, ffn_ratio, drop_path, ffn_cfgs, norm_cfg, with_cp,
                         init_cfg)  # fmt: skip

    def _mix(self, x: torch.Tensor, hw_shape: Sequence[int]) -> torch.Tensor:
        return self.attn(x, hw_shape)


class DaViTBlock(BaseModule):
    """A spatial block, then a channel block."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        window_size: int = 7,
        ffn_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        pad_small_map: bool = False,
        attn_cfgs: dict | None = None,
        ffn_cfgs: dict | None = None,
        norm_cfg: dict | None = None,
        with_cp: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.spatial_block = SpatialBlock(
            embed_dims, num_heads, window_size=window_size, ffn_ratio=ffn_ratio,
            qkv_bias=qkv_bias, drop_path=drop_path, pad_small_map=pad_small_map,
            attn_cfgs=attn_cfgs, ffn_cfgs=ffn_cfgs, norm_cfg=norm_cfg, with_cp=with_cp,
        )  # fmt: skip
        self.channel_block = ChannelBlock(
            embed_dims, num_heads, ffn_ratio=ffn_ratio, qkv_bias=qkv_bias, drop_path=drop_path,
            ffn_cfgs=ffn_cfgs, norm_cfg=norm_cfg, with_cp=False,  # upstream's: never checkpointed
        )  # fmt: skip

    def forward(self, x: torch.Tensor, hw_shape: Sequence[int]) -> torch.Tensor:
        return self.channel_block(self.spatial_block(x, hw_shape), hw_shape)


class DaViTBlockSequence(BaseModule):
    """``depth`` DaViT blocks and the downsampling that closes the stage."""

    def __init__(
        self,
        embed_dims: int,
        depth: int,
        num_heads: int,
        window_size: int = 7,
        ffn_ratio: float = 4.0,
        qkv_bias: bool = True,
        downsample: bool = False,
        downsample_cfg: dict | None = None,
        drop_paths: float | Sequence[float] = 0.0,
        block_cfgs: dict | Sequence[dict] | None = None,
        with_cp: bool = False,
        pad_small_map: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if not isinstance(drop_paths, Sequence):
            drop_paths = [drop_paths] * depth
        if len(drop_paths) != depth:
            raise ValueError(f"drop_paths has {len(drop_paths)} rates for depth={depth}")
        extra = per_item(block_cfgs, depth, "block_cfgs")
        self.embed_dims = embed_dims
        self.blocks = nn.ModuleList()
        for i in range(depth):
            args = dict(
                embed_dims=embed_dims,
                num_heads=num_heads,
                window_size=window_size,
                ffn_ratio=ffn_ratio,
                qkv_bias=qkv_bias,
                drop_path=drop_paths[i],
                with_cp=with_cp,
                pad_small_map=pad_small_map,
            )
            self.blocks.append(DaViTBlock(**{**args, **extra[i]}))
        self.downsample: DaViTDownSample | None = None
        if downsample:
            args = dict(
                in_channels=embed_dims, out_channels=2 * embed_dims, norm_cfg=dict(type="LN")
            )
            self.downsample = DaViTDownSample(**{**args, **(downsample_cfg or {})})

    def forward(
        self, x: torch.Tensor, in_shape: Sequence[int], do_downsample: bool = True
    ) -> tuple[torch.Tensor, Sequence[int]]:
        for block in self.blocks:
            x = block(x, in_shape)
        if self.downsample is not None and do_downsample:
            return self.downsample(x, in_shape)
        return x, in_shape

    @property
    def out_channels(self) -> int:
        return self.downsample.out_channels if self.downsample is not None else self.embed_dims


@MODELS.register_module()
class DaViT(BaseModule):
    """MMPretrain's DaViT; arguments and keys in the module docstring.

    ``arch`` is a name of ``arch_zoo`` or a dict with (at least) ``embed_dims``,
    ``depths`` and ``num_heads``. Returns a tuple of normalised ``(B, C_i, H_i, W_i)`` maps
    for the ``out_indices`` stages.
    """

    arch_zoo = {
        **dict.fromkeys(["t", "tiny"], {"embed_dims": 96, "depths": [1, 1, 3, 1],
                        "num_heads": [3, 6, 12, 24]}),
        **dict.fromkeys(["s", "small"], {"embed_dims": 96, "depths": [1, 1, 9, 1],
                        "num_heads": [3, 6, 12, 24]}),
        **dict.fromkeys(["b", "base"], {"embed_dims": 128, "depths": [1, 1, 9, 1],
                        "num_heads": [4, 8, 16, 32]}),
        **dict.fromkeys(["l", "large"], {"embed_dims": 192, "depths": [1, 1, 9, 1],
                        "num_heads": [6, 12, 24, 48]}),
        **dict.fromkeys(["h", "huge"], {"embed_dims": 256, "depths": [1, 1, 9, 1],
                        "num_heads": [8, 16, 32, 64]}),
        **dict.fromkeys(["g", "giant"], {"embed_dims": 384, "depths": [1, 1, 12, 3],
                        "num_heads": [12, 24, 48, 96]}),
    }  # fmt: skip

    def __init__(
        self,
        arch: str | dict = "t",
        patch_size: int = 4,
        in_channels: int = 3,
        window_size: int = 7,
        ffn_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.1,
        out_after_downsample: bool = False,
        pad_small_map: bool = False,
        norm_cfg: dict | None = dict(type="LN"),  # noqa: B006 (never mutated)
        stage_cfgs: dict | Sequence[dict] | None = None,
        frozen_stages: int = -1,
        norm_eval: bool = False,
        out_indices: int | Sequence[int] = (3,),
        with_cp: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if isinstance(arch, str):
            arch = arch.lower()
        self.arch_settings = pick_arch(
            arch, self.arch_zoo, "DaViT", ("embed_dims", "depths", "num_heads")
        )
        self.embed_dims = self.arch_settings["embed_dims"]
        self.depths = list(self.arch_settings["depths"])
        self.num_heads = list(self.arch_settings["num_heads"])
        if len(self.num_heads) != len(self.depths):
            raise ValueError(
                f"arch: depths={self.depths} and num_heads={self.num_heads} need one entry "
                "per stage"
            )
        self.num_layers = len(self.depths)
        self.out_indices = check_out_indices(out_indices, self.num_layers)
        self.out_after_downsample = out_after_downsample
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

        self.patch_embed = PatchEmbed(
            in_channels=in_channels, embed_dims=self.embed_dims, conv_type="Conv2d",
            kernel_size=7, stride=patch_size, padding="same", norm_cfg=dict(type="LN"),
        )  # fmt: skip
        rates = drop_path_rates(drop_path_rate, self.depths)
        extra = per_item(stage_cfgs, self.num_layers, "stage_cfgs")
        self.stages = nn.ModuleList()
        dims = [self.embed_dims]
        for i, (depth, heads) in enumerate(zip(self.depths, self.num_heads)):
            args = dict(
                embed_dims=dims[-1],
                depth=depth,
                num_heads=heads,
                window_size=window_size,
                ffn_ratio=ffn_ratio,
                qkv_bias=qkv_bias,
                downsample=i < self.num_layers - 1,
                drop_paths=rates[i],
                with_cp=with_cp,
                pad_small_map=pad_small_map,
            )
            stage = DaViTBlockSequence(**{**args, **extra[i]})
            self.stages.append(stage)
            dims.append(stage.out_channels)
        # upstream's: the widths before each stage's downsampling, also with
        # out_after_downsample (whose outputs then only fit where the width is unchanged)
        self.num_features = dims[:-1]
        for i in self.out_indices:
            norm = (
                nn.Identity()
                if norm_cfg is None
                else build_norm_layer(norm_cfg, self.num_features[i])[1]
            )
            self.add_module(f"norm{i}", norm)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x, hw_shape = self.patch_embed(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x, hw_shape = stage(x, hw_shape, do_downsample=self.out_after_downsample)
            if i in self.out_indices:
                out = getattr(self, f"norm{i}")(x)
                outs.append(
                    out.view(-1, *hw_shape, self.num_features[i]).permute(0, 3, 1, 2).contiguous()
                )
            if stage.downsample is not None and not self.out_after_downsample:
                x, hw_shape = stage.downsample(x, hw_shape)
        return tuple(outs)

    def _freeze_stages(self) -> None:
        if self.frozen_stages >= 0:
            self.patch_embed.eval()
            for param in self.patch_embed.parameters():
                param.requires_grad = False
        for i in range(min(self.frozen_stages + 1, len(self.stages))):
            self.stages[i].eval()
            for param in self.stages[i].parameters():
                param.requires_grad = False
        for i in self.out_indices:
            if i <= self.frozen_stages:
                for param in getattr(self, f"norm{i}").parameters():
                    param.requires_grad = False

    def train(self, mode: bool = True) -> DaViT:
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()  # only BatchNorm statistics are frozen by norm_eval
        return self
