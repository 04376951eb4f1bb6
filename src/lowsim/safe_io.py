"""Every file lowsim writes goes through here, and every path a manifest names is checked here.

Writes are atomic: the bytes go to a uniquely named temp file in the target's folder (`.NAME.XXXX.tmp`,
created with O_EXCL so nothing else can be there), are fsynced, and the temp file is renamed over the target.
A reader never sees a partial file; on any failure, KeyboardInterrupt included, the temp file is removed
(and `remove_live_temps` removes those an interrupt caught between creating and guarding them).

What is never written over: a target that exists and is not a regular file (a directory, device node, FIFO,
socket) and a target that is a symbolic link. Symlinks are refused rather than followed: a rename would
replace the link itself, and following it would write wherever it points; both surprise. The parent folders
may be symlinks (e.g. /tmp on macOS). The check runs just before the rename; a target swapped in between by
another process is beyond what a rename-based write can prevent.

Reading: `resolve_inside(root, relative)` is how a manifest's relative path (`source_path`, `*_file_name`)
becomes a file: absolute paths, `..` parts and symlinks that lead out of root are refused.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Iterator

from lowsim.errors import UnsafePathError, WriteError

TEMP_SUFFIX = ".tmp"


def _kind_of(mode: int) -> str:
    """A short human name for a file type that is not a regular file."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a regular file"


def check_write_target(path: str | Path, what: str = "") -> Path:
    """The target as a Path, after refusing a symlink, a non-regular file, or a parent that is not a folder."""
    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    except NotADirectoryError:
        raise WriteError(f"cannot write{what} (a parent folder is a file)", path) from None
    except OSError as err:
        raise WriteError(f"cannot write{what} ({err.strerror or err})", path) from None
    if mode is not None and stat.S_ISLNK(mode):
        raise UnsafePathError("refusing to write through a symbolic link (lowsim never follows or replaces "
                              "links it writes to; give the real path)", path)
    if mode is not None and not stat.S_ISREG(mode):
        raise UnsafePathError(f"refusing to replace {_kind_of(mode)}: the output must be a regular file or "
                              "not exist yet", path)
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise WriteError(f"cannot write{what} (its folder is a file, not a folder)", path)
    return path


def _make_parent(path: Path, what: str) -> None:
    """Create the target's folder (and its parents), or raise WriteError naming the target."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        reason = "a parent folder is a file" if isinstance(err, (FileExistsError, NotADirectoryError)) \
            else (err.strerror or str(err))
        raise WriteError(f"cannot write{what} ({reason})", path) from None


def _fsync_path(path: Path) -> None:
    """fsync a file (or a folder, so a rename in it is durable) by path."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Temp files this process has created and not yet renamed or removed. A name is recorded before its file
# exists, so Ctrl-C at any moment leaves nothing that remove_live_temps() cannot find.
_LIVE_TEMPS: set[Path] = set()


def _new_temp(path: Path, what: str) -> Path:
    """Create an empty, uniquely named temp file beside `path` (O_EXCL; mode 0666 less the umask)."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
        _LIVE_TEMPS.add(tmp)
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:
            _LIVE_TEMPS.discard(tmp)
        except OSError as err:
            _LIVE_TEMPS.discard(tmp)
            raise WriteError(f"cannot write{what} ({err.strerror or err})", path) from None
    raise WriteError(f"cannot write{what} (no free temp file name)", path)


def remove_live_temps() -> None:
    """Remove the temp files of writes this process left unfinished (called when Ctrl-C stops a command)."""
    for tmp in list(_LIVE_TEMPS):
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        _LIVE_TEMPS.discard(tmp)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, fsync: bool = True, what: str = "") -> Iterator[Path]:
    """Yield a temp path beside `path` to write to; on success fsync it and rename it over `path`.

    `what` (e.g. " the manifest") goes into the error message. On any exception the temp file is removed;
    an OSError becomes a WriteError naming the target, anything else (KeyboardInterrupt too) is re-raised.
    """
    path = check_write_target(path, what)
    _make_parent(path, what)
    tmp = _new_temp(path, what)
    try:
        yield tmp
        if fsync:
            _fsync_path(tmp)
        check_write_target(path, what)  # again: the target may have changed while we wrote
        os.replace(tmp, path)
        if fsync:
            with contextlib.suppress(OSError):  # not every filesystem can fsync a folder
                _fsync_path(path.parent)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(err, OSError):
            raise WriteError(f"cannot write{what} ({err.strerror or err})", path) from None
        raise
    finally:
        _LIVE_TEMPS.discard(tmp)


def atomic_write_bytes(path: str | Path, data: bytes, *, fsync: bool = True, what: str = "") -> Path:
    """Write bytes atomically (temp file in the same folder, fsync, rename); return the path."""
    with atomic_path(path, fsync=fsync, what=what) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, *, fsync: bool = True, what: str = "") -> Path:
    """Write UTF-8 text atomically; see atomic_write_bytes."""
    return atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync, what=what)


def _escape_reason(relative: str) -> str | None:
    """Why a manifest's relative path is not one (absolute, '..', empty, NUL), or None when it looks fine."""
    if not relative or relative in (".", "./"):
        return "is empty"
    if "\x00" in relative:
        return "contains a NUL byte"
    if PurePosixPath(relative).is_absolute() or PureWindowsPath(relative).is_absolute() \
            or PureWindowsPath(relative).drive:
        return "is absolute"
    if ".." in PurePosixPath(relative.replace("\\", "/")).parts:
        return "contains '..'"
    return None


def resolve_inside(root: str | Path, relative: str | os.PathLike[str], what: str = "path") -> Path:
    """root / relative, after refusing a path that is absolute, has '..' or leads out of root by a symlink."""
    text = os.fspath(relative)
    if not isinstance(text, str):
        raise UnsafePathError(f"{what} must be text, got {type(text).__name__}", root)
    reason = _escape_reason(text)
    if reason is not None:
        raise UnsafePathError(f"{what} {text!r} {reason}; manifest paths must stay inside this folder", root)
    root = Path(root)
    candidate = root / text
    try:
        inside = candidate.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError, ValueError) as err:  # symlink loop, unreadable folder
        raise UnsafePathError(f"{what} {text!r} cannot be resolved ({err})", root) from None
    if not inside:
        raise UnsafePathError(f"{what} {text!r} leads out of this folder through a symbolic link", root)
    return candidate
