"""Writes go through lowsim.safe_io: atomic, no temp file left on any failure, never over a non-regular
file or through a symlink; manifest paths never lead out of their folder."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from lowsim.errors import LowsimError, UnsafePathError, WriteError
from lowsim.safe_io import atomic_path, atomic_write_bytes, atomic_write_text, resolve_inside
from tests.robustness.conftest import (assert_one_line_error, invoke, run_lowsim, snapshot, temp_files,
                                       write_sources)

pytestmark = pytest.mark.usefixtures("in_tmp_folder")


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


def test_written_files_get_the_usual_mode_not_a_private_temp_mode(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644


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


# ================================================================ the commands: never over what is not ours


def _regenerate(good_run: dict[str, Path], out: Path, *extra: str):
    return invoke("regenerate", good_run["manifest"], "--key", "00000000", "--out", out, *extra)


def test_regenerate_refuses_a_device_node_as_out(good_run: dict[str, Path]) -> None:
    result = _regenerate(good_run, Path("/dev/null"))
    assert_one_line_error(result, 2, "/dev/null", "character device")
    assert Path("/dev/null").is_char_device()


def test_regenerate_refuses_a_symlink_as_out(good_run: dict[str, Path], tmp_path: Path) -> None:
    victim = tmp_path / "victim.png"
    victim.write_bytes(b"precious")
    (tmp_path / "link.png").symlink_to(victim)
    assert_one_line_error(_regenerate(good_run, tmp_path / "link.png"), 2, "link.png", "symbolic link")
    assert victim.read_bytes() == b"precious" and (tmp_path / "link.png").is_symlink()


def test_regenerate_refuses_a_fifo_and_a_folder_as_out(good_run: dict[str, Path], tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "dir.png").mkdir()
    assert_one_line_error(_regenerate(good_run, tmp_path / "pipe.png"), 2, "pipe.png", "FIFO")
    assert_one_line_error(_regenerate(good_run, tmp_path / "dir.png"), 2, "dir.png", "directory")
    assert _entries(tmp_path) == ["dir.png", "pipe.png"]


def test_regenerate_clean_out_under_a_file_is_a_runtime_error(good_run: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    result = _regenerate(good_run, tmp_path / "ok.png", "--clean-out", str(tmp_path / "file" / "c.png"))
    assert_one_line_error(result, 1, "c.png", "is a file")
    assert _entries(tmp_path) == ["file"]


def test_preview_refuses_a_symlink_out(good_run: dict[str, Path], tmp_path: Path) -> None:
    victim = tmp_path / "victim.png"
    victim.write_bytes(b"precious")
    (tmp_path / "fig.png").symlink_to(victim)
    result = invoke("preview", "--src", good_run["src"] / "a.png", "--params", good_run["params"], "--out",
                    tmp_path / "fig.png")
    assert_one_line_error(result, 2, "fig.png", "symbolic link")
    assert victim.read_bytes() == b"precious"


def test_calibrate_refuses_a_fifo_out_before_fitting(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "p.json")
    result = invoke("calibrate", "--pairs", tmp_path / "nowhere", "--out", tmp_path / "p.json")
    assert result.code == 2 and "Traceback" not in result.stderr
    assert (tmp_path / "p.json").is_fifo()


def test_compare_refuses_a_symlink_json_before_reading(good_run: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "r.json").symlink_to(tmp_path / "elsewhere.json")
    result = invoke("compare", "--real", tmp_path / "pairs", "--synthetic", good_run["manifest"],
                    "--json", tmp_path / "r.json")
    assert_one_line_error(result, 2, "r.json", "symbolic link")
    assert not (tmp_path / "elsewhere.json").exists()


def test_generate_refuses_a_symlink_manifest_before_any_work(good_run: dict[str, Path], tmp_path: Path) -> None:
    victim = tmp_path / "victim.parquet"
    victim.write_bytes(b"precious")
    (tmp_path / "m.parquet").symlink_to(victim)
    result = invoke("generate", "--src", good_run["src"], "--n", "2", "--params", good_run["params"],
                    "--out", tmp_path / "out", "--manifest", tmp_path / "m.parquet", "--no-progress")
    assert_one_line_error(result, 2, "m.parquet", "symbolic link")
    assert victim.read_bytes() == b"precious" and not list((tmp_path / "out").glob("**/*.png"))  # no sample made


def test_generate_out_that_is_a_file_is_refused(good_run: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "out").write_bytes(b"mine")
    result = invoke("generate", "--src", good_run["src"], "--n", "2", "--params", good_run["params"],
                    "--out", tmp_path / "out", "--manifest", tmp_path / "m.parquet", "--no-progress")
    assert_one_line_error(result, 2, "out", "must be a folder")
    assert (tmp_path / "out").read_bytes() == b"mine"


def test_generate_on_a_full_disk_stops_with_one_line_and_no_temp_files(good_run: dict[str, Path],
                                                                     tmp_path: Path) -> None:
    import resource

    def small_files() -> None:  # every write past 1 KB fails with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))

    out = tmp_path / "out"
    result = run_lowsim("generate", "--src", good_run["src"], "--n", "3", "--size", "48", "--params",
                        good_run["params"], "--out", out, "--manifest", tmp_path / "m.parquet", "--no-progress",
                        preexec=small_files)
    assert_one_line_error(result, 1, "cannot write", "File too large")
    assert temp_files(tmp_path) == [] and not (tmp_path / "m.parquet").exists()


def test_a_failed_write_keeps_earlier_good_output(good_run: dict[str, Path], tmp_path: Path) -> None:
    before = snapshot(good_run["out"], good_run["manifest"])
    os.mkfifo(tmp_path / "x.png")
    _regenerate(good_run, tmp_path / "x.png")
    assert snapshot(good_run["out"], good_run["manifest"]) == before
    assert temp_files(good_run["base"]) == []


def test_sources_are_never_written(tmp_path: Path, params_file: Path) -> None:
    src = write_sources(tmp_path / "src")
    before = snapshot(src)
    result = invoke("generate", "--src", src, "--n", "3", "--size", "48", "--params", params_file,
                    "--out", tmp_path / "out", "--manifest", tmp_path / "m.parquet", "--no-progress")
    assert result.code == 0, result.stderr
    assert snapshot(src) == before
