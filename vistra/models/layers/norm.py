"""Normalisation layers by MMCV's config names, and the names they get inside a module.

``build_norm_layer(dict(type='BN'), 64, postfix=1)`` returns ``('bn1', BatchNorm2d(64))``:
the abbreviation (``bn``, ``gn``, ``ln``, ``in``) is part of every checkpoint key, so it
must match MMCV's exactly for published weights to load.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from vistra.registry import MODELS, RegistryError, did_you_mean


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of ``(N, C, H, W)`` maps: MMPretrain's ``LN2d``
    (ConvNeXt, PoolFormer-style networks). Parameters ``weight``/``bias`` as
    ``nn.LayerNorm``'s; ``forward(x, data_format='channel_last')`` takes ``(N, H, W, C)``
    tensors without permuting."""

    def __init__(self, num_channels: int, **kwargs) -> None:
        super().__init__(num_channels, **kwargs)
        self.num_channels = self.normalized_shape[0]

    def forward(self, x: Tensor, data_format: str = "channel_first") -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"LayerNorm2d takes (N, C, H, W) inputs, got shape {tuple(x.shape)}")
        if data_format == "channel_last":
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        if data_format != "channel_first":
            raise ValueError(
                f"data_format must be 'channel_first' or 'channel_last', got {data_format!r}"
            )
        x = F.layer_norm(
            x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps
        )
        # contiguous, as MMPretrain's: later views of the map must not see a permuted layout
        return x.permute(0, 3, 1, 2).contiguous()


_NORM_LAYERS: dict[str, type[nn.Module]] = {
    "BN": nn.BatchNorm2d,
    "BN1d": nn.BatchNorm1d,
    "BN2d": nn.BatchNorm2d,
    "BN3d": nn.BatchNorm3d,
    "SyncBN": nn.SyncBatchNorm,
    "GN": nn.GroupNorm,
    "LN": nn.LayerNorm,
    "LN2d": LayerNorm2d,
    "IN": nn.InstanceNorm2d,
    "IN1d": nn.InstanceNorm1d,
    "IN2d": nn.InstanceNorm2d,
    "IN3d": nn.InstanceNorm3d,
}
for _name, _cls in _NORM_LAYERS.items():
    MODELS.register_module(name=_name, module=_cls)


def infer_abbr(class_type: type) -> str:
    """The attribute-name stem MMCV gives a norm layer class (``bn``, ``gn``, ``ln``, ``in``).

    A class may set ``_abbr_`` to choose its own; otherwise the base class decides, and
    failing that the class name (``MyBatchNorm`` -> ``bn``).
    """
    if not isinstance(class_type, type):
        raise TypeError(f"class_type must be a class, got {class_type!r}")
    if hasattr(class_type, "_abbr_"):
        return class_type._abbr_
    if issubclass(class_type, _InstanceNorm):  # InstanceNorm subclasses _NormBase too
        return "in"
    if issubclass(class_type, _BatchNorm):
        return "bn"
    if issubclass(class_type, nn.GroupNorm):
        return "gn"
    if issubclass(class_type, nn.LayerNorm):
        return "ln"
    name = class_type.__name__.lower()
    for word, abbr in (("batch", "bn"), ("group", "gn"), ("layer", "ln"), ("instance", "in")):
        if word in name:
            return abbr
    return "norm_layer"


def _lookup(layer_type: str) -> type[nn.Module]:
    cls = _NORM_LAYERS.get(layer_type) or MODELS.get(layer_type)
    if cls is None:
        hint = did_you_mean(layer_type, list(_NORM_LAYERS))
        raise RegistryError(
            f"unknown norm layer type {layer_type!r} in norm_cfg.{hint}"
            f" Valid: {', '.join(_NORM_LAYERS)} (or a class registered in MODELS)"
        )
    return cls


def build_norm_layer(
    cfg: dict, num_features: int, postfix: int | str = ""
) -> tuple[str, nn.Module]:
    """Build a norm layer from ``cfg`` and return ``(name, layer)`` as MMCV does.

    ``cfg`` keys: ``type``; ``requires_grad`` (freeze the affine parameters when False);
    everything else (``eps``, ``momentum``, ``num_groups`` for GN, ...) goes to the layer.
    ``eps`` defaults to 1e-5 as in MMCV.
    """
    if not isinstance(cfg, dict):
        raise TypeError(f"norm_cfg must be a dict, got {type(cfg).__name__}")
    if "type" not in cfg:
        raise KeyError(f"norm_cfg needs a 'type' key (e.g. dict(type='BN')), got {cfg}")
    args = dict(cfg)
    layer_type = args.pop("type")
    norm_cls = _lookup(layer_type) if isinstance(layer_type, str) else layer_type
    name = infer_abbr(norm_cls) + str(postfix)
    requires_grad = args.pop("requires_grad", True)
    args.setdefault("eps", 1e-5)
    if norm_cls is nn.GroupNorm:
        if "num_groups" not in args:
            raise KeyError(f"norm_cfg of type 'GN' needs 'num_groups', got {cfg}")
        layer = norm_cls(num_channels=num_features, **args)
    else:
        layer = norm_cls(num_features, **args)
    for param in layer.parameters():
        param.requires_grad = requires_grad
    return name, layer


def is_norm(module: nn.Module) -> bool:
    """Whether ``module`` is a batch, group, layer or instance norm layer."""
    return isinstance(module, (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm))
