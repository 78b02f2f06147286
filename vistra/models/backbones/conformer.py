"""Conformer backbone (`Conformer: Local Features Coupling Global Representations for Visual
Recognition <https://arxiv.org/abs/2105.03889>`_), with MMPretrain's arguments and keys.

Model-family file, in the order: conv block, feature-coupling units, fused block, backbone.

Layout: a ResNet stem (7x7 conv, BN, ReLU, max-pool) feeds two branches that run side by
side: a CNN branch of bottleneck blocks (three stages of ``depths // 3`` blocks, widths
``base_channels * channel_ratio * {1, 2, 4}``) and a ViT branch (a strided patch conv,
then pre-norm encoder layers with a class token). In each fused block the FCU-down unit
pools the CNN block's middle feature into tokens that are added to the transformer input,
and the FCU-up unit turns the transformer output back into a map that is added inside the
CNN fusion block.

Keys: ``cls_token``, ``conv1``/``bn1`` (stem), ``conv_1`` (the first bottleneck,
``conv{1,2,3}``/``bn{1,2,3}``/``residual_conv``/``residual_bn``), ``trans_patch_conv``,
``trans_1`` (an encoder layer: ``ln1``, ``attn.qkv``, ``attn.proj``, ``ln2``, ``ffn.*``),
``conv_trans_{i}`` for ``i = 2 .. depths`` (``cnn_block``, ``fusion_block``,
``squeeze_block.{conv_project,ln}``, ``expand_block.{conv_project,bn}``, ``trans_block``)
and ``trans_norm``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.backbones.vision_transformer import TransformerEncoderLayer
from vistra.models.base import BaseModule
from vistra.models.layers.activation import build_activation_layer
from vistra.models.layers.drop import DropPath
from vistra.models.layers.norm import build_norm_layer
from vistra.models.layers.patch_embed import AdaptivePadding
from vistra.models.utils.arch import pick_arch
from vistra.registry import MODELS

EXPANSION = 4  # bottleneck expansion of the CNN blocks


def _arch(embed_dims: int, channel_ratio: int, num_heads: int, depths: int) -> dict:
    return dict(
        embed_dims=embed_dims, channel_ratio=channel_ratio, num_heads=num_heads, depths=depths
    )


class ConvBlock(BaseModule):
    """Bottleneck block (1x1, 3x3 of ``stride``/``groups``, 1x1) that also returns its
    middle feature (after the 3x3 conv) and adds ``fusion_features`` to the 3x3 conv's
    input; ``with_residual_conv`` puts a 1x1 conv + norm on the shortcut."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        groups: int = 1,
        drop_path_rate: float = 0.0,
        with_residual_conv: bool = False,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        norm_cfg = dict(type="BN", eps=1e-6) if norm_cfg is None else norm_cfg
        act_cfg = dict(type="ReLU", inplace=True) if act_cfg is None else act_cfg
        mid_channels = out_channels // EXPANSION
        self.conv1 = nn.Conv2d(in_channels, mid_channels, kernel_size=1, bias=False)
        self.bn1 = build_norm_layer(norm_cfg, mid_channels)[1]
        self.act1 = build_activation_layer(act_cfg)
        self.conv2 = nn.Conv2d(
            mid_channels, mid_channels, kernel_size=3, stride=stride, groups=groups, padding=1,
            bias=False,
        )  # fmt: skip
        self.bn2 = build_norm_layer(norm_cfg, mid_channels)[1]
        self.act2 = build_activation_layer(act_cfg)
        self.conv3 = nn.Conv2d(mid_channels, out_channels, kernel_size=1, bias=False)
        self.bn3 = build_norm_layer(norm_cfg, out_channels)[1]
        self.act3 = build_activation_layer(act_cfg)
        self.with_residual_conv = with_residual_conv
        if with_residual_conv:
            self.residual_conv = nn.Conv2d(
                in_channels, out_channels, kernel_size=1, stride=stride, bias=False
            )
            self.residual_bn = build_norm_layer(norm_cfg, out_channels)[1]
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def zero_init_last_bn(self) -> None:
        nn.init.zeros_(self.bn3.weight)

    def forward(
        self,
        x: torch.Tensor,
        fusion_features: torch.Tensor | None = None,
        out_conv2: bool = True,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        identity = x
        x = self.act1(self.bn1(self.conv1(x)))
        if fusion_features is not None:
            x = x + fusion_features
        x2 = self.act2(self.bn2(self.conv2(x)))
        x = self.drop_path(self.bn3(self.conv3(x2)))
        if self.with_residual_conv:
            identity = self.residual_bn(self.residual_conv(identity))
        x = self.act3(x + identity)
        return (x, x2) if out_conv2 else x


class FCUDown(BaseModule):
    """CNN map -> transformer tokens: 1x1 conv, ``down_stride`` average pooling, norm,
    activation; the transformer's class token is put back in front."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        down_stride: int,
        with_cls_token: bool = True,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        norm_cfg = dict(type="LN", eps=1e-6) if norm_cfg is None else norm_cfg
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        self.down_stride, self.with_cls_token = down_stride, with_cls_token
        self.conv_project = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.sample_pooling = nn.AvgPool2d(kernel_size=down_stride, stride=down_stride)
        self.ln = build_norm_layer(norm_cfg, out_channels)[1]
        self.act = build_activation_layer(act_cfg)

    def forward(self, x: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        x = self.sample_pooling(self.conv_project(x)).flatten(2).transpose(1, 2)
        x = self.act(self.ln(x))
        if self.with_cls_token:
            x = torch.cat([x_t[:, :1], x], dim=1)
        return x


class FCUUp(BaseModule):
    """Transformer tokens -> CNN map: the patch tokens as an ``H x W`` map, 1x1 conv, norm,
    activation, nearest upsampling by ``up_stride``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        up_stride: int,
        with_cls_token: bool = True,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        norm_cfg = dict(type="BN", eps=1e-6) if norm_cfg is None else norm_cfg
        act_cfg = dict(type="ReLU", inplace=True) if act_cfg is None else act_cfg
        self.up_stride, self.with_cls_token = up_stride, with_cls_token
        self.conv_project = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.bn = build_norm_layer(norm_cfg, out_channels)[1]
        self.act = build_activation_layer(act_cfg)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch, _, channels = x.shape
        tokens = x[:, 1:] if self.with_cls_token else x
        x_r = tokens.transpose(1, 2).reshape(batch, channels, height, width)
        x_r = self.act(self.bn(self.conv_project(x_r)))
        return F.interpolate(x_r, size=(height * self.up_stride, width * self.up_stride))


class ConvTransBlock(BaseModule):
    """One fused Conformer block: a CNN block, an encoder layer fed with the CNN block's
    pooled middle feature, and a CNN fusion block fed with the encoder's upsampled output.
    ``last_fusion`` makes the fusion block stride 2 (the network's last block)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        embed_dims: int,
        conv_stride: int = 1,
        groups: int = 1,
        with_residual_conv: bool = False,
        down_stride: int = 4,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        with_cls_token: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        last_fusion: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.cnn_block = ConvBlock(
            in_channels, out_channels, stride=conv_stride, groups=groups,
            with_residual_conv=with_residual_conv,
        )  # fmt: skip
        self.fusion_block = ConvBlock(
            out_channels, out_channels, stride=2 if last_fusion else 1, groups=groups,
            drop_path_rate=drop_path_rate, with_residual_conv=last_fusion,
        )  # fmt: skip
        self.squeeze_block = FCUDown(
            out_channels // EXPANSION, embed_dims, down_stride, with_cls_token=with_cls_token
        )
        self.expand_block = FCUUp(
            embed_dims, out_channels // EXPANSION, down_stride, with_cls_token=with_cls_token
        )
        self.trans_block = TransformerEncoderLayer(
            embed_dims=embed_dims,
            num_heads=num_heads,
            feedforward_channels=int(embed_dims * mlp_ratio),
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            attn_drop_rate=attn_drop_rate,
            qkv_bias=qkv_bias,
            norm_cfg=dict(type="LN", eps=1e-6),
        )
        self.down_stride, self.embed_dim, self.last_fusion = down_stride, embed_dims, last_fusion

    def forward(
        self, cnn_input: torch.Tensor, trans_input: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x, x_conv2 = self.cnn_block(cnn_input, out_conv2=True)
        height, width = x_conv2.shape[2:]
        trans_output = self.trans_block(self.squeeze_block(x_conv2, trans_input) + trans_input)
        fusion = self.expand_block(
            trans_output, height // self.down_stride, width // self.down_stride
        )
        return self.fusion_block(x, fusion_features=fusion, out_conv2=False), trans_output


@MODELS.register_module()
class Conformer(BaseModule):
    """Conformer: returns, for each ``out_indices`` block, a list ``[CNN feature (B, C),
    transformer feature (B, embed_dims)]``: the globally pooled CNN map, and the normed
    class token (the mean token without one).

    Blocks are numbered as their keys, ``conv_trans_2 .. conv_trans_{depths}``; a negative
    index counts back from the last (``-1`` is block ``depths``). ``arch`` is a name of
    ``arch_zoo`` or a dict with ``embed_dims``, ``channel_ratio``, ``num_heads`` and
    ``depths``; ``patch_size`` must be a multiple of 16. ``norm_eval`` and ``frozen_stages``
    are accepted and stored but, as in MMPretrain, change nothing.
    """

    arch_zoo = {
        **dict.fromkeys(["t", "tiny"], _arch(384, 1, 6, 12)),
        **dict.fromkeys(["s", "small"], _arch(384, 4, 6, 12)),
        **dict.fromkeys(["b", "base"], _arch(576, 6, 9, 12)),
    }

    def __init__(
        self,
        arch: str | dict = "tiny",
        patch_size: int = 16,
        base_channels: int = 64,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        with_cls_token: bool = True,
        drop_path_rate: float = 0.0,
        norm_eval: bool = True,
        frozen_stages: int = 0,
        out_indices: int | Sequence[int] = -1,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        key = arch.lower() if isinstance(arch, str) else arch
        self.arch_settings = pick_arch(key, self.arch_zoo, "Conformer", _arch(0, 0, 0, 0))
        self.num_features = self.embed_dims = self.arch_settings["embed_dims"]
        self.depths = self.arch_settings["depths"]
        self.num_heads = self.arch_settings["num_heads"]
        self.channel_ratio = self.arch_settings["channel_ratio"]
        if patch_size % 16:
            raise ValueError(f"Conformer patch_size must be a multiple of 16, got {patch_size}")
        stage_depth = self.depths // 3
        self.fin_stage = 3 * stage_depth + 1  # blocks are conv_trans_2 .. conv_trans_{fin-1}
        self.out_indices = self._parse_out_indices(out_indices)
        self.norm_eval, self.frozen_stages = norm_eval, frozen_stages
        self.with_cls_token = with_cls_token
        if with_cls_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims))
        self.trans_dpr = torch.linspace(0, drop_path_rate, self.depths, device="cpu").tolist()

        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)  # 1/4 of the input
        trans_down_stride = patch_size // 4
        self.auto_pad = AdaptivePadding(trans_down_stride, trans_down_stride)

        channels = [int(base_channels * self.channel_ratio * 2**s) for s in range(3)]
        self.conv_1 = ConvBlock(64, channels[0], stride=1, with_residual_conv=True)
        self.trans_patch_conv = nn.Conv2d(
            64, self.embed_dims, kernel_size=trans_down_stride, stride=trans_down_stride
        )
        self.trans_1 = TransformerEncoderLayer(
            embed_dims=self.embed_dims,
            num_heads=self.num_heads,
            feedforward_channels=int(self.embed_dims * mlp_ratio),
            drop_path_rate=self.trans_dpr[0],
            qkv_bias=qkv_bias,
            norm_cfg=dict(type="LN", eps=1e-6),
        )
        index = 2
        for stage in range(3):
            # the CNN map halves at each stage while the token grid stays: the pooling
            # between them shrinks accordingly
            for j in range(stage_depth if stage else stage_depth - 1):
                first = j == 0 and stage > 0
                self.add_module(
                    f"conv_trans_{index}",
                    ConvTransBlock(
                        in_channels=channels[stage - 1] if first else channels[stage],
                        out_channels=channels[stage],
                        embed_dims=self.embed_dims,
                        conv_stride=2 if first else 1,
                        with_residual_conv=first,
                        down_stride=trans_down_stride // 2**stage,
                        num_heads=self.num_heads,
                        mlp_ratio=mlp_ratio,
                        qkv_bias=qkv_bias,
                        drop_path_rate=self.trans_dpr[index - 1],
                        with_cls_token=with_cls_token,
                        last_fusion=index == self.depths,
                    ),
                )
                index += 1
        self.pooling = nn.AdaptiveAvgPool2d(1)
        self.trans_norm = nn.LayerNorm(self.embed_dims)
        if with_cls_token:
            nn.init.trunc_normal_(self.cls_token, std=0.02)

    def _parse_out_indices(self, out_indices: int | Sequence[int]) -> list[int]:
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        if not isinstance(out_indices, Sequence) or isinstance(out_indices, str):
            raise TypeError(f"out_indices must be an int or a sequence, got {out_indices!r}")
        parsed = []
        for index in out_indices:
            resolved = self.depths + index + 1 if index < 0 else index
            if not 2 <= resolved < self.fin_stage:
                raise ValueError(
                    f"out_indices entry {index} is not a block: Conformer's blocks are "
                    f"conv_trans_2 .. conv_trans_{self.fin_stage - 1} (or negative indices)"
                )
            parsed.append(resolved)
        return parsed

    def init_weights(self) -> None:
        if self.is_init:
            return
        super().init_weights()
        cfgs = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg or {}]
        if any(c.get("type") == "Pretrained" for c in cfgs):
            return
        self.apply(self._init_module)

    @staticmethod
    def _init_module(m: nn.Module) -> None:
        """The official init: truncated-normal linears, Kaiming convs, unit norms, and a
        zero last BN in every bottleneck (each block starts as its shortcut)."""
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if isinstance(m, ConvBlock):
            m.zero_init_last_bn()

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], ...]:
        batch = x.shape[0]
        x_base = self.auto_pad(self.maxpool(self.act1(self.bn1(self.conv1(x)))))
        x = self.conv_1(x_base, out_conv2=False)
        x_t = self.trans_patch_conv(x_base).flatten(2).transpose(1, 2)
        if self.with_cls_token:
            x_t = torch.cat([self.cls_token.expand(batch, -1, -1), x_t], dim=1)
        x_t = self.trans_1(x_t)
        outs = []
        for i in range(2, self.fin_stage):
            x, x_t = getattr(self, f"conv_trans_{i}")(x, x_t)
            if i in self.out_indices:
                tokens = self.trans_norm(x_t)
                trans = tokens[:, 0] if self.with_cls_token else tokens.mean(dim=1)
                outs.append([self.pooling(x).flatten(1), trans])
        return tuple(outs)
