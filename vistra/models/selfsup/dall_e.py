"""The DALL-E image tokenizer's encoder (``DALL-E``), the target generator of BEiT v1 and
CAE: `Zero-Shot Text-to-Image Generation <https://arxiv.org/abs/2102.12092>`_.

A convolutional encoder that maps an image (in the ``[0.1, 0.9]`` "logit-Laplace" range the
data preprocessors produce) to ``vocab_size`` logits per cell of an 8x smaller grid:
a 7x7 input convolution, four groups of residual blocks (the first three followed by a 2x2
max-pool), ReLU and a 1x1 output convolution. The argmax over the logits is the visual
token that BEiT and CAE predict for each masked patch.

Key layout (MMPretrain's and MMSelfSup's, the published ``dalle_encoder.pth``):
``blocks.input.{w,b}``, ``blocks.group_{g}.block_{i}.id_path.{w,b}`` (only where the width
changes), ``blocks.group_{g}.block_{i}.res_path.conv_{1..4}.{w,b}`` and
``blocks.output.conv.{w,b}``: raw weight and bias tensors, not ``nn.Conv2d`` modules.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.base import BaseModule
from vistra.registry import MODELS

__all__ = ["DALLEEncoder"]


class _Conv(nn.Module):
    """A same-padded convolution holding its kernel as ``w`` and its bias as ``b``.

    ``use_float16`` runs it in half precision on CUDA, as the released tokenizer does; on
    the CPU it always runs in float32.
    """

    def __init__(self, n_in: int, n_out: int, kw: int, use_float16: bool = True) -> None:
        super().__init__()
        if kw < 1 or kw % 2 == 0:
            raise ValueError(f"DALL-E convolution: kernel width must be odd and >= 1, got {kw}")
        self.kw = kw
        self.use_float16 = use_float16
        weight = torch.empty(n_out, n_in, kw, kw).normal_(std=1 / math.sqrt(n_in * kw**2))
        self.w = nn.Parameter(weight)
        self.b = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_float16 and self.w.device.type == "cuda":
            return F.conv2d(x.half(), self.w.half(), self.b.half(), padding=(self.kw - 1) // 2)
        return F.conv2d(x.float(), self.w, self.b, padding=(self.kw - 1) // 2)


class _EncoderBlock(nn.Module):
    """``id_path(x) + post_gain * res_path(x)``, the residual branch a 4-conv bottleneck
    scaled down by the square of the total number of blocks (stable deep residual nets)."""

    def __init__(self, n_in: int, n_out: int, n_layers: int) -> None:
        super().__init__()
        hidden = n_out // 4
        self.post_gain = 1 / (n_layers**2)
        self.id_path = _Conv(n_in, n_out, 1) if n_in != n_out else nn.Identity()
        self.res_path = nn.Sequential(
            OrderedDict(
                [
                    ("relu_1", nn.ReLU()),
                    ("conv_1", _Conv(n_in, hidden, 3)),
                    ("relu_2", nn.ReLU()),
                    ("conv_2", _Conv(hidden, hidden, 3)),
                    ("relu_3", nn.ReLU()),
                    ("conv_3", _Conv(hidden, hidden, 3)),
                    ("relu_4", nn.ReLU()),
                    ("conv_4", _Conv(hidden, n_out, 1)),
                ]
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.id_path(x) + self.post_gain * self.res_path(x)


@MODELS.register_module(name="DALL-E")
class DALLEEncoder(BaseModule):
    """DALL-E encoder: ``(B, input_channels, H, W)`` -> ``(B, vocab_size, H/8, W/8)``.

    ``device`` and ``requires_grad`` are upstream's arguments: the parameters are made on
    ``device`` (the Runner moves the model anyway) and, as upstream, stay trainable
    tensors; the algorithms use the logits only through an argmax, so they get no gradient.
    """

    def __init__(
        self,
        group_count: int = 4,
        n_hid: int = 256,
        n_blk_per_group: int = 2,
        input_channels: int = 3,
        vocab_size: int = 8192,
        device: torch.device | str = "cpu",
        requires_grad: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if group_count != 4:
            raise ValueError(
                f"DALL-E: group_count must be 4 (the released layout), got {group_count}"
            )
        self.input_channels = input_channels
        self.requires_grad = requires_grad
        n_layers = group_count * n_blk_per_group
        widths = [n_hid, n_hid, 2 * n_hid, 4 * n_hid, 8 * n_hid]  # in, then each group's

        def group(g: int, pool: bool) -> nn.Sequential:
            blocks = [
                (f"block_{i + 1}", _EncoderBlock(widths[g - 1] if i == 0 else widths[g],
                                                 widths[g], n_layers))
                for i in range(n_blk_per_group)
            ]  # fmt: skip
            if pool:
                blocks.append(("pool", nn.MaxPool2d(kernel_size=2)))
            return nn.Sequential(OrderedDict(blocks))

        output = nn.Sequential(
            OrderedDict(
                [("relu", nn.ReLU()), ("conv", _Conv(8 * n_hid, vocab_size, 1, use_float16=False))]
            )
        )
        self.blocks = nn.Sequential(
            OrderedDict(
                [
                    ("input", _Conv(input_channels, n_hid, 7)),
                    ("group_1", group(1, True)),
                    ("group_2", group(2, True)),
                    ("group_3", group(3, True)),
                    ("group_4", group(4, False)),
                    ("output", output),
                ]
            )
        )
        self.to(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"DALL-E: input must be (B, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.input_channels:
            raise ValueError(
                f"DALL-E: input has {x.shape[1]} channels, the encoder is built for "
                f"{self.input_channels}"
            )
        return self.blocks(x.float())
