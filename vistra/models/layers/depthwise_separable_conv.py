"""MMCV's ``DepthwiseSeparableConvModule``: a depthwise ConvModule, then a pointwise one.

Keys: ``depthwise_conv.conv`` (and ``.bn``), ``pointwise_conv.conv`` (and ``.bn``).
"""

from __future__ import annotations

import torch
from torch import nn

from vistra.models.layers.conv_module import ConvModule
from vistra.registry import MODELS

_DEFAULT = "default"


@MODELS.register_module()
class DepthwiseSeparableConvModule(nn.Module):
    """A depthwise ConvModule (``groups=in_channels``) then a pointwise 1x1 ConvModule.

    ``dw_*``/``pw_*`` norm and activation configs default to ``norm_cfg``/``act_cfg``
    (MMCV's ``'default'`` sentinel); other keyword arguments go to both ConvModules.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = dict(type="ReLU"),  # noqa: B006 (never mutated)
        dw_norm_cfg: dict | str | None = _DEFAULT,
        dw_act_cfg: dict | str | None = _DEFAULT,
        pw_norm_cfg: dict | str | None = _DEFAULT,
        pw_act_cfg: dict | str | None = _DEFAULT,
        **kwargs,
    ) -> None:
        super().__init__()
        if "groups" in kwargs:
            raise TypeError("DepthwiseSeparableConvModule sets groups itself; do not pass groups")
        dw_norm_cfg = norm_cfg if dw_norm_cfg == _DEFAULT else dw_norm_cfg
        dw_act_cfg = act_cfg if dw_act_cfg == _DEFAULT else dw_act_cfg
        pw_norm_cfg = norm_cfg if pw_norm_cfg == _DEFAULT else pw_norm_cfg
        pw_act_cfg = act_cfg if pw_act_cfg == _DEFAULT else pw_act_cfg
        self.depthwise_conv = ConvModule(
            in_channels, in_channels, kernel_size, stride=stride, padding=padding,
            dilation=dilation, groups=in_channels, norm_cfg=dw_norm_cfg, act_cfg=dw_act_cfg,
            **kwargs,
        )  # fmt: skip
        self.pointwise_conv = ConvModule(
            in_channels, out_channels, 1, norm_cfg=pw_norm_cfg, act_cfg=pw_act_cfg, **kwargs
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise_conv(self.depthwise_conv(x))
