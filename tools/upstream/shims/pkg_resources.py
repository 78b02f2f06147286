"""A stand-in for setuptools' ``pkg_resources`` (gone from setuptools >= 81) for the oracle
only: MMEngine 0.10.7's config loader asks it where an installed package lives."""

import importlib.metadata as _metadata


class DistributionNotFound(Exception):
    pass


class _Distribution:
    def __init__(self, dist):
        self._dist = dist
        self.version = dist.version
        self.location = str(dist.locate_file(""))

    def has_metadata(self, name: str) -> bool:
        return self._dist.read_text(name) is not None

    def get_metadata(self, name: str) -> str:
        return self._dist.read_text(name) or ""


def get_distribution(name: str) -> _Distribution:
    try:
        return _Distribution(_metadata.distribution(name))
    except _metadata.PackageNotFoundError as exc:
        raise DistributionNotFound(name) from exc
