"""The `transfer` command line: every user mistake is one line "error: ..." with a non-zero exit."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from test_transfer_fixtures import lol_tiny, make_manifest, manifest_tiny, vgg16_bn_state_dict  # noqa: F401
from transfer.checkpoint import save_checkpoint
from transfer.cli import main
from transfer.models import create_model

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
                            tmp_path / "ft", "--model", "plain_cnn", "--patch", 32, "--quiet"], capsys)
    assert_one_line_error(code, err, "model 'sid_unet' but model 'plain_cnn'")
    code, _, err = run_cli(["finetune", "--checkpoint", tmp_path / "pre", "--pairs", lol_tiny, "--run-dir",
                            tmp_path / "ft", "--model", "unet9", "--patch", 32, "--quiet"], capsys)
    assert_one_line_error(code, err, "unknown model 'unet9'; known models: ")


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


def test_model_flags_reach_the_model_and_its_checkpoint(tmp_path: Path, manifest_tiny: Path, lol_tiny: Path,
                                                        capsys) -> None:
    code, _, err = run_cli(["pretrain", "--manifest", manifest_tiny, "--run-dir", tmp_path / "pre", "--iters", 1,
                            "--model", "plain_cnn", "--depth", 2, "--activation", "relu", "--norm", "batch", *TINY],
                           capsys)
    assert code == 0, err
    expected = {"width": 4, "depth": 2, "activation": "relu", "input_kind": "srgb", "norm": "batch"}
    assert json.loads((tmp_path / "pre" / "config.json").read_text())["model_config"] == expected
    meta = json.loads((tmp_path / "pre" / "best" / "checkpoint.json").read_text())
    assert meta["model"] == "plain_cnn" and meta["model_config"] == expected
    # fine-tuning takes the model and its options from the checkpoint
    code, _, err = run_cli(["finetune", "--checkpoint", tmp_path / "pre", "--pairs", lol_tiny, "--frac", 0.5,
                            "--run-dir", tmp_path / "ft", "--iters", 1, *TINY], capsys)
    assert code == 0, err
    tuned = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert tuned["model"] == "plain_cnn" and tuned["model_config"] == expected
    assert tuned["trained_blocks"] == ["block2", "head"]
    code, _, err = run_cli(["train", "--pairs", lol_tiny, "--run-dir", tmp_path / "x", "--alpha", 2, *TINY], capsys)
    assert_one_line_error(code, err, "model sid_unet does not take --alpha; its options: width, input_kind, norm")
    code, _, err = run_cli(["pretrain", "--manifest", manifest_tiny, "--run-dir", tmp_path / "x", "--model",
                            "dense_cnn", "--backbone-weights", tmp_path / "w.pth", *TINY], capsys)
    assert_one_line_error(code, err, "model dense_cnn does not take --backbone-weights; its options: width, depth")
    code, _, err = run_cli(["pretrain", "--manifest", manifest_tiny, "--run-dir", tmp_path / "x", "--norm",
                            "group", *TINY], capsys)
    assert_one_line_error(code, err, "unknown normalisation 'group', expected one of none, batch")


def test_training_commands_take_a_flag_for_every_declared_model_option(capsys) -> None:
    from transfer.models import all_declared_options

    for command in ("pretrain", "train"):
        code, out, _ = run_cli([command, "--help"], capsys)
        assert code == 0
        for option, models in all_declared_options().values():
            assert option.flag in out and models[0] in out, (command, option.flag)
    code, out, _ = run_cli(["finetune", "--help"], capsys)  # fine-tuning keeps the checkpoint's options
    assert code == 0 and "--depth" not in out


def test_unknown_model_lists_the_known_ones_before_reading_data(tmp_path: Path, capsys) -> None:
    for command in (["pretrain", "--manifest", tmp_path / "missing.parquet"], ["train", "--pairs", tmp_path]):
        code, _, err = run_cli([*command, "--model", "unet9", "--run-dir", tmp_path / "r", *TINY], capsys)
        assert_one_line_error(code, err, "unknown model 'unet9'; known models: dense_cnn, estimate_enhance, "
                                         "global_local, plain_cnn, sid_unet, vgg16_residual")
    assert not (tmp_path / "r").exists()


def test_backbone_weights_from_the_command_line(tmp_path: Path, manifest_tiny: Path, capsys) -> None:
    from safetensors.torch import load_file

    state = vgg16_bn_state_dict(width=4)
    torch.save(state, tmp_path / "vgg16_bn.pth")
    # lr 1e-30: Adam moves every weight by ~1e-30, below float32 resolution, so the saved encoder convolutions
    # are exactly the file's (batch-norm running statistics do move with the batch)
    code, _, err = run_cli(["pretrain", "--manifest", manifest_tiny, "--run-dir", tmp_path / "r", "--iters", 1,
                            "--model", "vgg16_residual", "--backbone-weights", tmp_path / "vgg16_bn.pth",
                            "--lr", 1e-30, *TINY], capsys)
    assert code == 0, err
    saved = load_file(str(tmp_path / "r" / "last" / "model.safetensors"))
    assert torch.equal(saved["enc1.0.weight"], state["features.0.weight"])
    assert torch.equal(saved["enc5.6.bias"], state["features.40.bias"])  # the 13th convolution
    torch.save(vgg16_bn_state_dict(width=8), tmp_path / "wide.pth")
    code, _, err = run_cli(["pretrain", "--manifest", tmp_path / "missing.parquet", "--run-dir", tmp_path / "w",
                            "--model", "vgg16_residual", "--backbone-weights", tmp_path / "wide.pth", *TINY], capsys)
    assert_one_line_error(code, err, "backbone layer features.0.weight does not fit vgg16_residual width 4: "
                                     "expected shape (4, 3, 3, 3), received (8, 3, 3, 3)")
    assert str(tmp_path / "wide.pth") in err


def save_model(tmp_path: Path, name: str) -> Path:
    """A seeded width-4 checkpoint of a registered model."""
    torch.manual_seed(0)
    model = create_model(name, width=4).eval()
    return save_checkpoint(tmp_path / name, model, {"model": name, "model_config": model.config,
                                                     "input_kind": model.input_kind})


def test_enhance_and_evaluate_alpha(tmp_path: Path, lol_tiny: Path, capsys) -> None:
    from lowsim.imageio import read_image

    image = lol_tiny / "low" / "p00.png"
    estimate = save_model(tmp_path, "estimate_enhance")
    outputs = {}
    for alpha in (None, "1.0", "0.2", "3"):
        out = tmp_path / f"enh-{alpha}"
        code, _, err = run_cli(["enhance", image, "--checkpoint", estimate, "--out", out,
                                *(["--alpha", alpha] if alpha else [])], capsys)
        assert code == 0, err
        outputs[alpha] = read_image(out / "p00.png")
    assert (outputs[None] == outputs["1.0"]).all()  # the configured alpha is 1.0
    assert (outputs["0.2"] != outputs["3"]).any() and (outputs["0.2"] != outputs[None]).any()
    code, _, err = run_cli(["enhance", image, "--checkpoint", estimate, "--out", tmp_path / "n", "--alpha", -1],
                           capsys)
    assert_one_line_error(code, err, "--alpha must be a finite number >= 0, got -1.0")
    code, out, err = run_cli(["evaluate", "--checkpoint", estimate, "--pairs", lol_tiny, "--alpha", 2, "--quiet"],
                             capsys)
    assert code == 0 and "(alpha 2)" in out, err
    sid = save_model(tmp_path, "sid_unet")
    code, _, err = run_cli(["enhance", image, "--checkpoint", sid, "--out", tmp_path / "s", "--alpha", 2], capsys)
    assert_one_line_error(code, err, "model sid_unet has no alpha input; --alpha applies to estimate_enhance")
    assert not (tmp_path / "s").exists()
    code, _, err = run_cli(["evaluate", "--checkpoint", sid, "--pairs", lol_tiny, "--alpha", 2], capsys)
    assert_one_line_error(code, err, "model sid_unet has no alpha input")
    code, _, err = run_cli(["evaluate", "--identity", "--pairs", lol_tiny, "--alpha", 2], capsys)
    assert_one_line_error(code, err, "--identity runs no model")
