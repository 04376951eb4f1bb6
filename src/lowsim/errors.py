"""The project's own exception types: the CLI prints their message on one line and exits non-zero."""
from __future__ import annotations

from pathlib import Path


class LowsimError(Exception):
    """A user-facing error: bad input, bad parameters, unwritable output. Never a bug."""

    exit_code = 2

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class UnsafePathError(LowsimError):
    """A path lowsim refuses to use: a write target that is a symlink or not a regular file, or a manifest
    path that leads out of its folder."""


class WriteError(LowsimError):
    """Writing failed at run time (no permission, disk full, a file where a folder should be)."""

    exit_code = 1


class ResourceLimitError(LowsimError):
    """An input over a documented limit (e.g. decoded pixels of an image)."""
