"""The evaluator: feeds every prediction batch to its metrics and merges their results.

As MMEngine's ``Evaluator``: metrics receive samples as plain dicts
(``DataSample.to_dict()``), each metric gathers across ranks in its own ``evaluate``,
and two metrics may not report the same key.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any

from vistra.evaluation.metric import BaseMetric
from vistra.registry import EVALUATOR, METRICS


@EVALUATOR.register_module()
class Evaluator:
    """Runs a list of metrics over the same predictions.

    ``metrics`` is a built metric, a metric config dict, or a list of either; configs are
    built through the METRICS registry. ``key_path`` names the config key in errors.
    """

    def __init__(
        self,
        metrics: BaseMetric | Mapping | Sequence[BaseMetric | Mapping],
        key_path: str = "evaluator",
    ) -> None:
        if isinstance(metrics, (BaseMetric, Mapping)):
            metrics = [metrics]
        self.metrics: list[BaseMetric] = [
            _build_metric(m, f"{key_path}[{i}]" if len(metrics) > 1 else key_path)
            for i, m in enumerate(metrics)
        ]
        self._dataset_meta: dict | None = None

    @property
    def dataset_meta(self) -> dict | None:
        return self._dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, dataset_meta: dict | None) -> None:
        """Hand the dataset's metainfo (e.g. ``classes``) to every metric."""
        self._dataset_meta = dataset_meta
        for metric in self.metrics:
            metric.dataset_meta = dataset_meta

    def process(self, data_samples: Sequence[Any], data_batch: Any = None) -> None:
        """Give one batch of predictions (DataSample objects or dicts) to every metric."""
        samples = [s.to_dict() if hasattr(s, "to_dict") else s for s in data_samples]
        for metric in self.metrics:
            metric.process(data_batch, samples)

    def evaluate(self, size: int) -> dict[str, Any]:
        """All metrics' results over the first ``size`` samples (padding dropped)."""
        merged: dict[str, Any] = {}
        owner: dict[str, BaseMetric] = {}
        for metric in self.metrics:
            results = metric.evaluate(size)
            for name in results:
                if name in merged:
                    raise ValueError(
                        f"There are multiple evaluation results with the same metric name "
                        f"{name!r}: from {_describe(owner[name])} and from {_describe(metric)}. "
                        "Please make sure all metrics have different prefixes "
                        "(e.g. prefix='val2' on one of them)."
                    )
                owner[name] = metric
            merged.update(results)
        return merged

    def offline_evaluate(
        self, data_samples: Sequence[Any], data: Sequence[Any] | None = None, chunk_size: int = 1
    ) -> dict[str, Any]:
        """Evaluate stored predictions (e.g. loaded from a ``--out`` pickle) in chunks."""
        if data is not None and len(data) != len(data_samples):
            raise ValueError(
                f"offline_evaluate got {len(data_samples)} predictions but {len(data)} data items"
            )
        batches = _chunks(data, chunk_size) if data is not None else None
        for samples in _chunks(data_samples, chunk_size):
            self.process(samples, next(batches) if batches is not None else None)
        return self.evaluate(len(data_samples))

    def __repr__(self) -> str:
        return f"Evaluator(metrics=[{', '.join(_describe(m) for m in self.metrics)}])"


def _build_metric(metric: BaseMetric | Mapping, key_path: str) -> BaseMetric:
    if isinstance(metric, BaseMetric):
        return metric
    if isinstance(metric, Mapping):
        return METRICS.build(metric, key_path=key_path)
    raise TypeError(
        f"config key '{key_path}' must be a metric config dict (e.g. dict(type='Accuracy')) "
        f"or a metric object, got {type(metric).__name__}"
    )


def _describe(metric: BaseMetric) -> str:
    return f"{type(metric).__name__}(prefix={metric.prefix!r})"


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def build_evaluator(
    cfg: Evaluator | Mapping | Sequence[Mapping | BaseMetric], key_path: str = "evaluator"
) -> Evaluator:
    """An evaluator from a config value, as MMEngine's runner reads ``val_evaluator``.

    A dict with ``metrics`` is an evaluator config (``type`` defaults to ``'Evaluator'``);
    any other dict is one metric; a list is several metrics.
    """
    if isinstance(cfg, Evaluator):
        return cfg
    if isinstance(cfg, Mapping) and "metrics" in cfg:
        cfg = {"type": "Evaluator", **cfg}
        kind = cfg["type"]
        # Only our own class is known to take key_path; a user's evaluator may not.
        ours = (EVALUATOR.get(kind) if isinstance(kind, str) else kind) is Evaluator
        extra = {"key_path": f"{key_path}.metrics"} if ours else None
        return EVALUATOR.build(cfg, default_args=extra, key_path=key_path)
    if isinstance(cfg, (Mapping, BaseMetric, list, tuple)):
        return Evaluator(cfg, key_path=key_path)
    raise TypeError(
        f"config key '{key_path}' must be a metric dict, a list of metric dicts or an "
        f"evaluator dict with 'metrics', got {type(cfg).__name__}"
    )
