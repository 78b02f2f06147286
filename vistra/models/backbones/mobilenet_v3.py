"""MMPretrain's ``MobileNetV3`` backbone (`Searching for MobileNetV3
<https://arxiv.org/abs/1905.02244>`_), the classification network.

MMSegmentation's ``MobileNetV3`` (dilated last stages, TF-"SAME" padded strided convs) is
:mod:`vistra.models.backbones.mobilenet_v3_mmseg`, registered under scope ``mmseg``; this
is the plain entry, which configs without that default scope get.

Keys: ``layer0.{conv,bn}`` (the stem), ``layer{1..n}`` MBConv blocks (``expand_conv`` where
the block expands, ``depthwise_conv``, ``se.conv1``/``se.conv2``, ``linear_conv``) and
``layer{n+1}.{conv,bn}`` (the final 1x1 conv).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn.modules.batchnorm import _BatchNorm

from vistra.models.backbones.mobilenet_v2 import check_frozen_stages, check_out_indices
from vistra.models.base import BaseModule
from vistra.models.layers.conv_module import ConvModule
from vistra.models.layers.mbconv import InvertedResidual
from vistra.models.utils.arch import pick_arch
from vistra.registry import MODELS

_DEFAULT_INIT = [
    dict(type="Kaiming", layer=["Conv2d"], nonlinearity="leaky_relu"),
    dict(type="Normal", layer=["Linear"], std=0.01),
    dict(type="Constant", layer=["BatchNorm2d"], val=1),
]
_STEM_CHANNELS = 16


@MODELS.register_module()
class MobileNetV3(BaseModule):
    """MobileNetV3: a strided 3x3 stem (16 channels, hard swish), the MBConv blocks of the
    arch table and a final 1x1 conv (hard swish) to the last block's expansion width,
    returned as ``layer0`` (stem) to ``layer{n+1}`` (final conv).

    ``arch`` names ``arch_settings`` or is a dict with ``layers``: rows ``[kernel_size,
    mid_channels, out_channels, with_se, activation, stride]``. ``out_indices`` defaults to
    the final conv (12 for the small archs, 16 for ``large``). ``frozen_stages=n``
    (``-1``: none) freezes ``layer0..n`` (in eval mode); ``norm_eval`` keeps every
    BatchNorm in eval mode while training.
    """

    arch_settings = {
        "small": [[3, 16, 16, True, "ReLU", 2],
                  [3, 72, 24, False, "ReLU", 2],
                  [3, 88, 24, False, "ReLU", 1],
                  [5, 96, 40, True, "HSwish", 2],
                  [5, 240, 40, True, "HSwish", 1],
                  [5, 240, 40, True, "HSwish", 1],
                  [5, 120, 48, True, "HSwish", 1],
                  [5, 144, 48, True, "HSwish", 1],
                  [5, 288, 96, True, "HSwish", 2],
                  [5, 576, 96, True, "HSwish", 1],
                  [5, 576, 96, True, "HSwish", 1]],
        "small_075": [[3, 16, 16, True, "ReLU", 2],
                      [3, 72, 24, False, "ReLU", 2],
                      [3, 88, 24, False, "ReLU", 1],
                      [5, 96, 32, True, "HSwish", 2],
                      [5, 192, 32, True, "HSwish", 1],
                      [5, 192, 32, True, "HSwish", 1],
                      [5, 96, 40, True, "HSwish", 1],
                      [5, 120, 40, True, "HSwish", 1],
                      [5, 240, 72, True, "HSwish", 2],
                      [5, 432, 72, True, "HSwish", 1],
                      [5, 432, 72, True, "HSwish", 1]],
        "small_050": [[3, 16, 8, True, "ReLU", 2],
                      [3, 40, 16, False, "ReLU", 2],
                      [3, 56, 16, False, "ReLU", 1],
                      [5, 64, 24, True, "HSwish", 2],
                      [5, 144, 24, True, "HSwish", 1],
                      [5, 144, 24, True, "HSwish", 1],
                      [5, 72, 24, True, "HSwish", 1],
                      [5, 72, 24, True, "HSwish", 1],
                      [5, 144, 48, True, "HSwish", 2],
                      [5, 288, 48, True, "HSwish", 1],
                      [5, 288, 48, True, "HSwish", 1]],
        "large": [[3, 16, 16, False, "ReLU", 1],
                  [3, 64, 24, False, "ReLU", 2],
                  [3, 72, 24, False, "ReLU", 1],
                  [5, 72, 40, True, "ReLU", 2],
                  [5, 120, 40, True, "ReLU", 1],
                  [5, 120, 40, True, "ReLU", 1],
                  [3, 240, 80, False, "HSwish", 2],
                  [3, 200, 80, False, "HSwish", 1],
                  [3, 184, 80, False, "HSwish", 1],
                  [3, 184, 80, False, "HSwish", 1],
                  [3, 480, 112, True, "HSwish", 1],
                  [3, 672, 112, True, "HSwish", 1],
                  [5, 672, 160, True, "HSwish", 2],
                  [5, 960, 160, True, "HSwish", 1],
                  [5, 960, 160, True, "HSwish", 1]],
    }  # fmt: skip

    def __init__(
        self,
        arch: str | dict = "small",
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = dict(type="BN", eps=0.001, momentum=0.01),  # noqa: B006
        out_indices: int | Sequence[int] | None = None,
        frozen_stages: int = -1,
        norm_eval: bool = False,
        with_cp: bool = False,
        init_cfg: dict | list[dict] | None = _DEFAULT_INIT,  # copied by BaseModule
    ) -> None:
        super().__init__(init_cfg)
        table = {name: {"layers": rows} for name, rows in self.arch_settings.items()}
        rows = pick_arch(arch, table, "MobileNetV3", ("layers",))["layers"]
        if not rows or not all(isinstance(r, Sequence) and len(r) == 6 for r in rows):
            raise ValueError(
                "arch 'layers' must be a non-empty list of rows [kernel_size, mid_channels, "
                f"out_channels, with_se, activation, stride], got {rows!r}"
            )
        self.arch = arch
        self.layer_setting = [list(r) for r in rows]
        num_layers = len(rows) + 2  # the stem, the blocks, the final conv
        if out_indices is None:
            out_indices = (num_layers - 1,)  # (12,) for the small archs, (16,) for large
        self.out_indices = check_out_indices(out_indices, num_layers)
        self.frozen_stages = check_frozen_stages(frozen_stages, -1, num_layers)
        self.conv_cfg, self.norm_cfg = conv_cfg, norm_cfg
        self.norm_eval, self.with_cp = norm_eval, with_cp
        self.layers = self._make_layers()
        self.feat_dim = self.layer_setting[-1][1]
        self._freeze_stages()

    def _make_layers(self) -> list[str]:
        common = dict(conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg)
        self.layer0 = ConvModule(
            3, _STEM_CHANNELS, 3, stride=2, padding=1, act_cfg=dict(type="HSwish"), **common
        )
        names, in_channels = ["layer0"], _STEM_CHANNELS
        for i, (kernel_size, mid_channels, out_channels, with_se, act, stride) in enumerate(
            self.layer_setting
        ):
            se_cfg = None
            if with_se:
                hsigmoid = dict(type="HSigmoid", bias=3, divisor=6, min_value=0, max_value=1)
                se_cfg = dict(channels=mid_channels, ratio=4, act_cfg=(dict(type="ReLU"), hsigmoid))
            block = InvertedResidual(
                in_channels, out_channels, mid_channels, kernel_size=kernel_size, stride=stride,
                se_cfg=se_cfg, act_cfg=dict(type=act), with_cp=self.with_cp, **common,
            )  # fmt: skip
            self.add_module(f"layer{i + 1}", block)
            names.append(f"layer{i + 1}")
            in_channels = out_channels
        last = f"layer{len(self.layer_setting) + 1}"
        self.add_module(
            last,
            ConvModule(
                in_channels, self.layer_setting[-1][1], 1, act_cfg=dict(type="HSwish"), **common
            ),
        )
        return names + [last]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = []
        for i, name in enumerate(self.layers):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _freeze_stages(self) -> None:
        for i in range(self.frozen_stages + 1):
            layer = getattr(self, f"layer{i}")
            layer.eval()
            for param in layer.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> MobileNetV3:
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self
