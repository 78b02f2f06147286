"""The Runner: one run's lifecycle, from a config to trained weights or test metrics.

``Runner.from_config(cfg)`` reads the OpenMMLab keys (``model``, ``*_dataloader``,
``*_cfg``, ``optim_wrapper``, ``param_scheduler``, ``*_evaluator``, ``default_hooks``,
``custom_hooks``, ``env_cfg``, ``randomness``, ``load_from``, ``resume``, ...); what it does
before the Runner exists (process group, seed, log, work dir, model) is in ``run_setup.py``.

``train()``: find a resume point, build the data, optimizer, schedulers and loops, call
``before_run``, restore the checkpoint (``resume.py``) or load ``load_from``, run the train
loop with stop signals and the rank watchdog armed (``stopping.py``), call ``after_run``.
``test()``: build the test loop, load the checkpoint strictly, run it. Training parts are
built only by ``train()`` and test parts only by ``test()``, so testing never touches the
training data. The step itself lives in ``loops.py``.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch
import torch.distributed as torch_dist

from vistra import checkpoint as ckpt_io
from vistra.dist import DistInfo, place_model, unwrap
from vistra.dist.watchdog import NullWatchdog, Watchdog
from vistra.engine import build as B
from vistra.engine import stopping
from vistra.engine.accelerate import apply_speed_options
from vistra.engine.logging import LogProcessor, MessageHub
from vistra.engine.resume import adopt_seed, checkpoint_meta, restore_checkpoint, resume_source
from vistra.engine.run_setup import auto_scale_lr, model_wrapper_cfg, prepare_run
from vistra.registry import LOG_PROCESSORS, RUNNERS, VISUALIZERS, RegistryError, default_scope

logger = logging.getLogger("vistra")


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
        # as MMEngine's Runner, the backends record the config (trackers
        # show it beside the run; the local backend writes vis_data/config.py)
        if hasattr(cfg, "pretty_text"):  # a Config (the API also takes plain dicts)
            self.visualizer.add_config(cfg)
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
    def from_config(
        cls, cfg: Any, dist_info: DistInfo | None = None, purpose: str | None = "train"
    ) -> Runner:
        """Validate the config for ``purpose`` (``'train'``: the train and val sections,
        ``'test'``, ``'all'``; None: not at all), join the process group, seed, start the log
        and build the model (``run_setup``); the data, optimizer and loops wait for
        ``train()``/``test()``."""
        return cls(*prepare_run(cfg, dist_info, purpose))

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
        apply_speed_options(self.model, self.cfg)  # compile, channels_last: before DDP
        self.model = place_model(
            self.model, self.dist, model_wrapper_cfg(self.cfg), self.cfg.get("sync_bn")
        )
        _broadcast_weights(self.model)
        optim_cfg = copy.deepcopy(dict(self.cfg["optim_wrapper"]))
        auto_scale_lr(self.cfg, optim_cfg, train_loader.batch_size, self.dist.world_size)
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
            try:
                return self._train()
            finally:
                self._stop_workers()

    def _train(self) -> torch.nn.Module:
        resume_from = resume_source(self.cfg, self.work_dir)
        checkpoint = None
        if resume_from is not None:
            checkpoint = self._read_checkpoint(resume_from)
            # before the dataloaders derive their seeds from it
            self.seed = adopt_seed(self.cfg, self.seed, self.rank, checkpoint)
        self._build_training()
        self.call_hook("before_run")
        if checkpoint is not None:
            self.resume(str(resume_from), checkpoint)
        elif self.cfg.get("load_from") and not self.cfg.get("resume"):
            self.load_checkpoint(self.cfg["load_from"], strict=False)
        self.optim_wrapper.initialize_count_status(
            self.model, self.train_loop.iter, self.train_loop.max_iters
        )
        for module in self.model.modules():  # e.g. CosineEMA anneals over the whole run
            if hasattr(module, "set_total_steps"):
                module.set_total_steps(self.train_loop.max_iters)
        if self._loaded_rng is not None:  # last, so nothing after it draws from the RNGs
            B.set_rng_state(self._loaded_rng[min(self.rank, len(self._loaded_rng) - 1)])
        self.watchdog = stopping.start_watchdog(self.cfg, self.dist, self.timestamp, "train")
        with stopping.StopSignals(self):
            model = self.train_loop.run()
        self.watchdog.stop()
        self.call_hook("after_run")
        return model

    def test(self) -> dict[str, Any]:
        with default_scope(self.cfg.get("default_scope")):
            try:
                return self._test()
            finally:
                self._stop_workers()

    def _stop_workers(self) -> None:
        """End the loops' data-loader workers when ``train()``/``test()`` returns or fails,
        instead of whenever the garbage collector reaches the runner (see
        :func:`~vistra.engine.build.stop_loader_workers`)."""
        for loop in (self.train_loop, self.val_loop, self.test_loop):
            if loop is not None:
                B.stop_loader_workers(loop.dataloader, getattr(loop, "_live_iterator", None))

    def _test(self) -> dict[str, Any]:
        if self.cfg.get("test_dataloader") is None:
            raise RegistryError("this config has no test_dataloader/test_cfg/test_evaluator")
        apply_speed_options(self.model, self.cfg)
        self.model = place_model(self.model, self.dist, model_wrapper_cfg(self.cfg))
        self.test_loop = self._build_eval("test")
        _set_dataset_meta(self, self.test_loop.dataloader)
        self.call_hook("before_run")
        load_from = self.cfg.get("load_from")
        if not load_from:
            raise ckpt_io.CheckpointError(
                "test needs a checkpoint: pass CHECKPOINT or set load_from"
            )
        self.load_checkpoint(load_from, strict=bool(self.cfg.get("test_strict_load", True)))
        self.watchdog = stopping.start_watchdog(self.cfg, self.dist, self.timestamp, "test")
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
            "meta": checkpoint_meta(self, loop_state),
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

    def load_checkpoint(self, source: str, strict: bool = False) -> ckpt_io.LoadReport:
        """Load weights only (``load_from``/``test``), reporting what did not fit."""
        checkpoint = self._read_checkpoint(source)
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

    def resume(self, path: str, checkpoint: dict[str, Any] | None = None) -> None:
        """Restore everything needed to continue exactly where ``path`` was written."""
        self.resuming = True
        if checkpoint is None:
            checkpoint = self._read_checkpoint(path)
        self.call_hook("after_load_checkpoint", checkpoint=checkpoint)
        self._loaded_rng = restore_checkpoint(self, path, checkpoint)

    def _read_checkpoint(self, source: str) -> dict[str, Any]:
        return ckpt_io.load_checkpoint_file(
            source, allow_unsafe=bool(self.cfg.get("allow_unsafe_load"))
        )

    # ------------------------------------------------------------------ stopping
    def stop_requested(self) -> bool:
        """Whether any rank got SIGTERM/SIGUSR1; every rank calls this at each step
        boundary, so all of them stop after the same step."""
        self._stop_signal = stopping.agreed_stop_signal(self._stop_signal, self.dist)
        return self._stop_signal is not None

    def save_stop_checkpoint(self) -> None:
        stopping.save_stop_checkpoint(self)

    # ------------------------------------------------------------------ curves
    def draw_curves(self) -> None:
        from vistra.visualization import plot_training_curves

        scalars = Path(self.log_dir) / "vis_data" / "scalars.json"
        if scalars.is_file():
            try:
                plot_training_curves(scalars, scalars.with_name("curves.png"))
            except Exception as exc:  # a plot must never stop training
                logger.warning("could not draw training curves: %s", exc)


# ---------------------------------------------------------------------------- helpers
def _broadcast_weights(model: torch.nn.Module) -> None:
    """Rank 0's initial weights on every rank: each rank ran ``init_weights`` on its own."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        for tensor in unwrap(model).state_dict().values():
            torch_dist.broadcast(tensor, src=0)


def _set_dataset_meta(runner: Runner, loader: Any) -> None:
    meta = getattr(loader.dataset, "metainfo", None)
    if meta is not None:
        runner.visualizer.dataset_meta = meta
        unwrap(runner.model).dataset_meta = meta
