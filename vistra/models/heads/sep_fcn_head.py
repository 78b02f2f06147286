"""``DepthwiseSeparableFCNHead`` (`Fast-SCNN <https://arxiv.org/abs/1902.04502>`_),
MMSegmentation 1.x: ``FCNHead`` with depthwise-separable convs.

Keys: ``convs.{i}.depthwise_conv.conv``/``.bn`` and ``convs.{i}.pointwise_conv.conv``/``.bn``,
``conv_cat.*`` likewise (with ``concat_input``), ``conv_seg``.
"""

from __future__ import annotations

from vistra.models.heads.fcn_head import FCNHead
from vistra.models.layers import DepthwiseSeparableConvModule
from vistra.registry import MODELS


@MODELS.register_module()
class DepthwiseSeparableFCNHead(FCNHead):
    """Every conv of ``FCNHead`` replaced by a ``DepthwiseSeparableConvModule``
    (``dw_act_cfg`` is the depthwise part's activation; ``'default'`` means ``act_cfg``,
    ``None`` none). Upstream builds these with the default conv and activation configs
    and without dilation, and so does this class."""

    def __init__(self, dw_act_cfg: dict | str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        k = self.kernel_size

        def sep(in_channels: int) -> DepthwiseSeparableConvModule:
            return DepthwiseSeparableConvModule(
                in_channels, self.channels, k, padding=k // 2, norm_cfg=self.norm_cfg,
                dw_act_cfg=dw_act_cfg,
            )  # fmt: skip

        for i in range(self.num_convs):
            self.convs[i] = sep(self.in_channels if i == 0 else self.channels)
        if self.concat_input:
            self.conv_cat = sep(self.in_channels + self.channels)
