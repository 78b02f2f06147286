"""Convolution layers by MMCV's config names (``conv_cfg=None`` means ``Conv2d``)."""

from __future__ import annotations

from typing import Any

from torch import nn

from vistra.registry import MODELS

_CONV_LAYERS: dict[str, type[nn.Module]] = {
    "Conv1d": nn.Conv1d,
    "Conv2d": nn.Conv2d,
    "Conv3d": nn.Conv3d,
    "Conv": nn.Conv2d,
}
for _name, _cls in _CONV_LAYERS.items():
    MODELS.register_module(name=_name, module=_cls)


def build_conv_layer(cfg: dict | None, *args: Any, **kwargs: Any) -> nn.Module:
    """Build a conv layer: ``cfg`` gives the type (and extra options), ``args``/``kwargs``
    the usual ``in_channels, out_channels, kernel_size, ...``."""
    cfg = dict(type="Conv2d") if cfg is None else dict(cfg)
    if "type" not in cfg:
        raise KeyError(f"conv_cfg needs a 'type' key (e.g. dict(type='Conv2d')), got {cfg}")
    layer_type = cfg.pop("type")
    if isinstance(layer_type, str):
        conv_cls = MODELS.get(layer_type)
        if conv_cls is None:
            # build() formats the "did you mean" error for us
            return MODELS.build(dict(type=layer_type), key_path="conv_cfg")
    else:
        conv_cls = layer_type
    return conv_cls(*args, **kwargs, **cfg)
