import numpy as np
import pytest

from vistra.data.transforms.resize import RandomResize, RandomResizedCrop, Resize, ResizeEdge
from vistra.registry import TRANSFORMS


def _sample(h=40, w=60, seg=True):
    img = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    out = {"img": img, "img_shape": (h, w), "ori_shape": (h, w)}
    if seg:
        out["gt_seg_map"] = (np.arange(h * w).reshape(h, w) % 7).astype(np.uint8)
        out["seg_fields"] = ["gt_seg_map"]
    return out


def test_resize_scale_is_w_h():
    out = Resize(scale=(30, 10))(_sample())
    assert out["img"].shape == (10, 30, 3) and out["img_shape"] == (10, 30)
    assert out["scale_factor"] == (0.5, 0.25) and out["keep_ratio"] is False
    assert out["gt_seg_map"].shape == (10, 30)
    assert set(np.unique(out["gt_seg_map"])) <= set(range(7))  # nearest: no new labels


def test_resize_keep_ratio_fits_long_and_short_edge():
    out = Resize(scale=(2048, 512), keep_ratio=True)(_sample(40, 60))
    # factor = min(2048 / 60, 512 / 40) = 12.8 -> (768, 512)
    assert out["img_shape"] == (512, 768) and out["gt_seg_map"].shape == (512, 768)
    assert out["scale_factor"] == (768 / 60, 512 / 40)
    assert out["scale"] == (2048, 512)


def test_resize_by_scale_factor_and_int_scale():
    out = Resize(scale_factor=0.5)(_sample(41, 60))
    assert out["img_shape"] == (21, 30)  # int(41 * 0.5 + 0.5)
    assert Resize(scale=16)(_sample())["img_shape"] == (16, 16)
    with pytest.raises(ValueError, match="scale"):
        Resize()


def test_resize_moves_every_seg_field():
    sample = _sample()
    sample["gt_aux"] = np.zeros((40, 60), np.uint8)
    sample["seg_fields"].append("gt_aux")
    out = Resize(scale=(12, 8))(sample)
    assert out["gt_aux"].shape == (8, 12)


def test_random_resize_ratio_range_and_scale_list():
    np.random.seed(0)
    t = TRANSFORMS.build(
        dict(type="RandomResize", scale=(200, 100), ratio_range=(0.5, 2.0), keep_ratio=True)
    )
    sizes = set()
    for _ in range(5):
        out = t(_sample(40, 80))
        h, w = out["img_shape"]
        assert 50 <= w <= 400 and abs(w / h - 2) < 0.05
        assert out["gt_seg_map"].shape == (h, w)
        sizes.add((h, w))
    assert len(sizes) > 1
    t = RandomResize(scale=[(10, 20), (14, 22)])
    for _ in range(5):
        h, w = t(_sample())["img_shape"]
        assert 10 <= w <= 14 and 20 <= h <= 22
    with pytest.raises(ValueError, match="scale"):
        RandomResize(scale="big")


def test_resize_edge():
    out = ResizeEdge(scale=20)(_sample(40, 60))  # short edge is h
    assert out["img_shape"] == (20, 30) and out["scale"] == (30, 20)
    assert ResizeEdge(scale=20, edge="long")(_sample(40, 60))["img_shape"] == (13, 20)
    assert ResizeEdge(scale=20, edge="width")(_sample(40, 60))["img_shape"] == (13, 20)
    with pytest.raises(ValueError, match="edge"):
        ResizeEdge(scale=3, edge="shortest")


def test_random_resized_crop_outputs_h_w_scale_and_crops_seg_alike():
    np.random.seed(1)
    t = RandomResizedCrop(scale=(16, 24))
    sample = _sample()
    sample["img"] = np.repeat(sample["gt_seg_map"][..., None], 3, axis=-1)
    out = t(sample)
    assert out["img"].shape == (16, 24, 3) and out["img_shape"] == (16, 24)
    assert out["gt_seg_map"].shape == (16, 24)
    assert RandomResizedCrop(scale=8)(_sample())["img"].shape == (8, 8, 3)


def test_random_resized_crop_falls_back_to_a_centre_crop():
    t = RandomResizedCrop(scale=4, max_attempts=0)
    assert t.rand_crop_params(10, 100) == (0, (100 - 13) // 2, 10, 13)  # clamp to ratio 4/3
    assert t.rand_crop_params(50, 40) == (0, 0, 50, 40)
    with pytest.raises(ValueError, match="ranges"):
        RandomResizedCrop(scale=4, crop_ratio_range=(1.0, 0.5))
