"""vistra's metrics against MMSegmentation's IoUMetric and MMPretrain's Accuracy,
SingleLabelMetric, MultiLabelMetric, AveragePrecision, VOCMultiLabelMetric and
VOCAveragePrecision on seeded random inputs (tools/upstream/oracle_metrics.py).

All cases go to the oracle in one call. Values must be *equal*, not close: the returned
numbers (what both write to the test JSON) and, for IoUMetric, the per-class table text.
Random small images hit the rounding ties (a class at 58.125 %) where float32 and float64
arithmetic print different digits; the summary counts how many cases had one.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from oracle_support import FULL, report, run_oracle

from vistra.evaluation import Accuracy, IoUMetric, MultiLabelMetric, SingleLabelMetric
from vistra.evaluation.metrics import (
    AveragePrecision,
    RetrievalAveragePrecision,
    RetrievalRecall,
    VOCAveragePrecision,
    VOCMultiLabelMetric,
)

N_CASES = {"IoUMetric": 400, "Accuracy": 200, "SingleLabelMetric": 200, "MultiLabelMetric": 200,
           "AveragePrecision": 200, "VOCMultiLabelMetric": 100, "VOCAveragePrecision": 100}  # fmt: skip
N_CASES.update({"RetrievalRecall": 200, "RetrievalAveragePrecision": 200})
if not FULL:
    N_CASES = {"IoUMetric": 100, "Accuracy": 40, "SingleLabelMetric": 40, "MultiLabelMetric": 40,
               "AveragePrecision": 40, "VOCMultiLabelMetric": 20, "VOCAveragePrecision": 20}  # fmt: skip
    N_CASES.update({"RetrievalRecall": 40, "RetrievalAveragePrecision": 40})
VISTRA = {
    "IoUMetric": IoUMetric,
    "Accuracy": Accuracy,
    "SingleLabelMetric": SingleLabelMetric,
    "MultiLabelMetric": MultiLabelMetric,
    "AveragePrecision": AveragePrecision,
    "VOCMultiLabelMetric": VOCMultiLabelMetric,
    "VOCAveragePrecision": VOCAveragePrecision,
    "RetrievalRecall": RetrievalRecall,
    "RetrievalAveragePrecision": RetrievalAveragePrecision,
}


def _batches(samples: list[dict], rng: np.random.RandomState) -> list[list[dict]]:
    out, i = [], 0
    while i < len(samples):
        n = int(rng.randint(1, 4))
        out.append(samples[i : i + n])
        i += n
    return out


def _subset(rng: np.random.RandomState, items: tuple, min_size: int = 1) -> list:
    order = list(rng.permutation(len(items)))
    return [items[j] for j in order[: int(rng.randint(min_size, len(items) + 1))]]


def iou_case(seed: int) -> dict:
    rng = np.random.RandomState(seed)
    gen = torch.Generator().manual_seed(seed)
    num_classes = int(rng.randint(2, 7))
    pred_classes = _subset(rng, tuple(range(num_classes)))  # some classes never predicted
    gt_classes = _subset(rng, tuple(range(num_classes)))  # ... or never present
    samples = []
    for _ in range(int(rng.randint(1, 5))):
        h, w = (int(x) for x in rng.randint(2, 13, size=2))
        pred = torch.tensor(pred_classes)[torch.randint(len(pred_classes), (h, w), generator=gen)]
        gt = torch.tensor(gt_classes)[torch.randint(len(gt_classes), (h, w), generator=gen)]
        gt[torch.rand((h, w), generator=gen) < rng.uniform(0, 0.3)] = 255  # ignored pixels
        # a share of pixels predicted right, so that ratios spread over (0, 1)
        right = torch.rand((h, w), generator=gen) < rng.uniform(0, 0.8)
        pred = torch.where(right & (gt != 255), gt, pred)
        samples.append({"pred_sem_seg": {"data": pred[None]}, "gt_sem_seg": {"data": gt[None]}})
    kwargs = {"iou_metrics": _subset(rng, ("mIoU", "mDice", "mFscore"))}
    if rng.rand() < 0.2:
        kwargs["nan_to_num"] = int(rng.choice([0, -1]))
    if rng.rand() < 0.2:
        kwargs["beta"] = int(rng.choice([2, 3]))
    classes = [f"class_{c}" for c in range(num_classes)]
    return {"metric": "IoUMetric", "kwargs": kwargs, "classes": classes,
            "batches": _batches(samples, rng)}  # fmt: skip


def tie_case(inter: int, union: int) -> dict:
    """One 1 x (union + 40) image where class 0 scores inter / union (e.g. 93/160: 58.125 %),
    a rounding tie that float32 prints as 58.12 and float64 as 58.13."""
    gt = torch.tensor([0] * union + [1] * 40)
    pred = torch.tensor([0] * inter + [1] * (union + 40 - inter))
    sample = {"pred_sem_seg": {"data": pred[None, None]}, "gt_sem_seg": {"data": gt[None, None]}}
    return {"metric": "IoUMetric", "kwargs": {"iou_metrics": ["mIoU", "mDice", "mFscore"]},
            "classes": ["a", "b"], "batches": [[sample]]}  # fmt: skip


def _scores(gen: torch.Generator, n: int, c: int, rng: np.random.RandomState) -> torch.Tensor:
    logits = torch.randn(n, c, generator=gen) * float(rng.uniform(0.5, 3))
    if rng.rand() < 0.3:  # coarse scores: ties between classes and on the thresholds
        return torch.round(torch.rand(n, c, generator=gen) * 4) / 4
    return logits.softmax(-1)


def accuracy_case(seed: int, metric: str) -> dict:
    rng = np.random.RandomState(seed)
    gen = torch.Generator().manual_seed(seed)
    n, c = int(rng.randint(1, 40)), int(rng.randint(2, 9))
    scores = _scores(gen, n, c, rng)
    labels = torch.randint(c, (n,), generator=gen)
    thrs = [0.0, None, (0.0, None), 0.5, (0.1, 0.3, None), 0.25][int(rng.randint(6))]
    with_scores = rng.rand() < 0.85
    if metric == "Accuracy":
        kwargs = {"topk": tuple(k for k in (1, 2, 3, 5) if k <= c)[: int(rng.randint(1, 4))],
                  "thrs": thrs}  # fmt: skip
    else:
        kwargs = {"thrs": thrs, "items": _subset(rng, ("precision", "recall", "f1-score",
                  "support")), "average": [None, "macro", "micro"][int(rng.randint(3))]}  # fmt: skip
        if not with_scores:
            kwargs["num_classes"] = c
    samples = []
    for i in range(n):
        sample = {"gt_label": labels[i : i + 1]}
        if with_scores:
            sample["pred_score"] = scores[i]
        else:
            sample["pred_label"] = scores[i].argmax().reshape(1)
        samples.append(sample)
    return {"metric": metric, "kwargs": kwargs, "classes": None,
            "batches": _batches(samples, rng)}  # fmt: skip


def multi_label_case(seed: int) -> dict:
    rng = np.random.RandomState(seed)
    gen = torch.Generator().manual_seed(seed)
    n, c = int(rng.randint(1, 30)), int(rng.randint(2, 9))
    scores = torch.rand(n, c, generator=gen)
    if rng.rand() < 0.3:
        scores = torch.round(scores * 4) / 4  # ties with the threshold
    target = (torch.rand(n, c, generator=gen) < 0.4).long()
    if rng.rand() < 0.3:
        target[torch.rand(n, c, generator=gen) < 0.1] = -1  # difficult samples
    as_labels = rng.rand() < 0.3
    kwargs = {"items": _subset(rng, ("precision", "recall", "f1-score", "support")),
              "average": [None, "macro", "micro"][int(rng.randint(3))]}  # fmt: skip
    kwargs.update([{}, {"thr": 0.5}, {"thr": 0.3}, {"topk": int(rng.randint(1, c + 1))},
                   {"thr": 0.25, "topk": 2}][int(rng.randint(5))])  # fmt: skip
    samples = []
    for i in range(n):
        sample = {"pred_score": scores[i]}
        if as_labels:
            sample["gt_label"] = torch.nonzero(target[i] == 1).reshape(-1)
        else:
            sample["gt_score"] = target[i]
        samples.append(sample)
    return {"metric": "MultiLabelMetric", "kwargs": kwargs, "classes": None,
            "batches": _batches(samples, rng)}  # fmt: skip


def average_precision_case(seed: int) -> dict:
    rng = np.random.RandomState(seed)
    gen = torch.Generator().manual_seed(seed)
    n, c = int(rng.randint(1, 30)), int(rng.randint(2, 9))
    scores = torch.rand(n, c, generator=gen)  # no ties: the ranking is then unique
    target = (torch.rand(n, c, generator=gen) < 0.4).long()
    if rng.rand() < 0.4:
        target[torch.rand(n, c, generator=gen) < 0.15] = -1  # difficult samples
        # a class whose every sample is difficult: MMPretrain raises IndexError, vistra
        # gives AP 0 (not compared)
        target[0, (target == -1).all(dim=0)] = 0
    as_labels = rng.rand() < 0.3
    samples = []
    for i in range(n):
        sample = {"pred_score": scores[i]}
        if as_labels:
            sample["gt_label"] = torch.nonzero(target[i] == 1).reshape(-1)
        else:
            sample["gt_score"] = target[i]
        samples.append(sample)
    kwargs = {"average": [None, "macro"][int(rng.randint(2))]}
    return {"metric": "AveragePrecision", "kwargs": kwargs, "classes": None,
            "batches": _batches(samples, rng)}  # fmt: skip


def voc_case(seed: int, metric: str) -> dict:
    """Pascal VOC samples: non-difficult classes in gt_label, difficult in gt_label_difficult."""
    rng = np.random.RandomState(seed)
    gen = torch.Generator().manual_seed(seed)
    n, c = int(rng.randint(2, 30)), int(rng.randint(2, 9))
    scores = torch.rand(n, c, generator=gen)
    kind = torch.rand(n, c, generator=gen)  # < 0.35 positive, < 0.45 difficult
    all_difficult = ((kind >= 0.35) & (kind < 0.45)).all(dim=0)
    kind[0, all_difficult] = 0.9  # (as in average_precision_case)
    samples = [
        {"pred_score": scores[i], "gt_label": torch.nonzero(kind[i] < 0.35).reshape(-1),
         "gt_label_difficult": torch.nonzero((kind[i] >= 0.35) & (kind[i] < 0.45)).reshape(-1).tolist()}
        for i in range(n)
    ]  # fmt: skip
    kwargs = {"difficult_as_positive": [None, True, False][int(rng.randint(3))]}
    if metric == "VOCMultiLabelMetric":
        kwargs["average"] = [None, "macro", "micro"][int(rng.randint(3))]
        kwargs.update([{}, {"thr": 0.3}, {"topk": int(rng.randint(1, c + 1))}][int(rng.randint(3))])
    else:
        kwargs["average"] = [None, "macro"][int(rng.randint(2))]
    return {"metric": metric, "kwargs": kwargs, "classes": None, "batches": _batches(samples, rng)}


def retrieval_case(seed: int, metric: str) -> dict:
    """Queries scored against a gallery of M items: ``pred_score`` (M,), the relevant
    items as ``gt_label`` indices, and in some cases a ``gt_score`` vector, which takes
    precedence (both metrics read it first). Every query has a relevant item (MMPretrain's
    AP divides by their number), and k never exceeds M (its top-k would fail)."""
    rng = np.random.RandomState(seed)
    gen = torch.Generator().manual_seed(seed)
    n, m = int(rng.randint(1, 20)), int(rng.randint(2, 30))
    scores = torch.rand(n, m, generator=gen)
    if rng.rand() < 0.2:
        scores = torch.round(scores * 8) / 8  # ties between gallery items
    with_scores = rng.rand() < 0.3
    samples = []
    for i in range(n):
        relevant = torch.rand(m, generator=gen) < float(rng.uniform(0.05, 0.5))
        relevant[int(rng.randint(m))] = True
        sample = {"pred_score": scores[i], "gt_label": torch.nonzero(relevant).reshape(-1)}
        if with_scores:
            other = torch.rand(m, generator=gen) < 0.3
            other[int(rng.randint(m))] = True
            sample["gt_score"] = other.long()
        samples.append(sample)
    if metric == "RetrievalRecall":
        ks = sorted({int(k) for k in rng.randint(1, m + 1, size=int(rng.randint(1, 4)))})
        kwargs = {"topk": ks[0] if len(ks) == 1 and rng.rand() < 0.5 else tuple(ks)}
    else:
        kwargs = {
            "topk": int(rng.randint(1, m + 1)),
            "mode": ["IR", "integrate"][int(rng.randint(2))],
        }
    return {"metric": metric, "kwargs": kwargs, "classes": None, "batches": _batches(samples, rng)}


def make_cases() -> list[dict]:
    cases = [tie_case(93, 160), tie_case(23, 160), tie_case(101, 160), tie_case(186, 320)]
    cases += [iou_case(1000 + i) for i in range(N_CASES["IoUMetric"] - len(cases))]
    cases += [accuracy_case(2000 + i, "Accuracy") for i in range(N_CASES["Accuracy"])]
    cases += [
        accuracy_case(3000 + i, "SingleLabelMetric") for i in range(N_CASES["SingleLabelMetric"])
    ]
    cases += [multi_label_case(4000 + i) for i in range(N_CASES["MultiLabelMetric"])]
    cases += [average_precision_case(5000 + i) for i in range(N_CASES["AveragePrecision"])]
    for name in ("VOCMultiLabelMetric", "VOCAveragePrecision"):
        cases += [voc_case(6000 + i, name) for i in range(N_CASES[name])]
    for j, name in enumerate(("RetrievalRecall", "RetrievalAveragePrecision")):
        cases += [retrieval_case(7000 + 1000 * j + i, name) for i in range(N_CASES[name])]
    return cases


def run_vistra(case: dict) -> dict:
    metric = VISTRA[case["metric"]](**copy.deepcopy(case["kwargs"]))
    if case["classes"] is not None:
        metric.dataset_meta = {"classes": list(case["classes"])}
    for batch in case["batches"]:
        metric.process(None, batch)
    try:
        values = metric.compute_metrics(metric.results)
    except Exception as exc:  # noqa: BLE001 - compared with upstream's error
        return {"metrics": {}, "table": None, "error": f"{type(exc).__name__}: {exc}"}
    return {"metrics": values, "table": getattr(metric, "class_table", None), "error": None}


def _flat(value) -> list[float]:
    return [float(v) for v in value] if isinstance(value, list) else [float(value)]


def _differs(a: float, b: float) -> bool:
    return not (a == b or (math.isnan(a) and math.isnan(b)))


def _float64_table_differs(case: dict) -> bool:
    """Whether ratios in float64 would have printed another per-class value (a tie)."""
    areas = [_areas(s, len(case["classes"])) for batch in case["batches"] for s in batch]
    totals = [torch.stack(a).sum(0).numpy() for a in zip(*areas)]
    printed = []
    for dtype in (np.float32, np.float64):
        inter, union, pred, label = (t.astype(dtype) for t in totals)
        with np.errstate(all="ignore"):
            ratios = [inter / union, inter / label, 2 * inter / (pred + label), inter / pred]
        printed.append([str(x) for r in ratios for x in np.round(r * 100, 2)])
    return printed[0] != printed[1]


def _areas(sample: dict, num_classes: int):
    from vistra.evaluation.functional import intersect_and_union

    pred = sample["pred_sem_seg"]["data"].squeeze()
    return intersect_and_union(pred, sample["gt_sem_seg"]["data"].squeeze(), num_classes, 255)


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    import json

    folder = tmp_path_factory.mktemp("metrics")
    cases = make_cases()
    torch.save(cases, folder / "cases.pt")
    run_oracle("metrics", "run", folder / "cases.pt", folder / "upstream.json")
    upstream = json.loads((folder / "upstream.json").read_text())
    return cases, upstream, [run_vistra(case) for case in cases]


@pytest.mark.parametrize("name", list(N_CASES))
def test_metric_equals_upstream(compared, name):
    cases, upstream, ours = compared
    mismatches, max_diff, n, ties = [], 0.0, 0, 0
    for i, (case, up, us) in enumerate(zip(cases, upstream, ours)):
        if case["metric"] != name:
            continue
        n += 1
        if name == "IoUMetric" and _float64_table_differs(case):
            ties += 1
        if up["error"] or us["error"]:
            if bool(up["error"]) != bool(us["error"]):
                mismatches.append(f"case {i}: upstream error {up['error']}, vistra {us['error']}")
            continue
        if list(up["metrics"]) != list(us["metrics"]):
            mismatches.append(f"case {i} {case['kwargs']}: keys {list(up['metrics'])} "
                              f"vs {list(us['metrics'])}")  # fmt: skip
            continue
        for key, value in up["metrics"].items():
            a, b = _flat(value), _flat(us["metrics"][key])
            diffs = [abs(x - y) for x, y in zip(a, b) if not (math.isnan(x) and math.isnan(y))]
            max_diff = max([max_diff, *diffs])
            if len(a) != len(b) or any(_differs(x, y) for x, y in zip(a, b)):
                mismatches.append(f"case {i} {case['kwargs']}: {key} upstream {value} "
                                  f"vistra {us['metrics'][key]}")  # fmt: skip
        if name == "IoUMetric" and up["table"] != us["table"]:
            mismatches.append(f"case {i}: per-class table\n{up['table']}\nvs\n{us['table']}")
    line = f"{name}: {n - len(mismatches)}/{n} random cases equal upstream, max |diff| {max_diff:g}"
    if name == "IoUMetric":
        line += f" ({ties} with a float32/float64 rounding tie in the per-class table)"
    report(line)
    assert n and not mismatches, "\n".join(mismatches[:10])
