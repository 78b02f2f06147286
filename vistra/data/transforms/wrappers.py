"""Transform wrappers from MMCV: ``RandomApply`` and ``RandomChoice``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from vistra.data.transforms.base import BaseTransform, Compose
from vistra.registry import TRANSFORMS

TransformCfg = dict | Callable[[dict], dict | None]


def _compose(transforms: TransformCfg | Sequence[TransformCfg]) -> Compose:
    return Compose(
        [transforms] if isinstance(transforms, dict) or callable(transforms) else transforms
    )


@TRANSFORMS.register_module()
class RandomApply(BaseTransform):
    """Run ``transforms`` (one or a list, in order) with probability ``prob``."""

    def __init__(
        self, transforms: TransformCfg | Sequence[TransformCfg], prob: float = 0.5
    ) -> None:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"RandomApply prob must be in [0, 1], got {prob}")
        self.prob = prob
        self.transforms = _compose(transforms)

    def transform(self, results: dict) -> dict | None:
        if np.random.rand() < self.prob:
            return self.transforms(results)
        return results


@TRANSFORMS.register_module()
class RandomChoice(BaseTransform):
    """Run one of several pipelines, picked with probabilities ``prob`` (uniform if None).

    ``transforms`` is a list whose items are transforms or lists of transforms.
    """

    def __init__(
        self,
        transforms: Sequence[TransformCfg | Sequence[TransformCfg]],
        prob: Sequence[float] | None = None,
    ) -> None:
        if prob is not None:
            if len(prob) != len(transforms):
                raise ValueError(
                    f"RandomChoice needs one prob per pipeline: {len(prob)} != {len(transforms)}"
                )
            if abs(sum(prob) - 1.0) > 1e-6:
                raise ValueError(f"RandomChoice prob must sum to 1, got {list(prob)}")
        self.prob = None if prob is None else list(prob)
        self.transforms = [_compose(t) for t in transforms]

    def random_pipeline_index(self) -> int:
        return int(np.random.choice(len(self.transforms), p=self.prob))

    def transform(self, results: dict) -> dict | None:
        return self.transforms[self.random_pipeline_index()](results)
