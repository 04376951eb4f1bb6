"""Writes go through lowsim.safe_io: atomic, no temp file left on any failure, never over a non-regular
file or through a symlink; manifest paths never lead out of their folder."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from lowsim.errors import LowsimError, UnsafePathError, WriteError
from lowsim.safe_io import atomic_path, atomic_write_bytes, atomic_write_text, resolve_inside


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_atomic_write_replaces_and_leaves_only_the_target(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    atomic_write_text(target, "one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert _entries(tmp_path) == ["a.txt"]


@pytest.mark.parametrize("failure", [KeyboardInterrupt, RuntimeError, OSError])
def test_failed_write_removes_its_temp_and_keeps_the_old_file(tmp_path: Path, failure: type) -> None:
    target = tmp_path / "a.txt"
    target.write_bytes(b"good")
    expected = WriteError if failure is OSError else failure
    with pytest.raises(expected):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise failure(28, "No space left on device") if failure is OSError else failure()
    assert target.read_bytes() == b"good"
    assert _entries(tmp_path) == ["a.txt"]


def test_write_into_a_file_instead_of_a_folder_is_a_write_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(WriteError, match="is a file") as err:
        atomic_write_text(tmp_path / "file" / "a.txt", "y")
    assert "a.txt" in str(err.value) and err.value.exit_code == 1


def test_symlink_target_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    link = tmp_path / "link.txt"
    link.symlink_to(victim)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        atomic_write_text(link, "evil")
    assert victim.read_text() == "precious" and link.is_symlink()


def test_fifo_and_directory_targets_are_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(UnsafePathError, match="FIFO"):
        atomic_write_text(fifo, "x")
    (tmp_path / "d").mkdir()
    with pytest.raises(UnsafePathError, match="directory"):
        atomic_write_text(tmp_path / "d", "x")
    assert _entries(tmp_path) == ["d", "pipe"]


def test_device_node_is_refused() -> None:
    with pytest.raises(UnsafePathError, match="character device"):
        atomic_write_text(Path("/dev/null"), "x")
    assert Path("/dev/null").is_char_device()


@pytest.mark.parametrize("relative", ["/etc/passwd", "../x.png", "a/../../x.png", "", "a\x00b", "..\\x.png",
                                      "C:\\x.png"])
def test_resolve_inside_refuses_escapes(tmp_path: Path, relative: str) -> None:
    with pytest.raises(UnsafePathError) as err:
        resolve_inside(tmp_path, relative, "source_path")
    assert str(tmp_path) in str(err.value) and "source_path" in str(err.value)


def test_resolve_inside_refuses_a_symlink_out_and_accepts_one_in(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "outside.png").write_bytes(b"x")
    (root / "out.png").symlink_to(tmp_path / "outside.png")
    (root / "in.png").symlink_to(root / "sub")
    with pytest.raises(UnsafePathError, match="symbolic link"):
        resolve_inside(root, "out.png")
    assert resolve_inside(root, "in.png") == root / "in.png"
    assert resolve_inside(root, "sub/x.png") == root / "sub" / "x.png"


def test_project_errors_share_one_base() -> None:
    assert issubclass(UnsafePathError, LowsimError) and issubclass(WriteError, LowsimError)
