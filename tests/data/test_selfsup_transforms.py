"""MultiView, GaussianBlur, RandomGaussianBlur and RandomGrayscale (self-supervised pipelines)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from vistra.config import Config
from vistra.data.collate import default_collate
from vistra.data.seeding import seeded_rng
from vistra.data.transforms import Compose
from vistra.data.transforms.selfsup import (
    GaussianBlur,
    MultiView,
    RandomGaussianBlur,
    RandomGrayscale,
)
from vistra.registry import TRANSFORMS

REPO = Path(__file__).resolve().parents[2]
SIMCLR_DATA = REPO / "configs/_base_/datasets/imagenet_bs32_simclr.py"


def _img(h=32, w=40, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- MultiView
def test_multiview_gives_num_views_different_views_of_one_image():
    img = _img()
    view = [
        dict(type="RandomResizedCrop", scale=16, backend="pillow"),
        dict(type="RandomFlip", prob=0.5),
    ]
    t = TRANSFORMS.build(dict(type="MultiView", num_views=3, transforms=[view]))
    with seeded_rng(0):
        out = t({"img": img, "img_shape": img.shape[:2]})
    views = out["img"]
    assert isinstance(views, list) and len(views) == 3
    assert all(v.shape == (16, 16, 3) and v.dtype == np.uint8 for v in views)
    for i in range(3):  # each view drew its own crop
        for j in range(i + 1, 3):
            assert not np.array_equal(views[i], views[j])
    assert out["img_shape"] == (32, 40)  # other keys keep the input's values


def test_multiview_does_not_touch_the_input_image():
    img = _img()
    original = img.copy()

    def scribble(results):
        results["img"][0, 0] = 7  # in place, as some transforms do
        return results

    MultiView([[scribble]], num_views=2)({"img": img})
    assert np.array_equal(img, original)


def test_multiview_counts_views_per_pipeline_in_order():
    def tag(value):
        return lambda r: {**r, "img": np.full((2, 2), value, np.uint8)}

    t = MultiView(transforms=[[tag(1)], [tag(2)]], num_views=[1, 2])
    assert [v[0, 0] for v in t({"img": _img()})["img"]] == [1, 2, 2]
    # a single flat pipeline is accepted as the one pipeline
    assert (
        len(MultiView([dict(type="RandomFlip", prob=0.5)], num_views=2)({"img": _img()})["img"])
        == 2
    )


def test_multiview_rejects_mismatched_num_views_and_passes_dropped_samples_on():
    with pytest.raises(ValueError, match="one num_views entry per pipeline"):
        MultiView(transforms=[[], []], num_views=2)
    with pytest.raises(ValueError, match="positive"):
        MultiView(transforms=[[]], num_views=0)
    assert MultiView([[lambda r: None]], num_views=2)({"img": _img()}) is None


def test_simclr_pipeline_packs_and_collates_into_one_batch_per_view():
    cfg = Config.fromfile(SIMCLR_DATA)
    pipeline = Compose(cfg.train_pipeline[1:])  # the images are in memory: no loading
    assert cfg.train_pipeline[1].type == "MultiView"
    with seeded_rng(0):
        samples = [pipeline({"img": _img(seed=s), "img_path": f"{s}.png"}) for s in range(2)]
    inputs = samples[0]["inputs"]
    assert isinstance(inputs, list) and len(inputs) == 2
    assert all(v.shape == (3, 224, 224) and v.dtype == torch.uint8 for v in inputs)
    batch = default_collate(samples)
    assert [tuple(v.shape) for v in batch["inputs"]] == [(2, 3, 224, 224)] * 2
    assert len(batch["data_samples"]) == 2


# --------------------------------------------------------------------------- blur
def test_gaussian_blur_blurs_like_pillow_with_the_given_radius():
    img = _img()
    out = GaussianBlur(radius=1.5, prob=1.0)({"img": img.copy()})["img"]
    expected = np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(1.5)))
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert np.array_equal(out, expected)
    assert not np.array_equal(out, img)  # MMPretrain 1.0's version returned the input
    # blurring smooths: neighbouring pixels get closer
    assert (
        np.abs(np.diff(out.astype(int), axis=1)).mean()
        < np.abs(np.diff(img.astype(int), axis=1)).mean()
    )


def test_gaussian_blur_keeps_constant_images_and_grey_shapes():
    flat = np.full((8, 8, 3), 90, np.uint8)
    assert np.array_equal(GaussianBlur(radius=2.0, prob=1.0)({"img": flat})["img"], flat)
    grey = _img()[..., 0]
    assert GaussianBlur(radius=1.0, prob=1.0)({"img": grey})["img"].shape == grey.shape
    one = _img()[..., :1]
    assert GaussianBlur(radius=1.0, prob=1.0)({"img": one})["img"].shape == one.shape


def test_gaussian_blur_probability_and_magnitude_sampling():
    img = _img()
    assert np.array_equal(GaussianBlur(radius=2.0, prob=0.0)({"img": img.copy()})["img"], img)
    # SimCLR's setting: radius uniform in [0.1, 2.0]
    t = GaussianBlur(magnitude_range=(0.1, 2.0), magnitude_std="inf", prob=0.5)
    with seeded_rng(0):
        radii = np.array([t.random_magnitude() for _ in range(500)])
        applied = sum(not np.array_equal(t({"img": img.copy()})["img"], img) for _ in range(200))
    assert radii.min() >= 0.1 and radii.max() <= 2.0
    assert radii.min() < 0.3 and radii.max() > 1.8 and abs(radii.mean() - 1.05) < 0.1
    assert 70 < applied < 130
    with pytest.raises(ValueError, match="exactly one"):
        GaussianBlur(radius=1.0, magnitude_range=(0.1, 2.0))
    with pytest.raises(ValueError, match="exactly one"):
        GaussianBlur()


def test_random_gaussian_blur_of_mmselfsup():
    img = _img()
    t = RandomGaussianBlur(sigma_min=0.1, sigma_max=2.0, prob=1.0)
    with seeded_rng(3):
        out = t({"img": img.copy()})["img"]
    with seeded_rng(3):
        np.random.rand()
        sigma = np.random.uniform(0.1, 2.0)
    assert np.array_equal(
        out, np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(sigma)))
    )
    assert np.array_equal(RandomGaussianBlur(0.1, 2.0, prob=0.0)({"img": img})["img"], img)
    with pytest.raises(ValueError, match="sigma_min <= sigma_max"):
        RandomGaussianBlur(sigma_min=2.0, sigma_max=1.0)


# --------------------------------------------------------------------------- grayscale
def test_random_grayscale_weighted_sum_in_channel_order():
    img = np.array([[[10, 200, 50], [255, 255, 255]]], np.uint8)  # BGR
    weights = (0.114, 0.587, 0.2989)
    out = RandomGrayscale(prob=1.0, keep_channels=True, channel_weights=weights)({"img": img})
    # by hand: weights normalised to sum 1, summed, truncated
    total = 0.114 + 0.587 + 0.2989
    first = int((10 * 0.114 + 200 * 0.587 + 50 * 0.2989) / total)  # 133.498... -> 133
    white = int(255 * 0.114 / total + 255 * 0.587 / total + 255 * 0.2989 / total)
    assert first == 133
    assert out["img"].shape == (1, 2, 3) and out["img"].dtype == np.uint8
    assert out["img"][0, 0].tolist() == [first] * 3
    assert out["img"][0, 1].tolist() == [white] * 3
    flat = RandomGrayscale(prob=1.0, channel_weights=weights)({"img": img})["img"]
    assert flat.shape == (1, 2) and flat[0, 0] == first
    # default weights: the plain channel mean
    assert RandomGrayscale(prob=1.0)({"img": img})["img"][0, 0] == int(260 / 3)


def test_random_grayscale_probability_and_checks():
    img = _img()
    assert np.array_equal(RandomGrayscale(prob=0.0)({"img": img})["img"], img)
    t = RandomGrayscale(prob=0.2, keep_channels=True)
    with seeded_rng(0):
        grey = sum(
            bool((o[..., 0] == o[..., 1]).all())
            for o in (t({"img": img})["img"] for _ in range(300))
        )
    assert 35 < grey < 85
    one = img[..., :1]
    assert np.array_equal(RandomGrayscale(prob=1.0)({"img": one})["img"], one)
    with pytest.raises(ValueError, match="channel_weights"):
        RandomGrayscale(prob=1.0, channel_weights=(1.0, 1.0))({"img": img})
    with pytest.raises(ValueError, match="prob"):
        RandomGrayscale(prob=1.5)
    with pytest.raises(ValueError, match="color_format"):
        RandomGrayscale(color_format="lab")
