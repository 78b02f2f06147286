import numpy as np
import pytest

from vistra.data.transforms.geometric import CenterCrop, Pad, RandomCrop, RandomFlip, RandomRotate


def _sample(h=4, w=6):
    img = np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3)
    seg = np.arange(h * w, dtype=np.uint8).reshape(h, w)
    return {"img": img, "gt_seg_map": seg, "seg_fields": ["gt_seg_map"], "img_shape": (h, w)}


def test_center_crop_w_h_and_rounding():
    out = CenterCrop(crop_size=(3, 2))(_sample(5, 6))  # w=3, h=2
    # y1 = round(3 / 2) = 2 (half to even), x1 = round(1.5) = 2
    assert out["img_shape"] == (2, 3)
    assert out["gt_seg_map"].tolist() == [[14, 15, 16], [20, 21, 22]]
    assert CenterCrop(crop_size=10)(_sample())["img_shape"] == (4, 6)  # smaller images stay whole


def test_center_crop_auto_pad():
    out = CenterCrop(crop_size=8, auto_pad=True)(_sample())
    assert out["img_shape"] == (8, 8) and out["gt_seg_map"][-1, -1] == 255


def test_random_crop_window_is_shared_by_image_and_seg():
    np.random.seed(0)
    sample = _sample(8, 8)
    sample["img"] = np.repeat(sample["gt_seg_map"][..., None], 3, axis=-1)
    out = RandomCrop(crop_size=(3, 5))(sample)  # (h, w)
    assert out["img"].shape == (3, 5, 3) and out["img_shape"] == (3, 5)
    assert np.array_equal(out["img"][..., 0], out["gt_seg_map"])


def test_random_crop_mmpretrain_padding_and_pad_if_needed():
    np.random.seed(0)
    out = RandomCrop(crop_size=4, padding=2, pad_val=9)(_sample())
    assert out["img"].shape == (4, 4, 3)
    out = RandomCrop(crop_size=(4, 6), padding=(1, 2), pad_val=7)(
        {"img": np.zeros((2, 2, 3), np.uint8)}
    )
    assert (
        out["img"].shape == (4, 4, 3) and (out["img"] == 7).any()
    )  # padded to 6x4 then cropped 4x4
    out = RandomCrop(crop_size=(6, 10), pad_if_needed=True)(_sample())
    assert out["img"].shape == (6, 10, 3) and out["gt_seg_map"].shape == (6, 10)
    assert (out["gt_seg_map"] == 255).sum() == 6 * 10 - 4 * 6  # seg padded with ignore_index


def test_random_crop_cat_max_ratio_avoids_single_class_windows():
    seg = np.zeros((20, 20), np.uint8)
    seg[:, 18:] = 1  # class 1 only in the last two columns
    results = []
    for seed in range(20):
        np.random.seed(seed)
        out = RandomCrop(crop_size=(4, 4), cat_max_ratio=0.75)(
            {
                "img": np.zeros((20, 20, 3), np.uint8),
                "gt_seg_map": seg.copy(),
                "seg_fields": ["gt_seg_map"],
            }
        )
        results.append(len(np.unique(out["gt_seg_map"])) > 1)
    np.random.seed(0)
    plain = [
        len(
            np.unique(
                RandomCrop(crop_size=(4, 4))(
                    {"img": np.zeros((20, 20, 3), np.uint8), "gt_seg_map": seg.copy()}
                )["gt_seg_map"]
            )
        )
        > 1
        for _ in range(20)
    ]
    assert sum(results) > sum(plain)


def test_random_crop_ignores_ignore_index_in_cat_max_ratio():
    seg = np.full((4, 4), 255, np.uint8)
    seg[0, 0] = 1
    seg[0, 1] = 2
    np.random.seed(0)
    out = RandomCrop(crop_size=(4, 4), cat_max_ratio=0.75)(
        {"img": np.zeros((4, 4, 3), np.uint8), "gt_seg_map": seg}
    )
    assert out["gt_seg_map"].shape == (4, 4)


@pytest.mark.parametrize(
    ("direction", "expect"),
    [
        ("horizontal", lambda a: a[:, ::-1]),
        ("vertical", lambda a: a[::-1]),
        ("diagonal", lambda a: a[::-1, ::-1]),
    ],
)
def test_random_flip_flips_image_and_seg(direction, expect):
    sample = _sample()
    ref_img, ref_seg = sample["img"].copy(), sample["gt_seg_map"].copy()
    out = RandomFlip(prob=1.0, direction=direction)(sample)
    assert out["flip"] is True and out["flip_direction"] == direction
    assert np.array_equal(out["img"], expect(ref_img)) and np.array_equal(
        out["gt_seg_map"], expect(ref_seg)
    )


def test_random_flip_probabilities():
    out = RandomFlip(prob=0.0)(_sample())
    assert out["flip"] is False and out["flip_direction"] is None
    np.random.seed(0)
    t = RandomFlip(prob=[0.3, 0.7], direction=["horizontal", "vertical"])
    seen = {t(_sample())["flip_direction"] for _ in range(30)}
    assert seen == {"horizontal", "vertical"}
    with pytest.raises(ValueError, match="prob"):
        RandomFlip()
    with pytest.raises(ValueError, match="sum"):
        RandomFlip(prob=[0.6, 0.6], direction=["horizontal", "vertical"])
    with pytest.raises(ValueError, match="direction"):
        RandomFlip(prob=0.5, direction="sideways")


def test_random_flip_swaps_seg_labels():
    sample = {"img": np.zeros((1, 2, 3), np.uint8), "gt_seg_map": np.array([[1, 2]], np.uint8)}
    out = RandomFlip(prob=1.0, swap_seg_labels=[(1, 2)])(sample)
    assert out["gt_seg_map"].tolist() == [[1, 2]]  # flipped to [2, 1], then labels swapped


def test_pad_size_divisor_square_and_seg_value():
    out = Pad(size_divisor=4)(_sample(5, 6))
    assert (
        out["img_shape"] == (8, 8)
        and out["pad_shape"] == (8, 8, 3)
        and out["pad_size_divisor"] == 4
    )
    assert out["gt_seg_map"][7, 7] == 255 and out["img"][7, 7].tolist() == [0, 0, 0]
    out = Pad(size=(10, 7), pad_val=dict(img=(1, 2, 3), seg=5))(_sample())  # (w, h)
    assert (
        out["img_shape"] == (7, 10)
        and out["img"][6, 9].tolist() == [1, 2, 3]
        and out["gt_seg_map"][6, 9] == 5
    )
    assert Pad(pad_to_square=True)(_sample())["img_shape"] == (6, 6)
    assert Pad(size=(8, 8), pad_val=3)(_sample())["gt_seg_map"][7, 7] == 255
    with pytest.raises(ValueError, match="exactly one"):
        Pad()


def test_random_rotate_90_degrees_clockwise_with_seg_padding():
    img = np.zeros((3, 3, 3), np.uint8)
    img[0, 1] = 200
    seg = np.zeros((3, 3), np.uint8)
    seg[0, 1] = 1
    out = RandomRotate(prob=1.0, degree=(90, 90))(
        {"img": img, "gt_seg_map": seg, "seg_fields": ["gt_seg_map"]}
    )
    assert out["img"][1, 2].tolist() == [200] * 3 and out["gt_seg_map"][1, 2] == 1
    out = RandomRotate(prob=1.0, degree=(45, 45), pad_val=7, seg_pad_val=255)(
        {
            "img": np.zeros((8, 8, 3), np.uint8),
            "gt_seg_map": np.zeros((8, 8), np.uint8),
            "seg_fields": ["gt_seg_map"],
        }
    )
    assert out["gt_seg_map"][0, 0] == 255 and out["img"][0, 0].tolist() == [7, 7, 7]
    assert set(np.unique(out["gt_seg_map"])) == {0, 255}
    same = RandomRotate(prob=0.0, degree=30)(_sample())
    assert np.array_equal(same["img"], _sample()["img"])
    with pytest.raises(ValueError, match="degree"):
        RandomRotate(prob=0.5, degree=-3)
