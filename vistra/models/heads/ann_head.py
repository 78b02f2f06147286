"""``ANNHead`` (`Asymmetric Non-local Neural Networks <https://arxiv.org/abs/1908.07678>`_),
MMSegmentation 1.x.

Two non-local blocks whose keys/values are pyramid-pooled (``PPMConcat``: the positions of
``key_pool_scales`` adaptive pools, concatenated), so attention costs ``HW x sum(s^2)``:
AFNB fuses the low-level map (key) into the high-level one (query); APNB is the same block
on the fused features with shared key/query projection.

Keys: ``fusion.stages.{i}.{key_project,query_project,value_project,out_project}`` and
``fusion.bottleneck`` (AFNB), ``bottleneck`` (3x3), ``context.stages.{i}...`` and
``context.bottleneck`` (APNB), ``conv_seg``. ``key_project``/``query_project`` are
ConvModules (``.conv``/``.bn``), ``value_project``/``out_project`` plain convs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vistra.models.heads.decode_head import BaseDecodeHead
from vistra.models.layers import ConvModule
from vistra.models.layers.self_attention_block import SelfAttentionBlock as _SelfAttentionBlock
from vistra.registry import MODELS


class PPMConcat(nn.ModuleList):
    """Adaptive average pools at ``pool_scales``, flattened and concatenated along the
    position axis: ``(N, C, H, W) -> (N, C, sum(s * s))``."""

    def __init__(self, pool_scales: Sequence[int] = (1, 3, 6, 8)) -> None:
        super().__init__([nn.AdaptiveAvgPool2d(s) for s in pool_scales])

    def forward(self, feats: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.cat([pool(feats).reshape(*feats.shape[:2], -1) for pool in self], dim=2)


class SelfAttentionBlock(_SelfAttentionBlock):
    """ANN's attention: key/value from ``low`` features, pooled by ``PPMConcat``; query
    from ``high`` features, max-pooled by ``query_scale`` when above 1."""

    def __init__(
        self,
        low_in_channels: int,
        high_in_channels: int,
        channels: int,
        out_channels: int,
        share_key_query: bool,
        query_scale: int,
        key_pool_scales: Sequence[int],
        conv_cfg: dict | None,
        norm_cfg: dict | None,
        act_cfg: dict | None,
    ) -> None:
        super().__init__(
            key_in_channels=low_in_channels,
            query_in_channels=high_in_channels,
            channels=channels,
            out_channels=out_channels,
            share_key_query=share_key_query,
            query_downsample=nn.MaxPool2d(kernel_size=query_scale) if query_scale > 1 else None,
            key_downsample=PPMConcat(key_pool_scales),
            key_query_num_convs=1,
            key_query_norm=True,
            value_out_num_convs=1,
            value_out_norm=False,
            matmul_norm=True,
            with_out=True,
            conv_cfg=conv_cfg,
            norm_cfg=norm_cfg,
            act_cfg=act_cfg,
        )

    def forward(self, query_feats: torch.Tensor, key_feats: torch.Tensor) -> torch.Tensor:
        if self.query_downsample is not None:
            # Upstream reshapes the pooled-query context to the un-pooled size, which cannot
            # give ``out_channels`` channels; fail clearly instead of inside a conv.
            raise NotImplementedError(
                "ANNHead query_scales > 1 is not supported (MMSegmentation's forward fails "
                "there too); use query_scales=(1,)"
            )
        return super().forward(query_feats, key_feats)


class AFNB(nn.Module):
    """Asymmetric Fusion Non-local Block: one attention per query scale (summed), then the
    context and the high-level features fused by a 1x1 ConvModule without activation."""

    def __init__(
        self,
        low_in_channels: int,
        high_in_channels: int,
        channels: int,
        out_channels: int,
        query_scales: Sequence[int],
        key_pool_scales: Sequence[int],
        conv_cfg: dict | None,
        norm_cfg: dict | None,
        act_cfg: dict | None,
    ) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            SelfAttentionBlock(
                low_in_channels,
                high_in_channels,
                channels,
                out_channels,
                False,
                scale,
                key_pool_scales,
                conv_cfg,
                norm_cfg,
                act_cfg,
            )  # fmt: skip
            for scale in query_scales
        )
        self.bottleneck = ConvModule(
            out_channels + high_in_channels, out_channels, 1,
            conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=None,
        )  # fmt: skip

    def forward(self, low_feats: torch.Tensor, high_feats: torch.Tensor) -> torch.Tensor:
        context = torch.stack([stage(high_feats, low_feats) for stage in self.stages]).sum(0)
        return self.bottleneck(torch.cat([context, high_feats], 1))


class APNB(nn.Module):
    """Asymmetric Pyramid Non-local Block: self-attention (shared key/query projection)
    per query scale, summed, concatenated with the input and fused by a 1x1 ConvModule."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        out_channels: int,
        query_scales: Sequence[int],
        key_pool_scales: Sequence[int],
        conv_cfg: dict | None,
        norm_cfg: dict | None,
        act_cfg: dict | None,
    ) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            SelfAttentionBlock(
                in_channels,
                in_channels,
                channels,
                out_channels,
                True,
                scale,
                key_pool_scales,
                conv_cfg,
                norm_cfg,
                act_cfg,
            )  # fmt: skip
            for scale in query_scales
        )
        self.bottleneck = ConvModule(
            2 * in_channels, out_channels, 1,
            conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg,
        )  # fmt: skip

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        context = torch.stack([stage(feats, feats) for stage in self.stages]).sum(0)
        return self.bottleneck(torch.cat([context, feats], 1))


@MODELS.register_module()
class ANNHead(BaseDecodeHead):
    """ANN head on two inputs (low-level, high-level; ``input_transform`` is always
    ``'multiple_select'``): AFNB -> dropout -> 3x3 bottleneck -> APNB -> classifier.

    Args:
        project_channels: key/query projection width of both blocks.
        query_scales: query max-pool sizes, one attention each.
        key_pool_scales: the key/value pyramid pooling sizes.
    """

    def __init__(
        self,
        project_channels: int,
        query_scales: Sequence[int] = (1,),
        key_pool_scales: Sequence[int] = (1, 3, 6, 8),
        **kwargs,
    ) -> None:
        if "input_transform" in kwargs:
            raise TypeError("ANNHead sets input_transform='multiple_select' itself; drop it")
        super().__init__(input_transform="multiple_select", **kwargs)
        if len(self.in_channels) != 2:
            raise ValueError(
                f"ANNHead needs two inputs (low, high): in_channels={self.in_channels}"
            )
        low_in_channels, high_in_channels = self.in_channels
        self.project_channels = project_channels
        common = dict(conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)
        self.fusion = AFNB(
            low_in_channels=low_in_channels, high_in_channels=high_in_channels,
            channels=project_channels, out_channels=high_in_channels,
            query_scales=query_scales, key_pool_scales=key_pool_scales, **common,
        )  # fmt: skip
        self.bottleneck = ConvModule(high_in_channels, self.channels, 3, padding=1, **common)
        self.context = APNB(
            in_channels=self.channels, channels=project_channels, out_channels=self.channels,
            query_scales=query_scales, key_pool_scales=key_pool_scales, **common,
        )  # fmt: skip

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        low_feats, high_feats = self._transform_inputs(inputs)
        output = self.fusion(low_feats, high_feats)
        if self.dropout is not None:
            output = self.dropout(output)
        output = self.context(self.bottleneck(output))
        return self.cls_seg(output)
