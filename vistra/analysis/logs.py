"""Training logs for ``analyze-logs``: find a run's ``scalars.json``, plot chosen keys, time
the iterations (MMPretrain's ``tools/analysis_tools/analyze_logs.py``, on vistra's logs).

A log is one JSON object per logged step; training lines carry ``iter`` and ``lr``/loss
keys, evaluation lines a ``step`` (the epoch in epoch-based runs, else the iteration):
:func:`vistra.visualization.curves.is_train_record` tells them apart.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path

from vistra.analysis.errors import AnalysisError
from vistra.config.errors import did_you_mean
from vistra.visualization.curves import _save_atomically, is_train_record, read_records

STEP_KEYS = frozenset({"step", "epoch", "iter"})
"""Keys that place a line in the run rather than measure anything: never plotted."""

SEABORN_STYLES = ("darkgrid", "whitegrid", "dark", "white", "ticks")
"""``--style`` names upstream hands to seaborn; matplotlib ships them as ``seaborn-v0_8-*``."""


@dataclass
class TrainLog:
    """One run's log: its training and evaluation lines, in the order they were written."""

    path: Path
    label: str  # the run's name in legends: its ``<ts>`` folder, else the file's stem
    train: list[dict] = field(default_factory=list)
    val: list[dict] = field(default_factory=list)

    @property
    def by_epoch(self) -> bool:
        """Epoch-based runs number their training lines' epochs from 1; iteration-based
        runs write ``epoch: 0`` (as MMEngine does) or no epoch at all."""
        return any(_num(r.get("epoch")) > 0 for r in self.train)

    @property
    def train_keys(self) -> list[str]:
        return _numeric_keys(self.train)

    @property
    def val_keys(self) -> list[str]:
        return _numeric_keys(self.val)


def _num(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    return float(value)


def _numeric_keys(records: list[dict]) -> list[str]:
    keys: dict[str, None] = {}
    for record in records:
        for key, value in record.items():
            if key not in STEP_KEYS and isinstance(value, (int, float)):
                keys.setdefault(key)
    return list(keys)


# ---------------------------------------------------------------------- finding and reading
def find_scalars_json(path: str | Path) -> Path:
    """The JSON log for ``path``: the file itself, a run's ``<ts>`` folder (its
    ``vis_data/scalars.json``) or a work dir (its latest run that has one)."""
    path = Path(path)
    if path.is_file():
        if path.suffix == ".log" and (path.parent / "vis_data" / "scalars.json").is_file():
            raise AnalysisError(
                f"{path} is the text log; the JSON log of that run is "
                f"{path.parent / 'vis_data' / 'scalars.json'} (or pass the folder {path.parent})"
            )
        if path.suffix != ".json":
            raise AnalysisError(f"{path} is not a .json log (one JSON object per line)")
        return path
    if not path.is_dir():
        raise AnalysisError(f"log not found: {path}")
    for candidate in (path / "vis_data" / "scalars.json", path / "scalars.json"):
        if candidate.is_file():
            return candidate
    runs = sorted(
        p for p in path.glob("*/vis_data/scalars.json") if p.parent.parent.name[:1].isdigit()
    )
    if not runs:
        raise AnalysisError(
            f"no vis_data/scalars.json under {path}: pass a work dir, one of its <timestamp> "
            "run folders or the .json file itself"
        )
    return runs[-1]  # timestamps sort in time order: the latest run


def load_log(path: str | Path) -> TrainLog:
    """Read the log ``path`` names (see :func:`find_scalars_json`)."""
    json_path = find_scalars_json(path)
    try:
        records = read_records(json_path)
    except ValueError as exc:  # a broken line in the middle of the file
        raise AnalysisError(str(exc)) from None
    log = TrainLog(json_path, _label(json_path))
    for record in records:
        (log.train if is_train_record(record) else log.val).append(record)
    if not log.train and not log.val:
        raise AnalysisError(f"{json_path} holds no log lines")
    return log


def load_logs(paths: Sequence[str | Path]) -> list[TrainLog]:
    """Several logs; runs that would share a legend label get ``-2``, ``-3`` appended."""
    logs = [load_log(p) for p in paths]
    seen: dict[str, int] = {}
    for log in logs:
        seen[log.label] = seen.get(log.label, 0) + 1
        if seen[log.label] > 1:
            log.label = f"{log.label}-{seen[log.label]}"
    return logs


def _label(json_path: Path) -> str:
    if json_path.name == "scalars.json" and json_path.parent.name == "vis_data":
        return json_path.parent.parent.name  # the run's <ts> folder
    stem = json_path.name[: -len(".json")]
    return stem[: -len(".log")] if stem.endswith(".log") else stem  # MMCV 0.x's <ts>.log.json


# ---------------------------------------------------------------------- cal_train_time
@dataclass
class TrainTime:
    """Seconds per iteration of one run (each logged ``time`` averages its window)."""

    epoch_means: dict[int, float]  # epoch -> mean time (epoch-based runs only)
    average: float  # over every logged training line, as upstream computes it

    @property
    def slowest(self) -> tuple[int, float]:
        epoch = max(self.epoch_means, key=self.epoch_means.__getitem__)
        return epoch, self.epoch_means[epoch]

    @property
    def fastest(self) -> tuple[int, float]:
        epoch = min(self.epoch_means, key=self.epoch_means.__getitem__)
        return epoch, self.epoch_means[epoch]

    @property
    def std(self) -> float:
        """Population standard deviation of the epoch means (numpy's ``std``, as upstream)."""
        return statistics.pstdev(self.epoch_means.values())


def train_time(log: TrainLog, include_outliers: bool = False) -> TrainTime:
    """Per-epoch mean iteration time and the overall mean.

    The first logged line of each epoch carries the epoch's start-up (dataloader workers,
    first CUDA kernels): it is left out of the epoch means unless ``include_outliers``,
    as upstream does; an epoch with a single line keeps it (there is nothing else).
    """
    timed = [r for r in log.train if isinstance(r.get("time"), (int, float))]
    if not timed:
        raise AnalysisError(f"{log.path} has no training lines with a 'time' value")
    epoch_means: dict[int, float] = {}
    if log.by_epoch:
        for epoch, group in groupby(timed, key=lambda r: int(_num(r.get("epoch")))):
            times = [float(r["time"]) for r in group]
            if not include_outliers and len(times) > 1:
                times = times[1:]
            epoch_means[epoch] = statistics.fmean(times)
    return TrainTime(epoch_means, statistics.fmean(float(r["time"]) for r in timed))


def format_train_time(name: str, timing: TrainTime) -> str:
    """Upstream's report lines for one log."""
    lines = [f"{'-' * 5}Analyze train time of {name}{'-' * 5}"]
    if timing.epoch_means:
        (slow, slow_t), (fast, fast_t) = timing.slowest, timing.fastest
        lines += [
            f"slowest epoch {slow}, average time is {slow_t:.4f}",
            f"fastest epoch {fast}, average time is {fast_t:.4f}",
            f"time std over epochs is {timing.std:.4f}",
        ]
    lines.append(f"average iter time: {timing.average:.4f} s/iter")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- plot_curve
@dataclass
class Curve:
    label: str
    source: Path  # the log it comes from
    key: str
    xs: list[float]
    ys: list[float]


def curve(log: TrainLog, key: str, label: str) -> Curve:
    """The values of ``key`` against epochs (epoch-based runs) or iterations.

    Training lines of an epoch-based run are placed at fractional epochs (their iteration
    over the iterations per epoch); evaluation lines at their ``step``, which is the epoch
    unless the run logged metrics by iteration, in which case they are scaled the same way.
    """
    if key in log.val_keys:
        records = log.val
    elif key in log.train_keys:
        records = log.train
    else:
        keys = sorted(set(log.train_keys) | set(log.val_keys))
        raise AnalysisError(
            f"{log.path} has no key {key!r}; its keys: {', '.join(keys)}.{did_you_mean(key, keys)}"
        )
    points = [
        (_num(r.get("step", r.get("iter"))), float(r[key]))
        for r in records
        if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)
    ]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    if log.by_epoch:
        last = max(log.train, key=lambda r: (_num(r.get("epoch")), _num(r.get("step"))))
        max_epoch = _num(last.get("epoch"))
        iters_per_epoch = _num(last.get("step", last.get("iter"))) / max_epoch
        in_iters = records is log.train or (xs and max(xs) > max_epoch)
        if in_iters and iters_per_epoch > 0:
            xs = [x / iters_per_epoch for x in xs]
    return Curve(label, log.path, key, xs, ys)


def default_legend(logs: Sequence[TrainLog], keys: Sequence[str]) -> list[str]:
    """``<run>_<key>`` for every log and key (upstream's ``<file stem>_<key>``)."""
    return [f"{log.label}_{key}" for log in logs for key in keys]


def matplotlib_style(style: str) -> str:
    """The matplotlib style sheet for ``--style`` (seaborn's names map to the
    ``seaborn-v0_8-*`` sheets matplotlib ships, so seaborn itself is not needed)."""
    import matplotlib.style

    available = list(matplotlib.style.available)
    for name in (style, f"seaborn-v0_8-{style}"):
        if name in available:
            return name
    hint = did_you_mean(style, list(SEABORN_STYLES) + available)
    raise AnalysisError(
        f"--style {style!r} is not a style: choose {', '.join(SEABORN_STYLES)} or one of "
        f"matplotlib.style.available (e.g. ggplot, bmh, classic).{hint}"
    )


def window_size(text: str) -> tuple[float, float]:
    """``'W*H'`` (inches, as upstream's ``--window-size``) as numbers."""
    parts = text.split("*")
    try:
        w, h = (float(p) for p in parts)
    except ValueError:
        raise AnalysisError(f"--window-size {text!r} must be W*H, e.g. 12*7") from None
    if not (w > 0 and h > 0 and math.isfinite(w * h)):
        raise AnalysisError(f"--window-size {text!r}: width and height must be positive")
    return w, h


def plot_curves(
    logs: Sequence[TrainLog],
    keys: Sequence[str],
    out: str | Path | None,
    legend: Sequence[str] | None = None,
    title: str | None = None,
    style: str = "whitegrid",
    size: tuple[float, float] = (12.0, 7.0),
) -> list[Curve]:
    """Draw every ``key`` of every log on one axes; write ``out`` (PNG, atomically) or,
    without ``out``, show a window. Returns the curves drawn (in legend order)."""
    legend = list(legend) if legend is not None else default_legend(logs, keys)
    if len(legend) != len(logs) * len(keys):
        raise AnalysisError(
            f"--legend has {len(legend)} names; {len(logs)} log(s) x {len(keys)} key(s) "
            f"need {len(logs) * len(keys)}"
        )
    labels = iter(legend)
    curves = [curve(log, key, next(labels)) for log in logs for key in keys]
    style_name = matplotlib_style(style)
    xlabel = "Epochs" if all(log.by_epoch for log in logs) else "Iters"
    import matplotlib.style

    with matplotlib.style.context(style_name):
        figure = _figure(size, show=out is None)
        axes = figure.add_subplot(1, 1, 1)
        for c in curves:
            marker = "o" if len(c.xs) <= 20 else None  # a few evaluation points: show each
            axes.plot(c.xs, c.ys, label=c.label, linewidth=0.75, marker=marker, markersize=3)
        axes.set_xlabel(xlabel)
        axes.legend()
        if title is not None:
            axes.set_title(title)
        if out is None:
            import matplotlib.pyplot as plt

            plt.show()
        else:
            _save_atomically(figure, Path(out))
    return curves


def _figure(size: tuple[float, float], show: bool):
    """A pyplot figure for a window, else a bare Agg one (no display needed)."""
    if show:
        import matplotlib.pyplot as plt

        if plt.get_backend().lower() == "agg":
            raise AnalysisError("no display to show the plot on: pass --out FILE.png")
        return plt.figure(figsize=size)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(figure)
    return figure
