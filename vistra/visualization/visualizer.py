"""The visualizer: draws predictions over images and fans records out to the backends.

One class serves the names configs use: ``Visualizer`` (MMEngine), ``UniversalVisualizer``
and ``ClsVisualizer`` (MMPretrain), ``SegLocalVisualizer`` (MMSegmentation) and
``SelfSupVisualizer`` (MMSelfSup). What it draws depends on the sample, not on the name:
a sample with ``gt_sem_seg``/``pred_sem_seg`` is drawn as a segmentation, one with
``gt_label``/``pred_label`` as a classification.

As in MMEngine, ``save_dir`` is the run's log directory and the backends write into
``{save_dir}/vis_data``; every backend config gets that folder as its default ``save_dir``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from vistra.registry import VISBACKENDS, VISUALIZERS

from .backends import BaseVisBackend
from .drawing import (
    READABLE_SHORT_EDGE,
    as_label_map,
    as_rgb_image,
    draw_region_names,
    draw_text_block,
    overlay_sem_seg,
    resize_image,
    resize_label_map,
    resolve_palette,
)

_NON_INTERACTIVE_BACKENDS = {"agg", "pdf", "ps", "svg", "pgf", "cairo", "template"}


@VISUALIZERS.register_module(
    name=[
        "Visualizer",
        "UniversalVisualizer",
        "ClsVisualizer",
        "SegLocalVisualizer",
        "SelfSupVisualizer",
    ]
)
class Visualizer:
    """Draws data samples and records configs, scalars and images to its backends.

    ``classes`` and ``palette`` (MMSegmentation's arguments) seed :attr:`dataset_meta`;
    the runner usually sets ``dataset_meta`` from the dataset instead. ``alpha`` is the
    opacity of segmentation overlays.
    """

    _current: ClassVar[Visualizer | None] = None

    def __init__(
        self,
        name: str = "visualizer",
        vis_backends: Sequence[dict | BaseVisBackend] | dict | None = None,
        save_dir: str | None = None,
        classes: Sequence[str] | None = None,
        palette: Sequence[Sequence[int]] | None = None,
        alpha: float = 0.8,
    ) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha is the overlay opacity and must be in [0, 1], got {alpha}")
        self.name = name
        self.alpha = alpha
        self.save_dir = None if save_dir is None else os.path.join(save_dir, "vis_data")
        self._vis_backends = _build_backends(vis_backends, self.save_dir)
        self._dataset_meta: dict[str, Any] = {}
        if classes is not None:
            self._dataset_meta["classes"] = list(classes)
        if palette is not None:
            self._dataset_meta["palette"] = [list(c) for c in palette]
        self._warned_no_display = False
        Visualizer._current = self

    @classmethod
    def get_current_instance(cls) -> Visualizer:
        """The visualizer built last, for hooks ported from OpenMMLab that look it up."""
        if Visualizer._current is None:
            raise RuntimeError("no Visualizer has been built yet")
        return Visualizer._current

    # ------------------------------------------------------------------ metadata
    @property
    def dataset_meta(self) -> dict[str, Any]:
        """The dataset's metainfo; ``classes`` names labels, ``palette`` colours them."""
        return self._dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, meta: dict[str, Any] | None) -> None:
        self._dataset_meta = dict(meta or {})

    def get_backend(self, name: str) -> BaseVisBackend | None:
        """A backend by its config ``name`` (default: its type name)."""
        return self._vis_backends.get(name)

    # ------------------------------------------------------------------ recording
    def add_config(self, config: Any, **kwargs: Any) -> None:
        for backend in self._vis_backends.values():
            backend.add_config(config, **kwargs)

    def add_image(self, name: str, image: np.ndarray, step: int = 0) -> None:
        for backend in self._vis_backends.values():
            backend.add_image(name, image, step)

    def add_scalar(self, name: str, value: Any, step: int = 0, **kwargs: Any) -> None:
        for backend in self._vis_backends.values():
            backend.add_scalar(name, value, step, **kwargs)

    def add_scalars(
        self, scalar_dict: dict, step: int = 0, file_path: str | None = None, **kwargs: Any
    ) -> None:
        for backend in self._vis_backends.values():
            backend.add_scalars(scalar_dict, step, file_path, **kwargs)

    def close(self) -> None:
        for backend in self._vis_backends.values():
            backend.close()

    # ------------------------------------------------------------------ drawing
    def add_datasample(
        self,
        name: str,
        image: np.ndarray,
        data_sample: Any = None,
        draw_gt: bool = True,
        draw_pred: bool = True,
        show: bool = False,
        wait_time: float = 0.0,
        out_file: str | None = None,
        step: int = 0,
        with_labels: bool = True,
    ) -> np.ndarray:
        """Draw ``data_sample`` over ``image`` (RGB) and return the drawing.

        Segmentation: ``image | ground truth | prediction`` side by side, each map blended
        at ``alpha`` with the palette (``with_labels`` writes class names on the regions).
        Classification: the image enlarged to a readable size with ``GT: ...`` and
        ``Pred: ... (score)``. The drawing goes to ``out_file`` (PNG) when given, else to
        the backends as ``name`` at ``step``; ``show`` also opens a window.
        """
        image = as_rgb_image(image)
        if data_sample is None:
            drawn = image
        elif "gt_sem_seg" in data_sample or "pred_sem_seg" in data_sample:
            drawn = self._draw_seg(image, data_sample, draw_gt, draw_pred, with_labels)
        else:
            drawn = draw_classification(
                image, data_sample, self.dataset_meta.get("classes"), draw_gt, draw_pred
            )
        self._emit(drawn, name, show, wait_time, out_file, step)
        return drawn

    def visualize_cls(
        self,
        image: np.ndarray,
        data_sample: Any,
        classes: Sequence[str] | None = None,
        draw_gt: bool = True,
        draw_pred: bool = True,
        draw_score: bool = True,
        resize: int | None = None,
        rescale_factor: float | None = None,
        show: bool = False,
        wait_time: float = 0.0,
        out_file: str | None = None,
        name: str = "",
        step: int = 0,
    ) -> np.ndarray:
        """MMPretrain's classification drawing entry point (``resize`` sets the short edge,
        ``rescale_factor`` scales; with neither, small images are enlarged)."""
        classes = classes if classes is not None else self.dataset_meta.get("classes")
        drawn = draw_classification(
            as_rgb_image(image),
            data_sample,
            classes,
            draw_gt,
            draw_pred,
            draw_score=draw_score,
            resize=resize,
            rescale_factor=rescale_factor,
        )
        self._emit(drawn, name, show, wait_time, out_file, step)
        return drawn

    def _draw_seg(
        self, image: np.ndarray, sample: Any, draw_gt: bool, draw_pred: bool, with_labels: bool
    ) -> np.ndarray:
        classes = self.dataset_meta.get("classes")
        palette = resolve_palette(self.dataset_meta.get("palette"), classes)
        names = list(classes) if classes else [str(i) for i in range(len(palette))]
        panels = [image]
        for wanted, key in ((draw_gt, "gt_sem_seg"), (draw_pred, "pred_sem_seg")):
            if not wanted or key not in sample:
                continue
            label_map = resize_label_map(as_label_map(sample[key].data, key), *image.shape[:2])
            panel = overlay_sem_seg(image, label_map, palette, self.alpha)
            if with_labels:
                panel = draw_region_names(panel, label_map, names)
            panels.append(panel)
        return np.concatenate(panels, axis=1)

    # ------------------------------------------------------------------ output
    def _emit(
        self,
        drawn: np.ndarray,
        name: str,
        show: bool,
        wait_time: float,
        out_file: str | None,
        step: int,
    ) -> None:
        if show:
            self.show(drawn, win_name=name, wait_time=wait_time)
        if out_file is not None:
            os.makedirs(os.path.dirname(os.path.abspath(out_file)), exist_ok=True)
            Image.fromarray(drawn).save(out_file, format="PNG")
        else:
            self.add_image(name, drawn, step)

    def show(self, image: np.ndarray, win_name: str = "image", wait_time: float = 0.0) -> None:
        """Show ``image`` in a matplotlib window; without a display, warn once and go on."""
        reason = _no_display_reason()
        if reason is not None:
            self._warn_no_display(reason)
            return
        import matplotlib.pyplot as plt  # only here: pyplot picks a GUI backend on import

        backend = plt.get_backend().lower()
        if backend in _NON_INTERACTIVE_BACKENDS:
            self._warn_no_display(f"matplotlib backend {backend!r} cannot open windows")
            return
        figure = plt.figure(num=win_name or "image", clear=True)
        axes = figure.add_axes((0, 0, 1, 1))
        axes.axis("off")
        axes.imshow(image)
        plt.show(block=False)
        if wait_time > 0:
            plt.pause(wait_time)

    def _warn_no_display(self, reason: str) -> None:
        if not self._warned_no_display:  # one line per run, not one per image
            print(f"warning: cannot show images ({reason}); continuing without", file=sys.stderr)
            self._warned_no_display = True


def _no_display_reason() -> str | None:
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return "no DISPLAY or WAYLAND_DISPLAY is set"
    return None


def _build_backends(
    configs: Sequence[dict | BaseVisBackend] | dict | None, save_dir: str | None
) -> dict[str, BaseVisBackend]:
    """Build backend configs with ``save_dir`` as the default; key them by ``name``/type.

    Without a ``save_dir`` a backend that needs one is skipped with a warning (MMEngine
    does the same), so a visualizer built only for drawing needs no output folder.
    """
    if configs is None:
        configs = []
    if isinstance(configs, (dict, BaseVisBackend)):
        configs = [configs]
    backends: dict[str, BaseVisBackend] = {}
    for index, cfg in enumerate(configs):
        key_path = f"visualizer.vis_backends[{index}]"
        name = None
        if isinstance(cfg, dict):
            cfg = dict(cfg)
            name = cfg.pop("name", None)
            if save_dir is None and cfg.get("save_dir") is None:
                if VISBACKENDS.get(str(cfg.get("type"))) is not None:
                    print(
                        f"warning: {key_path} ({cfg['type']}) skipped: no save_dir to write into",
                        file=sys.stderr,
                    )
                    continue
            backend = VISBACKENDS.build(cfg, default_args={"save_dir": save_dir}, key_path=key_path)
        elif isinstance(cfg, BaseVisBackend):
            backend = cfg
        else:
            raise TypeError(
                f"{key_path} must be a backend config dict or a backend, got {type(cfg).__name__}"
            )
        name = name or type(backend).__name__
        if name in backends:
            raise ValueError(f"{key_path}: two vis_backends are named {name!r}; give one a 'name'")
        backends[name] = backend
    return backends


def classification_lines(
    sample: Any,
    classes: Sequence[str] | None,
    draw_gt: bool = True,
    draw_pred: bool = True,
    draw_score: bool = True,
) -> list[str]:
    """``GT: <name>`` and ``Pred: <name> (<score>)`` for a classification sample.

    Labels are named by ``classes`` when given, else shown as indices; several labels
    (multi-label) are joined with commas.
    """

    def label_name(index: int) -> str:
        return (
            str(classes[index]) if classes is not None and 0 <= index < len(classes) else str(index)
        )

    lines = []
    if draw_gt and "gt_label" in sample:
        labels = [int(i) for i in _numpy(sample.gt_label).reshape(-1)]
        lines.append("GT: " + ", ".join(label_name(i) for i in labels))
    if draw_pred and "pred_label" in sample:
        labels = [int(i) for i in _numpy(sample.pred_label).reshape(-1)]
        scores = _numpy(sample.pred_score).reshape(-1) if "pred_score" in sample else None
        parts = []
        for i in labels:
            text = label_name(i)
            if draw_score and scores is not None and 0 <= i < len(scores):
                text += f" ({float(scores[i]):.2f})"
            parts.append(text)
        lines.append("Pred: " + ", ".join(parts))
    return lines


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return (
            value.detach().float().cpu().numpy()
            if value.is_floating_point()
            else value.cpu().numpy()
        )
    return np.asarray(value)


def draw_classification(
    image: np.ndarray,
    sample: Any,
    classes: Sequence[str] | None,
    draw_gt: bool = True,
    draw_pred: bool = True,
    draw_score: bool = True,
    resize: int | None = None,
    rescale_factor: float | None = None,
) -> np.ndarray:
    """The image, enlarged when small, with the ground truth and prediction written on it."""
    image = resize_image(
        image,
        short_edge=resize,
        scale=rescale_factor,
        min_short_edge=READABLE_SHORT_EDGE,
    )
    lines = classification_lines(sample, classes, draw_gt, draw_pred, draw_score)
    return draw_text_block(image, lines)
