"""Class "where transfer writes": a --run-dir / --out / --docs that is a file, lies below a file, is unwritable or
fills up; a symlinked checkpoint folder; two runs on one run directory. Each case: the exit code, one line naming
the file and the problem, earlier good output byte-for-byte unchanged, and no temporary file left behind."""
from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

import pytest

from transfer_robustness import (TINY, assert_one_line_error, copy_tree, good, leftovers, run_cli,  # noqa: F401
                                 snapshot)


def pretrain_args(good: dict, run_dir: Path, *extra) -> list:
    """A tiny pretrain command on the good manifest."""
    return ["pretrain", "--manifest", good["manifest"], "--run-dir", run_dir, "--iters", 2, *TINY, *extra]


# ---- a folder option that is a file, or lies below one (usage: exit 2, nothing read or written) ----

@pytest.mark.parametrize("below", [False, True], ids=["is-a-file", "below-a-file"])
def test_pretrain_run_dir_that_is_a_file(tmp_path: Path, good: dict, capsys, below: bool) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"not a folder")
    run_dir = blocker / "run" if below else blocker
    before = snapshot(tmp_path, good["root"])
    code, _, err = run_cli(pretrain_args(good, run_dir), capsys)
    assert_one_line_error(code, err, str(run_dir), "--run-dir", "is a file" if not below else "which is a file")
    assert snapshot(tmp_path, good["root"]) == before


def test_finetune_run_dir_that_is_a_file(tmp_path: Path, good: dict, capsys) -> None:
    blocker = tmp_path / "ft"
    blocker.write_bytes(b"x")
    before = snapshot(tmp_path, good["root"])
    code, _, err = run_cli(["finetune", "--checkpoint", good["pre"], "--pairs", good["lol"], "--run-dir", blocker,
                            "--iters", 1, *TINY], capsys)
    assert_one_line_error(code, err, str(blocker), "--run-dir is a file, expected a folder")
    assert snapshot(tmp_path, good["root"]) == before


def test_evaluate_out_that_is_a_folder(tmp_path: Path, good: dict, capsys) -> None:
    folder = tmp_path / "results.csv"
    folder.mkdir()
    before = snapshot(good["root"])
    code, _, err = run_cli(["evaluate", "--checkpoint", good["pre"], "--pairs", good["lol"], "--out", folder,
                            "--quiet"], capsys)
    assert_one_line_error(code, err, str(folder), "is a folder")
    assert snapshot(good["root"]) == before and list(folder.iterdir()) == []


def test_evaluate_report_that_is_a_file(tmp_path: Path, good: dict, capsys) -> None:
    blocker = tmp_path / "gallery"
    blocker.write_bytes(b"keep me")
    before = snapshot(tmp_path, good["root"])
    code, _, err = run_cli(["evaluate", "--checkpoint", good["pre"], "--pairs", good["lol"], "--out", good["csv"],
                            "--report", blocker, "--quiet"], capsys)
    assert_one_line_error(code, err, str(blocker), "--report is a file, expected a folder")
    assert snapshot(tmp_path, good["root"]) == before


def test_evaluate_out_that_is_a_symlink(tmp_path: Path, good: dict, capsys) -> None:
    target = tmp_path / "elsewhere.csv"
    target.write_text("not ours\n")
    link = tmp_path / "results.csv"
    link.symlink_to(target)
    before = snapshot(tmp_path, good["root"])
    code, _, err = run_cli(["evaluate", "--checkpoint", good["pre"], "--pairs", good["lol"], "--out", link,
                            "--quiet"], capsys)
    assert_one_line_error(code, err, str(link), "--out is a symbolic link")
    assert snapshot(tmp_path, good["root"]) == before and link.is_symlink()


def test_enhance_out_that_is_a_file(tmp_path: Path, good: dict, capsys) -> None:
    blocker = tmp_path / "enhanced"
    blocker.write_bytes(b"keep me")
    before = snapshot(tmp_path, good["root"])
    code, _, err = run_cli(["enhance", good["lol"] / "low" / "p00.png", "--checkpoint", good["pre"], "--out",
                            blocker], capsys)
    assert_one_line_error(code, err, str(blocker), "--out is a file, expected a folder")
    assert snapshot(tmp_path, good["root"]) == before


@pytest.mark.parametrize("option", ["--out", "--docs"])
def test_experiment_folder_option_that_is_a_file(tmp_path: Path, good: dict, capsys, option: str) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"keep me")
    before = snapshot(tmp_path, good["root"])
    other = {"--out": tmp_path / "work", "--docs": tmp_path / "docs"}
    other[option] = blocker
    code, _, err = run_cli(["experiment", "--pairs", good["lol"], "--clean", good["lol"] / "high", "--quick",
                            "--out", other["--out"], "--docs", other["--docs"]], capsys)
    assert_one_line_error(code, err, str(blocker), f"{option} is a file, expected a folder")
    assert snapshot(tmp_path, good["root"]) == before and not (tmp_path / "work").exists()


# ---- the machine in the way: unwritable, full disk, a run already in progress (runtime: exit 1) ----

def test_unwritable_run_dir(tmp_path: Path, good: dict, capsys, monkeypatch) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    real_open = os.open

    def refusing_open(path, *args, **kwargs):  # root ignores the mode bits: refuse as the kernel would
        if str(path).startswith(str(locked)):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, *args, **kwargs)

    if os.geteuid() == 0:
        monkeypatch.setattr(os, "open", refusing_open)
    before = snapshot(good["root"])
    try:
        code, _, err = run_cli(pretrain_args(good, locked / "run"), capsys)
    finally:
        locked.chmod(0o700)
    assert_one_line_error(code, err, str(locked / "run"), "cannot write", "Permission denied", expected_code=1)
    assert snapshot(good["root"]) == before


def full_disk_under(root: Path, monkeypatch, name_part: str = "") -> None:
    """Make fsync of files below `root` (whose path holds `name_part`) fail with ENOSPC, as a full disk does."""
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        if target.startswith(str(root)) and name_part in target:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_full_disk_while_saving_a_checkpoint_keeps_the_previous_one(tmp_path: Path, good: dict, capsys,
                                                                    monkeypatch) -> None:
    run_dir = tmp_path / "run"
    args = ["pretrain", "--manifest", good["manifest"], "--run-dir", run_dir, "--iters", 4, *TINY]
    assert run_cli([*args, "--stop-after", 2], capsys)[0] == 0
    before = snapshot(run_dir / "last", run_dir / "best")
    full_disk_under(run_dir, monkeypatch, ".partial")  # the next checkpoint written (best or last) fails
    code, _, err = run_cli([*args, "--resume"], capsys)
    assert_one_line_error(code, err, str(run_dir), ".partial/", "cannot write", "No space left on device",
                          expected_code=1)
    assert snapshot(run_dir / "last", run_dir / "best") == before and leftovers(run_dir) == []


def test_full_disk_when_evaluate_writes_its_csv(tmp_path: Path, good: dict, capsys, monkeypatch) -> None:
    out = copy_tree(good["root"] / "pre", tmp_path / "pre").parent / "results.csv"
    out.write_text("name,psnr,ssim\nearlier,1,1\n")
    before = snapshot(tmp_path)
    full_disk_under(tmp_path, monkeypatch)
    code, _, err = run_cli(["evaluate", "--checkpoint", tmp_path / "pre", "--pairs", good["lol"], "--out", out,
                            "--quiet"], capsys)
    assert_one_line_error(code, err, str(out), "No space left on device", expected_code=1)
    assert snapshot(tmp_path) == before and leftovers(tmp_path) == []


def test_second_run_on_a_busy_run_dir_is_refused(tmp_path: Path, good: dict, capsys) -> None:
    run_dir = copy_tree(good["pre"], tmp_path / "run")
    before = snapshot(run_dir)
    with open(run_dir / ".transfer.lock", "a") as held:  # as a running `transfer pretrain` holds it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, _, err = run_cli(pretrain_args(good, run_dir, "--resume"), capsys)
    assert_one_line_error(code, err, str(run_dir), "another transfer command is training", expected_code=1)
    assert snapshot(run_dir) == before


# ---- symlinks: a checkpoint folder that is a link is refused, never replaced ----

def test_symlinked_last_checkpoint_is_refused(tmp_path: Path, good: dict, capsys) -> None:
    run_dir = copy_tree(good["pre"], tmp_path / "run")
    elsewhere = tmp_path / "elsewhere"
    (run_dir / "last").rename(elsewhere)
    (run_dir / "last").symlink_to(elsewhere)
    before = snapshot(elsewhere, run_dir)
    code, _, err = run_cli(["pretrain", "--manifest", good["manifest"], "--run-dir", run_dir, "--iters", 3,
                            "--resume", *TINY], capsys)
    assert_one_line_error(code, err, str(run_dir / "last"), "symbolic link", expected_code=2)
    assert snapshot(elsewhere, run_dir) == before and (run_dir / "last").is_symlink()


# ---- nothing written outside the named outputs ----

def test_commands_write_only_their_named_outputs(tmp_path: Path, good: dict, capsys, monkeypatch) -> None:
    work = tmp_path / "work"  # the working directory: a stray relative write would land here
    work.mkdir()
    monkeypatch.chdir(work)
    before = snapshot(good["root"])
    for args in (pretrain_args(good, tmp_path / "run"),
                 ["evaluate", "--checkpoint", tmp_path / "run", "--pairs", good["lol"], "--out",
                  tmp_path / "res.csv", "--quiet"],
                 ["enhance", good["lol"] / "low" / "p00.png", "--checkpoint", tmp_path / "run", "--out",
                  tmp_path / "enhanced"]):
        code, _, err = run_cli(args, capsys)
        assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enhanced", "res.csv", "run", "work"]
    assert list(work.iterdir()) == [] and snapshot(good["root"]) == before
    assert [p.name for p in (tmp_path / "enhanced").iterdir()] == ["p00.png"] and leftovers(tmp_path) == []
