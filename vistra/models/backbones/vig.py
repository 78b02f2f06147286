"""Vision GNN backbones, isotropic ``Vig`` and ``PyramidVig`` (`Vision GNN: An Image is Worth
Graph of Nodes <https://arxiv.org/abs/2206.00272>`_), with MMPretrain's arguments and keys.

Model-family file, in the order: k-NN graph, graph convolutions, Grapher and FFN blocks,
backbones. Every patch is a node; each Grapher block links a node to its ``k`` nearest
neighbours in feature space (cosine distance, i.e. the L2 distance of L2-normalised
features, with a ``topk`` over all pairwise distances; dilated by taking every ``d``-th of
the ``k * d`` nearest) and aggregates them with a graph convolution (max-relative by
default); an FFN of 1x1 convs follows. ``PyramidVig`` links the nodes to an average-pooled
(``r`` times coarser) copy of the map and adds a fixed relative-position term to the
distances.

Keys: ``stem.{i}`` (convs and norms of a Sequential), ``pos_embed``, then ``Vig``:
``blocks.{i}.0`` (the Grapher: ``fc1.{0,1}``, ``graph_conv.gconv.nn.{0,1}``, ``fc2.{0,1}``,
``relative_pos`` when used) and ``blocks.{i}.1`` (the FFN: ``fc1.{0,1}``, ``fc2.{0,1}``);
``PyramidVig``: ``stages.{s}.{j}``, where ``stages.{s}.0`` of the later stages is the
stride-2 downsampling ``{0: conv, 1: norm}``. The ``sage`` convolution has ``nn1``/``nn2``,
``gin`` has ``nn`` and ``eps``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from vistra.models.base import BaseModule
from vistra.models.layers.activation import build_activation_layer
from vistra.models.layers.drop import DropPath
from vistra.models.layers.norm import build_norm_layer
from vistra.models.utils.arch import pick_arch
from vistra.registry import MODELS

GRAPH_CONV_TYPES = ("edge", "mr", "sage", "gin")
_BN = dict(type="BN")  # the Grapher and FFN projections use BatchNorm whatever norm_cfg says


# ----------------------------------------------------------------------------- k-NN graph
def sincos_relative_position(embed_dims: int, grid_size: int) -> torch.Tensor:
    """``2 P P^T / C`` for the 2D sin-cos embedding ``P`` of a ``grid_size^2`` grid: the
    similarity of two positions, ``(N, N)`` (the ViG paper's relative position term)."""
    if embed_dims % 4:
        raise ValueError(f"relative position needs channels divisible by 4, got {embed_dims}")
    rows, cols = torch.meshgrid(
        torch.arange(grid_size, dtype=torch.float32),
        torch.arange(grid_size, dtype=torch.float32),
        indexing="ij",
    )
    quarter = embed_dims // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter)

    def encode(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1, 1) * omega
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    # the column coordinate's half first, as the official code's meshgrid order gives
    embed = torch.cat([encode(cols), encode(rows)], dim=1)
    return 2 * embed @ embed.T / embed_dims


def pairwise_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared L2 distances ``(B, N, M)`` between the rows of ``x (B, N, C)`` and
    ``y (B, M, C)``, as ``|x|^2 - 2 x.y + |y|^2`` (this operation order keeps the
    neighbour ranking identical to the official code's, ties included)."""
    inner = -2 * torch.matmul(x, y.transpose(2, 1))
    x_square = torch.sum(x * x, dim=-1, keepdim=True)
    y_square = torch.sum(y * y, dim=-1, keepdim=True)
    return x_square + inner + y_square.transpose(2, 1)


class DenseDilatedKnnGraph(nn.Module):
    """Edge index ``(2, B, N, k)`` (neighbour, centre) of each node's ``k`` dilated nearest
    neighbours: the ``k * dilation`` nearest by cosine distance, every ``dilation``-th kept.

    With ``use_stochastic``, in training, a random ``k`` of the ``k * dilation`` nearest
    are kept instead with probability ``epsilon``.
    """

    def __init__(
        self, k: int = 9, dilation: int = 1, use_stochastic: bool = False, epsilon: float = 0.0
    ) -> None:
        super().__init__()
        self.k, self.dilation = k, dilation
        self.use_stochastic, self.epsilon = use_stochastic, epsilon

    @torch.no_grad()
    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        relative_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x (B, C, N, 1)`` nodes, ``y (B, C, M, 1)`` candidate neighbours (``x``
        itself when None), ``relative_pos (1, N, M)`` added to the distances."""
        x = F.normalize(x, p=2.0, dim=1)
        y = x.clone() if y is None else F.normalize(y, p=2.0, dim=1)
        x_rows = x.transpose(2, 1).squeeze(-1)  # (B, N, C)
        y_rows = y.transpose(2, 1).squeeze(-1)
        batch, num_nodes, _ = x_rows.shape
        dist = pairwise_distance(x_rows.detach(), y_rows.detach())
        if relative_pos is not None:
            dist += relative_pos
        _, neighbours = torch.topk(-dist, k=self.k * self.dilation)
        centres = torch.arange(num_nodes, device=x.device).view(1, -1, 1).expand_as(neighbours)
        edge_index = torch.stack((neighbours, centres), dim=0)
        # (the random draw comes before the training check, as MMPretrain's RNG use)
        if self.use_stochastic and torch.rand(1) < self.epsilon and self.training:
            keep = torch.randperm(self.k * self.dilation)[: self.k]
            return edge_index[..., keep]
        return edge_index[..., :: self.dilation]


def gather_neighbours(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The features of the nodes ``index (B, N, k)`` picks from ``x (B, C, M, 1)``:
    ``(B, C, N, k)``."""
    batch, channels = x.shape[:2]
    _, num_nodes, k = index.shape
    flat = index.reshape(batch, 1, num_nodes * k).expand(batch, channels, num_nodes * k)
    return torch.gather(x.squeeze(-1), 2, flat).reshape(batch, channels, num_nodes, k)


# ----------------------------------------------------------------------------- graph convs
class BasicConv(nn.Sequential):
    """1x1 convs (4 groups) between ``channels[i-1]`` and ``channels[i]``, each followed by
    the norm, the activation and (``drop > 0``) 2D dropout."""

    def __init__(
        self,
        channels: Sequence[int],
        act_cfg: dict | None,
        norm_cfg: dict | None = None,
        graph_conv_bias: bool = True,
        drop: float = 0.0,
    ) -> None:
        layers: list[nn.Module] = []
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers.append(nn.Conv2d(c_in, c_out, 1, bias=graph_conv_bias, groups=4))
            if norm_cfg is not None:
                layers.append(build_norm_layer(norm_cfg, channels[-1])[1])
            if act_cfg is not None:
                layers.append(build_activation_layer(act_cfg))
            if drop > 0:
                layers.append(nn.Dropout2d(drop))
        super().__init__(*layers)


class MRConv2d(nn.Module):
    """Max-relative graph convolution: ``[x, max_j (x_j - x)]`` (interleaved per channel)
    through a 1x1 conv block."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        act_cfg: dict | None,
        norm_cfg: dict | None = None,
        graph_conv_bias: bool = True,
    ) -> None:
        super().__init__()
        self.nn = BasicConv([in_channels * 2, out_channels], act_cfg, norm_cfg, graph_conv_bias)

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        # the centre of edge (n, j) is node n itself, so x_i is x broadcast over the edges
        x_j = gather_neighbours(x if y is None else y, edge_index[0])
        x_j = torch.max(x_j - x, dim=-1, keepdim=True).values
        batch, channels, num_nodes, _ = x.shape
        # channel 2c is x's channel c, channel 2c+1 the relative feature's
        x = torch.stack([x, x_j], dim=2).reshape(batch, 2 * channels, num_nodes, 1)
        return self.nn(x)


class EdgeConv2d(nn.Module):
    """EdgeConv: ``max_j conv([x, x_j - x])``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        act_cfg: dict | None,
        norm_cfg: dict | None = None,
        graph_conv_bias: bool = True,
    ) -> None:
        super().__init__()
        self.nn = BasicConv([in_channels * 2, out_channels], act_cfg, norm_cfg, graph_conv_bias)

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        x_j = gather_neighbours(x if y is None else y, edge_index[0])
        x_i = x.expand_as(x_j)
        return torch.max(self.nn(torch.cat([x_i, x_j - x_i], dim=1)), -1, keepdim=True).values


class GraphSAGE(nn.Module):
    """GraphSAGE: ``conv2([x, max_j conv1(x_j)])``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        act_cfg: dict | None,
        norm_cfg: dict | None = None,
        graph_conv_bias: bool = True,
    ) -> None:
        super().__init__()
        self.nn1 = BasicConv([in_channels, in_channels], act_cfg, norm_cfg, graph_conv_bias)
        self.nn2 = BasicConv([in_channels * 2, out_channels], act_cfg, norm_cfg, graph_conv_bias)

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        x_j = gather_neighbours(x if y is None else y, edge_index[0])
        x_j = torch.max(self.nn1(x_j), -1, keepdim=True).values
        return self.nn2(torch.cat([x, x_j], dim=1))


class GINConv2d(nn.Module):
    """GIN: ``conv((1 + eps) x + sum_j x_j)`` with a learned ``eps``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        act_cfg: dict | None,
        norm_cfg: dict | None = None,
        graph_conv_bias: bool = True,
    ) -> None:
        super().__init__()
        self.nn = BasicConv([in_channels, out_channels], act_cfg, norm_cfg, graph_conv_bias)
        self.eps = nn.Parameter(torch.zeros(1))

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        x_j = gather_neighbours(x if y is None else y, edge_index[0])
        return self.nn((1 + self.eps) * x + torch.sum(x_j, -1, keepdim=True))


_GRAPH_CONVS: dict[str, type[nn.Module]] = {
    "edge": EdgeConv2d,
    "mr": MRConv2d,
    "sage": GraphSAGE,
    "gin": GINConv2d,
}


class DyGraphConv2d(nn.Module):
    """Dynamic graph convolution over an ``(B, C, H, W)`` map: build the k-NN graph of its
    pixels (to an ``r x r`` average-pooled copy when ``r > 1``), then convolve on it."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        k: int = 9,
        dilation: int = 1,
        graph_conv_type: str = "mr",
        act_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        graph_conv_bias: bool = True,
        use_stochastic: bool = False,
        epsilon: float = 0.2,
        r: int = 1,
    ) -> None:
        super().__init__()
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        if graph_conv_type not in _GRAPH_CONVS:
            raise ValueError(
                f"graph_conv_type={graph_conv_type!r} is not one of {GRAPH_CONV_TYPES}"
            )
        self.gconv = _GRAPH_CONVS[graph_conv_type](
            in_channels, out_channels, act_cfg, norm_cfg, graph_conv_bias
        )
        self.k, self.d, self.r = k, dilation, r
        self.dilated_knn_graph = DenseDilatedKnnGraph(k, dilation, use_stochastic, epsilon)

    def forward(self, x: torch.Tensor, relative_pos: torch.Tensor | None = None) -> torch.Tensor:
        batch, channels, height, width = x.shape
        y = None
        if self.r > 1:
            y = F.avg_pool2d(x, self.r, self.r).reshape(batch, channels, -1, 1).contiguous()
        x = x.reshape(batch, channels, -1, 1).contiguous()
        edge_index = self.dilated_knn_graph(x, y, relative_pos)
        x = self.gconv(x, edge_index, y)
        return x.reshape(batch, -1, height, width).contiguous()


# ----------------------------------------------------------------------------- blocks
def _conv_bn(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=1, padding=0),
        build_norm_layer(_BN, out_channels)[1],
    )


class Grapher(nn.Module):
    """``x + drop_path(fc2(graph_conv(fc1(x))))``; the graph conv doubles the channels.

    With ``relative_pos`` the k-NN distances get ``-2 P P^T / C`` of the sin-cos embedding
    of the ``sqrt(n)``-sided grid, resized to the ``(n, n / r^2)`` node pairs (a fixed
    parameter, saved with the weights) and, for another input size, to that size's grid.
    """

    def __init__(
        self,
        in_channels: int,
        k: int = 9,
        dilation: int = 1,
        graph_conv_type: str = "mr",
        act_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        graph_conv_bias: bool = True,
        use_stochastic: bool = False,
        epsilon: float = 0.2,
        r: int = 1,
        n: int = 196,
        drop_path: float = 0.0,
        relative_pos: bool = False,
    ) -> None:
        super().__init__()
        self.channels, self.n, self.r = in_channels, n, r
        self.fc1 = _conv_bn(in_channels, in_channels)
        self.graph_conv = DyGraphConv2d(
            in_channels, in_channels * 2, k, dilation, graph_conv_type, act_cfg, norm_cfg,
            graph_conv_bias, use_stochastic, epsilon, r,
        )  # fmt: skip
        self.fc2 = _conv_bn(in_channels * 2, in_channels)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.relative_pos: nn.Parameter | None = None
        if relative_pos:
            table = sincos_relative_position(in_channels, int(n**0.5))[None, None]
            table = F.interpolate(
                table, size=(n, n // (r * r)), mode="bicubic", align_corners=False
            )
            self.relative_pos = nn.Parameter(-table.squeeze(1), requires_grad=False)

    def _relative_pos(self, height: int, width: int) -> torch.Tensor | None:
        if self.relative_pos is None or height * width == self.n:
            return self.relative_pos
        nodes = height * width
        return F.interpolate(
            self.relative_pos.unsqueeze(0), size=(nodes, nodes // (self.r * self.r)),
            mode="bicubic",
        ).squeeze(0)  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        relative_pos = self._relative_pos(*x.shape[2:])
        out = self.fc2(self.graph_conv(self.fc1(x), relative_pos))
        return self.drop_path(out) + x


class FFN(nn.Module):
    """``x + drop_path(fc2(act(fc1(x))))`` with 1x1 conv + BatchNorm projections."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        act_cfg: dict | None = None,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = _conv_bn(in_features, hidden_features)
        self.act = build_activation_layer(act_cfg)
        self.fc2 = _conv_bn(hidden_features, out_features)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop_path(self.fc2(self.act(self.fc1(x)))) + x


# ----------------------------------------------------------------------------- backbones
def _conv_norm_act(
    c_in: int, c_out: int, stride: int, norm_cfg: dict, act_cfg: dict | None
) -> list[nn.Module]:
    layers = [
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1),
        build_norm_layer(norm_cfg, c_out)[1],
    ]
    return layers + ([build_activation_layer(act_cfg)] if act_cfg is not None else [])


def _parse_indices(out_indices: int | Sequence[int], count: int, what: str) -> list[int]:
    if isinstance(out_indices, int):
        out_indices = [out_indices]
    if not isinstance(out_indices, Sequence) or isinstance(out_indices, str):
        raise TypeError(f"out_indices must be an int or a sequence, got {out_indices!r}")
    parsed = []
    for index in out_indices:
        resolved = count + index if index < 0 else index
        if not 0 <= resolved < count:
            raise ValueError(f"out_indices entry {index} is out of range for {count} {what}")
        parsed.append(resolved)
    return parsed


class _VigBase(BaseModule):
    """What both backbones share: the fixed input size, freezing and ``norm_eval``."""

    STEM_STRIDE = 1
    stem: nn.Sequential
    pos_embed: nn.Parameter
    norm_eval: bool
    frozen_stages: int

    def _frozen_modules(self) -> Sequence[nn.Module]:
        raise NotImplementedError

    def _embed(self, inputs: torch.Tensor) -> torch.Tensor:
        x = self.stem(inputs)
        if x.shape[2:] != self.pos_embed.shape[2:]:
            stride = self.STEM_STRIDE
            side = tuple(s * stride for s in self.pos_embed.shape[2:])
            raise ValueError(
                f"{type(self).__name__} takes {side[0]}x{side[1]} inputs (its position "
                f"embedding is learned for a {tuple(self.pos_embed.shape[2:])} grid), got "
                f"{tuple(inputs.shape[2:])}"
            )
        return x + self.pos_embed

    def _freeze_stages(self) -> None:
        # As MMPretrain: the stem is kept in eval mode (its BatchNorms use and keep their
        # running statistics) whenever the model is put in train mode.
        self.stem.eval()
        for module in self._frozen_modules()[: self.frozen_stages]:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> _VigBase:
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self


@MODELS.register_module()
class Vig(_VigBase):
    """Isotropic Vision GNN: a 4-conv stride-16 stem, a learned ``14 x 14`` position
    embedding (so 224x224 inputs), and ``num_blocks`` Grapher + FFN blocks at one width.

    ``arch`` is a name of ``arch_settings`` or a dict with ``num_blocks`` and
    ``channels``. Block ``i`` links ``k .. 2k`` neighbours (rising linearly) with dilation
    ``min(i // 4 + 1, 196 // max_k)`` (1 without ``use_dilation``). ``out_indices`` picks
    blocks, each output ``(B, C, 14, 14)``. ``frozen_stages=n`` freezes the first ``n``
    blocks.
    """

    arch_settings = {
        "tiny": dict(num_blocks=12, channels=192),
        "small": dict(num_blocks=16, channels=320),
        "base": dict(num_blocks=16, channels=640),
    }
    STEM_STRIDE = 16

    def __init__(
        self,
        arch: str | dict,
        in_channels: int = 3,
        k: int = 9,
        out_indices: int | Sequence[int] = -1,
        act_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        graph_conv_bias: bool = True,
        graph_conv_type: str = "mr",
        epsilon: float = 0.2,
        use_dilation: bool = True,
        use_stochastic: bool = False,
        drop_path: float = 0.0,
        relative_pos: bool = False,
        norm_eval: bool = False,
        frozen_stages: int = 0,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        norm_cfg = dict(type="BN") if norm_cfg is None else norm_cfg
        if graph_conv_type not in GRAPH_CONV_TYPES:
            raise ValueError(
                f"graph_conv_type={graph_conv_type!r} is not one of {GRAPH_CONV_TYPES}"
            )
        settings = pick_arch(arch, self.arch_settings, "Vig", ("num_blocks", "channels"))
        self.num_blocks, channels = settings["num_blocks"], settings["channels"]
        self.out_indices = _parse_indices(out_indices, self.num_blocks, "blocks")
        if not 0 <= frozen_stages <= self.num_blocks:
            raise ValueError(f"frozen_stages={frozen_stages} must be in [0, {self.num_blocks}]")

        widths = [channels // 8, channels // 4, channels // 2, channels]
        stem: list[nn.Module] = []
        for c_in, c_out in zip([in_channels, *widths[:-1]], widths):
            stem += _conv_norm_act(c_in, c_out, 2, norm_cfg, act_cfg)
        stem += _conv_norm_act(channels, channels, 1, norm_cfg, None)
        self.stem = nn.Sequential(*stem)

        rates = torch.linspace(0, drop_path, self.num_blocks, device="cpu").tolist()
        # int() of the float32 linspace, as MMPretrain's (it truncates)
        num_knn = [int(v) for v in torch.linspace(k, 2 * k, self.num_blocks, device="cpu").tolist()]
        max_dilation = 196 // max(num_knn)
        self.pos_embed = nn.Parameter(torch.zeros(1, channels, 14, 14))
        self.blocks = nn.ModuleList(
            nn.Sequential(
                Grapher(
                    in_channels=channels, k=num_knn[i],
                    dilation=min(i // 4 + 1, max_dilation) if use_dilation else 1,
                    graph_conv_type=graph_conv_type, act_cfg=act_cfg, norm_cfg=norm_cfg,
                    graph_conv_bias=graph_conv_bias, use_stochastic=use_stochastic,
                    epsilon=epsilon, drop_path=rates[i], relative_pos=relative_pos,
                ),
                FFN(channels, channels * 4, act_cfg=act_cfg, drop_path=rates[i]),
            )
            for i in range(self.num_blocks)
        )  # fmt: skip
        self.norm_eval, self.frozen_stages = norm_eval, frozen_stages
        self._freeze_stages()

    def _frozen_modules(self) -> Sequence[nn.Module]:
        return list(self.blocks)

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self._embed(inputs)
        outs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)


@MODELS.register_module()
class PyramidVig(_VigBase):
    """Pyramid Vision GNN: a 3-conv stride-4 stem, a learned ``56 x 56`` position embedding
    (so 224x224 inputs), and four stages (the later ones opening with a stride-2 conv)
    whose Graphers link each node to a 4x, 2x, 1x, 1x average-pooled copy of the map, with
    the relative-position term.

    ``arch`` is a name of ``arch_settings`` or a dict with ``blocks`` and ``channels``
    (per stage). All blocks link ``k`` neighbours, block ``i`` (counted over the stages)
    with dilation ``min(i // 4 + 1, 49 // k)``. ``out_indices`` picks stages;
    ``frozen_stages=n`` freezes the first ``n`` stages.
    """

    arch_settings = {
        "tiny": dict(blocks=[2, 2, 6, 2], channels=[48, 96, 240, 384]),
        "small": dict(blocks=[2, 2, 6, 2], channels=[80, 160, 400, 640]),
        "medium": dict(blocks=[2, 2, 16, 2], channels=[96, 192, 384, 768]),
        "base": dict(blocks=[2, 2, 18, 2], channels=[128, 256, 512, 1024]),
    }
    REDUCE_RATIOS = (4, 2, 1, 1)
    STEM_STRIDE = 4

    def __init__(
        self,
        arch: str | dict,
        in_channels: int = 3,
        k: int = 9,
        out_indices: int | Sequence[int] = -1,
        act_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        graph_conv_bias: bool = True,
        graph_conv_type: str = "mr",
        epsilon: float = 0.2,
        use_stochastic: bool = False,
        drop_path: float = 0.0,
        norm_eval: bool = False,
        frozen_stages: int = 0,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        norm_cfg = dict(type="BN") if norm_cfg is None else norm_cfg
        if graph_conv_type not in GRAPH_CONV_TYPES:
            raise ValueError(
                f"graph_conv_type={graph_conv_type!r} is not one of {GRAPH_CONV_TYPES}"
            )
        settings = pick_arch(arch, self.arch_settings, "PyramidVig", ("blocks", "channels"))
        self.blocks, self.channels = list(settings["blocks"]), list(settings["channels"])
        if len(self.blocks) != len(self.REDUCE_RATIOS) or len(self.channels) != len(self.blocks):
            raise ValueError(
                f"a PyramidVig arch has 4 stages: 'blocks' and 'channels' need 4 entries each, "
                f"got {self.blocks} and {self.channels}"
            )
        self.num_blocks, self.num_stages = sum(self.blocks), len(self.blocks)
        self.out_indices = _parse_indices(out_indices, self.num_stages, "stages")
        if not 0 <= frozen_stages <= self.num_stages:
            raise ValueError(f"frozen_stages={frozen_stages} must be in [0, {self.num_stages}]")

        c0 = self.channels[0]
        self.stem = nn.Sequential(
            *_conv_norm_act(in_channels, c0 // 2, 2, norm_cfg, act_cfg),
            *_conv_norm_act(c0 // 2, c0, 2, norm_cfg, act_cfg),
            *_conv_norm_act(c0, c0, 1, norm_cfg, None),
        )
        rates = torch.linspace(0, drop_path, self.num_blocks, device="cpu").tolist()
        max_dilation = 49 // k
        self.pos_embed = nn.Parameter(torch.zeros(1, c0, 224 // 4, 224 // 4))
        nodes = (224 // 4) ** 2
        self.stages = nn.ModuleList()
        block_idx = 0
        for stage_idx, (depth, width) in enumerate(zip(self.blocks, self.channels)):
            layers: list[nn.Module] = []
            if stage_idx > 0:
                prev = self.channels[stage_idx - 1]
                layers.append(nn.Sequential(*_conv_norm_act(prev, width, 2, norm_cfg, None)))
                nodes //= 4
            for _ in range(depth):
                layers.append(
                    nn.Sequential(
                        Grapher(
                            in_channels=width, k=k,
                            dilation=min(block_idx // 4 + 1, max_dilation),
                            graph_conv_type=graph_conv_type, act_cfg=act_cfg,
                            norm_cfg=norm_cfg, graph_conv_bias=graph_conv_bias,
                            use_stochastic=use_stochastic, epsilon=epsilon,
                            r=self.REDUCE_RATIOS[stage_idx], n=nodes,
                            drop_path=rates[block_idx], relative_pos=True,
                        ),
                        FFN(width, width * 4, act_cfg=act_cfg, drop_path=rates[block_idx]),
                    )
                )  # fmt: skip
                block_idx += 1
            self.stages.append(nn.Sequential(*layers))
        self.norm_eval, self.frozen_stages = norm_eval, frozen_stages
        self._freeze_stages()

    def _frozen_modules(self) -> Sequence[nn.Module]:
        return list(self.stages)

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self._embed(inputs)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
