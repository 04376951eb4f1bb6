"""`transfer experiment --quick`: the whole Table 1 loop on a tiny budget writes every artefact, finite metrics."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from transfer.experiment import _slug, write_pairs_csv
from lowsim.pairs import Pair, find_pairs


def test_slug_collapses_punctuation() -> None:
    assert _slug("fine-tuned 10%, last 2 blocks") == "fine-tuned-10-last-2-blocks"


def test_pairs_csv_round_trips_through_the_csv_layout(tmp_path: Path, lol_dev: Path) -> None:
    pairs = find_pairs(lol_dev)[:3]
    write_pairs_csv(tmp_path / "split" / "pool.csv", pairs)
    back = find_pairs(tmp_path / "split" / "pool.csv", layout="csv")
    assert [p.name for p in back] == [p.name for p in pairs]
    assert [p.dark.resolve() for p in back] == [p.dark.resolve() for p in pairs]


@pytest.mark.slow
def test_quick_experiment_writes_every_artefact(tmp_path: Path, shared_data: Path) -> None:
    docs = tmp_path / "docs"
    cmd = [sys.executable, "-m", "transfer", "experiment", "--quick", "--pairs", str(shared_data / "lol-dev"),
           "--clean", str(shared_data / "clean" / "kodak24"), "--out", str(tmp_path / "work"), "--docs", str(docs)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for name in ("results.md", "results.json", "fig2_calibration_joint.png", "fig3_degradation.png",
                 "fig5_curves_pretrain.png", "fig5_curves_finetune.png", "fig7_comparison.png"):
        assert (docs / name).is_file() and (docs / name).stat().st_size > 0, name
    rows = json.loads((docs / "results.json").read_text())["rows"]
    names = [r["name"] for r in rows]
    for expected in ("identity (dark input)", "zero-shot (pretrained only)", "fine-tuned 10%, last 2 blocks",
                     "scratch 10% (same budget)", "scratch 100% of the pool", "paper pipeline: zero-shot"):
        assert expected in names
    for row in rows:
        assert math.isfinite(row["psnr"]) and math.isfinite(row["ssim"]), row
        frame = pd.read_csv(docs / row["csv"])
        assert len(frame) > 0 and frame[["psnr", "ssim"]].notna().all().all()
