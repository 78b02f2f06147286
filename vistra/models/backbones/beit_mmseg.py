"""MMSegmentation's BEiT backbone (registry scope ``mmseg``), `BEiT: BERT Pre-Training of
Image Transformers <https://arxiv.org/abs/2106.08254>`__.

Not MMPretrain's ``BEiTViT``: MMSegmentation's ``BEiT`` takes the sizes directly
(``embed_dims``, ``num_layers``, ``num_heads``, ``mlp_ratio``), has no absolute position
embedding, and every layer carries its own relative position bias. Keys:

- ``cls_token``; ``patch_embed.projection`` (with bias), ``patch_embed.norm`` with
  ``patch_norm``;
- ``layers.{i}.ln1``, ``layers.{i}.attn.q_bias`` / ``v_bias`` (with ``qv_bias``: the key
  has no bias), ``layers.{i}.attn.relative_position_bias_table`` (``(2Wh-1)(2Ww-1)+3``
  rows, one column per head), ``layers.{i}.attn.relative_position_index`` (a buffer),
  ``layers.{i}.attn.qkv``, ``layers.{i}.attn.proj``, ``layers.{i}.ln2``,
  ``layers.{i}.ffn.layers.0.0`` / ``ffn.layers.1``, ``layers.{i}.gamma_1`` / ``gamma_2``
  (layer scale, filled with ``init_values``);
- ``ln1`` with ``final_norm``.

The relative position bias is sized for the ``img_size // patch_size`` window and is not
resized at run time: the input must give exactly that patch grid (as upstream). A
pretrained table of another window is resized when loaded, by MMSegmentation's geometric
sequence interpolation (a bicubic spline through geometrically spaced offsets), written
here in torch.

Order: attention, encoder layer, backbone, checkpoint resizing helpers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers.drop import DropPath
from vistra.models.layers.norm import build_norm_layer
from vistra.models.layers.patch_embed import PatchEmbed
from vistra.models.layers.pos_embed import to_2tuple
from vistra.models.layers.transformer import FFN
from vistra.registry import MODELS

logger = logging.getLogger(__name__)


class BEiTAttention(BaseModule):
    """Multi-head self-attention over the class token and a ``window_size`` patch grid,
    with a learned relative position bias (three extra rows: class-to-token,
    token-to-class, class-to-class). ``bias``: ``'qv_bias'`` (learned query and value
    biases, a zero key bias), ``True`` (one ``qkv`` bias) or ``False``."""

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        window_size: Sequence[int],
        bias: bool | str = "qv_bias",
        qk_scale: float | None = None,
        attn_drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if bias not in ("qv_bias", True, False):
            raise ValueError(f"BEiTAttention bias must be 'qv_bias', True or False, got {bias!r}")
        self.embed_dims, self.num_heads, self.bias = embed_dims, num_heads, bias
        self.scale = qk_scale or (embed_dims // num_heads) ** -0.5
        if bias == "qv_bias":
            self.q_bias = nn.Parameter(torch.zeros(embed_dims))
            self.v_bias = nn.Parameter(torch.zeros(embed_dims))
        self.window_size = tuple(window_size)
        self.num_relative_distance = (2 * self.window_size[0] - 1) * (
            2 * self.window_size[1] - 1
        ) + 3
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros(self.num_relative_distance, num_heads)
        )
        self.register_buffer("relative_position_index", relative_position_index(self.window_size))
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=bias is True)
        self.attn_drop = nn.Dropout(attn_drop_rate)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop_rate)

    def init_weights(self) -> None:
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self._is_init = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        tokens = self.window_size[0] * self.window_size[1] + 1
        if n != tokens:
            raise ValueError(
                f"BEiT attention: the relative position bias is sized for a "
                f"{self.window_size[0]}x{self.window_size[1]} patch grid ({tokens} tokens with "
                f"the class token), got {n} tokens; set the backbone's img_size to the input size"
            )
        if self.bias == "qv_bias":
            qkv_bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
            qkv = F.linear(x, self.qkv.weight, qkv_bias)
        else:
            qkv = self.qkv(x)
        q, k, v = qkv.reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        attn = self.attn_drop(attn.softmax(dim=-1))
        x = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj_drop(self.proj(x))

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args) -> None:
        # a pretrained table of another window: resize it and take this window's index
        key = prefix + "relative_position_bias_table"
        table = state_dict.get(key)
        own = self.relative_position_bias_table.shape
        square = self.window_size[0] == self.window_size[1]  # else: a plain shape mismatch
        if isinstance(table, torch.Tensor) and table.shape != own and square:
            state_dict[key] = resize_relative_position_bias_table(
                table, self.relative_position_bias_table.shape[0], self.window_size
            )
            state_dict[prefix + "relative_position_index"] = self.relative_position_index.clone()
        super()._load_from_state_dict(state_dict, prefix, *args)


class BEiTTransformerEncoderLayer(BaseModule):
    """``x = x + drop_path(gamma_1 * attn(ln1(x)))``, then
    ``x = x + drop_path(gamma_2 * ffn(ln2(x)))``. As upstream, the attention gets no
    attention or projection dropout and the FFN no dropout: only stochastic depth."""

    attention_class = BEiTAttention

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        feedforward_channels: int,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        num_fcs: int = 2,
        bias: bool | str = "qv_bias",
        act_cfg: dict = dict(type="GELU"),  # noqa: B006 (never mutated)
        norm_cfg: dict = dict(type="LN"),  # noqa: B006 (never mutated)
        window_size: Sequence[int] | None = None,
        init_values: float | None = None,
    ) -> None:
        super().__init__()
        if init_values is None:
            raise ValueError("BEiT layers need init_values (the layer-scale start value)")
        # upstream passes attn_drop_rate under a name BEiTAttention ignores: no dropout
        del attn_drop_rate
        self.norm1_name, norm1 = build_norm_layer(norm_cfg, embed_dims, postfix=1)
        self.add_module(self.norm1_name, norm1)
        self.attn = self.attention_class(embed_dims, num_heads, window_size, bias=bias)
        self.norm2_name, norm2 = build_norm_layer(norm_cfg, embed_dims, postfix=2)
        self.add_module(self.norm2_name, norm2)
        self.ffn = FFN(
            embed_dims=embed_dims, feedforward_channels=feedforward_channels, num_fcs=num_fcs,
            ffn_drop=0.0, act_cfg=act_cfg, add_identity=False,
        )  # fmt: skip
        self.drop_path = DropPath(drop_path_rate)
        self.gamma_1 = nn.Parameter(init_values * torch.ones(embed_dims))
        self.gamma_2 = nn.Parameter(init_values * torch.ones(embed_dims))

    @property
    def norm1(self) -> nn.Module:
        return getattr(self, self.norm1_name)

    @property
    def norm2(self) -> nn.Module:
        return getattr(self, self.norm2_name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.gamma_1 * self.attn(self.norm1(x)))
        return x + self.drop_path(self.gamma_2 * self.ffn(self.norm2(x)))


@MODELS.register_module(name="BEiT", scope="mmseg")
class SegBEiT(BaseModule):
    """MMSegmentation's ``BEiT``; arguments and keys in the module docstring.

    ``out_indices``: a layer index (``-1``: the last) or a sequence; each output is the
    ``(B, C, h, w)`` map of the patch tokens after that layer.
    """

    layer_class = BEiTTransformerEncoderLayer

    def __init__(
        self,
        img_size: int | Sequence[int] = 224,
        patch_size: int = 16,
        in_channels: int = 3,
        embed_dims: int = 768,
        num_layers: int = 12,
        num_heads: int = 12,
        mlp_ratio: int = 4,
        out_indices: int | Sequence[int] = -1,
        qv_bias: bool = True,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_cfg: dict = dict(type="LN"),  # noqa: B006 (never mutated)
        act_cfg: dict = dict(type="GELU"),  # noqa: B006 (never mutated)
        patch_norm: bool = False,
        final_norm: bool = False,
        num_fcs: int = 2,
        norm_eval: bool = False,
        pretrained: str | None = None,
        init_values: float = 0.1,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        name = type(self).__name__.removeprefix("Seg")
        if init_cfg and pretrained:
            raise ValueError(f"{name}: init_cfg and pretrained cannot both be set")
        if pretrained is not None:
            if not isinstance(pretrained, str):
                raise TypeError(f"{name}: pretrained must be a str or None, got {pretrained!r}")
            init_cfg = dict(type="Pretrained", checkpoint=pretrained)
        super().__init__(init_cfg)
        if not isinstance(img_size, int):
            img_size = tuple(img_size)
            if len(img_size) == 1:
                img_size = img_size * 2
            if len(img_size) != 2:
                raise ValueError(f"{name}: img_size must be an int or (h, w), got {img_size!r}")
        self.img_size = to_2tuple(img_size)
        self.in_channels, self.patch_size = in_channels, patch_size
        self.embed_dims, self.num_layers, self.num_heads = embed_dims, num_layers, num_heads
        self.mlp_ratio, self.num_fcs, self.qv_bias = mlp_ratio, num_fcs, qv_bias
        self.attn_drop_rate, self.drop_path_rate = attn_drop_rate, drop_path_rate
        self.norm_cfg, self.act_cfg, self.patch_norm = norm_cfg, act_cfg, patch_norm
        self.norm_eval, self.init_values = norm_eval, init_values
        self.window_size = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        self.patch_shape = self.window_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims))
        self.patch_embed = PatchEmbed(
            in_channels=in_channels, embed_dims=embed_dims, kernel_size=patch_size,
            stride=patch_size, padding=0, norm_cfg=norm_cfg if patch_norm else None,
        )  # fmt: skip
        rates = torch.linspace(0, drop_path_rate, num_layers).tolist()
        self.layers = nn.ModuleList(
            self.layer_class(
                embed_dims=embed_dims,
                num_heads=num_heads,
                feedforward_channels=mlp_ratio * embed_dims,
                attn_drop_rate=attn_drop_rate,
                drop_path_rate=rate,
                num_fcs=num_fcs,
                bias=self._qkv_bias(),
                act_cfg=act_cfg,
                norm_cfg=norm_cfg,
                window_size=self.window_size,
                init_values=init_values,
            )  # fmt: skip
            for rate in rates
        )
        self.out_indices = _out_indices(out_indices, num_layers, name)
        self.final_norm = final_norm
        if final_norm:
            self.norm1_name, norm1 = build_norm_layer(norm_cfg, embed_dims, postfix=1)
            self.add_module(self.norm1_name, norm1)

    def _qkv_bias(self) -> bool | str:
        return "qv_bias" if self.qv_bias else False

    @property
    def norm1(self) -> nn.Module:
        return getattr(self, self.norm1_name)

    # ------------------------------------------------------------------ weights
    def init_weights(self) -> None:
        """Upstream's order: truncated-normal linears and unit LayerNorms; then the
        pretrained checkpoint (tables resized), or the ``init_cfg`` followed by the
        attention tables' own init, or else the ViT ('jax') init, which leaves the tables
        at zero (upstream's BEiT then never calls its layers' ``init_weights``)."""
        from vistra.models.init import initialize  # torch-heavy; imported when used

        if self.is_init:
            return
        self._base_init()
        cfgs = self.init_cfg if isinstance(self.init_cfg, (list, tuple)) else [self.init_cfg]
        cfgs = [dict(c) for c in cfgs if c]
        pretrained = [c for c in cfgs if c.get("type") == "Pretrained"]
        others = [c for c in cfgs if c.get("type") != "Pretrained"]
        if others:
            initialize(self, others)
        if cfgs and not pretrained:
            for m in self.modules():
                if isinstance(m, BEiTAttention):
                    m.init_weights()
        if pretrained:
            initialize(self, pretrained)
        if not cfgs:
            self._vit_init()
        self._is_init = True

    def _vit_init(self) -> None:
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    if "ffn" in name:
                        nn.init.normal_(m.bias, mean=0.0, std=1e-6)
                    else:
                        nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm | nn.GroupNorm | nn.modules.batchnorm._BatchNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _base_init(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def train(self, mode: bool = True) -> SegBEiT:
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.LayerNorm):
                    m.eval()
        return self

    # ------------------------------------------------------------------ forward
    def _embed(self, inputs: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x, hw = self.patch_embed(inputs)
        return torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1), hw

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x, hw = self._embed(inputs)
        outs = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i == len(self.layers) - 1 and self.final_norm:
                x = self.norm1(x)
            if i in self.out_indices:
                tokens = x[:, 1:]
                outs.append(tokens.reshape(x.shape[0], *hw, -1).permute(0, 3, 1, 2).contiguous())
        return tuple(outs)


def _out_indices(out_indices: int | Sequence[int], num_layers: int, name: str) -> list[int]:
    if isinstance(out_indices, int):
        return [num_layers - 1 if out_indices == -1 else out_indices]
    if not isinstance(out_indices, (list, tuple)):
        raise TypeError(f"{name}: out_indices must be an int, list or tuple, got {out_indices!r}")
    return list(out_indices)


# ----------------------------------------------------------------------------- helpers
def relative_position_index(window_size: Sequence[int]) -> torch.Tensor:
    """``(Wh*Ww + 1, Wh*Ww + 1)`` indices into the bias table: patch pairs index their
    offset ``(dy + Wh - 1) * (2Ww - 1) + dx + Ww - 1``; the first row (class token to
    patches), first column (patches to class token) and corner take the last three rows."""
    wh, ww = window_size
    coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij"))
    coords = coords.flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    num = (2 * wh - 1) * (2 * ww - 1) + 3
    index = torch.zeros((wh * ww + 1,) * 2, dtype=rel.dtype)
    index[1:, 1:] = (rel[..., 0] + wh - 1) * (2 * ww - 1) + rel[..., 1] + ww - 1
    index[0, 0:] = num - 3
    index[0:, 0] = num - 2
    index[0, 0] = num - 1
    return index


def resize_relative_position_bias_table(
    table: torch.Tensor, dst_rows: int, window_size: Sequence[int]
) -> torch.Tensor:
    """MMSegmentation's resizing of a pretrained (square-window) bias table to
    ``dst_rows``: the offsets of the source grid are placed at geometrically growing
    distances so the centre keeps its resolution, and a cubic interpolating spline
    through them is sampled at the integer offsets of the target grid."""
    if window_size[0] != window_size[1]:
        raise NotImplementedError(
            f"resizing a relative position bias table needs a square window, got {window_size}"
        )
    extra = dst_rows - (2 * window_size[0] - 1) * (2 * window_size[1] - 1)
    src_size = int((table.shape[0] - extra) ** 0.5)
    dst_size = int((dst_rows - extra) ** 0.5)
    if src_size == dst_size:
        return table
    logger.info("Resize the relative_position_bias_table from %d to %d rows.", table.shape[0],
                dst_rows)  # fmt: skip
    extra_rows, grid = table[-extra:], table[:-extra]
    q = _geometric_ratio(src_size, dst_size)
    dis, cur = [], 1.0
    for i in range(src_size // 2):
        dis.append(cur)
        cur += q ** (i + 1)
    src_pos = torch.tensor([-d for d in reversed(dis)] + [0.0] + dis, dtype=torch.float64)
    t = dst_size // 2.0
    dst_pos = torch.arange(-t, t + 0.1, 1.0, dtype=torch.float64)
    weights = _spline_matrix(src_pos, dst_pos)  # (dst, src)
    z = grid.double().t().reshape(-1, src_size, src_size)  # (heads, y, x)
    z = weights @ z @ weights.t()
    new = z.reshape(z.shape[0], -1).t().to(table)
    return torch.cat((new, extra_rows), dim=0)


def _geometric_ratio(src_size: int, dst_size: int) -> float:
    """The ratio ``q`` whose geometric series of ``src_size // 2`` terms reaches
    ``dst_size // 2``, by bisection in ``[1.01, 1.5]`` (upstream's search)."""

    def series(r: float, n: int) -> float:
        return (1.0 - r**n) / (1.0 - r)

    left, right = 1.01, 1.5
    while right - left > 1e-6:
        q = (left + right) / 2.0
        if series(q, src_size // 2) > dst_size // 2:
            right = q
        else:
            left = q
    return q


def _spline_matrix(x: torch.Tensor, xq: torch.Tensor) -> torch.Tensor:
    """``W`` with ``W @ y`` = the not-a-knot cubic interpolating spline through ``(x, y)``
    evaluated at ``xq`` (clamped to ``[x0, xn]``); the spline FITPACK fits with ``s=0``,
    which upstream's ``scipy.interpolate.interp2d(kind='cubic')`` uses per axis."""
    n = x.numel()
    h = x[1:] - x[:-1]
    # unknowns: second derivatives M_0..M_{n-1}; rows: n-2 continuity + 2 not-a-knot
    a = torch.zeros(n, n, dtype=torch.float64)
    rhs = torch.zeros(n, n, dtype=torch.float64)  # rhs @ y, as a matrix of y
    for i in range(1, n - 1):
        a[i, i - 1], a[i, i], a[i, i + 1] = h[i - 1], 2 * (h[i - 1] + h[i]), h[i]
        rhs[i, i - 1] += 6 / h[i - 1]
        rhs[i, i] -= 6 / h[i - 1] + 6 / h[i]
        rhs[i, i + 1] += 6 / h[i]
    # third derivative continuous at x_1 and x_{n-2}
    a[0, 0], a[0, 1], a[0, 2] = h[1], -(h[0] + h[1]), h[0]
    a[-1, -3], a[-1, -2], a[-1, -1] = h[-1], -(h[-2] + h[-1]), h[-2]
    m = torch.linalg.solve(a, rhs)  # M = m @ y
    xq = xq.clamp(x[0], x[-1])
    seg = torch.searchsorted(x, xq, right=True).sub(1).clamp(0, n - 2)
    x0, x1, hs = x[seg], x[seg + 1], h[seg]
    t0, t1 = x1 - xq, xq - x0
    eye = torch.eye(n, dtype=torch.float64)
    y0, y1 = eye[seg], eye[seg + 1]
    m0, m1 = m[seg], m[seg + 1]
    return (
        m0 * (t0**3 / (6 * hs))[:, None]
        + m1 * (t1**3 / (6 * hs))[:, None]
        + (y0 - m0 * (hs**2 / 6)[:, None]) * (t0 / hs)[:, None]
        + (y1 - m1 * (hs**2 / 6)[:, None]) * (t1 / hs)[:, None]
    )
