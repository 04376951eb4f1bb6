"""One exception type for user mistakes: the CLI prints its message on one line and exits non-zero."""
from __future__ import annotations

from pathlib import Path


class LowsimError(Exception):
    """A user-facing error: bad input, bad parameters, unwritable output. Never a bug."""

    exit_code = 2

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)
