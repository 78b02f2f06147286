"""RIFormer backbone (`RIFormer: Keep Your Vision Backbone Effective While Removing
Token Mixer <https://arxiv.org/abs/2304.05659>`_), with MMPretrain's arguments and keys.

A PoolFormer-style MetaFormer (:mod:`vistra.models.backbones.poolformer`: the same stem,
stages, downsampling embeddings, MLPs and layer scales) whose token mixer is a per-channel
affine map, ``affine(x) - x`` (a depthwise 1x1 conv with bias). Right after a per-channel
affine norm, that mixer is itself a per-channel affine map of the normalised input, so
``switch_to_deploy()`` (or ``deploy=True``) folds ``norm1`` and the mixer into a single norm
``norm_reparam`` and the block has no token mixer left.

Keys: ``patch_embed.proj``; ``network.{0,2,4,6}.{j}`` blocks with ``norm1``,
``token_mixer.affine``, ``norm2``, ``mlp.fc{1,2}``, ``layer_scale_{1,2}`` (deploy:
``norm_reparam`` in place of ``norm1`` and ``token_mixer``); ``network.{1,3,5}.proj`` the
stride-2 embeddings; ``norm{i}`` for each index of ``out_indices``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.backbones.poolformer import Mlp, PatchEmbed, PoolFormer
from vistra.models.base import BaseModule
from vistra.models.layers import DropPath, build_norm_layer
from vistra.models.layers.reparam import deployable_blocks
from vistra.models.utils.arch import pick_arch
from vistra.registry import MODELS


class Affine(nn.Module):
    """``affine(x) - x``: a per-channel scale and shift (the block's residual adds ``x``
    back)."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.affine = nn.Conv2d(in_features, in_features, 1, groups=in_features, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.affine(x) - x


class RIFormerBlock(BaseModule):
    """``x + ls1 * mixer(norm1(x))`` (deploy: ``x + ls1 * norm_reparam(x)``), then
    ``x + ls2 * mlp(norm2(x))``, with stochastic depth on both branches."""

    def __init__(
        self,
        dim: int,
        mlp_ratio: float = 4.0,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        drop: float = 0.0,
        drop_path: float = 0.0,
        layer_scale_init_value: float = 1e-5,
        deploy: bool = False,
    ) -> None:
        super().__init__()
        self.norm_cfg = dict(type="GN", num_groups=1) if norm_cfg is None else norm_cfg
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        self.dim, self.deploy = dim, deploy
        if deploy:
            self.norm_reparam = build_norm_layer(self.norm_cfg, dim)[1]
        else:
            self.norm1 = build_norm_layer(self.norm_cfg, dim)[1]
            self.token_mixer = Affine(dim)
        self.norm2 = build_norm_layer(self.norm_cfg, dim)[1]
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_cfg=act_cfg, drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.layer_scale_1 = nn.Parameter(layer_scale_init_value * torch.ones(dim))
        self.layer_scale_2 = nn.Parameter(layer_scale_init_value * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale_1 = self.layer_scale_1[:, None, None]
        scale_2 = self.layer_scale_2[:, None, None]
        mixed = self.norm_reparam(x) if self.deploy else self.token_mixer(self.norm1(x))
        x = x + self.drop_path(scale_1 * mixed)
        return x + self.drop_path(scale_2 * self.mlp(self.norm2(x)))

    def get_equivalent_scale_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias (float64) of the norm equal to ``token_mixer(norm1(x))``:
        ``(w - 1) * (n * g + b) + c == n * g(w - 1) + (b(w - 1) + c)`` per channel."""
        weight, bias = self.norm1.weight, self.norm1.bias
        if weight is None or bias is None:
            raise ValueError(
                "RIFormerBlock: switch_to_deploy() folds the token mixer into norm1's affine "
                f"weight and bias, but {type(self.norm1).__name__} has none (affine=False)"
            )
        gain = self.token_mixer.affine.weight.reshape(-1).double() - 1.0
        shift = self.token_mixer.affine.bias.double()
        return weight.double() * gain, bias.double() * gain + shift

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Fold ``norm1`` and the affine token mixer into ``norm_reparam`` (a no-op when
        deployed)."""
        if self.deploy:
            return
        weight, bias = self.get_equivalent_scale_bias()
        like = self.norm1.weight
        norm = build_norm_layer(self.norm_cfg, self.dim)[1].to(device=like.device, dtype=like.dtype)
        norm.weight.copy_(weight.to(like.dtype))
        norm.bias.copy_(bias.to(like.dtype))
        self.norm_reparam = norm
        del self.norm1, self.token_mixer
        self.deploy = True


def basic_blocks(
    dim: int,
    index: int,
    layers: Sequence[int],
    mlp_ratio: float = 4.0,
    norm_cfg: dict | None = None,
    act_cfg: dict | None = None,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    layer_scale_init_value: float = 1e-5,
    deploy: bool = False,
) -> nn.Sequential:
    """The blocks of stage ``index``; stochastic depth grows linearly over all blocks."""
    total = sum(layers)
    blocks = []
    for block_idx in range(layers[index]):
        # as PoolFormer: divided by (total - 1), the network's last block gets the full rate
        rate = drop_path_rate * (block_idx + sum(layers[:index])) / (total - 1)
        blocks.append(
            RIFormerBlock(
                dim, mlp_ratio=mlp_ratio, norm_cfg=norm_cfg, act_cfg=act_cfg, drop=drop_rate,
                drop_path=rate, layer_scale_init_value=layer_scale_init_value, deploy=deploy,
            )
        )  # fmt: skip
    return nn.Sequential(*blocks)


@MODELS.register_module()
class RIFormer(BaseModule):
    """RIFormer: a 7x7 stride-4 stem, four stages of RIFormer blocks and stride-2
    embeddings between stages whose widths differ.

    ``arch`` is a name of ``arch_settings`` or a dict with ``layers`` and ``embed_dims``
    (optionally ``mlp_ratios`` and ``layer_scale_init_value``). ``out_indices`` index
    ``network``: 0, 2, 4, 6 are the four stages (1, 3, 5 the downsampling embeddings);
    negative ones count from 7. ``frozen_stages=n`` (MMPretrain's counting) freezes, for
    ``n >= 0``, the stem and ``network[0..n]`` (their output norms too); ``-1`` freezes
    nothing. ``deploy=True`` builds the fused model directly.
    """

    arch_settings = PoolFormer.arch_settings  # the same presets

    def __init__(
        self,
        arch: str | dict = "s12",
        in_channels: int = 3,
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
        frozen_stages: int = -1,
        init_cfg: dict | list[dict] | None = None,
        deploy: bool = False,
    ) -> None:
        super().__init__(init_cfg)
        norm_cfg = dict(type="GN", num_groups=1) if norm_cfg is None else norm_cfg
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        arch = pick_arch(arch, self.arch_settings, "RIFormer", ("layers", "embed_dims"))
        layers, embed_dims = list(arch["layers"]), list(arch["embed_dims"])
        mlp_ratios = arch.get("mlp_ratios", [4, 4, 4, 4])
        layer_scale_init_value = arch.get("layer_scale_init_value", 1e-5)

        # unlike PoolFormer's, RIFormer's stem takes in_channels
        self.patch_embed = PatchEmbed(
            patch_size=in_patch_size, stride=in_stride, padding=in_pad, in_chans=in_channels,
            embed_dim=embed_dims[0],
        )  # fmt: skip
        network: list[nn.Module] = []
        for i in range(len(layers)):
            network.append(
                basic_blocks(
                    embed_dims[i], i, layers, mlp_ratio=mlp_ratios[i], norm_cfg=norm_cfg,
                    act_cfg=act_cfg, drop_rate=drop_rate, drop_path_rate=drop_path_rate,
                    layer_scale_init_value=layer_scale_init_value, deploy=deploy,
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

        self.out_indices = PoolFormer._parse_out_indices(out_indices)
        for i_layer in self.out_indices:
            norm = build_norm_layer(norm_cfg, embed_dims[(i_layer + 1) // 2])[1]
            self.add_module(f"norm{i_layer}", norm)
        if not -1 <= frozen_stages < len(self.network):
            raise ValueError(
                f"RIFormer frozen_stages must be in -1..{len(self.network) - 1} (an index of "
                f"network, whose entries up to it freeze), got {frozen_stages}"
            )
        self.frozen_stages, self.deploy = frozen_stages, deploy
        self._freeze_stages()

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
            self.patch_embed.eval()
            for param in self.patch_embed.parameters():
                param.requires_grad = False
        # MMPretrain freezes network[0..frozen_stages], one more entry than PoolFormer
        for i in range(self.frozen_stages + 1):
            modules = [self.network[i]]
            if i in self.out_indices:
                modules.append(getattr(self, f"norm{i}"))
            for module in modules:
                module.eval()
                for param in module.parameters():
                    param.requires_grad = False

    def train(self, mode: bool = True) -> RIFormer:
        super().train(mode)
        self._freeze_stages()
        return self

    def switch_to_deploy(self) -> None:
        """Fold every block's token mixer into its norm (keys of the ``deploy=True`` model)."""
        for block in deployable_blocks(self):
            block.switch_to_deploy()
        self.deploy = True
