"""0.x pipeline steps -> 1.x transforms, one step at a time (used by ``legacy.data``).

Three dialects reach this module, told apart by their argument names:

- MMCV 1.x / MMSegmentation 0.x (``Resize(img_scale=...)``, ``Pad(size=..., seg_pad_val=...)``,
  ``MultiScaleFlipAug``, ``RandomFlip(prob=...)``);
- MMClassification 0.x (``Resize(size=(h, w))``, ``RandomResizedCrop(size=...)``,
  ``CenterCrop(crop_size=(h, w))``, ``RandomFlip(flip_prob=...)``);
- MMSelfSup 0.x, which named torchvision's transforms on PIL RGB images
  (``RandomHorizontalFlip(p=...)``, ``RandomGrayscale(p=...)``, ``GaussianBlur(sigma_min,
  sigma_max, p)``, ``RandomAppliedTrans``, ``Normalize`` in 0..1 units).

What 1.x does elsewhere leaves the pipeline: ``Normalize`` (and a segmentation ``Pad``)
move to the model's data preprocessor, so their settings are returned to the caller; the
formatting steps (``ImageToTensor``, ``ToTensor``, ``DefaultFormatBundle``, ``Collect``)
become one final ``PackSegInputs``/``PackInputs``. Any other step is kept unchanged: the
registry reports a name vistra lacks, with the closest names.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vistra.config.legacy.context import LegacyContext

FORMATTING = frozenset(
    {"ImageToTensor", "ToTensor", "DefaultFormatBundle", "Collect", "ToDataContainer", "Transpose"}
)
# MMSegmentation 0.x's `tools/test.py --aug-test` ratios
AUG_TEST_RATIOS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
# torchvision (PIL) interpolation codes, as MMSelfSup 0.x configs wrote them
PIL_INTERPOLATION = {
    0: "nearest",
    1: "lanczos",
    2: "bilinear",
    3: "bicubic",
    4: "box",
    5: "hamming",
}
LOCAL_BACKENDS = (None, "disk", "local")


@dataclass
class PipelineResult:
    """One translated pipeline and what it handed over to the data preprocessor."""

    steps: list[dict[str, Any]]
    normalize: dict[str, Any] | None = None  # mean, std, to_rgb
    pad: dict[str, Any] | None = None  # size | size_divisor, pad_val, seg_pad_val
    load_annotations: dict[str, Any] | None = None  # the translated LoadAnnotations step
    tta_pipeline: list[dict[str, Any]] | None = None  # from a MultiScaleFlipAug


@dataclass
class _Translator:
    ctx: LegacyContext
    key: str
    quiet: bool = False
    rgb_images: bool = False  # images arrive RGB (CIFAR), not BGR
    result: PipelineResult = field(default_factory=lambda: PipelineResult(steps=[]))
    where: str = ""

    def note(self, message: str) -> None:
        if not self.quiet and message not in self.ctx.notes:
            self.ctx.note(message)

    def error(self, message: str) -> Exception:
        return self.ctx.error(self.where or self.key, message)

    @property
    def torchvision(self) -> bool:
        """MMSelfSup 0.x pipelines named torchvision transforms."""
        return self.ctx.task == "selfsup"


def translate_pipeline(
    ctx: LegacyContext,
    steps: Sequence[Any] | None,
    key: str,
    *,
    pack: bool = True,
    quiet: bool = False,
    rgb_images: bool = False,
) -> PipelineResult:
    """The 1.x form of the 0.x pipeline ``steps`` found at ``key``.

    ``pack`` appends the 1.x packing step; ``quiet`` records no notes (a second copy of a
    pipeline already translated); ``rgb_images`` says the dataset yields RGB arrays (CIFAR)
    rather than BGR, which decides ``to_rgb`` for a torchvision ``Normalize``.
    """
    if steps is None:
        steps = []
    if not isinstance(steps, (list, tuple)):
        raise ctx.error(key, f"a pipeline must be a list of transform dicts, got {steps!r}")
    t = _Translator(ctx, key, quiet=quiet, rgb_images=rgb_images)
    t.result.steps = _translate_steps(t, steps, key)
    if pack:
        t.result.steps.append(dict(type=pack_type(ctx.task)))
    return t.result


def pack_type(task: str) -> str:
    """The 1.x packing transform for ``task``."""
    return "PackSegInputs" if task == "segmentation" else "PackInputs"


def _translate_steps(t: _Translator, steps: Sequence[Any], key: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, step in enumerate(steps):
        t.where = f"{key}[{i}]"
        if not isinstance(step, dict) or "type" not in step:
            raise t.error(f"a pipeline step must be a dict with a 'type', got {step!r}")
        kind = str(step["type"]).split(".")[-1]
        handler = STEPS.get(kind)
        step = copy.deepcopy(step)  # ctx.old stays as loaded
        out.extend(handler(t, step) if handler else [step])
    return out


# ----------------------------------------------------------------------------- loading
def check_file_client(ctx: LegacyContext, cfg: dict, key: str, quiet: bool = False) -> None:
    """Pop ``cfg['file_client_args']``: local files are 1.x's default; remote storage is
    not supported (an error naming ``key``)."""
    args = cfg.pop("file_client_args", None)
    if args is None:
        return
    backend = args.get("backend") if isinstance(args, dict) else args
    if backend not in LOCAL_BACKENDS:
        raise ctx.error(
            f"{key}.file_client_args",
            f"{args!r}: vistra reads local files only (backend 'disk'); copy or mount the "
            "data locally and remove file_client_args",
        )
    message = f"{key}: dropped file_client_args={args!r} (local files are the default)"
    if not quiet and message not in ctx.notes:
        ctx.note(message)


def _load_image(t: _Translator, step: dict[str, Any]) -> list[dict[str, Any]]:
    check_file_client(t.ctx, step, t.where, t.quiet)
    step.pop("channel_order", None)  # MMCV 1.x decoded BGR either way unless told
    return [step]


def _load_annotations(t: _Translator, step: dict[str, Any]) -> list[dict[str, Any]]:
    check_file_client(t.ctx, step, t.where, t.quiet)
    if t.result.load_annotations is None:
        t.result.load_annotations = copy.deepcopy(step)
    return [step]


# ----------------------------------------------------------------------------- resizing
def _resize(t: _Translator, step: dict[str, Any]) -> list[dict[str, Any]]:
    if "scale" in step or "scale_factor" in step:
        return [step]  # already 1.x
    if "size" in step:
        return [_resize_by_size(t, step)]
    if step.get("img_scale") is None and step.get("ratio_range") is not None:
        raise t.error(
            "Resize(img_scale=None, ratio_range=...) (the image's own size times a random "
            "ratio) has no 1.x equivalent in vistra; give img_scale=(w, h)"
        )
    if step.get("img_scale") is None:
        raise t.error(
            "a Resize without img_scale only works inside MultiScaleFlipAug in 0.x (it reads "
            "the scale that step chose); give img_scale=(w, h)"
        )
    return [_seg_resize(t, step)]


def _seg_resize(t: _Translator, step: dict[str, Any]) -> dict[str, Any]:
    """MMSegmentation 0.x ``Resize(img_scale, multiscale_mode, ratio_range, keep_ratio)``."""
    scale = step.pop("img_scale")
    mode = step.pop("multiscale_mode", "range")
    ratio_range = step.pop("ratio_range", None)
    keep_ratio = step.pop("keep_ratio", True)
    if step.pop("min_size", None) is not None:
        raise t.error("Resize.min_size has no 1.x equivalent in vistra; remove it")
    extra = {k: v for k, v in step.items() if k != "type"}
    scales = _scale_list(scale)
    if scales is None:
        raise t.error(f"img_scale must be (w, h) or a list of (w, h), got {scale!r}")
    if len(scales) == 1:
        if ratio_range is not None:
            return dict(
                type="RandomResize",
                scale=scales[0],
                ratio_range=ratio_range,
                keep_ratio=keep_ratio,
                **extra,
            )
        return dict(type="Resize", scale=scales[0], keep_ratio=keep_ratio, **extra)
    if mode == "value":
        raise t.error(
            f"multiscale_mode='value' (one of {scales} at random) needs RandomChoiceResize, "
            "which vistra does not have; use one img_scale with ratio_range"
        )
    if len(scales) != 2 or not _same_orientation(scales):
        raise t.error(
            f"img_scale={scale!r} with multiscale_mode='range' maps onto 1.x only for two "
            "scales with the long side in the same position, e.g. [(2048, 512), (2048, 1024)]"
        )
    return dict(type="RandomResize", scale=scales, keep_ratio=keep_ratio, **extra)


def _scale_list(scale: Any) -> list[tuple] | None:
    if _is_pair(scale):
        return [tuple(scale)]
    if isinstance(scale, (list, tuple)) and scale and all(_is_pair(s) for s in scale):
        return [tuple(s) for s in scale]
    return None


def _is_pair(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )


def _same_orientation(scales: list[tuple]) -> bool:
    """MMCV 1.x drew the long and the short edge; 1.x draws each position: the same when
    every pair has its long edge in the same position."""
    return all(s[0] >= s[1] for s in scales) or all(s[0] <= s[1] for s in scales)


def _resize_by_size(t: _Translator, step: dict[str, Any]) -> dict[str, Any]:
    """MMClassification 0.x ``Resize(size)`` (an int: a square; ``(h, -1)``: that edge) or
    torchvision's (an int: the short edge), both with ``size`` as (h, w)."""
    size = step.pop("size")
    edge = step.pop("adaptive_side", "short")
    if "interpolation" in step:
        step["interpolation"] = _interpolation(t, step["interpolation"])
    if t.torchvision:
        step["backend"] = "pillow"  # torchvision resized PIL images
    rest = {k: v for k, v in step.items() if k != "type"}
    if isinstance(size, int) and t.torchvision:
        return dict(type="ResizeEdge", scale=size, edge="short", **rest)
    if isinstance(size, int):
        return dict(type="Resize", scale=(size, size), **rest)
    if isinstance(size, (list, tuple)) and len(size) == 2:
        h, w = size
        if -1 in (h, w):  # one edge given, the other follows the aspect ratio
            return dict(type="ResizeEdge", scale=max(h, w), edge=edge, **rest)
        return dict(type="Resize", scale=(w, h), **rest)  # 0.x (h, w) -> 1.x (w, h)
    raise t.error(f"Resize size must be an int, (h, w) or (edge, -1), got {size!r}")


def _interpolation(t: _Translator, value: Any) -> Any:
    """torchvision's PIL codes (``interpolation=3``) -> 1.x names (``'bicubic'``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value not in PIL_INTERPOLATION:
            raise t.error(f"unknown PIL interpolation code {value}")
        return PIL_INTERPOLATION[value]
    return value


def _random_resized_crop(t: _Translator, step: dict[str, Any]) -> list[dict[str, Any]]:
    if "size" not in step:
        return [step]  # already 1.x (scale=...)
    out: dict[str, Any] = dict(type="RandomResizedCrop", scale=step.pop("size"))
    for old, new in (("scale", "crop_ratio_range"), ("ratio", "aspect_ratio_range")):
        if old in step:
            out[new] = tuple(step.pop(old))
    if step.pop("efficient_center_crop", False):
        raise t.error("efficient_center_crop=True has no 1.x equivalent in vistra")
    interpolation = _interpolation(t, step.pop("interpolation", None))
    if t.torchvision:
        out["backend"] = "pillow"  # torchvision resized PIL images
    out.update({k: v for k, v in step.items() if k != "type"})
    if interpolation is not None:
        out["interpolation"] = interpolation
    return [out]


# ----------------------------------------------------------------------------- crop / flip
def _center_crop(t: _Translator, step: dict[str, Any]) -> list[dict[str, Any]]:
    size = step.pop("size", None) if "size" in step else step.pop("crop_size", None)
    if step.pop("efficientnet_style", False):
        raise t.error("CenterCrop(efficientnet_style=True) has no 1.x equivalent in vistra")
    for key in ("crop_padding", "interpolation", "backend"):  # efficientnet_style only
        step.pop(key, None)
    if isinstance(size, (list, tuple)):
        size = (size[1], size[0])  # 0.x (h, w) -> 1.x (w, h)
    return [
        dict(type="CenterCrop", crop_size=size, **{k: v for k, v in step.items() if k != "type"})
    ]


def _random_crop(t: _Translator, step: dict[str, Any]) -> list[dict[str, Any]]:
    if "size" in step:  # MMClassification / torchvision: (h, w), as 1.x crop_size
        step["crop_size"] = step.pop("size")
    return [step]


def _random_flip(t: _Translator, step: dict[str, Any]) -> list[dict[str, Any]]:
    prob = None
    for name in ("prob", "flip_prob", "flip_ratio"):
        if name in step:
            prob = step.pop(name)
    if prob is None:
        if t.ctx.task == "segmentation":
            t.note(f"{t.where}: dropped RandomFlip without prob (it never flipped in 0.x)")
            return []
        prob = 0.5  # MMClassification 0.x's flip_prob default
    out = dict(type="RandomFlip", prob=prob)
    out.update({k: v for k, v in step.items() if k != "type"})
    return [out]


def _tv_flip(direction: str) -> Callable[[_Translator, dict[str, Any]], list[dict[str, Any]]]:
    def translate(t: _Translator, step: dict[str, Any]) -> list[dict[str, Any]]:
        out = dict(type="RandomFlip", prob=step.get("p", 0.5))
        if direction != "horizontal":
            out["direction"] = direction
        return [out]

    return translate


# ----------------------------------------------------------------------------- photometric
def _random_grayscale(t: _Translator, step: dict[str, Any]) -> list[dict[str, Any]]:
    if "p" not in step:
        return [step]
    weights = (0.114, 0.587, 0.2989)  # luma weights in BGR order
    return [
        dict(
            type="RandomGrayscale",
            prob=step["p"],
            keep_channels=True,  # torchvision kept 3 channels
            channel_weights=weights[::-1] if t.rgb_images else weights,
        )
    ]


def _gaussian_blur(t: _Translator, step: dict[str, Any]) -> list[dict[str, Any]]:
    if "sigma_min" not in step:
        return [step]
    if "kernel_size" in step:
        t.note(f"{t.where}: dropped GaussianBlur.kernel_size (the blur follows sigma)")
    return [
        dict(
            type="GaussianBlur",
            magnitude_range=(step["sigma_min"], step["sigma_max"]),
            magnitude_std="inf",  # sigma uniform in the range
            prob=step.get("p", 0.5),
        )
    ]


def _solarization(t: _Translator, step: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(type="Solarize", thr=step.get("threshold", 128), prob=step.get("p", 0.5))]


def _random_applied(t: _Translator, step: dict[str, Any]) -> list[dict[str, Any]]:
    where = t.where
    inner = _translate_steps(t, step.get("transforms", []), f"{where}.transforms")
    t.where = where
    return [dict(type="RandomApply", transforms=inner, prob=step.get("p", 0.5))]


def _dropped(t: _Translator, step: dict[str, Any]) -> list[dict[str, Any]]:
    kind = step["type"]
    if kind == "Collect" and step.get("meta_keys"):
        t.note(
            f"{t.where}: Collect.meta_keys dropped; {pack_type(t.ctx.task)} packs its own "
            "default meta keys"
        )
    return []


# ----------------------------------------------------------------------------- preprocessor
def _normalize(t: _Translator, step: dict[str, Any]) -> list[dict[str, Any]]:
    mean, std = list(step.get("mean", ())), list(step.get("std", ()))
    if not mean or not std:
        raise t.error(f"Normalize needs mean and std, got {step!r}")
    if "to_rgb" not in step and max(mean) <= 1 and max(std) <= 1:
        # torchvision's Normalize on 0..1 tensors of PIL RGB images (MMSelfSup 0.x)
        settings = dict(
            mean=[round(m * 255, 6) for m in mean],
            std=[round(s * 255, 6) for s in std],
            to_rgb=not t.rgb_images,
        )
    else:
        settings = dict(mean=mean, std=std, to_rgb=bool(step.get("to_rgb", True)))
    previous = t.result.normalize
    if previous is not None and previous != settings:
        raise t.error(f"two different Normalize steps in one pipeline: {previous} and {settings}")
    t.result.normalize = settings
    return []


def _pad(t: _Translator, step: dict[str, Any]) -> list[dict[str, Any]]:
    if t.ctx.task != "segmentation":
        return [step]  # a classification Pad changes the image itself; vistra has Pad
    settings: dict[str, Any] = {}
    if step.get("size") is not None:
        settings["size"] = tuple(step["size"])
    if step.get("size_divisor") is not None:
        settings["size_divisor"] = step["size_divisor"]
    settings["pad_val"] = step.get("pad_val", 0)
    settings["seg_pad_val"] = step.get("seg_pad_val", 255)
    if t.result.pad is None:
        t.result.pad = settings
    return []


# ----------------------------------------------------------------------------- test-time aug
def _multi_scale_flip_aug(t: _Translator, step: dict[str, Any]) -> list[dict[str, Any]]:
    """MMSegmentation 0.x's test wrapper -> a plain 1.x test pipeline and a ``tta_pipeline``."""
    where = t.where
    scales = _scale_list(step["img_scale"]) if step.get("img_scale") is not None else []
    if scales is None:
        raise t.error(f"img_scale must be (w, h) or a list of (w, h), got {step['img_scale']!r}")
    keep_ratio, inner = _msfa_inner(t, step.get("transforms") or [], f"{where}.transforms")
    t.where = where
    out = [dict(type="Resize", scale=scales[0], keep_ratio=keep_ratio)] if scales else []
    if not scales:
        t.note(f"{where}: MultiScaleFlipAug without img_scale tests at the original size")
    out.extend(inner)
    ratios = step.get("img_ratios")
    ratios = [ratios] if isinstance(ratios, (int, float)) else ratios
    flips = step.get("flip_direction", "horizontal")
    flips = [flips] if isinstance(flips, str) else list(flips)
    t.result.tta_pipeline = _tta_pipeline(scales, ratios, flips, keep_ratio)
    if len(scales) > 1 or (ratios and len(ratios) > 1) or step.get("flip", False):
        t.note(
            f"{where}: 0.x tested every image at several scales/flips; 1.x tests without "
            "augmentation unless `vistra test --tta` (0.x's --aug-test) picks tta_pipeline"
        )
    return out


def _msfa_inner(t: _Translator, steps: Sequence[Any], key: str) -> tuple[bool, list[dict]]:
    keep_ratio, out = True, []
    for i, step in enumerate(steps):
        t.where = f"{key}[{i}]"
        kind = str(step.get("type", "")).split(".")[-1] if isinstance(step, dict) else ""
        if kind == "Resize":
            keep_ratio = step.get("keep_ratio", True)
        elif kind == "RandomFlip":
            continue  # MultiScaleFlipAug's flip; 1.x's is in tta_pipeline
        elif kind == "Pad":
            t.note(f"{t.where}: dropped the test pipeline's Pad (the training Pad sets padding)")
        else:
            out.extend(_translate_steps(t, [step], key))
    return keep_ratio, out


def _tta_pipeline(
    scales: list[tuple], ratios: list[float] | None, flips: list[str], keep_ratio: bool
) -> list[dict[str, Any]]:
    """MMSegmentation 1.x's ``tta_pipeline``: every resize x every flip."""
    if len(scales) > 1 and not ratios:
        resizes = [dict(type="Resize", scale=s, keep_ratio=keep_ratio) for s in scales]
    else:
        resizes = [
            dict(type="Resize", scale_factor=r, keep_ratio=keep_ratio)
            for r in (ratios or AUG_TEST_RATIOS)
        ]
    flip_steps = [dict(type="RandomFlip", prob=0.0, direction=flips[0])]
    flip_steps += [dict(type="RandomFlip", prob=1.0, direction=d) for d in flips]
    return [
        dict(type="LoadImageFromFile", backend_args=None),
        dict(
            type="TestTimeAug",
            transforms=[
                resizes,
                flip_steps,
                [dict(type="LoadAnnotations")],
                [dict(type="PackSegInputs")],
            ],
        ),
    ]


STEPS: dict[str, Callable[[_Translator, dict[str, Any]], list[dict[str, Any]]]] = {
    "LoadImageFromFile": _load_image,
    "LoadAnnotations": _load_annotations,
    "Resize": _resize,
    "RandomResizedCrop": _random_resized_crop,
    "CenterCrop": _center_crop,
    "RandomCrop": _random_crop,
    "RandomFlip": _random_flip,
    "RandomHorizontalFlip": _tv_flip("horizontal"),
    "RandomVerticalFlip": _tv_flip("vertical"),
    "RandomGrayscale": _random_grayscale,
    "GaussianBlur": _gaussian_blur,
    "Solarization": _solarization,
    "RandomAppliedTrans": _random_applied,
    "Normalize": _normalize,
    "Pad": _pad,
    "MultiScaleFlipAug": _multi_scale_flip_aug,
    **{name: _dropped for name in FORMATTING},
}

__all__ = [
    "AUG_TEST_RATIOS",
    "PipelineResult",
    "check_file_client",
    "pack_type",
    "translate_pipeline",
]
