"""The classification inference API predicts what `vistra test` predicts, for one image,
a folder, a numpy array and a batch (issue #19 item 1)."""

from __future__ import annotations

import numpy as np
import pytest
from infer_reference import cls_reference

from vistra.apis import ImageClassificationInferencer, inference_model, init_model
from vistra.checkpoint import CheckpointError
from vistra.data.image_io import imread
from vistra.data.structures import DataSample

pytestmark = pytest.mark.slow  # trains the quickstart classifier and runs `vistra test`


@pytest.fixture(scope="module")
def ref():
    return cls_reference()


@pytest.fixture(scope="module")
def model(ref):
    return init_model(ref.model.config, ref.model.checkpoint, device="cpu")


def _check(ref, path, result):
    expected = ref.scores[str(path)]
    assert result["pred_label"] == ref.labels[str(path)]
    np.testing.assert_allclose(result["pred_scores"], expected, atol=1e-5)
    assert result["pred_score"] == pytest.approx(float(expected.max()), abs=1e-5)


def test_init_model_attaches_config_and_classes_in_eval_mode(model):
    assert not model.training
    assert model.cfg["model"]["type"] == "ImageClassifier"
    assert list(model.dataset_meta["classes"])[:2] == ["circle", "square"]


def test_one_image_a_folder_an_array_and_a_batch_match_vistra_test(ref, model):
    first = ref.images[0]
    one = inference_model(model, str(first))
    _check(ref, first, one)
    assert one["pred_class"] == model.dataset_meta["classes"][one["pred_label"]]
    folder = inference_model(model, str(first.parents[1]))  # test/<class>/*.png
    assert len(folder) == len(ref.images)
    for path, result in zip(ref.images, folder):
        _check(ref, path, result)
    _check(ref, first, inference_model(model, imread(first)))  # BGR, as OpenMMLab's arrays
    batch = inference_model(model, [str(p) for p in ref.images], batch_size=2)
    for path, result in zip(ref.images, batch):
        _check(ref, path, result)


def test_inferencer_from_config_and_checkpoint(ref, tmp_path, monkeypatch, capsys):
    inferencer = ImageClassificationInferencer(
        str(ref.model.config), pretrained=str(ref.model.checkpoint), device="cpu"
    )
    arrays = [imread(p) for p in ref.images[:3]]
    results = inferencer(arrays, batch_size=3)
    for path, result in zip(ref.images, results):
        _check(ref, path, result)
    samples = inferencer(str(ref.images[0]), return_datasamples=True)
    assert isinstance(samples[0], DataSample) and "pred_score" in samples[0]
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    inferencer([str(p) for p in ref.images[:2]], show=True, show_dir=tmp_path / "vis")
    assert sorted(p.name for p in (tmp_path / "vis").iterdir()) == sorted(
        f"{p.stem}.png" for p in ref.images[:2]
    )
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and "cannot show images" in warning[0]
    named = ImageClassificationInferencer(inferencer.model, classes=list("abcdef"))
    assert named(str(ref.images[0]))[0]["pred_class"] in "abcdef"


def test_a_checkpoint_that_leaves_weights_unset_or_none_is_refused(ref, tmp_path):
    import torch

    ckpt = torch.load(ref.model.checkpoint, map_location="cpu", weights_only=True)
    ckpt["state_dict"] = {k: v for k, v in ckpt["state_dict"].items() if not k.startswith("head")}
    torch.save(ckpt, tmp_path / "no_head.pth")
    with pytest.raises(CheckpointError, match="leaves 2 model weights unset"):
        init_model(ref.model.config, tmp_path / "no_head.pth")
    allowed = init_model(
        ref.model.config, tmp_path / "no_head.pth", cfg_options={"test_strict_load": False}
    )
    assert allowed.cfg["test_strict_load"] is False
    with pytest.raises(CheckpointError, match="sets no load_from"):
        ImageClassificationInferencer(str(ref.model.config))
