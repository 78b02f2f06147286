import copy
import pickle
from collections import namedtuple

import numpy as np
import pytest
import torch

from vistra.data.collate import (
    PackedBatch,
    WorkerCollate,
    default_collate,
    pseudo_collate,
    share_one_storage,
)
from vistra.data.structures import DataSample, PixelData
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


def test_share_one_storage_keeps_values_and_structure_in_one_storage_per_dtype():
    def sample(i: int, h: int) -> dict:
        seg = PixelData(torch.ones(1, h, h, dtype=torch.long) * i)
        return {
            "inputs": torch.full((3, h, h), float(i)),
            "data_samples": DataSample(gt_label=torch.tensor([i]), gt_sem_seg=seg),
        }

    samples = [sample(i, h) for i, h in enumerate((20, 21, 22))]
    expected = pseudo_collate(copy.deepcopy(samples))
    out = share_one_storage(pseudo_collate(samples))
    for a, b in zip(out["inputs"], expected["inputs"]):
        assert torch.equal(a, b) and a.shape == b.shape
    for a, b in zip(out["data_samples"], expected["data_samples"]):
        assert torch.equal(a.gt_label, b.gt_label)
        assert torch.equal(a.gt_sem_seg.data, b.gt_sem_seg.data)
    storages = {t.untyped_storage().data_ptr() for t in out["inputs"]}
    maps = {s.gt_sem_seg.data.untyped_storage().data_ptr() for s in out["data_samples"]}
    labels = {s.gt_label.untyped_storage().data_ptr() for s in out["data_samples"]}
    assert len(storages) == 1 and len(maps) == 1  # float32 once, int64 once
    assert len(labels) == 3  # tiny: DataSample pickles them inline instead
    out["inputs"][0].add_(1)  # views of one buffer, but each its own region
    assert torch.equal(out["inputs"][1], expected["inputs"][1])


def test_data_sample_pickles_tiny_tensors_inline_and_back_as_tensors():
    big = torch.arange(300.0)
    sample = DataSample(
        metainfo={"img_path": "a.png"},
        gt_label=torch.tensor([2]),
        pred_score=torch.tensor([0.25, 0.75], dtype=torch.bfloat16),
        feats=big,
    )
    back = pickle.loads(pickle.dumps(sample))
    for key in ("gt_label", "pred_score", "feats"):
        value = getattr(back, key)
        assert isinstance(value, torch.Tensor) and value.dtype == getattr(sample, key).dtype
        assert torch.equal(value, getattr(sample, key))
    assert back.img_path == "a.png" and sample.gt_label.dtype == torch.int64
    twin = copy.deepcopy(sample)
    twin.gt_label.add_(1)
    assert sample.gt_label.item() == 2  # a deep copy owns its tensors


def test_worker_collate_pickles_for_spawn():
    collate = pickle.loads(pickle.dumps(WorkerCollate(pseudo_collate)))
    packed = collate([{"x": torch.zeros(300)}, {"x": torch.ones(300)}])
    out = pickle.loads(pickle.dumps(packed))  # the trip to the main process
    assert out["x"][0].untyped_storage().data_ptr() == out["x"][1].untyped_storage().data_ptr()
    assert torch.equal(out["x"][1], torch.ones(300)) and out["x"][0].shape == (300,)


def test_packed_batch_unpickles_as_the_batch_with_records_and_pixel_maps():
    def sample(i: int, h: int) -> dict:
        return {
            "inputs": torch.full((3, h, h), i, dtype=torch.uint8),
            "data_samples": DataSample(
                metainfo={"img_path": f"{i}.png"},
                gt_label=torch.tensor([i]),
                gt_sem_seg=PixelData(torch.full((1, h, h), i, dtype=torch.long)),
            ),
            "pair": (torch.arange(300.0) + i, i),
        }

    samples = [sample(i, h) for i, h in enumerate((20, 21, 22))]
    expected = pseudo_collate(copy.deepcopy(samples))
    sent = WorkerCollate(pseudo_collate)(samples)
    assert isinstance(sent, PackedBatch) and len(sent.flats) == 3  # uint8, int64, float32
    out = pickle.loads(pickle.dumps(sent))
    assert type(out) is dict and sorted(out) == sorted(expected)
    for a, b in zip(out["inputs"], expected["inputs"]):
        assert a.dtype == b.dtype and torch.equal(a, b)
    for a, b in zip(out["data_samples"], expected["data_samples"]):
        assert a.img_path == b.img_path and torch.equal(a.gt_label, b.gt_label)
        assert torch.equal(a.gt_sem_seg.data, b.gt_sem_seg.data)
    assert all(torch.equal(a, b) for a, b in zip(out["pair"][0], expected["pair"][0]))
    assert out["pair"][1] == expected["pair"][1]
    # nothing worth packing (one sizeable tensor): the batch goes as it is
    single = WorkerCollate(pseudo_collate)([{"x": torch.zeros(300)}])
    assert isinstance(single, dict) and torch.equal(single["x"][0], torch.zeros(300))


class _Numbered(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 12

    def __getitem__(self, i: int) -> dict:
        return {"inputs": torch.full((3, 16, 16), i, dtype=torch.uint8),
                "data_samples": DataSample().set_gt_label(i)}  # fmt: skip


def _collate_and_report(samples: list) -> dict:
    """WorkerCollate's batch, and whether its flat tensor was in shared memory before the
    trip (afterwards every tensor is: torch moves the others there while pickling)."""
    packed = WorkerCollate(pseudo_collate)(samples)
    return {"batch": packed, "shared_in_worker": packed.flats[0].is_shared()}


def test_workers_pack_straight_into_shared_memory():
    """In a real worker the flat tensor is made in shared memory (as torch's default_collate
    stacks there), so sending it copies nothing more; in the main process it is not."""
    loader = torch.utils.data.DataLoader(
        _Numbered(), batch_size=4, num_workers=2, collate_fn=_collate_and_report
    )
    seen = []
    for out in loader:
        assert out["shared_in_worker"] is True
        batch = out["batch"]
        seen += [int(t[0, 0, 0]) for t in batch["inputs"]]
        assert [int(t[0, 0, 0]) for t in batch["inputs"]] == [
            int(s.gt_label) for s in batch["data_samples"]
        ]
    assert seen == list(range(12))
    assert _collate_and_report([_Numbered()[i] for i in range(2)])["shared_in_worker"] is False
