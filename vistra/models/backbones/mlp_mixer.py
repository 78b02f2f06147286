"""MLP-Mixer backbone (`MLP-Mixer: An all-MLP Architecture for Vision
<https://arxiv.org/abs/2105.01601>`_), with MMPretrain's arguments and keys.

Layout: a patch embedding (one strided conv), ``num_layers`` mixer blocks (a token-mixing
MLP across the patches of each channel, then a channel-mixing MLP across the channels of
each patch, both pre-norm residuals), and a final norm. The token MLP's width is the
number of patches, so the network takes one input size (``img_size``).

Keys: ``patch_embed.projection``, ``layers.{i}.ln1`` / ``token_mix.layers.0.0`` /
``token_mix.layers.1`` / ``ln2`` / ``channel_mix.layers.0.0`` / ``channel_mix.layers.1``,
and ``ln1`` (the final norm).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers.norm import build_norm_layer
from vistra.models.layers.pos_embed import to_2tuple
from vistra.models.layers.transformer import FFN, PatchEmbed
from vistra.models.utils.arch import pick_arch
from vistra.registry import MODELS


def _arch(embed_dims: int, num_layers: int, tokens_mlp_dims: int, channels_mlp_dims: int) -> dict:
    return dict(
        embed_dims=embed_dims,
        num_layers=num_layers,
        tokens_mlp_dims=tokens_mlp_dims,
        channels_mlp_dims=channels_mlp_dims,
    )


class MixerBlock(BaseModule):
    """``x + token_mix(ln1(x)^T)^T`` then ``x + channel_mix(ln2(x))``; both MLPs carry
    stochastic depth on their branch."""

    def __init__(
        self,
        num_tokens: int,
        embed_dims: int,
        tokens_mlp_dims: int,
        channels_mlp_dims: int,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        num_fcs: int = 2,
        act_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        norm_cfg = dict(type="LN") if norm_cfg is None else norm_cfg
        drop_path = dict(type="DropPath", drop_prob=float(drop_path_rate))
        self.norm1_name, norm1 = build_norm_layer(norm_cfg, embed_dims, postfix=1)
        self.add_module(self.norm1_name, norm1)
        self.token_mix = FFN(
            embed_dims=num_tokens, feedforward_channels=tokens_mlp_dims, num_fcs=num_fcs,
            ffn_drop=drop_rate, dropout_layer=drop_path, act_cfg=act_cfg, add_identity=False,
        )  # fmt: skip
        self.norm2_name, norm2 = build_norm_layer(norm_cfg, embed_dims, postfix=2)
        self.add_module(self.norm2_name, norm2)
        self.channel_mix = FFN(
            embed_dims=embed_dims, feedforward_channels=channels_mlp_dims, num_fcs=num_fcs,
            ffn_drop=drop_rate, dropout_layer=drop_path, act_cfg=act_cfg,
        )  # fmt: skip

    @property
    def norm1(self) -> nn.Module:
        return getattr(self, self.norm1_name)

    @property
    def norm2(self) -> nn.Module:
        return getattr(self, self.norm2_name)

    def init_weights(self) -> None:
        if self.is_init:
            return
        super().init_weights()
        # the official init of the MLPs: Xavier weights, near-zero biases
        for mlp in (self.token_mix, self.channel_mix):
            for m in mlp.modules():
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.normal_(m.bias, std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.token_mix(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return self.channel_mix(self.norm2(x), identity=x)


@MODELS.register_module()
class MlpMixer(BaseModule):
    """MLP-Mixer: returns, for each ``out_indices`` layer, the tokens as ``(B, C, L)``
    (the last one after the final norm); a ``GlobalAveragePooling(dim=1)`` neck averages
    them for classification.

    ``arch`` is a name of ``arch_zoo`` or a dict with ``embed_dims``, ``num_layers``,
    ``tokens_mlp_dims`` and ``channels_mlp_dims``. ``patch_cfg`` overrides the patch
    embedding's arguments, ``layer_cfgs`` (one dict, or one per layer) the blocks'.
    """

    arch_zoo = {
        **dict.fromkeys(["s", "small"], _arch(512, 8, 256, 2048)),
        **dict.fromkeys(["b", "base"], _arch(768, 12, 384, 3072)),
        **dict.fromkeys(["l", "large"], _arch(1024, 24, 512, 4096)),
    }

    def __init__(
        self,
        arch: str | dict = "base",
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 16,
        out_indices: int | Sequence[int] = -1,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        patch_cfg: dict | None = None,
        layer_cfgs: dict | Sequence[dict] | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        norm_cfg = dict(type="LN") if norm_cfg is None else norm_cfg
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        key = arch.lower() if isinstance(arch, str) else arch
        self.arch_settings = pick_arch(key, self.arch_zoo, "MlpMixer", _arch(0, 0, 0, 0))
        self.embed_dims = self.arch_settings["embed_dims"]
        self.num_layers = self.arch_settings["num_layers"]
        self.tokens_mlp_dims = self.arch_settings["tokens_mlp_dims"]
        self.channels_mlp_dims = self.arch_settings["channels_mlp_dims"]
        self.img_size = to_2tuple(img_size)

        embed_cfg = dict(
            input_size=img_size, embed_dims=self.embed_dims, conv_type="Conv2d",
            kernel_size=patch_size, stride=patch_size,
        )  # fmt: skip
        embed_cfg.update(patch_cfg or {})
        self.patch_embed = PatchEmbed(**embed_cfg)
        self.patch_resolution = self.patch_embed.init_out_size
        num_patches = self.patch_resolution[0] * self.patch_resolution[1]
        self.out_indices = self._parse_out_indices(out_indices)

        if layer_cfgs is None or isinstance(layer_cfgs, dict):
            layer_cfgs = [dict(layer_cfgs or {}) for _ in range(self.num_layers)]
        elif len(layer_cfgs) != self.num_layers:
            raise ValueError(
                f"layer_cfgs has {len(layer_cfgs)} entries but the arch has {self.num_layers} layers"
            )
        self.layers = nn.ModuleList()
        for layer_cfg in layer_cfgs:
            args = dict(
                num_tokens=num_patches, embed_dims=self.embed_dims,
                tokens_mlp_dims=self.tokens_mlp_dims, channels_mlp_dims=self.channels_mlp_dims,
                drop_rate=drop_rate, drop_path_rate=drop_path_rate, act_cfg=act_cfg,
                norm_cfg=norm_cfg,
            )  # fmt: skip
            args.update(layer_cfg)
            self.layers.append(MixerBlock(**args))
        self.norm1_name, norm1 = build_norm_layer(norm_cfg, self.embed_dims, postfix=1)
        self.add_module(self.norm1_name, norm1)

    def _parse_out_indices(self, out_indices: int | Sequence[int]) -> list[int]:
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        if not isinstance(out_indices, Sequence) or isinstance(out_indices, str):
            raise TypeError(f"out_indices must be an int or a sequence, got {out_indices!r}")
        parsed = []
        for index in out_indices:
            resolved = self.num_layers + index if index < 0 else index
            if not 0 <= resolved < self.num_layers:
                raise ValueError(
                    f"out_indices entry {index} is out of range for {self.num_layers} layers"
                )
            parsed.append(resolved)
        return parsed

    @property
    def norm1(self) -> nn.Module:
        return getattr(self, self.norm1_name)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if tuple(x.shape[2:]) != self.img_size:
            raise ValueError(
                f"MlpMixer takes inputs of its img_size {self.img_size} (the token MLPs are "
                f"as wide as the patch count), got {tuple(x.shape[2:])}"
            )
        x, _ = self.patch_embed(x)
        outs = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i == len(self.layers) - 1:
                x = self.norm1(x)
            if i in self.out_indices:
                outs.append(x.transpose(1, 2))
        return tuple(outs)
