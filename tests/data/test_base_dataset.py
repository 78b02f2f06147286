import json
import random

import numpy as np
import pytest
import torch

from vistra.data.datasets.base import BaseDataset
from vistra.data.transforms.base import BaseTransform
from vistra.registry import DATASETS


class ListDataset(BaseDataset):
    METAINFO = dict(classes=("a", "b"), palette=[[0, 0, 0], [1, 1, 1]])

    def __init__(self, n=5, **kwargs):
        self.n = n
        super().__init__(**kwargs)

    def load_data_list(self):
        return [{"img_path": f"{i}.png", "value": i} for i in range(self.n)]


class DropOdd:
    """Drops odd samples, records which it saw."""

    def __init__(self):
        self.seen = []

    def __call__(self, results):
        self.seen.append(results["value"])
        return None if results["value"] % 2 else results


class Noise(BaseTransform):
    def transform(self, results):
        results["noise"] = (random.random(), np.random.rand(), torch.rand(1).item())
        return results


def test_metainfo_merges_class_attribute_and_argument(tmp_path):
    ds = ListDataset(metainfo=dict(classes=["x", "y", "z"], extra=1))
    assert ds.metainfo == dict(classes=("x", "y", "z"), palette=[[0, 0, 0], [1, 1, 1]], extra=1)
    ds.metainfo["classes"] = "mutated"
    assert ds.CLASSES == ("x", "y", "z")
    assert ListDataset.METAINFO["classes"] == ("a", "b")
    names = tmp_path / "names.txt"
    names.write_text("cat\ndog\n\n")
    assert ListDataset(metainfo=dict(classes=str(names))).CLASSES == ("cat", "dog")
    assert ListDataset(metainfo=dict(note="not a file")).metainfo["note"] == "not a file"
    with pytest.raises(TypeError, match="metainfo must be a dict"):
        ListDataset(metainfo=["a"])


def test_data_root_joins_ann_file_and_prefixes():
    ds = ListDataset(
        data_root="/data",
        ann_file="a.json",
        data_prefix=dict(img_path="imgs", seg="/abs"),
        lazy_init=True,
    )
    assert ds.ann_file == "/data/a.json"
    assert ds.data_prefix == dict(img_path="/data/imgs", seg="/abs")
    assert ListDataset(data_root="r", data_prefix="p", lazy_init=True).data_prefix == dict(
        img_path="r/p"
    )


def test_get_data_info_adds_sample_idx_and_returns_copies():
    for serialize in (True, False):
        ds = ListDataset(serialize_data=serialize)
        info = ds.get_data_info(-1)
        assert info["sample_idx"] == 4 and info["value"] == 4
        info["value"] = 100
        assert ds.get_data_info(4)["value"] == 4
        with pytest.raises(IndexError, match="out of range"):
            ds.get_data_info(5)


def test_lazy_init_defers_loading_until_used():
    ds = ListDataset(lazy_init=True)
    assert not ds._fully_initialized
    assert len(ds) == 5 and ds._fully_initialized


def test_indices_select_a_subset():
    assert [ListDataset(indices=2).get_data_info(i)["value"] for i in range(2)] == [0, 1]
    assert ListDataset(indices=-1).get_data_info(0)["value"] == 4
    assert [ListDataset(indices=[3, 1]).get_data_info(i)["value"] for i in range(2)] == [3, 1]
    sub = ListDataset().get_subset([4, 0])
    assert (
        len(sub) == 2
        and sub.get_data_info(0)["value"] == 4
        and sub.get_data_info(1)["sample_idx"] == 1
    )


def test_mmengine_annotation_file(tmp_path):
    ann = tmp_path / "ann.json"
    ann.write_text(
        json.dumps(
            {
                "metainfo": {"classes": ["p", "q"], "source": "file"},
                "data_list": [{"img_path": "a.jpg", "gt_label": 1}],
            }
        )
    )
    ds = BaseDataset(
        ann_file=str(ann), data_prefix=dict(img_path="imgs"), metainfo=dict(classes=["own"])
    )
    assert ds.get_data_info(0)["img_path"] == "imgs/a.jpg"
    assert ds.CLASSES == ("own",) and ds.metainfo["source"] == "file"
    assert ds.get_cat_ids(0) == [1] and ds.get_gt_labels().tolist() == [1]
    assert DATASETS.get("BaseDataset") is BaseDataset
    with pytest.raises(FileNotFoundError, match="missing.json"):
        BaseDataset(ann_file=str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="data_list"):
        BaseDataset(ann_file=str(bad))


def test_training_refetches_another_sample_when_pipeline_returns_none():
    drop = DropOdd()
    ds = ListDataset(pipeline=[drop])
    np.random.seed(0)
    out = ds[1]
    assert out["value"] % 2 == 0
    assert drop.seen[0] == 1 and len(drop.seen) >= 2


def test_refetch_gives_up_after_max_refetch_with_a_clear_error():
    ds = ListDataset(n=3, pipeline=[lambda r: None], max_refetch=4)
    with pytest.raises(RuntimeError, match=r"sample 1 .*1.png.* 4 random replacements"):
        ds[1]


def test_test_mode_none_is_an_error_naming_the_sample():
    ds = ListDataset(pipeline=[DropOdd()], test_mode=True)
    assert ds[2]["value"] == 2
    with pytest.raises(RuntimeError, match=r"test pipeline dropped sample 3 .*3.png"):
        ds[3]


def test_seeded_getitem_is_a_pure_function_of_seed_and_index():
    ds = ListDataset(pipeline=[Noise()])
    a = ds[(2, 1234)]["noise"]
    ds[(0, 1)]  # other samples in between change nothing
    np.random.seed(99)
    assert ds[(2, 1234)]["noise"] == a
    assert ds[(2, 1235)]["noise"] != a


def test_seeded_getitem_keeps_the_callers_rng_independent_of_the_sample_seed():
    ds = ListDataset(pipeline=[Noise()])

    def after(sample_seed: int) -> tuple:
        random.seed(5)
        np.random.seed(5)
        torch.manual_seed(5)
        ds[(1, sample_seed)]
        return random.random(), np.random.rand(), torch.rand(1).item()

    assert after(42) == after(43)


def test_seeded_refetch_is_deterministic_too():
    ds = ListDataset(n=50, pipeline=[DropOdd(), Noise()])
    first = ds[(3, 7)]
    assert ds[(3, 7)] == first and first["value"] % 2 == 0


def test_bad_index_type_is_rejected():
    with pytest.raises(TypeError, match="index must be an int"):
        ListDataset()[1.0]


def test_seeded_samples_do_not_depend_on_the_number_of_workers():
    from torch.utils.data import DataLoader

    from vistra.data.collate import pseudo_collate

    ds = ListDataset(n=6, pipeline=[Noise()])
    order = [(i, 1000 + i) for i in (4, 1, 5, 0, 2, 3)]

    def run(workers):
        loader = DataLoader(
            ds, batch_size=2, sampler=order, collate_fn=pseudo_collate, num_workers=workers
        )
        return [tuple(b["noise"]) for b in loader]

    assert run(0) == run(2)
