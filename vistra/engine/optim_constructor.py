"""Optimizer wrapper constructors: from ``optim_wrapper`` config + model to an ``OptimWrapper``.

``DefaultOptimWrapperConstructor`` applies MMEngine's ``paramwise_cfg`` rules, one parameter
group per parameter:

- ``custom_keys``: ``{key: dict(lr_mult=, decay_mult=, ...)}``; a key matches when it is a
  substring of ``'{module prefix}.{param name}'``; keys are tried longest first (ties in
  alphabetical order), the first match wins and overrides every rule below; the whole
  dict is also copied into the group.
- otherwise ``bias_lr_mult`` (biases outside norm layers), then the first weight-decay rule
  that applies: ``norm_decay_mult`` (BN/IN/GN/LN), ``bias_decay_mult``,
  ``dwconv_decay_mult`` (depth-wise Conv2d), ``flat_decay_mult`` (any other 1-D parameter).
- frozen parameters (``requires_grad=False``) keep a plain group of their own;
  ``bypass_duplicate=True`` skips a parameter shared with an earlier module.

``LearningRateDecayOptimWrapperConstructor`` is MMPretrain's layer-wise lr decay.
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from vistra.registry import (
    OPTIM_WRAPPER_CONSTRUCTORS,
    OPTIM_WRAPPERS,
    OPTIMIZERS,
    RegistryError,
    did_you_mean,
)

if TYPE_CHECKING:
    from vistra.engine.optim import OptimWrapper

logger = logging.getLogger("vistra")

NORM_LAYERS = (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm)
_DCN_CLASS_NAMES = {"DeformConv2d", "ModulatedDeformConv2d"}


def _is_dcn(module: nn.Module) -> bool:
    # mmcv's deformable convs (and their *Pack subclasses) by class name: vistra has no mmcv.
    return any(cls.__name__ in _DCN_CLASS_NAMES for cls in type(module).__mro__)


def sort_custom_keys(keys: list[str] | tuple[str, ...]) -> list[str]:
    """MMEngine's matching order: longest first, alphabetical among equal lengths."""
    return sorted(sorted(keys), key=len, reverse=True)


def _unwrap(model: nn.Module) -> nn.Module:
    from vistra.engine.optim import unwrap_model

    return unwrap_model(model)


# MMPretrain's Twins configs write `paramwise_cfg=dict(_delete=True, ...)`, a typo of the
# `_delete_` merge marker; MMEngine ignores keys it does not read, so those configs train
# there. vistra rejects unknown keys, except this one, with a warning.
MISSPELT_MERGE_MARKERS = {"_delete": "_delete_"}


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class DefaultOptimWrapperConstructor:
    """Build the optimizer (with ``paramwise_cfg`` groups) and its wrapper for a model."""

    paramwise_keys: tuple[str, ...] = (
        "custom_keys", "bias_lr_mult", "bias_decay_mult", "norm_decay_mult",
        "dwconv_decay_mult", "flat_decay_mult", "dcn_offset_lr_mult", "bypass_duplicate",
    )  # fmt: skip

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict | None = None) -> None:
        if not isinstance(optim_wrapper_cfg, Mapping):
            raise TypeError(
                f"optim_wrapper config must be a dict, got {type(optim_wrapper_cfg).__name__}"
            )
        if "optimizer" not in optim_wrapper_cfg:
            raise KeyError(
                f"optim_wrapper config has no 'optimizer' key; got keys {sorted(optim_wrapper_cfg)}"
            )
        self.optim_wrapper_cfg = dict(optim_wrapper_cfg)
        self.optimizer_cfg = dict(self.optim_wrapper_cfg.pop("optimizer"))
        self.paramwise_cfg = {} if paramwise_cfg is None else paramwise_cfg
        self.base_lr = self.optimizer_cfg.get("lr")
        self.base_wd = self.optimizer_cfg.get("weight_decay")
        self._validate_cfg()

    def _validate_cfg(self) -> None:
        """Fail on misspelt options and on multipliers that have no base value to multiply."""
        if not isinstance(self.paramwise_cfg, Mapping):
            raise TypeError(
                f"optim_wrapper.paramwise_cfg must be None or a dict, got {type(self.paramwise_cfg).__name__}"
            )
        for key in self.paramwise_cfg:
            if key in MISSPELT_MERGE_MARKERS:
                warnings.warn(
                    f"optim_wrapper.paramwise_cfg key {key!r} ignored (as MMEngine does): did "
                    f"you mean the merge marker {MISSPELT_MERGE_MARKERS[key]!r}?",
                    stacklevel=2,
                )
                continue
            if key not in self.paramwise_keys:
                raise RegistryError(
                    f"unknown optim_wrapper.paramwise_cfg key {key!r} for {type(self).__name__}."
                    f"{did_you_mean(key, list(self.paramwise_keys))} Valid keys: {', '.join(self.paramwise_keys)}"
                )
        custom_keys = self.paramwise_cfg.get("custom_keys", {})
        if not isinstance(custom_keys, Mapping):
            raise TypeError(
                f"optim_wrapper.paramwise_cfg.custom_keys must be a dict, got {type(custom_keys).__name__}"
            )
        for key, value in custom_keys.items():
            if not isinstance(value, Mapping):
                raise TypeError(
                    f"optim_wrapper.paramwise_cfg.custom_keys[{key!r}] must be a dict, got {value!r}"
                )
        uses_wd = any("decay_mult" in v for v in custom_keys.values()) or any(
            k in self.paramwise_cfg
            for k in ("bias_decay_mult", "norm_decay_mult", "dwconv_decay_mult", "flat_decay_mult")
        )
        if uses_wd and self.base_wd is None:
            raise ValueError(
                "optim_wrapper.paramwise_cfg sets a decay multiplier but optim_wrapper.optimizer has no weight_decay"
            )
        uses_lr = any("lr_mult" in v for v in custom_keys.values()) or any(
            k in self.paramwise_cfg for k in ("bias_lr_mult", "dcn_offset_lr_mult")
        )
        if uses_lr and self.base_lr is None:
            raise ValueError(
                "optim_wrapper.paramwise_cfg sets an lr multiplier but optim_wrapper.optimizer has no lr"
            )

    def __call__(self, model: nn.Module) -> OptimWrapper:
        model = _unwrap(model)
        optimizer_cfg = dict(self.optimizer_cfg)
        if self.paramwise_cfg:
            params: list[dict] = []
            self.add_params(params, model)
            _check_no_duplicates(params, model)
        else:
            params = list(model.parameters())
        optimizer_cfg[_first_arg_name(optimizer_cfg.get("type"))] = params
        optimizer = OPTIMIZERS.build(optimizer_cfg, key_path="optim_wrapper.optimizer")
        wrapper_cfg = {"type": "OptimWrapper", **self.optim_wrapper_cfg}
        return OPTIM_WRAPPERS.build(
            wrapper_cfg, default_args=dict(optimizer=optimizer), key_path="optim_wrapper"
        )

    def add_params(
        self,
        params: list[dict],
        module: nn.Module,
        prefix: str = "",
        is_dcn_module: bool | None = None,
    ) -> None:
        """Append one group per parameter of ``module`` and its children (in place)."""
        bypass_duplicate = self.paramwise_cfg.get("bypass_duplicate", False)
        for name, param in module.named_parameters(recurse=False):
            group: dict[str, Any] = {"params": [param]}
            full_name = f"{prefix}.{name}" if prefix else name
            if bypass_duplicate and any(param is p for g in params for p in g["params"]):
                logger.warning(
                    "%s is shared with an earlier module; skipped (bypass_duplicate=True)",
                    full_name,
                )
                continue
            if param.requires_grad:
                group.update(self._param_options(module, name, param, prefix, bool(is_dcn_module)))
            params.append(group)
            for key, value in group.items():
                if key != "params":
                    logger.debug("paramwise_options -- %s:%s=%s", full_name, key, value)
        child_is_dcn = _is_dcn(module)
        for child_name, child in module.named_children():
            self.add_params(
                params, child, f"{prefix}.{child_name}" if prefix else child_name, child_is_dcn
            )

    def _param_options(
        self, module: nn.Module, name: str, param: nn.Parameter, prefix: str, is_dcn: bool
    ) -> dict:
        """The lr / weight_decay overrides (and custom settings) of one trainable parameter."""
        cfg, base_lr, base_wd = self.paramwise_cfg, self.base_lr, self.base_wd
        custom_keys = cfg.get("custom_keys", {})
        for key in sort_custom_keys(list(custom_keys)):
            if key in f"{prefix}.{name}":  # MMEngine's match string: '.weight' for a root param
                options = {"lr": base_lr * custom_keys[key].get("lr_mult", 1.0)}
                if base_wd is not None:
                    options["weight_decay"] = base_wd * custom_keys[key].get("decay_mult", 1.0)
                options.update(custom_keys[key])
                return options
        options = {}
        is_norm = isinstance(module, NORM_LAYERS)
        if name == "bias" and not (is_norm or is_dcn) and cfg.get("bias_lr_mult") is not None:
            options["lr"] = base_lr * cfg["bias_lr_mult"]
        if (
            "conv_offset" in prefix
            and is_dcn
            and isinstance(module, nn.Conv2d)
            and cfg.get("dcn_offset_lr_mult") is not None
        ):
            options["lr"] = base_lr * cfg["dcn_offset_lr_mult"]
        if base_wd is None:
            return options
        is_dwconv = isinstance(module, nn.Conv2d) and module.in_channels == module.groups
        decay_rules = (
            (is_norm, "norm_decay_mult"),
            (name == "bias" and not is_dcn, "bias_decay_mult"),
            (is_dwconv, "dwconv_decay_mult"),
            (param.ndim == 1 and not is_dcn, "flat_decay_mult"),
        )
        for applies, key in decay_rules:  # the first rule that applies and is configured
            if applies and cfg.get(key) is not None:
                options["weight_decay"] = base_wd * cfg[key]
                break
        return options


def _first_arg_name(optimizer_type: Any) -> str:
    """The name under which the optimizer takes its parameters (``params`` for torch's)."""
    cls = OPTIMIZERS.get(optimizer_type) if isinstance(optimizer_type, str) else optimizer_type
    if cls is None or not callable(cls):
        return "params"  # the registry reports the unknown type when building
    try:
        return next(iter(inspect.signature(cls).parameters))
    except (StopIteration, TypeError, ValueError):
        return "params"


def _check_no_duplicates(params: list[dict], model: nn.Module) -> None:
    """Name the shared parameter that torch would reject as 'in more than one group'."""
    names: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
    seen: set[int] = set()
    for group in params:
        for p in group["params"]:
            if id(p) in seen:
                shared = " and ".join(repr(n) for n in names.get(id(p), ["?"]))
                raise ValueError(
                    f"parameter {shared} appears in more than one parameter group (it is shared); "
                    "set optim_wrapper.paramwise_cfg.bypass_duplicate=True to keep only its first use"
                )
            seen.add(id(p))


# ---------------------------------------------------------------------- layer-wise lr decay
_VIT_LAYER = re.compile(r"^backbone\.layers\.(\d+)\.")


def vit_layer_depth(param_name: str, num_layers: int, prefix: str = "backbone.") -> tuple[int, int]:
    """MMPretrain's ViT rule: ``(layer_id, num_layers + 2)``.

    Tokens and patch embedding are layer 0, ``layers.{i}`` is ``i + 1``, everything else
    (final norm, neck, head) is ``num_layers + 1``.
    """
    total = num_layers + 2
    if not param_name.startswith(prefix):
        return total - 1, total
    name = param_name[len(prefix) :]
    if name in ("cls_token", "pos_embed") or name.startswith("patch_embed"):
        return 0, total
    if name.startswith("layers"):
        return int(name.split(".")[1]) + 1, total
    return total - 1, total


def layer_depth_function(model: nn.Module) -> Callable[[str], tuple[int, int]]:
    """How to find a parameter's layer: the model's or its backbone's ``get_layer_depth``
    (as MMPretrain models provide), else the ViT rule on ``backbone.layers.{i}`` names."""
    if hasattr(model, "get_layer_depth"):
        return model.get_layer_depth
    backbone = getattr(model, "backbone", None)
    if backbone is not None and hasattr(backbone, "get_layer_depth"):
        return functools.partial(backbone.get_layer_depth, prefix="backbone.")
    ids = {int(m.group(1)) for name, _ in model.named_parameters() if (m := _VIT_LAYER.match(name))}
    if not ids:
        raise ValueError(
            f"LearningRateDecayOptimWrapperConstructor cannot tell the layer of {type(model).__name__}'s "
            "parameters: give the model (or its backbone) a get_layer_depth(param_name) method, "
            "or use a ViT-like backbone whose blocks are named backbone.layers.{i}"
        )
    return functools.partial(vit_layer_depth, num_layers=max(ids) + 1, prefix="backbone.")


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LearningRateDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """MMPretrain's layer-wise lr decay: ``lr = base_lr * layer_decay_rate ** (max_id - layer_id - 1)``.

    For a ViT with ``L`` blocks that is ``rate ** (L + 1 - layer_id)``: the head keeps the base
    lr and each earlier block gets ``rate`` times less. Weight decay follows ``custom_keys``
    (``decay_mult`` only; ``lr_mult`` is ignored), then ``norm_decay_mult``,
    ``bias_decay_mult``, ``flat_decay_mult``, else the base value. Zero decay for tokens and
    1-D parameters comes from the config (``flat_decay_mult=0.``, ``custom_keys`` for
    ``.cls_token``/``.pos_embed``), as in MMPretrain. Frozen parameters are left out.
    """

    paramwise_keys = (
        "layer_decay_rate",
        "custom_keys",
        "bias_decay_mult",
        "norm_decay_mult",
        "flat_decay_mult",
    )

    def _validate_cfg(self) -> None:
        super()._validate_cfg()
        if self.paramwise_cfg and self.base_lr is None:
            raise ValueError(
                "LearningRateDecayOptimWrapperConstructor needs optim_wrapper.optimizer.lr to decay"
            )

    def add_params(  # type: ignore[override]
        self,
        params: list[dict],
        module: nn.Module,
        prefix: str = "",
        get_layer_depth: Callable[[str], tuple[int, int]] | None = None,
        **kwargs: Any,
    ) -> None:
        get_layer_depth = get_layer_depth or layer_depth_function(module)
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            param_name = prefix + name
            group: dict[str, Any] = {
                "params": [param],
                **self._decay_options(module, name, param, param_name),
            }
            layer_id, max_id = get_layer_depth(param_name)
            scale = self.paramwise_cfg.get("layer_decay_rate", 1.0) ** (max_id - layer_id - 1)
            group.update(
                lr=self.base_lr * scale, lr_scale=scale, layer_id=layer_id, param_name=param_name
            )
            params.append(group)
        for child_name, child in module.named_children():
            self.add_params(params, child, f"{prefix}{child_name}.", get_layer_depth)
        if prefix == "":
            for group in params:
                logger.debug(
                    "layer %d: %s lr=%.3g weight_decay=%s",
                    group["layer_id"], group["param_name"], group["lr"], group.get("weight_decay"),
                )  # fmt: skip

    def _decay_options(
        self, module: nn.Module, name: str, param: nn.Parameter, param_name: str
    ) -> dict:
        if self.base_wd is None:
            return {}
        cfg, base_wd = self.paramwise_cfg, self.base_wd
        custom_keys = cfg.get("custom_keys", {})
        key = next((k for k in sort_custom_keys(list(custom_keys)) if k in param_name), None)
        if key is not None:
            custom = dict(custom_keys[key])
            return {"weight_decay": base_wd * custom.pop("decay_mult", 1.0), **custom}
        decay_rules = (
            (isinstance(module, NORM_LAYERS), "norm_decay_mult"),
            (name == "bias", "bias_decay_mult"),
            (param.ndim == 1, "flat_decay_mult"),
        )
        for applies, rule in decay_rules:
            if applies and cfg.get(rule) is not None:
                return {"weight_decay": base_wd * cfg[rule]}
        return {"weight_decay": base_wd}


__all__ = [
    "DefaultOptimWrapperConstructor",
    "LearningRateDecayOptimWrapperConstructor",
    "layer_depth_function",
    "sort_custom_keys",
    "vit_layer_depth",
]
