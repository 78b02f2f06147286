"""MobileViT backbone (`MobileViT: Light-weight, General-purpose, and Mobile-friendly Vision
Transformer <https://arxiv.org/abs/2110.02178>`_), with MMPretrain's arguments and keys.

A 3x3 stride-2 stem, five layers of MobileNetV2 inverted residuals, three of them followed
by a MobileViT block (local 3x3 conv, transformer layers over the pixels of 2x2 patches,
1x1 projection and a 3x3 fusion with the block's input), then a 1x1 expansion conv.

Keys: ``stem.{conv,bn}``; ``layers.{i}.{j}.conv.{0,1,2}.{conv,bn}`` (inverted residuals);
in MobileViT layers ``layers.{i}.1.local_rep.0.{conv,bn}`` / ``.local_rep.1.conv``,
``.global_rep.{k}`` (``ln1``, ``attn.qkv``, ``attn.proj``, ``ln2``, ``ffn.layers.0.0``,
``ffn.layers.1``; the last entry is a LayerNorm), ``.conv_proj.{conv,bn}``,
``.conv_fusion.{conv,bn}``; and ``conv_1x1_exp.{conv,bn}``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.backbones.vision_transformer import TransformerEncoderLayer
from vistra.models.base import BaseModule
from vistra.models.layers import ConvModule, build_norm_layer
from vistra.models.layers.inverted_residual import InvertedResidual
from vistra.registry import MODELS, did_you_mean

# The blocks inside the layers use these whatever the backbone's own cfgs say (those shape
# the stem and the final expansion only), as MMPretrain builds them.
_BLOCK_NORM = dict(type="BN")
_BLOCK_ACT = dict(type="Swish")


class MobileVitBlock(nn.Module):
    """Local representation (3x3 conv, 1x1 conv to ``transformer_dim``), global
    representation (transformer layers over the ``patch_size`` x ``patch_size`` unfolded
    map, each pixel position of a patch attending across patches), 1x1 projection back to
    ``out_channels`` and, unless ``no_fusion``, a conv fusing it with the block's input.
    """

    def __init__(
        self,
        in_channels: int,
        transformer_dim: int,
        ffn_dim: int,
        out_channels: int,
        conv_ksize: int = 3,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = _BLOCK_NORM,
        act_cfg: dict | None = _BLOCK_ACT,
        num_transformer_blocks: int = 2,
        patch_size: int = 2,
        num_heads: int = 4,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        no_fusion: bool = False,
        transformer_norm_cfg: dict | None = None,
    ) -> None:
        super().__init__()
        transformer_norm_cfg = (
            dict(type="LN") if transformer_norm_cfg is None else transformer_norm_cfg
        )
        conv = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        padding = (conv_ksize - 1) // 2
        self.local_rep = nn.Sequential(
            ConvModule(in_channels, in_channels, conv_ksize, padding=padding, **conv),
            ConvModule(
                in_channels, transformer_dim, 1, bias=False, conv_cfg=conv_cfg, norm_cfg=None,
                act_cfg=None,
            ),
        )  # fmt: skip
        layers: list[nn.Module] = [
            TransformerEncoderLayer(
                embed_dims=transformer_dim, num_heads=num_heads, feedforward_channels=ffn_dim,
                drop_rate=drop_rate, attn_drop_rate=attn_drop_rate,
                drop_path_rate=drop_path_rate, qkv_bias=True, act_cfg=dict(type="Swish"),
                norm_cfg=transformer_norm_cfg,
            )
            for _ in range(num_transformer_blocks)
        ]  # fmt: skip
        layers.append(build_norm_layer(transformer_norm_cfg, transformer_dim)[1])
        self.global_rep = nn.Sequential(*layers)
        self.conv_proj = ConvModule(transformer_dim, out_channels, 1, **conv)
        self.conv_fusion = (
            None
            if no_fusion
            else ConvModule(
                in_channels + out_channels, out_channels, conv_ksize, padding=padding, **conv
            )
        )
        self.patch_size = (patch_size, patch_size)

    def _unfold(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """``(B, C, H, W)`` -> ``(B * P, N, C)``: P pixel positions of a patch, N patches."""
        patch_h, patch_w = self.patch_size
        batch, channels, height, width = x.shape
        rows, cols = math.ceil(height / patch_h), math.ceil(width / patch_w)
        if (rows * patch_h, cols * patch_w) != (height, width):
            # resized rather than padded, so that attention needs no mask (as MMPretrain)
            x = F.interpolate(
                x, size=(rows * patch_h, cols * patch_w), mode="bilinear", align_corners=False
            )
        x = x.reshape(batch, channels, rows, patch_h, cols, patch_w)
        x = x.permute(0, 3, 5, 2, 4, 1)  # (B, ph, pw, rows, cols, C)
        return x.reshape(batch * patch_h * patch_w, rows * cols, channels), (rows, cols)

    def _fold(self, x: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
        """The inverse of ``_unfold``, back to ``size``."""
        patch_h, patch_w = self.patch_size
        rows, cols = grid
        channels = x.shape[-1]
        x = x.reshape(-1, patch_h, patch_w, rows, cols, channels)
        x = x.permute(0, 5, 3, 1, 4, 2).reshape(-1, channels, rows * patch_h, cols * patch_w)
        if (rows * patch_h, cols * patch_w) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.local_rep(x)
        size = (int(x.shape[2]), int(x.shape[3]))
        tokens, grid = self._unfold(x)
        x = self._fold(self.global_rep(tokens), grid, size)
        x = self.conv_proj(x)
        if self.conv_fusion is not None:
            x = self.conv_fusion(torch.cat((shortcut, x), dim=1))
        return x


def _inverted_residual(in_channels: int, out_channels: int, stride: int, expand_ratio: float):
    return InvertedResidual(
        in_channels, out_channels, stride=stride, expand_ratio=expand_ratio,
        norm_cfg=_BLOCK_NORM, act_cfg=_BLOCK_ACT,
    )  # fmt: skip


@MODELS.register_module()
class MobileViT(BaseModule):
    """MobileViT backbone.

    ``arch`` is a name of ``arch_settings`` or a list of layer settings, each
    ``['mobilenetv2', out_channels, stride, num_blocks, expand_ratio]`` or
    ``['mobilevit', out_channels, stride, transformer_dim, ffn_dim,
    num_transformer_blocks, expand_ratio]``. ``out_indices`` index those layers (the last
    one's output goes through ``conv_1x1_exp`` first); ``frozen_stages=n`` freezes the first
    ``n`` layers (not the stem, as MMPretrain). ``conv_cfg``/``norm_cfg``/``act_cfg`` shape
    the stem and ``conv_1x1_exp``; the layers use BN and Swish, as MMPretrain's do.
    """

    arch_settings = {
        "small": [
            ["mobilenetv2", 32, 1, 1, 4],
            ["mobilenetv2", 64, 2, 3, 4],
            ["mobilevit", 96, 2, 144, 288, 2, 4],
            ["mobilevit", 128, 2, 192, 384, 4, 4],
            ["mobilevit", 160, 2, 240, 480, 3, 4],
        ],
        "x_small": [
            ["mobilenetv2", 32, 1, 1, 4],
            ["mobilenetv2", 48, 2, 3, 4],
            ["mobilevit", 64, 2, 96, 192, 2, 4],
            ["mobilevit", 80, 2, 120, 240, 4, 4],
            ["mobilevit", 96, 2, 144, 288, 3, 4],
        ],
        "xx_small": [
            ["mobilenetv2", 16, 1, 1, 2],
            ["mobilenetv2", 24, 2, 3, 2],
            ["mobilevit", 48, 2, 64, 128, 2, 2],
            ["mobilevit", 64, 2, 80, 160, 4, 2],
            ["mobilevit", 80, 2, 96, 192, 3, 2],
        ],
    }
    # settings after the layer type: name -> (required, optional with its default)
    _LAYER_ARGS = {
        "mobilenetv2": (("out_channels", "stride", "num_blocks"), ("expand_ratio",)),
        "mobilevit": (
            ("out_channels", "stride", "transformer_dim", "ffn_dim", "num_transformer_blocks"),
            ("expand_ratio",),
        ),
    }

    def __init__(
        self,
        arch: str | list[list] = "small",
        in_channels: int = 3,
        stem_channels: int = 16,
        last_exp_factor: int = 4,
        out_indices: int | Sequence[int] = (4,),
        frozen_stages: int = -1,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = dict(type="BN"),  # noqa: B006 (never mutated)
        act_cfg: dict | None = dict(type="Swish"),  # noqa: B006
        init_cfg: dict | list[dict] | None = [  # noqa: B006 (copied by BaseModule)
            dict(type="Kaiming", layer=["Conv2d"]),
            dict(type="Constant", val=1, layer=["_BatchNorm", "GroupNorm"]),
        ],
    ) -> None:
        super().__init__(init_cfg)
        self.arch = self._parse_arch(arch)
        self.num_stages = len(self.arch)
        self.out_indices = self._parse_out_indices(out_indices)
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages < self.num_stages:
            raise ValueError(
                f"frozen_stages must be in range(-1, {self.num_stages}), got {frozen_stages!r}"
            )
        self.frozen_stages = frozen_stages
        conv = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.stem = ConvModule(in_channels, stem_channels, 3, stride=2, padding=1, **conv)
        channels = stem_channels
        layers = []
        makers = {
            "mobilenetv2": self.make_mobilenetv2_layer,
            "mobilevit": self.make_mobilevit_layer,
        }
        for layer_type, *settings in self.arch:
            layer, channels = makers[layer_type](channels, *settings)
            layers.append(layer)
        self.layers = nn.Sequential(*layers)
        self.conv_1x1_exp = ConvModule(channels, last_exp_factor * channels, 1, **conv)
        self._freeze_stages()

    @classmethod
    def _parse_arch(cls, arch: str | list[list]) -> list[list]:
        if isinstance(arch, str):
            if arch.lower() not in cls.arch_settings:
                hint = did_you_mean(arch, list(cls.arch_settings))
                raise ValueError(
                    f"arch={arch!r} is not a MobileViT arch.{hint} Valid: "
                    f"{sorted(cls.arch_settings)} or a list of layer settings"
                )
            return [list(layer) for layer in cls.arch_settings[arch.lower()]]
        if not isinstance(arch, Sequence) or not arch:
            raise TypeError(
                f"arch must be one of {sorted(cls.arch_settings)} or a list of layer settings, "
                f"got {arch!r}"
            )
        for layer in arch:
            kind = layer[0] if isinstance(layer, Sequence) and layer else None
            if kind not in cls._LAYER_ARGS:
                raise ValueError(
                    f"arch: each layer must be a list starting with one of "
                    f"{sorted(cls._LAYER_ARGS)}, got {layer!r}"
                )
            required, optional = cls._LAYER_ARGS[kind]
            if not len(required) <= len(layer) - 1 <= len(required) + len(optional):
                raise ValueError(
                    f"arch: a {kind!r} layer takes {', '.join(required + optional)} "
                    f"(the last optional), got {layer!r}"
                )
        return [list(layer) for layer in arch]

    def _parse_out_indices(self, out_indices: int | Sequence[int]) -> list[int]:
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        if not isinstance(out_indices, Sequence):
            raise TypeError(f"out_indices must be an int or a sequence, got {out_indices!r}")
        parsed = []
        for index in out_indices:
            resolved = self.num_stages + index if index < 0 else index
            if not 0 <= resolved < self.num_stages:
                raise ValueError(
                    f"out_indices: {index} is out of range for {self.num_stages} layers"
                )
            parsed.append(resolved)
        return parsed

    @staticmethod
    def make_mobilevit_layer(
        in_channels: int,
        out_channels: int,
        stride: int,
        transformer_dim: int,
        ffn_dim: int,
        num_transformer_blocks: int,
        expand_ratio: float = 4,
    ) -> tuple[nn.Sequential, int]:
        """One inverted residual (``stride``) then one MobileViT block; and the width."""
        layer = nn.Sequential(
            _inverted_residual(in_channels, out_channels, stride, expand_ratio),
            MobileVitBlock(
                out_channels, transformer_dim, ffn_dim, out_channels,
                num_transformer_blocks=num_transformer_blocks,
            ),
        )  # fmt: skip
        return layer, out_channels

    @staticmethod
    def make_mobilenetv2_layer(
        in_channels: int, out_channels: int, stride: int, num_blocks: int, expand_ratio: float = 4
    ) -> tuple[nn.Sequential, int]:
        """``num_blocks`` inverted residuals, the first with ``stride``; and the width."""
        blocks = [
            _inverted_residual(
                in_channels if i == 0 else out_channels, out_channels, stride if i == 0 else 1,
                expand_ratio,
            )
            for i in range(num_blocks)
        ]  # fmt: skip
        return nn.Sequential(*blocks), out_channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.stem(x)
        outs = []
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i == last:
                x = self.conv_1x1_exp(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _freeze_stages(self) -> None:
        for i in range(self.frozen_stages):
            layer = self.layers[i]
            layer.eval()
            for param in layer.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> MobileViT:
        super().train(mode)
        self._freeze_stages()
        return self
