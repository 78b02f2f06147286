"""What went wrong inside a loop, said in one line a user can act on.

A failure in a training or evaluation step (a label outside the head's classes, a
non-finite loss, a head that does not fit the features, out of memory, a dataloader worker
killed) is re-raised as :class:`TrainingError` whose message names the iteration, the
samples of the batch (their files, else their indices) and the likely fix. The CLI prints
it as one ``error:`` line; ``--debug`` shows the original traceback (kept as ``__cause__``).
"""

from __future__ import annotations

import re
import signal
from collections.abc import Mapping, Sequence
from typing import Any

import torch


class TrainingError(RuntimeError):
    """A run that cannot go on; the message says where (iteration, samples) and why."""


class NonFiniteLossError(TrainingError):
    """The loss (or one of its terms) was NaN or infinite."""


# Errors that already name their culprit in words a user can act on: passed through as
# they are (a corrupt image names its file, a bad checkpoint its path).
_PASS_THROUGH = ("DataError", "CheckpointError", "TrainingError", "NonFiniteLossError")

_WORKER_DIED = re.compile(r"DataLoader worker \(pid\(?s?\)? ?([\d, ]+)\)")
_OUT_OF_BOUNDS = re.compile(r"Target (-?\d+) is out of bounds")
_SHAPE = re.compile(
    r"shapes cannot be multiplied|size mismatch|must match the size|Expected input batch_size"
    r"|expected input\[.*\] to have \d+ channels|doesn't match the broadcast shape"
    r"|The size of tensor a \(\d+\) must match"
)


def explain(
    exc: BaseException, where: str, model: Any, data_batch: Any, loader: Any = None
) -> BaseException:
    """``exc`` raised at ``where`` (``'train iter 12'``) as a :class:`TrainingError`, or
    ``exc`` itself when it already speaks to the user. ``loader`` (the DataLoader or its
    iterator) lets a dead worker's signal be named."""
    names = {klass.__name__ for klass in type(exc).__mro__}
    if names & set(_PASS_THROUGH) or isinstance(exc, FileNotFoundError):
        return exc  # FileNotFoundError names its path
    samples = describe_samples(data_batch)
    raw = str(exc)
    if "Original Traceback" in raw:  # raised in a dataloader worker: its own last line
        last = [line for line in raw.splitlines() if line.strip()][-1].strip()
        return TrainingError(f"{where}: {last[:300]} (in a dataloader worker)")
    text = " ".join(raw.split())
    at = f"{where}{f' ({samples})' if samples else ''}"
    match = _OUT_OF_BOUNDS.search(text)
    if match:
        return TrainingError(f"{at}: {_label_hint(int(match.group(1)), model)}")
    if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text.lower():
        return TrainingError(
            f"{at}: out of memory ({text[:120]}); lower the batch size "
            "(train_dataloader.batch_size), use --amp, or a smaller input size"
        )
    match = _WORKER_DIED.search(text)
    if match:
        killed = _signal_name(re.search(r"signal: ([\w ]+?)\.? ?$", text)) or worker_signal(loader)
        how = f"was killed by signal {killed}" if killed else "exited unexpectedly"
        return TrainingError(
            f"{where}: a dataloader worker (pid {match.group(1).strip()}) {how}; "
            "often the host ran out of memory (see dmesg): lower num_workers or batch_size, "
            "then resume with --resume"
        )
    if _SHAPE.search(text):
        return TrainingError(
            f"{at}: the model does not fit the data: {text[:160]}; check the head's "
            "in_channels against the backbone/neck output channels, and the input size"
        )
    return TrainingError(f"{at}: {type(exc).__name__}: {text[:200]}")


def _signal_name(match: re.Match | None) -> str | None:
    """``'SIGKILL'`` for torch's ``'signal: Killed'`` (the system's description)."""
    if match is None:
        return None
    by_text = {signal.strsignal(s): s.name for s in signal.Signals if signal.strsignal(s)}
    return by_text.get(match.group(1).strip(), match.group(1).strip())


def worker_signal(loader: Any) -> str | None:
    """The signal that ended a DataLoader worker (``'SIGKILL'``), read from the worker
    processes of ``loader`` or its live iterator; None when no worker was killed."""
    for holder in (loader, getattr(loader, "_iterator", None)):
        for worker in getattr(holder, "_workers", None) or ():
            code = getattr(worker, "exitcode", None)
            if code is not None and code < 0:
                try:
                    return signal.Signals(-code).name
                except ValueError:
                    return f"signal {-code}"
    return None


def describe_samples(data_batch: Any, limit: int = 4) -> str:
    """``'files a.jpg, b.jpg, ...'`` or ``'samples 3, 17, ...'`` for a batch, if it says."""
    samples = data_batch.get("data_samples") if isinstance(data_batch, Mapping) else None
    if not isinstance(samples, Sequence) or not samples:
        return ""
    files, indices = [], []
    for sample in samples:
        meta = getattr(sample, "metainfo", sample if isinstance(sample, Mapping) else {})
        if meta.get("img_path"):
            files.append(str(meta["img_path"]))
        if meta.get("sample_idx") is not None:
            indices.append(str(meta["sample_idx"]))
    names, what = (files, "files") if files else (indices, "samples")
    if not names:
        return ""
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return f"{what} {', '.join(names[:limit])}{more}"


def _label_hint(label: int, model: Any) -> str:
    classes = _num_classes(model)
    have = f"the head has num_classes={classes}" if classes else "the head has fewer classes"
    return (
        f"label {label} is outside the classes of the model ({have}); set "
        f"model.head.num_classes (and data_preprocessor.num_classes) to at least {label + 1}, "
        "or fix the labels of the dataset"
    )


def _num_classes(model: Any) -> int | None:
    core = getattr(model, "module", model)
    for name in ("head", "decode_head"):
        head = getattr(core, name, None)
        classes = getattr(head, "num_classes", None)
        if isinstance(classes, int):
            return classes
    return None


def all_finite(loss: torch.Tensor) -> bool:
    """Whether the loss is finite on every process: all ranks must agree to stop or skip,
    or the ones that go on would wait forever in the gradient all-reduce."""
    import torch.distributed as dist

    finite = bool(torch.isfinite(loss.detach()).all())
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        flag = torch.tensor([1.0 if finite else 0.0], device=loss.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        finite = bool(flag.item())
    return finite


def non_finite_message(log_vars: Mapping[str, float], where: str, data_batch: Any) -> str:
    import math

    # the terms of the total (a model returning only `loss` has just that one)
    terms = [k for k in log_vars if k != "loss" and "loss" in k] or ["loss"]
    bad = [k for k in terms if not math.isfinite(log_vars.get(k, 0.0))]
    value = log_vars.get("loss", float("nan"))
    terms = f" ({', '.join(bad)})" if bad else " (on another process)"
    samples = describe_samples(data_batch)
    return (
        f"{where}{f' ({samples})' if samples else ''}: loss is {value}{terms}; the last "
        "checkpoint is kept. Lower the learning rate, add gradient clipping "
        "(optim_wrapper.clip_grad=dict(max_norm=...)), or set "
        "train_cfg.nonfinite_loss='skip' to skip such steps"
    )
