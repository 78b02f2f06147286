"""End-to-end segmentation through the real CLI: train, test --out DIR, --show-dir."""

from __future__ import annotations

import json

import numpy as np
import pytest
from e2e_support import REPO, run_cli, run_dirs
from PIL import Image

pytestmark = pytest.mark.slow

OVERRIDES = [
    "train_cfg.max_iters=4",
    "train_cfg.val_interval=4",
    "train_dataloader.batch_size=4",
    "train_dataloader.dataset.num_samples=8",
    "val_dataloader.dataset.num_samples=6",
    "test_dataloader.dataset.num_samples=6",
    "test_dataloader.batch_size=4",
    "default_hooks.checkpoint.interval=4",
    "default_hooks.logger.interval=2",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg")
    cfg = REPO / "configs" / "quickstart" / "seg_shapes.py"
    result = run_cli(
        "train", cfg, "--work-dir", root / "work", "--cfg-options", *OVERRIDES, cwd=root
    )
    assert result.returncode == 0, result.output
    return cfg, root / "work" / "iter_4.pth", root


def test_training_logs_iou_metrics(trained):
    _, ckpt, root = trained
    assert ckpt.exists()
    (run,) = run_dirs(root / "work")
    log = (run / f"{run.name}.log").read_text()
    assert "Iter(val) [1/1]" in log and "mIoU:" in log and "aAcc:" in log
    assert "decode.loss_ce" in log and "decode.acc_seg" in log


def test_out_dir_writes_index_pngs_and_metrics_json_has_per_class(trained, tmp_path):
    cfg, ckpt, _ = trained
    out = tmp_path / "preds"
    result = run_cli(
        "test",
        cfg,
        ckpt,
        "--work-dir",
        tmp_path / "t",
        "--out",
        out,
        "--cfg-options",
        *OVERRIDES,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.output
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 6
    mask = np.asarray(Image.open(pngs[0]))
    assert mask.shape == (64, 64) and mask.max() <= 6  # class indices of 7 classes
    (run,) = run_dirs(tmp_path / "t")
    metrics = json.loads((run / f"{run.name}.json").read_text())
    assert {"aAcc", "mIoU", "mAcc"} <= set(metrics)
    per_class_iou = metrics["per_class"]["IoU"]
    assert len(per_class_iou) == 7 and "background" in per_class_iou


def test_show_dir_writes_overlays(trained, tmp_path):
    cfg, ckpt, _ = trained
    vis = tmp_path / "vis"
    result = run_cli(
        "test",
        cfg,
        ckpt,
        "--work-dir",
        tmp_path / "t",
        "--show-dir",
        vis,
        "--interval",
        "2",
        "--cfg-options",
        *OVERRIDES,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.output
    images = sorted(vis.glob("*.png"))
    assert len(images) == 3  # samples 0, 2, 4 of 6
    assert (
        Image.open(images[0]).size[0] == 3 * Image.open(images[0]).size[1]
    )  # image | gt | prediction


def test_out_dir_needs_a_segmentation_evaluator(tmp_path):
    from e2e_support import TINY_CLS

    cfg = tmp_path / "cls.py"
    cfg.write_text(TINY_CLS.format(num_classes=3, max_epochs=1, num_workers=0))
    result = run_cli("test", cfg, tmp_path / "missing.pth", "--out", tmp_path / "dir", cwd=tmp_path)
    assert result.returncode == 2
    assert "needs a segmentation test_evaluator (IoUMetric)" in result.stderr


# ----------------------------------------------------------------------------- user errors
# Each of these printed a traceback (exit 1) before; now one line "error: ..." (exit 2).
FEET_CFG = """
_base_ = [{base!r}]
model = dict(decode_head=dict(num_classes=2))
pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'), dict(type='PackSegInputs')]
train_dataloader = dict(batch_size=2, dataset=dict(_delete_=True, type='FootArchDataset',
    data_root='data', data_prefix=dict(img_path='images/train', seg_map_path='annotations/train'),
    pipeline=pipeline))
val_dataloader = dict(batch_size=2, dataset=dict(_delete_=True, type='FootArchDataset',
    data_root='data', data_prefix=dict(img_path='images/train', seg_map_path='annotations/train'),
    pipeline=pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=1, val_interval=1)
"""


def _feet(root, masks=None):
    """A four-image foot-arch folder under root/data (32x32 RGB, masks 0/1 unless given)."""
    rng = np.random.default_rng(0)
    for i in range(4):
        mask = np.zeros((32, 32), np.uint8)
        mask[8:24, 8:24] = 1
        mask = (masks or {}).get(i, mask)
        for folder, array in (("images", rng.integers(0, 255, (32, 32, 3))), ("annotations", mask)):
            (root / "data" / folder / "train").mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.asarray(array, np.uint8)).save(
                root / "data" / folder / "train" / f"{i:04d}.png"
            )
    cfg = root / "feet.py"
    cfg.write_text(FEET_CFG.format(base=str(REPO / "configs" / "quickstart" / "seg_shapes.py")))
    return cfg


def _one_line_error(result) -> str:
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.output, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_mask_value_out_of_range_names_the_mask(tmp_path):
    bad = np.ones((32, 32), np.uint8)
    bad[0, 0] = 2  # two classes: 0 and 1 (and 255)
    cfg = _feet(tmp_path, {2: bad})
    line = _one_line_error(
        run_cli("train", cfg, "--work-dir", tmp_path / "w", "--cfg-options",
                "train_dataloader.batch_size=4", cwd=tmp_path)
    )  # fmt: skip
    assert "mask 'data/annotations/train/0002.png' holds label value(s) 2," in line
    assert "class indices 0..1 (num_classes=2) and ignore_index=255" in line


def test_colour_mask_names_the_mask(tmp_path):
    colour = np.zeros((32, 32, 3), np.uint8)
    colour[8:24, 8:24] = (255, 0, 0)
    cfg = _feet(tmp_path, {1: colour})
    line = _one_line_error(run_cli("train", cfg, "--work-dir", tmp_path / "w", cwd=tmp_path))
    assert "mask 'data/annotations/train/0001.png' is a colour image" in line
    assert "class-index PNGs" in line


@pytest.mark.parametrize(
    "options, expected",
    [
        (
            ["train_dataloader.dataset.metainfo.classes=[background,arch]"],
            "classes ['arch'] are not among its 2 classes, so no label map can be built. did "
            "you mean 'foot arch'? Valid classes: ('background', 'foot arch')",
        ),
        (
            ["train_dataloader.dataset.metainfo.palette=[[0,0,0]]"],
            "1 palette colours for 2 classes ('background', 'foot arch'); give one [r, g, b]",
        ),
        (  # raised in a dataloader worker: the worker's wrapping is undone
            [
                "train_dataloader.dataset.pipeline.1.reduce_zero_label=True",
                "train_dataloader.num_workers=1",
                "train_dataloader.persistent_workers=False",
            ],
            "LoadAnnotations(reduce_zero_label=True) in the pipeline disagrees with the "
            "dataset's reduce_zero_label=False (mask 'data/annotations/train/",
        ),
        (
            ["train_dataloader.dataset.type=HandBoneDataset"],
            "unknown dataset type 'HandBoneDataset' (config key 'train_dataloader.dataset'). "
            "did you mean",
        ),
    ],
    ids=["unknown-class", "palette-length", "reduce-zero-label", "unknown-type"],
)
def test_dataset_config_errors_are_one_line(tmp_path, options, expected):
    cfg = _feet(tmp_path)
    line = _one_line_error(
        run_cli("train", cfg, "--work-dir", tmp_path / "w", "--cfg-options", *options, cwd=tmp_path)
    )
    assert expected in line
    if "unknown dataset type" in expected:
        assert "custom_imports = dict(imports=['my_module'])" in line
        assert "@DATASETS.register_module()" in line


def test_format_only_without_out_is_one_line(tmp_path):
    cfg = _feet(tmp_path)
    result = run_cli(
        "test", cfg, tmp_path / "none.pth", "--cfg-options", "test_evaluator.format_only=True",
        cwd=tmp_path,
    )  # fmt: skip
    line = _one_line_error(result)
    assert "test_evaluator.format_only=True" in line and "add --out DIR" in line


def test_duplicate_registration_in_custom_module_is_one_line(tmp_path):
    cfg = _feet(tmp_path)
    # registers a name vistra already uses, without importing vistra's datasets first
    (tmp_path / "my_feet.py").write_text(
        "from vistra.registry import DATASETS\n\n\n"
        "@DATASETS.register_module()\n"
        "class FootArchDataset:\n"
        "    pass\n"
    )
    with open(cfg, "a") as f:
        f.write("custom_imports = dict(imports=['my_feet'], allow_failed_imports=False)\n")
    expected = (
        "cannot register my_feet.FootArchDataset as 'FootArchDataset': 'FootArchDataset' is "
        "already registered in the dataset registry (by vistra.data.datasets.feetarch."
        "FootArchDataset); register it under another name"
    )
    line = _one_line_error(run_cli("train", cfg, "--work-dir", tmp_path / "w", cwd=tmp_path))
    assert expected in line
    result = run_cli("print-config", cfg, cwd=tmp_path)
    assert result.returncode == 2 and expected in result.stderr, result.output
    assert "Traceback" not in result.stderr


def test_error_in_a_dataloader_worker_ends_the_command(tmp_path):
    # Workers ignore SIGTERM (engine/build.py); an error that left the loader's iterator
    # alive made the command hang at exit, after its message, instead of ending.
    cfg = _feet(tmp_path)
    (tmp_path / "boom.py").write_text(
        "from vistra.registry import TRANSFORMS\n\n\n"
        "@TRANSFORMS.register_module()\n"
        "class Boom:\n"
        "    def __call__(self, results):\n"
        "        raise RuntimeError('boom in a transform')\n"
    )
    child = tmp_path / "boom_cfg.py"
    child.write_text(
        f"_base_ = [{str(cfg)!r}]\n"
        "custom_imports = dict(imports=['boom'], allow_failed_imports=False)\n"
        "train_dataloader = dict(num_workers=1, persistent_workers=False,\n"
        "                        dataset=dict(pipeline=[dict(type='Boom')]))\n"
    )
    result = run_cli("train", child, "--work-dir", tmp_path / "w", cwd=tmp_path, timeout=120)
    assert result.returncode == 1 and "RuntimeError: boom in a transform" in result.stderr
    assert "killed by signal" not in result.stderr
