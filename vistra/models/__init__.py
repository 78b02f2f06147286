"""Models: layers, backbones, necks, heads, losses, classifiers and data preprocessors.

Importing this package registers every model component in ``MODELS`` (and the weight
initialisers in ``WEIGHT_INITIALIZERS``).
"""

from vistra.data import preprocessor  # data preprocessors are registered in MODELS
from vistra.models import (
    backbones,
    classifiers,
    classifiers_tta,
    heads,
    init,
    layers,
    losses,
    necks,
    retrievers,
    segmentors,
    segmentors_tta,
    selfsup,
    tta,
    utils,
)
from vistra.models.classifiers import ImageClassifier

__all__ = ["ImageClassifier"]
