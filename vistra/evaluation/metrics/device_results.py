"""Per-sample results kept on the device, copied to the CPU in a few batched copies.

A metric that calls ``.cpu()`` on each sample's tensors in ``process`` makes the host
wait for the GPU once per sample (several times per image for IoU histograms). Metrics
that mix in :class:`DeviceResults` append device tensors instead and call
:meth:`DeviceResults.settle_results` after each batch: once ``flush_every`` samples are
pending, their tensors are stacked and copied in one transfer per shape and dtype, which
bounds the device memory they hold. ``evaluate`` copies what is left before the results
are gathered across ranks, so ``compute_metrics`` and the gather see CPU tensors only,
with the same values a per-sample ``.cpu()`` gives.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch


class DeviceResults:
    """Mixin for a ``BaseMetric`` whose ``self.results`` may hold device tensors."""

    flush_every = 2048
    _on_cpu_upto = 0  # results[:_on_cpu_upto] hold CPU tensors only

    def settle_results(self, force: bool = False) -> None:
        results: list = self.results  # type: ignore[attr-defined]
        start = self._on_cpu_upto if self._on_cpu_upto <= len(results) else 0
        if force or len(results) - start >= self.flush_every:
            results[start:] = results_to_cpu(results[start:])
            self._on_cpu_upto = len(results)

    def evaluate(self, size: int) -> dict[str, Any]:
        self.settle_results(force=True)
        self._on_cpu_upto = 0  # evaluate clears the results
        return super().evaluate(size)  # type: ignore[misc]


def results_to_cpu(results: list) -> list:
    """``results`` with every non-CPU tensor moved to the CPU, one copy per group of
    tensors that share device, shape and dtype; everything else is left as it is."""
    groups: dict[tuple, list[torch.Tensor]] = defaultdict(list)

    def collect(t: torch.Tensor) -> torch.Tensor:
        groups[(t.device, t.shape, t.dtype)].append(t)
        return t

    _visit(results, collect)
    if not groups:
        return results
    moved: dict[int, torch.Tensor] = {}
    for tensors in groups.values():
        # clones: each result owns its storage, as after a per-sample .cpu(), so pickling
        # one for the cross-rank gather does not carry the whole stacked batch along
        for src, dst in zip(tensors, torch.stack(tensors).cpu().unbind(0)):
            moved[id(src)] = dst.clone()
    return _visit(results, lambda t: moved[id(t)])


def _visit(value: Any, fn: Any) -> Any:
    """``value`` rebuilt with ``fn`` applied to each non-CPU tensor (dicts, lists, tuples)."""
    if isinstance(value, torch.Tensor):
        return fn(value) if value.device.type != "cpu" else value
    if isinstance(value, dict):
        return {k: _visit(v, fn) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_visit(v, fn) for v in value)
    return value
