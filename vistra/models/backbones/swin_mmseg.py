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

The window attention parts (``WindowMSA``, ``ShiftWindowMSA``, ``window_partition``,
``window_reverse``, ``shifted_window_mask``) are written to be reused by other Swin-like
models: ``WindowMSA``'s keys are also MMPretrain's. Semantics kept: odd blocks shift the
windows by ``window_size // 2``, with masked-out positions at ``-100`` (not ``-inf``);
maps are padded bottom/right to whole windows; stochastic depth grows linearly over all
blocks. Attention runs through ``F.scaled_dot_product_attention`` with the relative
position bias (and shift mask) as an additive mask.

Order: window helpers, window attention, shifted-window attention, block, stage, backbone.
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
from vistra.models.layers.drop import build_dropout
from vistra.models.layers.key_remap import rename_prefix
from vistra.models.layers.norm import build_norm_layer
from vistra.models.layers.patch_embed import PatchEmbed
from vistra.models.layers.patch_merging import PatchMerging
from vistra.models.layers.pos_embed import to_2tuple
from vistra.models.layers.transformer import FFN
from vistra.registry import MODELS

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- windows
def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """``(B, H, W, C)`` to ``(B * nW, window_size, window_size, C)``, windows row-major."""
    b, h, w, c = x.shape
    x = x.view(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size, window_size, c)


def window_reverse(windows: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The inverse of ``window_partition``: ``(B * nW, ws, ws, C)`` to ``(B, H, W, C)``."""
    ws = windows.shape[1]
    b = windows.shape[0] // ((h // ws) * (w // ws))
    x = windows.view(b, h // ws, w // ws, ws, ws, -1)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, -1)


def shifted_window_mask(
    h: int, w: int, window_size: int, shift_size: int, device: torch.device | None = None
) -> torch.Tensor:
    """``(nW, ws*ws, ws*ws)`` additive mask: ``-100`` between positions that come from
    different regions of the cyclically shifted map, ``0`` within one region."""
    img = torch.zeros((1, h, w, 1), device=device)
    bounds = (slice(0, -window_size), slice(-window_size, -shift_size), slice(-shift_size, None))
    region = 0
    for hs in bounds:
        for wsl in bounds:
            img[:, hs, wsl, :] = region
            region += 1
    ids = window_partition(img, window_size).view(-1, window_size * window_size)
    diff = ids.unsqueeze(1) - ids.unsqueeze(2)
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


def relative_position_index(window_size: tuple[int, int]) -> torch.Tensor:
    """``(Wh*Ww, Wh*Ww)`` index into the ``(2Wh-1)(2Ww-1)`` bias table: entry ``(p, q)`` is
    ``(dy + Wh - 1) * (2Ww - 1) + (dx + Ww - 1)`` with ``(dy, dx) = p - q``."""
    wh, ww = window_size
    ys, xs = torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")
    coords = torch.stack([ys.flatten(), xs.flatten()])  # (2, Wh*Ww)
    rel = coords[:, :, None] - coords[:, None, :]
    return (rel[0] + wh - 1) * (2 * ww - 1) + (rel[1] + ww - 1)


class WindowMSA(BaseModule):
    """Multi-head self-attention within a window, with a learned relative position bias
    (``relative_position_bias_table``, one row per offset, indexed by the stored buffer
    ``relative_position_index``). Input ``(B * nW, Wh*Ww, C)``; ``mask`` ``(nW, N, N)``
    is added to the logits of each image's windows."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        window_size: tuple[int, int],
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.embed_dims, self.num_heads = embed_dims, num_heads
        self.window_size = to_2tuple(window_size)
        self.scale = qk_scale or (embed_dims // num_heads) ** -0.5
        wh, ww = self.window_size
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * wh - 1) * (2 * ww - 1), num_heads)
        )
        self.register_buffer("relative_position_index", relative_position_index(self.window_size))
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=qkv_bias)
        self.attn_drop = attn_drop_rate
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop_rate)

    def init_weights(self) -> None:
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def relative_position_bias(self) -> torch.Tensor:
        """``(heads, N, N)`` bias for a window of ``N = Wh*Ww`` tokens."""
        n = self.window_size[0] * self.window_size[1]
        table = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return table.view(n, n, -1).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.relative_position_bias().unsqueeze(0).to(q.dtype)  # (1, heads, N, N)
        if mask is not None:
            nw = mask.shape[0]
            bias = bias.unsqueeze(1) + mask.to(q.dtype)[None, :, None]  # (1, nW, heads, N, N)
            bias = bias.expand(b // nw, -1, -1, -1, -1).reshape(b, self.num_heads, n, n)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=bias,
            dropout_p=self.attn_drop if self.training else 0.0,
            scale=self.scale,
        )
        out = out.transpose(1, 2).reshape(b, n, c)
        return self.proj_drop(self.proj(out))


class ShiftWindowMSA(BaseModule):
    """``WindowMSA`` over ``(B, H*W, C)`` tokens: pad to whole windows, shift cyclically by
    ``shift_size`` (and mask across the wrap-around), attend per window, undo both, then
    ``dropout_layer`` (DropPath). Key prefix ``w_msa``."""

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
        super().__init__(init_cfg)
        if not 0 <= shift_size < window_size:
            raise ValueError(f"shift_size={shift_size} must be in [0, window_size={window_size})")
        self.window_size, self.shift_size = window_size, shift_size
        self.w_msa = WindowMSA(
            embed_dims=embed_dims,
            num_heads=num_heads,
            window_size=to_2tuple(window_size),
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            attn_drop_rate=attn_drop_rate,
            proj_drop_rate=proj_drop_rate,
        )
        self.drop = build_dropout(dropout_layer) if dropout_layer else nn.Identity()

    def forward(self, query: torch.Tensor, hw_shape: Sequence[int]) -> torch.Tensor:
        b, length, c = query.shape
        h, w = hw_shape
        if length != h * w:
            raise ValueError(f"ShiftWindowMSA: {length} tokens do not make an {h}x{w} map")
        ws, shift = self.window_size, self.shift_size
        x = query.view(b, h, w, c)
        pad_r, pad_b = (ws - w % ws) % ws, (ws - h % ws) % ws
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        hp, wp = x.shape[1], x.shape[2]
        mask = None
        if shift > 0:
            x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
            mask = shifted_window_mask(hp, wp, ws, shift, device=x.device)
        windows = window_partition(x, ws).view(-1, ws * ws, c)
        windows = self.w_msa(windows, mask=mask).view(-1, ws, ws, c)
        x = window_reverse(windows, hp, wp)
        if shift > 0:
            x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
        x = x[:, :h, :w, :].reshape(b, h * w, c)
        return self.drop(x)


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

        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
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
