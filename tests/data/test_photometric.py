import numpy as np
import pytest

from vistra.data.seeding import seeded_rng
from vistra.data.transforms.photometric import ColorJitter, PhotoMetricDistortion, RandomErasing


def _img(rng, h=16, w=20):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_color_jitter_zero_is_identity_and_ranges_are_checked(rng):
    img = _img(rng)
    t = ColorJitter()
    assert t.brightness is None and t.hue is None
    assert np.array_equal(t({"img": img.copy()})["img"], img)
    assert ColorJitter(brightness=0.4).brightness == (0.6, 1.4)
    assert ColorJitter(contrast=(0.2, 0.3)).contrast == (0.2, 0.3)
    assert ColorJitter(brightness=2.0).brightness == (0.0, 3.0)  # clipped at 0
    with pytest.raises(ValueError, match="non-negative"):
        ColorJitter(saturation=-1)


def test_color_jitter_brightness_scales_all_channels(rng):
    img = np.full((4, 4, 3), 100, np.uint8)
    out = ColorJitter(brightness=(0.5, 0.5))({"img": img})["img"]
    assert out.dtype == np.uint8 and (out == 50).all()


def test_color_jitter_hue_keeps_grey_and_changes_colours(rng):
    img = np.zeros((2, 2, 3), np.uint8)
    img[0, 0] = (0, 0, 255)  # red (BGR)
    img[1, 1] = 128  # grey
    out = ColorJitter(hue=(1 / 3, 1 / 3))({"img": img})["img"]
    assert out[1, 1].tolist() == [128, 128, 128]
    assert out[0, 0].argmax() == 1  # red rotated a third of the wheel becomes green


def test_color_jitter_is_reproducible_under_a_seed(rng):
    img = _img(rng)
    t = ColorJitter(0.4, 0.4, 0.4, 0.1)
    with seeded_rng(3):
        a = t({"img": img.copy()})["img"]
    with seeded_rng(3):
        b = t({"img": img.copy()})["img"]
    assert np.array_equal(a, b) and not np.array_equal(a, img)


def test_random_erasing_const_fill_and_probability(rng):
    img = _img(rng, 30, 30)
    np.random.seed(0)
    out = RandomErasing(
        erase_prob=1.0, fill_color=(1, 2, 3), min_area_ratio=0.1, max_area_ratio=0.2
    )({"img": img.copy()})["img"]
    erased = (out == (1, 2, 3)).all(-1)
    assert 0.05 * 900 <= erased.sum() <= 0.25 * 900
    ys, xs = np.nonzero(erased)
    assert erased[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].all()  # one rectangle
    assert np.array_equal(RandomErasing(erase_prob=0.0)({"img": img.copy()})["img"], img)


def test_random_erasing_rand_modes_and_view_inputs(rng):
    img = np.zeros((20, 20, 3), np.uint8)
    np.random.seed(1)
    out = RandomErasing(erase_prob=1.0, mode="rand")({"img": img[:, ::-1]})["img"]
    assert out.any()
    out = RandomErasing(erase_prob=1.0, mode="rand", fill_color=100, fill_std=0.0)(
        {"img": img.copy()}
    )["img"]
    assert set(np.unique(out)) <= {0, 100}
    with pytest.raises(ValueError, match="mode"):
        RandomErasing(mode="random")
    with pytest.raises(ValueError, match="min_area_ratio"):
        RandomErasing(min_area_ratio=0.5, max_area_ratio=0.1)


def test_photometric_distortion_keeps_shape_dtype_and_grey_hue(rng):
    img = _img(rng, 12, 40)
    seen_changed = False
    for seed in range(6):
        with seeded_rng(seed):
            out = PhotoMetricDistortion()({"img": img.copy()})["img"]
        assert out.shape == img.shape and out.dtype == np.uint8
        seen_changed |= not np.array_equal(out, img)
    assert seen_changed
    grey = np.full((4, 40, 3), 90, np.uint8)
    t = PhotoMetricDistortion(brightness_delta=0, contrast_range=(1, 1), saturation_range=(2, 2))
    assert np.array_equal(t({"img": grey.copy()})["img"], grey)  # no saturation, hue on grey


def test_photometric_distortion_brightness_only():
    img = np.full((2, 40, 3), 100, np.uint8)
    t = PhotoMetricDistortion(
        brightness_delta=10, contrast_range=(1, 1), saturation_range=(1, 1), hue_delta=0
    )
    outs = set()
    for seed in range(8):
        np.random.seed(seed)
        out = t({"img": img.copy()})["img"]
        assert len(np.unique(out)) == 1
        outs.add(int(out[0, 0, 0]))
    assert min(outs) >= 90 and max(outs) <= 110 and len(outs) > 1


def test_uint8_is_required():
    with pytest.raises(TypeError, match="uint8"):
        PhotoMetricDistortion()({"img": np.zeros((2, 2, 3), np.float32)})
