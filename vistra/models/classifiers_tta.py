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
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from vistra.data.structures import DataSample
from vistra.models.base import BaseModel
from vistra.models.segmentors_tta import split_views
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
class AverageClsScoreTTA(BaseModel):
    """Wrap a classifier (``module``, a model or its config) for test-time augmentation.

    ``data_preprocessor``, when given, replaces the classifier's (MMEngine's
    ``BaseTTAModel``).
    """

    def __init__(
        self, module: dict | nn.Module, data_preprocessor: dict | nn.Module | None = None
    ) -> None:
        super().__init__()
        if isinstance(module, Mapping):
            module = dict(module)
            if data_preprocessor is not None:
                module["data_preprocessor"] = data_preprocessor
            module = MODELS.build(module, key_path="model.module")
        if not isinstance(module, nn.Module) or not callable(getattr(module, "test_step", None)):
            raise TypeError(
                f"AverageClsScoreTTA module must be a classifier (config or model with "
                f"test_step), got {type(module).__name__}"
            )
        self.module = module

    def test_step(self, data: dict) -> list[DataSample]:
        """Predict every view with the classifier, then average per sample."""
        predictions = [self.module.test_step(view) for view in split_views(data)]
        return self.merge_preds([list(views) for views in zip(*predictions)])

    def val_step(self, data: dict) -> list[DataSample]:
        return self.test_step(data)

    def merge_preds(self, data_samples_list: list[list[DataSample]]) -> list[DataSample]:
        """``[[s1_view1, s1_view2, ...], [s2_view1, ...]]`` -> one prediction per sample."""
        return [average_scores(views) for views in data_samples_list]

    def forward(
        self,
        inputs: torch.Tensor,
        data_samples: Sequence[DataSample] | None = None,
        mode: str = "tensor",
    ) -> Any:
        raise NotImplementedError(
            "AverageClsScoreTTA only predicts, through test_step/val_step; train the "
            "classifier itself"
        )

    # The wrapper's weights are the classifier's (see the module docstring).
    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)


__all__ = ["AverageClsScoreTTA", "average_scores", "flip_tta_pipeline"]
