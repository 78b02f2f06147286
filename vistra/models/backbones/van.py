"""VAN backbone (`Visual Attention Network <https://arxiv.org/abs/2202.09741>`_), with
MMPretrain's arguments and keys.

Four stages, each an overlapping strided-conv patch embedding (conv + BatchNorm), blocks
of large-kernel attention (LKA: a 5x5 depthwise conv, a 7x7 depthwise conv with dilation
3 and a 1x1 conv, whose output gates the input) and a depthwise-conv feed-forward, both
with layer scale and stochastic depth, and a LayerNorm over the channels.

Keys: ``patch_embed{s}.{projection,norm}``, ``blocks{s}.{j}`` with ``layer_scale_1``,
``layer_scale_2``, ``norm1``, ``norm2`` (BatchNorms), ``attn.proj_1``, ``attn.proj_2``,
``attn.spatial_gating_unit.{DW_conv,DW_D_conv,conv1}``, ``mlp.{fc1,dwconv,fc2}``, and
``norm{s}`` (the stage's LayerNorm), ``s`` counting from 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from vistra.models.base import BaseModule
from vistra.models.layers import DropPath, build_activation_layer, build_norm_layer
from vistra.models.utils.arch import pick_arch
from vistra.models.utils.out_indices import parse_out_indices
from vistra.registry import MODELS


class LKA(BaseModule):
    """Large-kernel attention: ``x * conv1(DW_D_conv(DW_conv(x)))``, a 21x21 receptive
    field from a 5x5 and a dilated 7x7 depthwise conv."""

    def __init__(self, embed_dims: int, init_cfg: dict | list[dict] | None = None) -> None:
        super().__init__(init_cfg)
        dims = embed_dims
        self.DW_conv = nn.Conv2d(dims, dims, kernel_size=5, padding=2, groups=dims)
        self.DW_D_conv = nn.Conv2d(dims, dims, kernel_size=7, padding=9, dilation=3, groups=dims)
        self.conv1 = nn.Conv2d(dims, dims, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv1(self.DW_D_conv(self.DW_conv(x)))


class SpatialAttention(BaseModule):
    """``x + proj_2(LKA(act(proj_1(x))))``."""

    def __init__(
        self,
        embed_dims: int,
        act_cfg: dict = dict(type="GELU"),  # noqa: B006 (never mutated)
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.proj_1 = nn.Conv2d(embed_dims, embed_dims, kernel_size=1)
        self.activation = build_activation_layer(act_cfg)
        self.spatial_gating_unit = LKA(embed_dims)
        self.proj_2 = nn.Conv2d(embed_dims, embed_dims, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj_2(self.spatial_gating_unit(self.activation(self.proj_1(x))))


class MixFFN(BaseModule):
    """1x1 conv -> 3x3 depthwise conv -> activation -> dropout -> 1x1 conv -> dropout."""

    def __init__(
        self,
        embed_dims: int,
        feedforward_channels: int,
        act_cfg: dict = dict(type="GELU"),  # noqa: B006 (never mutated)
        ffn_drop: float = 0.0,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        hidden = feedforward_channels
        self.fc1 = nn.Conv2d(embed_dims, hidden, kernel_size=1)
        self.dwconv = nn.Conv2d(hidden, hidden, kernel_size=3, padding=1, groups=hidden)
        self.act = build_activation_layer(act_cfg)
        self.fc2 = nn.Conv2d(hidden, embed_dims, kernel_size=1)
        self.drop = nn.Dropout(ffn_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.act(self.dwconv(self.fc1(x))))
        return self.drop(self.fc2(x))


class VANBlock(BaseModule):
    """``x + drop_path(ls1 * attn(norm1(x)))`` then ``x + drop_path(ls2 * mlp(norm2(x)))``
    on ``(N, C, H, W)`` maps (BatchNorms; per-channel layer scales, none when
    ``layer_scale_init_value`` is 0)."""

    def __init__(
        self,
        embed_dims: int,
        ffn_ratio: float = 4.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        act_cfg: dict = dict(type="GELU"),  # noqa: B006 (never mutated)
        norm_cfg: dict = dict(type="BN", eps=1e-5),  # noqa: B006 (never mutated)
        layer_scale_init_value: float = 1e-2,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if layer_scale_init_value > 0:
            self.layer_scale_1 = nn.Parameter(layer_scale_init_value * torch.ones(embed_dims))
            self.layer_scale_2 = nn.Parameter(layer_scale_init_value * torch.ones(embed_dims))
        else:
            self.layer_scale_1 = self.layer_scale_2 = None
        self.norm1 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.attn = SpatialAttention(embed_dims, act_cfg=act_cfg)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        self.norm2 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.mlp = MixFFN(
            embed_dims, int(embed_dims * ffn_ratio), act_cfg=act_cfg, ffn_drop=drop_rate
        )

    @staticmethod
    def _scaled(x: torch.Tensor, scale: nn.Parameter | None) -> torch.Tensor:
        return x if scale is None else scale.view(1, -1, 1, 1) * x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self._scaled(self.attn(self.norm1(x)), self.layer_scale_1))
        return x + self.drop_path(self._scaled(self.mlp(self.norm2(x)), self.layer_scale_2))


class VANPatchEmbed(BaseModule):
    """Overlapping patch embedding: ``patch_size`` conv with stride ``patch_size // 2 + 1``
    and padding ``patch_size // 2``, then a BatchNorm."""

    def __init__(
        self,
        in_channels: int,
        embed_dims: int,
        patch_size: int,
        norm_cfg: dict = dict(type="BN"),  # noqa: B006 (never mutated)
    ) -> None:
        super().__init__()
        self.projection = nn.Conv2d(
            in_channels, embed_dims, kernel_size=patch_size, stride=patch_size // 2 + 1,
            padding=patch_size // 2,
        )  # fmt: skip
        self.norm = build_norm_layer(norm_cfg, embed_dims)[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.projection(x))


@MODELS.register_module()
class VAN(BaseModule):
    """Visual Attention Network.

    Args:
        arch: a name of ``arch_zoo`` or a dict with ``embed_dims``, ``depths`` and
            ``ffn_ratios`` (one per stage).
        patch_sizes: kernel of each stage's patch embedding (ints).
        in_channels: image channels.
        drop_rate: dropout inside the feed-forwards.
        drop_path_rate: stochastic depth, growing linearly over all blocks.
        out_indices: stages whose normalised ``(N, C, H, W)`` maps are returned.
        frozen_stages: freeze stages ``0..n`` (patch embedding, blocks and norm) and keep
            them in eval mode; ``-1`` freezes nothing.
        norm_eval: keep the blocks' BatchNorms in eval mode while training.
        norm_cfg: the stages' output norms.
        block_cfgs: extra :class:`VANBlock` arguments, one dict for every block (or a
            sequence of one dict per block).
    """

    arch_zoo = {
        **dict.fromkeys(
            ["t", "tiny"],
            {"embed_dims": [32, 64, 160, 256], "depths": [3, 3, 5, 2], "ffn_ratios": [8, 8, 4, 4]},
        ),
        **dict.fromkeys(
            ["s", "small"],
            {"embed_dims": [64, 128, 320, 512], "depths": [2, 2, 4, 2], "ffn_ratios": [8, 8, 4, 4]},
        ),
        **dict.fromkeys(
            ["b", "base"],
            {"embed_dims": [64, 128, 320, 512], "depths": [3, 3, 12, 3], "ffn_ratios": [8, 8, 4, 4]},
        ),
        **dict.fromkeys(
            ["l", "large"],
            {"embed_dims": [64, 128, 320, 512], "depths": [3, 5, 27, 3], "ffn_ratios": [8, 8, 4, 4]},
        ),
    }  # fmt: skip

    def __init__(
        self,
        arch: str | dict = "tiny",
        patch_sizes: Sequence[int] = (7, 3, 3, 3),
        in_channels: int = 3,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        out_indices: int | Sequence[int] = (3,),
        frozen_stages: int = -1,
        norm_eval: bool = False,
        norm_cfg: dict = dict(type="LN"),  # noqa: B006 (never mutated)
        block_cfgs: dict | Sequence[dict] = {},  # noqa: B006 (never mutated)
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        arch = pick_arch(arch, self.arch_zoo, "VAN", ("embed_dims", "depths", "ffn_ratios"))
        self.embed_dims, self.depths = list(arch["embed_dims"]), list(arch["depths"])
        self.ffn_ratios = list(arch["ffn_ratios"])
        self.num_stages = len(self.depths)
        if not len(self.embed_dims) == len(self.ffn_ratios) == self.num_stages:
            raise ValueError(
                f"VAN arch embed_dims {self.embed_dims}, depths {self.depths} and ffn_ratios "
                f"{self.ffn_ratios} must have one entry per stage"
            )
        if len(patch_sizes) != self.num_stages or not all(isinstance(p, int) for p in patch_sizes):
            raise ValueError(
                f"VAN patch_sizes must be {self.num_stages} ints (one per stage), got {patch_sizes!r}"
            )
        self.out_indices = parse_out_indices(out_indices, self.num_stages, "VAN")
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages < self.num_stages:
            raise ValueError(
                f"VAN frozen_stages must be in -1..{self.num_stages - 1}, got {frozen_stages!r}"
            )
        self.frozen_stages, self.norm_eval = frozen_stages, norm_eval
        per_block = self._per_block_cfgs(block_cfgs, sum(self.depths))

        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, sum(self.depths))]
        block_idx, channels = 0, in_channels
        for i, (dims, depth, ratio) in enumerate(
            zip(self.embed_dims, self.depths, self.ffn_ratios)
        ):
            self.add_module(f"patch_embed{i + 1}", VANPatchEmbed(channels, dims, patch_sizes[i]))
            blocks = nn.ModuleList(
                VANBlock(
                    dims, ffn_ratio=ratio, drop_rate=drop_rate,
                    drop_path_rate=dpr[block_idx + j], **per_block[block_idx + j],
                )
                for j in range(depth)
            )  # fmt: skip
            self.add_module(f"blocks{i + 1}", blocks)
            self.add_module(f"norm{i + 1}", build_norm_layer(norm_cfg, dims)[1])
            block_idx += depth
            channels = dims
        self._freeze_stages()

    @staticmethod
    def _per_block_cfgs(block_cfgs: dict | Sequence[dict], num_blocks: int) -> list[dict]:
        if isinstance(block_cfgs, dict):
            return [dict(block_cfgs) for _ in range(num_blocks)]
        if (
            isinstance(block_cfgs, Sequence)
            and len(block_cfgs) == num_blocks
            and all(isinstance(c, dict) for c in block_cfgs)
        ):
            return [dict(c) for c in block_cfgs]
        raise TypeError(
            f"VAN block_cfgs must be a dict or {num_blocks} dicts (one per block), "
            f"got {block_cfgs!r}"
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = []
        for i in range(self.num_stages):
            x = getattr(self, f"patch_embed{i + 1}")(x)
            for block in getattr(self, f"blocks{i + 1}"):
                x = block(x)
            # the channel LayerNorm runs on tokens; the next stage takes the normed map
            n, c, h, w = x.shape
            x = getattr(self, f"norm{i + 1}")(x.flatten(2).transpose(1, 2))
            x = x.transpose(1, 2).reshape(n, c, h, w)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _freeze_stages(self) -> None:
        # frozen_stages=n freezes stages 0..n (n + 1 of them), as upstream
        for i in range(1, self.frozen_stages + 2):
            parts = [getattr(self, f"{name}{i}") for name in ("patch_embed", "blocks", "norm")]
            for part in parts:
                part.eval()
            for param in chain.from_iterable(p.parameters() for p in parts):
                param.requires_grad = False

    def train(self, mode: bool = True) -> VAN:
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self
