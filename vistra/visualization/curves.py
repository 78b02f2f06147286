"""Training curves from a run's ``scalars.json``: losses, learning rate and validation metrics.

Drawn with matplotlib's Agg canvas directly (no pyplot), so it never needs a display and
never disturbs a figure the user has open; cheap enough to redraw after every validation.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

META_KEYS = frozenset({"step", "epoch", "iter", "time", "data_time", "memory"})
"""Keys of scalars.json lines that describe the step rather than measure the model."""

SMOOTH_ABOVE = 50
"""Loss curves with more points than this get an exponentially smoothed line on top."""


@dataclass
class Series:
    """One named curve: y ``values`` at x ``steps``."""

    steps: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


@dataclass
class ScalarLog:
    """The curves of a run, split into training (x = iteration) and validation (x = step)."""

    losses: dict[str, Series] = field(default_factory=dict)
    lrs: dict[str, Series] = field(default_factory=dict)
    metrics: dict[str, Series] = field(default_factory=dict)
    max_epoch: float = 0.0  # the largest ``epoch`` of a training line (0: iteration-based)

    @property
    def has_epochs(self) -> bool:
        """Whether the validation steps are epochs.

        Iteration-based runs write ``epoch: 0`` on their training lines (as MMEngine
        does), and an epoch-based run with ``log_metric_by_epoch=False`` logs its
        metrics at iterations, past the last epoch: both are labelled by iteration.
        """
        if self.max_epoch <= 0:
            return False
        steps = [x for series in self.metrics.values() for x in series.steps]
        return not steps or max(steps) <= self.max_epoch


@dataclass
class Panel:
    """One subplot: its curves share the x axis named ``xlabel``."""

    title: str
    xlabel: str
    curves: dict[str, Series]
    markers: bool = False
    smoothed: bool = False


def is_lr_key(key: str) -> bool:
    return key == "lr" or key.endswith((".lr", "/lr", "_lr"))


def is_train_record(record: dict) -> bool:
    """A training line has an ``iter`` key and an ``lr`` or a ``*loss*`` key; every other
    line (validation, test) is an evaluation line whose ``step`` is the epoch in
    epoch-based runs and the iteration in iteration-based ones."""
    return "iter" in record and any(is_lr_key(k) or "loss" in k for k in record)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def read_records(path: Path) -> list[dict]:
    """The JSON objects of ``path``, one per line. A torn last line (the run is writing it
    right now) is ignored; a broken line elsewhere is an error naming the line."""
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):
                break
            raise ValueError(f"{path}:{number} is not a JSON object: {exc}") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{number} is not a JSON object: {line[:80]!r}")
        records.append(record)
    return records


def split_records(records: Iterable[dict]) -> ScalarLog:
    """Sort every numeric value into loss, learning-rate and metric curves."""
    log = ScalarLog()
    for record in records:
        if is_train_record(record):
            x = _number(record.get("step", record.get("iter")))
            epoch = _number(record.get("epoch"))
            if epoch is not None:
                log.max_epoch = max(log.max_epoch, epoch)
            for key, value in record.items():
                target = log.lrs if is_lr_key(key) else log.losses if "loss" in key else None
                _append(target, key, x, _number(value))
        else:
            x = _number(record.get("step"))
            for key, value in record.items():
                if key not in META_KEYS:
                    _append(log.metrics, key, x, _number(value))
    return log


def _append(target: dict[str, Series] | None, key: str, x: float | None, y: float | None) -> None:
    if target is None or x is None or y is None:
        return
    series = target.setdefault(key, Series())
    series.steps.append(x)
    series.values.append(y)


def smooth(values: list[float], weight: float = 0.9) -> list[float]:
    """TensorBoard-style exponential moving average, debiased so it starts at the data."""
    out, average = [], 0.0
    for count, value in enumerate(values, start=1):
        average = weight * average + (1.0 - weight) * value
        out.append(average / (1.0 - weight**count))
    return out


def plot_training_curves(scalars_json: str | Path, out_png: str | Path) -> Path:
    """Draw the curves of ``scalars_json`` into ``out_png`` and return its path.

    Panels, each only when it has data: every ``*loss*`` key against the iteration, the
    learning rate against the iteration, then one panel per validation metric against its
    step (labelled epoch when the training lines count epochs, see
    :attr:`ScalarLog.has_epochs`, else iteration). Lines are told apart as
    :func:`is_train_record` says. The PNG is written to a temporary file and moved into
    place, so a viewer never sees half an image.
    """
    scalars_json, out_png = Path(scalars_json), Path(out_png)
    log = split_records(read_records(scalars_json))
    panels = _panels(log)
    if not panels:
        raise ValueError(f"{scalars_json} holds no loss, lr or metric values to plot")

    from matplotlib.backends.backend_agg import FigureCanvasAgg  # import cost only when drawing
    from matplotlib.figure import Figure

    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    figure = Figure(figsize=(5.0 * ncols, 3.4 * nrows), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    for index, panel in enumerate(panels):
        _draw_panel(figure.add_subplot(nrows, ncols, index + 1), panel)
    _save_atomically(figure, out_png)
    return out_png


def _panels(log: ScalarLog) -> list[Panel]:
    """The panels that have data, in reading order."""
    eval_x = "epoch" if log.has_epochs else "iteration" if log.losses or log.lrs else "step"
    panels = []
    if log.losses:
        panels.append(Panel("loss", "iteration", log.losses, smoothed=True))
    if log.lrs:
        panels.append(Panel("learning rate", "iteration", log.lrs))
    for name, series in log.metrics.items():
        panels.append(Panel(name, eval_x, {name: series}, markers=True))
    return panels


def _draw_panel(axes: Any, panel: Panel) -> None:
    title = panel.title
    for name, series in panel.curves.items():
        if panel.markers:  # evaluation points are few: show each one and the latest value
            axes.plot(series.steps, series.values, marker="o", markersize=3, label=name)
            title = f"{panel.title} (last {series.values[-1]:.4g})"
        elif panel.smoothed and len(series.values) > SMOOTH_ABOVE:  # noisy: raw faded + trend
            (line,) = axes.plot(series.steps, series.values, linewidth=0.8, alpha=0.3)
            axes.plot(series.steps, smooth(series.values), color=line.get_color(), label=name)
        else:
            axes.plot(series.steps, series.values, linewidth=1.2, label=name)
    axes.set_title(title, fontsize=10)
    axes.set_xlabel(panel.xlabel)
    axes.grid(True, alpha=0.3)
    if len(panel.curves) > 1:
        axes.legend(fontsize=8)
    if panel.title == "learning rate":
        axes.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))


def _save_atomically(figure: Any, out_png: Path) -> None:
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_png.name}.", suffix=".tmp", dir=out_png.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            figure.savefig(f, format="png")
        os.replace(tmp, out_png)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
