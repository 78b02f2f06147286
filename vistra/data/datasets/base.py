"""``BaseDataset``: MMEngine's dataset protocol, plus per-sample seeding.

Subclasses override :meth:`load_data_list` (a list of dicts, one per sample) and set the
class attribute ``METAINFO``. Everything else follows MMEngine 0.x/1.x:

- ``metainfo``: ``METAINFO`` updated by the ``metainfo`` argument; a string value that
  names an existing file is read as one entry per line (``classes='classes.txt'``).
- ``data_root`` is joined to ``ann_file`` and to every ``data_prefix`` value unless they
  are absolute; a string ``data_prefix`` means ``dict(img_path=...)`` (MMPretrain).
- ``full_init()`` loads, filters (:meth:`filter_data`), subsets (``indices``) and
  serialises the data list; ``lazy_init=True`` defers it to the first access.
- ``__getitem__(idx)`` runs the pipeline on a copy of ``get_data_info(idx)``. In training a
  pipeline returning None makes it try a random other sample, up to ``max_refetch`` times;
  in test mode None is an error naming the sample.

``__getitem__`` also accepts ``(idx, seed)``: the pipeline then runs inside
:func:`vistra.data.seeding.seeded_rng`, so augmentation depends on (seed, idx) only.

A file that cannot be read (an image that does not decode, a missing file) is an error
naming the file and the sample. With ``skip_corrupt=True`` the sample is replaced by
another one instead, in training and in test mode alike (there the metrics then leave it
out, which the warning says), and each bad file is logged once as a warning on the
'vistra' logger; after ``max_refetch`` failures in a row the dataset gives up. The
replacement and the seed it runs under depend on (seed, idx) only, so a resumed run
replaces a bad sample exactly as the uninterrupted run did.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from vistra.data.errors import MISSING_HINT, SKIP_HINT, DataError, UnreadableFileError
from vistra.data.seeding import derive_seed, seeded_rng, split_index
from vistra.data.transforms.base import Compose
from vistra.registry import DATASETS


def list_from_file(path: str | os.PathLike, what: str = "file") -> list[str]:
    """Non-empty lines of a text file, stripped of the line break; errors name the file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {os.fspath(path)!r}") from None
    return [line.rstrip("\r\n") for line in text.splitlines() if line.strip()]


def join_root(root: str, path: str) -> str:
    """``root/path`` unless ``path`` is absolute or ``root`` empty (MMEngine's ``_join_prefix``)."""
    path = os.path.expanduser(path)
    if not root or os.path.isabs(path):
        return path
    return os.path.join(root, path)


class _ReportedOnce:
    """Flags of the samples already reported, in shared memory: dataloader workers
    (forked, or spawned and handed the dataset through torch's pickler) set and see the
    same flags, so a bad file is reported once per run rather than per worker and epoch."""

    def __init__(self, n: int) -> None:
        self.flags = torch.zeros(n, dtype=torch.uint8).share_memory_()

    def __len__(self) -> int:
        return len(self.flags)

    def first_time(self, idx: int) -> bool:
        if self.flags[idx]:
            return False
        self.flags[idx] = 1  # two workers meeting the same file at once may both report it
        return True


def _load_annotations(path: str) -> Any:
    suffix = Path(path).suffix.lower()
    if not Path(path).is_file():
        raise FileNotFoundError(f"annotation file not found: {path!r}")
    if suffix == ".json":
        return json.loads(Path(path).read_text(encoding="utf-8"))
    if suffix in (".yaml", ".yml"):
        import yaml

        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    raise ValueError(
        f"cannot read annotation file {path!r}: BaseDataset reads .json/.yaml/.yml files "
        "holding {'metainfo': {...}, 'data_list': [...]} (pickle files are not loaded, "
        "since unpickling can run arbitrary code)"
    )


@DATASETS.register_module()
class BaseDataset:
    """The base of every vistra dataset (see the module docstring for the protocol)."""

    METAINFO: ClassVar[dict] = dict()
    _fully_initialized: bool = False

    def __init__(
        self,
        ann_file: str | None = "",
        metainfo: dict | str | None = None,
        data_root: str | None = "",
        data_prefix: dict | str = dict(img_path=""),  # noqa: B006 - MMEngine's; copied
        filter_cfg: dict | None = None,
        indices: int | Sequence[int] | None = None,
        serialize_data: bool = True,
        pipeline: Sequence[dict | Callable] = (),
        test_mode: bool = False,
        lazy_init: bool = False,
        max_refetch: int = 1000,
        skip_corrupt: bool = False,
    ) -> None:
        self.data_root = os.path.expanduser(data_root or "")
        self.ann_file = join_root(self.data_root, ann_file or "") if ann_file else ""
        prefix = dict(img_path=data_prefix) if isinstance(data_prefix, str) else dict(data_prefix)
        self.data_prefix = {k: join_root(self.data_root, v or "") for k, v in prefix.items()}
        self.filter_cfg = copy.deepcopy(filter_cfg)
        self._indices = indices
        self.serialize_data = serialize_data
        self.test_mode = test_mode
        if not isinstance(max_refetch, int) or max_refetch < 0:
            raise ValueError(f"max_refetch must be a non-negative int, got {max_refetch!r}")
        self.max_refetch = max_refetch
        if not isinstance(skip_corrupt, bool):
            raise TypeError(f"skip_corrupt must be True or False, got {skip_corrupt!r}")
        self.skip_corrupt = skip_corrupt
        # The config key the dataset was built from (e.g. 'train_dataloader.dataset'), set
        # by whoever builds it; errors about a sample name it.
        self.config_key: str | None = None
        self._reported: _ReportedOnce | None = None
        self._metainfo = self._load_metainfo(copy.deepcopy(metainfo))
        self.data_list: list[dict] = []
        self._data_bytes: np.ndarray | None = None
        self._data_address: np.ndarray | None = None
        self.pipeline = Compose(pipeline)
        if not lazy_init:
            self.full_init()

    # ------------------------------------------------------------------ metainfo
    @classmethod
    def _load_metainfo(cls, metainfo: dict | None) -> dict:
        info = copy.deepcopy(cls.METAINFO)
        if metainfo is None:
            return info
        if not isinstance(metainfo, dict):
            raise TypeError(f"metainfo must be a dict, got {type(metainfo).__name__} {metainfo!r}")
        for key, value in metainfo.items():
            if isinstance(value, str) and Path(os.path.expanduser(value)).is_file():
                value = list_from_file(os.path.expanduser(value), f"metainfo[{key!r}] file")
            info[key] = tuple(value) if key == "classes" and isinstance(value, list) else value
        return info

    @property
    def metainfo(self) -> dict:
        """A copy of the dataset's meta information (``classes``, ``palette``, ...)."""
        return copy.deepcopy(self._metainfo)

    @property
    def CLASSES(self) -> tuple | None:  # noqa: N802 - OpenMMLab's name
        return self._metainfo.get("classes")

    @property
    def class_to_idx(self) -> dict[str, int]:
        if self.CLASSES is None:
            raise ValueError(f"{type(self).__name__} has no 'classes' in its metainfo")
        return {name: i for i, name in enumerate(self.CLASSES)}

    @property
    def img_prefix(self) -> str:
        return self.data_prefix.get("img_path", "")

    # ------------------------------------------------------------------ loading
    def full_init(self) -> None:
        """Load, filter, subset and serialise the data list, once."""
        if self._fully_initialized:
            return
        self.data_list = self.load_data_list()
        self.data_list = self.filter_data()
        if self._indices is not None:
            self.data_list = self._subset(self.data_list, self._indices)
        if self.serialize_data:
            self._serialize()
        self._fully_initialized = True
        if self.skip_corrupt:  # before dataloader workers start, so that they share it
            self._reported = _ReportedOnce(len(self))

    def load_data_list(self) -> list[dict]:
        """Read an MMEngine-format annotation file: ``{'metainfo': {...}, 'data_list': [...]}``.

        Meta information from the file only fills keys the class/argument left unset.
        """
        if not self.ann_file:
            raise ValueError(
                f"{type(self).__name__} needs ann_file= (a .json/.yaml annotation file)"
            )
        annotations = _load_annotations(self.ann_file)
        if not isinstance(annotations, dict) or "data_list" not in annotations:
            raise ValueError(
                f"annotation file {self.ann_file!r} must hold a dict with keys "
                "'metainfo' and 'data_list'"
            )
        for key, value in (annotations.get("metainfo") or {}).items():
            self._metainfo.setdefault(key, value)
        data_list = []
        for raw in annotations["data_list"]:
            info = self.parse_data_info(raw)
            data_list.extend(info if isinstance(info, list) else [info])
        return data_list

    def parse_data_info(self, raw_data_info: dict) -> dict | list[dict]:
        """Join each ``data_prefix`` entry onto the sample's path of the same key."""
        for key, prefix in self.data_prefix.items():
            if key not in raw_data_info:
                raise KeyError(f"sample {raw_data_info!r} has no {key!r}, which data_prefix names")
            raw_data_info[key] = os.path.join(prefix, raw_data_info[key])
        return raw_data_info

    def filter_data(self) -> list[dict]:
        """Hook for subclasses that use ``filter_cfg``; keeps everything by default."""
        return self.data_list

    @staticmethod
    def _subset(data_list: list[dict], indices: int | Sequence[int]) -> list[dict]:
        if isinstance(indices, int):
            return data_list[:indices] if indices >= 0 else data_list[indices:]
        if isinstance(indices, Sequence):
            return [data_list[i] for i in indices]
        raise TypeError(f"indices must be an int or a sequence of ints, got {indices!r}")

    def get_subset(self, indices: int | Sequence[int]) -> BaseDataset:
        """A copy holding only ``indices`` (an int keeps the first/last N samples)."""
        self.full_init()
        subset = copy.copy(self)
        subset.data_list = self._subset([self.get_data_info(i) for i in range(len(self))], indices)
        for info in subset.data_list:
            info.pop("sample_idx", None)
        subset._data_bytes = subset._data_address = None
        if self.serialize_data:
            subset._serialize()
        subset._reported = _ReportedOnce(len(subset)) if self.skip_corrupt else None
        return subset

    # ------------------------------------------------------------------ serialisation
    def _serialize(self) -> None:
        """Pack the data list into one byte array.

        Forked dataloader workers then share one buffer instead of touching (and so
        copying, via reference counts) millions of small Python objects.
        """
        blobs = [
            np.frombuffer(pickle.dumps(info, protocol=4), dtype=np.uint8) for info in self.data_list
        ]
        lengths = np.array([len(b) for b in blobs], dtype=np.int64)
        self._data_address = np.cumsum(lengths)
        self._data_bytes = np.concatenate(blobs) if blobs else np.zeros(0, np.uint8)
        self.data_list = []

    def __len__(self) -> int:
        self.full_init()
        if self._data_address is not None:
            return len(self._data_address)
        return len(self.data_list)

    def get_data_info(self, idx: int) -> dict:
        """A fresh copy of sample ``idx``'s info, with ``sample_idx`` set."""
        n = len(self)
        if not -n <= idx < n:
            raise IndexError(f"index {idx} out of range for {type(self).__name__} with {n} samples")
        idx = idx % n
        if self._data_address is not None:
            start = 0 if idx == 0 else int(self._data_address[idx - 1])
            end = int(self._data_address[idx])
            info = pickle.loads(self._data_bytes[start:end].tobytes())
        else:
            info = copy.deepcopy(self.data_list[idx])
        info["sample_idx"] = idx
        return info

    # ------------------------------------------------------------------ samples
    def prepare_data(self, idx: int) -> Any:
        return self.pipeline(self.get_data_info(idx))

    def __getitem__(self, item: int | tuple[int, int]) -> Any:
        idx, seed = split_index(item)
        self.full_init()
        if seed is None:
            return self._fetch(idx, None)
        with seeded_rng(seed):
            return self._fetch(idx, seed)

    def _fetch(self, idx: int, seed: int | None) -> Any:
        """The pipeline's output for ``idx``, refetching another sample when the pipeline
        returns None (training only) or a file is unreadable (``skip_corrupt``)."""
        first, replacement_seed, unreadable = idx, None, None
        for attempt in range(self.max_refetch + 1):
            try:
                data = self._prepare(idx, replacement_seed)
            except (UnreadableFileError, FileNotFoundError) as exc:
                if not self.skip_corrupt:
                    hint = SKIP_HINT if isinstance(exc, UnreadableFileError) else MISSING_HINT
                    raise self._at_sample(exc, idx, hint) from exc
                unreadable = self._at_sample(exc, idx)
                self._report_skipped(idx, unreadable)
                idx, replacement_seed = self._replacement(first, seed, attempt)
                continue
            if data is not None:
                return data
            if self.test_mode:
                raise RuntimeError(
                    f"the test pipeline dropped sample {idx} of {type(self).__name__} "
                    f"({self._describe(idx)}); test pipelines must not return None"
                )
            idx = self._rand_another()
        if unreadable is not None:
            raise DataError(
                f"{type(self).__name__}: {self.max_refetch + 1} samples in a row could not be "
                f"read (sample {first} and the replacements that skip_corrupt=True tried, "
                f"max_refetch={self.max_refetch}); the last: {unreadable}. Check that the "
                "files are images and that data_root and data_prefix point at them"
            )
        raise RuntimeError(
            f"{type(self).__name__}: the pipeline returned None for sample {first} "
            f"({self._describe(first)}) and for {self.max_refetch} random replacements; "
            "check the image paths and the pipeline"
        )

    def _prepare(self, idx: int, seed: int | None) -> Any:
        if seed is None:
            return self.prepare_data(idx)
        with seeded_rng(seed):
            return self.prepare_data(idx)

    def _replacement(self, first: int, seed: int | None, attempt: int) -> tuple[int, int | None]:
        """The sample tried instead of ``first`` after its ``attempt``-th failure, and the
        seed it runs under: a function of (seed, first, attempt) alone, never of the RNG
        streams, so that a resumed run replaces a bad sample as the uninterrupted one did."""
        n = len(self)
        mixed = derive_seed(0 if seed is None else seed, first, attempt)
        other = first if n == 1 else (first + 1 + mixed % (n - 1)) % n
        return other, None if seed is None else derive_seed(mixed, 1)

    def _at_sample(self, exc: Exception, idx: int, hint: str = "") -> Exception:
        """The one-line error to raise (or log) for ``exc``, naming sample ``idx`` too."""
        where = f" in {self.config_key}" if self.config_key else ""
        sample = f"sample {idx} of {type(self).__name__}{where}"
        if isinstance(exc, UnreadableFileError):
            return exc.at_sample(sample, hint)
        message = " ".join(str(exc).split())  # a missing file
        return FileNotFoundError(f"{message} ({sample}){'; ' + hint if hint else ''}")

    def _report_skipped(self, idx: int, error: Exception) -> None:
        """One warning per bad sample and run, whichever worker meets it, every epoch."""
        if self._reported is None or len(self._reported) != len(self):
            self._reported = _ReportedOnce(len(self))  # skip_corrupt set after loading
        if not self._reported.first_time(idx):
            return
        if self.test_mode:
            instead = (
                "skip_corrupt=True in test mode: another sample is evaluated in its place, "
                "so the metrics leave this one out and count another twice"
            )
        else:
            instead = "skip_corrupt=True: another sample is used in its place"
        logging.getLogger("vistra").warning(f"{error}; {instead} (reported once per file)")

    def _rand_another(self) -> int:
        return int(np.random.randint(0, len(self)))

    def _describe(self, idx: int) -> str:
        info = self.get_data_info(idx)
        keys = [k for k in ("img_path", "seg_map_path") if k in info]
        return ", ".join(f"{k}={info[k]!r}" for k in keys) or f"sample_idx={idx}"

    # ------------------------------------------------------------------ labels
    def get_gt_labels(self) -> np.ndarray:
        """All ground-truth labels, in sample order (classification datasets)."""
        return np.array([self.get_data_info(i)["gt_label"] for i in range(len(self))])

    def get_cat_ids(self, idx: int) -> list[int]:
        """Category ids of sample ``idx`` (what class-balanced sampling needs)."""
        info = self.get_data_info(idx)
        if "gt_label" not in info:
            raise KeyError(f"{type(self).__name__} sample {idx} has no 'gt_label'")
        return np.atleast_1d(np.asarray(info["gt_label"])).astype(int).tolist()

    def __repr__(self) -> str:
        n = len(self) if self._fully_initialized else "not loaded"
        lines = [f"Dataset {type(self).__name__}", f"    Number of samples: {n}"]
        if self.CLASSES is not None:
            lines.append(f"    Number of categories: {len(self.CLASSES)}")
        if self.data_root:
            lines.append(f"    Root of dataset: {self.data_root}")
        if self.ann_file:
            lines.append(f"    Annotation file: {self.ann_file}")
        return "\n".join(lines)
