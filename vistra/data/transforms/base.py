"""The transform interface: ``transform(results: dict) -> dict | None``.

Transforms written for OpenMMLab (``mmcv.transforms.BaseTransform``) port by changing the
import: subclass :class:`BaseTransform`, implement ``transform``. Returning ``None`` drops
the sample (the dataset then draws another one in training).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


class BaseTransform:
    """Base class of data transforms; ``__call__`` runs ``transform``."""

    def transform(self, results: dict) -> dict | None:
        raise NotImplementedError

    def __call__(self, results: dict) -> dict | None:
        return self.transform(results)

    def transform_with_next(self, nxt: BaseTransform, results: dict) -> dict | None:
        """Run this transform and ``nxt`` (the next one in a ``Compose``) in one step, or
        return ``NotImplemented`` (the default) to have them run one after the other.
        For fusions that save work, e.g. ``Resize`` + ``RandomCrop`` resizing only the crop;
        the result must be the one the two transforms give in turn."""
        return NotImplemented

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class Compose:
    """Run transforms in order; stop (and return None) when one drops the sample."""

    def __init__(self, transforms: Sequence[dict | Callable[[dict], dict | None]]) -> None:
        from vistra.registry import TRANSFORMS

        self.transforms: list[Callable[[dict], dict | None]] = []
        for i, t in enumerate(transforms):
            if isinstance(t, dict):
                t = TRANSFORMS.build(t, key_path=f"pipeline[{i}]")
            if not callable(t):
                raise TypeError(
                    f"pipeline[{i}] must be a dict or a callable, got {type(t).__name__}"
                )
            self.transforms.append(t)

    def __call__(self, results: dict) -> dict | None:
        i, transforms = 0, self.transforms
        while i < len(transforms):
            t, out = transforms[i], NotImplemented
            if i + 1 < len(transforms) and isinstance(t, BaseTransform):
                out = t.transform_with_next(transforms[i + 1], results)  # pairs that fuse
            if out is NotImplemented:
                out, i = t(results), i + 1
            else:
                i += 2
            if out is None:
                return None
            results = out
        return results

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n])"


def to_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]
