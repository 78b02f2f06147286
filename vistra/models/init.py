"""Weight initialisers by MMEngine's names, and ``initialize(module, init_cfg)``.

``init_cfg=dict(type='Kaiming', layer='Conv2d')`` initialises every sub-module whose class
name, or the name of one of its direct base classes, is in ``layer`` (so ``'_BatchNorm'``
matches ``BatchNorm2d`` and ``SyncBatchNorm``, ``'_ConvNd'`` every conv) -- MMEngine's rule.
An initialiser without ``layer`` touches nothing by itself; ``override=dict(name='fc', ...)``
initialises the attribute ``fc`` as a whole, with the outer arguments when the override
gives only a name. ``Pretrained`` loads a checkpoint (``prefix`` selects a sub-model).
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Sequence

from torch import nn

from vistra.registry import WEIGHT_INITIALIZERS, did_you_mean


# ----------------------------------------------------------------------------- functions
def constant_init(module: nn.Module, val: float, bias: float = 0) -> None:
    if getattr(module, "weight", None) is not None:
        nn.init.constant_(module.weight, val)
    if getattr(module, "bias", None) is not None:
        nn.init.constant_(module.bias, bias)


def xavier_init(
    module: nn.Module, gain: float = 1, bias: float = 0, distribution: str = "normal"
) -> None:
    _check_distribution(distribution)
    if getattr(module, "weight", None) is not None:
        fill = nn.init.xavier_uniform_ if distribution == "uniform" else nn.init.xavier_normal_
        fill(module.weight, gain=gain)
    if getattr(module, "bias", None) is not None:
        nn.init.constant_(module.bias, bias)


def normal_init(module: nn.Module, mean: float = 0, std: float = 1, bias: float = 0) -> None:
    if getattr(module, "weight", None) is not None:
        nn.init.normal_(module.weight, mean, std)
    if getattr(module, "bias", None) is not None:
        nn.init.constant_(module.bias, bias)


def trunc_normal_init(
    module: nn.Module, mean: float = 0, std: float = 1, a: float = -2, b: float = 2, bias: float = 0
) -> None:
    if getattr(module, "weight", None) is not None:
        nn.init.trunc_normal_(module.weight, mean, std, a, b)
    if getattr(module, "bias", None) is not None:
        nn.init.constant_(module.bias, bias)


def uniform_init(module: nn.Module, a: float = 0, b: float = 1, bias: float = 0) -> None:
    if getattr(module, "weight", None) is not None:
        nn.init.uniform_(module.weight, a, b)
    if getattr(module, "bias", None) is not None:
        nn.init.constant_(module.bias, bias)


def kaiming_init(
    module: nn.Module,
    a: float = 0,
    mode: str = "fan_out",
    nonlinearity: str = "relu",
    bias: float = 0,
    distribution: str = "normal",
) -> None:
    _check_distribution(distribution)
    if getattr(module, "weight", None) is not None:
        fill = nn.init.kaiming_uniform_ if distribution == "uniform" else nn.init.kaiming_normal_
        fill(module.weight, a=a, mode=mode, nonlinearity=nonlinearity)
    if getattr(module, "bias", None) is not None:
        nn.init.constant_(module.bias, bias)


def caffe2_xavier_init(module: nn.Module, bias: float = 0) -> None:
    """Caffe2's ``XavierFill``, which is PyTorch's Kaiming-uniform with a=1, fan_in."""
    kaiming_init(
        module, a=1, mode="fan_in", nonlinearity="leaky_relu", bias=bias, distribution="uniform"
    )


def bias_init_with_prob(prior_prob: float) -> float:
    """The bias that makes ``sigmoid(bias) == prior_prob`` (focal-loss style heads)."""
    if not 0 < prior_prob < 1:
        raise ValueError(f"bias_prob must be in (0, 1), got {prior_prob}")
    return float(-math.log((1 - prior_prob) / prior_prob))


def _check_distribution(distribution: str) -> None:
    if distribution not in ("normal", "uniform"):
        raise ValueError(f"distribution must be 'normal' or 'uniform', got {distribution!r}")


# ----------------------------------------------------------------------------- initialisers
class BaseInit:
    """Shared ``bias``/``bias_prob``/``layer`` handling; subclasses define ``init_module``."""

    def __init__(
        self,
        *,
        bias: float = 0,
        bias_prob: float | None = None,
        layer: str | list[str] | None = None,
    ) -> None:
        if isinstance(bias, bool) or not isinstance(bias, (int, float)):
            raise TypeError(f"init_cfg bias must be a number, got {bias!r}")
        if bias_prob is not None and not isinstance(bias_prob, float):
            raise TypeError(f"init_cfg bias_prob must be a float, got {bias_prob!r}")
        if layer is not None and not isinstance(layer, (str, list, tuple)):
            raise TypeError(f"init_cfg layer must be a str or a list of str, got {layer!r}")
        self.bias = bias_init_with_prob(bias_prob) if bias_prob is not None else bias
        self.layer: list[str] = [layer] if isinstance(layer, str) else list(layer or [])
        self.wholemodule = False  # set by ``override``: initialise the named module as is

    def init_module(self, module: nn.Module) -> None:
        raise NotImplementedError

    def __call__(self, module: nn.Module) -> None:
        if self.wholemodule:
            module.apply(self.init_module)
            return
        wanted = set(self.layer)
        matched = False
        for m in module.modules():
            if wanted & _layer_names(m):
                self.init_module(m)
                matched = True
        if wanted and not matched:
            _warn_if_typo(type(self).__name__, self.layer, module)


def _layer_names(m: nn.Module) -> set[str]:
    # MMEngine matches the class name and the names of its *direct* bases only.
    cls = type(m)
    return {cls.__name__, *(b.__name__ for b in cls.__bases__)}


def _warn_if_typo(init_name: str, layers: Sequence[str], module: nn.Module) -> None:
    present = sorted(set().union(*(_layer_names(m) for m in module.modules())))
    hints = [h for h in (did_you_mean(name, present) for name in layers) if h]
    if hints:
        warnings.warn(
            f"{init_name} init_cfg layer={list(layers)} matched no module of "
            f"{type(module).__name__};{' '.join(hints)}",
            stacklevel=3,
        )


@WEIGHT_INITIALIZERS.register_module(name="Constant")
class ConstantInit(BaseInit):
    def __init__(self, val: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.val = val

    def init_module(self, module: nn.Module) -> None:
        constant_init(module, self.val, self.bias)


@WEIGHT_INITIALIZERS.register_module(name="Xavier")
class XavierInit(BaseInit):
    def __init__(self, gain: float = 1, distribution: str = "normal", **kwargs) -> None:
        super().__init__(**kwargs)
        _check_distribution(distribution)
        self.gain, self.distribution = gain, distribution

    def init_module(self, module: nn.Module) -> None:
        xavier_init(module, self.gain, self.bias, self.distribution)


@WEIGHT_INITIALIZERS.register_module(name="Normal")
class NormalInit(BaseInit):
    def __init__(self, mean: float = 0, std: float = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.mean, self.std = mean, std

    def init_module(self, module: nn.Module) -> None:
        normal_init(module, self.mean, self.std, self.bias)


@WEIGHT_INITIALIZERS.register_module(name="TruncNormal")
class TruncNormalInit(BaseInit):
    def __init__(
        self, mean: float = 0, std: float = 1, a: float = -2, b: float = 2, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.mean, self.std, self.a, self.b = mean, std, a, b

    def init_module(self, module: nn.Module) -> None:
        trunc_normal_init(module, self.mean, self.std, self.a, self.b, self.bias)


@WEIGHT_INITIALIZERS.register_module(name="Uniform")
class UniformInit(BaseInit):
    def __init__(self, a: float = 0, b: float = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.a, self.b = a, b

    def init_module(self, module: nn.Module) -> None:
        uniform_init(module, self.a, self.b, self.bias)


@WEIGHT_INITIALIZERS.register_module(name="Kaiming")
class KaimingInit(BaseInit):
    def __init__(
        self,
        a: float = 0,
        mode: str = "fan_out",
        nonlinearity: str = "relu",
        distribution: str = "normal",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        _check_distribution(distribution)
        if mode not in ("fan_in", "fan_out"):
            raise ValueError(f"Kaiming mode must be 'fan_in' or 'fan_out', got {mode!r}")
        self.a, self.mode, self.nonlinearity, self.distribution = (
            a,
            mode,
            nonlinearity,
            distribution,
        )

    def init_module(self, module: nn.Module) -> None:
        kaiming_init(module, self.a, self.mode, self.nonlinearity, self.bias, self.distribution)


@WEIGHT_INITIALIZERS.register_module(name="Caffe2Xavier")
class Caffe2XavierInit(KaimingInit):
    def __init__(self, **kwargs) -> None:
        super().__init__(
            a=1, mode="fan_in", nonlinearity="leaky_relu", distribution="uniform", **kwargs
        )


@WEIGHT_INITIALIZERS.register_module(name="Pretrained")
class PretrainedInit:
    """Load ``checkpoint`` into the module; ``prefix='backbone.'`` takes only those keys."""

    def __init__(
        self, checkpoint: str, prefix: str | None = None, map_location: str = "cpu"
    ) -> None:
        if not isinstance(checkpoint, str) or not checkpoint:
            from vistra.checkpoint import CheckpointError

            raise CheckpointError(
                f"init_cfg=dict(type='Pretrained') needs checkpoint=<path or URL>, got "
                f"{checkpoint!r}; e.g. --cfg-options model.backbone.init_cfg.checkpoint=PATH"
            )
        self.checkpoint, self.prefix, self.map_location = checkpoint, prefix, map_location
        self.wholemodule = False

    def __call__(self, module: nn.Module) -> None:
        from vistra.checkpoint import load_pretrained

        load_pretrained(module, self.checkpoint, self.prefix, self.map_location)


# ----------------------------------------------------------------------------- entry point
def _run(module: nn.Module, cfg: dict, wholemodule: bool = False) -> None:
    init = WEIGHT_INITIALIZERS.build(cfg, key_path="init_cfg")
    init.wholemodule = wholemodule
    init(module)


def _run_override(module: nn.Module, override: dict | list[dict], outer: dict) -> None:
    if not isinstance(override, (dict, list, tuple)):
        raise TypeError(f"init_cfg override must be a dict or a list of dicts, got {override!r}")
    for item in [override] if isinstance(override, dict) else override:
        cfg = copy.deepcopy(dict(item))
        name = cfg.pop("name", None)
        if name is None:
            raise ValueError(f"init_cfg override needs a 'name' key, got {item}")
        if not cfg:
            cfg = copy.deepcopy(outer)  # only a name: reuse the outer initialiser's arguments
        elif "type" not in cfg:
            raise ValueError(f"init_cfg override {item} gives arguments but no 'type'")
        target = getattr(module, name, None)
        if not isinstance(target, nn.Module):
            children = [n for n, _ in module.named_children()]
            raise AttributeError(
                f"init_cfg override name={name!r}: {type(module).__name__} has no sub-module "
                f"{name!r}.{did_you_mean(name, children)} Children: {', '.join(children)}"
            )
        _run(target, cfg, wholemodule=True)


def initialize(module: nn.Module, init_cfg: dict | list[dict]) -> None:
    """Initialise ``module`` from one init config or a list of them, in order."""
    if not isinstance(init_cfg, (dict, list, tuple)):
        raise TypeError(
            f"init_cfg must be a dict or a list of dicts, got {type(init_cfg).__name__}"
        )
    for cfg in [init_cfg] if isinstance(init_cfg, dict) else init_cfg:
        cfg = copy.deepcopy(dict(cfg))  # one init_cfg may be shared by many modules
        override = cfg.pop("override", None)
        _run(module, cfg)
        if override is not None:
            cfg.pop("layer", None)
            _run_override(module, override, cfg)
