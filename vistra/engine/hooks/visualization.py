"""Draws predictions during validation and testing (``--show``, ``--show-dir``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vistra.engine.hooks.hook import Hook
from vistra.registry import HOOKS


def sample_image(data_sample: Any, batch_input: Any, size_hw: tuple[int, int] | None) -> np.ndarray:
    """The RGB image of a sample: the original file when there is one, else the network
    input (BGR, CHW) converted back; resized to ``size_hw`` when given."""
    path = data_sample.get("img_path") if hasattr(data_sample, "get") else None
    if path and Path(path).is_file():
        img = Image.open(path).convert("RGB")
    else:
        arr = batch_input.detach().cpu()
        arr = arr.numpy().transpose(1, 2, 0)
        if arr.dtype != np.uint8:
            arr = np.clip(arr, 0, 255).astype(np.uint8)
        img = Image.fromarray(
            np.ascontiguousarray(arr[..., ::-1]) if arr.shape[2] == 3 else arr[..., 0]
        )
        img = img.convert("RGB")
    if size_hw is not None and img.size != (size_hw[1], size_hw[0]):
        img = img.resize((size_hw[1], size_hw[0]), Image.BILINEAR)
    return np.asarray(img)


@HOOKS.register_module(name=["VisualizationHook", "SegVisualizationHook"])
class VisualizationHook(Hook):
    """MMPretrain's ``VisualizationHook(enable, interval, show, out_dir, wait_time)`` and
    MMSegmentation's ``SegVisualizationHook(draw, interval, show, wait_time)`` in one.

    Every ``interval``-th sample of validation/testing is drawn (ground truth and
    prediction); with ``out_dir`` (``test --show-dir``) the images are written there as
    PNGs named after the input file, otherwise they go to the visualizer's backends.
    """

    priority = "NORMAL"

    def __init__(
        self,
        enable: bool = False,
        draw: bool | None = None,
        interval: int = 50,
        show: bool = False,
        wait_time: float = 0.0,
        out_dir: str | None = None,
        draw_gt: bool = True,
        draw_pred: bool = True,
        backend_args: dict | None = None,
        **kwargs: Any,
    ) -> None:
        self.enable = bool(enable or draw or show or out_dir)
        self.interval = max(1, int(interval))
        self.show = show
        self.wait_time = wait_time
        self.out_dir = out_dir
        self.draw_gt = draw_gt
        self.draw_pred = draw_pred

    def _draw(self, runner: Any, mode: str, batch_idx: int, data_batch: Any, outputs: Any) -> None:
        if not self.enable or not outputs:
            return
        batch_size = getattr(
            getattr(runner, f"{mode}_dataloader", None), "batch_size", None
        ) or len(outputs)
        for i, sample in enumerate(outputs):
            index = sample.get("sample_idx")
            index = batch_idx * batch_size + i if index is None else int(index)
            if index % self.interval:
                continue
            pred = sample.get("pred_sem_seg")
            size = pred.shape if pred is not None else None
            image = sample_image(sample, data_batch["inputs"][i], size)
            name = Path(sample.get("img_path") or f"{mode}_{index:06d}.png").stem
            out_file = None
            if self.out_dir:
                out_dir = Path(self.out_dir)
                if not out_dir.is_absolute():
                    out_dir = Path(runner.log_dir) / out_dir
                out_dir.mkdir(parents=True, exist_ok=True)
                out_file = str(out_dir / f"{name}.png")
            runner.visualizer.add_datasample(
                name,
                image,
                data_sample=sample,
                draw_gt=self.draw_gt,
                draw_pred=self.draw_pred,
                show=self.show,
                wait_time=self.wait_time,
                out_file=out_file,
                step=runner.iter,
            )

    def after_val_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None
    ) -> None:
        self._draw(runner, "val", batch_idx, data_batch, outputs)

    def after_test_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None
    ) -> None:
        self._draw(runner, "test", batch_idx, data_batch, outputs)
