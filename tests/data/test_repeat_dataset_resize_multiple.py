"""``RepeatDataset`` (MMEngine's wrapper) and ``ResizeToMultiple`` (MMSegmentation's transform)."""

from __future__ import annotations

import numpy as np
import pytest

from vistra.data.datasets.wrappers import ConcatDataset, RepeatDataset
from vistra.data.transforms.functional import imresize
from vistra.registry import DATASETS, TRANSFORMS


class _Toy:
    """The dataset protocol the wrappers use: metainfo, full_init, len, getitem, data info."""

    def __init__(self, n: int = 3, classes: tuple[str, ...] = ("a", "b")) -> None:
        self.n = n
        self.metainfo = {"classes": classes}
        self.inits = 0

    def full_init(self) -> None:
        self.inits += 1

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, item):
        return {"item": item}

    def get_data_info(self, idx: int) -> dict:
        return {"idx": idx}


# ---------------------------------------------------------------------- RepeatDataset
def test_repeat_length_indexing_and_metainfo() -> None:
    toy = _Toy(3)
    ds = RepeatDataset(toy, times=4)
    assert len(ds) == 12 and toy.inits == 1
    assert [ds[i]["item"] for i in range(12)] == [0, 1, 2] * 4
    assert ds[-1]["item"] == 2  # a list-like negative index
    assert ds[(7, 123)]["item"] == (1, 123)  # (index, seed) pairs reach the inner dataset
    assert ds.get_data_info(5) == {"idx": 2}
    meta = ds.metainfo
    meta["classes"] = ("changed",)
    assert ds.metainfo == {"classes": ("a", "b")}  # a copy, as MMEngine's deepcopy
    with pytest.raises(IndexError, match="out of range"):
        ds[12]
    assert list(ds)[-1]["item"] == 2  # iteration stops at the end
    assert "times=4" in repr(ds)


def test_repeat_lazy_init_and_nesting() -> None:
    toy = _Toy(2)
    ds = RepeatDataset(toy, times=3, lazy_init=True)
    assert toy.inits == 0 and "not loaded" in repr(ds)
    assert len(ds) == 6 and toy.inits == 1
    nested = RepeatDataset(ConcatDataset([_Toy(2), _Toy(1)]), times=2)
    assert len(nested) == 6
    assert [nested[i]["item"] for i in range(6)] == [0, 1, 0, 0, 1, 0]


def test_repeat_from_config_and_errors() -> None:
    cls = DATASETS.get("RepeatDataset")
    assert cls is RepeatDataset
    with pytest.raises(ValueError, match="times must be an integer >= 1"):
        RepeatDataset(_Toy(), times=0)
    with pytest.raises(TypeError, match="RepeatDataset.dataset must be"):
        RepeatDataset([1, 2], times=2)  # type: ignore[arg-type]
    with pytest.raises(NotImplementedError, match="inner dataset"):
        RepeatDataset(_Toy(), times=2).get_subset([0])


def test_repeat_dataset_classes_seen_by_preflight() -> None:
    from vistra.engine.preflight_dataset import check_num_classes

    cfg = {
        "model": {"decode_head": {"num_classes": 3}},
        "train_dataloader": {
            "dataset": {
                "type": "RepeatDataset",
                "times": 2,
                "dataset": {"type": "ADE20KDataset", "data_root": "nowhere", "pipeline": []},
            }
        },
    }
    problems: list[tuple[str, str]] = []
    check_num_classes(cfg, ("train",), lambda k, m: problems.append((k, m)))
    assert problems and "150 classes" in problems[0][1]


# ---------------------------------------------------------------------- ResizeToMultiple
@pytest.mark.parametrize(
    ("hw", "divisor", "expected"),
    [
        ((375, 500), 32, (384, 512)),  # both up
        ((512, 512), 32, (512, 512)),  # multiples already: unchanged
        ((33, 64), 32, (64, 64)),  # one pixel over: a whole divisor more (ceil)
        ((17, 10), 8, (24, 16)),
        ((5, 7), 1, (5, 7)),
    ],
)
def test_resize_to_multiple_shapes(hw, divisor, expected) -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    seg = rng.integers(0, 5, hw, dtype=np.uint8)
    t = TRANSFORMS.build(dict(type="ResizeToMultiple", size_divisor=divisor))
    out = t(
        {"img": img, "gt_seg_map": seg, "seg_fields": ["gt_seg_map"], "scale_factor": (1.0, 1.0)}
    )
    assert out["img"].shape == (*expected, 3) and out["img"].dtype == np.uint8
    assert out["img_shape"] == expected and out["pad_shape"] == expected
    assert out["gt_seg_map"].shape == expected
    assert set(np.unique(out["gt_seg_map"])) <= set(np.unique(seg))  # nearest: no new labels
    assert out["scale_factor"] == (1.0, 1.0)  # upstream leaves it alone
    want = imresize(img, (expected[1], expected[0]), "bilinear")
    np.testing.assert_array_equal(out["img"], want)


def test_resize_to_multiple_interpolation_and_errors() -> None:
    img = np.arange(10 * 6 * 3, dtype=np.uint8).reshape(10, 6, 3)
    out = TRANSFORMS.build(dict(type="ResizeToMultiple", size_divisor=4, interpolation="nearest"))(
        {"img": img}
    )
    np.testing.assert_array_equal(out["img"], imresize(img, (8, 12), "nearest"))
    assert repr(TRANSFORMS.build(dict(type="ResizeToMultiple"))) == (
        "ResizeToMultiple(size_divisor=32, interpolation=None)"
    )
    with pytest.raises(ValueError, match="size_divisor must be an integer >= 1"):
        TRANSFORMS.build(dict(type="ResizeToMultiple", size_divisor=0))
    with pytest.raises(ValueError, match="interpolation"):
        TRANSFORMS.build(dict(type="ResizeToMultiple", interpolation="bilinar"))
