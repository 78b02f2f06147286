"""0.x ``optimizer``, ``optimizer_config`` and ``fp16`` -> the 1.x ``optim_wrapper``
(``OptimWrapper``/``AmpOptimWrapper`` with ``clip_grad``, ``accumulative_counts``,
``paramwise_cfg``); MMSelfSup 0.x ``paramwise_options`` -> ``paramwise_cfg.custom_keys``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vistra.config.legacy.context import LegacyContext, unsupported

# optimizer_config type -> (fp16, accumulation key); the last two are MMSelfSup 0.x's.
OPTIMIZER_HOOKS = {
    "OptimizerHook": (False, None),
    "Fp16OptimizerHook": (True, None),
    "GradientCumulativeOptimizerHook": (False, "cumulative_iters"),
    "GradientCumulativeFp16OptimizerHook": (True, "cumulative_iters"),
    "DistOptimizerHook": (False, "update_interval"),
    "GradAccumFp16OptimizerHook": (True, "update_interval"),
}
ACCUMULATION = ("cumulative_iters", "update_interval")
HOOK_KEYS = ("grad_clip", "loss_scale", "cumulative_iters", "update_interval", "frozen_layers_cfg")
DROPPED_HOOK_KEYS = ("coalesce", "bucket_size_mb", "detect_anomalous_params", "distributed")
MMCV_LOSS_SCALE = 512.0  # Fp16OptimizerHook's default
GRAD_SCALER_KEYS = ("init_scale", "growth_factor", "backoff_factor", "growth_interval", "enabled")

CONSTRUCTORS = {"DefaultOptimizerConstructor": "DefaultOptimWrapperConstructor"}
LAYER_DECAY_CONSTRUCTORS = (
    "LearningRateDecayOptimizerConstructor",
    "LayerDecayOptimizerConstructor",
)
# = LearningRateDecayOptimWrapperConstructor.paramwise_keys (a test keeps the two in step)
LAYER_DECAY_KEYS = ("layer_decay_rate", "custom_keys", "bias_decay_mult", "norm_decay_mult",
                    "flat_decay_mult")  # fmt: skip
REGEX_META = frozenset(".^$*+?{}[]\\|()")
SIMCLR_KEYS = (
    "{'bn': dict(decay_mult=0., lars_exclude=True), 'bias': dict(decay_mult=0., lars_exclude=True)}"
)


# ---------------------------------------------------------------------- optimizer -> optim_wrapper
def translate_optimizer(ctx: LegacyContext) -> None:
    """Write ``optim_wrapper`` from the 0.x optimizer keys (a 1.x config is left alone)."""
    if "optim_wrapper" in ctx.new:  # a 1.x config's `optimizer` variable: not ours
        return
    optimizer = ctx.new.pop("optimizer", None)
    hook, fp16 = ctx.new.pop("optimizer_config", None), ctx.new.pop("fp16", None)
    if optimizer is None:
        if hook or fp16 is not None:
            raise ctx.error("optimizer", "optimizer_config/fp16 are set but there is no optimizer")
        return
    if not isinstance(optimizer, Mapping) or "type" not in optimizer:
        raise ctx.error(
            "optimizer", "must be one optimizer dict with a type (one per module is not translated)"
        )
    opt = dict(optimizer)
    paramwise, options = opt.pop("paramwise_cfg", None), opt.pop("paramwise_options", None)
    constructor = opt.pop("constructor", None)
    wrapper: dict[str, Any] = {"type": "OptimWrapper", "optimizer": opt}
    if options is not None:
        if paramwise is not None:
            raise ctx.error("optimizer", "set paramwise_cfg or paramwise_options, not both")
        paramwise = _paramwise_options(ctx, options, opt)
    if constructor is not None:
        wrapper["constructor"] = _constructor(ctx, constructor, paramwise)
    if paramwise is not None:
        wrapper["paramwise_cfg"] = paramwise
    ctx.note(f"optimizer ({opt['type']}, lr {opt.get('lr')}) -> optim_wrapper.optimizer")
    _optimizer_hook(ctx, wrapper, hook)
    _fp16(ctx, wrapper, fp16)
    ctx.new["optim_wrapper"] = wrapper


def _constructor(ctx: LegacyContext, name: Any, paramwise: Mapping | None) -> Any:
    short = str(name).split(".")[-1]
    if short in CONSTRUCTORS:
        return CONSTRUCTORS[short]
    if short not in LAYER_DECAY_CONSTRUCTORS:
        return name  # the registry reports an unknown name when the wrapper is built
    extra = sorted(set(paramwise or {}) - set(LAYER_DECAY_KEYS))
    if extra:  # MMSegmentation 0.x's layer-wise decay (num_layers, decay_rate, decay_type)
        raise ctx.error(
            "optimizer.constructor",
            f"{short} takes paramwise_cfg keys {extra} that "
            "vistra's LearningRateDecayOptimWrapperConstructor (MMPretrain's) does not; "
            f"it takes {', '.join(LAYER_DECAY_KEYS)}",
        )
    return "LearningRateDecayOptimWrapperConstructor"


def _paramwise_options(ctx: LegacyContext, options: Any, opt: Mapping) -> dict:
    """MMSelfSup 0.x ``{regex: {key: value, key_mult: factor}}`` -> 1.x ``custom_keys``."""
    if not isinstance(options, Mapping):
        raise ctx.error("optimizer.paramwise_options", f"must be a dict, got {options!r}")
    if opt.get("lr") is None:
        raise ctx.error("optimizer.lr", "paramwise_options need the optimizer's lr set")
    custom = {}
    for pattern, rule in options.items():
        where = f"optimizer.paramwise_options[{pattern!r}]"
        if REGEX_META.intersection(str(pattern)):
            raise ctx.error(
                where,
                "a regular expression: 1.x custom_keys match substrings of "
                "parameter names, so write optim_wrapper.paramwise_cfg.custom_keys "
                f"yourself, e.g. {SIMCLR_KEYS} (MMSelfSup 1.x SimCLR)",
            )
        if not isinstance(rule, Mapping):
            raise ctx.error(where, f"must be a dict of options, got {rule!r}")
        custom[pattern] = _custom_key(ctx, where, rule, opt)
    ctx.note(
        f"optimizer.paramwise_options -> optim_wrapper.paramwise_cfg.custom_keys "
        f"{list(custom)}; note: 1.x applies only the longest key found in a parameter's "
        "name where 0.x applied every matching pattern in turn"
    )
    return {"custom_keys": custom}


def _custom_key(ctx: LegacyContext, where: str, rule: Mapping, opt: Mapping) -> dict:
    """lr/weight_decay become multipliers of the optimizer's (so --auto-scale-lr scales them
    too); other ``*_mult`` become values; a value with no base to divide stays a value
    (vistra, as MMEngine, copies a custom_keys entry into the parameter's group)."""
    out: dict[str, Any] = {}
    mult_names = {"lr": "lr_mult", "weight_decay": "decay_mult"}
    for name, value in rule.items():
        target = name[:-5] if name.endswith("_mult") else None
        if target is not None and target not in opt:
            raise ctx.error(f"{where}.{name}", f"multiplies optimizer.{target}, which is not set")
        base = opt.get(target or name)
        if target in mult_names:
            out[mult_names[target]] = value
        elif target is not None:
            out[target] = base * value
        elif name in mult_names and isinstance(base, (int, float)) and base:
            out[mult_names[name]] = value / base
        else:
            out[name] = value
    return out


def _optimizer_hook(ctx: LegacyContext, wrapper: dict, hook: Any) -> None:
    if not hook:
        return
    if not isinstance(hook, Mapping):
        raise ctx.error("optimizer_config", f"must be a dict, got {hook!r}")
    cfg = dict(hook)
    default = "DistOptimizerHook" if "update_interval" in cfg else "OptimizerHook"
    kind = str(cfg.pop("type", default)).split(".")[-1]
    if kind not in OPTIMIZER_HOOKS:
        raise unsupported(ctx, "optimizer_config.type", "optimizer hook", kind, OPTIMIZER_HOOKS)
    fp16, accumulate = OPTIMIZER_HOOKS[kind]
    valid = [k for k in HOOK_KEYS + DROPPED_HOOK_KEYS if k not in ACCUMULATION or k == accumulate]
    for key in cfg:
        if key not in valid:
            raise unsupported(ctx, f"optimizer_config.{key}", f"key of {kind}", key, valid)
    if cfg.get("frozen_layers_cfg"):
        raise ctx.error(
            "optimizer_config.frozen_layers_cfg", "no equivalent in vistra's optim_wrapper"
        )
    done = [kind]
    if cfg.get("grad_clip") is not None:
        wrapper["clip_grad"] = dict(cfg["grad_clip"])
        done.append(f"clip_grad {wrapper['clip_grad']}")
    counts = cfg.get(accumulate, 1) if accumulate else 1
    if not isinstance(counts, int) or counts < 1:
        raise ctx.error(f"optimizer_config.{accumulate}", f"must be an int >= 1, got {counts!r}")
    if counts > 1:
        wrapper["accumulative_counts"] = counts
        done.append(f"accumulative_counts {counts}")
    if fp16:
        scale = _loss_scale(ctx, "optimizer_config", cfg.get("loss_scale", MMCV_LOSS_SCALE))
        wrapper.update(type="AmpOptimWrapper", loss_scale=scale)
        done.append(f"AmpOptimWrapper, loss_scale {scale}")
    elif "loss_scale" in cfg:
        raise ctx.error("optimizer_config.loss_scale", f"{kind} does not use a loss scale")
    dropped = [k for k in DROPPED_HOOK_KEYS if k in cfg]
    if dropped:
        done.append(f"dropped {', '.join(dropped)} (DistributedDataParallel's business)")
    ctx.note(f"optimizer_config -> optim_wrapper ({'; '.join(done)})")


def _fp16(ctx: LegacyContext, wrapper: dict, fp16: Any) -> None:
    """A top-level ``fp16`` dict made MMCV wrap the optimizer hook in its fp16 form."""
    if fp16 is None:
        return
    if not isinstance(fp16, Mapping) or set(fp16) - {"loss_scale"}:
        raise ctx.error("fp16", f"must be a dict with at most loss_scale, got {fp16!r}")
    if "loss_scale" in fp16 and "loss_scale" in (ctx.old.get("optimizer_config") or {}):
        raise ctx.error("fp16.loss_scale", "optimizer_config sets loss_scale too; keep one")
    scale = fp16.get("loss_scale", wrapper.get("loss_scale", MMCV_LOSS_SCALE))
    wrapper.update(type="AmpOptimWrapper", loss_scale=_loss_scale(ctx, "fp16", scale))
    ctx.note(f"fp16 -> optim_wrapper (AmpOptimWrapper, loss_scale {wrapper['loss_scale']})")


def _loss_scale(ctx: LegacyContext, key: str, value: Any) -> Any:
    """MMCV's loss_scale ('dynamic', a number, GradScaler arguments, or its LossScaler's
    mode/init_scale/scale_factor/scale_window) -> what AmpOptimWrapper takes."""
    if value == "dynamic":
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    cfg = dict(value) if isinstance(value, Mapping) else {"mode": None}
    mode = cfg.pop("mode", "dynamic")
    if "scale_factor" in cfg:
        factor = cfg.pop("scale_factor")
        cfg.update(growth_factor=factor, backoff_factor=1.0 / factor)
    if "scale_window" in cfg:
        cfg["growth_interval"] = cfg.pop("scale_window")
    if mode not in ("dynamic", "static") or set(cfg) - set(GRAD_SCALER_KEYS):
        valid = ", ".join(GRAD_SCALER_KEYS + ("mode", "scale_factor", "scale_window"))
        raise ctx.error(f"{key}.loss_scale", f"not 'dynamic', a number or a dict of {valid}")
    if mode == "static":
        return float(cfg.get("init_scale", 2.0**32))  # MMCV LossScaler's default init_scale
    return cfg
