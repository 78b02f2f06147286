"""TinyViT backbone (`TinyViT: Fast Pretraining Distillation for Small Vision Transformers
<https://arxiv.org/abs/2207.10666>`_), with MMPretrain's arguments and keys.

A two-conv stride-4 stem, a first stage of MBConv blocks on maps, then three stages of
transformer blocks on ``(B, N, C)`` tokens: window attention (LeViT's attention bias inside
each window, zero-padded windows at the borders), a depthwise 3x3 conv + BN between the
attention and the MLP, and a conv patch merging (1x1, depthwise 3x3 stride 2, 1x1) closing
each stage but the last. Every conv carries its BatchNorm (``ConvBN2d``). The stage
resolutions follow ``img_size``, so the network takes that input size only.

Keys: ``patch_embed.seq.{0,2}.{conv2d,bn2d}``; ``stages.0.blocks.{j}.conv{1,2,3}``;
``stages.{i}.blocks.{j}``: ``attn.{attention_biases,norm,qkv,proj}`` (the bias table is
not saved), ``mlp.{norm,fc1,fc2}``, ``local_conv``; ``stages.{i}.downsample.conv{1,2,3}``
(each ``.conv2d`` and ``.bn2d``); ``norm{i}`` per output.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers import DropPath, build_activation_layer, build_norm_layer
from vistra.models.layers.levit_attention_bias import biased_attention, register_attention_bias
from vistra.models.layers.pos_embed import to_2tuple
from vistra.models.utils.arch import pick_arch
from vistra.registry import MODELS


class ConvBN2d(nn.Sequential):
    """A bias-free conv (``conv2d``) and its BatchNorm (``bn2d``, weight ``bn_weight_init``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        bn_weight_init: float = 1.0,
    ) -> None:
        super().__init__()
        self.add_module(
            "conv2d",
            nn.Conv2d(
                in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                dilation=dilation, groups=groups, bias=False,
            ),
        )  # fmt: skip
        bn = nn.BatchNorm2d(out_channels)
        nn.init.constant_(bn.weight, bn_weight_init)
        nn.init.zeros_(bn.bias)
        self.add_module("bn2d", bn)


class PatchEmbed(BaseModule):
    """Two 3x3 stride-2 ``ConvBN2d`` with the activation between: ``(B, C, H/4, W/4)``."""

    def __init__(
        self,
        in_channels: int,
        embed_dim: int,
        resolution: tuple[int, int],
        act_cfg: dict | None = None,
    ) -> None:
        super().__init__()
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        self.patches_resolution = (resolution[0] // 4, resolution[1] // 4)
        self.num_patches = self.patches_resolution[0] * self.patches_resolution[1]
        self.in_channels, self.embed_dim = in_channels, embed_dim
        self.seq = nn.Sequential(
            ConvBN2d(in_channels, embed_dim // 2, kernel_size=3, stride=2, padding=1),
            build_activation_layer(act_cfg),
            ConvBN2d(embed_dim // 2, embed_dim, kernel_size=3, stride=2, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class PatchMerging(nn.Module):
    """1x1 conv to ``out_channels``, depthwise 3x3 stride 2, 1x1 conv (activations between),
    from a ``resolution`` map or its tokens to the tokens of the halved grid."""

    def __init__(
        self,
        resolution: tuple[int, int],
        in_channels: int,
        out_channels: int,
        act_cfg: dict | None = None,
    ) -> None:
        super().__init__()
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        self.img_size = resolution
        self.act = build_activation_layer(act_cfg)
        self.conv1 = ConvBN2d(in_channels, out_channels, kernel_size=1)
        self.conv2 = ConvBN2d(
            out_channels, out_channels, kernel_size=3, stride=2, padding=1, groups=out_channels
        )
        self.conv3 = ConvBN2d(out_channels, out_channels, kernel_size=1)
        self.out_resolution = (resolution[0] // 2, resolution[1] // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:  # tokens of the input grid
            height, width = self.img_size
            x = x.view(x.shape[0], height, width, -1).permute(0, 3, 1, 2)
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        return self.conv3(x).flatten(2).transpose(1, 2)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expansion, depthwise 3x3, 1x1 projection (its BN starts at
    zero), residual, then the activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expand_ratio: float,
        drop_path: float,
        act_cfg: dict | None = None,
    ) -> None:
        super().__init__()
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        self.in_channels = in_channels
        hidden = int(in_channels * expand_ratio)
        self.conv1 = ConvBN2d(in_channels, hidden, kernel_size=1)
        self.act = build_activation_layer(act_cfg)
        self.conv2 = ConvBN2d(hidden, hidden, kernel_size=3, padding=1, groups=hidden)
        self.conv3 = ConvBN2d(hidden, out_channels, kernel_size=1, bn_weight_init=0.0)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.conv2(self.act(self.conv1(x))))
        return self.act(self.drop_path(self.conv3(out)) + x)


def _run_blocks(blocks: nn.ModuleList, x: torch.Tensor, use_checkpoint: bool) -> torch.Tensor:
    for block in blocks:
        if use_checkpoint and x.requires_grad:
            x = cp.checkpoint(block, x, use_reentrant=False)
        else:
            x = block(x)
    return x


def _drop_path_of(drop_path: float | Sequence[float], i: int) -> float:
    return drop_path[i] if isinstance(drop_path, Sequence) else drop_path


class ConvStage(BaseModule):
    """``depth`` MBConv blocks (GELU, as MMPretrain's) and an optional ``downsample``."""

    def __init__(
        self,
        in_channels: int,
        resolution: tuple[int, int],
        depth: int,
        act_cfg: dict,
        drop_path: float | Sequence[float] = 0.0,
        downsample: type[nn.Module] | None = None,
        use_checkpoint: bool = False,
        out_channels: int | None = None,
        conv_expand_ratio: float = 4.0,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(
            MBConvBlock(in_channels, in_channels, conv_expand_ratio, _drop_path_of(drop_path, i))
            for i in range(depth)
        )
        self.downsample = (
            downsample(
                resolution=resolution, in_channels=in_channels, out_channels=out_channels,
                act_cfg=act_cfg,
            )
            if downsample is not None
            else None
        )  # fmt: skip
        self.resolution = self.downsample.out_resolution if self.downsample else resolution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _run_blocks(self.blocks, x, self.use_checkpoint)
        return self.downsample(x) if self.downsample is not None else x


class MLP(BaseModule):
    """``norm -> fc1 -> act -> dropout -> fc2 -> dropout`` on tokens."""

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int | None = None,
        out_channels: int | None = None,
        act_cfg: dict | None = None,
        drop: float = 0.0,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        hidden_channels = hidden_channels or in_channels
        self.norm = nn.LayerNorm(in_channels)
        self.fc1 = nn.Linear(in_channels, hidden_channels)
        self.fc2 = nn.Linear(hidden_channels, out_channels or in_channels)
        self.act = build_activation_layer(act_cfg)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.act(self.fc1(self.norm(x))))
        return self.drop(self.fc2(x))


class LeAttention(BaseModule):
    """LeViT-style attention over a ``resolution`` grid of tokens: LayerNorm first, then
    per-head queries and keys ``key_dim`` wide, values ``attn_ratio * key_dim`` wide, and
    the attention bias (its table kept out of the state_dict)."""

    def __init__(
        self,
        dim: int,
        key_dim: int,
        num_heads: int = 8,
        attn_ratio: float = 4,
        resolution: tuple[int, int] = (14, 14),
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if not isinstance(resolution, tuple) or len(resolution) != 2:
            raise ValueError(f"LeAttention resolution must be an (h, w) tuple, got {resolution!r}")
        self.num_heads, self.key_dim, self.attn_ratio = num_heads, key_dim, attn_ratio
        self.scale = key_dim**-0.5
        self.nh_kd = key_dim * num_heads
        self.d = int(attn_ratio * key_dim)
        self.dh = self.d * num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, self.dh + 2 * self.nh_kd)  # per head: q, k, v
        self.proj = nn.Linear(self.dh, dim)
        register_attention_bias(self, num_heads, resolution, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(batch, tokens, self.num_heads, -1).transpose(1, 2)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.d], dim=-1)
        out = biased_attention(q, k, v, self, self.scale)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, self.dh))


class TinyViTBlock(BaseModule):
    """``x + attn(x)`` in ``window_size`` windows, a depthwise ``local_conv_size`` conv on
    the map, then ``x + mlp(x)`` (the attention and the MLP normalise their own input)."""

    def __init__(
        self,
        in_channels: int,
        resolution: tuple[int, int],
        num_heads: int,
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        drop_path: float = 0.0,
        local_conv_size: int = 3,
        act_cfg: dict | None = None,
    ) -> None:
        super().__init__()
        if window_size <= 0:
            raise ValueError(f"window_size must be positive, got {window_size}")
        if in_channels % num_heads:
            raise ValueError(f"channels {in_channels} must be divisible by num_heads {num_heads}")
        self.in_channels, self.img_size = in_channels, resolution
        self.num_heads, self.window_size, self.mlp_ratio = num_heads, window_size, mlp_ratio
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.attn = LeAttention(
            in_channels, in_channels // num_heads, num_heads, attn_ratio=1,
            resolution=(window_size, window_size),
        )  # fmt: skip
        self.mlp = MLP(in_channels, int(in_channels * mlp_ratio), act_cfg=act_cfg, drop=drop)
        self.local_conv = ConvBN2d(
            in_channels, in_channels, kernel_size=local_conv_size, padding=local_conv_size // 2,
            groups=in_channels,
        )  # fmt: skip

    def _window_attention(self, x: torch.Tensor) -> torch.Tensor:
        height, width = self.img_size
        batch, tokens, channels = x.shape
        win = self.window_size
        if height == win and width == win:
            return self.attn(x)
        pad_b, pad_r = (win - height % win) % win, (win - width % win) % win
        # zero padding joins the attention as keys, unmasked, as MMPretrain's
        x = F.pad(x.view(batch, height, width, channels), (0, 0, 0, pad_r, 0, pad_b))
        rows, cols = (height + pad_b) // win, (width + pad_r) // win
        windows = x.view(batch, rows, win, cols, win, channels).transpose(2, 3)
        out = self.attn(windows.reshape(batch * rows * cols, win * win, channels))
        out = out.view(batch, rows, cols, win, win, channels).transpose(2, 3)
        out = out.reshape(batch, rows * win, cols * win, channels)[:, :height, :width]
        return out.reshape(batch, tokens, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = self.img_size
        batch, tokens, channels = x.shape
        if tokens != height * width:
            raise ValueError(
                f"TinyViTBlock: {tokens} tokens do not make its {height}x{width} grid (TinyViT "
                "takes inputs of img_size only)"
            )
        x = x + self.drop_path(self._window_attention(x))
        x = self.local_conv(x.transpose(1, 2).reshape(batch, channels, height, width))
        x = x.view(batch, channels, tokens).transpose(1, 2)
        return x + self.drop_path(self.mlp(x))


class BasicStage(BaseModule):
    """``depth`` TinyViT blocks and an optional ``downsample``."""

    def __init__(
        self,
        in_channels: int,
        resolution: tuple[int, int],
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        drop_path: float | Sequence[float] = 0.0,
        downsample: type[nn.Module] | None = None,
        use_checkpoint: bool = False,
        local_conv_size: int = 3,
        out_channels: int | None = None,
        act_cfg: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(
            TinyViTBlock(
                in_channels, resolution, num_heads, window_size=window_size,
                mlp_ratio=mlp_ratio, drop=drop, drop_path=_drop_path_of(drop_path, i),
                local_conv_size=local_conv_size, act_cfg=act_cfg,
            )
            for i in range(depth)
        )  # fmt: skip
        self.downsample = (
            downsample(
                resolution=resolution, in_channels=in_channels, out_channels=out_channels,
                act_cfg=act_cfg,
            )
            if downsample is not None
            else None
        )  # fmt: skip
        self.resolution = self.downsample.out_resolution if self.downsample else resolution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _run_blocks(self.blocks, x, self.use_checkpoint)
        return self.downsample(x) if self.downsample is not None else x


@MODELS.register_module()
class TinyViT(BaseModule):
    """TinyViT backbone.

    ``arch`` is a name of ``arch_settings`` or a dict with ``channels``, ``num_heads`` and
    ``depths``; ``window_size`` has one entry per stage (the first, convolutional, stage
    ignores it). ``out_indices`` pick stages (negative ones count from 4); a stage's output
    is taken after its patch merging, so its width is the next stage's. With
    ``gap_before_final_norm=True`` (classification) each output is the normalised token
    mean ``(B, C)``, otherwise a normalised ``(B, C, h, w)`` map. ``frozen_stages=n``
    freezes the first ``n`` stages. ``layer_lr_decay`` is accepted and unused, as upstream.
    """

    arch_settings = {
        "5m": {"channels": [64, 128, 160, 320], "num_heads": [2, 4, 5, 10], "depths": [2, 2, 6, 2]},
        "11m": {
            "channels": [64, 128, 256, 448],
            "num_heads": [2, 4, 8, 14],
            "depths": [2, 2, 6, 2],
        },
        "21m": {
            "channels": [96, 192, 384, 576],
            "num_heads": [3, 6, 12, 18],
            "depths": [2, 2, 6, 2],
        },
    }

    def __init__(
        self,
        arch: str | dict = "5m",
        img_size: int | tuple[int, int] = (224, 224),
        window_size: Sequence[int] = (7, 7, 14, 7),
        in_channels: int = 3,
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        use_checkpoint: bool = False,
        mbconv_expand_ratio: float = 4.0,
        local_conv_size: int = 3,
        layer_lr_decay: float = 1.0,
        out_indices: int | Sequence[int] = -1,
        frozen_stages: int = 0,
        gap_before_final_norm: bool = True,
        act_cfg: dict | None = dict(type="GELU"),  # noqa: B006 (never mutated)
        norm_cfg: dict | None = dict(type="LN"),  # noqa: B006
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        arch = self._parse_arch(arch)
        self.channels, self.num_heads = list(arch["channels"]), list(arch["num_heads"])
        self.depths = list(arch["depths"])
        self.num_stages = len(self.channels)
        if not isinstance(window_size, Sequence) or len(window_size) < self.num_stages:
            raise ValueError(
                f"window_size must have one entry per stage ({self.num_stages}), "
                f"got {window_size!r}"
            )
        self.widow_sizes = list(window_size)  # (sic) MMPretrain's attribute name
        self.img_size = to_2tuple(img_size)
        self.out_indices = self._parse_out_indices(out_indices)
        self.frozen_stages = frozen_stages
        self.gap_before_final_norm = gap_before_final_norm
        self.layer_lr_decay = layer_lr_decay
        # the stem's activation is GELU whatever act_cfg says, as MMPretrain's
        self.patch_embed = PatchEmbed(in_channels, self.channels[0], self.img_size)
        patches = self.patch_embed.patches_resolution
        # stochastic depth grows linearly over all blocks
        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, sum(self.depths))]
        self.stages = nn.ModuleList()
        for i in range(self.num_stages):
            resolution = (patches[0] // 2**i, patches[1] // 2**i)
            drop_path = dpr[sum(self.depths[:i]) : sum(self.depths[: i + 1])]
            downsample = PatchMerging if i < self.num_stages - 1 else None
            out_channels = self.channels[min(i + 1, self.num_stages - 1)]
            common = dict(
                in_channels=self.channels[i], resolution=resolution, depth=self.depths[i],
                act_cfg=act_cfg, drop_path=drop_path, downsample=downsample,
                use_checkpoint=use_checkpoint, out_channels=out_channels,
            )  # fmt: skip
            if i == 0:
                stage: nn.Module = ConvStage(conv_expand_ratio=mbconv_expand_ratio, **common)
            else:
                stage = BasicStage(
                    num_heads=self.num_heads[i], window_size=self.widow_sizes[i],
                    mlp_ratio=mlp_ratio, drop=drop_rate, local_conv_size=local_conv_size,
                    **common,
                )  # fmt: skip
            self.stages.append(stage)
            if i in self.out_indices:
                self.add_module(f"norm{i}", build_norm_layer(norm_cfg, out_channels)[1])
        self._freeze_stages()

    @classmethod
    def _parse_arch(cls, arch: str | dict) -> dict:
        keys = ("channels", "num_heads", "depths")
        arch = pick_arch(arch, cls.arch_settings, "TinyViT", keys)
        lengths = {len(arch[k]) if isinstance(arch[k], Sequence) else -1 for k in keys}
        if len(lengths) != 1 or -1 in lengths:
            raise ValueError(
                f"arch {', '.join(keys)} must be sequences of the same length, "
                f"got {[arch[k] for k in keys]}"
            )
        return arch

    def _parse_out_indices(self, out_indices: int | Sequence[int]) -> list[int]:
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        if not isinstance(out_indices, Sequence):
            raise TypeError(f"out_indices must be an int or a sequence, got {out_indices!r}")
        parsed = []
        for index in out_indices:
            resolved = 4 + index if index < 0 else index  # MMPretrain counts from 4 stages
            if not 0 <= resolved < self.num_stages:
                raise ValueError(
                    f"out_indices: {index} is out of range for {self.num_stages} stages"
                )
            parsed.append(resolved)
        return parsed

    def set_layer_lr_decay(self, layer_lr_decay: float) -> None:
        """Kept for MMPretrain's interface; it does nothing there either."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.patch_embed(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i not in self.out_indices:
                continue
            norm = getattr(self, f"norm{i}")
            if self.gap_before_final_norm:
                outs.append(norm(x.mean(1)))
            else:
                out = norm(x)  # (B, L, C) -> (B, C, h, w)
                out = out.view(out.shape[0], *stage.resolution, out.shape[-1])
                outs.append(out.permute(0, 3, 1, 2))
        return tuple(outs)

    def _freeze_stages(self) -> None:
        for i in range(self.frozen_stages):
            stage = self.stages[i]
            stage.eval()
            for param in stage.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> TinyViT:
        super().train(mode)
        self._freeze_stages()
        return self
