"""scripts/raw_budget_run.sh, the raw path end to end at a tiny budget (issue: the raw smoke run in the test suite):
generate raw pairs from the clean photos with the Sony A7S2 preset, pretrain, fine-tune on the real MCR exposure
stack, train the scratch baseline, score, enhance the real Blackmagic DNG and draw the pictures."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]

pytest.importorskip("torch")
pytest.importorskip("rawpy")


@pytest.mark.slow
def test_raw_budget_script_runs_the_whole_chain_on_real_raw_files(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "raw"
    env = {**os.environ, "PY": sys.executable, "LOWSIM_DATA": str(shared_data), "OUT": str(out),
           "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "N": "200", "SIZE": "64", "PATCH": "16",
           "WIDTH": "8", "BATCH": "4", "PRETRAIN_ITERS": "2", "FINETUNE_ITERS": "2", "FINETUNE_PATCH": "32",
           "EVAL_SPLIT": "val", "WORKERS": "2"}
    run = subprocess.run(["bash", str(REPO / "scripts" / "raw_budget_run.sh")], env=env, capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]

    pairs = pd.read_csv(out / "mcr.csv")
    assert len(pairs) == 14 and (pairs.ratio > 3.9).all() and (pairs.ratio < 16.5).all()
    rows = [line for line in run.stdout.splitlines() if line.startswith(("pretrained,", "MCR held-out"))]
    assert len(rows) == 4, run.stdout[-2000:]
    for line in rows:  # pairs, PSNR, GT-mean, SSIM: every score a finite number
        count, psnr, gt_mean, ssim = line.split()[-4:]
        assert int(count) > 0 and all(math.isfinite(float(v)) for v in (psnr, gt_mean, ssim))

    enhanced = cv2.imread(str(out / "enhanced" / "blackmagic_pocket4k.png"), cv2.IMREAD_UNCHANGED)
    assert enhanced is not None and enhanced.shape[:2] == (2176, 4128)
    strip = cv2.imread(str(out / "figures" / "smoke_pairs.jpg"))
    assert strip is not None and strip.shape[0] == 3 * 64 and strip.shape[1] == 3 * 64  # 3 samples x 3 panels
    assert cv2.imread(str(out / "figures" / "smoke_blackmagic.jpg")).shape[1] == 1024
