"""scripts/fit_quality.py: the per-pair fit quality of shipped calibrations, one row each."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "fit_quality.py"
PAIRS = REPO / "src" / "lowsim" / "data" / "params" / "lol.pairs.parquet"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_a_row_counts_the_pairs_and_reads_the_match_columns():
    done = run(f"lol={PAIRS}")
    assert done.returncode == 0, done.stderr
    row = done.stdout.strip().splitlines()[-1].strip("| ").split(" | ")
    table = pd.read_parquet(PAIRS)
    assert row[0] == "lol" and int(row[1]) == int((~table["excluded"]).sum())
    assert int(row[2]) == int(table["reason"].fillna("").str.startswith("fit at a bound").sum()) > 0
    fitted = table[table["match_profile_rms_log"].notna()]
    assert float(row[3]) == round(float(fitted["match_profile_rms_log"].median()), 3)
    real, sim = (float(v) for v in row[4].split(" / "))
    assert abs(real - fitted["match_spatial_corr_real"].median()) < 0.006
    assert abs(sim - fitted["match_spatial_corr_sim"].median()) < 0.006


def test_a_missing_table_or_a_bare_path_is_refused_in_one_line(tmp_path: Path):
    missing = run(f"x={tmp_path / 'none.parquet'}")
    assert missing.returncode == 2 and "none.parquet: no such pairs table" in missing.stderr
    assert "Traceback" not in missing.stderr
    assert run(str(PAIRS)).returncode == 2
