"""MMSegmentation's ``MobileNetV3`` (registry scope ``mmseg``).

`Searching for MobileNetV3 <https://arxiv.org/abs/1905.02244>`_, in MMSegmentation's
segmentation form: the last two strided stages are turned into dilated ones (rates 2 and
4), so the output stride is 8, and the final 1x1 conv (``layer12`` for ``'small'``,
``layer16`` for ``'large'``) carries a dilation of 4 as upstream sets it. MMPretrain has a
classification ``MobileNetV3`` of its own; this one is found under the plain name from
configs with ``default_scope='mmseg'``.

Keys: ``layer0.conv``/``.bn`` (stem), ``layer{i}.expand_conv``/``depthwise_conv``/
``se.conv1``/``se.conv2``/``linear_conv`` (``InvertedResidualV3``), ``layer{last}.conv``/
``.bn``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vistra.models.backbones.mobilenet_v2_mmseg import mmseg_init_cfg, set_norm_eval
from vistra.models.base import BaseModule
from vistra.models.layers import ConvModule
from vistra.models.layers.inverted_residual import Conv2dAdaptivePadding, InvertedResidualV3
from vistra.registry import MODELS


@MODELS.register_module(name="MobileNetV3", scope="mmseg")
class SegMobileNetV3(BaseModule):
    """Stem, ``InvertedResidualV3`` layers from ``arch_settings[arch]`` and a last 1x1 conv.

    Rows are ``[kernel_size, mid_channels, out_channels, with_se, act, stride]``.
    ``reduction_factor`` divides the channels of the last stage (from layer 9 of
    ``'small'``, layer 13 of ``'large'``). ``out_indices`` name layers (0 is the stem);
    the outputs are returned as a list.
    """

    arch_settings = {
        "small": [
            [3, 16, 16, True, "ReLU", 2],  # layer1, os=4
            [3, 72, 24, False, "ReLU", 2],  # layer2, os=8
            [3, 88, 24, False, "ReLU", 1],
            [5, 96, 40, True, "HSwish", 2],  # layer4, os=16 (dilated to 8)
            [5, 240, 40, True, "HSwish", 1],
            [5, 240, 40, True, "HSwish", 1],
            [5, 120, 48, True, "HSwish", 1],
            [5, 144, 48, True, "HSwish", 1],
            [5, 288, 96, True, "HSwish", 2],  # layer9, os=32 (dilated to 8)
            [5, 576, 96, True, "HSwish", 1],
            [5, 576, 96, True, "HSwish", 1],
        ],
        "large": [
            [3, 16, 16, False, "ReLU", 1],  # layer1, os=2
            [3, 64, 24, False, "ReLU", 2],  # layer2, os=4
            [3, 72, 24, False, "ReLU", 1],
            [5, 72, 40, True, "ReLU", 2],  # layer4, os=8
            [5, 120, 40, True, "ReLU", 1],
            [5, 120, 40, True, "ReLU", 1],
            [3, 240, 80, False, "HSwish", 2],  # layer7, os=16 (dilated to 8)
            [3, 200, 80, False, "HSwish", 1],
            [3, 184, 80, False, "HSwish", 1],
            [3, 184, 80, False, "HSwish", 1],
            [3, 480, 112, True, "HSwish", 1],
            [3, 672, 112, True, "HSwish", 1],
            [5, 672, 160, True, "HSwish", 2],  # layer13, os=32 (dilated to 8)
            [5, 960, 160, True, "HSwish", 1],
            [5, 960, 160, True, "HSwish", 1],
        ],
    }
    # per arch: first layer of the rate-2 part, first layer of the rate-4 part, last channels
    _dilated = {"small": (4, 9, 576), "large": (7, 13, 960)}

    def __init__(
        self,
        arch: str = "small",
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = dict(type="BN"),  # noqa: B006 (never mutated)
        out_indices: Sequence[int] = (0, 1, 12),
        frozen_stages: int = -1,
        reduction_factor: int = 1,
        norm_eval: bool = False,
        with_cp: bool = False,
        pretrained: str | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(mmseg_init_cfg("MobileNetV3", pretrained, init_cfg))
        if arch not in self.arch_settings:
            raise ValueError(f"MobileNetV3 arch={arch!r}: valid: {sorted(self.arch_settings)}")
        if not isinstance(reduction_factor, int) or reduction_factor <= 0:
            raise ValueError(
                f"MobileNetV3 reduction_factor must be a positive int, got {reduction_factor!r}"
            )
        num_layers = len(self.arch_settings[arch]) + 2
        if not isinstance(out_indices, (tuple, list)) or not all(
            isinstance(i, int) and 0 <= i < num_layers for i in out_indices
        ):
            raise ValueError(
                f"MobileNetV3 out_indices={out_indices!r}: each must be an int in "
                f"range(0, {num_layers})"
            )
        if frozen_stages not in range(-1, num_layers):
            raise ValueError(
                f"MobileNetV3 frozen_stages={frozen_stages!r}: valid: -1..{num_layers - 1}"
            )
        self.pretrained = pretrained
        self.arch, self.conv_cfg, self.norm_cfg = arch, conv_cfg, norm_cfg
        self.out_indices, self.frozen_stages = out_indices, frozen_stages
        self.reduction_factor, self.norm_eval, self.with_cp = reduction_factor, norm_eval, with_cp
        self.layers = self._make_layer()

    def _make_layer(self) -> list[str]:
        settings = self.arch_settings[self.arch]
        rate2_from, rate4_from, last_channels = self._dilated[self.arch]
        in_channels = 16
        self.layer0 = ConvModule(
            3, in_channels, 3, stride=2, padding=1, conv_cfg=dict(type="Conv2dAdaptivePadding"),
            norm_cfg=self.norm_cfg, act_cfg=dict(type="HSwish"),
        )  # fmt: skip
        names = ["layer0"]
        for i, (kernel, mid, out, with_se, act, stride) in enumerate(settings):
            if i >= rate4_from - 1:  # the last stage, thinned by reduction_factor
                mid, out = mid // self.reduction_factor, out // self.reduction_factor
            se_cfg = None
            if with_se:
                se_cfg = dict(
                    channels=mid, ratio=4,
                    act_cfg=(dict(type="ReLU"), dict(type="HSigmoid", bias=3.0, divisor=6.0)),
                )  # fmt: skip
            layer = InvertedResidualV3(
                in_channels, out, mid, kernel_size=kernel, stride=stride, se_cfg=se_cfg,
                with_expand_conv=in_channels != mid, conv_cfg=self.conv_cfg,
                norm_cfg=self.norm_cfg, act_cfg=dict(type=act), with_cp=self.with_cp,
            )  # fmt: skip
            in_channels = out
            self.add_module(f"layer{i + 1}", layer)
            names.append(f"layer{i + 1}")
        # upstream gives this 1x1 conv dilation 4 (no effect on a 1x1 kernel)
        last = ConvModule(
            in_channels, last_channels, 1, dilation=4, conv_cfg=self.conv_cfg,
            norm_cfg=self.norm_cfg, act_cfg=dict(type="HSwish"),
        )  # fmt: skip
        self.add_module(f"layer{len(settings) + 1}", last)
        names.append(f"layer{len(settings) + 1}")

        # Output stride 8: the two last strided depthwise convs stop striding, and every
        # conv from there on is dilated (rate 2, then rate 4) with padding to match; the
        # adaptive-padding convs work their padding out themselves.
        getattr(self, f"layer{rate2_from}").depthwise_conv.conv.stride = (1, 1)
        getattr(self, f"layer{rate4_from}").depthwise_conv.conv.stride = (1, 1)
        for i in range(rate2_from, len(names)):
            layer = getattr(self, names[i])
            conv = (
                layer.depthwise_conv.conv if isinstance(layer, InvertedResidualV3) else layer.conv
            )
            rate = 2 if i < rate4_from else 4
            conv.dilation = (rate, rate)
            if not isinstance(conv, Conv2dAdaptivePadding):
                pad = rate * ((conv.kernel_size[0] - 1) // 2)
                conv.padding = (pad, pad)
        return names

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i, name in enumerate(self.layers):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return outs

    def _freeze_stages(self) -> None:
        for i in range(self.frozen_stages + 1):
            layer = getattr(self, f"layer{i}")
            layer.eval()
            for param in layer.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> SegMobileNetV3:
        """Train mode, keeping frozen layers (and with ``norm_eval`` every BatchNorm) in
        eval mode."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            set_norm_eval(self)
        return self
