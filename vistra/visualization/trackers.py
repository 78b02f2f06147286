"""Experiment trackers as visualization backends: Weights & Biases and MLflow.

Registered under MMEngine's names and constructor arguments (``WandbVisBackend``,
``MLflowVisBackend``), so a config's ``visualizer.vis_backends`` entry carries over. They are
off unless a config names them; the library is imported on the first write, never at
import time. A config that names a tracker whose package is not installed fails in the
pre-flight check, before anything is trained or written (:meth:`missing_requirement`).

Differences from MMEngine, on purpose: ``WandbVisBackend`` uploads the code only when
``log_code_name`` is given (MMEngine always snapshots every ``.py`` under the current
directory), and ``MLflowVisBackend`` starts its run explicitly and skips (with a warning)
values that are not numbers instead of failing in mlflow.
"""

from __future__ import annotations

import importlib.util
import numbers
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vistra.registry import VISBACKENDS
from vistra.visualization.backends import BaseVisBackend, _check_image, config_text


class _TrackerBackend(BaseVisBackend):
    """A backend over an optional package: ``module`` to import, ``package`` to install."""

    module: str = ""
    package: str = ""

    @classmethod
    def missing_requirement(cls) -> str | None:
        """One line saying what to install when the package is absent, else None."""
        try:
            found = importlib.util.find_spec(cls.module) is not None
        except (ImportError, ValueError):
            found = False
        if found:
            return None
        return (
            f"{cls.__name__} needs the {cls.module!r} package, which is not installed: "
            f"pip install {cls.package} (or remove it from visualizer.vis_backends)"
        )

    def _import(self) -> Any:
        message = self.missing_requirement()
        if message is not None:
            raise ModuleNotFoundError(message)
        return importlib.import_module(self.module)


def _number(name: str, value: Any) -> float | None:
    """``value`` as a float, or None (with a warning) when it is not one number."""
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic)):
        size = value.numel() if isinstance(value, torch.Tensor) else value.size
        if size != 1:
            warnings.warn(f"scalar {name!r} has {size} elements; skipped", stacklevel=3)
            return None
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        warnings.warn(f"scalar {name!r} is a {type(value).__name__}; skipped", stacklevel=3)
        return None
    return float(value)


def _plain(value: Any) -> Any:
    """A config value as what trackers store: dicts, lists and scalars; the rest as text."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _config_dict(config: Any) -> dict:
    to_dict = getattr(config, "to_dict", None)
    if callable(to_dict):
        return _plain(to_dict())
    if isinstance(config, Mapping):
        return _plain(config)
    return {"config_text": config_text(config)}


# ----------------------------------------------------------------------------- wandb
@VISBACKENDS.register_module()
class WandbVisBackend(_TrackerBackend):
    """Logs to Weights & Biases; ``init_kwargs`` go to ``wandb.init`` (``dir`` defaults to
    ``save_dir``; ``mode='offline'`` or ``WANDB_MODE=offline`` for no network).

    ``define_metric_cfg``: ``{metric: summary}`` or a list of ``wandb.define_metric``
    keyword dicts. ``commit``: passed to every ``wandb.log``. ``watch_kwargs``: for
    ``wandb.watch`` in :meth:`add_graph`. As MMEngine, the ``step`` arguments are not
    passed on (train steps count iterations and val steps epochs, and wandb requires
    one increasing step): the logged dicts carry ``iter``/``epoch`` themselves.
    """

    module = package = "wandb"

    def __init__(
        self,
        save_dir: str,
        init_kwargs: dict | None = None,
        define_metric_cfg: dict | list | None = None,
        commit: bool | None = True,
        log_code_name: str | None = None,
        watch_kwargs: dict | None = None,
    ) -> None:
        super().__init__(save_dir)
        if define_metric_cfg is not None and not isinstance(define_metric_cfg, (dict, list)):
            raise TypeError(
                "define_metric_cfg must be a dict {metric: summary} or a list of "
                f"define_metric arguments, got {type(define_metric_cfg).__name__}"
            )
        self._init_kwargs = dict(init_kwargs or {})
        self._define_metric_cfg = define_metric_cfg
        self._commit = commit
        self._log_code_name = log_code_name
        self._watch_kwargs = dict(watch_kwargs or {})
        self._wandb: Any = None

    @property
    def experiment(self) -> Any:
        """The ``wandb`` module, its run started: for anything this class does not wrap."""
        if self._wandb is None:
            wandb = self._import()
            os.makedirs(self._save_dir, exist_ok=True)
            wandb.init(**{"dir": self._save_dir, **self._init_kwargs})
            metrics = self._define_metric_cfg
            if isinstance(metrics, dict):
                for metric, summary in metrics.items():
                    wandb.define_metric(metric, summary=summary)
            for metric_cfg in metrics if isinstance(metrics, list) else []:
                wandb.define_metric(**metric_cfg)
            self._wandb = wandb
        return self._wandb

    def add_config(self, config: Any, **kwargs: Any) -> None:
        wandb = self.experiment
        allow = bool(self._init_kwargs.get("allow_val_change", False))
        wandb.config.update(_config_dict(config), allow_val_change=allow)
        if self._log_code_name is not None:
            wandb.run.log_code(name=self._log_code_name)

    def add_graph(self, model: torch.nn.Module, data_batch: Any = None, **kwargs: Any) -> None:
        self.experiment.watch(model, **self._watch_kwargs)

    def add_image(self, name: str, image: np.ndarray, step: int = 0, **kwargs: Any) -> None:
        wandb = self.experiment
        wandb.log({name: wandb.Image(_check_image(image))}, commit=self._commit)

    def add_scalar(self, name: str, value: Any, step: int = 0, **kwargs: Any) -> None:
        self.add_scalars({name: value}, step)

    def add_scalars(
        self, scalar_dict: dict, step: int = 0, file_path: str | None = None, **kwargs: Any
    ) -> None:
        values = {k: v for k, v in ((k, _number(k, v)) for k, v in scalar_dict.items())}
        values = {k: v for k, v in values.items() if v is not None}
        if values:
            self.experiment.log(values, commit=self._commit)

    def close(self) -> None:
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


# ----------------------------------------------------------------------------- mlflow
@VISBACKENDS.register_module()
class MLflowVisBackend(_TrackerBackend):
    """Logs to MLflow: a run in experiment ``exp_name`` (default ``'Default'``) of
    ``tracking_uri`` (default: a file store in ``save_dir``).

    :meth:`add_config` logs the flattened config as params (``tracked_config_keys``: only
    these top-level keys) and the config text as ``config.py``; :meth:`close` uploads the
    work dir's files ending in ``artifact_suffix`` (logs, scalars, the config) and ends
    the run.
    """

    module, package = "mlflow", "mlflow"
    MAX_PARAM = 6000  # characters mlflow accepts in one param value

    def __init__(
        self,
        save_dir: str,
        exp_name: str | None = None,
        run_name: str | None = None,
        tags: dict | None = None,
        params: dict | None = None,
        tracking_uri: str | None = None,
        artifact_suffix: tuple[str, ...] | str = (".json", ".log", ".py", "yaml"),
        tracked_config_keys: list | tuple | dict | None = None,
        artifact_location: str | None = None,
    ) -> None:
        super().__init__(save_dir)
        self._exp_name = exp_name or "Default"
        self._run_name, self._tags, self._params = run_name, tags, params
        self._tracking_uri = tracking_uri
        suffixes = (artifact_suffix,) if isinstance(artifact_suffix, str) else artifact_suffix
        self._artifact_suffix = tuple(suffixes)
        self._tracked_config_keys = tracked_config_keys
        self._artifact_location = artifact_location
        self._work_dir: str | None = None
        self._mlflow: Any = None

    @property
    def experiment(self) -> Any:
        """The ``mlflow`` module, with this backend's run active."""
        if self._mlflow is None:
            mlflow = self._import()
            os.makedirs(self._save_dir, exist_ok=True)
            uri = self._tracking_uri or Path(self._save_dir).resolve().as_uri()
            if uri.startswith("file:") or "://" not in uri:
                # MLflow 3 refuses its file store unless told; a config that points at one
                # (MMEngine's default, in save_dir) has told us
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            mlflow.set_tracking_uri(uri)
            if mlflow.get_experiment_by_name(self._exp_name) is None:
                mlflow.create_experiment(self._exp_name, artifact_location=self._artifact_location)
            mlflow.set_experiment(self._exp_name)
            mlflow.start_run(run_name=self._run_name)
            if self._tags:
                mlflow.set_tags(self._tags)
            if self._params:
                mlflow.log_params(self._flatten(self._params))
            self._mlflow = mlflow
        return self._mlflow

    def add_config(self, config: Any, **kwargs: Any) -> None:
        mlflow = self.experiment
        values = _config_dict(config)
        self._work_dir = values.get("work_dir") if isinstance(values.get("work_dir"), str) else None
        if self._tracked_config_keys is not None:
            values = {k: values[k] for k in self._tracked_config_keys if k in values}
        mlflow.log_params(self._flatten(values))
        text = repr(dict(config)) if isinstance(config, Mapping) else config_text(config)
        mlflow.log_text(text, "config.py")

    def add_image(self, name: str, image: np.ndarray, step: int = 0, **kwargs: Any) -> None:
        """``image`` (RGB) as the artifact ``name`` if it ends in an image suffix, else
        ``{name}_{step}.png`` (the local backend's file name)."""
        suffix = Path(name).suffix.lower()
        artifact = name if suffix in (".png", ".jpg", ".jpeg") else f"{name}_{step}.png"
        self.experiment.log_image(_check_image(image), artifact_file=artifact)

    def add_scalar(self, name: str, value: Any, step: int = 0, **kwargs: Any) -> None:
        self.add_scalars({name: value}, step)

    def add_scalars(
        self, scalar_dict: dict, step: int = 0, file_path: str | None = None, **kwargs: Any
    ) -> None:
        if "step" in scalar_dict:
            raise ValueError("pass the step as add_scalars(step=...), not as a 'step' key")
        values = {k: _number(k, v) for k, v in scalar_dict.items()}
        values = {k: v for k, v in values.items() if v is not None}
        if values:
            self.experiment.log_metrics(values, step=int(step))

    def close(self) -> None:
        if self._mlflow is None:
            return
        if self._work_dir and os.path.isdir(self._work_dir):
            store = self._file_store()
            for path in sorted(Path(self._work_dir).rglob("*")):
                if store is not None and path.is_relative_to(store):
                    continue  # the tracking store's own files, when it is in the work dir
                if path.is_file() and path.name.endswith(self._artifact_suffix):
                    relative = path.parent.relative_to(self._work_dir).as_posix()
                    self._mlflow.log_artifact(str(path), None if relative == "." else relative)
        self._mlflow.end_run()
        self._mlflow = None

    def _file_store(self) -> Path | None:
        """The folder of a ``file:`` tracking store, else None."""
        uri = self._mlflow.get_tracking_uri()
        if not uri.startswith("file:"):
            return None
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(uri).path)).resolve()

    def _flatten(self, values: Mapping, prefix: str = "") -> dict[str, str]:
        """``{'model.backbone.depth': '18', 'param_scheduler.0.type': 'LinearLR', ...}``;
        values as text, cut to what mlflow accepts."""
        flat: dict[str, str] = {}
        for key, value in values.items():
            name = f"{prefix}{key}"
            if isinstance(value, Mapping):
                flat.update(self._flatten(value, f"{name}."))
            elif isinstance(value, list) and any(isinstance(v, Mapping) for v in value):
                for i, item in enumerate(value):
                    if isinstance(item, Mapping):
                        flat.update(self._flatten(item, f"{name}.{i}."))
                    else:
                        flat[f"{name}.{i}"] = str(item)[: self.MAX_PARAM]
            else:
                flat[name] = str(value)[: self.MAX_PARAM]
        return flat
