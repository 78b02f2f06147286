"""From a config to the parts a Runner is made of, before any Runner exists.

``prepare_run`` is what ``Runner.from_config`` does: translate a 0.x config, check the
train/val/test key triples, validate the config (preflight.py), tune the CPU allocator
(allocator.py), join the process group, apply ``env_cfg``, draw the seed,
agree on a timestamp, start the log, write the work dir's config copy, report the
environment and build the model. ``auto_scale_lr`` and ``model_wrapper_cfg`` read the
config keys the Runner applies later, when ``train()``/``test()`` build their parts.
"""

from __future__ import annotations

import copy
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import torch

import vistra
from vistra.config import Config
from vistra.config.legacy import legacy_markers, upgrade_config
from vistra.dist import DistInfo, broadcast_object, init_dist
from vistra.engine import build as B
from vistra.engine.allocator import tune_cpu_allocator
from vistra.engine.logging import setup_logger
from vistra.engine.preflight import preflight, triple_problems
from vistra.registry import MODELS, RegistryError, default_scope

logger = logging.getLogger("vistra")


class RunParts(NamedTuple):
    """What ``Runner.__init__`` takes, in its order."""

    cfg: Any
    dist_info: DistInfo
    model: torch.nn.Module
    seed: int
    timestamp: str


def prepare_run(
    cfg: Any, dist_info: DistInfo | None = None, purpose: str | None = "train"
) -> RunParts:
    """Everything before the Runner: ``cfg`` is copied, never changed in place.

    ``purpose`` (``'train'``, ``'test'``, ``'all'``; None skips it) picks the sections the
    pre-flight validation checks, before anything is written or any weight allocated.
    """
    cfg = copy.deepcopy(cfg)
    if legacy_markers(cfg):  # a 0.x config given to the API directly (the CLI translates)
        cfg = upgrade_config(cfg if isinstance(cfg, Config) else Config(dict(cfg)))
    _check_triples(cfg)
    if purpose is not None:
        preflight(cfg, purpose)  # every problem at once; raises PreflightError
    env_cfg = dict(cfg.get("env_cfg") or {})
    tune_cpu_allocator()  # before the model and the data loaders allocate (allocator.py)
    if dist_info is None:
        dist_info = _init_dist(cfg, env_cfg)
    torch.backends.cudnn.benchmark = bool(env_cfg.get("cudnn_benchmark", False))
    _apply_mp_cfg(env_cfg.get("mp_cfg") or {})
    seed = _resolve_seed(cfg, dist_info)
    # every rank writes under the same <ts>/ folder, so rank 0's clock decides
    timestamp = broadcast_object(time.strftime("%Y%m%d_%H%M%S"))
    _start_work_dir(cfg, dist_info, timestamp)
    logger.info("%s", _environment_report(dist_info, seed, cfg))
    logger.info("Config:\n%s", pretty_config(cfg))
    model = _build_model(cfg)
    return RunParts(cfg, dist_info, model, seed, timestamp)


def _init_dist(cfg: Any, env_cfg: dict) -> DistInfo:
    dist_cfg = dict(env_cfg.get("dist_cfg") or {})
    return init_dist(
        cfg.get("launcher", "none") or "none",
        dist_cfg.get("backend"),
        dist_cfg.get("port"),
        dist_cfg.get("timeout", env_cfg.get("dist_timeout")),
    )


def _start_work_dir(cfg: Any, dist_info: DistInfo, timestamp: str) -> None:
    """The log file first, so the translation notes and everything after it land there."""
    work_dir = Path(cfg["work_dir"])
    log_file = work_dir / timestamp / f"{timestamp}.log"
    setup_logger(log_file, dist_info.rank, cfg.get("log_level", "INFO"))
    _log_legacy_notes(cfg)
    if dist_info.is_main:
        work_dir.mkdir(parents=True, exist_ok=True)
        _dump_config(cfg, work_dir)


def _build_model(cfg: Any) -> torch.nn.Module:
    model_cfg = cfg["model"]
    if cfg.get("data_preprocessor") is not None and isinstance(model_cfg, dict):
        model_cfg.setdefault("data_preprocessor", cfg["data_preprocessor"])  # as MMEngine
    with default_scope(cfg.get("default_scope")):  # a package's variant of a type name
        return MODELS.build(model_cfg, key_path="model")


def _log_legacy_notes(cfg: Any) -> None:
    """What the 0.x -> 1.x translation did: the summary, then one line per change."""
    for line in getattr(cfg, "legacy_notes", ()):
        logger.log(logging.WARNING if line.startswith("dropped") else logging.INFO, "%s", line)


def _check_triples(cfg: Any) -> None:
    problems = triple_problems(cfg)
    if problems:
        raise RegistryError(problems[0])


def _apply_mp_cfg(mp_cfg: dict) -> None:
    import torch.multiprocessing as mp

    method = mp_cfg.get("mp_start_method")
    if method and mp.get_start_method(allow_none=True) != method:
        mp.set_start_method(method, force=True)


def _resolve_seed(cfg: Any, dist_info: DistInfo) -> int:
    randomness = dict(cfg.get("randomness") or {})
    seed = randomness.get("seed")
    if seed is None:
        seed = broadcast_object(int(torch.randint(0, 2**31 - 1, ()).item()))
    seed = int(seed)
    run_seed = seed + dist_info.rank if randomness.get("diff_rank_seed", False) else seed
    B.set_random_seed(run_seed, bool(randomness.get("deterministic", False)))
    return seed


def _dump_config(cfg: Any, work_dir: Path) -> None:
    name = Path(cfg.filename).stem if getattr(cfg, "filename", None) else "config"
    cfg.dump(str(work_dir / f"{name}.py"))


def pretty_config(cfg: Any) -> str:
    """The config as Python text; a plain dict (the API allows one) as its repr."""
    return cfg.pretty_text if hasattr(cfg, "pretty_text") else repr(cfg)


def _environment_report(dist_info: DistInfo, seed: int, cfg: Any) -> str:
    from importlib.metadata import PackageNotFoundError, version

    import numpy

    try:  # the installed version, without importing torchvision (~1.5 s)
        torchvision_version = version("torchvision")
    except PackageNotFoundError:
        torchvision_version = "not installed"

    rows = [
        ("sys.platform", sys.platform),
        ("Python", sys.version.replace("\n", "")),
        ("machine", platform.machine()),
        ("PyTorch", torch.__version__),
        ("TorchVision", torchvision_version),
        ("NumPy", numpy.__version__),
        ("vistra", vistra.__version__),
        ("CUDA available", torch.cuda.is_available()),
        ("CPU allocator", tune_cpu_allocator()),
        ("device", str(dist_info.device)),
        ("seed", seed),
        ("deterministic", (cfg.get("randomness") or {}).get("deterministic", False)),
        ("Distributed launcher", dist_info.launcher),
        ("Distributed training", dist_info.world_size > 1),
        ("world size", dist_info.world_size),
    ]
    bar = "-" * 60
    return (
        "\n" + bar + "\nEnvironment:\n" + "\n".join(f"    {k}: {v}" for k, v in rows) + "\n" + bar
    )


# ---------------------------------------------------------------- read when parts are built
def model_wrapper_cfg(cfg: Any) -> dict:
    """``model_wrapper_cfg``, with MMEngine's top-level ``find_unused_parameters`` as a default."""
    wrapper = dict(cfg.get("model_wrapper_cfg") or {})
    if cfg.get("find_unused_parameters") is not None:
        wrapper.setdefault("find_unused_parameters", bool(cfg["find_unused_parameters"]))
    return wrapper


def auto_scale_lr(cfg: Any, optim_cfg: dict, batch_size: int, world_size: int) -> None:
    """Scale ``optim_cfg``'s lr in place by the real batch size over ``base_batch_size``."""
    auto = cfg.get("auto_scale_lr") or {}
    if not auto.get("enable", False):
        return
    if "base_batch_size" not in auto:
        raise RegistryError("auto_scale_lr is enabled but auto_scale_lr.base_batch_size is not set")
    accumulation = int(optim_cfg.get("accumulative_counts", 1))
    real = world_size * batch_size * accumulation
    ratio = real / auto["base_batch_size"]
    optimizer = optim_cfg.get("optimizer", {})
    if "lr" not in optimizer:
        raise RegistryError("auto_scale_lr needs optim_wrapper.optimizer.lr")
    old = optimizer["lr"]
    optimizer["lr"] = old * ratio
    logger.info(
        "LR is scaled by %.4f from %g to %g: batch %d = %d processes x %d samples x %d accumulation steps, "
        "base batch size %d (vistra counts gradient accumulation)",
        ratio,
        old,
        optimizer["lr"],
        real,
        world_size,
        batch_size,
        accumulation,
        auto["base_batch_size"],
    )
