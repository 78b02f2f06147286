"""Swin Transformer V2 backbone (`Swin Transformer V2: Scaling Up Capacity and Resolution
<https://arxiv.org/abs/2111.09883>`_), with MMPretrain's arguments and keys.

What V2 changes from Swin (``swin.py``): residual post-normalisation (``x + norm(attn(x))``),
scaled cosine attention with a learned per-head temperature ``logit_scale``, a continuous
relative position bias (a small MLP ``cpb_mlp`` over log-spaced offsets, squashed to
``16 * sigmoid``), patch merging *before* each stage but the first, normalised after its
reduction, and per-stage window sizes.

Keys:

- ``patch_embed.projection`` / ``patch_embed.norm``; ``absolute_pos_embed`` with
  ``use_abs_pos_embed``;
- ``stages.{i}.downsample.reduction`` / ``.norm`` for ``i >= 1``;
- ``stages.{i}.blocks.{j}.attn.w_msa.{logit_scale, cpb_mlp.0, cpb_mlp.2, q_bias, v_bias,
  qkv, proj}`` and the stored buffers ``.attn.w_msa.relative_coords_table`` /
  ``.relative_position_index``; ``.norm1``, ``.ffn.layers.0.0``, ``.ffn.layers.1``,
  ``.norm2``, ``.norm3`` (every ``extra_norm_every_n_blocks``-th block, huge/giant);
- ``norm{i}`` for each index of ``out_indices``.

The two buffers are functions of the window size: a checkpoint's of another window is
replaced by this model's own when it loads; one of the same shape loads as it is (the
values its model computed with; for the published checkpoints the same as rebuilt ones).
Upstream drops them from every checkpoint and keeps its own, which its strict loader then
reports as missing keys: MMPretrain cannot load a Swin-V2 state dict strictly. ``pretrained_window_sizes`` keeps the bias MLP's input scaled as in
pre-training when the window grows at fine-tuning. Small-map, freezing and ``*_cfgs``
semantics are Swin's.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import nn

from vistra.models.backbones.swin import (
    check_out_indices,
    drop_path_rates,
    loads_pretrained,
    per_item,
)
from vistra.models.base import BaseModule
from vistra.models.layers.key_remap import install_remap_hook
from vistra.models.layers.norm import build_norm_layer
from vistra.models.layers.patch_embed import PatchEmbed
from vistra.models.layers.patch_merging import PatchMerging
from vistra.models.layers.pos_embed import resize_pos_embed, to_2tuple
from vistra.models.layers.transformer import FFN
from vistra.models.layers.window_attention import (
    ShiftWindowMSA,
    relative_position_index,
    windowed_attention,
)
from vistra.models.utils.arch import pick_arch
from vistra.registry import MODELS

logger = logging.getLogger(__name__)

_REBUILT_BUFFERS = ("relative_position_index", "relative_coords_table")


def log_spaced_relative_coords(
    window_size: Sequence[int], pretrained_window_size: Sequence[int] = (0, 0)
) -> torch.Tensor:
    """``(1, 2Wh-1, 2Ww-1, 2)`` offsets ``(dy, dx)`` scaled to ``[-8, 8]`` by the
    (pre-training) window and log-spaced: ``sign(t) * log2(1 + |t|) / log2(8)``."""
    wh, ww = window_size
    dy = torch.arange(-(wh - 1), wh, dtype=torch.float32, device="cpu")
    dx = torch.arange(-(ww - 1), ww, dtype=torch.float32, device="cpu")
    table = torch.stack(torch.meshgrid(dy, dx, indexing="ij")).permute(1, 2, 0).unsqueeze(0)
    ph, pw = pretrained_window_size
    norm_h, norm_w = (ph - 1, pw - 1) if ph > 0 else (wh - 1, ww - 1)
    table = table / torch.tensor([norm_h, norm_w], dtype=torch.float32, device="cpu") * 8
    return torch.sign(table) * torch.log2(table.abs() + 1.0) / math.log2(8)


class WindowMSAV2(BaseModule):
    """Scaled cosine window attention with a continuous relative position bias.

    ``softmax(exp(min(logit_scale, log 100)) * cos(q, k) + 16 sigmoid(cpb_mlp(coords))
    + mask) v`` per window; the key has no bias (``q_bias`` and ``v_bias`` only).
    """

    def __init__(
        self,
        embed_dims: int,
        window_size: Sequence[int],
        num_heads: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        cpb_mlp_hidden_dims: int = 512,
        pretrained_window_size: Sequence[int] = (0, 0),
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if embed_dims % num_heads:
            raise ValueError(f"embed_dims={embed_dims} must be divisible by num_heads={num_heads}")
        self.embed_dims, self.num_heads = embed_dims, num_heads
        self.window_size = to_2tuple(window_size)
        self.cpb_mlp = nn.Sequential(
            nn.Linear(2, cpb_mlp_hidden_dims, bias=True),
            nn.ReLU(inplace=True),
            nn.Linear(cpb_mlp_hidden_dims, num_heads, bias=False),
        )
        self.logit_scale = nn.Parameter(torch.log(10 * torch.ones((num_heads, 1, 1))))
        self.register_buffer(
            "relative_coords_table",
            log_spaced_relative_coords(self.window_size, to_2tuple(pretrained_window_size)),
        )
        self.register_buffer("relative_position_index", relative_position_index(self.window_size))
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=False)
        if qkv_bias:
            self.q_bias: nn.Parameter | None = nn.Parameter(torch.zeros(embed_dims))
            self.v_bias: nn.Parameter | None = nn.Parameter(torch.zeros(embed_dims))
        else:
            self.q_bias = self.v_bias = None
        self.attn_drop = attn_drop
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)

    def relative_position_bias(self) -> torch.Tensor:
        """``(heads, N, N)``: ``16 * sigmoid`` of the MLP's bias for each offset pair."""
        n = self.window_size[0] * self.window_size[1]
        table = self.cpb_mlp(self.relative_coords_table).view(-1, self.num_heads)
        bias = table[self.relative_position_index.view(-1)].view(n, n, -1).permute(2, 0, 1)
        return 16 * torch.sigmoid(bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        bias = None
        if self.q_bias is not None:
            bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        # cosine similarity times the clamped temperature: normalise, fold the temperature
        # into q and let the attention run unscaled
        temperature = torch.clamp(self.logit_scale, max=math.log(1.0 / 0.01)).exp()
        q = F.normalize(q, dim=-1) * temperature
        k = F.normalize(k, dim=-1)
        out = windowed_attention(
            q, k, v, self.relative_position_bias().to(q.dtype), mask, 1.0,
            self.attn_drop if self.training else 0.0,
        )  # fmt: skip
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))


class SwinV2PatchMerging(PatchMerging):
    """Patch merging with ``use_post_norm``: the norm (over ``out_channels``) follows the
    reduction instead of preceding it (over the merged width)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 2,
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] | str = "corner",
        dilation: int | tuple[int, int] = 1,
        bias: bool = False,
        norm_cfg: dict | None = dict(type="LN"),  # noqa: B006 (never mutated)
        use_post_norm: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, bias,
            norm_cfg=None if use_post_norm else norm_cfg, init_cfg=init_cfg,
        )  # fmt: skip
        self.use_post_norm = use_post_norm
        if use_post_norm and norm_cfg is not None:
            self.norm = build_norm_layer(norm_cfg, out_channels)[1]

    def forward(
        self, x: torch.Tensor, input_size: Sequence[int]
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        if not self.use_post_norm:
            return super().forward(x, input_size)
        batch, length, channels = x.shape
        h, w = input_size
        if length != h * w:
            raise ValueError(f"PatchMerging: {length} tokens do not make an {h}x{w} map")
        x = x.view(batch, h, w, channels).permute(0, 3, 1, 2)
        if self.adaptive_padding is not None:
            x = self.adaptive_padding(x)
        out_h, out_w = self._unfolded_size(x.shape[-2:])
        x = self.reduction(self.sampler(x).transpose(1, 2))
        return (x if self.norm is None else self.norm(x)), (out_h, out_w)

    def _unfolded_size(self, size: Sequence[int]) -> tuple[int, int]:
        s = self.sampler
        h, w = (
            (n + 2 * p - d * (k - 1) - 1) // st + 1
            for n, p, d, k, st in zip(size, s.padding, s.dilation, s.kernel_size, s.stride)
        )
        return int(h), int(w)


class SwinBlockV2(BaseModule):
    """``x = x + norm1(attn(x))``, ``x = x + norm2(ffn(x))`` (post-norm), then ``norm3``
    with ``extra_norm``; both branches through DropPath."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        window_size: int = 8,
        shift: bool = False,
        extra_norm: bool = False,
        ffn_ratio: float = 4.0,
        drop_path: float = 0.0,
        pad_small_map: bool = False,
        attn_cfgs: dict | None = None,
        ffn_cfgs: dict | None = None,
        norm_cfg: dict | None = None,
        with_cp: bool = False,
        pretrained_window_size: int | Sequence[int] = 0,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        norm_cfg = dict(type="LN") if norm_cfg is None else norm_cfg
        self.with_cp, self.extra_norm = with_cp, extra_norm
        attn_args = dict(
            embed_dims=embed_dims,
            num_heads=num_heads,
            shift_size=window_size // 2 if shift else 0,
            window_size=window_size,
            dropout_layer=dict(type="DropPath", drop_prob=drop_path),
            pad_small_map=pad_small_map,
        )
        attn_args.update(attn_cfgs or {})
        # V2's attention whatever attn_cfgs says, as upstream
        attn_args.update(
            window_msa=WindowMSAV2, pretrained_window_size=to_2tuple(pretrained_window_size)
        )
        self.attn = ShiftWindowMSA(**attn_args)
        self.norm1 = build_norm_layer(norm_cfg, embed_dims)[1]
        ffn_args = dict(
            embed_dims=embed_dims,
            feedforward_channels=int(embed_dims * ffn_ratio),
            num_fcs=2,
            ffn_drop=0,
            dropout_layer=dict(type="DropPath", drop_prob=drop_path),
            act_cfg=dict(type="GELU"),
            add_identity=False,
        )
        self.ffn = FFN(**{**ffn_args, **(ffn_cfgs or {})})
        self.norm2 = build_norm_layer(norm_cfg, embed_dims)[1]
        if extra_norm:  # every n-th block of the huge and giant models
            self.norm3 = build_norm_layer(norm_cfg, embed_dims)[1]

    def _inner_forward(self, x: torch.Tensor, hw_shape: Sequence[int]) -> torch.Tensor:
        x = x + self.norm1(self.attn(x, hw_shape))
        x = x + self.norm2(self.ffn(x))
        return self.norm3(x) if self.extra_norm else x

    def forward(self, x: torch.Tensor, hw_shape: Sequence[int]) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._inner_forward, x, hw_shape, use_reentrant=False)
        return self._inner_forward(x, hw_shape)


class SwinBlockV2Sequence(BaseModule):
    """The optional patch merging (``downsample``, first), then ``depth`` blocks,
    alternately plain and shifted, at the merged width."""

    def __init__(
        self,
        embed_dims: int,
        depth: int,
        num_heads: int,
        window_size: int = 8,
        downsample: bool = False,
        downsample_cfg: dict | None = None,
        drop_paths: float | Sequence[float] = 0.0,
        block_cfgs: dict | Sequence[dict] | None = None,
        with_cp: bool = False,
        pad_small_map: bool = False,
        extra_norm_every_n_blocks: int = 0,
        pretrained_window_size: int | Sequence[int] = 0,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if not isinstance(drop_paths, Sequence):
            drop_paths = [drop_paths] * depth
        if len(drop_paths) != depth:
            raise ValueError(f"drop_paths has {len(drop_paths)} rates for depth={depth}")
        extra = per_item(block_cfgs, depth, "block_cfgs")
        self.downsample: SwinV2PatchMerging | None = None
        self.out_channels = embed_dims
        if downsample:
            self.out_channels = 2 * embed_dims
            args = dict(
                in_channels=embed_dims, out_channels=self.out_channels, norm_cfg=dict(type="LN")
            )
            self.downsample = SwinV2PatchMerging(**{**args, **(downsample_cfg or {})})
        self.blocks = nn.ModuleList()
        for i in range(depth):
            n = extra_norm_every_n_blocks
            args = dict(
                embed_dims=self.out_channels,
                num_heads=num_heads,
                window_size=window_size,
                shift=i % 2 == 1,
                extra_norm=bool(n) and (i + 1) % n == 0,
                drop_path=drop_paths[i],
                with_cp=with_cp,
                pad_small_map=pad_small_map,
                pretrained_window_size=pretrained_window_size,
            )
            self.blocks.append(SwinBlockV2(**{**args, **extra[i]}))

    def forward(
        self, x: torch.Tensor, in_shape: Sequence[int]
    ) -> tuple[torch.Tensor, Sequence[int]]:
        out_shape = in_shape
        if self.downsample is not None:
            x, out_shape = self.downsample(x, in_shape)
        for block in self.blocks:
            x = block(x, out_shape)
        return x, out_shape


@MODELS.register_module()
class SwinTransformerV2(BaseModule):
    """MMPretrain's Swin Transformer V2; arguments and keys in the module docstring.

    ``arch`` is a name of ``arch_zoo`` or a dict with ``embed_dims``, ``depths``,
    ``num_heads`` and ``extra_norm_every_n_blocks``; ``window_size`` is one size or one per
    stage. Returns a tuple of normalised ``(B, C_i, H_i, W_i)`` maps for ``out_indices``.
    """

    arch_zoo = {
        **dict.fromkeys(["t", "tiny"], {"embed_dims": 96, "depths": [2, 2, 6, 2],
                        "num_heads": [3, 6, 12, 24], "extra_norm_every_n_blocks": 0}),
        **dict.fromkeys(["s", "small"], {"embed_dims": 96, "depths": [2, 2, 18, 2],
                        "num_heads": [3, 6, 12, 24], "extra_norm_every_n_blocks": 0}),
        **dict.fromkeys(["b", "base"], {"embed_dims": 128, "depths": [2, 2, 18, 2],
                        "num_heads": [4, 8, 16, 32], "extra_norm_every_n_blocks": 0}),
        **dict.fromkeys(["l", "large"], {"embed_dims": 192, "depths": [2, 2, 18, 2],
                        "num_heads": [6, 12, 24, 48], "extra_norm_every_n_blocks": 0}),
        **dict.fromkeys(["h", "huge"], {"embed_dims": 352, "depths": [2, 2, 18, 2],
                        "num_heads": [8, 16, 32, 64], "extra_norm_every_n_blocks": 6}),
        **dict.fromkeys(["g", "giant"], {"embed_dims": 512, "depths": [2, 2, 42, 4],
                        "num_heads": [16, 32, 64, 128], "extra_norm_every_n_blocks": 6}),
    }  # fmt: skip
    _version = 1
    num_extra_tokens = 0

    def __init__(
        self,
        arch: str | dict = "tiny",
        img_size: int | Sequence[int] = 256,
        patch_size: int | Sequence[int] = 4,
        in_channels: int = 3,
        window_size: int | Sequence[int] = 8,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        out_indices: int | Sequence[int] = (3,),
        use_abs_pos_embed: bool = False,
        interpolate_mode: str = "bicubic",
        with_cp: bool = False,
        frozen_stages: int = -1,
        norm_eval: bool = False,
        pad_small_map: bool = False,
        norm_cfg: dict | None = dict(type="LN"),  # noqa: B006 (never mutated)
        stage_cfgs: dict | Sequence[dict] | None = None,
        patch_cfg: dict | None = None,
        pretrained_window_sizes: Sequence[int] = (0, 0, 0, 0),
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if isinstance(arch, str):
            arch = arch.lower()
        self.arch_settings = pick_arch(
            arch, self.arch_zoo, type(self).__name__,
            ("embed_dims", "depths", "num_heads", "extra_norm_every_n_blocks"),
        )  # fmt: skip
        self.embed_dims = self.arch_settings["embed_dims"]
        self.depths = list(self.arch_settings["depths"])
        self.num_heads = list(self.arch_settings["num_heads"])
        self.extra_norm_every_n_blocks = self.arch_settings["extra_norm_every_n_blocks"]
        self.num_layers = len(self.depths)
        if len(self.num_heads) != self.num_layers:
            raise ValueError(
                f"arch: depths={self.depths} and num_heads={self.num_heads} need one entry "
                "per stage"
            )
        self.out_indices = check_out_indices(out_indices, self.num_layers)
        self.use_abs_pos_embed = use_abs_pos_embed
        self.interpolate_mode = interpolate_mode
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.window_sizes = self._per_stage("window_size", window_size)
        pretrained_window_sizes = self._per_stage(
            "pretrained_window_sizes", pretrained_window_sizes
        )

        patch_args = dict(
            in_channels=in_channels,
            input_size=img_size,
            embed_dims=self.embed_dims,
            conv_type="Conv2d",
            kernel_size=patch_size,
            stride=patch_size,
            norm_cfg=dict(type="LN"),
        )
        self.patch_embed = PatchEmbed(**{**patch_args, **(patch_cfg or {})})
        self.patch_resolution = self.patch_embed.init_out_size
        if use_abs_pos_embed:
            h, w = self.patch_resolution
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, h * w, self.embed_dims))
        self.drop_after_pos = nn.Dropout(p=drop_rate)

        rates = drop_path_rates(drop_path_rate, self.depths)
        extra = per_item(stage_cfgs, self.num_layers, "stage_cfgs")
        self.stages = nn.ModuleList()
        dims = [self.embed_dims]
        for i, (depth, heads) in enumerate(zip(self.depths, self.num_heads)):
            args = dict(
                embed_dims=dims[-1],
                depth=depth,
                num_heads=heads,
                window_size=self.window_sizes[i],
                downsample=i > 0,
                drop_paths=rates[i],
                with_cp=with_cp,
                pad_small_map=pad_small_map,
                extra_norm_every_n_blocks=self.extra_norm_every_n_blocks,
                pretrained_window_size=pretrained_window_sizes[i],
                downsample_cfg=dict(use_post_norm=True),
            )
            stage = SwinBlockV2Sequence(**{**args, **extra[i]})
            self.stages.append(stage)
            dims.append(stage.out_channels)
        self.num_features = dims[1:]
        for i in self.out_indices:
            norm = nn.Identity() if norm_cfg is None else build_norm_layer(norm_cfg, dims[i + 1])[1]
            self.add_module(f"norm{i}", norm)
        install_remap_hook(self)  # plain load_state_dict calls rebuild the buffers too

    def _per_stage(self, name: str, value: int | Sequence[int]) -> list[int]:
        if isinstance(value, int):
            return [value] * self.num_layers
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise TypeError(f"{name} should be an int or a sequence of ints, got {value!r}")
        if len(value) != self.num_layers:
            raise ValueError(
                f"{name}={list(value)} needs one entry per stage ({self.num_layers} stages)"
            )
        return list(value)

    # ------------------------------------------------------------------ weights
    def init_weights(self) -> None:
        was_init = self.is_init
        super().init_weights()
        if was_init or loads_pretrained(self.init_cfg):
            return  # a loaded checkpoint keeps its position embedding
        if self.use_abs_pos_embed:
            nn.init.trunc_normal_(self.absolute_pos_embed, std=0.02)

    def remap_state_dict(self, state_dict: dict, prefix: str = "") -> list[tuple[str, str]]:
        """Put this model's own window buffers in place of a checkpoint's of another
        window (they follow from the window size) and resize an absolute position
        embedding of another grid."""
        own = {k: v for k, v in self.state_dict().items() if k.endswith(_REBUILT_BUFFERS)}
        for key in [k for k in state_dict if k.startswith(prefix) and k.endswith(_REBUILT_BUFFERS)]:
            name = key[len(prefix) :]
            if name not in own:
                del state_dict[key]  # upstream drops every one of them too
            elif state_dict[key].shape != own[name].shape:
                state_dict[key] = own[name].clone()  # another window: this model's own
        key = prefix + "absolute_pos_embed"
        ckpt = state_dict.get(key)
        if (
            self.use_abs_pos_embed
            and isinstance(ckpt, torch.Tensor)
            and ckpt.shape != self.absolute_pos_embed.shape
        ):
            logger.info("Resize the absolute_pos_embed shape from %s to %s.", tuple(ckpt.shape),
                        tuple(self.absolute_pos_embed.shape))  # fmt: skip
            side = int((ckpt.shape[1] - self.num_extra_tokens) ** 0.5)
            state_dict[key] = resize_pos_embed(
                ckpt, (side, side), self.patch_embed.init_out_size, self.interpolate_mode,
                self.num_extra_tokens,
            )  # fmt: skip
        return []

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x, hw_shape = self.patch_embed(x)
        if self.use_abs_pos_embed:
            x = x + resize_pos_embed(
                self.absolute_pos_embed, self.patch_resolution, hw_shape,
                self.interpolate_mode, self.num_extra_tokens,
            )  # fmt: skip
        x = self.drop_after_pos(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x, hw_shape = stage(x, hw_shape)
            if i in self.out_indices:
                out = getattr(self, f"norm{i}")(x)
                outs.append(
                    out.view(-1, *hw_shape, stage.out_channels).permute(0, 3, 1, 2).contiguous()
                )
        return tuple(outs)

    # ------------------------------------------------------------------ freezing
    def _freeze_stages(self) -> None:
        if self.frozen_stages >= 0:
            self.patch_embed.eval()
            for param in self.patch_embed.parameters():
                param.requires_grad = False
        for i in range(min(self.frozen_stages + 1, len(self.stages))):
            self.stages[i].eval()
            for param in self.stages[i].parameters():
                param.requires_grad = False
        for i in self.out_indices:
            if i <= self.frozen_stages:
                for param in getattr(self, f"norm{i}").parameters():
                    param.requires_grad = False

    def train(self, mode: bool = True) -> SwinTransformerV2:
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()  # only BatchNorm statistics are frozen by norm_eval
        return self
