"""Fault test of training: kill -9 a tiny `transfer pretrain` at a random moment of its training (a step, a
validation, a checkpoint swap), run it again with --resume, and check that the final weights (`last` and `best`) and
the loss curve equal an uninterrupted run's bit for bit and that nothing temporary is left. The existing in-process
resume tests (tests/test_transfer_train.py) stop at chosen steps; this one lets the kernel choose.

LOWSIM_FAULT_ITERATIONS (default 2) sets how many kill/resume rounds run; LOWSIM_FAULT_SEED (default 0) seeds the
kill moments, which are printed so that a failing round can be replayed."""
from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from transfer_robustness import good, leftovers  # noqa: F401

ITERATIONS = int(os.environ.get("LOWSIM_FAULT_ITERATIONS", "2"))
SEED = int(os.environ.get("LOWSIM_FAULT_SEED", "0"))
SRC = Path(__file__).resolve().parents[2] / "src"


def pretrain_command(good: dict, run_dir: Path) -> list[str]:
    """A tiny pretrain that saves `last` every 2 steps and validates every 4 (many swaps to land a kill in)."""
    return [sys.executable, "-m", "transfer", "pretrain", "--manifest", str(good["manifest"]), "--run-dir",
            str(run_dir), "--iters", "20", "--save-every", "2", "--val-every", "4", "--width", "4", "--patch", "32",
            "--batch", "2", "--quiet"]


def child_env() -> dict[str, str]:
    """The environment of a `python -m transfer` child running this checkout's code."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}


def run_to_end(command: list[str]) -> float:
    """Run a command to completion (it must succeed); returns the seconds from its config.json to its exit."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    config = Path(command[command.index("--run-dir") + 1]) / "config.json"
    while not config.exists() and proc.poll() is None:
        time.sleep(0.02)
    started = time.perf_counter()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return time.perf_counter() - started


def kill_during_training(command: list[str], delay: float) -> None:
    """Start the command and kill -9 it (its whole process group) `delay` seconds into its training."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=child_env(),
                            start_new_session=True)
    config = Path(command[command.index("--run-dir") + 1]) / "config.json"
    while not config.exists() and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(delay)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


def weights(run_dir: Path, which: str) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors."""
    return load_file(str(run_dir / which / "model.safetensors"))


def losses(run_dir: Path) -> list[tuple[str, str]]:
    """(step, loss) of every row of metrics.csv (the timing columns differ between runs by nature)."""
    with open(run_dir / "metrics.csv", newline="") as handle:
        return [(row["step"], row["loss"]) for row in csv.DictReader(handle)]


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_is_bit_exact(tmp_path: Path, good: dict) -> None:
    straight = tmp_path / "straight"
    training_s = run_to_end(pretrain_command(good, straight))
    rng = random.Random(SEED)
    for round_ in range(ITERATIONS):
        run_dir = tmp_path / f"killed-{round_}"
        delay = rng.uniform(0.0, training_s)
        print(f"round {round_}: kill -9 {delay:.3f} s into training (of {training_s:.3f} s)")
        kill_during_training(pretrain_command(good, run_dir), delay)
        run_to_end([*pretrain_command(good, run_dir), "--resume"])
        for which in ("last", "best"):
            a, b = weights(straight, which), weights(run_dir, which)
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), (round_, which, delay)
        assert losses(run_dir) == losses(straight), (round_, delay)
        assert leftovers(run_dir) == [], (round_, delay)
