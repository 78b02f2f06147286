"""Failures inside the loops end in one line naming the iteration, the samples and a fix."""

from __future__ import annotations

import pytest
import torch

from vistra.data.structures import DataSample
from vistra.engine.failures import TrainingError, describe_samples, explain


def _batch(paths=None, indices=None):
    samples = []
    for i, index in enumerate(indices or []):
        meta = {"sample_idx": index}
        if paths:
            meta["img_path"] = paths[i]
        samples.append(DataSample(metainfo=meta))
    return {"inputs": [], "data_samples": samples}


def test_samples_are_named_by_file_else_by_index():
    assert describe_samples(_batch(["a.jpg", "b.jpg"], [3, 4])) == "files a.jpg, b.jpg"
    assert describe_samples(_batch(None, list(range(6)))) == "samples 0, 1, 2, 3, ... (6 in all)"
    assert describe_samples(None) == ""


@pytest.mark.parametrize(
    ("error", "pieces"),
    [
        (IndexError("Target 7 is out of bounds."), ["label 7", "num_classes", "at least 8"]),
        (
            RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x64 and 32x3)"),
            ["in_channels"],
        ),
        (
            torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"),
            ["batch size", "--amp"],
        ),
        (
            RuntimeError("DataLoader worker (pid 4242) is killed by signal: Killed. "),
            ["dataloader worker (pid 4242) was killed by signal SIGKILL", "num_workers"],
        ),
        (ZeroDivisionError("division by zero"), ["ZeroDivisionError: division by zero"]),
    ],
)
def test_loop_failures_become_one_line_naming_iteration_and_fix(error, pieces):
    explained = explain(error, "train iter 5", None, _batch(["x/1.png"], [1]))
    assert isinstance(explained, TrainingError)
    text = str(explained)
    assert text.startswith("train iter 5") and "\n" not in text
    for piece in pieces:
        assert piece in text, text


def test_an_error_that_already_names_its_file_passes_through():
    from vistra.data.errors import DataError

    error = DataError("cannot decode image 'a.jpg'")
    assert explain(error, "train iter 1", None, None) is error
