"""``TestTimeAug`` (MMCV): run every combination of transform choices on one sample.

``transforms`` is a list of stages, each a list of alternatives; every path through the
stages (their cartesian product, first stage varying slowest) is applied to its own copy
of the sample. MMSegmentation's multi-scale + flip test::

    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in (0.5, 1.0, 1.5)],
        [dict(type='RandomFlip', prob=0., direction='horizontal'),
         dict(type='RandomFlip', prob=1., direction='horizontal')],
        [dict(type='LoadAnnotations')],
        [dict(type='PackSegInputs')]])

gives 3 x 2 = 6 views, returned as ``{'inputs': [6 images], 'data_samples': [6 samples]}``.
``pseudo_collate`` turns a batch of those into ``inputs=[[img1_view1, img2_view1], ...,
[img1_view6, img2_view6]]`` (one inner list per view), what ``SegTTAModel.test_step``
takes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from itertools import product

from vistra.data.transforms.base import BaseTransform, Compose
from vistra.registry import TRANSFORMS

TransformCfg = dict | Callable[[dict], dict | None]


def _build_stages(transforms: Sequence[Sequence[TransformCfg]]) -> list[list[Callable]]:
    if not isinstance(transforms, Sequence) or isinstance(transforms, str) or not transforms:
        raise TypeError(
            "TestTimeAug transforms must be a non-empty list of lists of transforms, e.g. "
            f"[[Resize(...), Resize(...)], [RandomFlip(...)], [PackSegInputs()]]; got {transforms!r}"
        )
    stages = []
    for i, stage in enumerate(transforms):
        if (
            isinstance(stage, dict)
            or callable(stage)
            or not isinstance(stage, Sequence)
            or not stage
        ):
            raise TypeError(
                f"TestTimeAug transforms[{i}] must be a non-empty list of alternative "
                f"transforms (wrap a single one as [transform]), got {stage!r}"
            )
        built = []
        for j, t in enumerate(stage):
            if isinstance(t, dict):
                t = TRANSFORMS.build(t, key_path=f"TestTimeAug.transforms[{i}][{j}]")
            elif not callable(t):
                raise TypeError(
                    f"TestTimeAug transforms[{i}][{j}] must be a dict or a callable, "
                    f"got {type(t).__name__}"
                )
            built.append(t)
        stages.append(built)
    return stages


@TRANSFORMS.register_module()
class TestTimeAug(BaseTransform):
    """Apply each path through ``transforms`` to a copy of the sample; gather the outputs
    key by key into lists (see the module docstring)."""

    def __init__(self, transforms: Sequence[Sequence[TransformCfg]]) -> None:
        self.subroutines = [Compose(list(path)) for path in product(*_build_stages(transforms))]

    def transform(self, results: dict) -> dict:
        outputs = []
        for k, subroutine in enumerate(self.subroutines):
            out = subroutine(copy.deepcopy(results))
            if not isinstance(out, dict):
                raise RuntimeError(
                    f"TestTimeAug view {k} ({subroutine!r}) returned {type(out).__name__} for "
                    f"{results.get('img_path', 'the sample')!r}; test-time transforms must "
                    "return a dict and never drop a sample"
                )
            outputs.append(out)
        keys = list(outputs[0])
        for k, out in enumerate(outputs[1:], start=1):
            if list(out) != keys:
                raise RuntimeError(
                    f"TestTimeAug views give different keys: view 0 {sorted(keys)}, view {k} "
                    f"{sorted(out)}; end every path with the same packing transform"
                )
        return {key: [out[key] for out in outputs] for key in keys}

    def __repr__(self) -> str:
        inner = "".join(f"\n  {s!r}" for s in self.subroutines)
        return f"TestTimeAug({len(self.subroutines)} views:{inner})"


__all__ = ["TestTimeAug"]
