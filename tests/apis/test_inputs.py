"""vistra.apis.inputs: what inference accepts, and the pipeline it builds from a config."""

from __future__ import annotations

import numpy as np
import pytest

from vistra.apis.inputs import build_pipeline, collect_inputs, first_results
from vistra.config import Config
from vistra.data.errors import DataError
from vistra.data.image_io import imread, imwrite


def _image(path, value=0):
    imwrite(np.full((8, 10, 3), value, np.uint8), path)
    return path


def test_a_folder_gives_its_images_sorted_below_it_and_skips_other_files(tmp_path):
    _image(tmp_path / "b.png")
    _image(tmp_path / "sub" / "a.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    items, several = collect_inputs(str(tmp_path))
    assert several and [i.name for i in items] == [
        str(tmp_path / "b.png"),
        str(tmp_path / "sub" / "a.jpg"),
    ]


def test_one_path_one_array_and_a_list(tmp_path):
    path = _image(tmp_path / "x.png")
    items, several = collect_inputs(str(path))
    assert not several and items[0].is_file
    array = np.zeros((4, 5, 3), np.uint8)
    items, several = collect_inputs(array)
    assert not several and items[0].source is array and items[0].name == "array[0]"
    items, several = collect_inputs([str(path), array, str(tmp_path)])
    assert several and [i.name for i in items] == [str(path), "array[1]", str(path)]
    grey, _ = collect_inputs(np.zeros((4, 5), np.uint8))
    assert grey[0].source.shape == (4, 5, 3)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: str(p / "missing.png"), "input image not found"),
        (lambda p: (p / "a.txt").write_text("x") and str(p / "a.txt"), "not an image file"),
        (lambda p: str(p), "has no image files"),
        (lambda p: np.zeros((4, 4, 3), np.float32), "uint8 BGR image array"),
        (lambda p: [], "the list is empty"),
        (lambda p: 3, "expected an image path"),
    ],
)
def test_bad_inputs_are_one_clear_error(tmp_path, make, message):
    with pytest.raises((DataError, FileNotFoundError)) as info:
        collect_inputs(make(tmp_path))
    text = str(info.value) if not isinstance(info.value, FileNotFoundError) else info.value.strerror
    assert message in text


def test_a_pipeline_without_a_loader_gets_one_and_arrays_skip_it(tmp_path):
    cfg = Config(dict(test_dataloader=dict(dataset=dict(pipeline=[dict(type="PackInputs")]))))
    pipeline = build_pipeline(cfg)
    path = _image(tmp_path / "x.png", 7)
    from_file = pipeline(first_results(collect_inputs(str(path))[0][0]))
    array = imread(path)
    from_array = pipeline(first_results(collect_inputs(array)[0][0]))
    assert from_file["inputs"].shape == (3, 8, 10)
    assert from_file["inputs"].equal(from_array["inputs"])
    assert from_file["data_samples"].img_path == str(path)
    assert from_array["data_samples"].ori_shape == (8, 10)


def test_annotation_loading_is_dropped_and_the_file_loader_takes_arrays(tmp_path):
    pipeline = [
        dict(type="mmseg.LoadImageFromFile", to_float32=True),
        dict(type="LoadAnnotations"),
        dict(type="Resize", scale=(20, 16), keep_ratio=False),
        dict(type="PackSegInputs"),
    ]
    cfg = Config(dict(val_dataloader=dict(dataset=dict(pipeline=pipeline))))
    steps = build_pipeline(cfg).transforms
    assert [type(t).__name__ for t in steps] == ["InferencerLoader", "Resize", "PackSegInputs"]
    assert steps[0].from_file.to_float32
    out = build_pipeline(cfg)(first_results(collect_inputs(np.zeros((8, 10, 3), np.uint8))[0][0]))
    assert out["inputs"].shape == (3, 16, 20) and "gt_sem_seg" not in out["data_samples"]
