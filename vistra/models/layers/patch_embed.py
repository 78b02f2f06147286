"""Image-to-token embedding by a strided convolution (mmcv's ``PatchEmbed``).

State-dict keys are mmcv's: ``projection.{weight,bias}`` and ``norm.*`` when a norm is
configured, so MMPretrain / MMSegmentation transformer checkpoints load as they are.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vistra.models.base import BaseModule
from vistra.models.layers.norm import build_norm_layer
from vistra.models.layers.pos_embed import to_2tuple

PADDING_MODES = ("corner", "same")


class AdaptivePadding(nn.Module):
    """Zero-pads an input so that a kernel/stride tiles it without dropping pixels.

    ``'corner'`` pads bottom and right (mmcv's default, keeps patch alignment with the
    top-left corner); ``'same'`` splits the padding around the input like TensorFlow.
    """

    def __init__(
        self,
        kernel_size: int | tuple[int, int] = 1,
        stride: int | tuple[int, int] = 1,
        dilation: int | tuple[int, int] = 1,
        padding: str = "corner",
    ) -> None:
        super().__init__()
        if padding not in PADDING_MODES:
            raise ValueError(f"padding must be one of {PADDING_MODES}, got {padding!r}")
        self.padding = padding
        self.kernel_size = to_2tuple(kernel_size)
        self.stride = to_2tuple(stride)
        self.dilation = to_2tuple(dilation)

    def get_pad_shape(self, input_shape: tuple[int, int]) -> tuple[int, int]:
        """Total padding ``(pad_h, pad_w)`` needed for an ``(H, W)`` input."""
        pads = []
        for size, k, s, d in zip(input_shape, self.kernel_size, self.stride, self.dilation):
            out = math.ceil(size / s)
            pads.append(max((out - 1) * s + (k - 1) * d + 1 - size, 0))
        return pads[0], pads[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad_h, pad_w = self.get_pad_shape(tuple(x.shape[-2:]))
        if pad_h == 0 and pad_w == 0:
            return x
        if self.padding == "corner":
            return F.pad(x, [0, pad_w, 0, pad_h])
        return F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])


class PatchEmbed(BaseModule):
    """Split an image into patches and project each to ``embed_dims``.

    ``forward`` returns the tokens ``(B, h*w, embed_dims)`` and the patch grid ``(h, w)``,
    which varies with the input size. ``init_out_size`` is the grid for ``input_size``,
    used by models to size a learned position embedding. Arguments are mmcv's; only
    ``conv_type='Conv2d'`` exists here.
    """

    def __init__(
        self,
        in_channels: int = 3,
        embed_dims: int = 768,
        conv_type: str = "Conv2d",
        kernel_size: int | tuple[int, int] = 16,
        stride: int | tuple[int, int] | None = 16,
        padding: int | tuple[int, int] | str = "corner",
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
        norm_cfg: dict | None = None,
        input_size: int | tuple[int, int] | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if conv_type != "Conv2d":
            raise ValueError(f"PatchEmbed supports conv_type='Conv2d' only, got {conv_type!r}")
        self.embed_dims = embed_dims
        kernel = to_2tuple(kernel_size)
        stride_hw = to_2tuple(kernel_size if stride is None else stride)
        dilation_hw = to_2tuple(dilation)
        if isinstance(padding, str):
            self.adaptive_padding: AdaptivePadding | None = AdaptivePadding(
                kernel, stride_hw, dilation_hw, padding
            )
            pad_hw = (0, 0)
        else:
            self.adaptive_padding = None
            pad_hw = to_2tuple(padding)
        self.projection = nn.Conv2d(
            in_channels,
            embed_dims,
            kernel_size=kernel,
            stride=stride_hw,
            padding=pad_hw,
            dilation=dilation_hw,
            bias=bias,
        )
        self.norm = build_norm_layer(norm_cfg, embed_dims)[1] if norm_cfg is not None else None
        self.init_input_size: tuple[int, int] | None = None
        self.init_out_size: tuple[int, int] | None = None
        if input_size:
            self.init_input_size = to_2tuple(input_size)
            self.init_out_size = self._out_size(self.init_input_size)

    def _out_size(self, input_size: tuple[int, int]) -> tuple[int, int]:
        """The patch grid for an ``(H, W)`` input, padding included."""
        h, w = input_size
        if self.adaptive_padding is not None:
            pad_h, pad_w = self.adaptive_padding.get_pad_shape((h, w))
            h, w = h + pad_h, w + pad_w
        conv = self.projection
        sizes = []
        for size, k, s, p, d in zip(
            (h, w), conv.kernel_size, conv.stride, conv.padding, conv.dilation
        ):
            sizes.append((size + 2 * p - d * (k - 1) - 1) // s + 1)
        return sizes[0], sizes[1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        if self.adaptive_padding is not None:
            x = self.adaptive_padding(x)
        x = self.projection(x)
        out_size = (int(x.shape[2]), int(x.shape[3]))
        x = x.flatten(2).transpose(1, 2)
        if self.norm is not None:
            x = self.norm(x)
        return x, out_size
