"""The project's own exception types: the CLI prints their message on one line and exits non-zero."""
from __future__ import annotations

import os
from pathlib import Path


def printable(text: str | os.PathLike[str]) -> str:
    """Text safe to print and to store as UTF-8: undecodable file-name bytes shown as backslash escapes."""
    text = os.fspath(text)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def is_printable(text: str) -> bool:
    """True when a (file) name is valid UTF-8, i.e. printable() leaves it unchanged."""
    return printable(text) == text


class LowsimError(Exception):
    """A user-facing error: bad input, bad parameters, unwritable output. Never a bug."""

    exit_code = 2

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        message = " ".join(line.strip() for line in str(message).splitlines() if line.strip())  # one line
        super().__init__(printable(f"{printable(self.path)}: {message}" if self.path is not None else message))


class UnsafePathError(LowsimError):
    """A path lowsim refuses to use: a write target that is a symlink or not a regular file, or a manifest
    path that leads out of its folder."""


class WriteError(LowsimError):
    """Writing failed at run time (no permission, disk full, a file where a folder should be)."""

    exit_code = 1


class ResourceLimitError(LowsimError):
    """An input over a documented limit (e.g. decoded pixels of an image)."""


class Interrupted(LowsimError):
    """Ctrl-C: the CLI prints the message (what to do next) and exits 130, as a shell expects."""

    exit_code = 130
