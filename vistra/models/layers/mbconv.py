"""MMPretrain's mobile inverted-bottleneck blocks, shared by MobileNetV3, EfficientNet and
EfficientNetV2.

- ``InvertedResidual`` (MBConv, `MobileNetV2 <https://arxiv.org/abs/1801.04381>`_ /
  `MobileNetV3 <https://arxiv.org/abs/1905.02244>`_): keys ``expand_conv`` (only when
  ``mid_channels != in_channels``), ``depthwise_conv``, ``se.conv1``/``se.conv2`` (only with
  ``se_cfg``), ``linear_conv``.
- ``EdgeResidual`` (Fused-MBConv, `EfficientNet-EdgeTPU
  <https://ai.googleblog.com/2019/08/efficientnet-edgetpu-creating.html>`_ /
  `EfficientNetV2 <https://arxiv.org/abs/2104.00298>`_): keys ``conv1`` (the full
  ``kernel_size`` conv that expands), ``se.conv1``/``se.conv2`` (only with ``se_cfg``),
  ``conv2`` (the linear 1x1 projection).

MMSegmentation's blocks of the same names (:mod:`vistra.models.layers.inverted_residual`)
key their layers otherwise and have no stochastic depth; these are MMPretrain's. Both kinds
take the SE layer of MMPretrain (:mod:`vistra.models.layers.se_layer_mmpretrain`), whose
arguments ``se_cfg`` holds, and drop the residual branch per sample with ``drop_path_rate``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from vistra.models.base import BaseModule
from vistra.models.layers.conv_module import ConvModule
from vistra.models.layers.drop import DropPath
from vistra.models.layers.se_layer_mmpretrain import SELayer

_BN = dict(type="BN")
_RELU = dict(type="ReLU")


def _check_block_args(name: str, stride: int, se_cfg: dict | None) -> None:
    if stride not in (1, 2):
        raise ValueError(f"{name} stride must be 1 or 2, got {stride!r}")
    if se_cfg is not None and not isinstance(se_cfg, dict):
        raise TypeError(
            f"{name} se_cfg must be a dict of SELayer arguments or None, got {se_cfg!r}"
        )


class _ResidualBlock(BaseModule):
    """The parts both blocks share: the optional checkpointed forward and the shortcut."""

    with_cp: bool
    with_shortcut: bool
    drop_path: nn.Module

    def _branch(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _inner_forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._branch(x)
        return x + self.drop_path(out) if self.with_shortcut else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return checkpoint(self._inner_forward, x, use_reentrant=False)
        return self._inner_forward(x)


class InvertedResidual(_ResidualBlock):
    """MBConv: 1x1 expansion to ``mid_channels`` (skipped when that equals
    ``in_channels``), ``kernel_size`` depthwise conv with ``stride``, optional SE, linear
    1x1 projection; identity shortcut (with drop path) when the stride is 1 and the channel
    count is kept."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        mid_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        se_cfg: dict | None = None,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = _BN,
        act_cfg: dict | None = _RELU,
        drop_path_rate: float = 0.0,
        with_cp: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        _check_block_args("InvertedResidual", stride, se_cfg)
        self.with_cp = with_cp
        self.with_shortcut = stride == 1 and in_channels == out_channels
        self.with_res_shortcut = self.with_shortcut  # MMPretrain's attribute name
        self.with_se = se_cfg is not None
        self.with_expand_conv = mid_channels != in_channels
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        common = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        if self.with_expand_conv:
            self.expand_conv = ConvModule(in_channels, mid_channels, 1, act_cfg=act_cfg, **common)
        self.depthwise_conv = ConvModule(
            mid_channels, mid_channels, kernel_size, stride=stride, padding=kernel_size // 2,
            groups=mid_channels, act_cfg=act_cfg, **common,
        )  # fmt: skip
        if self.with_se:
            self.se = SELayer(**se_cfg)  # type: ignore[arg-type]
        self.linear_conv = ConvModule(mid_channels, out_channels, 1, act_cfg=None, **common)

    def _branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.expand_conv(x) if self.with_expand_conv else x
        out = self.depthwise_conv(out)
        if self.with_se:
            out = self.se(out)
        return self.linear_conv(out)


class EdgeResidual(_ResidualBlock):
    """Fused-MBConv: one ``kernel_size`` conv with ``stride`` that expands to
    ``mid_channels``, optional SE, linear 1x1 projection; identity shortcut (with drop
    path) when the stride is 1, the channel count is kept and ``with_residual`` is set.

    The projection is always a plain conv (``conv_cfg`` only reaches the first conv), as in
    MMPretrain; for a 1x1 conv the two agree anyway."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        mid_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        se_cfg: dict | None = None,
        with_residual: bool = True,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = _BN,
        act_cfg: dict | None = _RELU,
        drop_path_rate: float = 0.0,
        with_cp: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        _check_block_args("EdgeResidual", stride, se_cfg)
        self.with_cp = with_cp
        self.with_shortcut = stride == 1 and in_channels == out_channels and with_residual
        self.with_residual = self.with_shortcut  # MMPretrain's attribute name
        self.with_se = se_cfg is not None
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        self.conv1 = ConvModule(
            in_channels, mid_channels, kernel_size, stride=stride, padding=kernel_size // 2,
            conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg,
        )  # fmt: skip
        if self.with_se:
            self.se = SELayer(**se_cfg)  # type: ignore[arg-type]
        self.conv2 = ConvModule(mid_channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=None)

    def _branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        if self.with_se:
            out = self.se(out)
        return self.conv2(out)
