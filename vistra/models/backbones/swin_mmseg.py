"""MMSegmentation's Swin Transformer (registry scope ``mmseg``), `paper
<https://arxiv.org/abs/2103.14030>`__.

MMSegmentation's ``SwinTransformer`` is not MMPretrain's (the classification zoo's, with an
``arch`` table, ``layers.{i}`` stages and ``downsample`` *before* a stage): this one takes
the sizes directly (``embed_dims``, ``depths``, ``num_heads``; no ``arch``), is registered
as ``mmseg.SwinTransformer`` and has the keys

- ``patch_embed.projection``, ``patch_embed.norm`` (with ``patch_norm``);
  ``absolute_pos_embed`` with ``use_abs_pos_embed``;
- ``stages.{i}.blocks.{j}.norm1``, ``.attn.w_msa.relative_position_bias_table``,
  ``.attn.w_msa.relative_position_index`` (a buffer, stored), ``.attn.w_msa.qkv``,
  ``.attn.w_msa.proj``, ``.norm2``, ``.ffn.layers.0.0``, ``.ffn.layers.1``;
- ``stages.{i}.downsample.norm`` / ``.reduction`` (``PatchMerging`` *after* every stage but
  the last, in ``nn.Unfold`` order);
- ``norm{i}`` for each index in ``out_indices``.

The window attention is the one MMPretrain's Swin uses too
(``vistra.models.layers.window_attention``, same keys); ``WindowMSA`` and
``ShiftWindowMSA`` here only give it MMSegmentation's argument names, and
``pad_small_map=True``: maps are always padded bottom/right to whole windows and odd blocks
always shift by ``window_size // 2`` (masked-out positions at ``-100``, not ``-inf``).
Stochastic depth grows linearly over all blocks.

Order: window attention (MMSegmentation's arguments), block, stage, backbone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from vistra.models.base import BaseModule
from vistra.models.init import constant_init, trunc_normal_init
from vistra.models.layers.key_remap import rename_prefix
from vistra.models.layers.norm import build_norm_layer
from vistra.models.layers.patch_embed import PatchEmbed
from vistra.models.layers.patch_merging import PatchMerging
from vistra.models.layers.pos_embed import to_2tuple
from vistra.models.layers.transformer import FFN
from vistra.models.layers.window_attention import ShiftWindowMSA as SharedShiftWindowMSA
from vistra.models.layers.window_attention import WindowMSA as SharedWindowMSA
from vistra.models.layers.window_attention import relative_position_index  # noqa: F401 (re-export)
from vistra.registry import MODELS

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- attention
class WindowMSA(SharedWindowMSA):
    """The shared window attention (``vistra.models.layers.window_attention``) with
    MMSegmentation's argument names and order (``num_heads`` before ``window_size``,
    ``attn_drop_rate`` / ``proj_drop_rate``); same keys, same computation."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        window_size: Sequence[int],
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(
            embed_dims,
            window_size,
            num_heads,
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            attn_drop=attn_drop_rate,
            proj_drop=proj_drop_rate,
            init_cfg=init_cfg,
        )


class ShiftWindowMSA(SharedShiftWindowMSA):
    """The shared shifted-window attention with MMSegmentation's arguments: a map is
    always padded to whole windows and always shifted (``pad_small_map=True``)."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        window_size: int,
        shift_size: int = 0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        dropout_layer: dict | None = dict(type="DropPath", drop_prob=0.0),  # noqa: B006
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(
            embed_dims,
            num_heads,
            window_size,
            shift_size=shift_size,
            dropout_layer=dropout_layer,
            pad_small_map=True,
            window_msa=WindowMSA,
            init_cfg=init_cfg,
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            attn_drop_rate=attn_drop_rate,
            proj_drop_rate=proj_drop_rate,
        )


class SwinBlock(BaseModule):
    """``x = x + attn(norm1(x))``, then ``x = ffn(norm2(x), identity=x)``; ``shift`` makes
    it a shifted-window block."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        feedforward_channels: int,
        window_size: int = 7,
        shift: bool = False,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        act_cfg: dict = dict(type="GELU"),  # noqa: B006 (never mutated)
        norm_cfg: dict = dict(type="LN"),  # noqa: B006 (never mutated)
        with_cp: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.with_cp = with_cp
        drop_path = dict(type="DropPath", drop_prob=drop_path_rate)
        self.norm1 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.attn = ShiftWindowMSA(
            embed_dims=embed_dims,
            num_heads=num_heads,
            window_size=window_size,
            shift_size=window_size // 2 if shift else 0,
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            attn_drop_rate=attn_drop_rate,
            proj_drop_rate=drop_rate,
            dropout_layer=drop_path,
        )
        self.norm2 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.ffn = FFN(
            embed_dims=embed_dims,
            feedforward_channels=feedforward_channels,
            num_fcs=2,
            ffn_drop=drop_rate,
            dropout_layer=drop_path,
            act_cfg=act_cfg,
            add_identity=True,
        )

    def forward(self, x: torch.Tensor, hw_shape: Sequence[int]) -> torch.Tensor:
        def inner(x: torch.Tensor) -> torch.Tensor:
            x = x + self.attn(self.norm1(x), hw_shape)
            return self.ffn(self.norm2(x), identity=x)

        if self.with_cp and x.requires_grad:
            return checkpoint(inner, x, use_reentrant=False)
        return inner(x)


class SwinBlockSequence(BaseModule):
    """``depth`` blocks, alternately plain and shifted, then the optional ``downsample``.
    ``forward`` returns ``(x_down, down_hw, x, hw)``: the next stage's input and this
    stage's output. ``drop_path_rate`` is one rate or one per block."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        feedforward_channels: int,
        depth: int,
        window_size: int = 7,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float | Sequence[float] = 0.0,
        downsample: nn.Module | None = None,
        act_cfg: dict = dict(type="GELU"),  # noqa: B006 (never mutated)
        norm_cfg: dict = dict(type="LN"),  # noqa: B006 (never mutated)
        with_cp: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if isinstance(drop_path_rate, Sequence):
            rates = list(drop_path_rate)
            if len(rates) != depth:
                raise ValueError(f"drop_path_rate has {len(rates)} rates for depth={depth}")
        else:
            rates = [drop_path_rate] * depth
        self.blocks = nn.ModuleList(
            SwinBlock(
                embed_dims=embed_dims,
                num_heads=num_heads,
                feedforward_channels=feedforward_channels,
                window_size=window_size,
                shift=i % 2 == 1,
                qkv_bias=qkv_bias,
                qk_scale=qk_scale,
                drop_rate=drop_rate,
                attn_drop_rate=attn_drop_rate,
                drop_path_rate=rates[i],
                act_cfg=act_cfg,
                norm_cfg=norm_cfg,
                with_cp=with_cp,
            )
            for i in range(depth)
        )
        self.downsample = downsample

    def forward(
        self, x: torch.Tensor, hw_shape: Sequence[int]
    ) -> tuple[torch.Tensor, Sequence[int], torch.Tensor, Sequence[int]]:
        for block in self.blocks:
            x = block(x, hw_shape)
        if self.downsample is None:
            return x, hw_shape, x, hw_shape
        x_down, down_hw = self.downsample(x, hw_shape)
        return x_down, down_hw, x, hw_shape


@MODELS.register_module(name="SwinTransformer", scope="mmseg")
class SegSwinTransformer(BaseModule):
    """MMSegmentation's ``SwinTransformer``; arguments and keys in the module docstring.

    Returns the normalised ``(B, C_i, H_i, W_i)`` maps of the ``out_indices`` stages,
    ``C_i = embed_dims * 2**i``. ``frozen_stages=k`` freezes the patch embedding and the
    first ``k`` stages (with their output norms) and keeps them in eval mode.
    """

    def __init__(
        self,
        pretrain_img_size: int | Sequence[int] = 224,
        in_channels: int = 3,
        embed_dims: int = 96,
        patch_size: int = 4,
        window_size: int = 7,
        mlp_ratio: float = 4,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        strides: Sequence[int] = (4, 2, 2, 2),
        out_indices: Sequence[int] = (0, 1, 2, 3),
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        patch_norm: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        use_abs_pos_embed: bool = False,
        act_cfg: dict = dict(type="GELU"),  # noqa: B006 (never mutated)
        norm_cfg: dict = dict(type="LN"),  # noqa: B006 (never mutated)
        with_cp: bool = False,
        pretrained: str | None = None,
        frozen_stages: int = -1,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        if init_cfg and pretrained:
            raise ValueError("SwinTransformer: init_cfg and pretrained cannot both be set")
        if pretrained is not None:
            if not isinstance(pretrained, str):
                raise TypeError(f"pretrained must be a str or None, got {pretrained!r}")
            init_cfg = dict(type="Pretrained", checkpoint=pretrained)
        super().__init__(init_cfg)
        if not isinstance(pretrain_img_size, int) and len(pretrain_img_size) == 1:
            pretrain_img_size = pretrain_img_size[0]
        pretrain_hw = to_2tuple(pretrain_img_size)
        num_layers = len(depths)
        if len(num_heads) != num_layers or len(strides) != num_layers:
            raise ValueError(
                f"depths={list(depths)}: num_heads={list(num_heads)} and strides="
                f"{list(strides)} need one entry per stage"
            )
        if strides[0] != patch_size:
            raise ValueError(
                f"strides[0]={strides[0]} must equal patch_size={patch_size} "
                "(the patch embedding does not overlap)"
            )
        bad = [i for i in out_indices if not 0 <= i < num_layers]
        if bad:
            raise ValueError(
                f"out_indices={list(out_indices)}: {bad} not a stage index in 0..{num_layers - 1}"
            )
        self.frozen_stages, self.out_indices = frozen_stages, tuple(out_indices)
        self.use_abs_pos_embed = use_abs_pos_embed
        self.patch_embed = PatchEmbed(
            in_channels=in_channels,
            embed_dims=embed_dims,
            kernel_size=patch_size,
            stride=strides[0],
            padding="corner",
            norm_cfg=norm_cfg if patch_norm else None,
        )
        if use_abs_pos_embed:
            num_patches = (pretrain_hw[0] // patch_size) * (pretrain_hw[1] // patch_size)
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, num_patches, embed_dims))
        self.drop_after_pos = nn.Dropout(p=drop_rate)

        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        self.stages = nn.ModuleList()
        dims = embed_dims
        for i, depth in enumerate(depths):
            downsample = None
            if i < num_layers - 1:
                downsample = PatchMerging(
                    in_channels=dims,
                    out_channels=2 * dims,
                    stride=strides[i + 1],
                    norm_cfg=norm_cfg if patch_norm else None,
                )
            start = sum(depths[:i])
            self.stages.append(
                SwinBlockSequence(
                    embed_dims=dims,
                    num_heads=num_heads[i],
                    feedforward_channels=int(mlp_ratio * dims),
                    depth=depth,
                    window_size=window_size,
                    qkv_bias=qkv_bias,
                    qk_scale=qk_scale,
                    drop_rate=drop_rate,
                    attn_drop_rate=attn_drop_rate,
                    drop_path_rate=rates[start : start + depth],
                    downsample=downsample,
                    act_cfg=act_cfg,
                    norm_cfg=norm_cfg,
                    with_cp=with_cp,
                )
            )
            if downsample is not None:
                dims = downsample.out_channels
        self.num_features = [int(embed_dims * 2**i) for i in range(num_layers)]
        for i in self.out_indices:
            self.add_module(f"norm{i}", build_norm_layer(norm_cfg, self.num_features[i])[1])

    # ------------------------------------------------------------------ weights
    def init_weights(self) -> None:
        if self.is_init:
            return
        if self.init_cfg is not None:
            super().init_weights()
            return
        # upstream's from-scratch init: truncated-normal linears and position embedding, unit
        # LayerNorms; the relative position bias tables stay zero (upstream never reaches
        # WindowMSA.init_weights on this path)
        if self.use_abs_pos_embed:
            nn.init.trunc_normal_(self.absolute_pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_init(m, std=0.02, bias=0.0)
            elif isinstance(m, nn.LayerNorm):
                constant_init(m, val=1.0, bias=0.0)
        self._is_init = True

    def remap_state_dict(self, state_dict: dict, prefix: str = "") -> list[tuple[str, str]]:
        """As upstream's pretrained loading: a backbone loaded on its own takes a whole
        segmentor's checkpoint (``backbone.`` keys, renamed), and relative position bias
        tables of another window size are resized (bicubic)."""
        renamed: list[tuple[str, str]] = []
        own = dict(self.named_parameters())
        if not prefix and not any(k in state_dict for k in own):
            rename_prefix(state_dict, "backbone.", "", renamed)
        for name, param in own.items():
            if not name.endswith("relative_position_bias_table"):
                continue
            table = state_dict.get(prefix + name)
            if not isinstance(table, torch.Tensor) or table.shape == param.shape:
                continue
            (l1, h1), (l2, h2) = table.shape, param.shape
            if h1 != h2:
                continue  # the strict load reports the mismatch
            s1, s2 = int(l1**0.5), int(l2**0.5)
            logger.info("Resize %s from %s to %s.", name, tuple(table.shape), tuple(param.shape))
            grid = table.permute(1, 0).reshape(1, h1, s1, s1)
            resized = F.interpolate(grid, size=(s2, s2), mode="bicubic")
            state_dict[prefix + name] = resized.view(h2, l2).permute(1, 0).contiguous()
        return renamed

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args) -> None:
        self.remap_state_dict(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args)

    # ------------------------------------------------------------------ freezing
    def train(self, mode: bool = True) -> SegSwinTransformer:
        super().train(mode)
        self._freeze_stages()
        return self

    def _freeze_stages(self) -> None:
        if self.frozen_stages >= 0:
            self.patch_embed.eval()
            for param in self.patch_embed.parameters():
                param.requires_grad = False
            if self.use_abs_pos_embed:
                self.absolute_pos_embed.requires_grad = False
            self.drop_after_pos.eval()
        for i in range(self.frozen_stages):
            frozen = [self.stages[i]]
            if i in self.out_indices:
                frozen.append(getattr(self, f"norm{i}"))
            for m in frozen:
                m.eval()
                for param in m.parameters():
                    param.requires_grad = False

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x, hw_shape = self.patch_embed(x)
        if self.use_abs_pos_embed:
            x = x + self.absolute_pos_embed
        x = self.drop_after_pos(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x, hw_shape, out, out_hw = stage(x, hw_shape)
            if i in self.out_indices:
                out = getattr(self, f"norm{i}")(out)
                outs.append(
                    out.view(-1, *out_hw, self.num_features[i]).permute(0, 3, 1, 2).contiguous()
                )
        return outs
