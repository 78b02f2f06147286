import numpy as np
import pytest
from PIL import Image

from vistra.data.image_io import check_backend_args, imfrombytes, imread, imwrite

from .conftest import solid_rgb, write_png


def test_color_is_bgr_and_grayscale_is_2d(tmp_path):
    path = write_png(tmp_path / "a.png", solid_rgb((10, 20, 30)))
    img = imread(path)
    assert img.shape == (6, 8, 3) and img.dtype == np.uint8
    assert img[0, 0].tolist() == [30, 20, 10]
    assert imread(path, channel_order="rgb")[0, 0].tolist() == [10, 20, 30]
    gray = imread(path, "grayscale")
    assert gray.shape == (6, 8)


def test_grey_file_read_as_color_has_three_equal_channels(tmp_path):
    path = write_png(tmp_path / "g.png", np.full((3, 4), 77, np.uint8))
    assert imread(path)[1, 1].tolist() == [77, 77, 77]


def test_rgba_color_drops_alpha_unchanged_keeps_it_in_bgra(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 50
    path = tmp_path / "a.png"
    Image.fromarray(rgba, "RGBA").save(path)
    assert imread(path).shape == (2, 2, 3)
    raw = imread(path, "unchanged")
    assert raw.shape == (2, 2, 4) and raw[0, 0].tolist() == [0, 0, 200, 50]


def test_palette_png_unchanged_indices_with_pillow_colours_with_cv2(tmp_path):
    labels = np.array([[0, 1], [2, 1]], np.uint8)
    img = Image.fromarray(labels, "P")
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    path = tmp_path / "p.png"
    img.save(path)
    assert np.array_equal(imread(path, "unchanged", backend="pillow"), labels)
    colours = imread(path, "unchanged", backend="cv2")
    assert colours.shape == (2, 2, 3) and colours[0, 1].tolist() == [0, 0, 255]  # red in BGR


def test_16bit_images_are_shifted_to_8bit_for_color(tmp_path):
    path = tmp_path / "d.png"
    Image.fromarray(np.full((2, 2), 0x1234, np.uint16)).save(path)
    assert imread(path)[0, 0].tolist() == [0x12] * 3
    assert imread(path, "unchanged").dtype in (np.uint16, np.int32)


def test_exif_orientation_is_applied_for_color(tmp_path):
    arr = np.zeros((2, 4, 3), np.uint8)
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    path = tmp_path / "o.jpg"
    img.save(path, exif=exif)
    assert imread(path).shape[:2] == (4, 2)
    assert imread(path, "color_ignore_orientation").shape[:2] == (2, 4)


def test_missing_and_corrupt_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        imread(tmp_path / "nope.png")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"definitely not an image")
    with pytest.raises(ValueError, match="cannot decode image .*bad.jpg"):
        imread(bad)
    truncated = tmp_path / "t.png"
    good = write_png(tmp_path / "full.png", solid_rgb((1, 2, 3), 64, 64))
    truncated.write_bytes(good.read_bytes()[:60])
    with pytest.raises(ValueError, match="t.png"):
        imread(truncated)


def test_bad_flag_and_remote_backend_are_rejected():
    with pytest.raises(ValueError, match="color_type"):
        imfrombytes(b"", flag="colour")
    check_backend_args(None)
    check_backend_args(dict(backend="local"))
    with pytest.raises(ValueError, match="only local files"):
        check_backend_args(dict(backend="petrel"))


def test_imwrite_round_trips_bgr(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    imwrite(img, tmp_path / "x" / "y.png")
    assert np.array_equal(imread(tmp_path / "x" / "y.png"), img)


def _jpeg(arr, mode=None, **save):
    import io

    buf = io.BytesIO()
    img = Image.fromarray(arr)
    (img.convert(mode) if mode else img).save(buf, "JPEG", quality=90, **save)
    return buf.getvalue()


def _photo(h=48, w=64, channels=3):  # smooth content, as a photo
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (h // 8, w // 8, channels), dtype=np.uint8).squeeze()
    return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC))


@pytest.mark.parametrize("decoder", ["simplejpeg", "torchvision"])
@pytest.mark.parametrize("channel_order", ["bgr", "rgb"])
def test_fast_jpeg_path_gives_the_pillow_path_pixels(monkeypatch, channel_order, decoder):
    from vistra.data import image_io
    from vistra.data.image_io import _fast_jpeg, jpeg_kind

    if decoder == "simplejpeg":
        pytest.importorskip("simplejpeg")
    else:  # what vistra falls back to without simplejpeg
        monkeypatch.setattr(image_io, "simplejpeg", None)
        assert image_io.jpeg_decoder_name() == "torchvision.io.decode_jpeg"

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: must still be applied (through the Pillow path)
    flat = Image.Exif()
    flat[0x0112] = 1
    cases = {
        "baseline": (_jpeg(_photo()), "plain"),
        "grey": (_jpeg(_photo(channels=1)), "plain"),
        "subsampling 4:4:4": (_jpeg(_photo(), subsampling=0), "plain"),
        "exif upright": (_jpeg(_photo(), exif=flat.tobytes()), "metadata"),
        "exif rotated": (_jpeg(_photo(), exif=exif.tobytes()), "metadata"),
        "progressive": (_jpeg(_photo(), progressive=True), None),
        "cmyk": (_jpeg(_photo(), "CMYK"), None),
    }
    for name, (blob, kind) in cases.items():
        assert jpeg_kind(blob) == kind, name
        used = _fast_jpeg(blob, channel_order, orient=True) is not None
        assert used == (kind is not None and name != "exif rotated"), name
        for flag in ("color", "color_ignore_orientation"):
            fast = imfrombytes(blob, flag, channel_order, backend="cv2")
            slow = imfrombytes(blob, flag, channel_order, backend="pillow")  # never the fast path
            assert fast.shape == slow.shape and np.array_equal(fast, slow), (name, flag)
            assert fast.flags.writeable and fast.flags.c_contiguous, name
    rotated = imfrombytes(cases["exif rotated"][0])
    assert rotated.shape == (64, 48, 3)  # orientation applied: (h, w) swapped


def test_truncated_jpeg_still_fails_as_before(tmp_path):
    from vistra.data.errors import UnreadableFileError
    from vistra.data.image_io import jpeg_kind

    blob = _jpeg(_photo())[:-200]
    assert jpeg_kind(blob) is None
    for odd in (
        b"",
        b"\xff\xd8\xff\xd9",
        b"\xff\xd8\xff\xc0\x00\x11\x08\xff\xd9",
        b"\x89PNG\xff\xd9",
    ):
        assert jpeg_kind(odd) is None, odd  # cut-off headers: the Pillow path, no IndexError
    with pytest.raises(UnreadableFileError, match="truncated"):
        imfrombytes(blob, path="t.jpg")


def test_read_bytes_names_a_missing_file_or_a_directory(tmp_path):
    from vistra.data.image_io import read_bytes

    (tmp_path / "a.png").write_bytes(b"\x89PNG bytes")
    assert read_bytes(tmp_path / "a.png") == b"\x89PNG bytes"
    assert read_bytes(str(tmp_path / "a.png")) == b"\x89PNG bytes"
    with pytest.raises(FileNotFoundError, match=r"image file not found: '.*b\.png'"):
        read_bytes(tmp_path / "b.png")
    with pytest.raises(IsADirectoryError, match="expected an image file, got a directory"):
        read_bytes(tmp_path)
