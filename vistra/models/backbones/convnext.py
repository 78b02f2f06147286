"""ConvNeXt v1 and v2 backbone (`A ConvNet for the 2020s <https://arxiv.org/abs/2201.03545>`_,
`ConvNeXt V2 <https://arxiv.org/abs/2301.00808>`_), with MMPretrain's arguments and keys.

MMSegmentation's configs name it ``mmpretrain.ConvNeXt``: the registry resolves that
prefix to this plain entry. ConvNeXt v2 is ``use_grn=True, layer_scale_init_value=0``.

Keys: ``downsample_layers.0.{0,1}`` (the stem: patchify conv, norm),
``downsample_layers.{i}.{0,1}`` (norm, 2x2 stride-2 conv) for the later stages,
``stages.{i}.{j}.depthwise_conv`` / ``.norm`` / ``.pointwise_conv1`` / ``.pointwise_conv2``
/ ``.grn.{gamma,beta}`` / ``.gamma`` (layer scale), and ``norm{i}`` for each output stage.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import torch
import torch.utils.checkpoint as cp
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers import DropPath, build_activation_layer, build_norm_layer
from vistra.models.layers.grn import GRN
from vistra.models.utils.arch import pick_arch
from vistra.registry import MODELS

_DEFAULT_INIT = [
    dict(type="TruncNormal", layer=["Conv2d", "Linear"], std=0.02, bias=0.0),
    dict(type="Constant", layer=["LayerNorm"], val=1.0, bias=0.0),
]


class ConvNeXtBlock(BaseModule):
    """``x + drop_path(gamma * pw2(act(pw1(norm(dwconv(x))))))``, with GRN after the
    activation in v2.

    ``linear_pw_conv=True`` (the default, as the official code) runs the pointwise convs as
    ``nn.Linear`` on channel-last tensors; ``False`` as 1x1 convs (other weight shapes).
    """

    def __init__(
        self,
        in_channels: int,
        dw_conv_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        mlp_ratio: float = 4.0,
        linear_pw_conv: bool = True,
        drop_path_rate: float = 0.0,
        layer_scale_init_value: float = 1e-6,
        use_grn: bool = False,
        with_cp: bool = False,
    ) -> None:
        super().__init__()
        dw_conv_cfg = dict(kernel_size=7, padding=3) if dw_conv_cfg is None else dw_conv_cfg
        norm_cfg = dict(type="LN2d", eps=1e-6) if norm_cfg is None else norm_cfg
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        self.with_cp, self.linear_pw_conv = with_cp, linear_pw_conv
        self.depthwise_conv = nn.Conv2d(in_channels, in_channels, groups=in_channels, **dw_conv_cfg)
        self.norm = build_norm_layer(norm_cfg, in_channels)[1]
        mid_channels = int(mlp_ratio * in_channels)
        if linear_pw_conv:
            self.pointwise_conv1: nn.Module = nn.Linear(in_channels, mid_channels)
            self.pointwise_conv2: nn.Module = nn.Linear(mid_channels, in_channels)
        else:
            self.pointwise_conv1 = nn.Conv2d(in_channels, mid_channels, kernel_size=1)
            self.pointwise_conv2 = nn.Conv2d(mid_channels, in_channels, kernel_size=1)
        self.act = build_activation_layer(act_cfg)
        self.grn = GRN(mid_channels) if use_grn else None
        self.gamma = (
            nn.Parameter(layer_scale_init_value * torch.ones(in_channels))
            if layer_scale_init_value > 0
            else None
        )
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def _inner_forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.depthwise_conv(x)
        layout = "channel_last" if self.linear_pw_conv else "channel_first"
        if self.linear_pw_conv:
            x = x.permute(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
        x = self.norm(x, data_format=layout)
        x = self.act(self.pointwise_conv1(x))
        if self.grn is not None:
            x = self.grn(x, data_format=layout)
        x = self.pointwise_conv2(x)
        if self.linear_pw_conv:
            x = x.permute(0, 3, 1, 2)
        if self.gamma is not None:
            x = x.mul(self.gamma.view(1, -1, 1, 1))
        return shortcut + self.drop_path(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._inner_forward, x, use_reentrant=False)
        return self._inner_forward(x)


@MODELS.register_module()
class ConvNeXt(BaseModule):
    """ConvNeXt backbone: a patchify stem, four stages of ConvNeXt blocks with a
    norm + 2x2 conv downsampling between them.

    ``arch`` is a name of ``arch_settings`` or a dict with ``depths`` and ``channels``.
    ``out_indices`` picks the stages whose (normalised) maps are returned; with
    ``gap_before_final_norm=True`` (classification) each is globally averaged first and
    returned as ``(N, C)``. ``frozen_stages=n`` freezes the first ``n`` downsample layers and
    stages (and keeps them in eval mode).
    """

    arch_settings = {
        "atto": {"depths": [2, 2, 6, 2], "channels": [40, 80, 160, 320]},
        "femto": {"depths": [2, 2, 6, 2], "channels": [48, 96, 192, 384]},
        "pico": {"depths": [2, 2, 6, 2], "channels": [64, 128, 256, 512]},
        "nano": {"depths": [2, 2, 8, 2], "channels": [80, 160, 320, 640]},
        "tiny": {"depths": [3, 3, 9, 3], "channels": [96, 192, 384, 768]},
        "small": {"depths": [3, 3, 27, 3], "channels": [96, 192, 384, 768]},
        "base": {"depths": [3, 3, 27, 3], "channels": [128, 256, 512, 1024]},
        "large": {"depths": [3, 3, 27, 3], "channels": [192, 384, 768, 1536]},
        "xlarge": {"depths": [3, 3, 27, 3], "channels": [256, 512, 1024, 2048]},
        "huge": {"depths": [3, 3, 27, 3], "channels": [352, 704, 1408, 2816]},
    }

    def __init__(
        self,
        arch: str | dict = "tiny",
        in_channels: int = 3,
        stem_patch_size: int = 4,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = None,
        linear_pw_conv: bool = True,
        use_grn: bool = False,
        drop_path_rate: float = 0.0,
        layer_scale_init_value: float = 1e-6,
        out_indices: int | Sequence[int] = -1,
        frozen_stages: int = 0,
        gap_before_final_norm: bool = True,
        with_cp: bool = False,
        init_cfg: dict | list[dict] | None = _DEFAULT_INIT,  # copied by BaseModule
    ) -> None:
        super().__init__(init_cfg)
        norm_cfg = dict(type="LN2d", eps=1e-6) if norm_cfg is None else norm_cfg
        act_cfg = dict(type="GELU") if act_cfg is None else act_cfg
        arch = self._parse_arch(arch)
        self.depths, self.channels = list(arch["depths"]), list(arch["channels"])
        self.num_stages = len(self.depths)
        self.out_indices = self._parse_out_indices(out_indices)
        self.frozen_stages = frozen_stages
        self.gap_before_final_norm = gap_before_final_norm

        # stochastic depth grows linearly over all blocks
        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, sum(self.depths))]
        self.downsample_layers = nn.ModuleList()
        self.downsample_layers.append(
            nn.Sequential(
                nn.Conv2d(
                    in_channels, self.channels[0], kernel_size=stem_patch_size,
                    stride=stem_patch_size,
                ),
                build_norm_layer(norm_cfg, self.channels[0])[1],
            )
        )  # fmt: skip
        self.stages = nn.ModuleList()
        block_idx = 0
        for i, (depth, channels) in enumerate(zip(self.depths, self.channels)):
            if i >= 1:
                self.downsample_layers.append(
                    nn.Sequential(
                        build_norm_layer(norm_cfg, self.channels[i - 1])[1],
                        nn.Conv2d(self.channels[i - 1], channels, kernel_size=2, stride=2),
                    )
                )
            self.stages.append(
                nn.Sequential(
                    *[
                        ConvNeXtBlock(
                            in_channels=channels,
                            drop_path_rate=dpr[block_idx + j],
                            norm_cfg=norm_cfg,
                            act_cfg=act_cfg,
                            linear_pw_conv=linear_pw_conv,
                            layer_scale_init_value=layer_scale_init_value,
                            use_grn=use_grn,
                            with_cp=with_cp,
                        )
                        for j in range(depth)
                    ]
                )
            )
            block_idx += depth
            if i in self.out_indices:
                self.add_module(f"norm{i}", build_norm_layer(norm_cfg, channels)[1])
        self._freeze_stages()

    @classmethod
    def _parse_arch(cls, arch: str | dict) -> dict:
        arch = pick_arch(arch, cls.arch_settings, "ConvNeXt", ("depths", "channels"))
        depths, channels = arch["depths"], arch["channels"]
        if not (
            isinstance(depths, Sequence)
            and isinstance(channels, Sequence)
            and len(depths) == len(channels)
        ):
            raise ValueError(
                f"arch 'depths' ({depths}) and 'channels' ({channels}) must be sequences of "
                "the same length"
            )
        return arch

    def _parse_out_indices(self, out_indices: int | Sequence[int]) -> list[int]:
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        if not isinstance(out_indices, Sequence):
            raise TypeError(f"out_indices must be an int or a sequence, got {out_indices!r}")
        parsed = []
        for index in out_indices:
            # negative indices count from the end of the four stages, as MMPretrain's
            resolved = 4 + index if index < 0 else index
            if resolved < 0:
                raise ValueError(f"out_indices: invalid index {index}")
            parsed.append(resolved)
        return parsed

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(self.downsample_layers[i](x))
            if i in self.out_indices:
                norm = getattr(self, f"norm{i}")
                if self.gap_before_final_norm:
                    outs.append(norm(x.mean([-2, -1], keepdim=True)).flatten(1))
                else:
                    outs.append(norm(x))
        return tuple(outs)

    def _freeze_stages(self) -> None:
        for i in range(self.frozen_stages):
            downsample, stage = self.downsample_layers[i], self.stages[i]
            downsample.eval()
            stage.eval()
            for param in chain(downsample.parameters(), stage.parameters()):
                param.requires_grad = False

    def train(self, mode: bool = True) -> ConvNeXt:
        super().train(mode)
        self._freeze_stages()
        return self

    def get_layer_depth(self, param_name: str, prefix: str = "") -> tuple[int, int]:
        """``(layer id, number of layers)`` of a parameter, for layer-wise lr decay
        (MMPretrain's grouping: the deep third stage counts three blocks per layer)."""
        max_layer_id = 12 if self.depths[-2] > 9 else 6
        if not param_name.startswith(prefix):
            return max_layer_id + 1, max_layer_id + 2  # a module after the backbone
        name = param_name[len(prefix) :]
        parts = name.split(".")
        if name.startswith("downsample_layers"):
            stage_id = int(parts[1])
            layer_id = {0: 0, 1: 2, 2: 3}.get(stage_id, max_layer_id)
        elif name.startswith("stages"):
            stage_id, block_id = int(parts[1]), int(parts[2])
            if stage_id in (0, 1):
                layer_id = stage_id + 1
            elif stage_id == 2:
                layer_id = 3 + block_id // 3
            else:
                layer_id = max_layer_id
        else:  # the output norms
            layer_id = max_layer_id + 1
        return layer_id, max_layer_id + 2
