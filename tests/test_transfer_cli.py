"""The `transfer` command line: every user mistake is one line "error: ..." with a non-zero exit."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from test_transfer_fixtures import lol_tiny, make_manifest, manifest_tiny  # noqa: F401
from transfer.cli import main

TINY = ["--width", "4", "--patch", "32", "--batch", "2", "--quiet"]


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """Run main() in-process; (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def assert_one_line_error(code: int, err: str, pattern: str, expected_code: int = 2) -> None:
    assert code == expected_code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and pattern in lines[0], err
    assert "Traceback" not in err


def test_pretrain_finetune_evaluate_enhance_end_to_end(tmp_path: Path, manifest_tiny: Path, lol_tiny: Path,
                                                       capsys) -> None:
    code, _, err = run_cli(["pretrain", "--manifest", manifest_tiny, "--run-dir", tmp_path / "pre", "--iters", 2,
                            *TINY], capsys)
    assert code == 0, err
    code, out, err = run_cli(["finetune", "--checkpoint", tmp_path / "pre", "--pairs", lol_tiny, "--frac", 0.5,
                              "--run-dir", tmp_path / "ft", "--iters", 2, "--width", 4, "--patch", 32,
                              "--batch", 2], capsys)
    assert code == 0, err
    assert "blocks up4, head" in out
    config = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert f"training {config['trainable_params']:,} of {config['total_params']:,}" in out
    code, out, err = run_cli(["evaluate", "--checkpoint", tmp_path / "ft", "--pairs", lol_tiny, "--out",
                              tmp_path / "res.csv", "--quiet"], capsys)
    assert code == 0 and "mean PSNR" in out and (tmp_path / "res.csv").is_file()
    code, out, err = run_cli(["enhance", lol_tiny / "low" / "p00.png", "--checkpoint", tmp_path / "ft", "--out",
                              tmp_path / "enh"], capsys)
    assert code == 0 and (tmp_path / "enh" / "p00.png").is_file()


def test_missing_checkpoint(tmp_path: Path, lol_tiny: Path, capsys) -> None:
    code, _, err = run_cli(["evaluate", "--checkpoint", tmp_path / "nope", "--pairs", lol_tiny], capsys)
    assert_one_line_error(code, err, "checkpoint not found")
    code, _, err = run_cli(["finetune", "--checkpoint", tmp_path / "nope", "--pairs", lol_tiny, *TINY], capsys)
    assert_one_line_error(code, err, "checkpoint not found")


def test_checkpoint_of_another_width(tmp_path: Path, manifest_tiny: Path, lol_tiny: Path, capsys) -> None:
    run_cli(["pretrain", "--manifest", manifest_tiny, "--run-dir", tmp_path / "pre", "--iters", 1, *TINY], capsys)
    code, _, err = run_cli(["finetune", "--checkpoint", tmp_path / "pre", "--pairs", lol_tiny, "--run-dir",
                            tmp_path / "ft", "--width", 8, "--patch", 32, "--quiet"], capsys)
    assert_one_line_error(code, err, "width 4 but width 8 was asked for")
    code, _, err = run_cli(["finetune", "--checkpoint", tmp_path / "pre", "--pairs", lol_tiny, "--run-dir",
                            tmp_path / "ft", "--model", "unet9", "--patch", 32, "--quiet"], capsys)
    assert_one_line_error(code, err, "model 'sid_unet' but model 'unet9'")


def test_manifest_without_ok_rows(tmp_path: Path, capsys) -> None:
    manifest = make_manifest(tmp_path / "m", {"train": 1, "val": 1}, statuses=["error", "error"])
    code, _, err = run_cli(["pretrain", "--manifest", manifest, "--run-dir", tmp_path / "r", *TINY], capsys)
    assert_one_line_error(code, err, "no rows with status 'ok'")


@pytest.mark.parametrize("frac,message", [("0", "(0, 1]"), ("1.5", "(0, 1]"), ("0.01", "selects no pair")])
def test_bad_frac(tmp_path: Path, lol_tiny: Path, capsys, frac: str, message: str) -> None:
    code, _, err = run_cli(["train", "--pairs", lol_tiny, "--frac", frac, "--run-dir", tmp_path / "r", *TINY],
                           capsys)
    assert_one_line_error(code, err, message)


def test_image_smaller_than_patch(tmp_path: Path, lol_tiny: Path, capsys) -> None:
    code, _, err = run_cli(["train", "--pairs", lol_tiny, "--no-val-split", "--run-dir", tmp_path / "r",
                            "--width", 4, "--patch", 128, "--quiet"], capsys)
    assert_one_line_error(code, err, "smaller than the training patch 128")


def test_pair_of_different_sizes(tmp_path: Path, lol_tiny: Path, capsys) -> None:
    import numpy as np

    from lowsim.imageio import write_png

    write_png(lol_tiny / "high" / "p03.png", np.zeros((64, 64, 3), np.uint8))
    code, _, err = run_cli(["train", "--pairs", lol_tiny, "--no-val-split", "--run-dir", tmp_path / "r", *TINY],
                           capsys)
    assert_one_line_error(code, err, "'p03': dark image is 96x64 but the bright image")
    code, _, err = run_cli(["evaluate", "--identity", "--pairs", lol_tiny], capsys)
    assert_one_line_error(code, err, "'p03'")


def test_nan_loss_exit_code_and_message(tmp_path: Path, lol_tiny: Path, capsys) -> None:
    code, _, err = run_cli(["train", "--pairs", lol_tiny, "--no-val-split", "--run-dir", tmp_path / "r",
                            "--lr", "1e30", "--iters", 8, "--save-every", 1, *TINY], capsys)
    assert_one_line_error(code, err, "loss became", expected_code=3)
    assert "last good checkpoint is" in err and (tmp_path / "r" / "last" / "model.safetensors").is_file()


def test_interrupted_run_resumes_from_the_command_line(tmp_path: Path, lol_tiny: Path, capsys) -> None:
    args = ["train", "--pairs", lol_tiny, "--run-dir", tmp_path / "r", "--iters", 4, *TINY]
    code, out, _ = run_cli([*args, "--stop-after", 2], capsys)
    assert code == 0 and "continue with --resume" in out
    code, _, err = run_cli(args, capsys)
    assert_one_line_error(code, err, "pass --resume")
    code, _, err = run_cli([*args, "--resume"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "r" / "config.json").read_text())["metrics"]["steps"] == 4


def test_usage_errors_exit_non_zero_without_traceback(capsys) -> None:
    code, _, err = run_cli(["train"], capsys)
    assert code == 2 and "--pairs" in err and "Traceback" not in err
    code, out, _ = run_cli(["models", "--width", 32], capsys)
    assert code == 0 and "7,760,748" not in out and "sid_unet (width 32)" in out


def test_real_process_prints_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "transfer", "enhance", str(tmp_path / "x.png"), "--checkpoint",
                           str(tmp_path / "missing"), "--out", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: ") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
