"""Data preprocessors of the two-view masked-image-modelling methods (BEiT v1/v2, CAE):
the first view feeds the encoder, the second a tokenizer that wants its own input range.

- ``TwoNormDataPreprocessor`` (MMPretrain and MMSelfSup): the first view normalised with
  ``mean``/``std``, the second with ``second_mean``/``second_std`` (e.g. DALL-E's
  ``[0.1, 0.9]`` range: mean -31.875, std 318.75 on 0-255 pixels);
- ``CAEDataPreprocessor`` (MMSelfSup): the second view mapped to ``x / 255 * 0.8 + 0.1``.

Both flip channels first (``to_rgb``/``bgr_to_rgb``) and give the list ``[view 0,
view 1]``. They hold no parameters and add no state-dict keys.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

from vistra.models.selfsup.data_preprocessor import SelfSupDataPreprocessor
from vistra.registry import MODELS

__all__ = ["CAEDataPreprocessor", "TwoNormDataPreprocessor"]


class _TwoViews(SelfSupDataPreprocessor):
    def process_views(self, inputs) -> list[torch.Tensor]:  # noqa: ANN001 (see base)
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(
                f"{type(self).__name__} needs two views per sample, [image, tokenizer view] "
                "(RandomResizedCropAndInterpolationWithTwoPic with second_size), got "
                f"{type(inputs).__name__}"
                + (f" of {len(inputs)}" if isinstance(inputs, (list, tuple)) else "")
            )
        first = self.process_inputs(inputs[0])
        return [first, self.process_second(inputs[1])]

    def process_second(self, view) -> torch.Tensor:  # noqa: ANN001
        raise NotImplementedError

    @contextlib.contextmanager
    def _stats(self, mean: torch.Tensor | None, std: torch.Tensor | None) -> Iterator[None]:
        """Normalise with other statistics inside the block (None: not at all)."""
        saved = (self._enable_normalize, getattr(self, "mean", None), getattr(self, "std", None))
        self._enable_normalize = mean is not None
        if mean is not None:
            self.mean, self.std = mean, std
        try:
            yield
        finally:
            self._enable_normalize = saved[0]
            if saved[1] is not None:
                self.mean, self.std = saved[1], saved[2]


@MODELS.register_module()
class TwoNormDataPreprocessor(_TwoViews):
    """``[normalise(view 0; mean, std), normalise(view 1; second_mean, second_std)]``."""

    def __init__(
        self,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        second_mean: Sequence[float] | None = None,
        second_std: Sequence[float] | None = None,
        pad_size_divisor: int = 1,
        pad_value: float | int = 0,
        to_rgb: bool = False,
        bgr_to_rgb: bool = False,
        rgb_to_bgr: bool = False,
        non_blocking: bool = False,
    ) -> None:
        super().__init__(
            mean=mean,
            std=std,
            pad_size_divisor=pad_size_divisor,
            pad_value=pad_value,
            to_rgb=to_rgb,
            bgr_to_rgb=bgr_to_rgb,
            rgb_to_bgr=rgb_to_bgr,
            non_blocking=non_blocking,
        )
        if second_mean is None or second_std is None:
            raise ValueError("TwoNormDataPreprocessor needs second_mean and second_std")
        for name, values in (("second_mean", second_mean), ("second_std", second_std)):
            if len(values) not in (1, 3):
                raise ValueError(
                    f"TwoNormDataPreprocessor: {name} must have 1 or 3 values, got {values}"
                )
        self.register_buffer(
            "second_mean", torch.tensor(second_mean, dtype=torch.float32).view(-1, 1, 1), False
        )
        self.register_buffer(
            "second_std", torch.tensor(second_std, dtype=torch.float32).view(-1, 1, 1), False
        )

    def process_second(self, view) -> torch.Tensor:  # noqa: ANN001
        if not self._enable_normalize:  # upstream normalises neither view without mean/std
            return self.process_inputs(view)
        with self._stats(self.second_mean, self.second_std):
            return self.process_inputs(view)


@MODELS.register_module()
class CAEDataPreprocessor(_TwoViews):
    """MMSelfSup's CAE preprocessor: ``[normalise(view 0), view 1 / 255 * 0.8 + 0.1]``."""

    def process_second(self, view) -> torch.Tensor:  # noqa: ANN001
        enabled = self._enable_normalize
        with self._stats(None, None):
            second = self.process_inputs(view)
        return second / 255.0 * 0.8 + 0.1 if enabled else second
