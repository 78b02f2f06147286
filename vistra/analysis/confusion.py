"""Confusion matrices of classification results: counts, CSV and a drawn PNG.

Rows are the true class and columns the predicted one, as in MMPretrain's
``ConfusionMatrix`` metric, which this reproduces: a sample with class scores counts
under the arg-max of its scores, one without under its ``pred_label``. The counting is
:func:`vistra.evaluation.functional.confusion_matrix`, the formula the metrics use.
Drawing goes through matplotlib's Agg canvas (no pyplot), so no display is needed.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from vistra.analysis.predictions import Prediction
from vistra.data.errors import DataError
from vistra.evaluation.functional import confusion_matrix


def classification_confusion(
    predictions: Sequence[Prediction], num_classes: int | None = None
) -> np.ndarray:
    """``(C, C)`` int64 counts; ``C`` is the score length, else ``num_classes``, else the
    largest label seen plus one."""
    scored = [p.pred_score for p in predictions if p.pred_score is not None]
    if scored:
        lengths = {len(s) for s in scored}
        if len(lengths) > 1:
            raise DataError(f"the predictions' pred_score lengths differ: {sorted(lengths)}")
        num_classes = lengths.pop()
    pred = [
        int(p.pred_score.argmax()) if p.pred_score is not None else p.pred_label
        for p in predictions
    ]
    gt = [p.gt_label for p in predictions]
    if num_classes is None:
        num_classes = max(max(pred), max(gt)) + 1
    try:
        matrix = confusion_matrix(torch.tensor(pred), torch.tensor(gt), num_classes)
    except ValueError as exc:  # a label beyond the classes
        raise DataError(f"cannot count the predictions: {exc}") from exc
    return matrix.numpy().astype(np.int64)


def matrix_csv(matrix: np.ndarray, names: Sequence[str], corner: str = "gt \\ pred") -> str:
    """The matrix as CSV: a header of class names (the predictions), then one row per true
    class, its name first. Float matrices keep 4 decimals."""
    import csv
    import io

    def cell(value: float) -> str:
        if np.issubdtype(matrix.dtype, np.integer):
            return str(int(value))
        return "" if np.isnan(value) else f"{value:.4f}"

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([corner, *names])
    for name, row in zip(names, matrix):
        writer.writerow([name, *(cell(v) for v in row)])
    return out.getvalue()


def row_percentages(matrix: np.ndarray) -> np.ndarray:
    """Each row as percentages of its sum (NaN for a class that never occurs)."""
    sums = matrix.sum(axis=1, keepdims=True).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sums > 0, matrix / np.where(sums > 0, sums, 1) * 100.0, np.nan)


def plot_confusion(
    matrix: np.ndarray,
    names: Sequence[str],
    include_values: bool = False,
    cmap: str = "viridis",
    title: str | None = None,
    percent: bool = False,
) -> np.ndarray:
    """The matrix drawn as an ``(H, W, 3)`` uint8 RGB image (true label down the left,
    predicted label along the top). ``percent``: the values are row percentages."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if cmap not in colormaps:
        from vistra.registry import did_you_mean

        raise DataError(
            f"unknown colour map {cmap!r}.{did_you_mean(cmap, list(colormaps))} "
            "(any matplotlib colormap name, e.g. viridis, Blues, winter)"
        )
    n = len(names)
    side = min(30.0, max(4.5, 0.55 * n + 2.5))
    figure = Figure(figsize=(side + 1.2, side), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    shown = np.nan_to_num(matrix.astype(np.float64), nan=0.0)
    image = axes.imshow(shown, interpolation="nearest", cmap=cmap)
    figure.colorbar(image, ax=axes, shrink=0.8)
    if include_values:
        _write_values(axes, matrix, image, percent, side)
    axes.set_xticks(
        np.arange(n), labels=list(names), rotation=45, ha="left", rotation_mode="anchor"
    )
    axes.set_yticks(np.arange(n), labels=list(names))
    axes.xaxis.tick_top()
    axes.xaxis.set_label_position("top")
    axes.set_xlabel("Predicted label")
    axes.set_ylabel("True label")
    if title:
        axes.set_title(title, pad=12)
    buffer = io.BytesIO()  # a tight box: nothing (the colour bar's labels) is cut off
    figure.savefig(buffer, format="png", bbox_inches="tight", pad_inches=0.15)
    return np.asarray(Image.open(buffer).convert("RGB"))


def _write_values(axes, matrix: np.ndarray, image, percent: bool, side: float) -> None:
    """Each cell's value, in black or white, whichever reads better on the cell's colour."""
    texts = {}
    for (i, j), value in np.ndenumerate(matrix):
        if percent:
            texts[i, j] = "n/a" if np.isnan(value) else f"{value:.1f}%"
        else:
            texts[i, j] = str(int(value)) if float(value).is_integer() else f"{value:.2g}"
    # the axes take about 70% of the figure's side; a character is about 0.6 em wide
    cell_points = side * 72 * 0.7 / max(1, matrix.shape[0])
    longest = max(len(t) for t in texts.values())
    size = max(5.0, min(12.0, cell_points / (0.62 * longest + 0.8)))
    for (i, j), text in texts.items():
        value = matrix[i, j]
        red, green, blue, _ = image.cmap(image.norm(0.0 if np.isnan(value) else value))
        colour = "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"
        axes.text(j, i, text, ha="center", va="center", color=colour, fontsize=size)
