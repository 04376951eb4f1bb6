"""Where transfer commands write: an output folder checked before any work (not a file, creatable, writable), one
training run per run directory at a time (a lock), and no temporary files left behind by a killed run."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from transfer.errors import TransferError, TransferRuntimeError

LOCK_FILE = ".transfer.lock"
# what an interrupted atomic write or checkpoint swap leaves: `.<name>.<pid>[.<thread>].tmp` files and
# `<checkpoint>.partial` folders (transfer.checkpoint)
TEMP_SUFFIX, PARTIAL_SUFFIX = ".tmp", ".partial"


def check_output_dir(path: Path, option: str) -> None:
    """Refuse, before any work, an output folder that is a file or lies below one (a usage mistake, exit 2)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise TransferError(f"{option} is a file, expected a folder", path)
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise TransferError(f"{option} lies below {parent}, which is a file, not a folder", path)
            return


def check_output_file(path: Path, option: str) -> None:
    """Refuse, before any work, an output file path that is a folder, a symbolic link or lies below a file (exit
    2); lowsim.safe_io refuses the same when writing, this saves the work before it."""
    path = Path(path)
    if path.is_symlink():
        raise TransferError(f"{option} is a symbolic link; give the real path (links are never written through)",
                            path)
    if path.is_dir():
        raise TransferError(f"{option} is a folder, expected a file name", path)
    check_output_dir(path.parent, f"the folder of {option}")


def refuse_symlinks(folder: Path, names: tuple[str, ...]) -> None:
    """Refuse outputs in a folder that are symbolic links: replacing one would write elsewhere or drop the link."""
    for name in names:
        if (Path(folder) / name).is_symlink():
            raise TransferError("is a symbolic link; transfer replaces its outputs only as real files and folders",
                                Path(folder) / name)


def prepare_output_dir(path: Path, option: str) -> Path:
    """Create the output folder and check that a file can be written in it (a refusal is exit 1, not 2)."""
    check_output_dir(path, option)
    try:
        path.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=path, prefix=".write-check.", suffix=TEMP_SUFFIX)
        os.close(handle)
        os.unlink(probe)
    except OSError as err:
        raise TransferRuntimeError(f"cannot write in the {option} folder ({err.strerror or err})", path) from None
    return path


@contextlib.contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run directory while training; a second run on it is refused at once.
    flock is released by the kernel when the process dies, so a kill -9 never leaves a stale lock."""
    try:
        handle = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise TransferRuntimeError(f"cannot write in the run directory ({err.strerror or err})", run_dir) from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            raise TransferRuntimeError("another transfer command is training in this run directory; wait for it "
                                       "or choose another --run-dir", run_dir) from None
        yield
    finally:
        os.close(handle)


def remove_leftovers(run_dir: Path) -> list[Path]:
    """Delete the temporary files and partial checkpoints a killed run left in its directory (under the lock);
    returns what was removed."""
    removed = []
    for path in sorted(Path(run_dir).iterdir()) if Path(run_dir).is_dir() else []:
        if path.is_dir() and not path.is_symlink() and path.name.endswith(PARTIAL_SUFFIX):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        elif path.name.startswith(".") and path.name.endswith(TEMP_SUFFIX) and path.is_file():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            removed.append(path)
    return removed
