"""torchvision transforms in a pipeline, as MMPretrain 1.x names them.

MMPretrain registers every class of ``torchvision.transforms`` as ``torchvision/<Name>``
(e.g. ``dict(type='torchvision/RandomCrop', size=224, padding=4)``): the transform is
built with the config's arguments (``interpolation`` may be a string such as
``'bicubic'``, ``dtype`` a string such as ``'float32'``) and applied to ``results['img']``.
Those transforms take PIL images or tensors, so such pipelines convert with ``ToPIL``
(``NumpyToPIL``) before and ``ToNumpy`` (``PILToNumpy``) after; both optionally swap BGR
and RGB (vistra's loader gives BGR arrays, as OpenCV's does).
"""

from __future__ import annotations

import enum
import inspect
import re
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from vistra.data.transforms.base import BaseTransform
from vistra.registry import TRANSFORMS

__all__ = ["NumpyToPIL", "PILToNumpy", "TorchVisionTransform", "register_torchvision"]

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos")


@TRANSFORMS.register_module(name=["NumpyToPIL", "ToPIL"])
class NumpyToPIL(BaseTransform):
    """``results['img']`` (an ``HxWxC`` uint8 array) as a PIL image; ``to_rgb`` swaps the
    channel order first (BGR -> RGB)."""

    def __init__(self, to_rgb: bool = False) -> None:
        self.to_rgb = to_rgb

    def transform(self, results: dict) -> dict:
        img = np.asarray(results["img"])
        if self.to_rgb and img.ndim == 3:
            img = np.ascontiguousarray(img[..., ::-1])
        results["img"] = Image.fromarray(img)
        return results


@TRANSFORMS.register_module(name=["PILToNumpy", "ToNumpy"])
class PILToNumpy(BaseTransform):
    """``results['img']`` (a PIL image) as an array of ``dtype`` (None: the image's own);
    ``to_bgr`` swaps the channel order after (RGB -> BGR)."""

    def __init__(self, to_bgr: bool = False, dtype: str | None = None) -> None:
        self.to_bgr = to_bgr
        self.dtype = dtype

    def transform(self, results: dict) -> dict:
        img = np.array(results["img"], dtype=self.dtype)
        if self.to_bgr and img.ndim == 3:
            img = np.ascontiguousarray(img[..., ::-1])
        results["img"] = img
        results["img_shape"] = img.shape[:2]
        return results


def _interpolation(value: Any) -> Any:
    from torchvision.transforms import InterpolationMode

    if not isinstance(value, str):
        return value
    name = value.lower()
    if name not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {value!r}")
    return InterpolationMode(name)


class TorchVisionTransform(BaseTransform):
    """One torchvision transform applied to ``results['img']``."""

    def __init__(self, transform: Callable[[Any], Any]) -> None:
        self.t = transform

    def transform(self, results: dict) -> dict:
        results["img"] = self.t(results["img"])
        return results

    def __repr__(self) -> str:
        return f"TorchVision{self.t!r}"


def _factory(cls: type) -> Callable[..., TorchVisionTransform]:
    def build(*args: Any, **kwargs: Any) -> TorchVisionTransform:
        if "interpolation" in kwargs:
            kwargs["interpolation"] = _interpolation(kwargs["interpolation"])
        if isinstance(kwargs.get("dtype"), str):
            import torch

            dtype = getattr(torch, kwargs["dtype"], None)
            if not isinstance(dtype, torch.dtype):
                raise ValueError(f"torchvision/{cls.__name__}: unknown dtype {kwargs['dtype']!r}")
            kwargs["dtype"] = dtype
        return TorchVisionTransform(cls(*args, **kwargs))

    build.__name__ = f"torchvision_{cls.__name__}"
    build.__qualname__ = build.__name__
    try:  # the torchvision class's arguments, so that a misspelt one is a clear error
        build.__signature__ = inspect.signature(cls)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        pass
    return build


def register_torchvision() -> list[str]:
    """Register ``torchvision/<Name>`` for each transform class of
    ``torchvision.transforms``; returns the names."""
    from torchvision import transforms

    names = []
    for attr in dir(transforms):
        cls = getattr(transforms, attr)
        if not re.match("[A-Z]", attr) or not inspect.isclass(cls) or issubclass(cls, enum.Enum):
            continue
        name = f"torchvision/{attr}"
        if TRANSFORMS.get(name) is None:
            TRANSFORMS.register_module(name=name, module=_factory(cls))
        names.append(name)
    return names


# registered when a config first names one: importing torchvision here would slow every
# process's start-up by ~1.5 s (torchvision.ops imports torch._dynamo)
TRANSFORMS.register_prefix_loader("torchvision/", register_torchvision)
