"""EfficientNetCenterCrop / EfficientNetRandomCrop / Lighting (MMPretrain's names and
arguments). The centre-crop boxes were measured against MMPretrain 1.2.0 (offsets round
half to even; small images are enlarged, not passed through)."""

import numpy as np
import pytest

from vistra.registry import TRANSFORMS


def _coords(h, w):
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return np.stack([yy % 256, xx % 256, (yy // 256) * 16 + xx // 256], -1).astype(np.uint8)


@pytest.mark.parametrize(
    "shape, first, last",
    [((256, 300), (16, 38), (239, 261)), ((256, 257), (16, 16), (239, 239)),
     ((257, 256), (16, 16), (239, 239))],
)  # fmt: skip
def test_center_crop_box_matches_mmpretrain(shape, first, last):
    crop = TRANSFORMS.build(dict(type="EfficientNetCenterCrop", crop_size=224))
    out = crop(dict(img=_coords(*shape)))["img"]  # side 224 of a 256 short edge: no resize
    assert out.shape == (224, 224, 3)
    assert tuple(out[0, 0, :2]) == (first[0] % 256, first[1] % 256)
    assert tuple(out[-1, -1, :2]) == (last[0] % 256, last[1] % 256)


def test_center_crop_enlarges_small_images_and_pads_nothing_with_zero_padding():
    crop = TRANSFORMS.build(dict(type="EfficientNetCenterCrop", crop_size=240, backend="pillow"))
    out = crop(dict(img=np.zeros((100, 100, 3), np.uint8)))
    assert out["img"].shape == (240, 240, 3) and out["img_shape"] == (240, 240)
    whole = TRANSFORMS.build(dict(type="EfficientNetCenterCrop", crop_size=8, crop_padding=0))
    assert whole(dict(img=_coords(8, 12)))["img"][0, 0, 1] == 2  # the middle 8 of 12 columns


def test_random_crop_covers_min_covered_and_falls_back_to_the_center():
    np.random.seed(0)
    crop = TRANSFORMS.build(dict(type="EfficientNetRandomCrop", scale=32, min_covered=0.3))
    for _ in range(20):
        top, left, th, tw = crop.rand_crop_params(100, 80)
        assert th * tw >= 0.3 * 8000 and top + th <= 100 and left + tw <= 80
    assert crop(dict(img=_coords(100, 80)))["img"].shape == (32, 32, 3)
    never = TRANSFORMS.build(dict(type="EfficientNetRandomCrop", scale=32, min_covered=1.0,
                                  crop_ratio_range=(0.1, 0.5)))  # fmt: skip
    # no draw covers the whole image: the centre crop, 32 / (32 + 32) of the short edge
    assert never.rand_crop_params(64, 64) == (16, 16, 32, 32)


def test_lighting_adds_the_pca_shift():
    eigval = [55.46, 4.79, 1.15]
    eigvec = [[-0.58, -0.69, 0.42], [-0.57, -0.01, -0.82], [-0.58, 0.72, 0.39]]
    light = TRANSFORMS.build(dict(type="Lighting", eigval=eigval, eigvec=eigvec, alphastd=0.1))
    img = np.full((2, 3, 3), 100, np.uint8)
    np.random.seed(5)
    out = light(dict(img=img))["img"]
    np.random.seed(5)
    alpha = np.random.normal(0, 0.1, size=3)
    shift = np.asarray(eigvec) @ (alpha * np.asarray(eigval))
    assert out.dtype == np.float32 and np.allclose(out, 100 + shift, atol=1e-4)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="crop_size must be a positive int"):
        TRANSFORMS.build(dict(type="EfficientNetCenterCrop", crop_size=(224, 224)))
    with pytest.raises(ValueError, match="min_covered must be in"):
        TRANSFORMS.build(dict(type="EfficientNetRandomCrop", scale=224, min_covered=2))
    with pytest.raises(ValueError, match="eigvec of 3x3"):
        TRANSFORMS.build(dict(type="Lighting", eigval=[1, 2, 3], eigvec=[[1, 2, 3]]))
