"""Errors about a user's data (unreadable images, bad annotation files), reported as one line."""


class DataError(ValueError):
    """Data on disk that cannot be used as it is; the message names the file."""
