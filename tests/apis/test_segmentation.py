"""The segmentation inference API predicts what `vistra test` predicts, for one image,
a folder, a numpy array and a batch (issue #19 item 1)."""

from __future__ import annotations

import numpy as np
import pytest
from infer_reference import seg_reference
from PIL import Image

from vistra.apis import MMSegInferencer, inference_model, init_model
from vistra.apis.segmentation import ImageSegmentationInferencer
from vistra.checkpoint import CheckpointError
from vistra.data.image_io import imread
from vistra.data.structures import DataSample

pytestmark = pytest.mark.slow  # trains the quickstart segmenter and runs `vistra test`


@pytest.fixture(scope="module")
def ref():
    return seg_reference()


@pytest.fixture(scope="module")
def model(ref):
    return init_model(str(ref.model.config), str(ref.model.checkpoint), device="cpu")


def _mask(sample: DataSample) -> np.ndarray:
    return sample.pred_sem_seg.numpy()[0]


def test_init_model_and_inference_model_match_vistra_test(ref, model):
    assert model.dataset_meta["classes"][0] == "background" and model.dataset_meta["palette"]
    first = ref.images[0]
    one = inference_model(model, str(first))
    assert isinstance(one, DataSample) and one.seg_logits.shape == (64, 64)
    np.testing.assert_array_equal(_mask(one), ref.masks[first.stem])
    np.testing.assert_array_equal(
        _mask(inference_model(model, imread(first))), ref.masks[first.stem]
    )
    folder = inference_model(model, str(first.parent))
    assert [_mask(s).tolist() for s in folder] == [ref.masks[p.stem].tolist() for p in ref.images]


def test_mmseg_inferencer_results_and_files(ref, tmp_path):
    inferencer = MMSegInferencer(
        str(ref.model.config), weights=str(ref.model.checkpoint), device="cpu"
    )
    assert MMSegInferencer is ImageSegmentationInferencer
    paths = [str(p) for p in ref.images]
    out = inferencer(paths, batch_size=2, out_dir=str(tmp_path), return_vis=True, opacity=0.5)
    assert len(out["predictions"]) == len(paths) == len(out["visualization"])
    for i, path in enumerate(ref.images):
        np.testing.assert_array_equal(out["predictions"][i], ref.masks[path.stem])
        saved = np.asarray(Image.open(tmp_path / "pred" / f"{i:08d}_pred.png"))
        np.testing.assert_array_equal(saved, ref.masks[path.stem])
        assert (tmp_path / "vis" / path.name).is_file()
    assert out["visualization"][0].shape == (64, 64, 3)
    single = inferencer(imread(ref.images[0]))
    np.testing.assert_array_equal(single["predictions"], ref.masks[ref.images[0].stem])
    assert single["visualization"] == []
    samples = inferencer(paths[:2], return_datasamples=True)
    assert len(samples) == 2 and all(isinstance(s, DataSample) for s in samples)


def test_drawing_overrides_and_refusals(ref, model):
    inferencer = MMSegInferencer(model, dataset_name="cityscapes", palette=[[1, 2, 3]] * 19)
    assert inferencer.dataset_meta["classes"][0] == "road"
    assert inferencer.dataset_meta["palette"][0] == [1, 2, 3]
    with pytest.raises(ValueError, match="did you mean 'cityscapes'"):
        MMSegInferencer(model, dataset_name="citiscapes")
    with pytest.raises(CheckpointError, match="needs weights=CHECKPOINT"):
        MMSegInferencer(str(ref.model.config))
