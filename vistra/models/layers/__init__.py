"""Reusable layers: norm/conv/activation builders by MMCV's names, ConvModule, DropPath."""

from vistra.models.layers import activation, conv, conv_module, drop, norm
from vistra.models.layers.activation import HSigmoid, Swish, build_activation_layer
from vistra.models.layers.conv import build_conv_layer
from vistra.models.layers.conv_module import ConvModule
from vistra.models.layers.depthwise_separable_conv import DepthwiseSeparableConvModule
from vistra.models.layers.drop import Dropout, DropPath, build_dropout
from vistra.models.layers.norm import build_norm_layer, infer_abbr, is_norm

__all__ = [
    "ConvModule",
    "DepthwiseSeparableConvModule",
    "DropPath",
    "Dropout",
    "HSigmoid",
    "Swish",
    "build_activation_layer",
    "build_conv_layer",
    "build_dropout",
    "build_norm_layer",
    "infer_abbr",
    "is_norm",
]

# The transformer layers (another engineer's module) import the builders above, so they
# come last.
from vistra.models.layers import transformer  # noqa: E402
