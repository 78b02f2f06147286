"""Use a trained model from Python: MMPretrain's and MMSegmentation's inference APIs.

- :func:`init_model` (config + checkpoint), :func:`get_model` and :func:`list_models` (the
  model zoo ``vistra list-models`` reads);
- :func:`inference_model`: one image or a list, the task following the model;
- :class:`ImageClassificationInferencer`, :class:`ImageSegmentationInferencer` (alias
  :data:`MMSegInferencer`) and :class:`FeatureExtractor`.

Inputs are image paths, folders, numpy BGR arrays or lists of them (see
:mod:`vistra.apis.inputs`).
"""

from vistra.apis.classification import ImageClassificationInferencer
from vistra.apis.features import FeatureExtractor
from vistra.apis.inference import inference_model
from vistra.apis.model import get_model, init_model, list_models
from vistra.apis.segmentation import ImageSegmentationInferencer, MMSegInferencer

__all__ = [
    "FeatureExtractor",
    "ImageClassificationInferencer",
    "ImageSegmentationInferencer",
    "MMSegInferencer",
    "get_model",
    "inference_model",
    "init_model",
    "list_models",
]
