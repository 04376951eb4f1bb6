"""Class "interrupts": Ctrl-C during training stops within about a second (after the step in flight, also with
loader worker processes), saves a resumable `last`, prints the resume hint in one line and exits 130; the resumed
run is bit-exact. (kill -9 at random moments: test_transfer_faults.py.)"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from transfer.train import TrainConfig, run_training
from transfer_robustness import good, leftovers, run_cli, snapshot  # noqa: F401

SRC = Path(__file__).resolve().parents[2] / "src"
STOP_WITHIN_S = 3.0  # measured ~0.3-0.6 s on an idle 2-core machine; the margin absorbs other work on it
OPTIONS = dict(mode="pretrain", width=4, patch=32, batch=2, iters=400, val_every=400, save_every=400,
               progress=False)


def child_env() -> dict[str, str]:
    """The environment of a `python -m transfer` child running this checkout's code."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
            "PYTHONUNBUFFERED": "1"}


def interrupt_training(good: dict, run_dir: Path, extra: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    """Start a tiny pretrain, send SIGINT at its first progress line (step 20 of 400); (the finished process,
    seconds from the signal to its exit)."""
    cmd = [sys.executable, "-m", "transfer", "pretrain", "--manifest", str(good["manifest"]), "--run-dir",
           str(run_dir), "--iters", "400", "--val-every", "400", "--save-every", "400", "--width", "4", "--patch",
           "32", "--batch", "2", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    seen = []
    for line in proc.stdout:  # type: ignore[union-attr]
        seen.append(line)
        if line.startswith("step "):
            break
    sent = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(cmd, proc.returncode, "".join(seen) + out, err), time.perf_counter() - sent


@pytest.mark.slow
@pytest.mark.parametrize("loader", [[], ["--workers", "1", "--cache-mb", "0"]], ids=["in-process", "worker"])
def test_ctrl_c_stops_quickly_saves_and_resumes_exactly(tmp_path: Path, good: dict, loader: list[str]) -> None:
    run_dir = tmp_path / "run"
    proc, seconds = interrupt_training(good, run_dir, loader)
    assert proc.returncode == 130, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    step = json.loads((run_dir / "last" / "checkpoint.json").read_text())["step"]
    assert lines[0] == (f"interrupted: stopped at step {step}/400; {run_dir / 'last'} holds it; run the same "
                        "command with --resume to continue")
    assert 20 <= step < 400 and seconds < STOP_WITHIN_S, (step, seconds)
    assert leftovers(run_dir) == []
    workers = {"workers": 1, "cache_mb": 0.0} if loader else {}
    resumed = run_training(TrainConfig(manifest=good["manifest"], run_dir=run_dir, resume=True, stop_after=2,
                                       **workers, **OPTIONS))
    straight = run_training(TrainConfig(manifest=good["manifest"], run_dir=tmp_path / "straight",
                                        stop_after=step + 2, **OPTIONS))
    assert resumed["steps"] == straight["steps"] == step + 2
    a, b = (load_file(str(d / "last" / "model.safetensors")) for d in (run_dir, tmp_path / "straight"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def interrupt_at_call(monkeypatch, module: object, name: str, call: int) -> None:
    """Make module.name raise KeyboardInterrupt (as Ctrl-C would) at its `call`-th call."""
    real, calls = getattr(module, name), []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, interrupted)


def assert_interrupted(code: int, err: str) -> None:
    """Exit 130 and one line saying what Ctrl-C left behind."""
    lines = err.strip().splitlines()
    assert code == 130 and len(lines) == 1 and lines[0].startswith("interrupted: "), err
    assert "Traceback" not in err


def test_ctrl_c_in_evaluate_keeps_the_earlier_csv(tmp_path: Path, good: dict, capsys, monkeypatch) -> None:
    import transfer.evaluate as evaluate_module

    before = snapshot(good["root"])
    interrupt_at_call(monkeypatch, evaluate_module, "predict", 3)
    code, _, err = run_cli(["evaluate", "--checkpoint", good["pre"], "--pairs", good["lol"], "--out", good["csv"],
                            "--quiet"], capsys)
    assert_interrupted(code, err)
    assert snapshot(good["root"]) == before and leftovers(good["root"]) == []


def test_ctrl_c_in_enhance_leaves_only_complete_images(tmp_path: Path, good: dict, capsys, monkeypatch) -> None:
    import lowsim.imageio as imageio_module

    interrupt_at_call(monkeypatch, imageio_module.cv2, "imencode", 2)  # while encoding the second image
    code, _, err = run_cli(["enhance", good["lol"] / "low", "--checkpoint", good["pre"], "--out",
                            tmp_path / "enhanced"], capsys)
    assert_interrupted(code, err)
    assert [p.name for p in (tmp_path / "enhanced").iterdir()] == ["p00.png"]


def test_ctrl_c_in_experiment_keeps_the_results_page(tmp_path: Path, good: dict, capsys, monkeypatch) -> None:
    from transfer.experiment import Experiment

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "results.md").write_text("# Table 1 on real pairs\nearlier results\n")
    before = snapshot(docs)
    monkeypatch.setattr(Experiment, "run", lambda *args, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt))
    code, _, err = run_cli(["experiment", "--pairs", good["lol"], "--clean", good["lol"] / "high", "--quick",
                            "--out", tmp_path / "work", "--docs", docs, "--no-zoo"], capsys)
    assert_interrupted(code, err)
    assert snapshot(docs) == before
