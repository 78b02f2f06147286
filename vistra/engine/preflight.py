"""Pre-flight validation: everything about a config that can be known before any work starts.

``vistra train`` (through ``Runner.from_config``) and ``vistra check`` call
:func:`validate` before the first model weight is allocated or the first file written. It
collects *every* problem it finds, one line each, naming the config key:

- every ``type`` resolves in its registry (with the registry's did-you-mean), and every
  constructor argument exists (following ``super().__init__(**kwargs)`` chains);
- values a constructor would reject late: an arch/depth outside the class's arch table, a
  string where the signature says a number, loop lengths and batch sizes that are not
  positive integers, a negative learning rate;
- dataset roots, annotation files and data prefixes exist, and ``num_classes`` agrees
  across the head, the datasets' classes, the evaluators and the data preprocessor
  (preflight_dataset.py);
- the work dir is a writable folder, and ``load_from``/``resume`` checkpoints exist.

With ``read_data=True`` (``vistra check --data``) every training sample is also loaded once
through its pipeline, which finds unreadable images and labels outside the classes.

Problems with the same cause in several sections (a test set that is the val set) are
reported once, naming every key.
"""

from __future__ import annotations

import functools
import inspect
import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vistra.config.errors import ConfigError
from vistra.engine.preflight_dataset import check_data_paths, check_num_classes, dicts
from vistra.registry import (
    DATA_SAMPLERS,
    DATASETS,
    EVALUATOR,
    HOOKS,
    LOG_PROCESSORS,
    LOOPS,
    METRICS,
    MODEL_WRAPPERS,
    MODELS,
    OPTIM_WRAPPER_CONSTRUCTORS,
    OPTIM_WRAPPERS,
    OPTIMIZERS,
    PARAM_SCHEDULERS,
    TASK_UTILS,
    TRANSFORMS,
    VISBACKENDS,
    VISUALIZERS,
    WEIGHT_INITIALIZERS,
    Registry,
    RegistryError,
    arch_choices,
    check_arguments,
    default_scope,
    unknown_type_message,
)

# The sections each purpose reads.
SECTIONS = {
    "train": ("train", "val"),
    "test": ("test",),
    "all": ("train", "val", "test"),
}
# Config dicts inside a model whose `type` names a layer (BN, ReLU, Conv2d...), an init
# scheme or another table than the model registry: not resolved here.
_LAYER_KEY_SUFFIXES = ("_cfg", "_layer", "cfgs")
# model keys whose dicts name no registered type: LoRAModel's ``targets=[dict(type='qkv')]``
# name the layers to adapt
_NOT_MODEL_KEYS = ("targets",)
_OTHER_MODEL_REGISTRIES = (TASK_UTILS, WEIGHT_INITIALIZERS)


# A phase's keys: set all of them or none, so a half-configured phase fails before building.
TRIPLES = {
    "train": ("train_dataloader", "train_cfg", "optim_wrapper"),
    "val": ("val_dataloader", "val_cfg", "val_evaluator"),
    "test": ("test_dataloader", "test_cfg", "test_evaluator"),
}


def triple_problems(cfg: Mapping[str, Any]) -> list[str]:
    """One message per phase whose keys are set only in part."""
    problems = []
    for name, keys in TRIPLES.items():
        present = [k for k in keys if cfg.get(k) is not None]
        if present and len(present) != len(keys):
            missing = [k for k in keys if k not in present]
            problems.append(
                f"{name}: {', '.join(present)} set but {', '.join(missing)} not; "
                f"set all of {', '.join(keys)} or none"
            )
    return problems


class PreflightError(ConfigError):
    """Problems found before the run started; ``problems`` holds one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Report:
    def __init__(self) -> None:
        self._by_message: dict[str, list[str]] = {}

    def add(self, key: str, message: str) -> None:
        keys = self._by_message.setdefault(message, [])
        if key not in keys:
            keys.append(key)

    def lines(self) -> list[str]:
        return [
            f"{', '.join(k for k in keys if k)}: {message}" if any(keys) else message
            for message, keys in self._by_message.items()
        ]


def preflight(cfg: Mapping[str, Any], purpose: str = "train", read_data: bool = False) -> None:
    """Raise :class:`PreflightError` listing every problem :func:`validate` finds."""
    problems = validate(cfg, purpose, read_data)
    if problems:
        raise PreflightError(problems)


def validate(cfg: Mapping[str, Any], purpose: str = "train", read_data: bool = False) -> list[str]:
    """Every problem of ``cfg`` for ``purpose`` (``'train'``, ``'test'`` or ``'all'``)."""
    if purpose not in SECTIONS:
        raise ValueError(f"purpose must be one of {', '.join(SECTIONS)}, got {purpose!r}")
    report = _Report()
    sections = SECTIONS[purpose]
    for message in triple_problems(cfg):
        report.add("", message)
    with default_scope(cfg.get("default_scope")):
        _check_work_dir(cfg, report)
        _check_checkpoints(cfg, purpose, report)
        _check_model(cfg, report)
        for kind in sections:
            _check_dataloader(cfg, f"{kind}_dataloader", report)
            _check_evaluator(cfg.get(f"{kind}_evaluator"), f"{kind}_evaluator", report)
        if "train" in sections:
            _check_training(cfg, report)
        if "val" in sections or "test" in sections:
            for kind in ("val", "test"):
                if kind in sections and cfg.get(f"{kind}_cfg") is not None:
                    loop = {"type": "ValLoop" if kind == "val" else "TestLoop"}
                    _check_built(LOOPS, {**loop, **cfg[f"{kind}_cfg"]}, f"{kind}_cfg", report)
        _check_runtime(cfg, report)
        check_num_classes(cfg, sections, report.add)
        if read_data and not report.lines():
            from vistra.engine.preflight_data import read_every_sample

            for key, message in read_every_sample(cfg, sections):
                report.add(key, message)
    return report.lines()


# ---------------------------------------------------------------------------- one object
def _check_built(
    registry: Registry, cfg: Any, key: str, report: _Report, ignore: tuple[str, ...] = ()
) -> Any | None:
    """Resolve ``cfg['type']`` and check its arguments; the class, or None."""
    if not isinstance(cfg, Mapping) or "type" not in cfg:
        return None
    obj_type = cfg["type"]
    if not isinstance(obj_type, str):
        return obj_type if callable(obj_type) else None
    cls = registry.get(obj_type, scope=cfg.get("_scope_"))
    if cls is None:
        report.add("", unknown_type_message(registry, obj_type, key))
        return None
    args = {k: v for k, v in cfg.items() if k not in ("type", "_scope_", *ignore)}
    try:
        check_arguments(cls, args, obj_type, key)
    except RegistryError as exc:
        report.add("", str(exc))
        return cls
    _check_values(cls, args, obj_type, key, report)
    return cls


def _check_values(cls: Any, args: Mapping[str, Any], type_name: str, key: str, report: _Report):
    """What the signature says about the given values: arch tables and scalar types."""
    for name, value in args.items():
        valid = arch_choices(cls, name, value)
        if valid is not None:
            report.add(
                f"{key}.{name}={value!r}",
                f"{type_name} has no such {name}; valid: {', '.join(map(repr, valid))}.",
            )
            continue
        expected = _scalar_annotation(cls, name)
        if expected and not _fits(value, expected):
            names = " or ".join(t.__name__ for t in expected)
            report.add(
                f"{key}.{name}={value!r}",
                f"{type_name} expects {names} here, got {type(value).__name__}",
            )


def _scalar_annotation(cls: Any, name: str) -> tuple[type, ...] | None:
    """The scalar types (int/float/bool/str) an argument is annotated with, else None."""
    target = cls.__init__ if inspect.isclass(cls) else cls
    hint = _type_hints(target).get(name)
    if hint is None:
        return None
    options = (
        typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, _UnionType) else (hint,)
    )
    if not options or not all(o in (int, float, bool, str, type(None)) for o in options):
        return None
    return tuple(o for o in options if o is not type(None)) or None


_UnionType = type(int | None)


def _type_hints(target: Any) -> dict[str, Any]:
    """``typing.get_type_hints(target)``, once per function: resolving the annotations of
    a constructor costs ~0.3 ms and the check asks once per argument given."""
    try:
        return _cached_type_hints(target)
    except TypeError:  # an unhashable callable: resolve it each time
        return _resolve_type_hints(target)


def _resolve_type_hints(target: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(target)
    except Exception:  # names the module cannot resolve at run time
        return {}


_cached_type_hints = functools.lru_cache(maxsize=1024)(_resolve_type_hints)


def _fits(value: Any, expected: tuple[type, ...]) -> bool:
    if value is None:
        return True  # None is a common "use the default" even where not annotated
    if isinstance(value, bool):
        return bool in expected or int in expected  # MMEngine passes flags as ints, too
    if isinstance(value, int):
        return any(t in (int, float) for t in expected)
    if isinstance(value, float):
        return float in expected or (int in expected and value.is_integer())
    if isinstance(value, str):
        return str in expected
    return True  # a container: the constructor decides


# ---------------------------------------------------------------------------- sections
def _check_work_dir(cfg: Mapping[str, Any], report: _Report) -> None:
    work_dir = cfg.get("work_dir")
    if not work_dir:
        return
    path = Path(str(work_dir))
    if path.exists() and not path.is_dir():
        report.add(
            "", f"work dir {str(work_dir)!r} is a file, not a folder; pass --work-dir a folder"
        )
        return
    existing = next((p for p in (path, *path.absolute().parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        report.add("", f"work dir {str(work_dir)!r} is inside a file ({str(existing)!r})")
    elif existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        report.add(
            "", f"work dir {str(work_dir)!r} cannot be created: {str(existing)!r} is not writable"
        )


def _check_checkpoints(cfg: Mapping[str, Any], purpose: str, report: _Report) -> None:
    resume, load_from = cfg.get("resume"), cfg.get("load_from")
    for value, what in ((load_from, "load_from"), (resume, "resume")):
        if not isinstance(value, str) or value == "auto" or "://" in value:
            continue
        if purpose == "test":
            where = "the CHECKPOINT argument"
        else:
            where = f"{what}, {'--resume' if what == 'resume' or resume is True else '--load-from'}"
        path = Path(value).expanduser()
        if path.is_dir():
            inside = sorted(p.name for p in path.glob("*.pth"))[:4]
            listing = f"; it holds {', '.join(inside)}" if inside else "; it holds no .pth file"
            report.add("", f"checkpoint {value!r} is a folder, not a file ({where}){listing}")
        elif not path.is_file():
            report.add("", f"checkpoint file not found: {value!r} ({where})")


def _check_model(cfg: Mapping[str, Any], report: _Report) -> None:
    model = cfg.get("model")
    if not isinstance(model, Mapping):
        report.add("", "the config has no model = dict(type=...)")
        return
    _walk_model(model, "model", report)
    if isinstance(cfg.get("data_preprocessor"), Mapping) and "type" in cfg["data_preprocessor"]:
        _check_built(MODELS, cfg["data_preprocessor"], "data_preprocessor", report)


def _walk_model(cfg: Mapping[str, Any], key: str, report: _Report) -> None:
    leaf = key.rsplit(".", 1)[-1].split("[", 1)[0]
    if isinstance(cfg.get("type"), str) and not leaf.endswith(_LAYER_KEY_SUFFIXES):
        name = cfg["type"]
        if MODELS.get(name, scope=cfg.get("_scope_")) is not None:
            _check_built(MODELS, cfg, key, report)
        elif not any(r.get(name) is not None for r in _OTHER_MODEL_REGISTRIES):
            report.add("", unknown_type_message(MODELS, name, key))
    for name, value in cfg.items():
        if name in _NOT_MODEL_KEYS:
            continue
        for sub_key, sub in dicts(value, f"{key}.{name}"):
            if "type" not in sub and "dataset" in sub:
                # a dataloader config inside the model (a retriever's gallery, `prototype`)
                _check_dataloader({sub_key: sub}, sub_key, report)
            else:
                _walk_model(sub, sub_key, report)


def _check_dataloader(cfg: Mapping[str, Any], key: str, report: _Report) -> None:
    loader = cfg.get(key)
    if not isinstance(loader, Mapping):
        return
    from vistra.engine.build import unknown_dataloader_keys

    for message in unknown_dataloader_keys(loader, key):
        report.add("", message)
    if "dataset" not in loader:
        report.add("", f"{key} has no 'dataset'")
        return
    for name in ("batch_size", "num_workers"):
        value = loader.get(name)
        smallest = 1 if name == "batch_size" else 0
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < smallest
        ):
            report.add(f"{key}.{name}={value!r}", f"must be an integer >= {smallest}")
    _check_dataset(loader["dataset"], f"{key}.dataset", report)
    if isinstance(loader.get("sampler"), Mapping):
        _check_built(DATA_SAMPLERS, loader["sampler"], f"{key}.sampler", report)


def _check_dataset(cfg: Any, key: str, report: _Report) -> None:
    cls = _check_built(DATASETS, cfg, key, report)
    if not isinstance(cfg, Mapping):
        return
    for name in ("dataset", "datasets"):
        for sub_key, sub in dicts(cfg.get(name), f"{key}.{name}"):
            _check_dataset(sub, sub_key, report)
    _check_pipeline(cfg.get("pipeline"), f"{key}.pipeline", report)
    if cls is not None:
        check_data_paths(cfg, key, report.add)


def _check_pipeline(pipeline: Any, key: str, report: _Report) -> None:
    if not isinstance(pipeline, (list, tuple)):
        return
    for i, step in enumerate(pipeline):
        if isinstance(step, (list, tuple)):  # TestTimeAug / RandomChoice: lists of lists
            _check_pipeline(step, f"{key}[{i}]", report)
        elif isinstance(step, Mapping):
            _check_built(TRANSFORMS, step, f"{key}[{i}]", report)
            if isinstance(step.get("transforms"), (list, tuple)):
                _check_pipeline(step["transforms"], f"{key}[{i}].transforms", report)


def _check_evaluator(cfg: Any, key: str, report: _Report) -> None:
    if cfg is None:
        return
    if isinstance(cfg, Mapping) and cfg.get("type") == "Evaluator":
        _check_built(EVALUATOR, cfg, key, report, ignore=("metrics",))
        cfg, key = cfg.get("metrics"), f"{key}.metrics"
    for sub_key, metric in dicts(cfg, key):
        _check_built(METRICS, metric, sub_key, report)


def _check_training(cfg: Mapping[str, Any], report: _Report) -> None:
    train_cfg = cfg.get("train_cfg")
    if isinstance(train_cfg, Mapping):
        loop = dict(train_cfg)
        if "type" not in loop:
            loop["type"] = (
                "EpochBasedTrainLoop" if loop.pop("by_epoch", True) else "IterBasedTrainLoop"
            )
        _check_built(LOOPS, loop, "train_cfg", report)
        for name in ("max_epochs", "max_iters", "val_interval"):
            value = loop.get(name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                report.add(f"train_cfg.{name}={value!r}", "must be a positive integer")
    wrapper = cfg.get("optim_wrapper")
    if isinstance(wrapper, Mapping):
        _check_optim_wrapper(wrapper, report)
    for sub_key, scheduler in dicts(cfg.get("param_scheduler"), "param_scheduler"):
        # convert_to_iter_based is the builder's, not the scheduler's (schedulers.py)
        _check_built(
            PARAM_SCHEDULERS, scheduler, sub_key, report, ignore=("convert_to_iter_based",)
        )


def _check_optim_wrapper(wrapper: Mapping[str, Any], report: _Report) -> None:
    if isinstance(wrapper.get("type", "OptimWrapper"), str):
        name = wrapper.get("type", "OptimWrapper")
        if OPTIM_WRAPPERS.get(name) is None:
            report.add("", unknown_type_message(OPTIM_WRAPPERS, name, "optim_wrapper"))
    constructor = wrapper.get("constructor")
    if isinstance(constructor, str) and OPTIM_WRAPPER_CONSTRUCTORS.get(constructor) is None:
        report.add(
            "",
            unknown_type_message(
                OPTIM_WRAPPER_CONSTRUCTORS, constructor, "optim_wrapper.constructor"
            ),
        )
    optimizer = wrapper.get("optimizer")
    if isinstance(optimizer, Mapping):
        _check_built(OPTIMIZERS, optimizer, "optim_wrapper.optimizer", report)
        lr = optimizer.get("lr")
        if isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr < 0:
            report.add(f"optim_wrapper.optimizer.lr={lr!r}", "a learning rate must be >= 0")


def _check_runtime(cfg: Mapping[str, Any], report: _Report) -> None:
    from vistra.engine.build import DEFAULT_HOOKS

    for name, hook in (cfg.get("default_hooks") or {}).items():
        if isinstance(hook, Mapping):
            merged = {**DEFAULT_HOOKS.get(name, {}), **hook} if "type" not in hook else dict(hook)
            _check_built(HOOKS, merged, f"default_hooks.{name}", report, ignore=("priority",))
    for sub_key, hook in dicts(cfg.get("custom_hooks"), "custom_hooks"):
        _check_built(HOOKS, hook, sub_key, report, ignore=("priority",))
    visualizer = cfg.get("visualizer")
    if isinstance(visualizer, Mapping):
        _check_built(VISUALIZERS, visualizer, "visualizer", report, ignore=("vis_backends",))
        for sub_key, backend in dicts(visualizer.get("vis_backends"), "visualizer.vis_backends"):
            # a tracker whose package is missing fails before the run
            backend_cls = _check_built(VISBACKENDS, backend, sub_key, report)
            missing = getattr(backend_cls, "missing_requirement", None)
            if callable(missing) and (message := missing()):
                report.add(sub_key, message)
    if isinstance(cfg.get("log_processor"), Mapping):
        _check_built(
            LOG_PROCESSORS,
            {"type": "LogProcessor", **cfg["log_processor"]},
            "log_processor",
            report,
        )
    if isinstance(cfg.get("model_wrapper_cfg"), Mapping):
        _check_built(MODEL_WRAPPERS, cfg["model_wrapper_cfg"], "model_wrapper_cfg", report)
