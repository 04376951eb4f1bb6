"""Fault test: `lowsim generate` killed with SIGKILL at random moments, then resumed, must end with exactly the
dataset an uninterrupted run makes: the same rows, the same files byte for byte (their sha256 as recorded),
no temp file and no stray file.

Iterations: LOWSIM_FAULT_ITERATIONS (default 2); the kill moments come from LOWSIM_FAULT_SEED (default 0).
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from lowsim.generate.plan import JOURNAL_DIR
from lowsim.params import file_sha256
from tests.robustness.conftest import run_lowsim, snapshot, subprocess_env, temp_files, write_sources

pytestmark = pytest.mark.usefixtures("in_tmp_folder")

ITERATIONS = int(os.environ.get("LOWSIM_FAULT_ITERATIONS", "2"))
SEED = int(os.environ.get("LOWSIM_FAULT_SEED", "0"))
N = 12


def _args(src: Path, params: Path, out: Path) -> list[str]:
    return ["generate", "--src", str(src), "--n", str(N), "--size", "48", "--params", str(params), "--out", str(out),
            "--manifest", str(out.parent / "m.parquet"), "--workers", "2", "--no-progress"]


def _kill_at(args: list[str], seconds: float) -> None:
    """Start `lowsim ARGS` and SIGKILL its whole process group after `seconds` (if still running)."""
    proc = subprocess.Popen([sys.executable, "-m", "lowsim", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=subprocess_env(), start_new_session=True)
    deadline = time.monotonic() + seconds
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _dataset(folder: Path) -> dict[str, str]:
    """sha256 of every dataset file by path relative to the run folder (the journal excluded)."""
    return {str(Path(k).relative_to(folder)): v for k, v in snapshot(folder).items() if JOURNAL_DIR not in k}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, params_file: Path) -> dict[str, object]:
    """An uninterrupted run: its folder's files and its manifest."""
    base = tmp_path_factory.mktemp("reference")
    src = write_sources(base / "src")
    started = time.monotonic()
    result = run_lowsim(*_args(src, params_file, base / "run" / "out"))
    assert result.code == 0, result.stderr
    return {"src": src, "files": _dataset(base / "run"), "rows": pd.read_parquet(base / "run" / "m.parquet"),
            "seconds": time.monotonic() - started}


@pytest.mark.parametrize("iteration", range(ITERATIONS))
def test_kill_9_at_random_moments_then_resume_is_bit_exact(reference: dict[str, object], params_file: Path,
                                                          tmp_path: Path, iteration: int) -> None:
    rng = random.Random(SEED * 1000 + iteration)
    args = _args(reference["src"], params_file, tmp_path / "run" / "out")  # type: ignore[arg-type]
    for _ in range(rng.randint(1, 2)):  # one or two kills, anywhere from start-up to the final manifest
        _kill_at(args, rng.uniform(0.05, 1.0) * float(reference["seconds"]))  # type: ignore[arg-type]
    result = run_lowsim(*args)
    assert result.code == 0, result.stderr
    print(f"iteration {iteration}: {result.stdout.strip()}")  # how much the kills left to make (pytest -s)
    rows = pd.read_parquet(tmp_path / "run" / "m.parquet")
    pd.testing.assert_frame_equal(rows, reference["rows"])  # type: ignore[arg-type]
    assert _dataset(tmp_path / "run") == reference["files"]
    out = tmp_path / "run" / "out"
    for row in rows.itertuples():
        assert file_sha256(out / row.dark_file_name) == row.dark_sha256
        assert file_sha256(out / row.clean_file_name) == row.clean_sha256
    assert len(rows) == N and temp_files(tmp_path) == []
