"""Run logging: the text logger, the per-run scalar store and OpenMMLab's log line format.

A log line reads exactly as MMEngine's, e.g.::

    2024/05/01 10:00:00 - vistra - INFO - Epoch(train)  [1][ 10/391]  lr: 1.0000e-01  eta: 0:10:00  time: 0.1000  data_time: 0.0100  memory: 0  loss: 2.3026

:class:`MessageHub` is the runner's own store of recent scalar values (smoothed over a
window) and of runtime info that checkpoints carry (best scores); it is an attribute of
the runner, not a global.
"""

from __future__ import annotations

import datetime
import logging
import sys
from collections import deque
from pathlib import Path
from typing import Any

from vistra.registry import LOG_PROCESSORS

LOGGER_NAME = "vistra"


# ----------------------------------------------------------------------------- logger
class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is at the time, so that lines print above a
    progress bar that redirects stdout instead of tearing through it."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:  # noqa: ANN001
        pass


def setup_logger(
    log_file: str | Path | None, rank: int, level: str | int = "INFO"
) -> logging.Logger:
    """The 'vistra' logger: console on rank 0 (warnings and above elsewhere), file on rank 0."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level if isinstance(level, int) else level.upper())
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    fmt = logging.Formatter(
        "%(asctime)s - %(name)s - %(levelname)s - %(message)s", "%Y/%m/%d %H:%M:%S"
    )
    console = _StdoutHandler()
    console.setFormatter(fmt)
    console.setLevel(logger.level if rank == 0 else logging.WARNING)
    logger.addHandler(console)
    if log_file is not None and rank == 0:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file, mode="a")
        file_handler.setFormatter(fmt)
        logger.addHandler(file_handler)
    return logger


def close_logger() -> None:
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        if isinstance(handler, logging.FileHandler):
            logger.removeHandler(handler)
            handler.close()


# ----------------------------------------------------------------------------- scalars
class HistoryBuffer:
    """The recent values of one scalar, with MMEngine's reductions."""

    def __init__(self, max_length: int = 1_000_000) -> None:
        self._values: deque[float] = deque(maxlen=max_length)
        self._counts: deque[int] = deque(maxlen=max_length)

    def update(self, value: float, count: int = 1) -> None:
        self._values.append(float(value))
        self._counts.append(int(count))

    def current(self) -> float:
        if not self._values:
            raise ValueError("no value recorded yet")
        return self._values[-1]

    def mean(self, window: int | None = None) -> float:
        values = list(self._values)[-window:] if window else list(self._values)
        return sum(values) / len(values)

    def max(self, window: int | None = None) -> float:
        return max(list(self._values)[-window:] if window else self._values)

    def min(self, window: int | None = None) -> float:
        return min(list(self._values)[-window:] if window else self._values)

    def __len__(self) -> int:
        return len(self._values)


class MessageHub:
    """Scalars logged during the run, and runtime info to carry across resumes."""

    def __init__(self) -> None:
        self.log_scalars: dict[str, HistoryBuffer] = {}
        self.runtime_info: dict[str, Any] = {}

    def update_scalar(self, key: str, value: float, count: int = 1) -> None:
        self.log_scalars.setdefault(key, HistoryBuffer()).update(value, count)

    def update_scalars(self, values: dict[str, float], prefix: str = "") -> None:
        for key, value in values.items():
            self.update_scalar(prefix + key, value)

    def get_scalar(self, key: str) -> HistoryBuffer:
        if key not in self.log_scalars:
            raise KeyError(f"no scalar {key!r} logged; logged: {sorted(self.log_scalars)}")
        return self.log_scalars[key]

    def update_info(self, key: str, value: Any) -> None:
        self.runtime_info[key] = value

    def get_info(self, key: str, default: Any = None) -> Any:
        return self.runtime_info.get(key, default)

    def state_dict(self) -> dict[str, Any]:
        # Plain values only, so checkpoints load with weights_only=True.
        return {"runtime_info": {k: v for k, v in self.runtime_info.items() if _is_plain(v)}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.runtime_info.update(state.get("runtime_info", {}))


def _is_plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


# ----------------------------------------------------------------------------- log lines
@LOG_PROCESSORS.register_module()
class LogProcessor:
    """Formats train/val/test log lines and the scalar dicts written to ``scalars.json``.

    Arguments as MMEngine's ``LogProcessor``: training scalars are averaged over the last
    ``window_size`` iterations (``'global'`` averages over the whole run);
    ``custom_cfg`` entries ``dict(data_src, method='mean'|'max'|'min'|'current',
    window_size, log_name)`` add or change a statistic.
    """

    def __init__(
        self,
        window_size: int | str = 10,
        by_epoch: bool = True,
        custom_cfg: list[dict] | None = None,
        num_digits: int = 4,
        log_with_hierarchy: bool = False,
        mean_pattern: str = r".*(loss|time|data_time|grad_norm).*",
    ) -> None:
        self.window_size = window_size
        self.by_epoch = by_epoch
        self.custom_cfg = list(custom_cfg or [])
        self.num_digits = num_digits
        self.log_with_hierarchy = log_with_hierarchy
        self.mean_pattern = mean_pattern

    def _window(self, window: int | str | None, iters_in_epoch: int) -> int | None:
        window = self.window_size if window is None else window
        if window == "global":
            return None
        if window == "epoch":
            return max(1, iters_in_epoch)
        return int(window)

    def train_tags(self, hub: MessageHub, iters_in_epoch: int) -> dict[str, float]:
        """Smoothed training scalars: lr (current), losses and times (window mean)."""
        import re

        tags: dict[str, float] = {}
        window = self._window(None, iters_in_epoch)
        for key, buf in hub.log_scalars.items():
            if not key.startswith("train/"):
                continue
            name = key[len("train/") :]
            use_mean = re.fullmatch(self.mean_pattern, name) is not None
            tags[name] = buf.mean(window) if use_mean else buf.current()
        for item in self.custom_cfg:
            src = item["data_src"]
            buf = hub.log_scalars.get(f"train/{src}")
            if buf is None:
                continue
            method = item.get("method_name", item.get("method", "mean"))
            win = self._window(item.get("window_size"), iters_in_epoch)
            value = buf.current() if method == "current" else getattr(buf, method)(win)
            tags[item.get("log_name", src)] = value
        return tags

    def format_train(
        self,
        tags: dict[str, float],
        *,
        epoch: int,
        batch_idx: int,
        epoch_len: int,
        iteration: int,
        max_epochs: int,
        max_iters: int,
        eta_s: float | None,
        memory_mb: int | None,
    ) -> str:
        d = self.num_digits
        if self.by_epoch:
            cur = str(batch_idx + 1).rjust(len(str(epoch_len)))
            epoch_str = f"[{epoch + 1}]".rjust(len(str(max_epochs)) + 3, " ")
            head = f"Epoch(train){epoch_str}[{cur}/{epoch_len}]  "
        else:
            cur = str(iteration + 1).rjust(len(str(max_iters)))
            head = f"Iter(train) [{cur}/{max_iters}]  "
        items = [f"{k}: {v:.{d}e}" for k, v in tags.items() if k.endswith("lr")]
        text = head + "  ".join(items)
        if eta_s is not None:
            text += f"  eta: {datetime.timedelta(seconds=int(eta_s))}  "
        if "time" in tags:
            text += f"time: {tags['time']:.{d}f}  data_time: {tags.get('data_time', 0.0):.{d}f}  "
        if memory_mb is not None:
            text += f"memory: {memory_mb}  "
        rest = [
            f"{k}: {_fmt(v, d)}"
            for k, v in tags.items()
            if not k.endswith("lr") and k not in ("time", "data_time")
        ]
        return text + "  ".join(rest)

    def format_eval(
        self,
        mode: str,
        metrics: dict[str, Any],
        *,
        epoch: int | None,
        batch_idx: int,
        epoch_len: int,
        extra: dict[str, float] | None = None,
    ) -> str:
        d = self.num_digits
        cur = str(batch_idx + 1).rjust(len(str(epoch_len)))
        if self.by_epoch and epoch is not None and mode == "val":
            head = f"Epoch({mode}) [{epoch}][{cur}/{epoch_len}]    "
        elif self.by_epoch:
            head = f"Epoch({mode}) [{cur}/{epoch_len}]    "
        else:
            head = f"Iter({mode}) [{cur}/{epoch_len}]    "
        items = [f"{k}: {_fmt(v, d)}" for k, v in metrics.items() if _is_scalar(v)]
        items += [f"{k}: {_fmt(v, d)}" for k, v in (extra or {}).items()]
        return head + "  ".join(items)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fmt(value: Any, digits: int) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)
