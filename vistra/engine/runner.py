"""The Runner: builds a run from a config, then trains, validates or tests.

``Runner.from_config(cfg)`` reads the OpenMMLab keys (``model``, ``*_dataloader``,
``*_cfg``, ``optim_wrapper``, ``param_scheduler``, ``*_evaluator``, ``default_hooks``,
``custom_hooks``, ``env_cfg``, ``randomness``, ``load_from``, ``resume``, ...). Training
components are built when ``train()`` is called and test components when ``test()`` is,
so testing never touches the training data. The step itself lives in ``loops.py``.
"""

from __future__ import annotations

import copy
import logging
import os
import platform
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as torch_dist

import vistra
from vistra import checkpoint as ckpt_io
from vistra.config import Config
from vistra.config.legacy import legacy_markers, upgrade_config
from vistra.dist import DistInfo, broadcast_object, init_dist, place_model, slurm, unwrap
from vistra.dist.watchdog import DEFAULT_TIMEOUT, NullWatchdog, Watchdog
from vistra.engine import build as B
from vistra.engine.logging import LogProcessor, MessageHub, setup_logger
from vistra.registry import (
    LOG_PROCESSORS,
    MODELS,
    RUNNERS,
    VISUALIZERS,
    RegistryError,
    default_scope,
)

logger = logging.getLogger("vistra")

# Config keys whose change between a checkpoint and a resumed run is expected.
_IGNORED_CHANGES = ("resume", "load_from", "work_dir", "launcher", "randomness.seed")


@RUNNERS.register_module()
class Runner:
    """One training/testing run. Hooks see it as MMEngine's runner (``runner.epoch``,
    ``runner.iter``, ``runner.model``, ``runner.optim_wrapper``, ``runner.message_hub``...)."""

    def __init__(
        self, cfg: Any, dist_info: DistInfo, model: torch.nn.Module, seed: int, timestamp: str
    ) -> None:
        self.cfg = cfg
        self.dist = dist_info
        self.model = model
        self.seed = seed
        self.timestamp = timestamp
        self.work_dir = str(Path(cfg["work_dir"]).resolve())
        self.log_dir = str(Path(self.work_dir) / timestamp)
        self.experiment_name = (
            Path(cfg.filename or "config").stem if hasattr(cfg, "filename") else "config"
        )
        self.message_hub = MessageHub()
        self.log_processor: LogProcessor = LOG_PROCESSORS.build(
            {"type": "LogProcessor", **(cfg.get("log_processor") or {})}, key_path="log_processor"
        )
        self.hooks = B.build_hooks(cfg.get("default_hooks"), cfg.get("custom_hooks"))
        self.visualizer = self._build_visualizer()
        self.train_loop: Any = None
        self.val_loop: Any = None
        self.test_loop: Any = None
        self.optim_wrapper: Any = None
        self.param_schedulers: Any = None
        self.resuming = False
        self._stop_signal: int | None = None
        self._loaded_rng: list | None = None
        self.watchdog: Watchdog | NullWatchdog = NullWatchdog()

    # ------------------------------------------------------------------ building
    @classmethod
    def from_config(cls, cfg: Any, dist_info: DistInfo | None = None) -> Runner:
        cfg = copy.deepcopy(cfg)
        if legacy_markers(cfg):  # a 0.x config given to the API directly (the CLI translates)
            cfg = upgrade_config(cfg if isinstance(cfg, Config) else Config(dict(cfg)))
        _check_triples(cfg)
        env_cfg = dict(cfg.get("env_cfg") or {})
        if dist_info is None:
            dist_cfg = dict(env_cfg.get("dist_cfg") or {})
            dist_info = init_dist(
                cfg.get("launcher", "none") or "none",
                dist_cfg.get("backend"),
                dist_cfg.get("port"),
                dist_cfg.get("timeout", env_cfg.get("dist_timeout")),
            )
        torch.backends.cudnn.benchmark = bool(env_cfg.get("cudnn_benchmark", False))
        _apply_mp_cfg(env_cfg.get("mp_cfg") or {})
        seed = _resolve_seed(cfg, dist_info)
        timestamp = broadcast_object(time.strftime("%Y%m%d_%H%M%S"))
        work_dir = Path(cfg["work_dir"])
        log_file = work_dir / timestamp / f"{timestamp}.log"
        setup_logger(log_file, dist_info.rank, cfg.get("log_level", "INFO"))
        _log_legacy_notes(cfg)
        if dist_info.is_main:
            work_dir.mkdir(parents=True, exist_ok=True)
            _dump_config(cfg, work_dir)
        logger.info("%s", _environment_report(dist_info, seed, cfg))
        logger.info("Config:\n%s", _pretty(cfg))
        model_cfg = cfg["model"]
        if cfg.get("data_preprocessor") is not None and isinstance(model_cfg, dict):
            model_cfg.setdefault("data_preprocessor", cfg["data_preprocessor"])  # as MMEngine
        with default_scope(cfg.get("default_scope")):  # a package's variant of a type name
            model = MODELS.build(model_cfg, key_path="model")
        return cls(cfg, dist_info, model, seed, timestamp)

    def _build_visualizer(self) -> Any:
        vis_cfg = dict(
            self.cfg.get("visualizer")
            or dict(type="Visualizer", vis_backends=[dict(type="LocalVisBackend")])
        )
        if not self.dist.is_main:
            vis_cfg["vis_backends"] = []  # only rank 0 writes
        vis_cfg.setdefault("save_dir", self.log_dir)  # backends write to <log_dir>/vis_data
        return VISUALIZERS.build(vis_cfg, key_path="visualizer")

    def _dataloader(self, key: str) -> Any:
        return B.build_dataloader(
            self.cfg[key],
            key,
            self.seed,
            self.dist.rank,
            pin_memory_default=self.device.type == "cuda",
        )

    def _evaluator(self, key: str) -> Any:
        from vistra.evaluation import build_evaluator

        return build_evaluator(self.cfg[key], key_path=key)

    def _build_training(self) -> None:
        from vistra.engine.optim import build_optim_wrapper
        from vistra.engine.schedulers import build_param_schedulers

        if self.cfg.get("train_dataloader") is None:
            raise RegistryError(
                "this config has no train_dataloader/train_cfg/optim_wrapper; it can only be tested"
            )
        train_loader = self._dataloader("train_dataloader")
        unwrap(self.model).init_weights()
        self.model = place_model(
            self.model, self.dist, _model_wrapper_cfg(self.cfg), self.cfg.get("sync_bn")
        )
        _broadcast_weights(self.model)
        optim_cfg = copy.deepcopy(dict(self.cfg["optim_wrapper"]))
        _auto_scale_lr(self.cfg, optim_cfg, train_loader.batch_size, self.dist.world_size)
        self.optim_wrapper = build_optim_wrapper(self.model, optim_cfg)
        self.train_loop = B.build_train_loop(self.cfg["train_cfg"], self, train_loader)
        scheduler_cfg = self.cfg.get("param_scheduler")
        self.param_schedulers = []
        if scheduler_cfg:
            self.param_schedulers = build_param_schedulers(
                scheduler_cfg,
                self.optim_wrapper,
                epoch_length=len(train_loader),
                max_epochs=self.train_loop.max_epochs,
                max_iters=self.train_loop.max_iters,
            )
        if self.cfg.get("val_dataloader") is not None:
            self.val_loop = self._build_eval("val")
        _set_dataset_meta(self, train_loader)

    def _build_eval(self, kind: str) -> Any:
        loader = self._dataloader(f"{kind}_dataloader")
        evaluator = self._evaluator(f"{kind}_evaluator")
        return B.build_eval_loop(self.cfg.get(f"{kind}_cfg"), kind, self, loader, evaluator)

    # ------------------------------------------------------------------ properties
    @property
    def rank(self) -> int:
        return self.dist.rank

    @property
    def world_size(self) -> int:
        return self.dist.world_size

    @property
    def device(self) -> torch.device:
        return self.dist.device

    @property
    def epoch(self) -> int:
        return self.train_loop.epoch if self.train_loop is not None else 0

    @property
    def iter(self) -> int:
        return self.train_loop.iter if self.train_loop is not None else 0

    @property
    def max_epochs(self) -> int:
        return self.train_loop.max_epochs if self.train_loop is not None else 0

    @property
    def max_iters(self) -> int:
        return self.train_loop.max_iters if self.train_loop is not None else 0

    @property
    def train_dataloader(self) -> Any:
        return self.train_loop.dataloader if self.train_loop is not None else None

    @property
    def val_dataloader(self) -> Any:
        return self.val_loop.dataloader if self.val_loop is not None else None

    @property
    def test_dataloader(self) -> Any:
        return self.test_loop.dataloader if self.test_loop is not None else None

    def call_hook(self, name: str, **kwargs: Any) -> None:
        for hook in self.hooks:
            getattr(hook, name)(self, **kwargs)

    # ------------------------------------------------------------------ entry points
    def train(self) -> torch.nn.Module:
        with default_scope(self.cfg.get("default_scope")):
            return self._train()

    def _train(self) -> torch.nn.Module:
        resume_from = self._resume_source()
        checkpoint = None
        if resume_from is not None:
            checkpoint = ckpt_io.load_checkpoint_file(
                resume_from, allow_unsafe=bool(self.cfg.get("allow_unsafe_load"))
            )
            self._adopt_seed(checkpoint)  # before the dataloaders derive their seeds from it
        self._build_training()
        self.call_hook("before_run")
        if checkpoint is not None:
            self.resume(str(resume_from), checkpoint)
        elif self.cfg.get("load_from") and not self.cfg.get("resume"):
            self.load_checkpoint(self.cfg["load_from"], strict=False)
        self.optim_wrapper.initialize_count_status(
            self.model, self.train_loop.iter, self.train_loop.max_iters
        )
        if self._loaded_rng is not None:  # last, so nothing after it draws from the RNGs
            B.set_rng_state(self._loaded_rng[min(self.rank, len(self._loaded_rng) - 1)])
        self.watchdog = self._start_watchdog("train")
        with self._stop_signals():
            model = self.train_loop.run()
        self.watchdog.stop()
        self.call_hook("after_run")
        return model

    def test(self) -> dict[str, Any]:
        with default_scope(self.cfg.get("default_scope")):
            return self._test()

    def _test(self) -> dict[str, Any]:
        if self.cfg.get("test_dataloader") is None:
            raise RegistryError("this config has no test_dataloader/test_cfg/test_evaluator")
        self.model = place_model(self.model, self.dist, _model_wrapper_cfg(self.cfg))
        self.test_loop = self._build_eval("test")
        _set_dataset_meta(self, self.test_loop.dataloader)
        self.call_hook("before_run")
        load_from = self.cfg.get("load_from")
        if not load_from:
            raise ckpt_io.CheckpointError(
                "test needs a checkpoint: pass CHECKPOINT or set load_from"
            )
        self.load_checkpoint(load_from, strict=bool(self.cfg.get("test_strict_load", True)))
        self.watchdog = self._start_watchdog("test")
        metrics = self.test_loop.run()
        self.watchdog.stop()
        self.call_hook("after_run")
        return metrics

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(
        self,
        out_dir: str,
        filename: str,
        save_optimizer: bool = True,
        save_param_scheduler: bool = True,
        update_last: bool = True,
    ) -> Path | None:
        """Assemble and atomically write a checkpoint; rank 0 writes, every rank must call
        (the RNG states of all ranks are gathered). Returns the path on rank 0."""
        loop_state = self.train_loop.loop_state() if self.train_loop is not None else {}
        loop_state["rng"] = B.gather_rng_states()
        checkpoint: dict[str, Any] = {
            "meta": self._checkpoint_meta(loop_state),
            "state_dict": {k: v.detach().cpu() for k, v in unwrap(self.model).state_dict().items()},
            "message_hub": self.message_hub.state_dict(),
            "loop_state": loop_state,
        }
        if save_optimizer and self.optim_wrapper is not None:
            checkpoint["optimizer"] = self.optim_wrapper.state_dict()
        if save_param_scheduler and self.param_schedulers:
            checkpoint["param_schedulers"] = [s.state_dict() for s in self.param_schedulers]
        self.call_hook("before_save_checkpoint", checkpoint=checkpoint)
        if not self.dist.is_main:
            return None
        with self.watchdog.busy(f"saving checkpoint {filename}"):
            path = ckpt_io.save_checkpoint(checkpoint, Path(out_dir) / filename)
        if not update_last:  # best_* files are not resume points
            return path
        try:
            target = str(path.resolve().relative_to(Path(self.work_dir).resolve()))
        except ValueError:
            target = str(path.resolve())
        ckpt_io.write_text_atomic(Path(self.work_dir) / "last_checkpoint", target)
        return path

    def _checkpoint_meta(self, loop_state: dict[str, Any]) -> dict[str, Any]:
        dataset = getattr(self.train_dataloader, "dataset", None)
        return {
            "epoch": loop_state.get("epoch", 0),
            "iter": loop_state.get("iter", 0),
            "cfg": _pretty(self.cfg),
            "cfg_flat": _flatten(self.cfg),
            "seed": self.seed,
            "experiment_name": self.experiment_name,
            "time": time.strftime("%Y%m%d_%H%M%S"),
            "vistra_version": vistra.__version__,
            "dataset_meta": _plain(getattr(dataset, "metainfo", None)),
        }

    def load_checkpoint(self, source: str, strict: bool = False) -> ckpt_io.LoadReport:
        """Load weights only (``load_from``/``test``), reporting what did not fit."""
        checkpoint = ckpt_io.load_checkpoint_file(
            source, allow_unsafe=bool(self.cfg.get("allow_unsafe_load"))
        )
        self.call_hook("after_load_checkpoint", checkpoint=checkpoint)
        report = ckpt_io.load_state_dict(
            unwrap(self.model),
            ckpt_io.extract_state_dict(checkpoint),
            source=str(source),
            revise=ckpt_io.DDP_PREFIX,
        )
        if strict and report.unset:
            logger.error("%s", report.table())
            raise ckpt_io.CheckpointError(
                f"{source} leaves {len(report.unset)} model weights unset ({', '.join(report.unset[:3])}...). "
                "If that is intended, pass --cfg-options test_strict_load=False"
            )
        logger.log(
            logging.WARNING if report.unset or report.unexpected else logging.INFO,
            "%s",
            report.table(),
        )
        return report

    def _resume_source(self) -> str | None:
        """The checkpoint to resume from: ``--resume PATH``, or the newest in the work dir."""
        resume, load_from = self.cfg.get("resume", False), self.cfg.get("load_from")
        if not resume and slurm.restart_count() > 0:
            logger.warning(
                "restart %d of this job (requeued or restarted by its launcher): resuming from "
                "the latest checkpoint in %s",
                slurm.restart_count(),
                self.work_dir,
            )
            resume, load_from = "auto", None
        if not resume:
            return None
        if isinstance(resume, str) and resume != "auto":
            return resume
        if load_from:
            return str(load_from)
        latest = ckpt_io.find_latest_checkpoint(self.work_dir)
        if latest is None:
            logger.warning(
                "resume: no checkpoint found in %s; training starts from scratch", self.work_dir
            )
            return None
        return str(latest)

    def _adopt_seed(self, checkpoint: dict[str, Any]) -> None:
        """Continue with the seed the checkpointed run used, so data order and augmentation
        continue exactly; a different explicit seed is honoured with a warning."""
        saved = checkpoint.get("meta", {}).get("seed")
        randomness = dict(self.cfg.get("randomness") or {})
        if saved is None or saved == self.seed:
            return
        if randomness.get("seed") is not None:
            logger.warning(
                "resuming with seed %d, but the checkpoint was trained with seed %d",
                self.seed,
                saved,
            )
            return
        self.seed = int(saved)
        # the environment block above shows the seed drawn before the checkpoint was read
        logger.info("seed %d (the checkpoint's, so data order and augmentation continue)", saved)
        rank_seed = self.seed + self.rank if randomness.get("diff_rank_seed", False) else self.seed
        B.set_random_seed(rank_seed, bool(randomness.get("deterministic", False)))

    def resume(self, path: str, checkpoint: dict[str, Any] | None = None) -> None:
        """Restore everything needed to continue exactly where ``path`` was written."""
        self.resuming = True
        if checkpoint is None:
            checkpoint = ckpt_io.load_checkpoint_file(
                path, allow_unsafe=bool(self.cfg.get("allow_unsafe_load"))
            )
        self.call_hook("after_load_checkpoint", checkpoint=checkpoint)
        _warn_config_changes(checkpoint.get("meta", {}).get("cfg_flat"), _flatten(self.cfg), path)
        unwrap(self.model).load_state_dict(
            ckpt_io.revise_keys(checkpoint["state_dict"]), strict=True
        )
        if "optimizer" in checkpoint:
            self.optim_wrapper.load_state_dict(checkpoint["optimizer"])
        else:
            logger.warning("%s has no optimizer state; the optimizer starts fresh", path)
        if ckpt_io.is_mmengine_checkpoint(checkpoint):  # maps what it can, logs the rest
            ckpt_io.mmengine_compat.restore_state(
                checkpoint, self.param_schedulers, self.message_hub, path
            )
        else:
            states = checkpoint.get("param_schedulers", [])
            for scheduler, state in zip(self.param_schedulers, states):
                scheduler.load_state_dict(state)
            self.message_hub.load_state_dict(checkpoint.get("message_hub", {}))
        meta = checkpoint.get("meta", {})
        loop_state = checkpoint.get("loop_state") or {
            "epoch": meta.get("epoch", 0),
            "iter": meta.get("iter", 0),
        }
        self.train_loop.load_loop_state(loop_state)
        self._loaded_rng = loop_state.get("rng")
        logger.info(
            "resumed from %s: epoch %d, iter %d, %d batches into the data epoch",
            path,
            self.epoch,
            self.iter,
            loop_state.get("batch_in_epoch", 0),
        )

    # ------------------------------------------------------------------ stopping
    def _stop_signals(self) -> Any:
        runner = self

        class _Handler:
            def __enter__(self) -> None:
                self.previous = {}
                for sig in (signal.SIGTERM, signal.SIGUSR1):
                    try:
                        self.previous[sig] = signal.signal(sig, self.handle)
                    except ValueError:  # not the main thread
                        pass

            def handle(self, signum: int, frame: Any) -> None:
                runner._stop_signal = signum
                logger.warning(
                    "received %s: saving a checkpoint at the end of this step",
                    signal.Signals(signum).name,
                )

            def __exit__(self, *exc: Any) -> None:
                for sig, handler in self.previous.items():
                    signal.signal(sig, handler)

        return _Handler()

    def stop_requested(self) -> bool:
        """Whether any rank got SIGTERM/SIGUSR1; every rank calls this at each step boundary,
        so all of them stop after the same step. USR1 (a preemption warning) wins over TERM
        because it also requeues the job."""
        code = {None: 0, signal.SIGTERM: 1, signal.SIGUSR1: 2}.get(self._stop_signal, 1)
        if torch_dist.is_available() and torch_dist.is_initialized():
            flag = torch.tensor(
                [code], device=self.device if self.dist.backend == "nccl" else "cpu"
            )
            torch_dist.all_reduce(flag, op=torch_dist.ReduceOp.MAX)
            code = int(flag.item())
        if code and self._stop_signal is None:
            self._stop_signal = signal.SIGUSR1 if code == 2 else signal.SIGTERM
        return code > 0

    def save_stop_checkpoint(self) -> None:
        path = self.save_checkpoint(
            self.work_dir, f"iter_{self.train_loop.loop_state()['iter']}.pth"
        )
        if path is None:
            return
        name = signal.Signals(self._stop_signal or signal.SIGTERM).name
        logger.warning(
            "stopped by %s after iteration %d; checkpoint %s; resume with --resume",
            name,
            self.iter,
            path,
        )
        if self._stop_signal == signal.SIGUSR1 and os.environ.get("SLURM_JOB_ID"):
            slurm.requeue_this_job()

    def _start_watchdog(self, kind: str) -> Watchdog | NullWatchdog:
        if self.world_size < 2:
            return NullWatchdog()
        dist_cfg = dict((self.cfg.get("env_cfg") or {}).get("dist_cfg") or {})
        timeout = dist_cfg.get("watchdog_timeout", DEFAULT_TIMEOUT)
        if not timeout:
            return NullWatchdog()
        prefix = f"vistra/watchdog/{self.timestamp}/{kind}"
        return Watchdog(self.rank, self.world_size, float(timeout), prefix).start()

    def draw_curves(self) -> None:
        from vistra.visualization import plot_training_curves

        scalars = Path(self.log_dir) / "vis_data" / "scalars.json"
        if scalars.is_file():
            try:
                plot_training_curves(scalars, scalars.with_name("curves.png"))
            except Exception as exc:  # a plot must never stop training
                logger.warning("could not draw training curves: %s", exc)


# ---------------------------------------------------------------------------- helpers
_TRIPLES = {
    "train": ("train_dataloader", "train_cfg", "optim_wrapper"),
    "val": ("val_dataloader", "val_cfg", "val_evaluator"),
    "test": ("test_dataloader", "test_cfg", "test_evaluator"),
}


def _log_legacy_notes(cfg: Any) -> None:
    """What the 0.x -> 1.x translation did: the summary, then one line per change."""
    for line in getattr(cfg, "legacy_notes", ()):
        logger.log(logging.WARNING if line.startswith("dropped") else logging.INFO, "%s", line)


def _model_wrapper_cfg(cfg: Any) -> dict:
    """``model_wrapper_cfg``, with MMEngine's top-level ``find_unused_parameters`` as a default."""
    wrapper = dict(cfg.get("model_wrapper_cfg") or {})
    if cfg.get("find_unused_parameters") is not None:
        wrapper.setdefault("find_unused_parameters", bool(cfg["find_unused_parameters"]))
    return wrapper


def _check_triples(cfg: Any) -> None:
    for name, keys in _TRIPLES.items():
        present = [k for k in keys if cfg.get(k) is not None]
        if present and len(present) != len(keys):
            missing = [k for k in keys if k not in present]
            raise RegistryError(
                f"{name}: {', '.join(present)} set but {', '.join(missing)} not; "
                f"set all of {', '.join(keys)} or none"
            )


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


def _auto_scale_lr(cfg: Any, optim_cfg: dict, batch_size: int, world_size: int) -> None:
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


def _broadcast_weights(model: torch.nn.Module) -> None:
    if torch_dist.is_available() and torch_dist.is_initialized():
        for tensor in unwrap(model).state_dict().values():
            torch_dist.broadcast(tensor, src=0)


def _set_dataset_meta(runner: Runner, loader: Any) -> None:
    meta = getattr(loader.dataset, "metainfo", None)
    if meta is not None:
        runner.visualizer.dataset_meta = meta
        unwrap(runner.model).dataset_meta = meta


def _dump_config(cfg: Any, work_dir: Path) -> None:
    name = Path(cfg.filename).stem if getattr(cfg, "filename", None) else "config"
    cfg.dump(str(work_dir / f"{name}.py"))


def _pretty(cfg: Any) -> str:
    return cfg.pretty_text if hasattr(cfg, "pretty_text") else repr(cfg)


def _flatten(cfg: Any, prefix: str = "") -> dict[str, str]:
    data = cfg.to_dict() if hasattr(cfg, "to_dict") else cfg
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = repr(value)
    return out


def _warn_config_changes(old: dict[str, str] | None, new: dict[str, str], path: str) -> None:
    if not old:
        return
    changed = sorted(
        k
        for k in set(old) | set(new)
        if old.get(k) != new.get(k) and not k.startswith(_IGNORED_CHANGES)
    )
    if changed:
        lines = [f"  {k}: {old.get(k, '<unset>')} -> {new.get(k, '<unset>')}" for k in changed[:20]]
        logger.warning("config changed since %s was written:\n%s", path, "\n".join(lines))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _environment_report(dist_info: DistInfo, seed: int, cfg: Any) -> str:
    import numpy
    import torchvision

    rows = [
        ("sys.platform", sys.platform),
        ("Python", sys.version.replace("\n", "")),
        ("machine", platform.machine()),
        ("PyTorch", torch.__version__),
        ("TorchVision", torchvision.__version__),
        ("NumPy", numpy.__version__),
        ("vistra", vistra.__version__),
        ("CUDA available", torch.cuda.is_available()),
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
