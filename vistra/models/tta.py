"""``BaseTTAModel``: what every test-time-augmentation wrapper shares (MMEngine's name).

A TTA wrapper holds the model it augments (``module``, a built model or its config). Its
``test_step`` splits the collated TTA batch into one ordinary batch per view
(:func:`split_views`), predicts each with the model's own ``test_step``, and hands every
sample's views to ``merge_preds``, which the task's subclass defines (MMSegmentation's
``SegTTAModel``, MMPretrain's ``AverageClsScoreTTA``).

The wrapper has no weights of its own: ``state_dict()``/``load_state_dict()`` are the
model's, so a checkpoint of the plain model loads unchanged (MMEngine likewise loads into
``BaseTTAModel.module``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from vistra.data.structures import DataSample
from vistra.models.base import BaseModel
from vistra.registry import MODELS


def split_views(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A TTA batch (one list per view under each key) -> one ordinary batch per view."""
    if not isinstance(data, Mapping) or "inputs" not in data:
        raise TypeError(
            f"a TTA model's test_step takes the collated dict with 'inputs', got "
            f"{type(data).__name__}"
        )
    inputs = data["inputs"]
    if (
        not isinstance(inputs, (list, tuple))
        or not inputs
        or not all(isinstance(view, (list, tuple)) for view in inputs)
    ):
        raise TypeError(
            "a TTA model expects inputs=[[img1_view1, img2_view1], [img1_view2, ...], ...] as "
            "pseudo_collate makes them from TestTimeAug outputs, but got a plain batch; use "
            "cfg.tta_pipeline (with a TestTimeAug step) as the test pipeline"
        )
    num_views = len(inputs)
    for key, value in data.items():
        if not isinstance(value, (list, tuple)) or len(value) != num_views:
            got = len(value) if isinstance(value, (list, tuple)) else type(value).__name__
            raise ValueError(f"TTA batch key {key!r} has {got} entries for {num_views} views")
    return [{key: value[i] for key, value in data.items()} for i in range(num_views)]


class BaseTTAModel(BaseModel):
    """Wrap ``module`` (a model or its config) for test-time augmentation.

    ``data_preprocessor``, when given, replaces the model's (as in MMEngine).
    """

    def __init__(
        self, module: dict | nn.Module, data_preprocessor: dict | nn.Module | None = None
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if isinstance(module, Mapping):
            module = dict(module)
            if data_preprocessor is not None:
                module["data_preprocessor"] = data_preprocessor
            module = MODELS.build(module, key_path="model.module")
        if not isinstance(module, nn.Module):
            raise TypeError(f"{name} module must be a model config or an nn.Module, got {module!r}")
        if not callable(getattr(module, "test_step", None)):
            raise TypeError(f"{name} needs a model with test_step, got {type(module).__name__}")
        self.module = module

    def merge_preds(self, data_samples_list: list[list[DataSample]]) -> list[DataSample]:
        """``[[s1_view1, s1_view2, ...], [s2_view1, ...]]`` -> one prediction per sample."""
        raise NotImplementedError

    def test_step(self, data: dict) -> list[DataSample]:
        """Predict every view with the wrapped model, then merge per sample."""
        predictions = [self.module.test_step(view) for view in split_views(data)]
        return self.merge_preds([list(views) for views in zip(*predictions)])

    def val_step(self, data: dict) -> list[DataSample]:
        return self.test_step(data)

    def forward(
        self,
        inputs: torch.Tensor,
        data_samples: Sequence[DataSample] | None = None,
        mode: str = "tensor",
    ) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__} only predicts, through test_step/val_step; train the "
            "wrapped model itself"
        )

    # The wrapper's weights are the wrapped model's (see the module docstring).
    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)


__all__ = ["BaseTTAModel", "split_views"]
