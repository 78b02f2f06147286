import numpy as np
import pytest

from vistra.data.datasets.custom import CustomDataset
from vistra.data.datasets.imagenet import ImageNet
from vistra.data.datasets.shapes import (
    PALETTE,
    ShapesDataset,
    ShapesSegDataset,
    render_split,
    write_shapes_dataset,
)
from vistra.data.datasets.shapes_render import (
    SHAPE_NAMES,
    render_shape_sample,
    sample_rng,
    shape_mask,
)
from vistra.registry import DATASETS


def test_render_is_deterministic_and_well_formed():
    img, label, mask = render_shape_sample(np.random.default_rng(3), 48, 6)
    img2, label2, mask2 = render_shape_sample(np.random.default_rng(3), 48, 6)
    assert img.tobytes() == img2.tobytes() and label == label2 and np.array_equal(mask, mask2)
    assert (
        img.shape == (48, 48, 3)
        and img.dtype == np.uint8
        and mask.shape == (48, 48)
        and mask.dtype == np.uint8
    )
    assert 0 <= label < 6 and set(np.unique(mask)) <= set(range(7))


def test_main_shape_is_large_and_labelled_in_the_mask():
    for i in range(40):
        _, label, mask = render_split("train", i, seed=0, img_size=64, num_classes=6)
        share = (mask == label + 1).mean()
        assert share > 0.05, (i, share)  # the smallest main shape (a 45% triangle) covers ~9%


def test_all_ten_kinds_draw_distinct_non_empty_masks():
    masks = [shape_mask(kind, 64, (32, 32), 24, 0.3) for kind in SHAPE_NAMES]
    assert all(m.sum() > 200 for m in masks)
    for i in range(len(masks)):
        for j in range(i + 1, len(masks)):
            assert (masks[i] != masks[j]).sum() > 30, (SHAPE_NAMES[i], SHAPE_NAMES[j])


def test_every_class_appears_and_num_classes_is_checked():
    labels = {render_split("train", i, 0, 32, 6)[1] for i in range(60)}
    assert labels == set(range(6))
    with pytest.raises(ValueError, match="num_classes"):
        render_shape_sample(np.random.default_rng(0), 32, 11)
    with pytest.raises(ValueError, match="img_size"):
        render_shape_sample(np.random.default_rng(0), 4, 3)


def test_dataset_samples_are_in_memory_bgr_and_deterministic():
    ds = DATASETS.build(dict(type="ShapesDataset", num_samples=6, img_size=32, seed=1))
    again = ShapesDataset(num_samples=6, img_size=32, seed=1)
    info = ds.get_data_info(2)
    assert (
        info["img"].shape == (32, 32, 3)
        and info["img_shape"] == (32, 32)
        and info["ori_shape"] == (32, 32)
    )
    assert info["img"].tobytes() == again.get_data_info(2)["img"].tobytes()
    assert ds.CLASSES == ("circle", "square", "triangle", "star", "cross", "ring")
    assert ds.get_gt_labels().tolist() == again.get_gt_labels().tolist()


def test_sample_i_does_not_depend_on_dataset_size_and_splits_differ():
    small = ShapesDataset(num_samples=3, img_size=32)
    big = ShapesDataset(num_samples=9, img_size=32)
    assert small.get_data_info(2)["img"].tobytes() == big.get_data_info(2)["img"].tobytes()
    val = ShapesDataset(num_samples=3, img_size=32, split="val")
    test = ShapesDataset(num_samples=3, img_size=32, split="test")
    other_seed = ShapesDataset(num_samples=3, img_size=32, seed=1)
    for i in range(3):
        imgs = [d.get_data_info(i)["img"].tobytes() for d in (small, val, test, other_seed)]
        assert len(set(imgs)) == 4
    with pytest.raises(ValueError, match="split"):
        ShapesDataset(split="validation")


def test_pipeline_runs_on_in_memory_samples_with_seeds():
    ds = ShapesDataset(
        num_samples=4,
        img_size=32,
        pipeline=[dict(type="RandomResizedCrop", scale=24), dict(type="PackInputs")],
    )
    a, b = ds[(1, 5)], ds[(1, 5)]
    assert a["inputs"].shape == (3, 24, 24) and np.array_equal(
        a["inputs"].numpy(), b["inputs"].numpy()
    )
    assert int(a["data_samples"].gt_label) == ds.get_data_info(1)["gt_label"]


def test_seg_dataset_fields_and_metainfo():
    ds = DATASETS.build(dict(type="ShapesSegDataset", num_samples=3, num_classes=4, img_size=32))
    info = ds.get_data_info(0)
    assert info["gt_seg_map"].shape == (32, 32) and info["seg_fields"] == ["gt_seg_map"]
    assert info["reduce_zero_label"] is False
    assert ds.metainfo["classes"] == ("background", "circle", "square", "triangle", "star")
    assert ds.metainfo["palette"] == [list(c) for c in PALETTE[:5]]
    out = ShapesSegDataset(
        num_samples=2,
        img_size=32,
        pipeline=[dict(type="RandomFlip", prob=1.0), dict(type="PackSegInputs")],
    )[0]
    raw = ShapesSegDataset(num_samples=2, img_size=32).get_data_info(0)["gt_seg_map"]
    assert np.array_equal(out["data_samples"].gt_sem_seg.data[0].numpy(), raw[:, ::-1])


@pytest.mark.filterwarnings("ignore:no image with extension")  # 8 samples may miss a class
def test_cls_writer_round_trips_through_custom_and_imagenet(tmp_path):
    counts = write_shapes_dataset(tmp_path, task="cls", num_train=8, num_val=4, img_size=32, seed=2)
    assert counts == {"train": 8, "val": 4}
    memory = ShapesDataset(num_samples=8, img_size=32, seed=2)
    load = [dict(type="LoadImageFromFile")]
    classes = str(tmp_path / "meta" / "classes.txt")
    listed = CustomDataset(
        data_root=str(tmp_path),
        data_prefix="train",
        ann_file="meta/train.txt",
        metainfo=dict(classes=classes),
        pipeline=load,
    )
    assert listed.CLASSES == memory.CLASSES
    for i in range(8):
        disk, mem = listed[i], memory.get_data_info(i)
        assert disk["img"].tobytes() == mem["img"].tobytes() and disk["gt_label"] == mem["gt_label"]
    scanned = CustomDataset(data_prefix=str(tmp_path / "train"), pipeline=load)
    assert sorted(scanned.CLASSES) == sorted(memory.CLASSES)  # folder order is alphabetical
    names = {scanned.CLASSES[scanned.get_data_info(i)["gt_label"]] for i in range(len(scanned))}
    assert names == {memory.CLASSES[label] for label in memory.get_gt_labels()}
    val = ImageNet(data_root=str(tmp_path), split="val", metainfo=dict(classes=classes))
    mem_val = ShapesDataset(num_samples=4, img_size=32, seed=2, split="val")
    assert val.get_gt_labels().tolist() == mem_val.get_gt_labels().tolist()
    on_disk = ShapesDataset(data_root=str(tmp_path), split="val", img_size=32, pipeline=load)
    assert on_disk[3]["img"].tobytes() == mem_val.get_data_info(3)["img"].tobytes()


def test_seg_writer_round_trips_through_load_annotations(tmp_path):
    write_shapes_dataset(tmp_path, task="seg", num_train=3, num_val=2, img_size=32, seed=4)
    pipeline = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations")]
    disk = ShapesSegDataset(data_root=str(tmp_path), split="val", pipeline=pipeline)
    memory = ShapesSegDataset(num_samples=2, img_size=32, seed=4, split="val")
    assert len(disk) == 2
    for i in range(2):
        out, ref = disk[i], memory.get_data_info(i)
        assert out["img"].tobytes() == ref["img"].tobytes()
        assert np.array_equal(out["gt_seg_map"], ref["gt_seg_map"]) and out["seg_fields"] == [
            "gt_seg_map"
        ]


def test_missing_on_disk_data_points_to_the_writer(tmp_path):
    with pytest.raises(FileNotFoundError, match="make_shapes.py --out .* --task cls"):
        ShapesDataset(data_root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="--task seg"):
        ShapesSegDataset(data_root=str(tmp_path))


def test_make_shapes_cli(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "tools" / "dataset_converters" / "make_shapes.py"
    spec = importlib.util.spec_from_file_location("make_shapes", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(
        [
            "--out",
            str(tmp_path),
            "--task",
            "seg",
            "--num-train",
            "2",
            "--num-val",
            "1",
            "--img-size",
            "16",
            "--seed",
            "3",
        ]
    )
    assert sorted(p.name for p in (tmp_path / "ann_dir" / "train").iterdir()) == [
        "000000.png",
        "000001.png",
    ]
    assert "wrote {'train': 2, 'val': 1}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        module.main(["--out", str(tmp_path), "--num-classes", "11"])


def test_sample_rng_is_independent_per_index():
    a = sample_rng(0, 0, 1).random(3)
    assert np.array_equal(a, sample_rng(0, 0, 1).random(3))
    assert not np.array_equal(a, sample_rng(0, 0, 2).random(3))
