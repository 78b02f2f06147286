"""Structural re-parameterisation: the pieces that turn a multi-branch training-time block
into the single conv (or norm) it equals at inference.

The families that use them (RepVGG, MobileOne, RepMLPNet, RepLKNet, RIFormer) train with
parallel branches -- kxk conv + BN, 1x1 conv + BN, a BN-only identity, small kernels beside
a large one -- and ``switch_to_deploy()`` folds them into one kernel and bias. Every branch
is linear once BN uses its running statistics, so the sum of branches is one conv:

- conv + BN: ``W * gamma / std`` and ``beta - mean * gamma / std`` (:func:`fuse_conv_bn`);
- a BN-only identity: the identity kernel (one 1 at the centre of each channel's own input
  slot, :func:`identity_kernel`) through the same fusion;
- a smaller kernel: zero-padded to the large one's size, centred (:func:`pad_kernel`).

Fusions run in float64 and cast back, so the deploy model gives the training model's eval
outputs to float32 rounding.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from vistra.models.layers.conv import build_conv_layer
from vistra.models.layers.norm import build_norm_layer


def conv_bn(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    groups: int = 1,
    conv_cfg: dict | None = None,
    norm_cfg: dict | None = None,
    norm_name: str = "norm",
) -> nn.Sequential:
    """A bias-free conv followed by a norm layer, as ``Sequential(conv=..., <norm_name>=...)``:
    the branch layout the re-parameterisable families key their checkpoints by (RepVGG and
    MobileOne name the norm ``norm``, RepLKNet ``bn``)."""
    norm_cfg = dict(type="BN") if norm_cfg is None else norm_cfg
    branch = nn.Sequential()
    branch.add_module(
        "conv",
        build_conv_layer(
            conv_cfg,
            in_channels,
            out_channels,
            kernel_size=kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=False,
        ),
    )
    branch.add_module(norm_name, build_norm_layer(norm_cfg, out_channels)[1])
    return branch


def check_batch_norm(norm: nn.Module, where: str) -> None:
    """Only a BatchNorm (running statistics) folds into a conv; anything else is a
    ``ValueError`` naming the block and the norm found."""
    if not isinstance(norm, _BatchNorm):
        raise ValueError(
            f"{where}: switch_to_deploy() folds BatchNorm layers into convs, but this block "
            f"uses {type(norm).__name__} (norm_cfg type 'BN' or 'SyncBN' can be fused)"
        )


def bn_scale_shift(bn: _BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` with ``bn(x) == x * scale + shift`` per channel, in eval mode
    (float64)."""
    check_batch_norm(bn, type(bn).__name__)
    if bn.running_var is None or bn.running_mean is None:
        raise ValueError("switch_to_deploy(): a BatchNorm without running statistics cannot fuse")
    std = (bn.running_var.double() + bn.eps).sqrt()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(std)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(std)
    scale = gamma / std
    return scale, beta - bn.running_mean.double() * scale


def fuse_conv_bn(weight: torch.Tensor, bn: _BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Kernel and bias (float64) of a bias-free conv with ``weight`` followed by ``bn``.

    ``weight`` may have a multiple of the norm's channels as output channels: each norm
    channel then covers that many consecutive conv outputs (RepMLP's partition perceptron,
    whose BN runs over share-sets of ``h * w`` outputs each).
    """
    scale, shift = bn_scale_shift(bn)
    repeat, rest = divmod(weight.shape[0], scale.numel())
    if rest:
        raise ValueError(
            f"cannot fuse a conv of {weight.shape[0]} output channels with a norm of "
            f"{scale.numel()} channels"
        )
    scale, shift = scale.repeat_interleave(repeat), shift.repeat_interleave(repeat)
    view = (-1,) + (1,) * (weight.dim() - 1)
    return weight.double() * scale.reshape(view), shift


def fuse_branch(branch: nn.Sequential) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`fuse_conv_bn` of a :func:`conv_bn` branch (a conv and its norm, in order)."""
    conv, norm = branch[0], branch[1]
    return fuse_conv_bn(conv.weight, norm)


def identity_kernel(
    channels: int, groups: int, kernel_size: int, like: torch.Tensor
) -> torch.Tensor:
    """The ``(channels, channels // groups, k, k)`` kernel of a conv that copies its input:
    output channel ``c`` reads a 1 at the centre of its own slot (``c % (channels //
    groups)`` within its group). Float64, on ``like``'s device."""
    per_group = channels // groups
    kernel = torch.zeros(
        channels, per_group, kernel_size, kernel_size, dtype=torch.float64, device=like.device
    )
    index = torch.arange(channels, device=like.device)
    kernel[index, index % per_group, kernel_size // 2, kernel_size // 2] = 1.0
    return kernel


def fuse_bn_identity(
    bn: _BatchNorm, groups: int, kernel_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Kernel and bias (float64) of a BN-only identity branch, as a ``k x k`` conv."""
    kernel = identity_kernel(bn.num_features, groups, kernel_size, bn.running_var)
    return fuse_conv_bn(kernel, bn)


def pad_kernel(kernel: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Zero-pad a smaller (odd) kernel to ``kernel_size``, centred: the same conv when its
    padding grows by the same amount."""
    pad = (kernel_size - kernel.shape[-1]) // 2
    if pad < 0:
        raise ValueError(f"cannot pad a {kernel.shape[-1]}x kernel down to {kernel_size}x")
    return F.pad(kernel, [pad] * 4) if pad else kernel


def fused_conv(
    like: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor, conv_cfg: dict | None = None
) -> nn.Conv2d:
    """A conv with ``like``'s geometry (channels, stride, padding, dilation, groups; its
    kernel size from ``weight``) holding ``weight`` and ``bias``, in ``like``'s dtype and
    device."""
    conv = build_conv_layer(
        conv_cfg,
        like.in_channels,
        like.out_channels,
        kernel_size=tuple(weight.shape[-2:]),
        stride=like.stride,
        padding=like.padding,
        dilation=like.dilation,
        groups=like.groups,
        bias=True,
    )
    return load_fused(conv, weight, bias, like.weight)


def load_fused(
    conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor, like: torch.Tensor
) -> nn.Conv2d:
    """Copy the fused ``weight``/``bias`` into ``conv`` (cast to ``like``'s dtype/device)."""
    conv = conv.to(device=like.device, dtype=like.dtype)
    with torch.no_grad():
        conv.weight.copy_(weight.reshape(conv.weight.shape).to(like.dtype))
        conv.bias.copy_(bias.to(like.dtype))
    return conv


def deployable_blocks(root: nn.Module, method: str = "switch_to_deploy") -> Iterator[nn.Module]:
    """The submodules of ``root`` (not ``root`` itself) that have ``method``: a backbone's
    ``switch_to_deploy`` calls it on each of them. The list is taken before any switch, so
    blocks a switch removes are not visited."""
    return iter([m for m in root.modules() if m is not root and callable(getattr(m, method, None))])
