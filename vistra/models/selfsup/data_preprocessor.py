"""``SelfSupDataPreprocessor``: normalise one batch or several views of it (MMPretrain).

Self-supervised pipelines give either one image per sample (MAE) or several views of it
(``MultiView``, contrastive methods). The collated ``inputs`` therefore come as:

- an ``NCHW`` tensor (``default_collate``, one view) -> one normalised ``NCHW`` tensor;
- a list of ``CHW`` tensors (``pseudo_collate``, one view) -> one ``NCHW`` tensor;
- a list of ``NCHW`` tensors, one per view (``default_collate`` of views) -> a list of
  normalised ``NCHW`` tensors, in view order;
- a list of lists of ``CHW`` tensors (``pseudo_collate`` of views) -> the same list.

So a single view stays a tensor and several views stay a list, as in MMPretrain. Channel
flipping (``to_rgb``/``bgr_to_rgb``/``rgb_to_bgr``) and ``mean``/``std`` apply to every
view; nothing else of the batch changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vistra.data.preprocessor import ImgDataPreprocessor
from vistra.registry import MODELS


@MODELS.register_module()
class SelfSupDataPreprocessor(ImgDataPreprocessor):
    """Stack, flip channels and normalise one view or a list of views.

    ``to_rgb`` is MMPretrain's older name of ``bgr_to_rgb``; either turns the BGR images
    that the loading transforms produce into RGB.
    """

    def __init__(
        self,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        pad_size_divisor: int = 1,
        pad_value: float | int = 0,
        to_rgb: bool = False,
        bgr_to_rgb: bool = False,
        rgb_to_bgr: bool = False,
        non_blocking: bool = False,
    ) -> None:
        super().__init__(
            mean,
            std,
            pad_size_divisor,
            pad_value,
            bgr_to_rgb=bgr_to_rgb or to_rgb,
            rgb_to_bgr=rgb_to_bgr,
            non_blocking=non_blocking,
        )

    def forward(self, data: dict, training: bool = False) -> dict:
        if not isinstance(data, dict) or "inputs" not in data:
            keys = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise KeyError(f"SelfSupDataPreprocessor needs a batch dict with 'inputs'; got {keys}")
        data = self.cast_data(data)
        return {
            "inputs": self.process_views(data["inputs"]),
            "data_samples": data.get("data_samples"),
        }

    def process_views(
        self, inputs: torch.Tensor | Sequence[torch.Tensor] | Sequence[Sequence[torch.Tensor]]
    ) -> torch.Tensor | list[torch.Tensor]:
        """One view -> a normalised ``NCHW`` tensor; several views -> a list of them."""
        if isinstance(inputs, torch.Tensor):
            return self.process_inputs(inputs)
        if not isinstance(inputs, (list, tuple)) or not inputs:
            raise TypeError(
                "data['inputs'] must be an NCHW tensor, a list of CHW tensors or a list of "
                f"views; got {type(inputs).__name__}"
            )
        first = inputs[0]
        if isinstance(first, torch.Tensor) and first.dim() == 3:
            return self.process_inputs(inputs)  # one view, not stacked yet
        views = []
        for i, view in enumerate(inputs):
            if isinstance(view, torch.Tensor) and view.dim() != 4:
                raise ValueError(
                    f"view {i} of data['inputs'] must be an NCHW batch, got shape "
                    f"{tuple(view.shape)}"
                )
            views.append(self.process_inputs(view))
        return views
