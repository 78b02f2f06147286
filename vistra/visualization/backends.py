"""Visualization backends: where scalars, images and the config of a run are written.

Registered under MMEngine's names (``LocalVisBackend``, ``TensorboardVisBackend``) so that a
config's ``vis_backends = [dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')]``
carries over. Backends create their directories (and the TensorBoard writer) on first write,
so building one costs nothing and an unused backend leaves no empty folders behind. Only
rank 0 builds a visualizer; nothing here talks to torch.distributed.
"""

from __future__ import annotations

import json
import numbers
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from vistra.registry import VISBACKENDS


def config_text(config: Any) -> str:
    """The text of a config: a string as is, or the ``pretty_text`` of a Config object."""
    if isinstance(config, str):
        return config
    text = getattr(config, "pretty_text", None)
    if isinstance(text, str):
        return text
    raise TypeError(
        f"add_config expects the config text (str) or a Config with .pretty_text, "
        f"got {type(config).__name__}"
    )


def to_json_value(key: str, value: Any) -> Any:
    """A JSON-ready copy of one logged value: tensors and numpy values become numbers/lists.

    scalars.json must stay readable by plain ``json.loads``; a value that cannot be
    written as a number fails here, naming its key, instead of corrupting the file.
    """
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, np.ndarray):
        return value.item() if value.size == 1 else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (bool, numbers.Number, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [to_json_value(key, v) for v in value]
    raise TypeError(
        f"scalar {key!r} has a value of type {type(value).__name__} that cannot be written "
        "to scalars.json; log numbers, tensors or numpy values"
    )


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        got = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
        raise TypeError(f"add_image expects a uint8 numpy array (RGB, HWC), got {got}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"add_image expects an (H, W, 3) RGB image, got shape {image.shape}")
    return image


class BaseVisBackend:
    """What every backend offers; the default of each method is to record nothing."""

    def __init__(self, save_dir: str) -> None:
        if save_dir is None:
            raise ValueError(f"{type(self).__name__} needs a save_dir to write into")
        self._save_dir = str(save_dir)

    @property
    def save_dir(self) -> str:
        return self._save_dir

    def add_config(self, config: Any, **kwargs: Any) -> None: ...

    def add_image(self, name: str, image: np.ndarray, step: int = 0, **kwargs: Any) -> None: ...

    def add_scalar(self, name: str, value: Any, step: int = 0, **kwargs: Any) -> None: ...

    def add_scalars(
        self, scalar_dict: dict, step: int = 0, file_path: str | None = None, **kwargs: Any
    ) -> None: ...

    def close(self) -> None: ...


@VISBACKENDS.register_module()
class LocalVisBackend(BaseVisBackend):
    """Writes to plain files under ``save_dir``, in MMEngine's layout.

    ``config.py`` holds the config text, ``vis_image/{name}_{step}.png`` the images and
    ``scalars.json`` one JSON object per ``add_scalars`` call (the dict plus ``"step"``),
    appended and flushed line by line so that a crash loses at most the line being written.
    """

    def __init__(
        self,
        save_dir: str,
        img_save_dir: str = "vis_image",
        config_save_file: str = "config.py",
        scalar_save_file: str = "scalars.json",
    ) -> None:
        if not config_save_file.endswith(".py"):
            raise ValueError(f"config_save_file must end with '.py', got {config_save_file!r}")
        if not scalar_save_file.endswith(".json"):
            raise ValueError(f"scalar_save_file must end with '.json', got {scalar_save_file!r}")
        super().__init__(save_dir)
        self.img_save_dir = os.path.join(self._save_dir, img_save_dir)
        self.config_save_file = os.path.join(self._save_dir, config_save_file)
        self.scalar_save_file = os.path.join(self._save_dir, scalar_save_file)

    def add_config(self, config: Any, **kwargs: Any) -> None:
        os.makedirs(self._save_dir, exist_ok=True)
        Path(self.config_save_file).write_text(config_text(config), encoding="utf-8")

    def add_image(self, name: str, image: np.ndarray, step: int = 0, **kwargs: Any) -> None:
        """Save ``image`` (RGB) as ``{img_save_dir}/{name}_{step}.png``."""
        image = _check_image(image)
        path = os.path.join(self.img_save_dir, f"{name}_{step}.png")
        os.makedirs(os.path.dirname(path), exist_ok=True)  # ``name`` may hold a sub-folder
        Image.fromarray(image).save(path)

    def add_scalar(self, name: str, value: Any, step: int = 0, **kwargs: Any) -> None:
        self._append({name: to_json_value(name, value), "step": step}, self.scalar_save_file)

    def add_scalars(
        self, scalar_dict: dict, step: int = 0, file_path: str | None = None, **kwargs: Any
    ) -> None:
        """Append ``scalar_dict`` plus ``"step"`` (unless it has one) as one line.

        With ``file_path`` (relative to ``save_dir``, ending in ``.json``) the same line is
        also appended there, as MMEngine's logger hook uses for its extra json log.
        """
        if not isinstance(scalar_dict, dict):
            raise TypeError(f"add_scalars expects a dict, got {type(scalar_dict).__name__}")
        record = {key: to_json_value(key, value) for key, value in scalar_dict.items()}
        record.setdefault("step", step)
        if file_path is not None:
            extra = os.path.join(self._save_dir, file_path)
            if not file_path.endswith(".json"):
                raise ValueError(f"file_path must end with '.json', got {file_path!r}")
            if os.path.abspath(extra) == os.path.abspath(self.scalar_save_file):
                raise ValueError(
                    f"file_path {file_path!r} is the scalar_save_file itself; choose another name"
                )
            self._append(record, extra)
        self._append(record, self.scalar_save_file)

    @staticmethod
    def _append(record: dict, path: str) -> None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


@VISBACKENDS.register_module()
class TensorboardVisBackend(BaseVisBackend):
    """Writes TensorBoard event files into ``save_dir`` via torch's ``SummaryWriter``.

    The writer (and the import of tensorboard, which is slow) is created on first write.
    """

    def __init__(self, save_dir: str) -> None:
        super().__init__(save_dir)
        self._writer: Any = None

    @property
    def experiment(self) -> Any:
        """The underlying ``SummaryWriter``, for anything this class does not wrap."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter  # slow import: only when used

            os.makedirs(self._save_dir, exist_ok=True)
            self._writer = SummaryWriter(self._save_dir)
        return self._writer

    def add_config(self, config: Any, **kwargs: Any) -> None:
        self.experiment.add_text("config", config_text(config))

    def add_image(self, name: str, image: np.ndarray, step: int = 0, **kwargs: Any) -> None:
        self.experiment.add_image(name, _check_image(image), step, dataformats="HWC")

    def add_scalar(self, name: str, value: Any, step: int = 0, **kwargs: Any) -> None:
        """Record one number; other values (strings, lists) are skipped with a warning."""
        if isinstance(value, (torch.Tensor, np.ndarray, np.generic)):
            size = value.numel() if isinstance(value, torch.Tensor) else value.size
            if size != 1:
                warnings.warn(f"scalar {name!r} has {size} elements; skipped", stacklevel=2)
                return
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            warnings.warn(
                f"scalar {name!r} is a {type(value).__name__}, not a number; skipped",
                stacklevel=2,
            )
            return
        self.experiment.add_scalar(name, value, step)

    def add_scalars(
        self, scalar_dict: dict, step: int = 0, file_path: str | None = None, **kwargs: Any
    ) -> None:
        """One ``add_scalar`` per key; ``file_path`` only matters to the local backend."""
        if "step" in scalar_dict:
            raise ValueError("pass the step as add_scalars(step=...), not as a 'step' key")
        for key, value in scalar_dict.items():
            self.add_scalar(key, value, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
