"""Class "odd input": wrongly typed or impossible option values for every transfer command, and file names that
are not UTF-8 in training, evaluate and enhance inputs. A bad value is one line naming the option and the problem
(exit 2) before any work; an odd name is handled (shown with \\x escapes), never a traceback."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from test_transfer_fixtures import make_lol, make_manifest  # noqa: F401
from transfer_robustness import TINY, assert_one_line_error, good, run_cli, snapshot  # noqa: F401

NON_UTF8 = os.fsdecode(b"p\xff01")  # a name from a Latin-1 system: byte 0xff is not UTF-8
SHOWN = "p\\xff01"  # how transfer prints and records it


def commands(good: dict, tmp_path: Path) -> dict[str, list]:
    """A working command line of each kind, to which a bad option is appended."""
    return {"pretrain": ["pretrain", "--manifest", good["manifest"], "--run-dir", tmp_path / "run", *TINY],
            "finetune": ["finetune", "--checkpoint", good["pre"], "--pairs", good["lol"], "--run-dir",
                         tmp_path / "run", *TINY],
            "train": ["train", "--pairs", good["lol"], "--run-dir", tmp_path / "run", *TINY],
            "evaluate": ["evaluate", "--checkpoint", good["pre"], "--pairs", good["lol"], "--out", good["csv"]],
            "enhance": ["enhance", good["lol"] / "low" / "p00.png", "--checkpoint", good["pre"], "--out",
                        tmp_path / "run"],
            "experiment": ["experiment", "--pairs", good["lol"], "--clean", good["lol"] / "high", "--quick",
                           "--out", tmp_path / "run", "--docs", tmp_path / "docs"]}


BAD_OPTIONS = [
    ("pretrain", ["--iters", "abc"], "Invalid value for '--iters'"),
    ("pretrain", ["--seed", "-1"], "--seed must be an integer from 0"),
    ("pretrain", ["--epochs", "inf"], "--epochs must be a finite number"),
    ("pretrain", ["--cache-mb", "-1"], "--cache-mb must be a number >= 0"),
    ("pretrain", ["--lr", "nan"], "--lr must be a positive number"),
    ("finetune", ["--frac", "nan"], "--frac must be in (0, 1]"),
    ("finetune", ["--iters", "2.5"], "Invalid value for '--iters'"),
    ("train", ["--batch", "0"], "--batch must be positive"),
    ("evaluate", ["--tile", "big"], "Invalid value for '--tile'"),
    ("evaluate", ["--split", "bogus"], "unknown --split 'bogus'"),
    ("enhance", ["--ratio", "0"], "--ratio must be a positive number"),
    ("enhance", ["--alpha", "strong"], "Invalid value for '--alpha'"),
    ("experiment", ["--n", "-3"], "--n must be positive"),
    ("experiment", ["--calibration", "bogus"], "--calibration must be isp or joint"),
]


@pytest.mark.parametrize("command,extra,message", BAD_OPTIONS,
                         ids=[f"{c}{''.join(e)}" for c, e, _ in BAD_OPTIONS])
def test_bad_option_values(tmp_path: Path, good: dict, capsys, command: str, extra: list, message: str) -> None:
    before = snapshot(good["root"])
    code, _, err = run_cli([*commands(good, tmp_path)[command], *extra], capsys)
    assert_one_line_error(code, err, message)
    assert snapshot(good["root"]) == before and not (tmp_path / "run").exists()


def non_utf8_lol(root: Path) -> Path:
    """A LOL folder one of whose pairs has a name that is not UTF-8."""
    lol = make_lol(root)
    for side in ("low", "high"):
        (lol / side / "p01.png").rename(lol / side / f"{NON_UTF8}.png")
    return lol


def test_train_on_pairs_with_a_non_utf8_name(tmp_path: Path, good: dict, capsys) -> None:
    lol = non_utf8_lol(tmp_path / "lol")
    before = snapshot(good["root"])
    code, out, err = run_cli(["train", "--pairs", lol, "--no-val-split", "--run-dir", tmp_path / "run", "--iters", 1,
                              "--width", 4, "--patch", 32, "--batch", 2], capsys)
    assert code == 0 and "Traceback" not in err, err
    assert SHOWN in (tmp_path / "run" / "train_pairs.txt").read_text(encoding="utf-8")
    assert snapshot(good["root"]) == before


def test_evaluate_pairs_with_a_non_utf8_name(tmp_path: Path, good: dict, capsys) -> None:
    lol = non_utf8_lol(tmp_path / "lol")
    before = snapshot(good["root"])
    code, out, err = run_cli(["evaluate", "--checkpoint", good["pre"], "--pairs", lol, "--out",
                              tmp_path / "results.csv"], capsys)
    assert code == 0 and "Traceback" not in err, err
    assert f"{SHOWN}: PSNR" in out and SHOWN in (tmp_path / "results.csv").read_text(encoding="utf-8")
    assert snapshot(good["root"]) == before


def test_enhance_a_file_with_a_non_utf8_name(tmp_path: Path, good: dict, capsys) -> None:
    lol = non_utf8_lol(tmp_path / "lol")
    before = snapshot(good["root"])
    code, out, err = run_cli(["enhance", lol / "low" / f"{NON_UTF8}.png", "--checkpoint", good["pre"], "--out",
                              tmp_path / "enhanced"], capsys)
    assert code == 0 and f"{SHOWN}.png" in out, err
    assert (tmp_path / "enhanced" / f"{NON_UTF8}.png").is_file() and snapshot(good["root"]) == before
    missing = tmp_path / f"q{NON_UTF8}.png"
    code, _, err = run_cli(["enhance", missing, "--checkpoint", good["pre"], "--out", tmp_path / "enhanced"], capsys)
    assert_one_line_error(code, err, f"q{SHOWN}.png", "file not found")


def escaping_manifest(root: Path, column: str, value: str) -> Path:
    """A good manifest whose first train row's `column` is replaced by `value`."""
    import pandas as pd

    manifest = make_manifest(root)
    frame = pd.read_parquet(manifest)
    frame.loc[0, column] = value
    frame.to_parquet(manifest)
    return manifest


@pytest.mark.parametrize("column,value,reason", [
    ("dark_file_name", "../outside.png", "contains '..'"),
    ("clean_file_name", "/etc/hostname", "is absolute"),
    ("dark_file_name", "dark/link.png", "leads out of this folder through a symbolic link"),
], ids=["dotdot", "absolute", "symlink"])
def test_pretrain_refuses_manifest_paths_that_leave_the_dataset(tmp_path: Path, good: dict, capsys, column: str,
                                                                 value: str, reason: str) -> None:
    manifest = escaping_manifest(tmp_path / "synthetic", column, value)
    outside = tmp_path / "outside.png"
    outside.write_bytes((good["manifest"].parent / "dark" / "train00.png").read_bytes())
    (tmp_path / "synthetic" / "dark" / "link.png").symlink_to(outside)
    before = snapshot(tmp_path, good["root"])
    code, _, err = run_cli(["pretrain", "--manifest", manifest, "--run-dir", tmp_path / "run", "--iters", 1, *TINY],
                           capsys)
    assert_one_line_error(code, err, str(tmp_path / "synthetic"), f"{column} of row train00", reason)
    assert snapshot(tmp_path, good["root"]) == before and not (tmp_path / "run").exists()


def test_evaluate_refuses_manifest_paths_that_leave_the_dataset(tmp_path: Path, good: dict, capsys) -> None:
    manifest = escaping_manifest(tmp_path / "synthetic", "clean_file_name", "../../clean/train00.png")
    before = snapshot(good["root"])
    code, _, err = run_cli(["evaluate", "--checkpoint", good["pre"], "--manifest", manifest, "--out", good["csv"]],
                           capsys)
    assert_one_line_error(code, err, "clean_file_name of row train00", "contains '..'")
    assert snapshot(good["root"]) == before
