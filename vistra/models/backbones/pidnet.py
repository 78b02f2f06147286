"""``PIDNet`` backbone (`PIDNet: A Real-time Semantic Segmentation Network Inspired by PID
Controllers <https://arxiv.org/abs/2206.02066>`_), MMSegmentation 1.x.

Three branches: P (detail, 1/8), I (context, down to 1/64) and D (boundary, 1/8).
``arch_settings`` lists the published sizes (s/m/l), which configs give as explicit
arguments.

Keys: ``stem.{0,1}`` (ConvModules), ``stem.{2,4}.{j}`` (BasicBlocks; ``stem.{3,5}`` are
ReLUs), ``i_branch_layers.{0,1,2}``, ``p_branch_layers.{0,1,2}``, ``d_branch_layers.{0,1,2}``
(blocks from ``ppm_variants``: ``conv1``/``conv2``(/``conv3``)/``downsample``),
``compression_{1,2}``, ``pag_{1,2}.f_i``/``.f_p`` (``PagFM``), ``diff_{1,2}``, ``spp``
(``PAPPM`` for s/m -- two stem blocks -- else ``DAPPM``), ``dfm`` (``LightBag``:
``f_p``/``f_i``, or ``Bag``: ``conv``).

PAPPM/DAPPM and the residual blocks are DDRNet's too and live in
``vistra.models.layers.ppm_variants``. As upstream builds them, the residual blocks use
their default BN (only the shortcut projections take ``norm_cfg``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers import ConvModule, build_activation_layer
from vistra.models.layers.ppm_variants import DAPPM, PAPPM, BasicBlock, Bottleneck
from vistra.registry import MODELS


class PagFM(BaseModule):
    """Pixel-attention-guided fusion: a sigmoid similarity of the projected P and I
    features picks, per pixel, between the (upsampled) I feature and the P feature."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        after_relu: bool = False,
        with_channel: bool = False,
        upsample_mode: str = "bilinear",
        norm_cfg: dict | None = dict(type="BN"),  # noqa: B006 (never mutated)
        act_cfg: dict | None = dict(type="ReLU", inplace=True),  # noqa: B006
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.after_relu, self.with_channel = after_relu, with_channel
        self.upsample_mode = upsample_mode
        self.f_i = ConvModule(in_channels, channels, 1, norm_cfg=norm_cfg, act_cfg=None)
        self.f_p = ConvModule(in_channels, channels, 1, norm_cfg=norm_cfg, act_cfg=None)
        if with_channel:
            self.up = ConvModule(channels, in_channels, 1, norm_cfg=norm_cfg, act_cfg=None)
        if after_relu:
            self.relu = build_activation_layer(act_cfg)

    def forward(self, x_p: torch.Tensor, x_i: torch.Tensor) -> torch.Tensor:
        if self.after_relu:
            x_p, x_i = self.relu(x_p), self.relu(x_i)
        size = x_p.shape[2:]
        f_i = F.interpolate(self.f_i(x_i), size=size, mode=self.upsample_mode, align_corners=False)
        f_p = self.f_p(x_p)
        if self.with_channel:
            sigma = torch.sigmoid(self.up(f_p * f_i))
        else:
            sigma = torch.sigmoid(torch.sum(f_p * f_i, dim=1).unsqueeze(1))
        x_i = F.interpolate(x_i, size=size, mode=self.upsample_mode, align_corners=False)
        return sigma * x_i + (1 - sigma) * x_p


class Bag(BaseModule):
    """Boundary-attention-guided fusion: ``conv(s * x_p + (1 - s) * x_i)`` with
    ``s = sigmoid(x_d)``; the conv is a pre-activation ConvModule."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        padding: int = 1,
        norm_cfg: dict | None = dict(type="BN"),  # noqa: B006 (never mutated)
        act_cfg: dict | None = dict(type="ReLU", inplace=True),  # noqa: B006
        conv_cfg: dict = dict(order=("norm", "act", "conv")),  # noqa: B006 (ConvModule kwargs)
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.conv = ConvModule(
            in_channels, out_channels, kernel_size, padding=padding, norm_cfg=norm_cfg,
            act_cfg=act_cfg, **conv_cfg,
        )  # fmt: skip

    def forward(self, x_p: torch.Tensor, x_i: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        sigma = torch.sigmoid(x_d)
        return self.conv(sigma * x_p + (1 - sigma) * x_i)


class LightBag(BaseModule):
    """Light boundary-attention-guided fusion: two 1x1 ConvModules over the P and I
    features, each mixed with the other by ``sigmoid(x_d)``, summed."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        norm_cfg: dict | None = dict(type="BN"),  # noqa: B006 (never mutated)
        act_cfg: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.f_p = ConvModule(in_channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.f_i = ConvModule(in_channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)

    def forward(self, x_p: torch.Tensor, x_i: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        sigma = torch.sigmoid(x_d)
        return self.f_p((1 - sigma) * x_i + x_p) + self.f_i(x_i + sigma * x_p)


@MODELS.register_module()
class PIDNet(BaseModule):
    """Returns the fused 1/8 feature (``channels * 4``) at inference, and
    ``(x_p, fused, x_d)`` in training for the auxiliary P and D losses.

    ``init_cfg`` may only be ``dict(type='Pretrained', checkpoint=...)`` (loaded
    non-strictly after the Kaiming init, as upstream does).
    """

    arch_settings = {
        "s": dict(channels=32, ppm_channels=96, num_stem_blocks=2, num_branch_blocks=3),
        "m": dict(channels=64, ppm_channels=96, num_stem_blocks=2, num_branch_blocks=3),
        "l": dict(channels=64, ppm_channels=112, num_stem_blocks=3, num_branch_blocks=4),
    }

    def __init__(
        self,
        in_channels: int = 3,
        channels: int = 64,
        ppm_channels: int = 96,
        num_stem_blocks: int = 2,
        num_branch_blocks: int = 3,
        align_corners: bool = False,
        norm_cfg: dict | None = dict(type="BN"),  # noqa: B006 (never mutated)
        act_cfg: dict | None = dict(type="ReLU", inplace=True),  # noqa: B006
        init_cfg: dict | None = None,
    ) -> None:
        if init_cfg is not None and (
            not isinstance(init_cfg, dict) or "checkpoint" not in init_cfg
        ):
            raise ValueError(
                "PIDNet init_cfg must be dict(type='Pretrained', checkpoint=...) or None, "
                f"got {init_cfg!r}"
            )
        super().__init__(init_cfg)
        self.norm_cfg, self.act_cfg, self.align_corners = norm_cfg, act_cfg, align_corners
        c = channels
        self.stem = self._make_stem_layer(in_channels, c, num_stem_blocks)
        self.relu = nn.ReLU()
        # I branch: 1/16 and 1/32 (BasicBlocks), 1/64 (Bottlenecks)
        self.i_branch_layers = nn.ModuleList(
            self._make_layer(
                BasicBlock if i < 2 else Bottleneck, c * 2 ** (i + 1),
                c * 8 if i > 0 else c * 4, num_branch_blocks if i < 2 else 2, stride=2,
            )
            for i in range(3)
        )  # fmt: skip
        # P branch: stays at 1/8
        self.p_branch_layers = nn.ModuleList(
            self._make_layer(
                BasicBlock if i < 2 else Bottleneck, c * 2, c * 2, num_stem_blocks if i < 2 else 1
            )
            for i in range(3)
        )
        self.compression_1 = ConvModule(
            c * 4, c * 2, 1, bias=False, norm_cfg=norm_cfg, act_cfg=None
        )
        self.compression_2 = ConvModule(
            c * 8, c * 2, 1, bias=False, norm_cfg=norm_cfg, act_cfg=None
        )
        self.pag_1 = PagFM(c * 2, c)
        self.pag_2 = PagFM(c * 2, c)
        # D branch: the small models (two stem blocks) use the light variants
        if num_stem_blocks == 2:
            self.d_branch_layers = nn.ModuleList([
                self._make_single_layer(BasicBlock, c * 2, c),
                self._make_layer(Bottleneck, c, c, 1),
            ])  # fmt: skip
            channel_expand, spp_module, dfm_module, act_cfg_dfm = 1, PAPPM, LightBag, None
        else:
            self.d_branch_layers = nn.ModuleList([
                self._make_single_layer(BasicBlock, c * 2, c * 2),
                self._make_single_layer(BasicBlock, c * 2, c * 2),
            ])  # fmt: skip
            channel_expand, spp_module, dfm_module, act_cfg_dfm = 2, DAPPM, Bag, act_cfg
        self.diff_1 = ConvModule(
            c * 4, c * channel_expand, 3, padding=1, bias=False, norm_cfg=norm_cfg, act_cfg=None
        )
        self.diff_2 = ConvModule(c * 8, c * 2, 3, padding=1, bias=False, norm_cfg=norm_cfg,
                                 act_cfg=None)  # fmt: skip
        self.spp = spp_module(c * 16, ppm_channels, c * 4, num_scales=5)
        self.dfm = dfm_module(c * 4, c * 4, norm_cfg=norm_cfg, act_cfg=act_cfg_dfm)
        self.d_branch_layers.append(self._make_layer(Bottleneck, c * 2, c * 2, 1))

    # ------------------------------------------------------------------ builders
    def _make_stem_layer(self, in_channels: int, channels: int, num_blocks: int) -> nn.Sequential:
        common = dict(norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)
        return nn.Sequential(
            ConvModule(in_channels, channels, 3, stride=2, padding=1, **common),
            ConvModule(channels, channels, 3, stride=2, padding=1, **common),
            self._make_layer(BasicBlock, channels, channels, num_blocks),
            nn.ReLU(),
            self._make_layer(BasicBlock, channels, channels * 2, num_blocks, stride=2),
            nn.ReLU(),
        )

    def _shortcut(
        self, block: type[BasicBlock | Bottleneck], in_channels: int, channels: int, stride: int
    ) -> ConvModule | None:
        if stride == 1 and in_channels == channels * block.expansion:
            return None
        return ConvModule(
            in_channels, channels * block.expansion, 1, stride=stride, norm_cfg=self.norm_cfg,
            act_cfg=None,
        )  # fmt: skip

    def _make_layer(
        self,
        block: type[BasicBlock | Bottleneck],
        in_channels: int,
        channels: int,
        num_blocks: int,
        stride: int = 1,
    ) -> nn.Sequential:
        """``num_blocks`` blocks; the first keeps its default output activation, the last
        (when there are several) has none."""
        layers = [
            block(
                in_channels, channels, stride, self._shortcut(block, in_channels, channels, stride)
            )
        ]
        in_channels = channels * block.expansion
        for i in range(1, num_blocks):
            act_out = None if i == num_blocks - 1 else self.act_cfg
            layers.append(block(in_channels, channels, stride=1, act_cfg_out=act_out))
        return nn.Sequential(*layers)

    def _make_single_layer(
        self,
        block: type[BasicBlock | Bottleneck],
        in_channels: int,
        channels: int,
        stride: int = 1,
    ) -> nn.Module:
        shortcut = self._shortcut(block, in_channels, channels, stride)
        return block(in_channels, channels, stride, shortcut, act_cfg_out=None)

    # ------------------------------------------------------------------ weights
    def init_weights(self) -> None:
        """Kaiming-normal (fan_out) convs, unit BatchNorms, then the ``Pretrained``
        checkpoint if any (non-strict), as upstream does."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if self.init_cfg is not None:
            from vistra.checkpoint import load_pretrained  # torch-heavy; imported when used

            load_pretrained(self, self.init_cfg["checkpoint"])
        self._is_init = True

    # ------------------------------------------------------------------ forward
    def _up(self, x: torch.Tensor, size: list[int]) -> torch.Tensor:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=self.align_corners)

    def forward(
        self, x: torch.Tensor
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        size = [x.shape[-2] // 8, x.shape[-1] // 8]
        x = self.stem(x)
        x_i = self.relu(self.i_branch_layers[0](x))
        x_p = self.p_branch_layers[0](x)
        x_d = self.d_branch_layers[0](x)
        x_p = self.pag_1(x_p, self.compression_1(x_i))
        x_d = x_d + self._up(self.diff_1(x_i), size)
        temp_p = x_p  # P-branch output for the auxiliary loss (upstream clones it)

        x_i = self.relu(self.i_branch_layers[1](x_i))
        x_p = self.p_branch_layers[1](self.relu(x_p))
        x_d = self.d_branch_layers[1](self.relu(x_d))
        x_p = self.pag_2(x_p, self.compression_2(x_i))
        x_d = x_d + self._up(self.diff_2(x_i), size)
        temp_d = x_d

        x_i = self.i_branch_layers[2](x_i)
        x_p = self.p_branch_layers[2](self.relu(x_p))
        x_d = self.d_branch_layers[2](self.relu(x_d))
        x_i = self._up(self.spp(x_i), size)
        out = self.dfm(x_p, x_i, x_d)
        return (temp_p, out, temp_d) if self.training else out
