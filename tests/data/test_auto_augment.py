import numpy as np
import pytest

from vistra.data.seeding import seeded_rng
from vistra.data.transforms import augment_ops as aa
from vistra.data.transforms.auto_augment import RandAugment
from vistra.registry import TRANSFORMS


def _img(rng, h=12, w=16):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_rand_augment_timm_increasing_builds_all_ops_with_hparams():
    t = TRANSFORMS.build(
        dict(
            type="RandAugment",
            policies="timm_increasing",
            num_policies=2,
            magnitude_level=9,
            magnitude_std=0.5,
            hparams=dict(pad_val=[104, 116, 124], interpolation="bicubic"),
        )
    )
    assert len(t.transforms) == 15
    rotate = t.transforms[3]
    assert (
        isinstance(rotate, aa.Rotate)
        and rotate.pad_val == (104, 116, 124)
        and rotate.interpolation == "bicubic"
    )
    assert rotate.magnitude_level == 9 and rotate.magnitude_std == 0.5
    assert not hasattr(t.transforms[0], "pad_val")  # AutoContrast takes no pad_val
    assert t.policies[5]["type"] == "Solarize" and "interpolation" not in t.policies[5]


def test_rand_augment_runs_and_is_reproducible(rng):
    img = _img(rng)
    t = RandAugment(
        policies="timm_increasing", num_policies=3, magnitude_level=7, magnitude_std="inf"
    )
    for seed in range(10):
        with seeded_rng(seed):
            a = t({"img": img.copy()})["img"]
        with seeded_rng(seed):
            b = t({"img": img.copy()})["img"]
        assert a.shape == img.shape and a.dtype == np.uint8 and np.array_equal(a, b)


def test_rand_augment_validation():
    with pytest.raises(ValueError, match="policies.*timm_increasing"):
        RandAugment(policies="timm", num_policies=1, magnitude_level=1)
    with pytest.raises(ValueError, match="num_policies"):
        RandAugment(policies="timm_increasing", num_policies=0, magnitude_level=1)
    with pytest.raises(KeyError, match="Rotat"):
        RandAugment(policies=[dict(type="Rotat")], num_policies=1, magnitude_level=1)


def test_magnitude_maps_level_onto_range():
    op = aa.Posterize(magnitude_range=(4, 0), magnitude_level=5, total_level=10)
    assert op.random_magnitude() == 2.0
    with pytest.raises(ValueError, match="exactly one of `bits`"):
        aa.Posterize(bits=4, magnitude_range=(4, 0))
    with pytest.raises(ValueError, match="exactly one of `angle`"):
        aa.Rotate()


def test_auto_augment_imagenet_policy_builds_and_runs(rng):
    t = TRANSFORMS.build(dict(type="AutoAugment", policies="imagenet"))
    assert len(t.transforms) == 25
    img = _img(rng)
    for seed in range(5):
        with seeded_rng(seed):
            assert t({"img": img.copy()})["img"].shape == img.shape


def test_pixel_ops_known_values():
    img = np.array([[[0, 100, 200], [50, 150, 255]]], np.uint8)
    assert aa.Invert(prob=1.0)({"img": img})["img"].tolist() == [[[255, 155, 55], [205, 105, 0]]]
    assert aa.Solarize(thr=128, prob=1.0)({"img": img})["img"].tolist() == [
        [[0, 100, 55], [50, 105, 0]]
    ]
    assert aa.Posterize(bits=2, prob=1.0)({"img": img})["img"].tolist() == [
        [[0, 64, 192], [0, 128, 192]]
    ]
    added = aa.SolarizeAdd(magnitude=100, thr=128, prob=1.0)({"img": img})["img"]
    assert added.tolist() == [[[100, 200, 200], [150, 150, 255]]]
    # 150 * 5.1 - 100 * 5.1 = 254.999..., truncated as MMCV's LUT truncates
    assert aa.AutoContrast(prob=1.0)({"img": img})["img"].tolist() == [[[0, 0, 0], [254, 255, 254]]]
    assert aa.Brightness(magnitude=-0.5, prob=1.0, random_negative_prob=0.0)({"img": img})[
        "img"
    ].tolist() == [[[0, 50, 100], [25, 75, 127]]]


def test_equalize_and_enhance_ops_on_random_images(rng):
    img = _img(rng, 20, 20)
    eq = aa.equalize(img)
    assert eq.max() >= 250 and eq.min() == 0
    flat = np.full((4, 4, 3), 9, np.uint8)
    assert np.array_equal(aa.equalize(flat), flat)
    for op in (aa.Contrast, aa.ColorTransform, aa.Sharpness):
        assert np.array_equal(op(magnitude=0.0, prob=1.0)({"img": img})["img"], img)  # factor 1
    grey = aa.ColorTransform(magnitude=-1.0, prob=1.0, random_negative_prob=0.0)({"img": img})[
        "img"
    ]
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()


def test_geometric_ops():
    img = np.zeros((4, 4, 3), np.uint8)
    img[0, 0] = 255
    out = aa.Translate(magnitude=0.5, prob=1.0, random_negative_prob=0.0, pad_val=7)({"img": img})[
        "img"
    ]
    assert out[0, 2].tolist() == [255] * 3 and out[0, 0].tolist() == [7] * 3
    out = aa.Translate(magnitude=0.25, direction="vertical", prob=1.0, random_negative_prob=0.0)(
        {"img": img}
    )["img"]
    assert out[1, 0].tolist() == [255] * 3
    out = aa.Rotate(angle=90.0, prob=1.0, random_negative_prob=0.0, pad_val=0)({"img": img})["img"]
    assert out[0, 3].tolist() == [255] * 3
    sheared = aa.Shear(
        magnitude=1.0, prob=1.0, random_negative_prob=0.0, interpolation="nearest", pad_val=0
    )
    row = np.zeros((3, 3, 3), np.uint8)
    row[2, 0] = 200
    assert sheared({"img": row})["img"][2, 2].tolist() == [200] * 3  # x += 1 * y
    assert aa.Shear(magnitude=0.3, prob=0.0)({"img": img})["img"] is img
    with pytest.raises(ValueError, match="direction"):
        aa.Shear(magnitude=0.1, direction="diagonal")


def test_cutout_fills_a_box():
    np.random.seed(0)
    out = aa.Cutout(shape=3, pad_val=9, prob=1.0)({"img": np.zeros((10, 10, 3), np.uint8)})["img"]
    assert 1 <= (out[..., 0] == 9).sum() <= 9
