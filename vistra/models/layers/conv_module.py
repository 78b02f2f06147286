"""``ConvModule``: conv, norm and activation in one block, keyed as MMCV keys them.

State-dict keys are ``conv.*``, then the norm under its abbreviation (``bn.*``, ``gn.*``),
and the activation as ``activate`` (no parameters unless PReLU).
"""

from __future__ import annotations

import inspect
import warnings

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from vistra.models.layers.activation import build_activation_layer
from vistra.models.layers.conv import build_conv_layer
from vistra.models.layers.norm import build_norm_layer
from vistra.registry import MODELS

_PADDING_LAYERS: dict[str, type[nn.Module]] = {
    "zero": nn.ZeroPad2d,
    "reflect": nn.ReflectionPad2d,
    "replicate": nn.ReplicationPad2d,
}
_BUILTIN_PADDING_MODES = ("zeros", "circular")  # handled by the conv itself


def _accepts_inplace(act_type: str | type) -> bool:
    cls = MODELS.get(act_type) if isinstance(act_type, str) else act_type
    if cls is None:
        return False  # build_activation_layer reports the unknown name
    try:
        return "inplace" in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False


@MODELS.register_module()
class ConvModule(nn.Module):
    """Conv -> norm -> activation (in ``order``), MMCV's building block.

    ``bias='auto'`` gives the conv a bias only when there is no norm layer. ``inplace`` is
    passed to activations that take it. ``padding_mode`` may be a conv mode (``'zeros'``,
    ``'circular'``) or an explicit padding layer (``'zero'``, ``'reflect'``, ``'replicate'``).
    """

    _abbr_ = "conv_block"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool | str = "auto",
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = dict(type="ReLU"),  # noqa: B006 (MMCV's default, never mutated)
        inplace: bool = True,
        with_spectral_norm: bool = False,
        padding_mode: str = "zeros",
        order: tuple[str, str, str] = ("conv", "norm", "act"),
    ) -> None:
        super().__init__()
        if not isinstance(order, tuple) or sorted(order) != ["act", "conv", "norm"]:
            raise ValueError(
                f"ConvModule order must be a permutation of ('conv', 'norm', 'act'), got {order!r}"
            )
        if bias != "auto" and not isinstance(bias, bool):
            raise ValueError(f"ConvModule bias must be True, False or 'auto', got {bias!r}")
        if padding_mode not in _BUILTIN_PADDING_MODES and padding_mode not in _PADDING_LAYERS:
            valid = _BUILTIN_PADDING_MODES + tuple(_PADDING_LAYERS)
            raise ValueError(f"ConvModule padding_mode {padding_mode!r} is not one of {valid}")
        self.conv_cfg, self.norm_cfg, self.act_cfg = conv_cfg, norm_cfg, act_cfg
        self.inplace = inplace
        self.order = order
        self.with_norm = norm_cfg is not None
        self.with_activation = act_cfg is not None
        self.with_bias = (not self.with_norm) if bias == "auto" else bias
        self.with_explicit_padding = padding_mode in _PADDING_LAYERS
        if self.with_explicit_padding:
            self.padding_layer = _PADDING_LAYERS[padding_mode](padding)
        conv_kwargs = {} if self.with_explicit_padding else {"padding_mode": padding_mode}
        self.conv = build_conv_layer(
            conv_cfg,
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=0 if self.with_explicit_padding else padding,
            dilation=dilation,
            groups=groups,
            bias=self.with_bias,
            **conv_kwargs,
        )
        if with_spectral_norm:
            self.conv = nn.utils.spectral_norm(self.conv)
        self.norm_name: str | None = None
        if self.with_norm:
            after_conv = order.index("norm") > order.index("conv")
            norm_channels = out_channels if after_conv else in_channels
            self.norm_name, norm = build_norm_layer(norm_cfg, norm_channels)  # type: ignore[arg-type]
            self.add_module(self.norm_name, norm)
            if self.with_bias and isinstance(norm, (_BatchNorm, _InstanceNorm)):
                warnings.warn("Unnecessary conv bias before batch/instance norm", stacklevel=2)
        if self.with_activation:
            act = dict(act_cfg)  # type: ignore[arg-type]
            if _accepts_inplace(act.get("type", "")):
                act.setdefault("inplace", inplace)
            self.activate = build_activation_layer(act)
        self.init_weights()

    @property
    def norm(self) -> nn.Module | None:
        return getattr(self, self.norm_name) if self.norm_name else None

    def init_weights(self) -> None:
        """Kaiming-normal (fan_out) conv and unit norm, as MMCV does on construction.

        A conv type with its own ``init_weights`` keeps its own scheme.
        """
        from vistra.models.init import constant_init, kaiming_init

        if not hasattr(self.conv, "init_weights"):
            if self.with_activation and self.act_cfg.get("type") == "LeakyReLU":  # type: ignore[union-attr]
                a = self.act_cfg.get("negative_slope", 0.01)  # type: ignore[union-attr]
                kaiming_init(self.conv, a=a, nonlinearity="leaky_relu")
            else:
                kaiming_init(self.conv, a=0, nonlinearity="relu")
        if self.with_norm:
            constant_init(self.norm, 1, bias=0)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor, activate: bool = True, norm: bool = True) -> torch.Tensor:
        for layer in self.order:
            if layer == "conv":
                if self.with_explicit_padding:
                    x = self.padding_layer(x)
                x = self.conv(x)
            elif layer == "norm" and norm and self.with_norm:
                x = self.norm(x)  # type: ignore[misc]
            elif layer == "act" and activate and self.with_activation:
                x = self.activate(x)
        return x
