"""``SelfAttentionBlock``: MMSegmentation's general non-local / self-attention block.

Key/query/value as in `Attention Is All You Need <https://arxiv.org/abs/1706.03762>`_,
applied over the spatial positions of feature maps. Subclassed by DAHead's PAM, ANN's
AFNB/APNB, OCR's ObjectAttentionBlock and ISA's relation blocks, which pass every argument
explicitly (there are no defaults, as upstream).

Keys: ``key_project``, ``query_project`` (the same module as ``key_project`` when
``share_key_query``; the state_dict then lists both names, as upstream), ``value_project``
and ``out_project`` (absent when ``with_out=False``). Each projection is a 1x1
``nn.Conv2d`` (``*.weight``/``*.bias``) or, with ``key_query_norm``/``value_out_norm``, a
``ConvModule`` (``*.conv``/``*.bn``); with more than one conv it is an ``nn.Sequential``
(``*.0.conv``, ``*.1.conv``, ...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.init import constant_init
from vistra.models.layers.conv_module import ConvModule


class SelfAttentionBlock(nn.Module):
    """Attend from ``query_feats`` to ``key_feats``; the output has the query's spatial size
    and ``out_channels`` channels.

    Args:
        key_in_channels: channels of the key/value input.
        query_in_channels: channels of the query input.
        channels: channels of the key/query (and, with ``with_out``, value) projections.
        out_channels: channels of the output.
        share_key_query: use one projection for key and query (needs equal in-channels).
        query_downsample / key_downsample: optional modules applied after the query
            projection / after the key and value projections (e.g. pooling).
        key_query_num_convs / value_out_num_convs: 1x1 convs in the key/query and
            value/out projections.
        key_query_norm / value_out_norm: build those projections from ``ConvModule``
            (conv + norm + activation) instead of plain ``nn.Conv2d``.
        matmul_norm: scale the similarity map by ``channels ** -0.5``.
        with_out: add ``out_project`` (``channels -> out_channels``); otherwise the value
            projection maps straight to ``out_channels``.
        conv_cfg / norm_cfg / act_cfg: for the ``ConvModule`` projections.
    """

    def __init__(
        self,
        key_in_channels: int,
        query_in_channels: int,
        channels: int,
        out_channels: int,
        share_key_query: bool,
        query_downsample: nn.Module | None,
        key_downsample: nn.Module | None,
        key_query_num_convs: int,
        value_out_num_convs: int,
        key_query_norm: bool,
        value_out_norm: bool,
        matmul_norm: bool,
        with_out: bool,
        conv_cfg: dict | None,
        norm_cfg: dict | None,
        act_cfg: dict | None,
    ) -> None:
        super().__init__()
        if share_key_query and key_in_channels != query_in_channels:
            raise ValueError(
                f"share_key_query=True needs key_in_channels == query_in_channels, got "
                f"{key_in_channels} and {query_in_channels}"
            )
        self.key_in_channels = key_in_channels
        self.query_in_channels = query_in_channels
        self.out_channels = out_channels
        self.channels = channels
        self.share_key_query = share_key_query
        self.conv_cfg, self.norm_cfg, self.act_cfg = conv_cfg, norm_cfg, act_cfg
        common = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        # Registration order (key, query, value, out) fixes the state_dict order.
        self.key_project = self.build_project(
            key_in_channels, channels, key_query_num_convs, key_query_norm, **common
        )
        if share_key_query:
            self.query_project = self.key_project
        else:
            self.query_project = self.build_project(
                query_in_channels, channels, key_query_num_convs, key_query_norm, **common
            )
        self.value_project = self.build_project(
            key_in_channels,
            channels if with_out else out_channels,
            value_out_num_convs,
            value_out_norm,
            **common,
        )
        if with_out:
            self.out_project = self.build_project(
                channels, out_channels, value_out_num_convs, value_out_norm, **common
            )
        else:
            self.out_project = None
        self.query_downsample = query_downsample
        self.key_downsample = key_downsample
        self.matmul_norm = matmul_norm
        self.init_weights()

    def init_weights(self) -> None:
        # Upstream zeroes a plain-conv out projection so the block starts as "no context".
        # A Sequential has no ``weight`` and is left alone, as upstream's constant_init does.
        if self.out_project is not None and not isinstance(self.out_project, ConvModule):
            constant_init(self.out_project, 0)

    def build_project(
        self,
        in_channels: int,
        channels: int,
        num_convs: int,
        use_conv_module: bool,
        conv_cfg: dict | None,
        norm_cfg: dict | None,
        act_cfg: dict | None,
    ) -> nn.Module:
        """``num_convs`` 1x1 convs (``ConvModule`` or ``nn.Conv2d``); one conv is returned
        bare, several in an ``nn.Sequential``."""
        convs: list[nn.Module] = []
        # Upstream always builds the first conv, so num_convs=0 still gives one.
        for i in range(max(num_convs, 1)):
            cin = in_channels if i == 0 else channels
            if use_conv_module:
                convs.append(
                    ConvModule(
                        cin, channels, 1, conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg
                    )
                )
            else:
                convs.append(nn.Conv2d(cin, channels, 1))
        return convs[0] if len(convs) == 1 else nn.Sequential(*convs)

    def forward(self, query_feats: torch.Tensor, key_feats: torch.Tensor) -> torch.Tensor:
        n = query_feats.size(0)
        query = self.query_project(query_feats)
        if self.query_downsample is not None:
            query = self.query_downsample(query)
        query = query.reshape(*query.shape[:2], -1).permute(0, 2, 1)  # N, Lq, C

        key = self.key_project(key_feats)
        value = self.value_project(key_feats)
        if self.key_downsample is not None:
            key = self.key_downsample(key)
            value = self.key_downsample(value)
        key = key.reshape(*key.shape[:2], -1)  # N, C, Lk
        value = value.reshape(*value.shape[:2], -1).permute(0, 2, 1)  # N, Lk, C'

        sim_map = torch.matmul(query, key)
        if self.matmul_norm:
            sim_map = (self.channels**-0.5) * sim_map
        sim_map = F.softmax(sim_map, dim=-1)

        context = torch.matmul(sim_map, value).permute(0, 2, 1).contiguous()
        context = context.reshape(n, -1, *query_feats.shape[2:])
        if self.out_project is not None:
            context = self.out_project(context)
        return context
