"""Helpers of the transfer robustness tests (tests/robustness/test_transfer_*.py): run a command in-process,
check its one-line error, and prove that earlier good output is byte-for-byte unchanged."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from test_transfer_fixtures import make_lol, make_manifest
from transfer.cli import main

TINY = ["--width", "4", "--patch", "32", "--batch", "2", "--quiet"]


def run_cli(args: list, capsys) -> tuple[int, str, str]:
    """Run `transfer ARGS` in-process; (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def assert_one_line_error(code: int, err: str, *fragments: str, expected_code: int = 2) -> None:
    """Exit code as expected, and stderr is one line "error: ..." holding every fragment (file, problem)."""
    assert code == expected_code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, err)
    assert "Traceback" not in err and "weights_only=False" not in err


def snapshot(*roots: Path) -> dict[str, bytes]:
    """Every file under the roots (or the files themselves) by path, with its bytes."""
    files: dict[str, bytes] = {}
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        files.update({str(p): p.read_bytes() for p in paths})
    return files


def leftovers(root: Path) -> list[str]:
    """Temporary files and partial checkpoints under root (there must be none after any command)."""
    return sorted(str(p) for p in root.rglob("*") if p.name.endswith((".tmp", ".partial")))


def copy_tree(source: Path, target: Path) -> Path:
    """A copy of a folder to damage in one test."""
    shutil.copytree(source, target)
    return target


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict[str, Path]:
    """Earlier good output made once per module: a tiny LOL folder, a manifest, a 2-step pretrain run (`pre`)
    and an evaluate CSV (`csv`)."""
    from transfer.evaluate import evaluate_checkpoint
    from transfer.train import TrainConfig, run_training

    root = tmp_path_factory.mktemp("good")
    lol, manifest = make_lol(root / "lol"), make_manifest(root / "synthetic")
    run_training(TrainConfig(mode="pretrain", manifest=manifest, run_dir=root / "pre", width=4, patch=32, batch=2,
                             iters=2, val_every=2, progress=False))
    evaluate_checkpoint(root / "pre", lol, out_csv=root / "results.csv")
    return {"root": root, "lol": lol, "manifest": manifest, "pre": root / "pre", "csv": root / "results.csv"}
