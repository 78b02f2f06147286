"""Sparse layers for SparK (`Designing BERT for Convolutional Networks: Sparse and
Hierarchical Masked Modeling <https://arxiv.org/abs/2301.03580>`_).

SparK treats the visible cells of a masked image as a sparse set. As upstream does, the
sparse convolution is emulated with a dense one followed by masking: every convolution
and pooling runs densely and then zeroes the positions that are masked at its output
resolution, so masked cells never leak into visible ones from layer to layer. The norms
normalise only the visible positions (gathered into an ``(n, C)`` matrix, normalised,
scattered back; masked positions stay 0), so batch statistics ignore the holes.

The mask is the ``(B, 1, f, f)`` boolean "active" map of the coarsest feature map (True:
visible), held in :class:`SparseHelper` for the duration of a forward pass (the
:class:`~vistra.models.selfsup.spark.SparK` algorithm sets it); a map at any finer
resolution is the same mask repeated. Layers used without an active map (e.g. a sparse
backbone fine-tuned as a classifier) are their dense counterparts.

Registered norm types (both for ``norm_cfg`` and the enc-dec norms): ``SparseBatchNorm2d``,
``SparseSyncBatchNorm2d`` (a sync batch norm across ranks when a process group is
initialised, a plain batch norm in one process) and ``SparseLN2d``. Parameter names are
those of the dense layers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from vistra.registry import MODELS

__all__ = [
    "SparseAvgPooling",
    "SparseBatchNorm2d",
    "SparseConv2d",
    "SparseHelper",
    "SparseLayerNorm2D",
    "SparseMaxPooling",
    "SparseSyncBatchNorm2d",
    "active_mask",
    "dense_model_to_sparse",
]


class SparseHelper:
    """The active map of the current forward pass (upstream's name and attribute)."""

    _cur_active: torch.Tensor | None = None

    @staticmethod
    def active_map(h: int) -> torch.Tensor | None:
        """``(B, 1, h, h)`` 0/1 map at resolution ``h`` (None when no mask is set)."""
        active = SparseHelper._cur_active
        if active is None:
            return None
        ratio = h // active.shape[-1]
        return active.repeat_interleave(ratio, 2).repeat_interleave(ratio, 3)

    @staticmethod
    def active_index(h: int) -> tuple[torch.Tensor, ...] | None:
        """``(b, y, x)`` indices of the visible positions at resolution ``h``."""
        active = SparseHelper.active_map(h)
        return None if active is None else active.squeeze(1).nonzero(as_tuple=True)


@contextlib.contextmanager
def active_mask(mask: torch.Tensor) -> Iterator[None]:
    """Make ``mask`` ``(B, 1, f, f)`` the active map inside the block (restored after)."""
    previous = SparseHelper._cur_active
    SparseHelper._cur_active = mask
    try:
        yield
    finally:
        SparseHelper._cur_active = previous


def _mask_output(x: torch.Tensor) -> torch.Tensor:
    active = SparseHelper.active_map(x.shape[2])
    return x if active is None else x * active


class SparseConv2d(nn.Conv2d):
    """A dense convolution whose output is zero at masked positions."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _mask_output(super().forward(x))


class SparseMaxPooling(nn.MaxPool2d):
    """A dense max pooling whose output is zero at masked positions."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _mask_output(super().forward(x))


class SparseAvgPooling(nn.AvgPool2d):
    """A dense average pooling whose output is zero at masked positions."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _mask_output(super().forward(x))


def _norm_visible(norm_forward, x: torch.Tensor, channel_last: bool = False) -> torch.Tensor:
    """``norm_forward`` over the ``(n, C)`` visible positions of ``x``; zeros elsewhere."""
    permuted = x if channel_last else x.permute(0, 2, 3, 1)
    index = SparseHelper.active_index(permuted.shape[1])
    if index is None:  # no mask: every position is visible
        out = norm_forward(permuted.reshape(-1, permuted.shape[-1])).view(permuted.shape)
    else:
        flat = norm_forward(permuted[index])
        out = torch.zeros_like(permuted, dtype=flat.dtype)
        out[index] = flat
    return out if channel_last else out.permute(0, 3, 1, 2)


@MODELS.register_module()
class SparseBatchNorm2d(nn.BatchNorm1d):
    """Batch norm of ``(B, C, H, W)`` maps over their visible positions only."""

    _abbr_ = "bn"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _norm_visible(super().forward, x)


@MODELS.register_module()
class SparseSyncBatchNorm2d(nn.SyncBatchNorm):
    """:class:`SparseBatchNorm2d` with statistics synchronised across ranks (torch's
    ``SyncBatchNorm``; in one process it is a plain batch norm)."""

    _abbr_ = "bn"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _norm_visible(super().forward, x)


@MODELS.register_module(name="SparseLN2d")
class SparseLayerNorm2D(nn.LayerNorm):
    """Channel LayerNorm of 2-D maps over their visible positions (``data_format``
    ``'channel_first'``: ``(B, C, H, W)``; ``'channel_last'``: ``(B, H, W, C)``)."""

    _abbr_ = "ln"

    def forward(self, x: torch.Tensor, data_format: str = "channel_first") -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"SparseLN2d takes (N, C, H, W) maps, got shape {tuple(x.shape)}")
        if data_format not in ("channel_first", "channel_last"):
            raise ValueError(
                "SparseLN2d data_format must be 'channel_first' or 'channel_last', got "
                f"{data_format!r}"
            )
        out = _norm_visible(super().forward, x, channel_last=data_format == "channel_last")
        return out if data_format == "channel_last" else out.contiguous()


def _sparse_copy(m: nn.Module, sync_bn: bool) -> nn.Module | None:
    """The sparse counterpart of one dense layer (weights copied), or None to keep it."""
    if isinstance(m, nn.Conv2d) and not isinstance(m, SparseConv2d):
        out = SparseConv2d(
            m.in_channels,
            m.out_channels,
            kernel_size=m.kernel_size,
            stride=m.stride,
            padding=m.padding,
            dilation=m.dilation,
            groups=m.groups,
            bias=m.bias is not None,
            padding_mode=m.padding_mode,
        )
        out.load_state_dict(m.state_dict())
        return out
    if isinstance(m, nn.MaxPool2d) and not isinstance(m, SparseMaxPooling):
        return SparseMaxPooling(
            m.kernel_size,
            stride=m.stride,
            padding=m.padding,
            dilation=m.dilation,
            return_indices=m.return_indices,
            ceil_mode=m.ceil_mode,
        )
    if isinstance(m, nn.AvgPool2d) and not isinstance(m, SparseAvgPooling):
        return SparseAvgPooling(
            m.kernel_size,
            m.stride,
            m.padding,
            ceil_mode=m.ceil_mode,
            count_include_pad=m.count_include_pad,
            divisor_override=m.divisor_override,
        )
    if isinstance(m, (nn.BatchNorm2d, nn.SyncBatchNorm)) and not isinstance(
        m, (SparseBatchNorm2d, SparseSyncBatchNorm2d)
    ):
        cls = SparseSyncBatchNorm2d if sync_bn else SparseBatchNorm2d
        out = cls(
            m.num_features,
            eps=m.eps,
            momentum=m.momentum,
            affine=m.affine,
            track_running_stats=m.track_running_stats,
        )
        out.load_state_dict(m.state_dict())
        return out
    return None


def dense_model_to_sparse(model: nn.Module, sync_bn: bool = False) -> nn.Module:
    """Replace, in place, every ``Conv2d``, ``MaxPool2d``, ``AvgPool2d`` and 2-D batch
    norm below ``model`` by its sparse counterpart (same parameters, same names)."""
    for name, child in list(model.named_children()):
        replacement = _sparse_copy(child, sync_bn)
        if replacement is not None:
            replacement.train(child.training)
            for param_new, param_old in zip(replacement.parameters(), child.parameters()):
                param_new.requires_grad = param_old.requires_grad
            setattr(model, name, replacement)
            child = replacement
        dense_model_to_sparse(child, sync_bn)
    return model
