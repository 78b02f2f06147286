"""0.x ``data=dict(...)`` blocks and pipelines -> 1.x dataloaders (vistra.config.legacy.data).

Each 0.x dataset file below is written as the 0.x repositories shipped it (MMSegmentation
0.x, MMClassification 0.x, MMSelfSup 0.x); its translation is compared key by key with the
1.x twin under ``configs/_base_/datasets/``, and every difference allowed is listed with
the reason next to it. The translated datasets are then built on tiny generated data with
vistra's real builders.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from fake_data import (
    write_ade20k,
    write_cifar10,
    write_cityscapes,
    write_imagenet_like,
    write_pascal_voc,
)

from vistra.config import Config, ConfigError
from vistra.config.legacy import data as legacy_data
from vistra.config.legacy.context import LegacyContext
from vistra.registry import DATASETS

TWINS = Path(__file__).resolve().parents[2] / "configs" / "_base_" / "datasets"
LOADERS = ("train_dataloader", "val_dataloader", "test_dataloader")


# ----------------------------------------------------------------------------- helpers
def translate(old: dict, task: str, iter_based: bool = False) -> LegacyContext:
    ctx = LegacyContext(
        source="legacy.py", old=copy.deepcopy(old), task=task, iter_based=iter_based
    )
    legacy_data.translate(ctx)
    return ctx


def twin(name: str) -> dict:
    return Config.fromfile(TWINS / f"{name}.py").to_dict()


def plain(value: Any) -> Any:
    """Tuples as lists and ``data_root`` without a trailing slash, for comparing."""
    if isinstance(value, dict):
        return {
            k: os.path.normpath(v) if k == "data_root" and isinstance(v, str) else plain(v)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def diff(new: Any, old: Any, path: str = "") -> dict[str, tuple]:
    """``{key path: (translated, twin)}`` for every leaf that differs."""
    new, old = plain(new), plain(old)
    if isinstance(new, dict) and isinstance(old, dict):
        out: dict[str, tuple] = {}
        for key in sorted(set(new) | set(old)):
            where = f"{path}.{key}" if path else key
            if key not in new or key not in old:
                out[where] = (new.get(key, "<missing>"), old.get(key, "<missing>"))
            else:
                out.update(diff(new[key], old[key], where))
        return out
    if isinstance(new, list) and isinstance(old, list) and len(new) == len(old):
        out = {}
        for i, (a, b) in enumerate(zip(new, old)):
            out.update(diff(a, b, f"{path}[{i}]"))
        return out
    return {} if new == old else {path: (new, old)}


def loaders(cfg: dict, keys: tuple[str, ...] = LOADERS) -> dict:
    return {k: cfg[k] for k in keys}


def seg_norm() -> dict:
    return dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)


# ----------------------------------------------------------------------------- 0.x configs
def mmseg_block(
    dataset_type: str,
    data_root: str,
    img_scale: tuple,
    crop_size: tuple,
    dirs: dict,
    samples: int,
    workers: int,
    reduce_zero_label: bool = False,
) -> dict:
    """MMSegmentation 0.x ``configs/_base_/datasets/{cityscapes,ade20k,pascal_voc12}.py``."""
    img_norm_cfg = seg_norm()
    load_ann = dict(type="LoadAnnotations")
    if reduce_zero_label:
        load_ann["reduce_zero_label"] = True
    train_pipeline = [
        dict(type="LoadImageFromFile"),
        load_ann,
        dict(type="Resize", img_scale=img_scale, ratio_range=(0.5, 2.0)),
        dict(type="RandomCrop", crop_size=crop_size, cat_max_ratio=0.75),
        dict(type="RandomFlip", prob=0.5),
        dict(type="PhotoMetricDistortion"),
        dict(type="Normalize", **img_norm_cfg),
        dict(type="Pad", size=crop_size, pad_val=0, seg_pad_val=255),
        dict(type="DefaultFormatBundle"),
        dict(type="Collect", keys=["img", "gt_semantic_seg"]),
    ]
    test_pipeline = [
        dict(type="LoadImageFromFile"),
        dict(
            type="MultiScaleFlipAug",
            img_scale=img_scale,
            # img_ratios=[0.5, 0.75, 1.0, 1.25, 1.5, 1.75],
            flip=False,
            transforms=[
                dict(type="Resize", keep_ratio=True),
                dict(type="RandomFlip"),
                dict(type="Normalize", **img_norm_cfg),
                dict(type="ImageToTensor", keys=["img"]),
                dict(type="Collect", keys=["img"]),
            ],
        ),
    ]
    split = {
        s: dict(type=dataset_type, data_root=data_root, **d, pipeline=p)
        for (s, d), p in zip(dirs.items(), (train_pipeline, test_pipeline, test_pipeline))
    }
    data = dict(samples_per_gpu=samples, workers_per_gpu=workers, **split)
    return dict(
        dataset_type=dataset_type,
        data_root=data_root,
        img_norm_cfg=img_norm_cfg,
        crop_size=crop_size,
        train_pipeline=train_pipeline,
        test_pipeline=test_pipeline,
        data=data,
    )


def mmseg_cityscapes() -> dict:
    val = dict(img_dir="leftImg8bit/val", ann_dir="gtFine/val")
    dirs = dict(train=dict(img_dir="leftImg8bit/train", ann_dir="gtFine/train"), val=val, test=val)
    return mmseg_block(
        "CityscapesDataset", "data/cityscapes/", (2048, 1024), (512, 1024), dirs, 2, 2
    )


def mmseg_ade20k() -> dict:
    val = dict(img_dir="images/validation", ann_dir="annotations/validation")
    dirs = dict(train=dict(img_dir="images/training", ann_dir="annotations/training"), val=val)
    dirs["test"] = val
    root = "data/ade/ADEChallengeData2016"
    return mmseg_block("ADE20KDataset", root, (2048, 512), (512, 512), dirs, 4, 4, True)


def mmseg_voc_aug() -> dict:
    """``pascal_voc12.py`` with ``pascal_voc12_aug.py``'s lists of ann_dir and split."""
    sets = "ImageSets/Segmentation"
    train = dict(
        img_dir="JPEGImages",
        ann_dir=["SegmentationClass", "SegmentationClassAug"],
        split=[f"{sets}/train.txt", f"{sets}/aug.txt"],
    )
    val = dict(img_dir="JPEGImages", ann_dir="SegmentationClass", split=f"{sets}/val.txt")
    dirs = dict(train=train, val=val, test=val)
    root = "data/VOCdevkit/VOC2012"
    return mmseg_block("PascalVOCDataset", root, (2048, 512), (512, 512), dirs, 4, 4)


def mmcls_cifar10() -> dict:
    """MMClassification 0.x ``configs/_base_/datasets/cifar10_bs16.py``."""
    img_norm_cfg = dict(
        mean=[125.307, 122.961, 113.8575], std=[51.5865, 50.847, 51.255], to_rgb=False
    )
    train_pipeline = [
        dict(type="RandomCrop", size=32, padding=4),
        dict(type="RandomFlip", flip_prob=0.5, direction="horizontal"),
        dict(type="Normalize", **img_norm_cfg),
        dict(type="ImageToTensor", keys=["img"]),
        dict(type="ToTensor", keys=["gt_label"]),
        dict(type="Collect", keys=["img", "gt_label"]),
    ]
    test_pipeline = [
        dict(type="Normalize", **img_norm_cfg),
        dict(type="ImageToTensor", keys=["img"]),
        dict(type="Collect", keys=["img"]),
    ]
    test = dict(type="CIFAR10", data_prefix="data/cifar10", pipeline=test_pipeline, test_mode=True)
    data = dict(
        samples_per_gpu=16,
        workers_per_gpu=2,
        train=dict(type="CIFAR10", data_prefix="data/cifar10", pipeline=train_pipeline),
        val=test,
        test=test,
    )
    return dict(dataset_type="CIFAR10", img_norm_cfg=img_norm_cfg, data=data,
                train_pipeline=train_pipeline, test_pipeline=test_pipeline)  # fmt: skip


def mmcls_imagenet() -> dict:
    """MMClassification 0.x ``configs/_base_/datasets/imagenet_bs32.py``."""
    img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
    train_pipeline = [
        dict(type="LoadImageFromFile"),
        dict(type="RandomResizedCrop", size=224),
        dict(type="RandomFlip", flip_prob=0.5, direction="horizontal"),
        dict(type="Normalize", **img_norm_cfg),
        dict(type="ImageToTensor", keys=["img"]),
        dict(type="ToTensor", keys=["gt_label"]),
        dict(type="Collect", keys=["img", "gt_label"]),
    ]
    test_pipeline = [
        dict(type="LoadImageFromFile"),
        dict(type="Resize", size=(256, -1)),
        dict(type="CenterCrop", crop_size=224),
        dict(type="Normalize", **img_norm_cfg),
        dict(type="ImageToTensor", keys=["img"]),
        dict(type="Collect", keys=["img"]),
    ]
    val = dict(
        type="ImageNet",
        data_prefix="data/imagenet/val",
        ann_file="data/imagenet/meta/val.txt",
        pipeline=test_pipeline,
    )
    data = dict(
        samples_per_gpu=32,
        workers_per_gpu=2,
        train=dict(type="ImageNet", data_prefix="data/imagenet/train", pipeline=train_pipeline),
        val=val,
        test=val,
    )
    return dict(img_norm_cfg=img_norm_cfg, train_pipeline=train_pipeline,
                test_pipeline=test_pipeline, data=data)  # fmt: skip


SELFSUP_NORM = dict(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
SELFSUP_SOURCE = dict(
    type="ImageNet", data_prefix="data/imagenet/train", ann_file="data/imagenet/meta/train.txt"
)


def mmselfsup_mae() -> dict:
    """MMSelfSup 0.x ``configs/selfsup/_base_/datasets/imagenet_mae.py`` with the batch
    size of ``mae_vit-base-p16_8xb512-coslr-400e_in1k.py`` (``samples_per_gpu=512``)."""
    train_pipeline = [
        dict(type="RandomResizedCrop", size=224, scale=(0.2, 1.0), interpolation=3),
        dict(type="RandomHorizontalFlip"),
        dict(type="ToTensor"),
        dict(type="Normalize", **SELFSUP_NORM),
    ]
    train = dict(
        type="SingleViewDataset",
        data_source=dict(SELFSUP_SOURCE),
        pipeline=train_pipeline,
        prefetch=False,
    )
    return dict(data_source="ImageNet", dataset_type="SingleViewDataset",
                img_norm_cfg=SELFSUP_NORM, train_pipeline=train_pipeline, prefetch=False,
                persistent_workers=True,  # MMSelfSup 0.x default_runtime.py
                data=dict(samples_per_gpu=512, workers_per_gpu=8, train=train))  # fmt: skip


def mmselfsup_simclr() -> dict:
    """MMSelfSup 0.x ``configs/selfsup/_base_/datasets/imagenet_simclr.py``."""
    jitter = dict(type="ColorJitter", brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2)
    train_pipeline = [
        dict(type="RandomResizedCrop", size=224),
        dict(type="RandomHorizontalFlip"),
        dict(type="RandomAppliedTrans", transforms=[jitter], p=0.8),
        dict(type="RandomGrayscale", p=0.2),
        dict(type="GaussianBlur", sigma_min=0.1, sigma_max=2.0, p=0.5),
        dict(type="ToTensor"),
        dict(type="Normalize", **SELFSUP_NORM),
    ]
    train = dict(
        type="MultiViewDataset",
        data_source=dict(SELFSUP_SOURCE),
        num_views=[2],
        pipelines=[train_pipeline],
        prefetch=False,
    )
    data = dict(samples_per_gpu=32, workers_per_gpu=4, drop_last=True, train=train)
    return dict(img_norm_cfg=SELFSUP_NORM, train_pipeline=train_pipeline, prefetch=False,
                persistent_workers=True, data=data)  # fmt: skip


# ----------------------------------------------------------------------------- vs 1.x twins
def test_cityscapes_matches_its_1x_twin():
    ctx = translate(mmseg_cityscapes(), "segmentation", iter_based=True)
    assert ctx.old == mmseg_cityscapes()  # the 0.x config is read, never changed
    new, ref = ctx.new, twin("cityscapes")
    # 0.x validated and tested with workers_per_gpu (2) workers; the 1.x file uses 4
    assert diff(loaders(new), loaders(ref)) == {
        "val_dataloader.num_workers": (2, 4),
        "test_dataloader.num_workers": (2, 4),
    }
    for key in ("train_pipeline", "test_pipeline", "tta_pipeline"):
        assert diff(new[key], ref[key]) == {}, key
    assert new["tta_model"] == dict(type="SegTTAModel")
    # Normalize and Pad moved to the model's SegDataPreProcessor (as in 1.x's models)
    assert ctx.preprocessor == dict(**seg_norm(), size=(512, 1024), pad_val=0, seg_pad_val=255)
    for gone in ("data", "img_norm_cfg"):
        assert gone not in new
    assert "data.train (CityscapesDataset) -> train_dataloader (batch 2, 2 workers, " \
        "InfiniteSampler)" in ctx.notes  # fmt: skip


def test_ade20k_matches_its_1x_twin():
    ctx = translate(mmseg_ade20k(), "segmentation", iter_based=True)
    new, ref = ctx.new, twin("ade20k")
    assert diff(loaders(new), loaders(ref)) == {}
    for key in ("train_pipeline", "test_pipeline", "tta_pipeline"):
        assert diff(new[key], ref[key]) == {}, key
    # the test pipeline loads the masks with the training pipeline's reduce_zero_label
    assert new["test_pipeline"][2] == dict(type="LoadAnnotations", reduce_zero_label=True)
    assert ctx.preprocessor["size"] == (512, 512)


def test_voc_aug_lists_become_a_concat_dataset_like_the_twin():
    ctx = translate(mmseg_voc_aug(), "segmentation", iter_based=True)
    ref = twin("pascal_voc12_aug")
    # the 1.x VOC-aug file keeps Pad(size=crop_size) in its training pipeline; the
    # translation moves Pad to the preprocessor (size=crop_size), as every other 1.x
    # MMSegmentation dataset file does
    for part in ref["train_dataloader"]["dataset"]["datasets"]:
        part["pipeline"] = [s for s in part["pipeline"] if s["type"] != "Pad"]
    assert diff(loaders(ctx.new), loaders(ref)) == {}
    assert any("ConcatDataset of 2 datasets" in n for n in ctx.notes)


def test_cifar10_matches_its_1x_twin():
    ctx = translate(mmcls_cifar10(), "classification")
    new, ref = ctx.new, twin("cifar10_bs16")
    assert diff(loaders(new), loaders(ref)) == {}
    assert diff(new["train_pipeline"], ref["train_pipeline"]) == {}
    assert diff(new["test_pipeline"], ref["test_pipeline"]) == {}
    # CIFAR arrays are RGB: 0.x normalised them with to_rgb=False, as 1.x does
    preprocessor = {k: ref["data_preprocessor"][k] for k in ("mean", "std", "to_rgb")}
    assert ctx.preprocessor == preprocessor


def imagenet_paths(dataset: dict) -> tuple[str, str | None]:
    """(image folder, annotation file) relative to the working directory."""
    root = dataset.get("data_root", "")
    prefix = dataset.get("data_prefix") or dataset.get("split", "")
    prefix = prefix["img_path"] if isinstance(prefix, dict) else prefix
    ann = dataset.get("ann_file")
    return os.path.normpath(os.path.join(root, prefix)), (
        os.path.normpath(os.path.join(root, ann)) if ann else None
    )


def test_imagenet_matches_its_1x_twin():
    ctx = translate(mmcls_imagenet(), "classification")
    new, ref = ctx.new, twin("imagenet_bs32")
    found = diff(loaders(new), loaders(ref))
    # 0.x used 2 workers per GPU, the 1.x file 5
    for key in LOADERS:
        assert found.pop(f"{key}.num_workers") == (2, 5)
    # 0.x named folders relative to the working directory (data_prefix, ann_file); the
    # 1.x file names data_root and split: the same folders (built on disk below)
    paths = {"data_root", "data_prefix", "split"}
    assert set(found) == {
        *(f"{key}.dataset.{name}" for key in LOADERS for name in paths),
        "val_dataloader.dataset.ann_file",  # split='val' finds meta/val.txt itself
        "test_dataloader.dataset.ann_file",
    }
    for key in LOADERS:
        new_ds, ref_ds = new[key]["dataset"], ref[key]["dataset"]
        assert diff(new_ds["pipeline"], ref_ds["pipeline"]) == {}
        assert imagenet_paths(new_ds)[0] == imagenet_paths(ref_ds)[0]
    assert new["val_dataloader"]["dataset"]["ann_file"] == "data/imagenet/meta/val.txt"
    assert ctx.preprocessor == dict(mean=[123.675, 116.28, 103.53],
                                    std=[58.395, 57.12, 57.375], to_rgb=True)  # fmt: skip


def test_mae_matches_its_1x_twin():
    ctx = translate(mmselfsup_mae(), "selfsup")
    new, ref = ctx.new, twin("imagenet_bs512_mae")
    found = diff(new["train_dataloader"], ref["train_dataloader"])
    # 0.x paths were relative to the working directory (data/imagenet/train and
    # data/imagenet/meta/train.txt); the 1.x file splits off data_root: the same files
    assert set(found) == {"dataset.data_root", "dataset.data_prefix.img_path", "dataset.ann_file"}
    assert imagenet_paths(new["train_dataloader"]["dataset"]) == imagenet_paths(
        ref["train_dataloader"]["dataset"]
    )
    assert diff(new["train_pipeline"], ref["train_pipeline"]) == {}
    # torchvision's 0..1 Normalize on RGB images -> 0..255 units and a BGR->RGB flip
    expected = {k: ref["data_preprocessor"][k] for k in ("mean", "std", "to_rgb")}
    assert ctx.preprocessor == expected
    assert "val_dataloader" not in new and "test_dataloader" not in new
    assert any("no val split" in n for n in ctx.notes)
    for gone in ("prefetch", "persistent_workers", "img_norm_cfg"):
        assert gone not in new


def test_simclr_matches_its_1x_twin():
    ctx = translate(mmselfsup_simclr(), "selfsup")
    new, ref = ctx.new["train_dataloader"], twin("imagenet_bs32_simclr")["train_dataloader"]
    found = diff(new, ref)
    # MMSelfSup 0.x's data.drop_last=True is kept (the 1.x file leaves it out)
    assert found.pop("drop_last") == (True, "<missing>")
    # data_prefix/ann_file relative to the working directory vs data_root and split
    assert set(found) == {"dataset.data_root", "dataset.data_prefix", "dataset.split",
                          "dataset.ann_file"}  # fmt: skip
    assert imagenet_paths(new["dataset"])[0] == imagenet_paths(ref["dataset"])[0]
    assert diff(new["dataset"]["pipeline"], ref["dataset"]["pipeline"]) == {}
    assert new["dataset"]["pipeline"][1]["num_views"] == 2


# ----------------------------------------------------------------------------- built on disk
@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a fresh folder: 0.x paths are relative to the working directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def build(loader: dict) -> Any:
    return DATASETS.build(copy.deepcopy(loader["dataset"]))


def img_paths(dataset: Any) -> list[str]:
    return [os.path.normpath(dataset.get_data_info(i)["img_path"]) for i in range(len(dataset))]


@pytest.mark.parametrize(
    "block, writer, root, twin_name, reduce_zero",
    [
        (mmseg_cityscapes, write_cityscapes, "data/cityscapes", "cityscapes", False),
        (mmseg_ade20k, write_ade20k, "data/ade/ADEChallengeData2016", "ade20k", True),
    ],
)
def test_segmentation_datasets_build_and_load(in_tmp, block, writer, root, twin_name, reduce_zero):
    writer(in_tmp / root, n=2, img_size=32)
    new, ref = translate(block(), "segmentation", True).new, twin(twin_name)
    for key in ("train_dataloader", "val_dataloader"):
        assert img_paths(build(new[key])) == img_paths(build(ref[key]))
    val = build(new["val_dataloader"])
    sample = val[0]
    assert sample["inputs"].dtype == torch.uint8 and sample["inputs"].shape[0] == 3
    seg = sample["data_samples"].gt_sem_seg.data
    assert seg.shape[1:] == tuple(sample["data_samples"].ori_shape)  # masks at full size
    assert sample["data_samples"].reduce_zero_label is reduce_zero


def test_voc_aug_builds_both_parts(in_tmp):
    write_pascal_voc(in_tmp / "data/VOCdevkit/VOC2012", n=2, img_size=32)
    new = translate(mmseg_voc_aug(), "segmentation", True).new
    dataset = build(new["train_dataloader"])
    assert len(dataset) == 4
    assert "SegmentationClassAug" in dataset.get_data_info(3)["seg_map_path"]


def test_cifar10_builds_and_loads(in_tmp):
    write_cifar10(in_tmp / "data/cifar10", n=4)
    new = translate(mmcls_cifar10(), "classification").new
    train, test = build(new["train_dataloader"]), build(new["test_dataloader"])
    assert len(train) == 20 and len(test) == 4  # 5 training batches of 4, one test batch
    sample = train[0]
    assert sample["inputs"].shape == (3, 32, 32)
    assert sample["data_samples"].gt_label.numel() == 1


def test_imagenet_builds_the_same_samples_as_the_twin(in_tmp):
    write_imagenet_like(in_tmp / "data/imagenet", n_train=4, n_val=2, img_size=48)
    # the tiny data has 2 classes, not ImageNet's 1000: name them (0.x `classes=`)
    old, ref = mmcls_imagenet(), twin("imagenet_bs32")
    classes = "data/imagenet/meta/classes.txt"
    for split in ("train", "val"):
        old["data"][split]["classes"] = classes
    new = translate(old, "classification").new
    assert new["val_dataloader"]["dataset"]["metainfo"] == dict(classes=classes)
    for key in ("train_dataloader", "val_dataloader"):
        ref[key]["dataset"]["metainfo"] = dict(classes=classes)
        ours, theirs = build(new[key]), build(ref[key])
        # 0.x scanned the training class folders (sorted paths); the 1.x twin reads
        # meta/train.txt when it exists (its order): the same labelled images
        assert sorted(zip(img_paths(ours), ours.get_gt_labels().tolist())) == sorted(
            zip(img_paths(theirs), theirs.get_gt_labels().tolist())
        )
    sample = build(new["val_dataloader"])[0]
    assert sample["inputs"].shape == (3, 224, 224)


@pytest.mark.parametrize("block", [mmselfsup_mae, mmselfsup_simclr])
def test_selfsup_datasets_build_and_load(in_tmp, block):
    write_imagenet_like(in_tmp / "data/imagenet", n_train=2, n_val=1, img_size=48)
    new = translate(block(), "selfsup").new
    sample = build(new["train_dataloader"])[0]
    views = sample["inputs"] if isinstance(sample["inputs"], list) else [sample["inputs"]]
    assert len(views) == (2 if block is mmselfsup_simclr else 1)
    assert all(v.shape == (3, 224, 224) for v in views)


def test_translated_loaders_yield_batches(in_tmp):
    """Through the runner's own dataloader builder (workers 0 to stay in-process)."""
    from vistra.engine.build import build_dataloader

    write_cifar10(in_tmp / "data/cifar10", n=4)
    write_imagenet_like(in_tmp / "data/imagenet", n_train=4, n_val=1, img_size=48)
    cifar = translate(mmcls_cifar10(), "classification").new["train_dataloader"]
    simclr = translate(mmselfsup_simclr(), "selfsup").new["train_dataloader"]
    simclr["batch_size"] = 2
    for loader in (cifar, simclr):
        loader.update(num_workers=0, persistent_workers=False)
    batch = next(iter(build_dataloader(cifar, "train_dataloader", seed=0, rank=0)))
    assert len(batch["inputs"]) == 16 and batch["inputs"][0].shape == (3, 32, 32)
    batch = next(iter(build_dataloader(simclr, "train_dataloader", seed=0, rank=0)))
    # default_collate stacks each view: one (batch, 3, 224, 224) tensor per view
    assert [v.shape for v in batch["inputs"]] == [(2, 3, 224, 224)] * 2


# ----------------------------------------------------------------------------- loaders
def test_val_dataloader_overrides_and_missing_test_split():
    old = mmcls_cifar10()
    del old["data"]["test"]
    old["data"]["val_dataloader"] = dict(samples_per_gpu=64, workers_per_gpu=0)
    old["data"]["persistent_workers"] = True
    ctx = translate(old, "classification", iter_based=True)
    val, test = ctx.new["val_dataloader"], ctx.new["test_dataloader"]
    assert (val["batch_size"], val["num_workers"]) == (64, 0)
    assert "persistent_workers" not in val  # no workers to keep alive
    assert ctx.new["train_dataloader"]["persistent_workers"] is True
    assert ctx.new["train_dataloader"]["sampler"] == dict(type="InfiniteSampler", shuffle=True)
    assert test == val
    assert any("no test split" in n for n in ctx.notes)


def test_repeat_dataset_is_unwrapped_for_iteration_based_training():
    old = mmseg_cityscapes()
    old["data"]["train"] = dict(type="RepeatDataset", times=40000, dataset=old["data"]["train"])
    ctx = translate(old, "segmentation", iter_based=True)
    assert ctx.new["train_dataloader"]["dataset"]["type"] == "CityscapesDataset"
    assert any("RepeatDataset" in n for n in ctx.notes)


# ----------------------------------------------------------------------------- pipelines
def seg_pipeline(*steps: dict, test: bool = False) -> list[dict]:
    old = mmseg_cityscapes()
    key = "val" if test else "train"
    old["data"][key]["pipeline"] = [dict(type="LoadImageFromFile"), *steps]
    return translate(old, "segmentation", True).new[f"{key}_dataloader"]["dataset"]["pipeline"]


def cls_pipeline(*steps: dict) -> list[dict]:
    old = mmcls_imagenet()
    old["data"]["train"]["pipeline"] = list(steps)
    return translate(old, "classification").new["train_dataloader"]["dataset"]["pipeline"]


def test_mmcls_sizes_are_h_w_and_1x_scales_w_h():
    steps = cls_pipeline(
        dict(type="Resize", size=(256, -1), backend="pillow"),
        dict(type="Resize", size=(224, 320)),
        dict(type="CenterCrop", crop_size=(224, 320)),
        dict(type="RandomResizedCrop", size=224, scale=(0.2, 1.0), ratio=(0.5, 2.0)),
    )
    assert steps == [
        dict(type="ResizeEdge", scale=256, edge="short", backend="pillow"),
        dict(type="Resize", scale=(320, 224)),
        dict(type="CenterCrop", crop_size=(320, 224)),
        dict(
            type="RandomResizedCrop",
            scale=224,
            crop_ratio_range=(0.2, 1.0),
            aspect_ratio_range=(0.5, 2.0),
        ),  # fmt: skip
        dict(type="PackInputs"),
    ]


def test_multiscale_range_maps_onto_random_resize():
    steps = seg_pipeline(dict(type="Resize", img_scale=[(2048, 512), (2048, 1024)]))
    assert steps[1] == dict(type="RandomResize", scale=[(2048, 512), (2048, 1024)], keep_ratio=True)


def test_multi_scale_flip_aug_with_ratios_gives_its_ratios_to_tta():
    old = mmseg_cityscapes()
    msfa = old["data"]["test"]["pipeline"][1]
    msfa.update(img_ratios=[0.75, 1.0], flip=True)
    ctx = translate(old, "segmentation", True)
    resizes = ctx.new["tta_pipeline"][1]["transforms"][0]
    assert [r["scale_factor"] for r in resizes] == [0.75, 1.0]
    assert any("--tta" in n for n in ctx.notes)
    assert ctx.new["test_dataloader"]["dataset"]["pipeline"][1]["scale"] == (2048, 1024)


def test_collect_meta_keys_and_local_file_client_are_noted():
    old = mmseg_cityscapes()
    pipeline = old["data"]["train"]["pipeline"]
    pipeline[0]["file_client_args"] = dict(backend="disk")
    pipeline[-1]["meta_keys"] = ("filename", "ori_shape")
    ctx = translate(old, "segmentation", True)
    assert ctx.new["train_dataloader"]["dataset"]["pipeline"][0] == dict(type="LoadImageFromFile")
    assert any("file_client_args" in n for n in ctx.notes)
    assert any("meta_keys" in n for n in ctx.notes)


# ----------------------------------------------------------------------------- errors
def test_prefetch_is_an_error():
    old = mmselfsup_mae()
    old["prefetch"] = True
    with pytest.raises(ConfigError, match=r"legacy\.py: prefetch: prefetch=True"):
        translate(old, "selfsup")
    old = mmselfsup_mae()
    old["data"]["train"]["prefetch"] = True
    with pytest.raises(ConfigError, match=r"data\.train\.prefetch"):
        translate(old, "selfsup")


def test_repeat_dataset_is_an_error_for_epoch_based_training():
    old = mmcls_cifar10()
    old["data"]["train"] = dict(type="RepeatDataset", times=3, dataset=old["data"]["train"])
    with pytest.raises(ConfigError, match=r"data\.train\.type: RepeatDataset .*epochs"):
        translate(old, "classification")


def test_conflicting_normalize_is_an_error():
    old = mmseg_cityscapes()
    old["data"]["val"]["pipeline"][1]["transforms"][2]["mean"] = [0.0, 0.0, 0.0]
    with pytest.raises(ConfigError, match=r"data\.val\.pipeline: Normalize .* differs"):
        translate(old, "segmentation", True)


@pytest.mark.parametrize(
    "step, match",
    [
        (dict(type="Resize", img_scale=[(1, 2), (3, 4)], multiscale_mode="value"), "Random"),
        (dict(type="LoadImageFromFile", file_client_args=dict(backend="petrel")), "local"),
        (dict(type="Resize", keep_ratio=True), "MultiScaleFlipAug"),
    ],
)
def test_untranslatable_steps_are_errors(step, match):
    with pytest.raises(ConfigError, match=rf"data\.train\.pipeline\[1\].*{match}"):
        seg_pipeline(step)


def test_unknown_data_key_suggests_the_right_one():
    old = mmcls_cifar10()
    old["data"]["sample_per_gpu"] = 8
    with pytest.raises(ConfigError, match="did you mean 'samples_per_gpu'"):
        translate(old, "classification")
