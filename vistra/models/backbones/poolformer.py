"""PoolFormer backbone (`MetaFormer is Actually What You Need for Vision
<https://arxiv.org/abs/2111.11418>`_), with MMPretrain's arguments and keys.

MMSegmentation's configs name it ``mmpretrain.PoolFormer`` (the registry resolves the
prefix to this plain entry).

Keys: ``patch_embed.proj`` (the stem conv), ``network.{i}`` alternating stages and
downsampling embeddings (``network.{0,2,4,6}.{j}`` blocks with ``norm1``, ``norm2``,
``mlp.fc1``, ``mlp.fc2``, ``layer_scale_1``, ``layer_scale_2``; ``network.{1,3,5}.proj``
the stride-2 convs), and ``norm{i}`` for each index of ``out_indices``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers import DropPath, build_activation_layer, build_norm_layer
from vistra.models.utils.arch import pick_arch
from vistra.registry import MODELS


class PatchEmbed(nn.Module):
    """One strided conv (``proj``) from ``in_chans`` to ``embed_dim`` channels."""

    def __init__(
        self,
        patch_size: int = 16,
        stride: int = 16,
        padding: int = 0,
        in_chans: int = 3,
        embed_dim: int = 768,
        norm_layer: type[nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.proj = nn.Conv2d(
            in_chans, embed_dim, kernel_size=patch_size, stride=stride, padding=padding
        )
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


class Pooling(nn.Module):
    """The token mixer: ``avgpool(x) - x`` (the block adds ``x`` back in its residual)."""

    def __init__(self, pool_size: int = 3) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(
            pool_size, stride=1, padding=pool_size // 2, count_include_pad=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x) - x


class Mlp(nn.Module):
    """1x1 conv -> activation -> dropout -> 1x1 conv -> dropout on ``(N, C, H, W)`` maps."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        act_cfg: dict | None = None,
        drop: float = 0.0,
    ) -> None:
        super().__init__()
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Conv2d(in_features, hidden_features, 1)
        self.act = build_activation_layer(act_cfg)
        self.fc2 = nn.Conv2d(hidden_features, out_features, 1)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.act(self.fc1(x)))
        return self.drop(self.fc2(x))


class PoolFormerBlock(BaseModule):
    """``x + ls1 * pool(norm1(x))`` then ``x + ls2 * mlp(norm2(x))``, with stochastic depth
    on both branches."""

    def __init__(
        self,
        dim: int,
        pool_size: int = 3,
        mlp_ratio: float = 4.0,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        drop: float = 0.0,
        drop_path: float = 0.0,
        layer_scale_init_value: float = 1e-5,
    ) -> None:
        super().__init__()
        norm_cfg = dict(type="GN", num_groups=1) if norm_cfg is None else norm_cfg
        self.norm1 = build_norm_layer(norm_cfg, dim)[1]
        self.token_mixer = Pooling(pool_size=pool_size)
        self.norm2 = build_norm_layer(norm_cfg, dim)[1]
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_cfg=act_cfg, drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.layer_scale_1 = nn.Parameter(layer_scale_init_value * torch.ones(dim))
        self.layer_scale_2 = nn.Parameter(layer_scale_init_value * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale_1 = self.layer_scale_1[:, None, None]
        scale_2 = self.layer_scale_2[:, None, None]
        x = x + self.drop_path(scale_1 * self.token_mixer(self.norm1(x)))
        return x + self.drop_path(scale_2 * self.mlp(self.norm2(x)))


def basic_blocks(
    dim: int,
    index: int,
    layers: Sequence[int],
    pool_size: int = 3,
    mlp_ratio: float = 4.0,
    norm_cfg: dict | None = None,
    act_cfg: dict | None = None,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    layer_scale_init_value: float = 1e-5,
) -> nn.Sequential:
    """The blocks of stage ``index``; stochastic depth grows linearly over all blocks."""
    total = sum(layers)
    blocks = []
    for block_idx in range(layers[index]):
        # MMPretrain divides by (total - 1): the last block of the network gets the full rate
        block_dpr = drop_path_rate * (block_idx + sum(layers[:index])) / (total - 1)
        blocks.append(
            PoolFormerBlock(
                dim,
                pool_size=pool_size,
                mlp_ratio=mlp_ratio,
                norm_cfg=norm_cfg,
                act_cfg=act_cfg,
                drop=drop_rate,
                drop_path=block_dpr,
                layer_scale_init_value=layer_scale_init_value,
            )
        )
    return nn.Sequential(*blocks)


@MODELS.register_module()
class PoolFormer(BaseModule):
    """PoolFormer: a 7x7 stride-4 stem, four stages of pooling blocks and stride-2
    embeddings between stages whose widths differ.

    ``arch`` is a name of ``arch_settings`` or a dict with ``layers`` and ``embed_dims``
    (optionally ``mlp_ratios`` and ``layer_scale_init_value``). ``out_indices`` index
    ``network``: 0, 2, 4, 6 are the four stages (1, 3, 5 the downsampling embeddings);
    negative ones count from 7. ``frozen_stages=n`` freezes the stem (always, for any
    ``n >= 0``, as MMPretrain does) and the first ``n`` entries of ``network``.
    """

    arch_settings = {
        "s12": {
            "layers": [2, 2, 6, 2],
            "embed_dims": [64, 128, 320, 512],
            "mlp_ratios": [4, 4, 4, 4],
            "layer_scale_init_value": 1e-5,
        },
        "s24": {
            "layers": [4, 4, 12, 4],
            "embed_dims": [64, 128, 320, 512],
            "mlp_ratios": [4, 4, 4, 4],
            "layer_scale_init_value": 1e-5,
        },
        "s36": {
            "layers": [6, 6, 18, 6],
            "embed_dims": [64, 128, 320, 512],
            "mlp_ratios": [4, 4, 4, 4],
            "layer_scale_init_value": 1e-6,
        },
        "m36": {
            "layers": [6, 6, 18, 6],
            "embed_dims": [96, 192, 384, 768],
            "mlp_ratios": [4, 4, 4, 4],
            "layer_scale_init_value": 1e-6,
        },
        "m48": {
            "layers": [8, 8, 24, 8],
            "embed_dims": [96, 192, 384, 768],
            "mlp_ratios": [4, 4, 4, 4],
            "layer_scale_init_value": 1e-6,
        },
    }

    def __init__(
        self,
        arch: str | dict = "s12",
        pool_size: int = 3,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        in_patch_size: int = 7,
        in_stride: int = 4,
        in_pad: int = 2,
        down_patch_size: int = 3,
        down_stride: int = 2,
        down_pad: int = 1,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        out_indices: int | Sequence[int] = -1,
        frozen_stages: int = 0,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        norm_cfg = dict(type="GN", num_groups=1) if norm_cfg is None else norm_cfg
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        arch = self._parse_arch(arch)
        layers, embed_dims = list(arch["layers"]), list(arch["embed_dims"])
        mlp_ratios = arch.get("mlp_ratios", [4, 4, 4, 4])
        layer_scale_init_value = arch.get("layer_scale_init_value", 1e-5)

        # the stem takes 3 channels whatever the input, as MMPretrain's
        self.patch_embed = PatchEmbed(
            patch_size=in_patch_size, stride=in_stride, padding=in_pad, in_chans=3,
            embed_dim=embed_dims[0],
        )  # fmt: skip
        network: list[nn.Module] = []
        for i in range(len(layers)):
            network.append(
                basic_blocks(
                    embed_dims[i], i, layers, pool_size=pool_size, mlp_ratio=mlp_ratios[i],
                    norm_cfg=norm_cfg, act_cfg=act_cfg, drop_rate=drop_rate,
                    drop_path_rate=drop_path_rate, layer_scale_init_value=layer_scale_init_value,
                )
            )  # fmt: skip
            if i == len(layers) - 1:
                break
            if embed_dims[i] != embed_dims[i + 1]:
                network.append(
                    PatchEmbed(
                        patch_size=down_patch_size, stride=down_stride, padding=down_pad,
                        in_chans=embed_dims[i], embed_dim=embed_dims[i + 1],
                    )
                )  # fmt: skip
        self.network = nn.ModuleList(network)

        self.out_indices = self._parse_out_indices(out_indices)
        for i_layer in self.out_indices:
            norm = build_norm_layer(norm_cfg, embed_dims[(i_layer + 1) // 2])[1]
            self.add_module(f"norm{i_layer}", norm)
        self.frozen_stages = frozen_stages
        self._freeze_stages()

    @classmethod
    def _parse_arch(cls, arch: str | dict) -> dict:
        return pick_arch(arch, cls.arch_settings, "PoolFormer", ("layers", "embed_dims"))

    @staticmethod
    def _parse_out_indices(out_indices: int | Sequence[int]) -> list[int]:
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        if not isinstance(out_indices, Sequence):
            raise TypeError(f"out_indices must be an int or a sequence, got {out_indices!r}")
        parsed = []
        for index in out_indices:
            resolved = 7 + index if index < 0 else index  # 7 entries in network
            if resolved < 0:
                raise ValueError(f"out_indices: invalid index {index}")
            parsed.append(resolved)
        return parsed

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.patch_embed(x)
        outs = []
        for idx, block in enumerate(self.network):
            x = block(x)
            if idx in self.out_indices:
                outs.append(getattr(self, f"norm{idx}")(x))
        return tuple(outs)

    def _freeze_stages(self) -> None:
        if self.frozen_stages >= 0:
            # MMPretrain freezes the stem even at the default frozen_stages=0
            self.patch_embed.eval()
            for param in self.patch_embed.parameters():
                param.requires_grad = False
        for i in range(self.frozen_stages):
            modules = [self.network[i]]
            if i in self.out_indices:
                modules.append(getattr(self, f"norm{i}"))
            for module in modules:
                module.eval()
                for param in module.parameters():
                    param.requires_grad = False

    def train(self, mode: bool = True) -> PoolFormer:
        super().train(mode)
        self._freeze_stages()
        return self
