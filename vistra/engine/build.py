"""Turn config sections into components: dataloaders, loops, hooks, seeds.

Strings and config dicts end here; what leaves these functions are built objects.
"""

from __future__ import annotations

import atexit
import copy
import functools
import logging
import os
import random
import signal
from collections.abc import Mapping
from functools import partial
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from vistra.registry import (
    DATA_SAMPLERS,
    DATASETS,
    FUNCTIONS,
    HOOKS,
    LOOPS,
    RegistryError,
    did_you_mean,
)

logger = logging.getLogger("vistra")

# Default hooks under MMEngine's keys; a config sets one to None to remove it.
DEFAULT_HOOKS: dict[str, dict] = {
    "runtime_info": dict(type="RuntimeInfoHook"),
    "timer": dict(type="IterTimerHook"),
    "sampler_seed": dict(type="DistSamplerSeedHook"),
    "logger": dict(type="LoggerHook"),
    "param_scheduler": dict(type="ParamSchedulerHook"),
    "checkpoint": dict(type="CheckpointHook", interval=1),
}


# ----------------------------------------------------------------------------- seeds
def set_random_seed(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (all devices); deterministic mode warns, not crashes,
    on ops without a deterministic kernel."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)


def rng_state() -> dict[str, Any]:
    """The RNG states of this process as tensors and plain values (weights_only-safe)."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (
            np_state[0],
            torch.from_numpy(np_state[1].copy()),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def gather_rng_states() -> list[dict[str, Any]]:
    """Every rank's RNG states, indexed by rank (a one-element list outside a process group)."""
    import torch.distributed as torch_dist

    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return [rng_state()]
    # Tensors do not survive all_gather_object on every torch version: send plain lists.
    mine = {k: _to_lists(v) for k, v in rng_state().items()}
    gathered: list[Any] = [None] * torch_dist.get_world_size()
    torch_dist.all_gather_object(gathered, mine)
    return [{k: _from_lists(k, v) for k, v in state.items()} for state in gathered]


def _to_lists(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return ("__tensor__", str(value.dtype), value.tolist())
    if isinstance(value, (list, tuple)):
        return type(value)(_to_lists(v) for v in value)
    return value


def _from_lists(key: str, value: Any) -> Any:
    if isinstance(value, tuple) and len(value) == 3 and value[0] == "__tensor__":
        return torch.tensor(value[2], dtype=getattr(torch, value[1].split(".")[-1]))
    if isinstance(value, (list, tuple)):
        return type(value)(_from_lists(key, v) for v in value)
    return value


def set_rng_state(state: Mapping[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------- data
def _worker_init(worker_id: int, num_workers: int, rank: int, seed: int) -> None:
    # MMEngine's worker seed; per-sample seeds (samplers.py) make augmentation independent
    # of it, but transforms outside vistra datasets still get distinct, reproducible seeds.
    worker_seed = num_workers * rank + worker_id + seed
    # Schedulers signal every process of a job (Slurm's --signal, scancel --signal): the
    # main process turns SIGTERM/SIGUSR1 into a checkpoint and a clean stop, while a worker
    # killed by them would crash the loader first. Workers end when the main process does.
    for sig in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)
    _lower_priority()
    np.random.seed(worker_seed % 2**32)
    random.seed(worker_seed)
    torch.manual_seed(worker_seed)


WORKER_NICENESS = 5


def _lower_priority() -> None:
    """Run this worker at a lower CPU priority than the training process.

    Workers only have to keep the prefetch queue full. At equal priority, on a machine
    whose cores the model's threads already fill, every worker time slice preempts one
    of those threads and the others wait for it at their next barrier: on 2 cores,
    ResNet_CIFAR-18 with 2 workers stepped 4-9% slower than with the same work done by
    lower-priority workers (benchmarks/overhead.py). When the run waits for data, the
    training process sleeps and the workers get the cores anyway.
    """
    try:
        os.nice(WORKER_NICENESS)
    except OSError:  # not permitted (some containers): run at the inherited priority
        pass


@functools.cache
def _end_workers_at_exit() -> None:
    """Register (once) an exit handler that kills the daemonic child processes still alive:
    DataLoader workers (vistra starts no other daemonic process).

    A loader iterator left in a reference cycle by an error (the loop's suspended generator,
    the traceback) is not shut down before exit; multiprocessing's own exit handler would
    then SIGTERM its workers, which ignore SIGTERM (``_worker_init``), and wait for them
    forever: the command would hang after printing its error.
    """
    import multiprocessing.util  # registers its exit handler now, so that ours runs first

    def kill_workers() -> None:
        workers = [c for c in multiprocessing.active_children() if c.daemon]
        if not workers:
            return
        # torch's SIGCHLD handler would report each killed worker as a failure
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for child in workers:  # multiprocessing would terminate them at exit anyway
            child.kill()

    atexit.register(kill_workers)


DATALOADER_KEYS = (
    "batch_sampler",
    "batch_size",
    "collate_fn",
    "dataset",
    "drop_last",
    "num_workers",
    "persistent_workers",
    "pin_memory",
    "prefetch_factor",
    "sampler",
    "worker_init_fn",
)


def unknown_dataloader_keys(cfg: Mapping[str, Any], key: str) -> list[str]:
    """One error message per key of a ``*_dataloader`` section that MMEngine does not know."""
    return [
        f"{key}: unknown key {name!r}.{did_you_mean(name, DATALOADER_KEYS)} "
        f"Valid keys: {', '.join(DATALOADER_KEYS)}"
        for name in cfg
        if name not in DATALOADER_KEYS
    ]


def build_dataloader(
    cfg: Mapping[str, Any], key: str, seed: int, rank: int, pin_memory_default: bool = False
) -> DataLoader:
    """A DataLoader from a ``*_dataloader`` config section (MMEngine's keys)."""
    cfg = copy.deepcopy(dict(cfg))
    for message in unknown_dataloader_keys(cfg, key):
        raise RegistryError(message)
    if "dataset" not in cfg:
        raise RegistryError(f"{key} has no 'dataset'")
    dataset = cfg["dataset"]
    if isinstance(dataset, Mapping):
        dataset = DATASETS.build(dataset, key_path=f"{key}.dataset")
    sampler_cfg = dict(cfg.get("sampler") or dict(type="DefaultSampler", shuffle=False))
    sampler_cfg.setdefault("seed", seed) if _accepts(sampler_cfg, "seed") else None
    sampler = DATA_SAMPLERS.build(
        sampler_cfg, default_args=dict(dataset=dataset), key_path=f"{key}.sampler"
    )
    from vistra.data.collate import WorkerCollate
    from vistra.data.datasets.base import BaseDataset
    from vistra.data.datasets.wrappers import RepeatDataset

    inner, inner_key = dataset, f"{key}.dataset"
    while isinstance(inner, RepeatDataset):  # repeats pass (index, seed) pairs on unchanged
        inner, inner_key = inner.dataset, f"{inner_key}.dataset"
    if isinstance(inner, BaseDataset):
        inner.config_key = inner_key  # its errors name the config key
        if hasattr(sampler, "seed_samples"):
            sampler.seed_samples = True  # (index, seed) pairs: augmentation independent of workers
    collate = cfg.get("collate_fn") or dict(type="pseudo_collate")
    if isinstance(collate, Mapping):
        collate = dict(collate)
        fn = FUNCTIONS.get(collate.pop("type"))
        if fn is None:
            raise RegistryError(
                f"{key}.collate_fn: unknown function; registered: {', '.join(FUNCTIONS.keys())}"
            )
        collate = partial(fn, **collate) if collate else fn
    num_workers = int(cfg.get("num_workers", 0))
    if num_workers > 0:
        collate = WorkerCollate(collate)  # batches cross to the main process in few storages
    generator = (
        torch.Generator()
    )  # own generator: creating iterators never draws from the global RNG
    generator.manual_seed(seed)
    kwargs: dict[str, Any] = dict(
        batch_size=cfg.get("batch_size", 1),
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        # pinning means nothing without CUDA (torch warns), so a CPU run ignores the flag
        pin_memory=bool(cfg.get("pin_memory", pin_memory_default)) and torch.cuda.is_available(),
        drop_last=cfg.get("drop_last", False),
        generator=generator,
        worker_init_fn=partial(_worker_init, num_workers=num_workers, rank=rank, seed=seed)
        if num_workers
        else None,
    )
    if num_workers > 0:
        _end_workers_at_exit()
        kwargs["persistent_workers"] = cfg.get("persistent_workers", True)
        if cfg.get("prefetch_factor") is not None:
            kwargs["prefetch_factor"] = cfg["prefetch_factor"]
    return DataLoader(dataset, **kwargs)


def stop_loader_workers(*loaders_or_iterators: Any) -> None:
    """End the worker processes of these DataLoaders (or their iterators) now.

    Left to the garbage collector, a loader iterator caught in a reference cycle (the
    runner, its loops and their generators form one) is finalised after multiprocessing
    has already stopped its queues' feeder threads: the workers never get their stop
    message, torch waits 2 x 5 s for them, and they live on (they ignore SIGTERM, see
    ``_worker_init``) until the process exits. Measured: a ``gc.collect()`` after a
    finished ``Runner.train()`` with one persistent worker took 10.3 s.
    """
    for obj in loaders_or_iterators:
        iterator = getattr(obj, "_iterator", None)  # a persistent-workers DataLoader's
        for candidate in (obj, iterator):
            if hasattr(candidate, "_shutdown_workers"):
                candidate._shutdown_workers()
        if iterator is not None:
            obj._iterator = None  # the next iter() starts fresh workers


def _accepts(sampler_cfg: Mapping[str, Any], arg: str) -> bool:
    import inspect

    cls = sampler_cfg.get("type")
    cls = DATA_SAMPLERS.get(cls) if isinstance(cls, str) else cls
    if cls is None:
        return False
    try:
        return arg in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False


# ----------------------------------------------------------------------------- loops
def build_train_loop(cfg: Mapping[str, Any], runner: Any, dataloader: DataLoader) -> Any:
    """``train_cfg=dict(by_epoch=True, max_epochs=...)`` or ``dict(type=..., ...)``."""
    cfg = dict(cfg)
    if "type" not in cfg:
        by_epoch = cfg.pop("by_epoch", True)
        cfg["type"] = "EpochBasedTrainLoop" if by_epoch else "IterBasedTrainLoop"
    elif "by_epoch" in cfg:
        raise RegistryError("train_cfg: give either 'type' or 'by_epoch', not both")
    return LOOPS.build(
        cfg, default_args=dict(runner=runner, dataloader=dataloader), key_path="train_cfg"
    )


def build_eval_loop(
    cfg: Mapping[str, Any] | None, kind: str, runner: Any, dataloader: DataLoader, evaluator: Any
) -> Any:
    cfg = dict(cfg or {})
    cfg.setdefault("type", "ValLoop" if kind == "val" else "TestLoop")
    return LOOPS.build(
        cfg,
        default_args=dict(runner=runner, dataloader=dataloader, evaluator=evaluator),
        key_path=f"{kind}_cfg",
    )


# ----------------------------------------------------------------------------- hooks
def build_hooks(default_hooks: Mapping[str, Any] | None, custom_hooks: list | None) -> list:
    """Default hooks (config entries update the defaults; None removes one) then custom
    hooks, stably sorted by priority."""
    from vistra.engine.hooks.hook import priority_value

    merged = {k: dict(v) for k, v in DEFAULT_HOOKS.items()}
    for name, value in (default_hooks or {}).items():
        if value is None:
            merged.pop(name, None)
        elif isinstance(value, Mapping):
            base = (
                merged.get(name, {})
                if "type" not in value or value.get("type") == merged.get(name, {}).get("type")
                else {}
            )
            merged[name] = {**base, **value}
        else:
            merged[name] = value
    built = []
    for name, cfg in merged.items():
        built.append(_build_hook(cfg, f"default_hooks.{name}"))
    for i, cfg in enumerate(custom_hooks or []):
        built.append(_build_hook(cfg, f"custom_hooks[{i}]"))
    return sorted(built, key=lambda h: priority_value(getattr(h, "priority", "NORMAL")))


def _build_hook(cfg: Any, key: str) -> Any:
    if not isinstance(cfg, Mapping):
        return cfg  # an already-built hook object
    cfg = dict(cfg)
    priority = cfg.pop("priority", None)
    hook = HOOKS.build(cfg, key_path=key)
    if priority is not None:
        hook.priority = priority
    return hook
