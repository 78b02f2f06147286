from collections import namedtuple

import numpy as np
import pytest
import torch

from vistra.data.collate import default_collate, pseudo_collate
from vistra.data.structures import DataSample
from vistra.registry import FUNCTIONS


def _samples(n=3):
    return [
        {
            "inputs": torch.full((3, 4, 5), i, dtype=torch.uint8),
            "data_samples": DataSample().set_gt_label(i),
        }
        for i in range(n)
    ]


def test_registered_under_mmengine_names():
    assert FUNCTIONS.get("pseudo_collate") is pseudo_collate
    assert FUNCTIONS.get("default_collate") is default_collate


def test_pseudo_collate_transposes_without_stacking():
    batch = pseudo_collate(_samples())
    assert isinstance(batch["inputs"], list) and len(batch["inputs"]) == 3
    assert batch["inputs"][2][0, 0, 0] == 2
    assert [int(s.gt_label) for s in batch["data_samples"]] == [0, 1, 2]


def test_pseudo_collate_keeps_different_sizes_and_nested_views():
    batch = [
        {"inputs": [torch.zeros(3, 2, 2), torch.ones(3, 4, 4)]},
        {"inputs": [torch.zeros(3, 5, 5), torch.ones(3, 1, 1)]},
    ]
    out = pseudo_collate(batch)
    assert len(out["inputs"]) == 2 and out["inputs"][1][0].shape == (3, 4, 4)


def test_pseudo_collate_tuple_becomes_list_and_named_tuple_kept():
    assert pseudo_collate([(1, "a"), (2, "b")]) == [[1, 2], ["a", "b"]]
    Pair = namedtuple("Pair", "x y")
    out = pseudo_collate([Pair(1, 2), Pair(3, 4)])
    assert isinstance(out, Pair) and out.x == [1, 3]


def test_unequal_sequences_fail_loudly():
    with pytest.raises(RuntimeError, match="different lengths"):
        pseudo_collate([[1, 2], [1]])
    with pytest.raises(ValueError, match="empty"):
        pseudo_collate([])


def test_default_collate_stacks_tensors_arrays_numbers_but_not_data_samples():
    out = default_collate(_samples())
    assert out["inputs"].shape == (3, 3, 4, 5)
    assert isinstance(out["data_samples"], list) and len(out["data_samples"]) == 3
    out = default_collate([{"a": np.zeros(2), "b": 1.5}, {"a": np.ones(2), "b": 2.5}])
    assert torch.equal(out["a"], torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64))
    assert out["b"].tolist() == [1.5, 2.5]
