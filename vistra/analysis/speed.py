"""Inference speed (``vistra benchmark``): images per second of ``forward(mode='predict')``.

MMSegmentation's ``tools/analysis_tools/benchmark.py``, for any model: batches come from
the config's test dataloader and go through the model's data preprocessor untimed; only
the forward pass is timed, with the device synchronised around it, and the first
``num_warmup`` batches (allocator, cuDNN algorithm choice, lazy initialisation) are left
out. A loader shorter than ``num_iters`` batches is read again from the start.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vistra.analysis.errors import AnalysisError


@dataclass
class SpeedRun:
    """One timed pass: ``images`` images (warm-up excluded) in ``seconds`` of forward time."""

    images: int
    seconds: float

    @property
    def fps(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("inf")


def cycle(loader: Iterable) -> Iterator[Any]:
    """The loader's batches, starting over when it ends; an empty loader is an error."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise AnalysisError("the test dataloader yields no batches: is its dataset empty?")


def batch_size_of(data: dict) -> int:
    inputs = data.get("inputs")
    if isinstance(inputs, torch.Tensor):
        return int(inputs.shape[0])
    return len(inputs) if inputs is not None else 1


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def time_inference(
    model: nn.Module,
    loader: Iterable,
    num_iters: int,
    num_warmup: int,
    log_interval: int,
    device: torch.device,
    log: Callable[[str], None] = print,
) -> SpeedRun:
    """Run ``num_iters`` batches, time all but the first ``num_warmup``, and print
    upstream's progress lines (``Done image [i / n], fps: ... img / s``) every
    ``log_interval`` batches and ``Overall fps: ... img / s`` at the end."""
    if num_iters <= num_warmup:
        raise AnalysisError(
            f"--num-iters {num_iters} must be larger than --num-warmup {num_warmup}"
        )
    images, seconds = 0, 0.0
    batches = cycle(loader)
    for i in range(num_iters):
        data = model.data_preprocessor(next(batches), False)
        _synchronize(device)
        start = time.perf_counter()
        with torch.no_grad():
            model(data["inputs"], data.get("data_samples"), mode="predict")
        _synchronize(device)
        elapsed = time.perf_counter() - start
        if i < num_warmup:
            continue
        images += batch_size_of(data)
        seconds += elapsed
        if log_interval > 0 and (i + 1) % log_interval == 0:
            log(f"Done image [{i + 1:<3}/ {num_iters}], fps: {images / seconds:.2f} img / s")
    run = SpeedRun(images, seconds)
    log(f"Overall fps: {run.fps:.2f} img / s\n")
    return run


def summary(runs: list[SpeedRun]) -> dict[str, float]:
    """Upstream's figures over repeats: each run's fps, their mean and (population)
    variance, rounded as upstream rounds them."""
    fps = [r.fps for r in runs]
    out: dict[str, float] = {f"overall_fps_{i + 1}": round(v, 2) for i, v in enumerate(fps)}
    out["average_fps"] = round(statistics.fmean(fps), 2)
    out["fps_variance"] = round(statistics.pvariance(fps), 4)
    return out


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        threads = torch.get_num_threads()
        return f"cpu ({threads} thread{'s' if threads != 1 else ''})"
    return str(device)
