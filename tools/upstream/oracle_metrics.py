"""Upstream metrics on given inputs, for comparison with vistra's.

``oracle.py metrics run CASES OUT``
    ``CASES`` is a ``torch.save``d list of cases, each
    ``{'metric': NAME, 'kwargs': {...}, 'classes': [...] or None, 'batches': [[sample, ...], ...]}``
    where a sample is the plain dict a metric's ``process`` receives (``pred_score``,
    ``gt_label``, ``gt_score``, ``pred_sem_seg: {'data': ...}``, ``gt_sem_seg: {'data': ...}``).
    ``NAME`` is ``IoUMetric`` (MMSegmentation's) or ``Accuracy``, ``SingleLabelMetric``,
    ``MultiLabelMetric`` (MMPretrain's). Every case is built with the upstream class, fed
    batch by batch and computed; ``OUT`` gets a JSON list, one entry per case:
    ``{'metrics': {key: value}, 'table': TEXT or None, 'error': None}`` where a value is
    the Python float (or list of floats) of what upstream returns (``np.float32(x).item()``,
    exactly the number MMEngine writes to the test JSON), ``table`` is the text that
    IoUMetric logs after ``per class results:``, and ``error`` names the exception a case
    raised (then the other fields are empty).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch


def _metric_class(name: str):
    import oracle_env

    if name == "IoUMetric":
        oracle_env.import_package("mmseg")
        from mmseg.evaluation.metrics import iou_metric

        return iou_metric.IoUMetric
    oracle_env.import_package("mmpretrain")
    from mmpretrain.evaluation import metrics

    return getattr(metrics, name)


class _TableCapture:
    """Stands in for ``print_log`` in MMSegmentation's IoUMetric module."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def __call__(self, msg, logger=None, level=None) -> None:  # noqa: ARG002
        self.messages.append(str(msg))

    def table(self) -> str | None:
        for i, msg in enumerate(self.messages):
            if msg == "per class results:" and i + 1 < len(self.messages):
                return self.messages[i + 1].lstrip("\n")
        return None


def _plain(value):
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return value.item() if value.ndim == 0 else value.tolist()
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def run_case(case: dict) -> dict:
    cls = _metric_class(case["metric"])
    capture = _TableCapture()
    if case["metric"] == "IoUMetric":
        from mmseg.evaluation.metrics import iou_metric

        iou_metric.print_log = capture
    try:
        metric = cls(**case.get("kwargs", {}))
        if case.get("classes") is not None:
            metric.dataset_meta = {"classes": list(case["classes"])}
        for batch in case["batches"]:
            metric.process(None, batch)
        result = metric.compute_metrics(metric.results)
    except Exception as exc:  # noqa: BLE001 - reported per case
        return {"metrics": {}, "table": None, "error": f"{type(exc).__name__}: {exc}"[:300]}
    metrics = {k: _plain(v) for k, v in result.items()}
    return {"metrics": metrics, "table": capture.table(), "error": None}


def cmd_run(args: list[str]) -> int:
    if len(args) != 2:
        print("usage: oracle.py metrics run CASES OUT", file=sys.stderr)
        return 2
    cases = torch.load(args[0], map_location="cpu", weights_only=True)
    out = [run_case(case) for case in cases]
    with open(args[1], "w") as f:
        json.dump(out, f)
    return 0


def main(argv: list[str]) -> int:
    commands = {"run": cmd_run}
    if not argv or argv[0] not in commands:
        print(f"usage: oracle.py metrics {{{','.join(commands)}}} ...", file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])
