"""``AverageClsScoreTTA``: test a classifier on several augmented views (MMPretrain).

``vistra test CFG CKPT --tta`` wraps the classifier as ``dict(**cfg.tta_model,
module=cfg.model)`` and tests with ``cfg.tta_pipeline``. As MMPretrain's
``tools/test.py --tta`` does, a classification config without them gets
``tta_model = dict(type='AverageClsScoreTTA')`` and a flip TTA: the test pipeline with its
last step (the packer) replaced by::

    dict(type='TestTimeAug', transforms=[
        [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
        [test_pipeline[-1]]])

:meth:`AverageClsScoreTTA.test_step` predicts each view's batch with the classifier's own
``test_step`` (softmax scores) and gives every sample the mean of its views' ``pred_score``
(summed view by view and divided by the number of views, as MMPretrain does), with
``pred_label`` its argmax. The wrapper has no weights: ``state_dict``/``load_state_dict``
are the classifier's, so a plain checkpoint loads unchanged.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from vistra.data.structures import DataSample
from vistra.models.tta import BaseTTAModel
from vistra.registry import MODELS


def flip_tta_pipeline(test_pipeline: Sequence[dict]) -> list[dict]:
    """MMPretrain's default TTA pipeline: the test pipeline, flipped and not, packed."""
    pipeline = copy.deepcopy(list(test_pipeline))
    if not pipeline:
        raise ValueError("--tta needs a non-empty test pipeline to build the flip TTA from")
    flip = [dict(type="RandomFlip", prob=1.0), dict(type="RandomFlip", prob=0.0)]
    pipeline[-1] = dict(type="TestTimeAug", transforms=[flip, [copy.deepcopy(test_pipeline[-1])]])
    return pipeline


def average_scores(views: Sequence[DataSample]) -> DataSample:
    """One sample's views -> the first view with the mean ``pred_score`` and its argmax."""
    if not views:
        raise ValueError("AverageClsScoreTTA got a sample without views")
    missing = [i for i, view in enumerate(views) if "pred_score" not in view]
    if missing:
        raise KeyError(f"AverageClsScoreTTA: views {missing} carry no pred_score to average")
    score = sum(view.pred_score for view in views) / len(views)
    merged = views[0].clone()
    merged.set_pred_score(score)
    merged.set_pred_label(score.argmax(dim=-1, keepdim=True))
    return merged


@MODELS.register_module()
class AverageClsScoreTTA(BaseTTAModel):
    """Wrap a classifier (``module``, a model or its config) for test-time augmentation;
    views are merged by :func:`average_scores`."""

    def merge_preds(self, data_samples_list: list[list[DataSample]]) -> list[DataSample]:
        """``[[s1_view1, s1_view2, ...], [s2_view1, ...]]`` -> one prediction per sample."""
        return [average_scores(views) for views in data_samples_list]


__all__ = ["AverageClsScoreTTA", "average_scores", "flip_tta_pipeline"]
