"""Class "damaged or foreign checkpoints": a truncated, foreign, pickled or wrong-architecture train_state.pt or
weights file on --resume or --checkpoint. Each is refused in one line naming the file (never suggesting
weights_only=False, never executing the file), and the run directory stays byte-for-byte as it was."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from transfer.checkpoint import save_checkpoint
from transfer.models import create_model
from transfer_robustness import TINY, assert_one_line_error, copy_tree, good, run_cli, snapshot  # noqa: F401


class RunsCode:
    """A pickle whose loading would run a command (a malicious checkpoint): it must never be loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def resume(good: dict, run_dir: Path, capsys) -> tuple[int, str, str]:
    """`transfer pretrain --resume` on a copy of the good run, with its own options."""
    return run_cli(["pretrain", "--manifest", good["manifest"], "--run-dir", run_dir, "--iters", 2, "--resume",
                    "--val-every", 2, *TINY], capsys)


def damaged_run(tmp_path: Path, good: dict, name: str, content: bytes) -> tuple[Path, Path]:
    """A copy of the good run whose last/<name> holds `content`; (run dir, damaged file)."""
    run_dir = copy_tree(good["pre"], tmp_path / "run")
    (run_dir / "last" / name).write_bytes(content)
    return run_dir, run_dir / "last" / name


def test_resume_with_a_truncated_train_state(tmp_path: Path, good: dict, capsys) -> None:
    content = (good["pre"] / "last" / "train_state.pt").read_bytes()[:700]
    run_dir, damaged = damaged_run(tmp_path, good, "train_state.pt", content)
    before = snapshot(run_dir)
    code, _, err = resume(good, run_dir, capsys)
    assert_one_line_error(code, err, str(damaged), "cannot read the training state", "truncated")
    assert snapshot(run_dir) == before


def test_resume_with_a_pickle_that_would_run_code(tmp_path: Path, good: dict, capsys) -> None:
    marker = tmp_path / "executed"
    run_dir, damaged = damaged_run(tmp_path, good, "train_state.pt", pickle.dumps(RunsCode(marker)))
    before = snapshot(run_dir)
    code, _, err = resume(good, run_dir, capsys)
    assert_one_line_error(code, err, str(damaged), "cannot read the training state")
    assert not marker.exists() and snapshot(run_dir) == before


def test_resume_with_a_foreign_train_state(tmp_path: Path, good: dict, capsys) -> None:
    run_dir = copy_tree(good["pre"], tmp_path / "run")
    torch.save({"epoch": 3, "model": {"w": torch.zeros(2)}}, run_dir / "last" / "train_state.pt")
    before = snapshot(run_dir)
    code, _, err = resume(good, run_dir, capsys)
    assert_one_line_error(code, err, str(run_dir / "last" / "train_state.pt"), "not a transfer training state",
                          "step", "fingerprint")
    assert snapshot(run_dir) == before


def test_resume_with_another_architectures_weights(tmp_path: Path, good: dict, capsys) -> None:
    run_dir = copy_tree(good["pre"], tmp_path / "run")
    other = create_model("plain_cnn", width=4)
    save_checkpoint(tmp_path / "other", other, {"model": "plain_cnn", "model_config": other.config})
    (run_dir / "last" / "model.safetensors").write_bytes((tmp_path / "other" / "model.safetensors").read_bytes())
    before = snapshot(run_dir)
    code, _, err = resume(good, run_dir, capsys)
    assert_one_line_error(code, err, str(run_dir / "last" / "model.safetensors"),
                          "saved weights do not load into this run's model", "Missing key")
    assert snapshot(run_dir) == before


def test_resume_with_truncated_weights(tmp_path: Path, good: dict, capsys) -> None:
    content = (good["pre"] / "last" / "model.safetensors").read_bytes()[:300]
    run_dir, damaged = damaged_run(tmp_path, good, "model.safetensors", content)
    before = snapshot(run_dir)
    code, _, err = resume(good, run_dir, capsys)
    assert_one_line_error(code, err, str(damaged), "saved weights do not load")
    assert snapshot(run_dir) == before


def test_resume_with_a_last_folder_without_weights(tmp_path: Path, good: dict, capsys) -> None:
    run_dir = copy_tree(good["pre"], tmp_path / "run")
    (run_dir / "last" / "model.safetensors").unlink()
    before = snapshot(run_dir)
    code, _, err = resume(good, run_dir, capsys)
    assert_one_line_error(code, err, str(run_dir / "last"), "holds no model.safetensors")
    assert snapshot(run_dir) == before


@pytest.mark.parametrize("command", ["finetune", "evaluate", "enhance"])
def test_checkpoint_option_with_a_truncated_weights_file(tmp_path: Path, good: dict, capsys, command: str) -> None:
    content = (good["pre"] / "best" / "model.safetensors").read_bytes()[:300]
    (tmp_path / "ckpt").mkdir()
    damaged = tmp_path / "ckpt" / "model.safetensors"
    damaged.write_bytes(content)
    before = snapshot(tmp_path, good["root"])
    args = {"finetune": ["finetune", "--checkpoint", damaged, "--pairs", good["lol"], "--run-dir", tmp_path / "ft",
                         *TINY],
            "evaluate": ["evaluate", "--checkpoint", damaged, "--pairs", good["lol"], "--out", good["csv"]],
            "enhance": ["enhance", good["lol"] / "low" / "p00.png", "--checkpoint", damaged, "--out",
                        tmp_path / "enhanced"]}[command]
    code, _, err = run_cli(args, capsys)
    assert_one_line_error(code, err, str(damaged), "not a readable safetensors checkpoint")
    assert snapshot(tmp_path, good["root"]) == before
    assert not (tmp_path / "ft").exists() and not (tmp_path / "enhanced").exists()


def test_checkpoint_option_with_foreign_safetensors(tmp_path: Path, good: dict, capsys) -> None:
    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(3)}, str(foreign))
    before = snapshot(good["root"])
    code, _, err = run_cli(["evaluate", "--checkpoint", foreign, "--pairs", good["lol"], "--out", good["csv"]],
                           capsys)
    assert_one_line_error(code, err, str(foreign), "was not written by transfer")
    assert snapshot(good["root"]) == before


def test_checkpoint_option_with_a_damaged_description(tmp_path: Path, good: dict, capsys) -> None:
    damaged = tmp_path / "damaged.safetensors"
    save_file({"weight": torch.zeros(3)}, str(damaged), metadata={"transfer_checkpoint": "{not json"})
    other = tmp_path / "unknown.safetensors"
    save_file({"weight": torch.zeros(3)}, str(other),
              metadata={"transfer_checkpoint": json.dumps({"format": 1, "model": "unet99", "model_config": {}})})
    before = snapshot(good["root"])
    code, _, err = run_cli(["enhance", good["lol"] / "low" / "p00.png", "--checkpoint", damaged, "--out",
                            tmp_path / "enhanced"], capsys)
    assert_one_line_error(code, err, str(damaged), "not a JSON object")
    code, _, err = run_cli(["finetune", "--checkpoint", other, "--pairs", good["lol"], "--run-dir", tmp_path / "ft",
                            *TINY], capsys)
    assert_one_line_error(code, err, str(other), "unknown model 'unet99'; known models: ")
    assert snapshot(good["root"]) == before and not (tmp_path / "ft").exists()


def test_checkpoint_option_whose_weights_are_another_architectures(tmp_path: Path, good: dict, capsys) -> None:
    other = create_model("plain_cnn", width=4)
    described = json.loads((good["pre"] / "best" / "checkpoint.json").read_text())
    save_checkpoint(tmp_path / "mixed", other, {k: v for k, v in described.items() if k != "format"})
    before = snapshot(good["root"])
    code, _, err = run_cli(["evaluate", "--checkpoint", tmp_path / "mixed", "--pairs", good["lol"], "--out",
                            good["csv"]], capsys)
    assert_one_line_error(code, err, str(tmp_path / "mixed" / "model.safetensors"), "weights do not fit sid_unet")
    assert snapshot(good["root"]) == before
