"""benchmarks/data_pipeline.py at tiny size, without the oracle: the decoder table, both
pipelines for vistra and torchvision and their ratios are printed (the ratios themselves
are not asserted: no timed tests)."""

from __future__ import annotations

import pytest
from benchmark_support import load_benchmark


@pytest.mark.slow
def test_data_pipeline_benchmark_runs_at_tiny_size(capsys):
    code = load_benchmark("data_pipeline").main(["--tiny", "--no-upstream", "--profile"])
    out = capsys.readouterr().out
    assert "vistra cityscapes pipeline, ms per image by step" in out, out
    assert "  RandomResize + RandomCrop " in out and "  PhotoMetricDistortion " in out, out
    assert code in (0, 1), out  # 1: a target missed, which a tiny run on a busy CI may be
    assert "vistra decodes plain JPEGs with: simplejpeg" in out or "torchvision" in out, out
    for decoder in ("pillow", "torchvision.io.decode_jpeg", "vistra imfrombytes"):
        assert f"  {decoder} " in out, out
    for title in ("ImageNet train pipeline (4 images", "Cityscapes train pipeline (2 images"):
        assert title in out, out
    assert out.count("ratio vistra / torchvision = ") == 2, out
    assert "MMPretrain: left out (--no-upstream)" in out and "MMSeg: left out" in out, out


def test_bad_sizes_are_refused_naming_the_flag(capsys):
    with pytest.raises(SystemExit):
        load_benchmark("data_pipeline").main(["--repeats", "0"])
    assert "--repeats must be at least 1" in capsys.readouterr().err


def test_generated_jpegs_look_like_photos(tmp_path):
    import numpy as np
    from PIL import Image

    samples = load_benchmark("data_pipeline").write_data(tmp_path, 2, 1, (128, 64))
    img = np.asarray(Image.open(samples["imagenet"][0]["img_path"]))
    assert img.shape in ((375, 500, 3), (480, 640, 3)) and img.std() > 20  # not flat colour
    seg = np.asarray(Image.open(samples["cityscapes"][0]["seg_map_path"]))
    assert seg.shape == (64, 128) and set(np.unique(seg)) <= set(range(19)) | {255}
