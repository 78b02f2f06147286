"""Twins (`paper <https://arxiv.org/abs/2104.13840>`__): ``PCPVT`` and ``SVT``, as
MMPretrain's (the plain entries, ``ClsPCPVT`` / ``ClsSVT``) and as MMSegmentation's
(scope ``mmseg``, the classes ``PCPVT`` / ``SVT``).

Both packages build the same networks -- four-stage (or as many as ``depths`` has)
pyramids of global sub-sampled attention (GSA) blocks, SVT's even blocks locally grouped
self-attention (LSA), a conditional position encoding (a 3x3 depthwise conv with a
residual) after each stage's first block -- with other arguments and other keys:

- MMPretrain: an ``arch`` table (``embed_dims``, ``depths``, ``num_heads``,
  ``patch_sizes``, ``strides``, ``mlp_ratios``, ``sr_ratios``, SVT's ``window_sizes``);
  keys ``patch_embeds.{i}.projection`` / ``.norm``, ``position_encodings.{i}.proj``,
  ``stages.{i}.{j}.norm1`` / ``.attn.*`` / ``.norm2`` / ``.ffn.layers.0.0`` /
  ``.ffn.layers.1``, where GSA is ``attn.q``, ``attn.kv``, ``attn.proj`` (and ``attn.sr`` /
  ``attn.norm`` for ``sr_ratio > 1``) and LSA ``attn.qkv``, ``attn.proj``; and
  ``norm_after_stage{i}`` for the stages ``norm_after_stage`` names. The blocks' norms follow
  ``norm_cfg``; the patch embeddings' are always plain LayerNorm.
- MMSegmentation: the sizes given directly (no ``arch``; SVT's window argument keeps
  upstream's spelling ``windiow_sizes``); keys ``layers.{i}.{j}.*``, GSA with the keys of
  SegFormer's efficient attention (``attn.attn.in_proj_weight``, ``attn.attn.out_proj``,
  ``attn.sr`` / ``attn.norm``), ``norm_list.{i}`` with ``norm_after_stage``; the blocks
  always use plain LayerNorm and GELU whatever ``norm_cfg`` says (``norm_cfg`` goes to the
  patch embeddings and ``norm_list``).

Semantics kept from upstream (both): stochastic depth is applied twice per branch in
training (inside the attention / FFN and again around them), and the local attention
masks the padding of a map only when it is padded both at the bottom and at the right
(upstream's ``mask[:, -0:]`` marks the whole map when one of the pads is zero, which then
masks nothing).

Order: global sub-sampled attention (both layouts), its layers, locally grouped
attention, its layer, conditional position encoding, MMSegmentation's PCPVT and SVT,
MMPretrain's PCPVT and SVT.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.backbones.mit import EfficientMultiheadAttention
from vistra.models.base import BaseModule
from vistra.models.init import constant_init, normal_init, trunc_normal_init
from vistra.models.layers.drop import build_dropout
from vistra.models.layers.norm import build_norm_layer
from vistra.models.layers.patch_embed import PatchEmbed
from vistra.models.layers.transformer import FFN, MultiheadAttention
from vistra.models.utils.arch import pick_arch
from vistra.registry import MODELS


class GlobalSubsampledAttention(EfficientMultiheadAttention):
    """Twins' GSA: SegFormer's efficient attention (keys/values from the ``sr_ratio``
    sub-sampled map), with ``qkv_bias=True`` by default."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        dropout_layer: dict | None = None,
        batch_first: bool = True,
        qkv_bias: bool = True,
        norm_cfg: dict = dict(type="LN"),  # noqa: B006 (never mutated)
        sr_ratio: int = 1,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(
            embed_dims,
            num_heads,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            dropout_layer=dropout_layer,
            batch_first=batch_first,
            qkv_bias=qkv_bias,
            norm_cfg=norm_cfg,
            sr_ratio=sr_ratio,
            init_cfg=init_cfg,
        )


def _drop_path(rate: float) -> nn.Module:
    return build_dropout(dict(type="DropPath", drop_prob=rate)) if rate > 0 else nn.Identity()


class GSAEncoderLayer(BaseModule):
    """``x = x + drop_path(gsa(norm1(x)))``, then ``x = x + drop_path(ffn(norm2(x)))``;
    ``attention_cls`` is the GSA layout (MMSegmentation's here)."""

    attention_cls: type[nn.Module] = GlobalSubsampledAttention

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        feedforward_channels: int,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        num_fcs: int = 2,
        qkv_bias: bool = True,
        act_cfg: dict = dict(type="GELU"),  # noqa: B006 (never mutated)
        norm_cfg: dict = dict(type="LN"),  # noqa: B006 (never mutated)
        sr_ratio: float = 1.0,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        inner_drop = dict(type="DropPath", drop_prob=drop_path_rate)
        self.norm1 = build_norm_layer(norm_cfg, embed_dims, postfix=1)[1]
        self.attn = self.attention_cls(
            embed_dims=embed_dims,
            num_heads=num_heads,
            attn_drop=attn_drop_rate,
            proj_drop=drop_rate,
            dropout_layer=inner_drop,
            qkv_bias=qkv_bias,
            norm_cfg=norm_cfg,
            sr_ratio=int(sr_ratio),
        )
        self.norm2 = build_norm_layer(norm_cfg, embed_dims, postfix=2)[1]
        self.ffn = FFN(
            embed_dims=embed_dims,
            feedforward_channels=feedforward_channels,
            num_fcs=num_fcs,
            ffn_drop=drop_rate,
            dropout_layer=inner_drop,
            act_cfg=act_cfg,
            add_identity=False,
        )
        self.drop_path = _drop_path(drop_path_rate)

    def forward(self, x: torch.Tensor, hw_shape: Sequence[int]) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), hw_shape, identity=0.0))
        return x + self.drop_path(self.ffn(self.norm2(x)))


class LocallyGroupedSelfAttention(BaseModule):
    """Twins' LSA: multi-head self-attention within non-overlapping ``window_size``
    windows of the (bottom/right zero-padded) map. Keys ``qkv``, ``proj``."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int = 8,
        qkv_bias: bool = False,
        qk_scale: float | None = None,
        attn_drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        window_size: int = 1,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if embed_dims % num_heads:
            raise ValueError(f"embed_dims={embed_dims} must be divisible by num_heads={num_heads}")
        self.embed_dims, self.num_heads, self.window_size = embed_dims, num_heads, window_size
        self.scale = qk_scale or (embed_dims // num_heads) ** -0.5
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=qkv_bias)
        self.attn_drop = attn_drop_rate
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop_rate)

    def _padding_mask(self, hp: int, wp: int, pad_b: int, pad_r: int, device) -> torch.Tensor:
        """``(1, nW, 1, ws*ws, ws*ws)`` additive mask, ``-1000`` between padded and real
        positions. Upstream marks rows ``-pad_b:`` and columns ``-pad_r:``; a zero pad
        marks everything (``-0:``), which is kept here."""
        ws = self.window_size
        rows = torch.arange(hp, device=device)[:, None]
        cols = torch.arange(wp, device=device)[None, :]
        padded = (rows >= (hp - pad_b if pad_b else 0)) | (cols >= (wp - pad_r if pad_r else 0))
        padded = padded.float().reshape(hp // ws, ws, wp // ws, ws).transpose(1, 2)
        padded = padded.reshape(1, -1, ws * ws)
        diff = padded.unsqueeze(2) - padded.unsqueeze(3)
        mask = diff.masked_fill(diff != 0, -1000.0).masked_fill(diff == 0, 0.0)
        return mask.unsqueeze(2)

    def forward(self, x: torch.Tensor, hw_shape: Sequence[int]) -> torch.Tensor:
        b, n, c = x.shape
        h, w = hw_shape
        ws = self.window_size
        pad_r, pad_b = (ws - w % ws) % ws, (ws - h % ws) % ws
        x = F.pad(x.view(b, h, w, c), (0, 0, 0, pad_r, 0, pad_b))
        hp, wp = x.shape[1], x.shape[2]
        gh, gw = hp // ws, wp // ws
        x = x.reshape(b, gh, ws, gw, ws, c).transpose(2, 3)  # (b, gh, gw, ws, ws, c)
        qkv = self.qkv(x).reshape(b, gh * gw, ws * ws, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # (b, nW, heads, ws*ws, d)
        mask = self._padding_mask(hp, wp, pad_b, pad_r, x.device).to(q.dtype)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.attn_drop if self.training else 0.0,
            scale=self.scale,
        )
        out = out.transpose(2, 3).reshape(b, gh, gw, ws, ws, c).transpose(2, 3)
        out = out.reshape(b, hp, wp, c)[:, :h, :w, :].reshape(b, n, c)
        return self.proj_drop(self.proj(out))


class LSAEncoderLayer(BaseModule):
    """``x = x + drop_path(lsa(norm1(x)))``, then ``x = x + drop_path(ffn(norm2(x)))``."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        feedforward_channels: int,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        num_fcs: int = 2,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        act_cfg: dict = dict(type="GELU"),  # noqa: B006 (never mutated)
        norm_cfg: dict = dict(type="LN"),  # noqa: B006 (never mutated)
        window_size: int = 1,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.norm1 = build_norm_layer(norm_cfg, embed_dims, postfix=1)[1]
        self.attn = LocallyGroupedSelfAttention(
            embed_dims, num_heads, qkv_bias, qk_scale, attn_drop_rate, drop_rate, window_size
        )
        self.norm2 = build_norm_layer(norm_cfg, embed_dims, postfix=2)[1]
        self.ffn = FFN(
            embed_dims=embed_dims,
            feedforward_channels=feedforward_channels,
            num_fcs=num_fcs,
            ffn_drop=drop_rate,
            dropout_layer=dict(type="DropPath", drop_prob=drop_path_rate),
            act_cfg=act_cfg,
            add_identity=False,
        )
        self.drop_path = _drop_path(drop_path_rate)

    def forward(self, x: torch.Tensor, hw_shape: Sequence[int]) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), hw_shape))
        return x + self.drop_path(self.ffn(self.norm2(x)))


class ConditionalPositionEncoding(BaseModule):
    """Position encoding generated from the tokens by a 3x3 depthwise conv ``proj``
    (``x + proj(x)`` at ``stride=1``, ``proj(x)`` otherwise)."""

    def __init__(
        self,
        in_channels: int,
        embed_dims: int = 768,
        stride: int = 1,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.proj = nn.Conv2d(
            in_channels, embed_dims, 3, stride=stride, padding=1, bias=True, groups=embed_dims
        )
        self.stride = stride

    def forward(self, x: torch.Tensor, hw_shape: Sequence[int]) -> torch.Tensor:
        b, n, c = x.shape
        feat = x.transpose(1, 2).view(b, c, *hw_shape)
        out = self.proj(feat) + feat if self.stride == 1 else self.proj(feat)
        return out.flatten(2).transpose(1, 2)


def _twins_init_weights(model: BaseModule) -> None:
    """Both packages' default: ``init_cfg`` if given; else truncated-normal linears, unit
    norms, He-normal convs by fan-out per group (children's own init_weights not run)."""
    if model.is_init:
        return
    if model.init_cfg is not None:
        BaseModule.init_weights(model)
        return
    for m in model.modules():
        if isinstance(m, nn.Linear):
            trunc_normal_init(m, std=0.02, bias=0.0)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm | nn.GroupNorm | nn.LayerNorm):
            constant_init(m, val=1.0, bias=0.0)
        elif isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            normal_init(m, mean=0.0, std=math.sqrt(2.0 / fan_out), bias=0.0)
    model._is_init = True


@MODELS.register_module(name="PCPVT", scope="mmseg")
class PCPVT(BaseModule):
    """MMSegmentation's Twins-PCPVT: a pyramid of global sub-sampled attention blocks with conditional
    position encodings; returns a tuple of ``(B, embed_dims[i], H_i, W_i)`` maps for the
    ``out_indices`` stages."""

    def __init__(
        self,
        in_channels: int = 3,
        embed_dims: Sequence[int] = (64, 128, 256, 512),
        patch_sizes: Sequence[int] = (4, 2, 2, 2),
        strides: Sequence[int] = (4, 2, 2, 2),
        num_heads: Sequence[int] = (1, 2, 4, 8),
        mlp_ratios: Sequence[int] = (4, 4, 4, 4),
        out_indices: Sequence[int] = (0, 1, 2, 3),
        qkv_bias: bool = False,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_cfg: dict = dict(type="LN"),  # noqa: B006 (never mutated)
        depths: Sequence[int] = (3, 4, 6, 3),
        sr_ratios: Sequence[int] = (8, 4, 2, 1),
        norm_after_stage: bool = False,
        pretrained: str | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        if init_cfg and pretrained:
            raise ValueError(f"{type(self).__name__}: init_cfg and pretrained cannot both be set")
        if pretrained is not None:
            if not isinstance(pretrained, str):
                raise TypeError(f"pretrained must be a str or None, got {pretrained!r}")
            init_cfg = dict(type="Pretrained", checkpoint=pretrained)
        super().__init__(init_cfg)
        per_stage = dict(
            embed_dims=embed_dims,
            patch_sizes=patch_sizes,
            strides=strides,
            num_heads=num_heads,
            mlp_ratios=mlp_ratios,
            sr_ratios=sr_ratios,
        )
        short = {k: list(v) for k, v in per_stage.items() if len(v) < len(depths)}
        if short:
            raise ValueError(f"depths={list(depths)}: these need one entry per stage: {short}")
        self.depths, self.out_indices = list(depths), tuple(out_indices)
        self.patch_embeds = nn.ModuleList(
            PatchEmbed(
                in_channels=in_channels if i == 0 else embed_dims[i - 1],
                embed_dims=embed_dims[i],
                kernel_size=patch_sizes[i],
                stride=strides[i],
                padding="corner",
                norm_cfg=norm_cfg,
            )
            for i in range(len(depths))
        )
        self.position_encoding_drops = nn.ModuleList(
            nn.Dropout(p=drop_rate) for _ in range(len(depths))
        )
        self.position_encodings = nn.ModuleList(
            ConditionalPositionEncoding(dims, dims) for dims in embed_dims
        )
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        self.layers = nn.ModuleList()
        cur = 0
        for k, depth in enumerate(depths):
            self.layers.append(
                nn.ModuleList(
                    GSAEncoderLayer(
                        embed_dims=embed_dims[k],
                        num_heads=num_heads[k],
                        feedforward_channels=mlp_ratios[k] * embed_dims[k],
                        attn_drop_rate=attn_drop_rate,
                        drop_rate=drop_rate,
                        drop_path_rate=rates[cur + i],
                        num_fcs=2,
                        qkv_bias=qkv_bias,
                        sr_ratio=sr_ratios[k],
                    )
                    for i in range(depth)
                )
            )
            cur += depth
        self.norm_after_stage = norm_after_stage
        if norm_after_stage:
            self.norm_list = nn.ModuleList(build_norm_layer(norm_cfg, d)[1] for d in embed_dims)

    def init_weights(self) -> None:
        _twins_init_weights(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = []
        b = x.shape[0]
        for i in range(len(self.depths)):
            x, hw_shape = self.patch_embeds[i](x)
            x = self.position_encoding_drops[i](x)
            for j, block in enumerate(self.layers[i]):
                x = block(x, hw_shape)
                if j == 0:  # the position encoding follows the first block
                    x = self.position_encodings[i](x, hw_shape)
            if self.norm_after_stage:
                x = self.norm_list[i](x)
            x = x.reshape(b, *hw_shape, -1).permute(0, 3, 1, 2).contiguous()
            if i in self.out_indices:
                outputs.append(x)
        return tuple(outputs)


@MODELS.register_module(name="SVT", scope="mmseg")
class SVT(PCPVT):
    """MMSegmentation's Twins-SVT: PCPVT whose even blocks are locally grouped (windowed) attention with
    ``windiow_sizes[i]`` windows (upstream's spelling) and odd blocks global sub-sampled
    attention; normalises each stage output by default."""

    def __init__(
        self,
        in_channels: int = 3,
        embed_dims: Sequence[int] = (64, 128, 256),
        patch_sizes: Sequence[int] = (4, 2, 2, 2),
        strides: Sequence[int] = (4, 2, 2, 2),
        num_heads: Sequence[int] = (1, 2, 4),
        mlp_ratios: Sequence[int] = (4, 4, 4),
        out_indices: Sequence[int] = (0, 1, 2, 3),
        qkv_bias: bool = False,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.2,
        norm_cfg: dict = dict(type="LN"),  # noqa: B006 (never mutated)
        depths: Sequence[int] = (4, 4, 4),
        sr_ratios: Sequence[int] = (4, 2, 1),
        windiow_sizes: Sequence[int] = (7, 7, 7),
        norm_after_stage: bool = True,
        pretrained: str | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            embed_dims,
            patch_sizes,
            strides,
            num_heads,
            mlp_ratios,
            out_indices,
            qkv_bias,
            drop_rate,
            attn_drop_rate,
            drop_path_rate,
            norm_cfg,
            depths,
            sr_ratios,
            norm_after_stage,
            pretrained,
            init_cfg,
        )
        if len(windiow_sizes) < len(depths):
            raise ValueError(
                f"depths={list(depths)}: windiow_sizes={list(windiow_sizes)} needs one entry "
                "per stage"
            )
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        for k, depth in enumerate(depths):
            for i in range(0, depth, 2):
                self.layers[k][i] = LSAEncoderLayer(
                    embed_dims=embed_dims[k],
                    num_heads=num_heads[k],
                    feedforward_channels=mlp_ratios[k] * embed_dims[k],
                    drop_rate=drop_rate,
                    attn_drop_rate=attn_drop_rate,
                    drop_path_rate=rates[sum(depths[:k]) + i],
                    qkv_bias=qkv_bias,
                    window_size=windiow_sizes[k],
                )


# ----------------------------------------------------------------------------- MMPretrain
class ClsGlobalSubsampledAttention(MultiheadAttention):
    """MMPretrain's GSA: queries from every token (``q``), keys and values (``kv``) from the
    map sub-sampled by an ``sr_ratio``-strided conv ``sr`` and normalised (``norm``).
    The other arguments (``attn_drop``, ``proj_drop``, ``dropout_layer``, ...) are
    ``MultiheadAttention``'s."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        norm_cfg: dict = dict(type="LN"),  # noqa: B006 (never mutated)
        qkv_bias: bool = True,
        sr_ratio: int = 1,
        **kwargs,
    ) -> None:
        super().__init__(embed_dims, num_heads, **kwargs)
        del self.qkv  # q and kv come from different token sets
        self.q = nn.Linear(self.input_dims, embed_dims, bias=qkv_bias)
        self.kv = nn.Linear(self.input_dims, embed_dims * 2, bias=qkv_bias)
        self.sr_ratio = int(sr_ratio)
        if self.sr_ratio > 1:
            self.sr = nn.Conv2d(embed_dims, embed_dims, self.sr_ratio, stride=self.sr_ratio)
            self.norm = build_norm_layer(norm_cfg, embed_dims)[1]

    def forward(self, x: torch.Tensor, hw_shape: Sequence[int]) -> torch.Tensor:
        b, n, c = x.shape
        h, w = hw_shape
        if h * w != n:
            raise ValueError(f"GSA: {n} tokens do not make an {h}x{w} map")
        q = self.q(x).reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)
        if self.sr_ratio > 1:
            x = self.sr(x.transpose(1, 2).reshape(b, c, h, w)).reshape(b, c, -1).transpose(1, 2)
            x = self.norm(x)
        kv = self.kv(x).reshape(b, -1, 2, self.num_heads, self.head_dims).permute(2, 0, 3, 1, 4)
        k, v = kv.unbind(0)
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.0, scale=self.scale
        )
        out = self.proj(out.transpose(1, 2).reshape(b, n, self.embed_dims))
        out = self.out_drop(self.proj_drop(out))
        if self.v_shortcut:
            out = v.squeeze(1) + out
        return out


class ClsGSAEncoderLayer(GSAEncoderLayer):
    """``GSAEncoderLayer`` with MMPretrain's GSA layout (``attn.q`` / ``attn.kv``)."""

    attention_cls = ClsGlobalSubsampledAttention

    def forward(self, x: torch.Tensor, hw_shape: Sequence[int]) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), hw_shape))
        return x + self.drop_path(self.ffn(self.norm2(x)))


_PCPVT_KEYS = ("embed_dims", "depths", "num_heads", "patch_sizes", "strides", "mlp_ratios",
               "sr_ratios")  # fmt: skip


def _pcpvt_arch(embed_dims: list[int], depths: list[int], heads: list[int]) -> dict:
    return {"embed_dims": embed_dims, "depths": depths, "num_heads": heads,
            "patch_sizes": [4, 2, 2, 2], "strides": [4, 2, 2, 2], "sr_ratios": [8, 4, 2, 1]}  # fmt: skip


@MODELS.register_module(name="PCPVT")
class ClsPCPVT(BaseModule):
    """MMPretrain's Twins-PCPVT (module docstring): ``arch`` a name of ``arch_zoo`` or a
    dict with every key of ``essential_keys``, each a list with one entry per stage.
    ``norm_after_stage`` is one bool or one per stage. Returns a tuple of
    ``(B, embed_dims[i], H_i, W_i)`` maps for the ``out_indices`` stages."""

    arch_zoo = {
        **dict.fromkeys(["s", "small"], {**_pcpvt_arch([64, 128, 320, 512], [3, 4, 6, 3],
                        [1, 2, 5, 8]), "mlp_ratios": [8, 8, 4, 4]}),
        **dict.fromkeys(["b", "base"], {**_pcpvt_arch([64, 128, 320, 512], [3, 4, 18, 3],
                        [1, 2, 5, 8]), "mlp_ratios": [8, 8, 4, 4]}),
        **dict.fromkeys(["l", "large"], {**_pcpvt_arch([64, 128, 320, 512], [3, 8, 27, 3],
                        [1, 2, 5, 8]), "mlp_ratios": [8, 8, 4, 4]}),
    }  # fmt: skip
    essential_keys: tuple[str, ...] = _PCPVT_KEYS

    def __init__(
        self,
        arch: str | dict,
        in_channels: int = 3,
        out_indices: int | Sequence[int] = (3,),
        qkv_bias: bool = False,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_cfg: dict | None = dict(type="LN"),  # noqa: B006 (never mutated)
        norm_after_stage: bool | Sequence[bool] = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.arch_settings = self._parse_arch(arch)
        settings = self.arch_settings
        self.depths, self.embed_dims = settings["depths"], settings["embed_dims"]
        self.patch_sizes, self.strides = settings["patch_sizes"], settings["strides"]
        self.mlp_ratios, self.num_heads = settings["mlp_ratios"], settings["num_heads"]
        self.sr_ratios = settings["sr_ratios"]
        self.num_extra_tokens = 0  # no class token in Twins
        self.num_stage = len(self.depths)
        self.out_indices = _stage_indices(out_indices, self.num_stage)
        self.norm_after_stage = _per_stage_flags(norm_after_stage, self.num_stage)

        self.patch_embeds = nn.ModuleList()
        self.position_encoding_drops = nn.ModuleList()
        for i in range(self.num_stage):
            self.patch_embeds.append(
                PatchEmbed(
                    in_channels=in_channels if i == 0 else self.embed_dims[i - 1],
                    embed_dims=self.embed_dims[i],
                    conv_type="Conv2d",
                    kernel_size=self.patch_sizes[i],
                    stride=self.strides[i],
                    padding="corner",
                    norm_cfg=dict(type="LN"),  # upstream's, whatever norm_cfg says
                )
            )
            self.position_encoding_drops.append(nn.Dropout(p=drop_rate))
        self.position_encodings = nn.ModuleList(
            ConditionalPositionEncoding(dims, dims) for dims in self.embed_dims
        )
        self.dpr = torch.linspace(0, drop_path_rate, sum(self.depths), device="cpu").tolist()
        self.stages = nn.ModuleList()
        cur = 0
        for k, depth in enumerate(self.depths):
            self.stages.append(
                nn.ModuleList(
                    ClsGSAEncoderLayer(
                        embed_dims=self.embed_dims[k],
                        num_heads=self.num_heads[k],
                        feedforward_channels=self.mlp_ratios[k] * self.embed_dims[k],
                        attn_drop_rate=attn_drop_rate,
                        drop_rate=drop_rate,
                        drop_path_rate=self.dpr[cur + i],
                        num_fcs=2,
                        qkv_bias=qkv_bias,
                        act_cfg=dict(type="GELU"),
                        norm_cfg=norm_cfg,
                        sr_ratio=self.sr_ratios[k],
                    )
                    for i in range(depth)
                )
            )
            cur += depth
        for i, has_norm in enumerate(self.norm_after_stage):
            norm = (
                build_norm_layer(norm_cfg, self.embed_dims[i])[1]
                if has_norm and norm_cfg is not None
                else nn.Identity()
            )
            self.add_module(f"norm_after_stage{i}", norm)

    @classmethod
    def _parse_arch(cls, arch: str | dict) -> dict:
        if isinstance(arch, str):
            arch = arch.lower()
        settings = pick_arch(arch, cls.arch_zoo, cls.__name__.removeprefix("Cls"),
                             cls.essential_keys)  # fmt: skip
        num_stage = len(settings["depths"])
        bad = {k: v for k, v in settings.items() if not isinstance(v, list | tuple)
               or len(v) != num_stage}  # fmt: skip
        if bad:
            raise ValueError(
                f"arch: every entry needs one value per stage ({num_stage} stages, from "
                f"'depths'), got {bad}"
            )
        return {k: list(v) for k, v in settings.items()}

    def init_weights(self) -> None:
        _twins_init_weights(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = []
        b = x.shape[0]
        for i in range(self.num_stage):
            x, hw_shape = self.patch_embeds[i](x)
            x = self.position_encoding_drops[i](x)
            for j, block in enumerate(self.stages[i]):
                x = block(x, hw_shape)
                if j == 0:  # the position encoding follows the first block
                    x = self.position_encodings[i](x, hw_shape)
            x = getattr(self, f"norm_after_stage{i}")(x)
            x = x.reshape(b, *hw_shape, -1).permute(0, 3, 1, 2).contiguous()
            if i in self.out_indices:
                outputs.append(x)
        return tuple(outputs)


def _svt_arch(embed_dims: list[int], depths: list[int], heads: list[int]) -> dict:
    return {**_pcpvt_arch(embed_dims, depths, heads), "mlp_ratios": [4, 4, 4, 4],
            "window_sizes": [7, 7, 7, 7]}  # fmt: skip


@MODELS.register_module(name="SVT")
class ClsSVT(ClsPCPVT):
    """MMPretrain's Twins-SVT: ``ClsPCPVT`` whose even blocks are locally grouped
    attention in ``window_sizes[i]`` windows (an ``arch`` key here)."""

    arch_zoo = {
        **dict.fromkeys(["s", "small"], _svt_arch([64, 128, 256, 512], [2, 2, 10, 4],
                                                  [2, 4, 8, 16])),
        **dict.fromkeys(["b", "base"], _svt_arch([96, 192, 384, 768], [2, 2, 18, 2],
                                                 [3, 6, 12, 24])),
        **dict.fromkeys(["l", "large"], _svt_arch([128, 256, 512, 1024], [2, 2, 18, 2],
                                                  [4, 8, 16, 32])),
    }  # fmt: skip
    essential_keys = (*_PCPVT_KEYS, "window_sizes")

    def __init__(
        self,
        arch: str | dict,
        in_channels: int = 3,
        out_indices: int | Sequence[int] = (3,),
        qkv_bias: bool = False,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_cfg: dict | None = dict(type="LN"),  # noqa: B006 (never mutated)
        norm_after_stage: bool | Sequence[bool] = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(
            arch, in_channels, out_indices, qkv_bias, drop_rate, attn_drop_rate,
            drop_path_rate, norm_cfg, norm_after_stage, init_cfg,
        )  # fmt: skip
        self.window_sizes = self.arch_settings["window_sizes"]
        for k in range(self.num_stage):
            for i in range(0, self.depths[k], 2):
                self.stages[k][i] = LSAEncoderLayer(
                    embed_dims=self.embed_dims[k],
                    num_heads=self.num_heads[k],
                    feedforward_channels=self.mlp_ratios[k] * self.embed_dims[k],
                    drop_rate=drop_rate,
                    norm_cfg=norm_cfg,
                    attn_drop_rate=attn_drop_rate,
                    drop_path_rate=self.dpr[sum(self.depths[:k]) + i],
                    qkv_bias=qkv_bias,
                    window_size=self.window_sizes[k],
                )


def _stage_indices(out_indices: int | Sequence[int], num_stages: int) -> tuple[int, ...]:
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


def _per_stage_flags(value: bool | Sequence[bool], num_stages: int) -> list[bool]:
    if isinstance(value, bool):
        return [value] * num_stages
    if not isinstance(value, Sequence) or not all(isinstance(v, bool) for v in value):
        raise TypeError(f"norm_after_stage must be a bool or a list of bools, got {value!r}")
    if len(value) != num_stages:
        raise ValueError(
            f"norm_after_stage={list(value)} needs one entry per stage ({num_stages} stages)"
        )
    return list(value)
