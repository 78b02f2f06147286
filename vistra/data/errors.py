"""Errors about a user's data (unreadable images, bad annotation files), reported as one line."""

from __future__ import annotations

import os

# What a dataset adds to an unreadable file's error (see BaseDataset's skip_corrupt).
SKIP_HINT = (
    "remove or replace the file, or set skip_corrupt=True on the dataset to skip unreadable samples"
)
MISSING_HINT = (
    "restore the file or remove the sample, or set skip_corrupt=True on the dataset to skip "
    "unreadable samples"
)


class DataError(ValueError):
    """Data on disk that cannot be used as it is; the message names the file."""


class UnreadableFileError(DataError):
    """A file whose bytes cannot be decoded (truncated, empty, not an image at all).

    The message is ``head + tail``; :meth:`at_sample` inserts the sample between the two,
    e.g. ``cannot decode image 'a.jpg'`` + `` (sample 3 of CustomDataset)`` +
    ``: image file is truncated``. A dataset with ``skip_corrupt=True`` skips such samples.
    Like every exception a dataloader worker raises, it must be constructible from its
    message alone (torch re-raises worker errors as ``type(exc)(text)``).
    """

    def __init__(self, head: str, tail: str = "", path: str | os.PathLike | None = None) -> None:
        super().__init__(head + tail)
        self.head = head
        self.tail = tail
        self.path = None if path is None else os.fspath(path)

    def at_sample(self, sample: str, hint: str = "") -> DataError:
        """The message naming ``sample`` too (and ending with ``hint``), still one line, as
        the plain :class:`DataError` a dataset raises: the loops and the CLI know that
        class by name and pass its message through as it is, also from a worker."""
        tail = f"{self.tail}; {hint}" if hint else self.tail
        return DataError(f"{self.head} ({sample}){tail}")
