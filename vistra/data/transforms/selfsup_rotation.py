"""MMSelfSup 1.x's ``RandomRotation`` (DeepCluster's and ODC's pipelines; scope
``mmselfsup``): rotate the image by an angle drawn uniformly from ``degrees``.

The angle is ``torch.empty(1).uniform_(lo, hi)`` as in MMSelfSup (so it follows torch's
RNG); the rotation is MMCV's ``imrotate`` (clockwise for a positive angle, about the
centre unless ``center`` is given, ``expand`` growing the canvas, ``fill`` the border
value). MMCV's ``'area'`` and ``'lanczos'`` interpolations are not available in vistra's
warp and raise a clear error.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vistra.data.transforms.base import BaseTransform
from vistra.data.transforms.functional import imrotate
from vistra.registry import TRANSFORMS

_INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


@TRANSFORMS.register_module(name="RandomRotation", scope="mmselfsup")
class RandomRotation(BaseTransform):
    """Random rotation of ``results['img']``; ``degrees`` an int ``d`` means ``(-d, d)``."""

    def __init__(
        self,
        degrees: int | float | Sequence[float],
        interpolation: str = "nearest",
        expand: bool = False,
        center: tuple[float, float] | None = None,
        fill: int = 0,
    ) -> None:
        if interpolation not in _INTERPOLATIONS:
            raise ValueError(
                f"RandomRotation interpolation must be one of {_INTERPOLATIONS}, got "
                f"{interpolation!r}"
            )
        if not isinstance(expand, bool):
            raise TypeError(f"RandomRotation expand must be a bool, got {expand!r}")
        if center is not None and (len(center) != 2 or expand):
            raise ValueError("RandomRotation center must be (x, y) and excludes expand=True")
        if not isinstance(fill, int):
            raise TypeError(f"RandomRotation fill must be an int, got {fill!r}")
        if isinstance(degrees, (int, float)):
            if degrees < 0:
                raise ValueError(f"RandomRotation degrees must be >= 0, got {degrees}")
            degrees = (-degrees, degrees)
        if len(degrees) != 2:
            raise ValueError(
                f"RandomRotation degrees must be a number or (min, max), got {degrees}"
            )
        self.degrees = [float(d) for d in degrees]
        self.interpolation = interpolation
        self.expand = expand
        self.center = center
        self.fill = fill

    def transform(self, results: dict) -> dict:
        angle = float(torch.empty(1).uniform_(self.degrees[0], self.degrees[1]).item())
        results["img"] = imrotate(
            results["img"], angle, center=self.center, border_value=self.fill,
            interpolation=self.interpolation, auto_bound=self.expand,
        )  # fmt: skip
        return results

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(degrees={self.degrees}, interpolation={self.interpolation}, "
            f"expand={self.expand}, center={self.center}, fill={self.fill})"
        )
