import numpy as np
import pytest

from vistra.data.transforms import functional as F


def test_rescale_size_fits_long_and_short_edges():
    # 200x100 (w, h) into (2048, 512): long <= 2048, short <= 512 -> factor min(10.24, 5.12)
    assert F.rescale_size((200, 100), (2048, 512)) == ((1024, 512), 5.12)
    assert F.rescale_size((200, 100), (512, 2048)) == ((1024, 512), 5.12)  # order does not matter
    assert F.rescale_size((200, 100), 0.5) == ((100, 50), 0.5)
    with pytest.raises(ValueError):
        F.rescale_size((2, 2), -1)


def test_scale_size_rounds_half_up():
    assert F.scale_size((3, 5), 0.5) == (2, 3)
    assert F.scale_size((10, 10), (1.25, 0.5)) == (13, 5)


def test_nearest_resize_uses_floor_of_scaled_index():
    img = np.arange(4, dtype=np.uint8).reshape(1, 4)
    assert F.imresize(img, (8, 1), "nearest").tolist() == [[0, 0, 1, 1, 2, 2, 3, 3]]
    assert F.imresize(img, (2, 1), "nearest").tolist() == [[0, 2]]


def test_bilinear_resize_uses_half_pixel_centres():
    img = np.array([[0, 100]], np.uint8)
    # OpenCV INTER_LINEAR 2 -> 4: source x = (i + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25
    assert F.imresize(img, (4, 1)).tolist() == [[0, 25, 75, 100]]
    out = F.imresize(np.zeros((5, 7, 3), np.uint8), (3, 2))
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8


@pytest.mark.parametrize("interp", ["bilinear", "bicubic", "area", "lanczos", "nearest"])
@pytest.mark.parametrize("backend", ["cv2", "pillow"])
def test_resize_keeps_constant_images_constant(interp, backend):
    if backend == "pillow" and interp == "area":
        interp = "box"
    img = np.full((9, 13, 3), 77, np.uint8)
    out = F.imresize(img, (5, 4), interp, backend)
    assert out.shape == (4, 5, 3) and (out == 77).all()
    assert F.imresize(img.astype(np.float32), (26, 18), interp, backend).dtype == np.float32


def test_area_resize_averages_exact_overlaps():
    img = np.array([[0, 10, 20, 30, 40, 50]], np.float32)
    assert np.allclose(F.imresize(img, (3, 1), "area"), [[5, 25, 45]])
    # 6 -> 4: each output covers 1.5 inputs
    assert np.allclose(
        F.imresize(img, (4, 1), "area"), [[5 / 1.5, 25 / 1.5, 50 / 1.5, 70 / 1.5]], atol=1e-4
    )


def test_bad_interpolation_and_backend_are_named():
    with pytest.raises(ValueError, match="interpolation.*did you mean 'bilinear'"):
        F.imresize(np.zeros((2, 2), np.uint8), (1, 1), "bilinar")
    with pytest.raises(ValueError, match="backend"):
        F.check_resize_args("bilinear", "opencv")
    with pytest.raises(ValueError, match="box"):
        F.check_resize_args("box", "cv2")


def test_impad_shape_padding_and_per_channel_values():
    img = np.ones((2, 3, 3), np.uint8)
    out = F.impad(img, shape=(4, 5), pad_val=(1, 2, 3))
    assert (
        out.shape == (4, 5, 3)
        and out[3, 4].tolist() == [1, 2, 3]
        and out[0, 0].tolist() == [1, 1, 1]
    )
    out = F.impad(img[..., 0], padding=(1, 2), pad_val=9)  # left/right 1, top/bottom 2
    assert out.shape == (6, 5) and out[0, 0] == 9 and out[2, 1] == 1
    assert F.impad(img, shape=(1, 1)).shape == img.shape  # never crops
    ramp = np.arange(3, dtype=np.uint8)[None]
    assert F.impad(ramp, padding=(2, 0, 0, 0), padding_mode="reflect").tolist() == [[2, 1, 0, 1, 2]]
    assert F.impad(ramp, padding=(2, 0, 0, 0), padding_mode="symmetric").tolist() == [
        [1, 0, 0, 1, 2]
    ]
    with pytest.raises(ValueError, match="exactly one"):
        F.impad(img)


def test_imcrop_is_inclusive_and_clipped():
    img = np.arange(20).reshape(4, 5)
    assert F.imcrop(img, 1, 1, 2, 2).tolist() == [[6, 7], [11, 12]]
    assert F.imcrop(img, 3, 2, 99, 99).shape == (2, 2)


def test_imrotate_positive_angles_turn_clockwise():
    img = np.zeros((3, 3), np.uint8)
    img[0, 1] = 200  # top centre
    out = F.imrotate(img, 90, interpolation="nearest")
    assert out[1, 2] == 200 and out.sum() == 200  # moved to the right centre
    out = F.imrotate(img.astype(np.float32), 90)
    assert abs(out[1, 2] - 200) < 1e-3


def test_imrotate_auto_bound_grows_canvas_and_pads():
    img = np.full((2, 4), 5, np.uint8)
    out = F.imrotate(img, 90, auto_bound=True, border_value=255, interpolation="nearest")
    assert out.shape == (4, 2) and (out == 5).all()
    out = F.imrotate(np.full((8, 8), 5, np.uint8), 45, border_value=255, interpolation="nearest")
    assert out[0, 0] == 255 and out[4, 4] == 5


def test_hsv_matches_opencv_conventions():
    bgr = np.array([[[0, 0, 255], [0, 255, 0], [255, 0, 0], [128, 128, 128], [0, 0, 0]]], np.uint8)
    hsv = F.bgr2hsv(bgr)
    assert hsv[0, :, 0].tolist()[:3] == [0, 60, 120]
    assert hsv[0, 3].tolist() == [0, 0, 128]
    assert hsv[0, 0].tolist() == [0, 255, 255]
    assert np.array_equal(F.hsv2bgr(hsv), bgr)


def test_hsv_round_trip_is_close_on_random_images(rng):
    img = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    back = F.hsv2bgr(F.bgr2hsv(img))
    assert np.abs(back.astype(int) - img).max() <= 6  # OpenCV's own round trip is off by up to 5


def test_scale_values_truncates_like_a_float_cast():
    img = np.array([0, 100, 200, 250], np.uint8)
    assert F.scale_values(img, 1.5, 0.5).tolist() == [0, 150, 255, 255]
    assert F.scale_values(img, 1.0, -10.7).tolist() == [0, 89, 189, 239]
    assert np.array_equal(F.scale_values(img.astype(np.float32), 1.0, -10.7), [0, 89, 189, 239])


def _bgr2hsv_reference(img):  # OpenCV's integer maths, computed (what the tables hold)
    from vistra.data.transforms.functional import _HDIV, _SDIV

    b, g, r = (img[..., i].astype(np.int32) for i in range(3))
    v = np.maximum(np.maximum(b, g), r)
    diff = v - np.minimum(np.minimum(b, g), r)
    s = (diff * _SDIV[v] + (1 << 11)) >> 12
    h = np.where(v == r, g - b, np.where(v == g, b - r + 2 * diff, r - g + 4 * diff))
    h = (h * _HDIV[diff] + (1 << 11)) >> 12
    h += np.where(h < 0, 180, 0)
    return np.stack([h, s, v], axis=-1).astype(np.uint8)


def _hsv2bgr_reference(hsv):  # the float32 closed form, computed (what the table holds)
    h = hsv[..., 0].astype(np.float32) * np.float32(6.0 / 180.0)
    s = hsv[..., 1].astype(np.float32) * np.float32(1.0 / 255.0)
    v = hsv[..., 2].astype(np.float32) * np.float32(1.0 / 255.0)
    vs = v * s
    out = np.empty(hsv.shape, np.float32)
    for channel, n in ((0, 1.0), (1, 3.0), (2, 5.0)):
        k = h + np.float32(n)
        k[k >= 6] -= 6
        weight = np.minimum(k, np.float32(4) - k)
        np.clip(weight, 0, 1, out=weight)
        out[..., channel] = v - vs * weight
    out *= np.float32(255.0)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


def test_tabulated_hsv_conversions_equal_the_computed_ones():
    from vistra.data.transforms.functional import bgr2hsv, hsv2bgr

    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (1024, 2048, 3), dtype=np.uint8)  # 2M of the 2^24
    grey = np.repeat(np.arange(256, dtype=np.uint8)[:, None, None], 3, axis=2)
    for img in (colours, colours[::3, ::-2], grey):
        assert np.array_equal(bgr2hsv(img), _bgr2hsv_reference(img))
        assert np.array_equal(hsv2bgr(img), _hsv2bgr_reference(img))  # h up to 255 too
    hsv = bgr2hsv(colours)
    assert np.array_equal(hsv2bgr(hsv), _hsv2bgr_reference(hsv))


def test_channels_last_bilinear_equals_the_planar_resize():
    import torch
    import torch.nn.functional as tf

    def planar(img, w, h):  # the contiguous NCHW uint8 kernel
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].contiguous()
        y = tf.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=False)
        return y[0].permute(1, 2, 0).numpy()

    rng = np.random.default_rng(0)
    for _ in range(150):
        c = int(rng.choice([3, 4]))
        img = rng.integers(0, 256, (*rng.integers(1, 120, 2), c), dtype=np.uint8)
        view = img[int(rng.integers(0, img.shape[0])) :, ::-1] if rng.random() < 0.5 else img
        w, h = (int(n) for n in rng.integers(1, 260, 2))  # shrinking, enlarging, mixed
        out = F.imresize(view, (w, h))
        assert out.shape == (h, w, c) and out.flags.c_contiguous
        assert np.array_equal(out, planar(view, w, h)), (view.shape, w, h)


def test_random_flip_draws_as_np_random_choice():
    from vistra.data.transforms.geometric import RandomFlip

    for prob, direction in ((0.5, "horizontal"), ([0.3, 0.2], ["horizontal", "vertical"]),
                            (1.0, ["horizontal", "vertical", "diagonal"])):  # fmt: skip
        flip = RandomFlip(prob=prob, direction=direction)
        np.random.seed(0)
        got = [flip._choose_direction() for _ in range(500)]
        after = np.random.random_sample()
        np.random.seed(0)
        want = [flip._choices[np.random.choice(len(flip._choices), p=flip._probs)]
                for _ in range(500)]  # fmt: skip
        assert got == want and after == np.random.random_sample()
