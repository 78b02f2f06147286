"""Swin Transformer backbone (`Swin Transformer: Hierarchical Vision Transformer using
Shifted Windows <https://arxiv.org/abs/2103.14030>`_), with MMPretrain's arguments and keys.

This is the plain ``SwinTransformer`` (MMPretrain's, with an ``arch`` table); the one
MMSegmentation's configs name is ``swin_mmseg.SegSwinTransformer`` (scope ``mmseg``).
Both run the shared window attention of ``vistra.models.layers.window_attention``.

Keys:

- ``patch_embed.projection`` / ``patch_embed.norm``; ``absolute_pos_embed`` with
  ``use_abs_pos_embed``;
- ``stages.{i}.blocks.{j}.norm1``, ``.attn.w_msa.relative_position_bias_table``,
  ``.attn.w_msa.relative_position_index`` (a stored buffer), ``.attn.w_msa.qkv``,
  ``.attn.w_msa.proj``, ``.norm2``, ``.ffn.layers.0.0``, ``.ffn.layers.1``;
- ``stages.{i}.downsample.norm`` / ``.reduction``: patch merging (``nn.Unfold`` order)
  closing every stage but the last;
- ``norm{i}`` for each index of ``out_indices``.

Semantics kept from upstream: odd blocks of a stage shift the windows by
``window_size // 2``; with ``pad_small_map=False`` a map one window across is not shifted
and a smaller one is an error (so 224-pixel inputs for window 7); a stage's output is taken
before its patch merging unless ``out_after_downsample``; ``frozen_stages=k`` freezes the
patch embedding and stages ``0..k`` (``k + 1`` stages). ``stage_cfgs`` / ``block_cfgs`` /
``attn_cfgs`` / ``ffn_cfgs`` / ``downsample_cfg`` / ``patch_cfg`` override the arguments of
the parts they name, as in MMPretrain's configs (``stage_cfgs=dict(block_cfgs=dict(
window_size=12))`` for the 384-pixel models).

Loading: relative position bias tables of another window are resized (MMPretrain's
geometric bicubic resizing), an absolute position embedding of another grid is
interpolated, and checkpoints older than the layout version 3 get upstream's conversions
(``norm.*`` to ``norm3.*``, ``attn_mask`` buffers dropped).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from copy import deepcopy
from typing import Any

import torch
import torch.utils.checkpoint as cp
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers.key_remap import install_remap_hook
from vistra.models.layers.norm import build_norm_layer
from vistra.models.layers.patch_embed import PatchEmbed
from vistra.models.layers.patch_merging import PatchMerging
from vistra.models.layers.pos_embed import resize_pos_embed
from vistra.models.layers.transformer import FFN
from vistra.models.layers.window_attention import (
    ShiftWindowMSA,
    resize_relative_position_bias_table,
)
from vistra.models.utils.arch import pick_arch
from vistra.registry import MODELS

logger = logging.getLogger(__name__)


def per_item(cfgs: Mapping | Sequence[Mapping] | None, count: int, name: str) -> list[dict]:
    """``count`` dicts of extra arguments: one dict copied for every item, or one per item."""
    if cfgs is None:
        return [{} for _ in range(count)]
    if isinstance(cfgs, Mapping):
        return [deepcopy(dict(cfgs)) for _ in range(count)]
    cfgs = list(cfgs)
    if len(cfgs) != count:
        raise ValueError(f"{name} has {len(cfgs)} entries, expected one dict or {count}")
    return [dict(c) for c in cfgs]


def check_out_indices(out_indices: int | Sequence[int], num_stages: int) -> tuple[int, ...]:
    """The stage indices as a tuple; each must name a stage (``0..num_stages-1``)."""
    if isinstance(out_indices, int):
        out_indices = (out_indices,)
    if not isinstance(out_indices, Sequence) or not all(isinstance(i, int) for i in out_indices):
        raise TypeError(f"out_indices must be an int or a sequence of ints, got {out_indices!r}")
    bad = [i for i in out_indices if not 0 <= i < num_stages]
    if bad:
        raise ValueError(
            f"out_indices={list(out_indices)}: {bad} not a stage index in 0..{num_stages - 1}"
        )
    return tuple(out_indices)


def drop_path_rates(rate: float, depths: Sequence[int]) -> list[list[float]]:
    """Stochastic depth growing linearly from 0 to ``rate`` over all blocks, split by stage."""
    rates = torch.linspace(0, rate, sum(depths), device="cpu").tolist()
    out, start = [], 0
    for depth in depths:
        out.append(rates[start : start + depth])
        start += depth
    return out


class SwinBlock(BaseModule):
    """``x = x + attn(norm1(x))``, then ``x = x + ffn(norm2(x))`` (the FFN adds its own
    identity), both branches through DropPath; ``shift`` makes it a shifted-window block."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        window_size: int = 7,
        shift: bool = False,
        ffn_ratio: float = 4.0,
        drop_path: float = 0.0,
        pad_small_map: bool = False,
        attn_cfgs: dict | None = None,
        ffn_cfgs: dict | None = None,
        norm_cfg: dict | None = None,
        with_cp: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        norm_cfg = dict(type="LN") if norm_cfg is None else norm_cfg
        self.with_cp = with_cp
        attn_args = dict(
            embed_dims=embed_dims,
            num_heads=num_heads,
            shift_size=window_size // 2 if shift else 0,
            window_size=window_size,
            dropout_layer=dict(type="DropPath", drop_prob=drop_path),
            pad_small_map=pad_small_map,
        )
        attn_args.update(attn_cfgs or {})
        self.norm1 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.attn = ShiftWindowMSA(**attn_args)
        ffn_args = dict(
            embed_dims=embed_dims,
            feedforward_channels=int(embed_dims * ffn_ratio),
            num_fcs=2,
            ffn_drop=0,
            dropout_layer=dict(type="DropPath", drop_prob=drop_path),
            act_cfg=dict(type="GELU"),
        )
        ffn_args.update(ffn_cfgs or {})
        self.norm2 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.ffn = FFN(**ffn_args)

    def _inner_forward(self, x: torch.Tensor, hw_shape: Sequence[int]) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), hw_shape)
        return self.ffn(self.norm2(x), identity=x)

    def forward(self, x: torch.Tensor, hw_shape: Sequence[int]) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._inner_forward, x, hw_shape, use_reentrant=False)
        return self._inner_forward(x, hw_shape)


class SwinBlockSequence(BaseModule):
    """``depth`` blocks, alternately plain and shifted, and the patch merging that closes
    the stage (``downsample``; run by the backbone, see ``forward``)."""

    def __init__(
        self,
        embed_dims: int,
        depth: int,
        num_heads: int,
        window_size: int = 7,
        downsample: bool = False,
        downsample_cfg: dict | None = None,
        drop_paths: float | Sequence[float] = 0.0,
        block_cfgs: dict | Sequence[dict] | None = None,
        with_cp: bool = False,
        pad_small_map: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if not isinstance(drop_paths, Sequence):
            drop_paths = [drop_paths] * depth
        if len(drop_paths) != depth:
            raise ValueError(f"drop_paths has {len(drop_paths)} rates for depth={depth}")
        extra = per_item(block_cfgs, depth, "block_cfgs")
        self.embed_dims = embed_dims
        self.blocks = nn.ModuleList()
        for i in range(depth):
            args = dict(
                embed_dims=embed_dims,
                num_heads=num_heads,
                window_size=window_size,
                shift=i % 2 == 1,
                drop_path=drop_paths[i],
                with_cp=with_cp,
                pad_small_map=pad_small_map,
            )
            self.blocks.append(SwinBlock(**{**args, **extra[i]}))
        self.downsample: PatchMerging | None = None
        if downsample:
            args = dict(
                in_channels=embed_dims, out_channels=2 * embed_dims, norm_cfg=dict(type="LN")
            )
            self.downsample = PatchMerging(**{**args, **(downsample_cfg or {})})

    def forward(
        self, x: torch.Tensor, in_shape: Sequence[int], do_downsample: bool = True
    ) -> tuple[torch.Tensor, Sequence[int]]:
        for block in self.blocks:
            x = block(x, in_shape)
        if self.downsample is not None and do_downsample:
            return self.downsample(x, in_shape)
        return x, in_shape

    @property
    def out_channels(self) -> int:
        return self.downsample.out_channels if self.downsample is not None else self.embed_dims


@MODELS.register_module()
class SwinTransformer(BaseModule):
    """MMPretrain's Swin Transformer; arguments and keys in the module docstring.

    ``arch`` is a name of ``arch_zoo`` or a dict with ``embed_dims``, ``depths`` and
    ``num_heads``. Returns a tuple of ``(B, C_i, H_i, W_i)`` maps, one per index of
    ``out_indices``, each normalised by ``norm{i}`` (``norm_cfg=None``: not normalised).
    """

    arch_zoo = {
        **dict.fromkeys(
            ["t", "tiny"], {"embed_dims": 96, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24]}
        ),
        **dict.fromkeys(
            ["s", "small"],
            {"embed_dims": 96, "depths": [2, 2, 18, 2], "num_heads": [3, 6, 12, 24]},
        ),
        **dict.fromkeys(
            ["b", "base"],
            {"embed_dims": 128, "depths": [2, 2, 18, 2], "num_heads": [4, 8, 16, 32]},
        ),
        **dict.fromkeys(
            ["l", "large"],
            {"embed_dims": 192, "depths": [2, 2, 18, 2], "num_heads": [6, 12, 24, 48]},
        ),
    }
    # state-dict layout version (torch stores it in the checkpoint's metadata): 1 had a
    # single final ``norm``, 2 stored ``attn_mask`` buffers
    _version = 3
    num_extra_tokens = 0

    def __init__(
        self,
        arch: str | dict = "tiny",
        img_size: int | Sequence[int] = 224,
        patch_size: int | Sequence[int] = 4,
        in_channels: int = 3,
        window_size: int = 7,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        out_indices: int | Sequence[int] = (3,),
        out_after_downsample: bool = False,
        use_abs_pos_embed: bool = False,
        interpolate_mode: str = "bicubic",
        with_cp: bool = False,
        frozen_stages: int = -1,
        norm_eval: bool = False,
        pad_small_map: bool = False,
        norm_cfg: dict | None = dict(type="LN"),  # noqa: B006 (never mutated)
        stage_cfgs: dict | Sequence[dict] | None = None,
        patch_cfg: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if isinstance(arch, str):
            arch = arch.lower()
        self.arch_settings = pick_arch(
            arch, self.arch_zoo, type(self).__name__, ("embed_dims", "depths", "num_heads")
        )
        self.embed_dims = self.arch_settings["embed_dims"]
        self.depths = list(self.arch_settings["depths"])
        self.num_heads = list(self.arch_settings["num_heads"])
        if len(self.num_heads) != len(self.depths):
            raise ValueError(
                f"arch: depths={self.depths} and num_heads={self.num_heads} need one entry "
                "per stage"
            )
        self.num_layers = len(self.depths)
        self.out_indices = check_out_indices(out_indices, self.num_layers)
        self.out_after_downsample = out_after_downsample
        self.use_abs_pos_embed = use_abs_pos_embed
        self.interpolate_mode = interpolate_mode
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

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
                window_size=window_size,
                downsample=i < self.num_layers - 1,
                drop_paths=rates[i],
                with_cp=with_cp,
                pad_small_map=pad_small_map,
            )
            stage = SwinBlockSequence(**{**args, **extra[i]})
            self.stages.append(stage)
            dims.append(stage.out_channels)
        self.num_features = dims[1:] if out_after_downsample else dims[:-1]
        for i in self.out_indices:
            norm = (
                nn.Identity()
                if norm_cfg is None
                else build_norm_layer(norm_cfg, self.num_features[i])[1]
            )
            self.add_module(f"norm{i}", norm)
        install_remap_hook(self)  # plain load_state_dict calls convert checkpoints too

    # ------------------------------------------------------------------ weights
    def init_weights(self) -> None:
        was_init = self.is_init
        super().init_weights()
        if was_init or loads_pretrained(self.init_cfg):
            return  # a loaded checkpoint keeps its position embedding
        if self.use_abs_pos_embed:
            nn.init.trunc_normal_(self.absolute_pos_embed, std=0.02)

    def remap_state_dict(self, state_dict: dict, prefix: str = "") -> list[tuple[str, str]]:
        """Upstream's load-time conversions, in place (module docstring); returns the
        renamed keys."""
        renamed: list[tuple[str, str]] = []
        version = _checkpoint_version(state_dict, prefix)
        if type(self) is SwinTransformer and (version is None or version < 2):
            last = f"{prefix}norm{len(self.stages) - 1}."
            for key in [k for k in state_dict if k.startswith(prefix + "norm.")]:
                new = last + key[len(prefix + "norm.") :]
                state_dict[new] = state_dict.pop(key)
                renamed.append((key, new))
        if type(self) is SwinTransformer and (version is None or version < 3):
            for key in [k for k in state_dict if k.startswith(prefix) and "attn_mask" in k]:
                del state_dict[key]  # version 2 stored the shift masks; they are rebuilt
        self._resize_bias_tables(state_dict, prefix)
        if self.use_abs_pos_embed:
            self._resize_abs_pos_embed(state_dict, prefix)
        return renamed

    def _resize_bias_tables(self, state_dict: dict, prefix: str) -> None:
        own = self.state_dict()
        for name, table in own.items():
            if not name.endswith("relative_position_bias_table"):
                continue
            ckpt = state_dict.get(prefix + name)
            if not isinstance(ckpt, torch.Tensor) or ckpt.shape == table.shape:
                continue
            (l1, h1), (l2, h2) = ckpt.shape, table.shape
            if h1 != h2:
                continue  # another head count: the load report shows the mismatch
            src, dst = int(l1**0.5), int(l2**0.5)
            logger.info("Resize %s%s from %s to %s.", prefix, name, tuple(ckpt.shape), (l2, h2))
            state_dict[prefix + name] = resize_relative_position_bias_table(src, dst, ckpt, h1)
            index = name.replace("bias_table", "index")
            # the index belongs to the window size: this model's own one is the right one
            state_dict[prefix + index] = own[index].clone()

    def _resize_abs_pos_embed(self, state_dict: dict, prefix: str) -> None:
        key = prefix + "absolute_pos_embed"
        ckpt = state_dict.get(key)
        if not isinstance(ckpt, torch.Tensor) or ckpt.shape == self.absolute_pos_embed.shape:
            return
        logger.info("Resize the absolute_pos_embed shape from %s to %s.", tuple(ckpt.shape),
                    tuple(self.absolute_pos_embed.shape))  # fmt: skip
        side = int((ckpt.shape[1] - self.num_extra_tokens) ** 0.5)
        state_dict[key] = resize_pos_embed(
            ckpt, (side, side), self.patch_embed.init_out_size, self.interpolate_mode,
            self.num_extra_tokens,
        )  # fmt: skip

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
            x, hw_shape = stage(x, hw_shape, do_downsample=self.out_after_downsample)
            if i in self.out_indices:
                out = getattr(self, f"norm{i}")(x)
                outs.append(
                    out.view(-1, *hw_shape, self.num_features[i]).permute(0, 3, 1, 2).contiguous()
                )
            if stage.downsample is not None and not self.out_after_downsample:
                x, hw_shape = stage.downsample(x, hw_shape)
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

    def train(self, mode: bool = True) -> SwinTransformer:
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()  # only BatchNorm statistics are frozen by norm_eval
        return self

    def get_layer_depth(self, param_name: str, prefix: str = "") -> tuple[int, int]:
        """``(layer id, number of layers)`` of a parameter for layer-wise lr decay: the
        patch embedding is 0, block ``j`` of stage ``i`` is ``sum(depths[:i]) + j + 1``, a
        stage's patch merging counts with its last block, everything after is last."""
        num_layers = sum(self.depths) + 2
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers  # a module after the backbone (the head)
        name = param_name[len(prefix) :]
        if name.startswith("patch_embed"):
            return 0, num_layers
        if name.startswith("stages"):
            parts = name.split(".")
            stage_id, block_id = int(parts[1]), parts[3]
            if block_id in ("reduction", "norm"):
                return sum(self.depths[: stage_id + 1]), num_layers
            return sum(self.depths[:stage_id]) + int(block_id) + 1, num_layers
        return num_layers - 1, num_layers


def loads_pretrained(init_cfg: Any) -> bool:
    return isinstance(init_cfg, Mapping) and init_cfg.get("type") == "Pretrained"


def _checkpoint_version(state_dict: Mapping, prefix: str) -> int | None:
    """The layout version torch recorded for the module at ``prefix``, if any."""
    metadata = getattr(state_dict, "_metadata", None) or {}
    return (metadata.get(prefix[:-1] if prefix.endswith(".") else prefix) or {}).get("version")
