"""Corrupt images: one-line errors naming file and sample; ``skip_corrupt=True`` skips them."""

from __future__ import annotations

import io
import logging
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from vistra.data.collate import pseudo_collate
from vistra.data.datasets.custom import CustomDataset
from vistra.data.datasets.seg_base import BaseSegDataset
from vistra.data.errors import SKIP_HINT, DataError, UnreadableFileError
from vistra.data.image_io import imfrombytes, imread
from vistra.data.transforms.base import BaseTransform
from vistra.registry import DATASETS, check_arguments

from .conftest import solid_rgb, write_png

LOAD = [dict(type="LoadImageFromFile")]


def _encoded(fmt: str) -> bytes:
    rgb = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, fmt)
    return out.getvalue()


CORRUPT = {
    "truncated_jpeg": lambda: _encoded("JPEG")[:300],
    "truncated_png": lambda: _encoded("PNG")[:200],
    "zero_bytes": lambda: b"",
    "random_bytes": lambda: np.random.default_rng(1).bytes(400),
    "text_file": lambda: b"version https://git-lfs.github.com/spec/v1\noid sha256:0\n",
}


class Noise(BaseTransform):
    """Records draws from the three RNG streams (augmentation stands in)."""

    def transform(self, results):
        results["noise"] = (random.random(), np.random.rand(), torch.rand(1).item())
        return results


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """imgs/{a,b}/NN.png, 4 each (8 samples); sample 5 is imgs/b/01.png."""
    root = tmp_path / "imgs"
    for c, colour in (("a", (255, 0, 0)), ("b", (0, 0, 255))):
        for i in range(4):
            write_png(root / c / f"{i:02d}.png", solid_rgb((colour[0], i * 10, colour[2])))
    return root


@pytest.fixture
def vistra_log(tmp_path: Path):
    """Lines the 'vistra' logger writes, dataloader workers included (a file they share)."""
    path = tmp_path / "vistra.log"
    logger = logging.getLogger("vistra")
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    def lines() -> list[str]:
        handler.flush()
        return [ln for ln in path.read_text().splitlines() if ln.startswith("WARNING")]

    yield lines
    logger.removeHandler(handler)
    handler.close()
    logger.setLevel(old_level)


def _corrupt(folder: Path, data: bytes = b"not an image", name: str = "b/01.png") -> str:
    (folder / name).write_bytes(data)
    return str(folder / name)


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kind", sorted(CORRUPT))
def test_corrupt_image_error_names_file_and_sample_on_one_line(folder, kind):
    path = _corrupt(folder, CORRUPT[kind]())
    ds = CustomDataset(data_root=str(folder), pipeline=LOAD)
    with pytest.raises(DataError) as err:
        ds[5]
    text = str(err.value)
    assert text.startswith(f"cannot decode image {path!r} (sample 5 of CustomDataset): ")
    assert text.endswith(SKIP_HINT) and "\n" not in text
    assert "BytesIO" not in text  # Pillow's "cannot identify image file <_io.BytesIO ...>"
    with pytest.raises(DataError):  # seeded samples too
        ds[(5, 123)]


def test_decoder_reasons_are_plain_words(tmp_path):
    with pytest.raises(UnreadableFileError, match=r"^cannot decode image: the file is empty"):
        imfrombytes(b"")
    with pytest.raises(UnreadableFileError, match=r"not an image format .*b'hello wo'"):
        imfrombytes(b"hello world")
    bad = tmp_path / "t.jpg"
    bad.write_bytes(CORRUPT["truncated_jpeg"]())
    with pytest.raises(UnreadableFileError, match=r"'.*t\.jpg': image file is truncated") as err:
        imread(bad)
    assert err.value.path == str(bad)


def test_the_error_names_the_config_key_when_the_builder_sets_it(folder):
    _corrupt(folder)
    ds = CustomDataset(data_root=str(folder), pipeline=LOAD)
    ds.config_key = "train_dataloader.dataset"
    with pytest.raises(
        DataError, match=r"\(sample 5 of CustomDataset in train_dataloader\.dataset\)"
    ):
        ds[5]


def test_missing_file_names_the_sample_too(folder):
    ds = CustomDataset(data_root=str(folder), pipeline=LOAD)
    (folder / "a" / "02.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"02\.png' \(sample 2 of CustomDataset\); restore"):
        ds[2]


def test_a_colour_mask_is_not_skipped(tmp_path):
    """Only files that cannot be read are skipped: a mask in the wrong format is a
    conversion to do, and skipping every mask would hide it."""
    write_png(tmp_path / "img" / "a.png", solid_rgb((1, 2, 3), 4, 4))
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[1:3, 1:3] = (255, 0, 0)
    write_png(tmp_path / "ann" / "a.png", colour)
    ds = BaseSegDataset(
        data_root=str(tmp_path),
        img_suffix=".png",
        data_prefix=dict(img_path="img", seg_map_path="ann"),
        pipeline=[dict(type="LoadImageFromFile"), dict(type="LoadAnnotations")],
        skip_corrupt=True,
    )
    with pytest.raises(DataError, match="is a colour image"):
        ds[0]


# ----------------------------------------------------------------------------- skipping
def test_skip_corrupt_replaces_the_sample_and_warns_once(folder, vistra_log):
    path = _corrupt(folder)
    ds = CustomDataset(data_root=str(folder), pipeline=LOAD, skip_corrupt=True)
    for _ in range(3):  # three epochs
        out = ds[5]
        assert out["img_path"] != path and out["img"].shape == (6, 8, 3)
    warnings = vistra_log()
    assert len(warnings) == 1
    assert warnings[0] == (
        f"WARNING cannot decode image {path!r} (sample 5 of CustomDataset): not an image format "
        "Pillow reads (12 bytes, starting b'not an i'); skip_corrupt=True: another sample is "
        "used in its place (reported once per file)"
    )


def test_missing_files_are_skipped_too(folder, vistra_log):
    ds = CustomDataset(data_root=str(folder), pipeline=LOAD, skip_corrupt=True)
    (folder / "a" / "02.png").unlink()
    assert ds[2]["img_path"] != str(folder / "a" / "02.png")
    assert "image file not found" in vistra_log()[0]


def test_the_replacement_depends_on_seed_and_index_only(folder):
    """What resume needs: the same (idx, seed) gives the same replacement, augmented the
    same way, whatever the global RNG state and whatever was fetched before."""
    _corrupt(folder)
    pipeline = [*LOAD, Noise()]
    ds = CustomDataset(data_root=str(folder), pipeline=pipeline, skip_corrupt=True)
    first = ds[(5, 42)]
    other = CustomDataset(data_root=str(folder), pipeline=pipeline, skip_corrupt=True)
    np.random.seed(3)
    random.seed(3)
    torch.manual_seed(3)
    other[(1, 7)]
    again = other[(5, 42)]
    assert again["img_path"] == first["img_path"] and again["noise"] == first["noise"]
    # not always the same replacement: it is drawn from (seed, idx)
    picks = {ds[(5, seed)]["img_path"] for seed in range(40)}
    assert len(picks) > 3 and str(folder / "b" / "01.png") not in picks
    # the replacement is augmented under its own seed, not under the one of its usual turn
    replacement = first["sample_idx"]
    assert ds[(replacement, 42)]["noise"] != first["noise"]


def test_unseeded_replacement_ignores_the_global_rng(folder):
    _corrupt(folder)
    ds = CustomDataset(data_root=str(folder), pipeline=LOAD, skip_corrupt=True)
    picks = set()
    for seed in range(5):
        np.random.seed(seed)
        picks.add(ds[5]["img_path"])
    assert len(picks) == 1


def test_caller_rng_is_untouched_by_a_skipped_sample(folder):
    _corrupt(folder)
    ds = CustomDataset(data_root=str(folder), pipeline=[*LOAD, Noise()], skip_corrupt=True)

    def after(item) -> tuple:
        np.random.seed(5)
        random.seed(5)
        torch.manual_seed(5)
        ds[item]
        return random.random(), np.random.rand(), torch.rand(1).item()

    assert after((5, 1)) == after((4, 1))


def test_test_mode_skips_with_a_loud_warning(folder, vistra_log):
    path = _corrupt(folder)
    ds = CustomDataset(data_root=str(folder), pipeline=LOAD, skip_corrupt=True, test_mode=True)
    assert ds[5]["img_path"] != path
    (line,) = vistra_log()
    assert path in line and "in test mode" in line
    assert "the metrics leave this one out and count another twice" in line


def test_gives_up_after_max_refetch_failures_in_a_row(folder, vistra_log):
    for name in ["a/00.png", "a/01.png", "a/02.png", "a/03.png", "b/00.png", "b/01.png"]:
        _corrupt(folder, name=name)
    (folder / "b" / "02.png").unlink()
    (folder / "b" / "03.png").unlink()
    ds = CustomDataset(data_root=str(folder), pipeline=LOAD, skip_corrupt=True, max_refetch=3)
    with pytest.raises(DataError) as err:
        ds[(0, 9)]
    text = str(err.value)
    assert text.startswith("CustomDataset: 4 samples in a row could not be read (sample 0 and ")
    assert "max_refetch=3); the last: " in text and "\n" not in text
    assert 1 <= len(vistra_log()) <= 4


def test_one_sample_dataset_gives_up_at_once(tmp_path):
    write_png(tmp_path / "a" / "x.png", solid_rgb((1, 1, 1)))
    (tmp_path / "a" / "x.png").write_bytes(b"")
    ds = CustomDataset(data_root=str(tmp_path), pipeline=LOAD, skip_corrupt=True, max_refetch=2)
    with pytest.raises(DataError, match="3 samples in a row"):
        ds[0]


def test_ignore_empty_still_drops_the_sample_first(folder):
    """MMCV's LoadImageFromFile(ignore_empty=True) returns None (a refetch), as before."""
    path = _corrupt(folder)
    ds = CustomDataset(
        data_root=str(folder), pipeline=[dict(type="LoadImageFromFile", ignore_empty=True)]
    )
    assert ds[(5, 1)]["img_path"] != path


def test_subset_keeps_skipping(folder, vistra_log):
    path = _corrupt(folder)
    ds = CustomDataset(data_root=str(folder), pipeline=LOAD, skip_corrupt=True).get_subset([4, 5])
    assert ds[1]["img_path"] != path and len(vistra_log()) == 1


def test_skip_corrupt_must_be_a_bool(folder):
    with pytest.raises(TypeError, match="skip_corrupt must be True or False"):
        CustomDataset(data_root=str(folder), skip_corrupt="yes")


@pytest.mark.parametrize(
    "name",
    [
        "BaseDataset",
        "CustomDataset",
        "ImageNet",
        "CIFAR10",
        "CIFAR100",
        "BaseSegDataset",
        "ADE20KDataset",
        "CityscapesDataset",
        "PascalVOCDataset",
        "FootArchDataset",
        "ShapesDataset",
        "ShapesSegDataset",
    ],
)
def test_every_dataset_accepts_skip_corrupt(name):
    check_arguments(DATASETS.get(name), {"skip_corrupt": True}, name)  # the registry's check


def test_shapes_dataset_builds_with_skip_corrupt():
    ds = DATASETS.build(dict(type="ShapesDataset", num_samples=3, img_size=8, skip_corrupt=True))
    assert ds.skip_corrupt and ds[0]["img"].shape == (8, 8, 3)


def test_seg_dataset_skips_a_corrupt_mask(tmp_path, vistra_log):
    for stem in "abc":
        write_png(tmp_path / "img" / f"{stem}.png", solid_rgb((1, 2, 3), 4, 4))
        write_png(tmp_path / "ann" / f"{stem}.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "ann" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    ds = DATASETS.build(
        dict(
            type="BaseSegDataset",
            data_root=str(tmp_path),
            img_suffix=".png",
            data_prefix=dict(img_path="img", seg_map_path="ann"),
            pipeline=[dict(type="LoadImageFromFile"), dict(type="LoadAnnotations")],
            skip_corrupt=True,
        )
    )
    assert not ds[(1, 0)]["seg_map_path"].endswith("b.png")
    assert "ann/b.png' (sample 1 of BaseSegDataset)" in vistra_log()[0]


# ----------------------------------------------------------------------------- workers
def _loader(ds, num_workers: int, epoch: int) -> DataLoader:
    items = [(i, 1000 * epoch + i) for i in range(len(ds))]
    return DataLoader(
        ds, batch_size=2, sampler=items, num_workers=num_workers, collate_fn=pseudo_collate
    )


def test_workers_warn_once_per_file_across_epochs_and_match_no_workers(folder, vistra_log):
    path = _corrupt(folder)
    ds = CustomDataset(data_root=str(folder), pipeline=[*LOAD, Noise()], skip_corrupt=True)
    seen = {}
    for workers in (2, 0):  # workers first: the main process has not met the file yet
        for epoch in range(2):  # new workers each epoch (not persistent)
            batches = list(_loader(ds, workers, epoch))
            paths = [p for b in batches for p in b["img_path"]]
            noise = [n for b in batches for n in b["noise"]]
            seen.setdefault(epoch, (paths, noise))
            assert seen[epoch] == (paths, noise) and path not in paths
    assert len(vistra_log()) == 1


def test_a_worker_error_is_still_a_data_error_ending_with_the_message(folder):
    """torch re-raises a worker's error as ``type(exc)(text)`` with the traceback in the
    text; the CLI prints its last line, which must be the whole message."""
    _corrupt(folder)
    ds = CustomDataset(data_root=str(folder), pipeline=LOAD)
    with pytest.raises(DataError) as direct:
        ds[(5, 5)]
    with pytest.raises(DataError) as err:
        list(_loader(ds, 1, 0))
    text = str(err.value)
    assert "Original Traceback" in text
    assert text.strip().splitlines()[-1] == f"vistra.data.errors.DataError: {direct.value}"
