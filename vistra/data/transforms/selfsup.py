"""Transforms of self-supervised pipelines: ``MultiView`` (MMPretrain), ``GaussianBlur``
(MMPretrain), ``RandomGrayscale`` (MMCV), ``RandomGaussianBlur`` and MMSelfSup 1.x's own
``RandomResizedCrop`` (``size``/``scale``/``ratio``; registered for scope ``mmselfsup``).

A contrastive pipeline runs the same random view pipeline several times on one image:

    view_pipeline = [RandomResizedCrop, RandomFlip, RandomApply(ColorJitter),
                     RandomGrayscale, GaussianBlur]
    train_pipeline = [LoadImageFromFile,
                      dict(type='MultiView', num_views=2, transforms=[view_pipeline]),
                      PackInputs]

``PackInputs`` turns the list of views into a list of tensors; ``default_collate`` stacks
them into one batch per view. Images are uint8 BGR; randomness comes from numpy's global
generator, so per-sample seeding covers it and every view draws its own parameters.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageFilter

from vistra.data.transforms.augment_ops import BaseAugTransform
from vistra.data.transforms.base import BaseTransform, Compose
from vistra.data.transforms.functional import choose, hsv2bgr
from vistra.data.transforms.resize import RandomResizedCrop
from vistra.registry import TRANSFORMS

TransformCfg = dict | Callable[[dict], dict | None]


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Blur each channel with a Gaussian of standard deviation ``sigma`` pixels (Pillow)."""
    if img.dtype != np.uint8:
        raise TypeError(f"Gaussian blur works on uint8 images, got {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 1:
        return gaussian_blur(img[..., 0], sigma)[..., None]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (3, 4)):
        raise ValueError(
            f"Gaussian blur expects an (H, W), (H, W, 3) or (H, W, 4) image, got {img.shape}"
        )
    # the filter treats channels independently, so BGR needs no swap
    blurred = Image.fromarray(np.ascontiguousarray(img)).filter(ImageFilter.GaussianBlur(sigma))
    return np.asarray(blurred, dtype=np.uint8).copy()


@TRANSFORMS.register_module()
class MultiView(BaseTransform):
    """Run several pipelines on copies of one sample; ``img`` becomes the list of views.

    ``transforms`` is a list of pipelines (each a list of transforms) and ``num_views`` the
    number of views from each (an int for a single pipeline): ``num_views=[2, 6]`` with two
    pipelines gives 8 views, the first 2 from pipeline 0. As a shorthand a single pipeline
    may be given as a flat list of transform configs. Keys other than ``img`` keep the
    input's values.
    """

    def __init__(
        self,
        transforms: Sequence[Sequence[TransformCfg]] | Sequence[TransformCfg],
        num_views: int | Sequence[int],
    ) -> None:
        pipelines = list(transforms)
        if pipelines and all(isinstance(t, dict) or callable(t) for t in pipelines):
            pipelines = [pipelines]  # one flat pipeline
        views = [num_views] if isinstance(num_views, int) else list(num_views)
        if len(views) != len(pipelines):
            raise ValueError(
                f"MultiView needs one num_views entry per pipeline: got num_views={num_views!r} "
                f"for {len(pipelines)} pipeline(s); write transforms=[view_pipeline] with "
                "num_views=2, or transforms=[pipeline_a, pipeline_b] with num_views=[n_a, n_b]"
            )
        if any(not isinstance(n, int) or n < 1 for n in views):
            raise ValueError(f"MultiView num_views must be positive ints, got {num_views!r}")
        self.num_views = views
        self.pipelines = [Compose(p) for p in pipelines]
        # the pipeline of each output view, in order
        self.transforms = [p for p, n in zip(self.pipelines, views) for _ in range(n)]

    def transform(self, results: dict) -> dict | None:
        views = []
        for pipeline in self.transforms:
            out = pipeline(copy.deepcopy(results))
            if out is None:
                return None
            views.append(out["img"])
        results["img"] = views
        return results

    def __repr__(self) -> str:
        return f"MultiView(num_views={self.num_views}, pipelines={self.pipelines})"


@TRANSFORMS.register_module()
class GaussianBlur(BaseAugTransform):
    """Gaussian blur with probability ``prob`` (MMPretrain).

    The radius (the Gaussian's standard deviation, in pixels) is ``radius``, or drawn from
    ``magnitude_range`` (see :class:`BaseAugTransform`): SimCLR uses
    ``magnitude_range=(0.1, 2.0), magnitude_std='inf'``, i.e. uniform in [0.1, 2.0].
    MMPretrain 1.0's implementation dropped the blurred image (open-mmlab/mmpretrain#1711);
    this one returns it.
    """

    def __init__(self, radius: float | None = None, prob: float = 0.5, **kwargs) -> None:
        super().__init__(prob=prob, random_negative_prob=0.0, **kwargs)
        self._exactly_one(radius, "radius")
        self.radius = radius

    def transform(self, results: dict) -> dict:
        if self.random_disable():
            return results
        radius = self.radius if self.radius is not None else self.random_magnitude()
        results["img"] = gaussian_blur(results["img"], radius)
        return results


@TRANSFORMS.register_module()
class RandomGaussianBlur(BaseTransform):
    """MMSelfSup 1.x's blur: with probability ``prob``, sigma uniform in
    ``[sigma_min, sigma_max]``."""

    def __init__(self, sigma_min: float, sigma_max: float, prob: float = 0.5) -> None:
        if not 0 < sigma_min <= sigma_max:
            raise ValueError(
                f"RandomGaussianBlur needs 0 < sigma_min <= sigma_max, got {sigma_min}, {sigma_max}"
            )
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"RandomGaussianBlur prob must be in [0, 1], got {prob}")
        self.sigma_min, self.sigma_max, self.prob = sigma_min, sigma_max, prob

    def transform(self, results: dict) -> dict:
        if np.random.rand() > self.prob:
            return results
        sigma = float(np.random.uniform(self.sigma_min, self.sigma_max))
        results["img"] = gaussian_blur(results["img"], sigma)
        return results


@TRANSFORMS.register_module()
class RandomGrayscale(BaseTransform):
    """With probability ``prob``, replace the image by a weighted sum of its channels (MMCV).

    ``channel_weights`` are in the image's channel order (BGR: SimCLR's
    ``(0.114, 0.587, 0.2989)`` is the usual luma) and normalised to sum 1; the sum is
    truncated to uint8. ``keep_channels=True`` repeats the grey channel to the input's
    channel count, otherwise the result is ``(H, W)``. ``color_format='hsv'`` images are
    converted to BGR first (whether or not they become grey); a one-channel image is left
    as it is.
    """

    def __init__(
        self,
        prob: float = 0.1,
        keep_channels: bool = False,
        channel_weights: Sequence[float] = (1.0, 1.0, 1.0),
        color_format: str = "bgr",
    ) -> None:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"RandomGrayscale prob must be in [0, 1], got {prob}")
        if sum(channel_weights) <= 0:
            raise ValueError(
                f"RandomGrayscale channel_weights must sum to > 0, got {channel_weights}"
            )
        self.prob = prob
        self.keep_channels = keep_channels
        self.channel_weights = tuple(float(w) for w in channel_weights)
        self.color_format = choose(color_format, ("bgr", "rgb", "hsv"), "color_format")

    def transform(self, results: dict) -> dict:
        img = results["img"]
        if self.color_format == "hsv":
            img = hsv2bgr(img)
        if img.ndim == 2:
            img = img[..., None]
        channels = img.shape[2]
        if np.random.rand() < self.prob and channels > 1:
            if channels != len(self.channel_weights):
                raise ValueError(
                    f"RandomGrayscale has {len(self.channel_weights)} channel_weights for an "
                    f"image of {channels} channels"
                )
            weights = np.asarray(self.channel_weights) / sum(self.channel_weights)
            gray = (img * weights).sum(axis=2).astype(np.uint8)
            img = np.repeat(gray[..., None], channels, axis=2) if self.keep_channels else gray
        results["img"] = img
        return results


@TRANSFORMS.register_module(name="RandomResizedCrop", scope="mmselfsup")
class SelfSupRandomResizedCrop(RandomResizedCrop):
    """MMSelfSup 1.x's ``RandomResizedCrop``, torchvision's argument names.

    ``size`` is the output ``(h, w)`` (an int: square), ``scale`` the range of the crop's
    area fraction and ``ratio`` the range of its aspect ratio: MMPretrain's ``scale``,
    ``crop_ratio_range`` and ``aspect_ratio_range``. The crop rule (``max_attempts``
    draws, then a central crop) and the resize (``interpolation``, ``backend``) are the
    same; the draws come from numpy's global generator (MMSelfSup uses ``random``).
    """

    def __init__(
        self,
        size: int | Sequence[int],
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
        max_attempts: int = 10,
        interpolation: str = "bilinear",
        backend: str = "cv2",
    ) -> None:
        super().__init__(
            scale=size,
            crop_ratio_range=scale,
            aspect_ratio_range=ratio,
            max_attempts=max_attempts,
            interpolation=interpolation,
            backend=backend,
        )
        self.size = self.scale
        self.ratio = self.aspect_ratio_range

    def __repr__(self) -> str:
        return (
            f"RandomResizedCrop(size={self.size}, scale={self.crop_ratio_range}, "
            f"ratio={self.ratio}, max_attempts={self.max_attempts}, "
            f"interpolation={self.interpolation!r}, backend={self.backend!r})"
        )
