"""The metric interface, as in MMEngine's ``BaseMetric``.

A metric sees each predicted batch through ``process(data_batch, data_samples)`` (the
samples as plain dicts, ``DataSample.to_dict()``), appends what it needs to
``self.results``, and turns the whole list into numbers in ``compute_metrics(results)``.
``evaluate(size)`` gathers the per-rank lists with collective ops (no shared filesystem),
drops the padding a distributed sampler added, computes on rank 0 and broadcasts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class BaseMetric:
    """Accumulates per-batch results and reduces them to a dict of named numbers."""

    default_prefix: str | None = None

    def __init__(self, collect_device: str = "cpu", prefix: str | None = None) -> None:
        self.collect_device = collect_device
        self.prefix = prefix or self.default_prefix
        self.results: list[Any] = []
        self.dataset_meta: dict | None = None

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        raise NotImplementedError

    def compute_metrics(self, results: list) -> dict[str, Any]:
        raise NotImplementedError

    def evaluate(self, size: int) -> dict[str, Any]:
        """Metrics over the first ``size`` results of all ranks, keyed ``prefix/name``."""
        from vistra.dist.collect import collect_results  # torch.distributed; imported when used

        results = collect_results(self.results, size)
        metrics: list[dict[str, Any] | None] = [None]
        if results is not None:  # rank 0
            computed = self.compute_metrics(results)
            if self.prefix:
                computed = {f"{self.prefix}/{k}": v for k, v in computed.items()}
            metrics = [computed]
        from vistra.dist.collect import broadcast_object

        metrics = broadcast_object(metrics)
        self.results.clear()
        return metrics[0]  # type: ignore[return-value]
