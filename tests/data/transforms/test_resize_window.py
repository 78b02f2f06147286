"""The crop-only resize (``Resize``/``RandomResize`` + ``RandomCrop`` fused by ``Compose``)
gives the pixels, label maps, metadata and random draws of the two transforms in turn."""

from __future__ import annotations

import numpy as np
import pytest

import vistra.data.transforms  # noqa: F401  (registers the transforms)
from vistra.data.transforms.base import Compose
from vistra.data.transforms.functional import imresize
from vistra.data.transforms.geometric import RandomCrop
from vistra.data.transforms.resize import (
    ResizedView,
    _window_matches_torch,
    bilinear_taps,
    bilinear_window,
)

# the window reproduces torch's vectorised uint8 kernel; elsewhere nothing is fused
pytestmark = pytest.mark.skipif(
    not _window_matches_torch(), reason="torch runs its scalar uint8 bilinear kernel here"
)


def _random_box(rng: np.random.Generator, h: int, w: int) -> tuple[int, int, int, int]:
    y1 = int(rng.integers(0, h))
    x1 = int(rng.integers(0, w))
    return y1, int(rng.integers(y1 + 1, h + 1)), x1, int(rng.integers(x1 + 1, w + 1))


@pytest.mark.parametrize("channels", [None, 1, 3, 4])
def test_bilinear_window_equals_the_full_resize_cropped(channels):
    rng = np.random.default_rng(channels or 0)
    for k in range(120):
        src_h, src_w = (int(v) for v in rng.integers(1, 70, 2))
        # shrinking, enlarging, and sides that keep their length
        h = src_h if k % 7 == 0 else int(rng.integers(1, 150))
        w = src_w if k % 5 == 0 else int(rng.integers(1, 150))
        shape = (src_h, src_w) if channels is None else (src_h, src_w, channels)
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        if k % 4 == 0:
            img = img[:, ::-1]  # a flipped view, as RandomFlip hands on
        box = _random_box(rng, h, w)
        y1, y2, x1, x2 = box
        want = imresize(img, (w, h))[y1:y2, x1:x2]
        got = bilinear_window(img, (w, h), box)
        assert got.dtype == np.uint8 and got.shape == want.shape
        assert np.array_equal(got, want), (shape, (h, w), box)


def test_bilinear_window_at_cityscapes_sizes():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (256, 512, 3), dtype=np.uint8)
    for ratio in (0.5, 0.77, 1.0, 1.31, 2.0):
        w, h = int(512 * ratio), int(256 * ratio)
        box = _random_box(rng, h, w)
        y1, y2, x1, x2 = box
        assert np.array_equal(
            bilinear_window(img, (w, h), box), imresize(img, (w, h))[y1:y2, x1:x2]
        )


def test_bilinear_taps_weigh_at_most_two_pixels_that_exist():
    for n_in, n_out in ((1, 5), (5, 1), (7, 3), (3, 7), (2048, 3583), (2048, 1025)):
        first, w0, w1, bits = bilinear_taps(n_in, n_out)
        assert first.min() >= 0 and first.max() <= n_in - 1 and 13 <= bits <= 15
        assert (np.abs(w0 + w1 - (1 << bits)) <= 1).all()  # each pair sums to one


def test_resized_view_label_window_is_the_nearest_resize_cropped():
    rng = np.random.default_rng(2)
    for _ in range(50):
        seg = rng.integers(0, 20, tuple(int(v) for v in rng.integers(1, 60, 2)), dtype=np.uint8)
        w, h = (int(v) for v in rng.integers(1, 120, 2))
        view = ResizedView({"img": seg, "gt_seg_map": seg}, (w, h))
        box = _random_box(rng, h, w)
        y1, y2, x1, x2 = box
        want = imresize(seg, (w, h), "nearest")[y1:y2, x1:x2]
        assert np.array_equal(view.label_window("gt_seg_map", box), want)
        assert np.array_equal(view.image_window(box), imresize(seg, (w, h))[y1:y2, x1:x2])


def _run_in_turn(pipeline: Compose, results: dict) -> dict:
    for t in pipeline.transforms:
        results = t(results)
    return results


def _sample(rng: np.random.Generator, h: int, w: int, channels: int = 3) -> dict:
    shape = (h, w) if channels == 1 else (h, w, channels)
    labels = rng.integers(0, 4, (h // 8 + 1, w // 8 + 1), dtype=np.uint8)
    labels = np.repeat(np.repeat(labels, 8, 0), 8, 1)[:h, :w]  # blobs: cat_max_ratio retries
    labels[rng.random(labels.shape) < 0.05] = 255
    return {
        "img": rng.integers(0, 256, shape, dtype=np.uint8),
        "gt_seg_map": labels,
        "seg_fields": ["gt_seg_map"],
    }


@pytest.mark.parametrize(
    "resize",
    [
        dict(type="RandomResize", scale=(96, 48), ratio_range=(0.5, 2.0), keep_ratio=True),
        dict(type="RandomResize", scale=[(60, 30), (150, 90)], keep_ratio=False),
        dict(type="Resize", scale=(131, 77)),
    ],
)
@pytest.mark.parametrize("channels", [1, 3])
def test_fused_pipeline_equals_the_transforms_in_turn(resize, channels):
    steps = [
        resize,
        dict(type="RandomCrop", crop_size=(24, 40), cat_max_ratio=0.75),
        dict(type="RandomFlip", prob=0.5),
    ]
    pipeline = Compose(steps)
    rng = np.random.default_rng(3)
    resize_t, crop_t = pipeline.transforms[:2]
    assert (
        resize_t.transform_with_next(crop_t, _sample(rng, 30, 40, channels)) is not NotImplemented
    )
    for i in range(12):
        sample = _sample(rng, int(rng.integers(30, 70)), int(rng.integers(40, 110)), channels)
        np.random.seed(i)
        fused = pipeline(dict(sample))
        state_fused = np.random.get_state()[1].copy(), np.random.random()
        np.random.seed(i)
        in_turn = _run_in_turn(pipeline, dict(sample))
        state_in_turn = np.random.get_state()[1].copy(), np.random.random()
        assert fused.keys() == in_turn.keys()
        for key, value in in_turn.items():
            if isinstance(value, np.ndarray):
                assert np.array_equal(fused[key], value), key
            else:
                assert fused[key] == value, key
        assert (
            np.array_equal(state_fused[0], state_in_turn[0]) and state_fused[1] == state_in_turn[1]
        )


def test_the_window_path_and_the_full_path_are_both_taken():
    rng = np.random.default_rng(4)
    sample = _sample(rng, 40, 80)
    small = ResizedView(sample, (200, 100))  # window 1/10 of the resized image: computed alone
    large = ResizedView(sample, (40, 20))  # window all of it: torch resizes the whole image
    for view, box in ((small, (10, 30, 50, 90)), (large, (0, 20, 0, 40))):
        y1, y2, x1, x2 = box
        want = imresize(sample["img"], view.size)[y1:y2, x1:x2]
        assert np.array_equal(view.image_window(box), want)


def test_no_fusion_where_the_crop_pads_or_is_subclassed():
    class MyCrop(RandomCrop):
        def transform(self, results: dict) -> dict:
            results["seen"] = True
            return super().transform(results)

    resize = dict(type="Resize", scale=(50, 30))
    padded = Compose([resize, dict(type="RandomCrop", crop_size=(40, 60), pad_if_needed=True)])
    assert not padded.transforms[1].crops_resized
    rng = np.random.default_rng(5)
    out = padded(_sample(rng, 20, 30))
    assert out["img"].shape == (40, 60, 3) and out["gt_seg_map"].shape == (40, 60)
    mine = Compose([resize, MyCrop(crop_size=(10, 10))])
    assert mine(_sample(rng, 20, 30))["seen"]
