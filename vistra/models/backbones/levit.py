"""LeViT backbone (`LeViT: a Vision Transformer in ConvNet's Clothing for Faster Inference
<https://arxiv.org/abs/2104.01136>`_), with MMPretrain's arguments and keys.

A stem of four 3x3 stride-2 conv + BN layers (16x down), then three stages of residual
attention and MLP blocks on ``(B, N, C)`` tokens; every linear layer is followed by a
BatchNorm, attention carries LeViT's per-offset bias instead of a position embedding, and
the later stages open with a shrinking attention (queries from every other position) and
an MLP. The biases are sized for ``img_size``, so the network takes that input size only.

``switch_to_deploy()`` (or ``deploy=True``) folds each BatchNorm into the conv or linear
layer before it: the same eval outputs, with plain ``Conv2d``/``Linear`` layers.

Keys: ``patch_embed.patch_embed.{0,2,4,6}.{conv,bn}``; ``stages.{i}.{j}``: residual
attention ``block.{attention_biases,attention_bias_idxs}``, ``block.qkv.{linear,bn}``,
``block.proj.1.{linear,bn}``; residual MLP ``block.linear1.{linear,bn}``,
``block.linear2.{linear,bn}``; shrinking attention (``stages.{1,2}.0``)
``attention_biases``, ``attention_bias_idxs``, ``kv.{linear,bn}``, ``q.1.{linear,bn}``,
``proj.1.{linear,bn}``. Deployed, each ``{conv,linear}`` + ``bn`` pair is one layer with
a bias (``patch_embed.patch_embed.0.{weight,bias}``, ``block.qkv.{weight,bias}``, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers import DropPath, build_activation_layer, build_norm_layer
from vistra.models.layers.levit_attention_bias import biased_attention, register_attention_bias
from vistra.models.utils.arch import pick_arch
from vistra.registry import MODELS


def _bn_scale_shift(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BN as ``x * scale + shift``."""
    scale = bn.weight / (bn.running_var + bn.eps).sqrt()
    return scale, bn.bias - bn.running_mean * scale


class ConvolutionBatchNorm(BaseModule):
    """A bias-free conv and its BatchNorm (keys ``conv``, ``bn``)."""

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int = 3,
        stride: int = 2,
        pad: int = 1,
        dilation: int = 1,
        groups: int = 1,
        norm_cfg: dict | None = None,
    ) -> None:
        super().__init__()
        norm_cfg = dict(type="BN") if norm_cfg is None else norm_cfg
        self.conv = nn.Conv2d(
            in_channel, out_channel, kernel_size=kernel_size, stride=stride, padding=pad,
            dilation=dilation, groups=groups, bias=False,
        )  # fmt: skip
        self.bn = build_norm_layer(norm_cfg, out_channel)[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        """The conv with the BN folded in."""
        conv = self.conv
        scale, shift = _bn_scale_shift(self.bn)
        fused = nn.Conv2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
            padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True,
        ).to(conv.weight)  # fmt: skip
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        fused.bias.copy_(shift)
        return fused


class LinearBatchNorm(BaseModule):
    """A bias-free linear layer and a BatchNorm1d over all its ``(B * N)`` output tokens
    (keys ``linear``, ``bn``)."""

    def __init__(self, in_feature: int, out_feature: int, norm_cfg: dict | None = None) -> None:
        super().__init__()
        norm_cfg = dict(type="BN1d") if norm_cfg is None else norm_cfg
        self.linear = nn.Linear(in_feature, out_feature, bias=False)
        self.bn = build_norm_layer(norm_cfg, out_feature)[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)
        return self.bn(x.flatten(0, 1)).reshape_as(x)

    @torch.no_grad()
    def fuse(self) -> nn.Linear:
        """The linear layer with the BN folded in."""
        scale, shift = _bn_scale_shift(self.bn)
        weight = self.linear.weight
        fused = nn.Linear(weight.shape[1], weight.shape[0]).to(weight)
        fused.weight.copy_(weight * scale[:, None])
        fused.bias.copy_(shift)
        return fused


def fuse_parameters(module: nn.Module) -> None:
    """Replace every descendant that has ``fuse()`` by what it returns."""
    for name, child in module.named_children():
        if hasattr(child, "fuse"):
            setattr(module, name, child.fuse())
        else:
            fuse_parameters(child)


class HybridBackbone(BaseModule):
    """Four conv + BN layers (3x3, stride 2) from 3 channels to ``embed_dim`` (widths
    ``embed_dim / 8, / 4, / 2, / 1``), with the activation between them."""

    def __init__(
        self,
        embed_dim: int,
        kernel_size: int = 3,
        stride: int = 2,
        pad: int = 1,
        dilation: int = 1,
        groups: int = 1,
        act_cfg: dict | None = None,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        act_cfg = dict(type="HSwish") if act_cfg is None else act_cfg
        norm_cfg = dict(type="BN") if norm_cfg is None else norm_cfg
        if conv_cfg is not None:
            raise ValueError(f"HybridBackbone builds plain convs only, got conv_cfg={conv_cfg!r}")
        self.conv_cfg, self.norm_cfg = conv_cfg, norm_cfg
        self.input_channels = [3, embed_dim // 8, embed_dim // 4, embed_dim // 2]
        self.output_channels = [embed_dim // 8, embed_dim // 4, embed_dim // 2, embed_dim]
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(self.input_channels, self.output_channels)):
            if i:
                layers.append(build_activation_layer(act_cfg))
            layers.append(
                ConvolutionBatchNorm(
                    cin, cout, kernel_size=kernel_size, stride=stride, pad=pad,
                    dilation=dilation, groups=groups, norm_cfg=norm_cfg,
                )
            )  # fmt: skip
        self.patch_embed = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.patch_embed(x)


class Residual(BaseModule):
    """``x + drop_path(block(x))``."""

    def __init__(self, block: nn.Module, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self.block = block
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.block(x))


class Attention(BaseModule):
    """Multi-head attention with LeViT's bias over a ``resolution`` x ``resolution`` grid:
    ``key_dim``-wide queries and keys, ``attn_ratio * key_dim``-wide values per head, and an
    activation before the output projection."""

    def __init__(
        self,
        dim: int,
        key_dim: int,
        num_heads: int = 8,
        attn_ratio: float = 4,
        act_cfg: dict | None = None,
        resolution: int = 14,
    ) -> None:
        super().__init__()
        act_cfg = dict(type="HSwish") if act_cfg is None else act_cfg
        self.num_heads, self.key_dim, self.attn_ratio = num_heads, key_dim, attn_ratio
        self.scale = key_dim**-0.5
        self.nh_kd = key_dim * num_heads
        self.d = int(attn_ratio * key_dim)
        self.dh = self.d * num_heads
        self.qkv = LinearBatchNorm(dim, self.dh + 2 * self.nh_kd)  # per head: q, k, v
        self.proj = nn.Sequential(build_activation_layer(act_cfg), LinearBatchNorm(self.dh, dim))
        register_attention_bias(self, num_heads, resolution)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        qkv = self.qkv(x).view(batch, tokens, self.num_heads, -1).transpose(1, 2)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.d], dim=-1)
        out = biased_attention(q, k, v, self, self.scale)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, self.dh))


class MLP(BaseModule):
    """``linear2(act(linear1(x)))``, ``mlp_ratio`` times wider inside."""

    def __init__(self, embed_dim: int, mlp_ratio: int, act_cfg: dict | None = None) -> None:
        super().__init__()
        act_cfg = dict(type="HSwish") if act_cfg is None else act_cfg
        hidden = embed_dim * mlp_ratio
        self.linear1 = LinearBatchNorm(embed_dim, hidden)
        self.activation = build_activation_layer(act_cfg)
        self.linear2 = LinearBatchNorm(hidden, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.activation(self.linear1(x)))


class Subsample(nn.Module):
    """Every ``stride``-th token in each direction of a square ``resolution`` grid."""

    def __init__(self, stride: int, resolution: int) -> None:
        super().__init__()
        self.stride, self.resolution = stride, resolution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, channels = x.shape
        x = x.view(batch, self.resolution, self.resolution, channels)
        return x[:, :: self.stride, :: self.stride].reshape(batch, -1, channels)


class AttentionSubsample(BaseModule):
    """Shrinking attention: queries from every ``stride``-th position, keys and values from
    all of them, so the grid shrinks to ``(resolution - 1) // stride + 1`` a side and the
    width changes from ``in_dim`` to ``out_dim``."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        key_dim: int,
        num_heads: int = 8,
        attn_ratio: float = 2,
        act_cfg: dict | None = None,
        stride: int = 2,
        resolution: int = 14,
    ) -> None:
        super().__init__()
        act_cfg = dict(type="HSwish") if act_cfg is None else act_cfg
        self.num_heads, self.key_dim, self.attn_ratio = num_heads, key_dim, attn_ratio
        self.scale = key_dim**-0.5
        self.nh_kd = key_dim * num_heads
        self.d = int(attn_ratio * key_dim)
        self.dh = self.d * num_heads
        self.stride, self.resolution = stride, resolution
        self.sub_resolution = (resolution - 1) // stride + 1
        self.kv = LinearBatchNorm(in_dim, self.dh + self.nh_kd)  # per head: k, v
        self.q = nn.Sequential(Subsample(stride, resolution), LinearBatchNorm(in_dim, self.nh_kd))
        self.proj = nn.Sequential(
            build_activation_layer(act_cfg), LinearBatchNorm(self.dh, out_dim)
        )
        register_attention_bias(self, num_heads, resolution, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        kv = self.kv(x).view(batch, tokens, self.num_heads, -1).transpose(1, 2)
        k, v = kv.split([self.key_dim, self.d], dim=-1)
        q = self.q(x).view(batch, -1, self.num_heads, self.key_dim).transpose(1, 2)
        out = biased_attention(q, k, v, self, self.scale)
        return self.proj(out.transpose(1, 2).reshape(batch, -1, self.dh))


@MODELS.register_module()
class LeViT(BaseModule):
    """LeViT backbone.

    ``arch`` is a name of ``arch_zoo`` or a dict with ``embed_dims``, ``key_dims``,
    ``num_heads`` and ``depths`` (one entry per stage). ``out_indices`` pick stages, each
    returned as a ``(B, C, h, w)`` map. ``drop_path_rate`` is the same for every residual
    block, as MMPretrain's. ``hybrid_backbone`` builds the stem from the first width.
    """

    arch_zoo = {
        "128s": {
            "embed_dims": [128, 256, 384],
            "num_heads": [4, 6, 8],
            "depths": [2, 3, 4],
            "key_dims": [16, 16, 16],
        },
        "128": {
            "embed_dims": [128, 256, 384],
            "num_heads": [4, 8, 12],
            "depths": [4, 4, 4],
            "key_dims": [16, 16, 16],
        },
        "192": {
            "embed_dims": [192, 288, 384],
            "num_heads": [3, 5, 6],
            "depths": [4, 4, 4],
            "key_dims": [32, 32, 32],
        },
        "256": {
            "embed_dims": [256, 384, 512],
            "num_heads": [4, 6, 8],
            "depths": [4, 4, 4],
            "key_dims": [32, 32, 32],
        },
        "384": {
            "embed_dims": [384, 512, 768],
            "num_heads": [6, 9, 12],
            "depths": [4, 4, 4],
            "key_dims": [32, 32, 32],
        },
    }

    def __init__(
        self,
        arch: str | dict,
        img_size: int = 224,
        patch_size: int = 16,
        attn_ratio: float = 2,
        mlp_ratio: int = 2,
        act_cfg: dict | None = dict(type="HSwish"),  # noqa: B006 (never mutated)
        hybrid_backbone: Callable[[int], nn.Module] = HybridBackbone,
        out_indices: int | Sequence[int] = -1,
        deploy: bool = False,
        drop_path_rate: float = 0,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.arch = self._parse_arch(arch)
        self.embed_dims, self.num_heads = self.arch["embed_dims"], self.arch["num_heads"]
        self.key_dims, self.depths = self.arch["key_dims"], self.arch["depths"]
        self.num_stages = len(self.embed_dims)
        self.drop_path_rate = drop_path_rate
        if not isinstance(img_size, int) or not isinstance(patch_size, int):
            raise TypeError(
                f"img_size and patch_size must be ints (square grids), got {img_size!r}, "
                f"{patch_size!r}"
            )
        self.patch_embed = hybrid_backbone(self.embed_dims[0])
        self.resolutions: list[int] = []
        resolution = img_size // patch_size
        self.stages = nn.ModuleList()
        for i, (dims, key_dims, depth, heads) in enumerate(
            zip(self.embed_dims, self.key_dims, self.depths, self.num_heads)
        ):
            blocks: list[nn.Module] = []
            if i > 0:
                previous = self.embed_dims[i - 1]
                shrink = AttentionSubsample(
                    in_dim=previous, out_dim=dims, key_dim=key_dims,
                    num_heads=previous // key_dims, attn_ratio=4, act_cfg=act_cfg, stride=2,
                    resolution=resolution,
                )  # fmt: skip
                blocks.append(shrink)
                resolution = shrink.sub_resolution
                if mlp_ratio > 0:
                    blocks.append(Residual(MLP(dims, mlp_ratio, act_cfg), drop_path_rate))
            self.resolutions.append(resolution)
            for _ in range(depth):
                attention = Attention(
                    dims, key_dims, heads, attn_ratio=attn_ratio, act_cfg=act_cfg,
                    resolution=resolution,
                )  # fmt: skip
                blocks.append(Residual(attention, drop_path_rate))
                if mlp_ratio > 0:
                    blocks.append(Residual(MLP(dims, mlp_ratio, act_cfg), drop_path_rate))
            self.stages.append(nn.Sequential(*blocks))
        self.out_indices = self._parse_out_indices(out_indices)
        self.deploy = False
        if deploy:
            self.switch_to_deploy()

    @classmethod
    def _parse_arch(cls, arch: str | dict) -> dict:
        if isinstance(arch, str):
            arch = arch.lower()
        elif not isinstance(arch, dict):
            raise TypeError(f"arch must be a str or a dict, got {type(arch).__name__}")
        keys = ("embed_dims", "key_dims", "num_heads", "depths")
        arch = pick_arch(arch, cls.arch_zoo, "LeViT", keys)
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
        if not isinstance(out_indices, (list, tuple)):
            raise TypeError(
                f"out_indices must be an int, a list or a tuple, got {type(out_indices).__name__}"
            )
        parsed = []
        for index in out_indices:
            resolved = self.num_stages + index if index < 0 else index
            if not 0 <= resolved < self.num_stages:
                raise ValueError(
                    f"out_indices: {index} is out of range for {self.num_stages} stages"
                )
            parsed.append(resolved)
        return parsed

    def switch_to_deploy(self) -> None:
        """Fold every BatchNorm into the layer before it (once)."""
        if self.deploy:
            return
        fuse_parameters(self)
        self.deploy = True

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, C, H, W) -> (B, N, C)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                side = self.resolutions[i]
                out = x.reshape(x.shape[0], side, side, x.shape[-1]).permute(0, 3, 1, 2)
                outs.append(out.contiguous())
        return tuple(outs)
