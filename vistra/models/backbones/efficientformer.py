"""EfficientFormer backbone (`EfficientFormer: Vision Transformers at MobileNet Speed
<https://arxiv.org/abs/2206.01191>`_), with MMPretrain's arguments and keys.

A two-conv stride-4 stem, four stages of 4D MetaFormer blocks (pooling mixer, conv MLP
with BatchNorm) on ``(B, C, H, W)`` maps, a 3x3 stride-2 conv opening each later stage,
and, at the end of the last stage, ``vit_num`` 3D blocks (multi-head attention with
LeViT's attention bias, linear MLP) on ``(B, N, C)`` tokens. The attention bias is sized
for a 7x7 last stage, so the network takes 224x224 inputs.

Keys: ``patch_embed.{0,1}.{conv,bn}``; ``network.{i}.{j}``: an optional downsampling
``{conv,bn}`` first, 4D blocks ``mlp.{fc1,fc2,norm1,norm2}``, ``ls1``/``ls2.weight``, a
parameterless flatten, 3D blocks ``norm1``, ``token_mixer.{attention_biases,
attention_bias_idxs,qkv,proj}``, ``norm2``, ``mlp.{fc1,fc2}``, ``ls1``/``ls2``; and
``norm{i}`` per output (GroupNorm with one group; LayerNorm for the tokens of the last
stage unless ``reshape_last_feat``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.backbones.poolformer import Pooling
from vistra.models.base import BaseModule
from vistra.models.layers import ConvModule, DropPath, build_activation_layer, build_norm_layer
from vistra.models.layers.levit_attention_bias import biased_attention, register_attention_bias
from vistra.models.layers.transformer import LayerScale
from vistra.models.utils.arch import pick_arch
from vistra.registry import MODELS


class AttentionWithBias(BaseModule):
    """Multi-head self-attention with LeViT's attention bias over a ``resolution`` grid;
    queries and keys are ``key_dim`` wide per head, values ``attn_ratio * key_dim``."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int = 8,
        key_dim: int = 32,
        attn_ratio: float = 4.0,
        resolution: int = 7,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.num_heads, self.key_dim = num_heads, key_dim
        self.scale = key_dim**-0.5
        self.d = int(attn_ratio * key_dim)
        self.dh = self.d * num_heads
        # per head: q, k, v side by side
        self.qkv = nn.Linear(embed_dims, self.dh + 2 * key_dim * num_heads)
        self.proj = nn.Linear(self.dh, embed_dims)
        register_attention_bias(self, num_heads, resolution)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, self.num_heads, -1).transpose(1, 2)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.d], dim=-1)
        out = biased_attention(q, k, v, self, self.scale)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, self.dh))


class Flat(nn.Module):
    """``(B, C, H, W)`` -> ``(B, H*W, C)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).transpose(1, 2)


class LinearMlp(BaseModule):
    """``fc1 -> act -> dropout -> fc2 -> dropout`` on ``(B, N, C)`` tokens."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        act_cfg: dict | None = None,
        drop: float = 0.0,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = build_activation_layer(act_cfg)
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class ConvMlp(BaseModule):
    """``norm1(fc1) -> act -> dropout -> norm2(fc2) -> dropout`` with 1x1 convs on maps."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        drop: float = 0.0,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        norm_cfg = dict(type="BN") if norm_cfg is None else norm_cfg
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Conv2d(in_features, hidden_features, 1)
        self.act = build_activation_layer(act_cfg)
        self.fc2 = nn.Conv2d(hidden_features, out_features, 1)
        self.norm1 = build_norm_layer(norm_cfg, hidden_features)[1]
        self.norm2 = build_norm_layer(norm_cfg, out_features)[1]
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.act(self.norm1(self.fc1(x))))
        return self.drop(self.norm2(self.fc2(x)))


def _layer_scales(dim: int, use: bool, data_format: str) -> tuple[nn.Module, nn.Module]:
    if not use:
        return nn.Identity(), nn.Identity()
    return LayerScale(dim, data_format=data_format), LayerScale(dim, data_format=data_format)


class Meta3D(BaseModule):
    """Token block: ``x + ls1 * attn(norm1(x))`` then ``x + ls2 * mlp(norm2(x))``."""

    def __init__(
        self,
        dim: int,
        mlp_ratio: float = 4.0,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        drop: float = 0.0,
        drop_path: float = 0.0,
        use_layer_scale: bool = True,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        norm_cfg = dict(type="LN") if norm_cfg is None else norm_cfg
        self.norm1 = build_norm_layer(norm_cfg, dim)[1]
        self.token_mixer = AttentionWithBias(dim)
        self.norm2 = build_norm_layer(norm_cfg, dim)[1]
        self.mlp = LinearMlp(dim, int(dim * mlp_ratio), act_cfg=act_cfg, drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.ls1, self.ls2 = _layer_scales(dim, use_layer_scale, "channels_last")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.ls1(self.token_mixer(self.norm1(x))))
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))


class Meta4D(BaseModule):
    """Map block: ``x + ls1 * pool(x)`` then ``x + ls2 * mlp(x)`` (the pooling mixer
    returns ``avgpool(x) - x``; no norms besides the MLP's BatchNorms)."""

    def __init__(
        self,
        dim: int,
        pool_size: int = 3,
        mlp_ratio: float = 4.0,
        act_cfg: dict | None = None,
        drop: float = 0.0,
        drop_path: float = 0.0,
        use_layer_scale: bool = True,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.token_mixer = Pooling(pool_size=pool_size)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio), act_cfg=act_cfg, drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.ls1, self.ls2 = _layer_scales(dim, use_layer_scale, "channels_first")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.ls1(self.token_mixer(x)))
        return x + self.drop_path(self.ls2(self.mlp(x)))


def _conv_bn(in_channels: int, out_channels: int, act_cfg: dict | None) -> ConvModule:
    """3x3 stride-2 conv (with a bias, which the published weights carry) and BN."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Unnecessary conv bias")
        return ConvModule(
            in_channels, out_channels, 3, stride=2, padding=1, bias=True,
            norm_cfg=dict(type="BN"), act_cfg=act_cfg,
        )  # fmt: skip


def basic_blocks(
    in_channels: int,
    out_channels: int,
    index: int,
    layers: Sequence[int],
    pool_size: int = 3,
    mlp_ratio: float = 4.0,
    act_cfg: dict | None = None,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    use_layer_scale: bool = True,
    vit_num: int = 1,
    has_downsamper: bool = False,
) -> nn.Sequential:
    """Stage ``index``: [downsampling conv], 4D blocks, [flatten, ``vit_num`` 3D blocks in
    the last stage]. ``mlp_ratio`` widens the 3D blocks' MLPs only (the 4D blocks keep 4),
    as MMPretrain builds them; stochastic depth grows linearly to the network's last block.
    """
    act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
    blocks: list[nn.Module] = []
    if has_downsamper:
        blocks.append(_conv_bn(in_channels, out_channels, act_cfg=None))
    depth, total = layers[index], sum(layers)
    last_stage = index == 3
    if last_stage and vit_num == depth:
        blocks.append(Flat())
    for block_idx in range(depth):
        dpr = drop_path_rate * (block_idx + sum(layers[:index])) / max(total - 1, 1)
        if last_stage and depth - block_idx <= vit_num:
            blocks.append(
                Meta3D(
                    out_channels, mlp_ratio=mlp_ratio, act_cfg=act_cfg, drop=drop_rate,
                    drop_path=dpr, use_layer_scale=use_layer_scale,
                )
            )  # fmt: skip
            continue
        blocks.append(
            Meta4D(
                out_channels, pool_size=pool_size, act_cfg=act_cfg, drop=drop_rate,
                drop_path=dpr, use_layer_scale=use_layer_scale,
            )
        )  # fmt: skip
        if last_stage and depth - block_idx - 1 == vit_num:
            blocks.append(Flat())
    return nn.Sequential(*blocks)


@MODELS.register_module()
class EfficientFormer(BaseModule):
    """EfficientFormer backbone.

    ``arch`` is a name of ``arch_settings`` or a dict with ``layers``, ``embed_dims``,
    ``downsamples`` and ``vit_num``. ``out_indices`` pick stages (negative ones count from
    4). The last stage's output is ``(B, C, N)`` tokens when it ends in 3D blocks, unless
    ``reshape_last_feat=True`` makes it a ``(B, C, H, W)`` map. ``frozen_stages >= 0``
    freezes the stem, and ``n`` the first ``n`` stages with their output norms.
    """

    arch_settings = {
        "l1": {
            "layers": [3, 2, 6, 4],
            "embed_dims": [48, 96, 224, 448],
            "downsamples": [False, True, True, True],
            "vit_num": 1,
        },
        "l3": {
            "layers": [4, 4, 12, 6],
            "embed_dims": [64, 128, 320, 512],
            "downsamples": [False, True, True, True],
            "vit_num": 4,
        },
        "l7": {
            "layers": [6, 6, 18, 8],
            "embed_dims": [96, 192, 384, 768],
            "downsamples": [False, True, True, True],
            "vit_num": 8,
        },
    }

    def __init__(
        self,
        arch: str | dict = "l1",
        in_channels: int = 3,
        pool_size: int = 3,
        mlp_ratios: float = 4,
        reshape_last_feat: bool = False,
        out_indices: int | Sequence[int] = -1,
        frozen_stages: int = -1,
        act_cfg: dict | None = dict(type="GELU"),  # noqa: B006 (never mutated)
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        use_layer_scale: bool = True,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.num_extra_tokens = 0  # no class or distillation token
        arch = self._parse_arch(arch)
        self.layers, self.embed_dims = list(arch["layers"]), list(arch["embed_dims"])
        self.downsamples, self.vit_num = list(arch["downsamples"]), arch["vit_num"]
        self.reshape_last_feat = reshape_last_feat
        self.patch_embed = nn.Sequential(
            _conv_bn(in_channels, self.embed_dims[0] // 2, act_cfg=dict(type="ReLU")),
            _conv_bn(self.embed_dims[0] // 2, self.embed_dims[0], act_cfg=dict(type="ReLU")),
        )
        self.network = nn.ModuleList(
            basic_blocks(
                self.embed_dims[max(i - 1, 0)], self.embed_dims[i], i, self.layers,
                pool_size=pool_size, mlp_ratio=mlp_ratios, act_cfg=act_cfg,
                drop_rate=drop_rate, drop_path_rate=drop_path_rate, vit_num=self.vit_num,
                use_layer_scale=use_layer_scale, has_downsamper=self.downsamples[i],
            )
            for i in range(len(self.layers))
        )  # fmt: skip
        self.out_indices = self._parse_out_indices(out_indices)
        for i in self.out_indices:
            if i == 3 and self.vit_num > 0 and not reshape_last_feat:
                norm = build_norm_layer(dict(type="LN"), self.embed_dims[i])[1]
            else:  # one-group GroupNorm: a channel-first LayerNorm
                norm = build_norm_layer(dict(type="GN", num_groups=1), self.embed_dims[i])[1]
            self.add_module(f"norm{i}", norm)
        self.frozen_stages = frozen_stages
        self._freeze_stages()

    @classmethod
    def _parse_arch(cls, arch: str | dict) -> dict:
        keys = ("layers", "embed_dims", "downsamples", "vit_num")
        arch = pick_arch(arch, cls.arch_settings, "EfficientFormer", keys)
        lengths = {len(arch[k]) for k in keys[:3] if isinstance(arch[k], Sequence)}
        if len(lengths) != 1 or not all(isinstance(arch[k], Sequence) for k in keys[:3]):
            raise ValueError(
                "arch 'layers', 'embed_dims' and 'downsamples' must be sequences of the same "
                f"length, got {[arch[k] for k in keys[:3]]}"
            )
        if not isinstance(arch["vit_num"], int) or not 0 <= arch["vit_num"] <= arch["layers"][-1]:
            raise ValueError(
                f"arch 'vit_num' must be an int in [0, {arch['layers'][-1]}] (the blocks of the "
                f"last stage), got {arch['vit_num']!r}"
            )
        return arch

    def _parse_out_indices(self, out_indices: int | Sequence[int]) -> list[int]:
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        if not isinstance(out_indices, Sequence):
            raise TypeError(f"out_indices must be an int or a sequence, got {out_indices!r}")
        num = len(self.network)
        parsed = []
        for index in out_indices:
            resolved = 4 + index if index < 0 else index  # MMPretrain counts from 4 stages
            if not 0 <= resolved < num:
                raise ValueError(f"out_indices: {index} is out of range for {num} stages")
            parsed.append(resolved)
        return parsed

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.patch_embed(x)
        outs = []
        last = len(self.network) - 1
        for idx, stage in enumerate(self.network):
            if idx == last:  # the map size, for reshaping the tokens back
                height, width = x.shape[-2:]
                if self.downsamples[idx]:
                    height, width = height // 2, width // 2
            x = stage(x)
            if idx not in self.out_indices:
                continue
            norm = getattr(self, f"norm{idx}")
            if idx == last and x.dim() == 3:
                if self.reshape_last_feat:
                    out = norm(x.transpose(1, 2).reshape(x.shape[0], -1, height, width))
                else:
                    out = norm(x).transpose(1, 2)
            else:
                out = norm(x)
            outs.append(out.contiguous())
        return tuple(outs)

    def _freeze_stages(self) -> None:
        if self.frozen_stages >= 0:
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

    def train(self, mode: bool = True) -> EfficientFormer:
        super().train(mode)
        self._freeze_stages()
        return self
