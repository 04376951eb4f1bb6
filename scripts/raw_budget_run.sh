#!/usr/bin/env bash
# The raw path end to end at a chosen budget (docs/raw.md): generate raw pairs from the clean photos with the Sony
# A7S2 preset, pretrain SID's U-Net on packed Bayer input, fine-tune on the real MCR exposure stack, enhance the
# Blackmagic DNG, draw the pictures, and score the pretrained and fine-tuned networks on the held-out pairs.
#   bash scripts/raw_budget_run.sh                         # defaults below (about 20 min on one CPU core)
#   N=60 SIZE=128 PRETRAIN_ITERS=4 FINETUNE_ITERS=2 EVAL_SPLIT=val OUT=runs/raw-tiny bash scripts/raw_budget_run.sh   # a smoke run
# On a GPU, raise the budgets (docs/raw.md has the command of its GPU run).
# TRAIN_ARGS go to every training command (e.g. "--workers 8"), PRETRAIN_ARGS to pretraining alone (e.g. "--lr 3e-4"); FINETUNE_PATCH is the fine-tuning patch (default PATCH).
# Besides the pictures it scores: the pretrained network on held-out generated pairs, and on the held-out MCR
# pairs zero-shot, fine-tuned, and trained from scratch on the same MCR pairs at the same budget (the baseline).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${LOWSIM_DATA:-../shared/data}
OUT=${OUT:-runs/raw-budget}
N=${N:-1000}; SIZE=${SIZE:-256}; PRETRAIN_ITERS=${PRETRAIN_ITERS:-3000}; FINETUNE_ITERS=${FINETUNE_ITERS:-300}
PATCH=${PATCH:-64}; BATCH=${BATCH:-8}; WIDTH=${WIDTH:-16}; WORKERS=${WORKERS:-1}; FIGURES=${FIGURES:-$OUT/figures}
TRAIN_ARGS=${TRAIN_ARGS:-}; PRETRAIN_ARGS=${PRETRAIN_ARGS:-}; FINETUNE_PATCH=${FINETUNE_PATCH:-$PATCH}
EVAL_SPLIT=${EVAL_SPLIT:-test}  # the generated split the pretrained network is scored on (val when N is tiny)
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
# The MCR stack's pairs with exposure ratios 4 to 16 (ratios from the exposure times in the file names).
"$PY" - "$DATA/raw-real/mcr-exposure-stack" "$OUT/mcr.csv" <<'PYEOF'
import csv, re, sys
from pathlib import Path
frames = sorted(Path(sys.argv[1]).glob("*.dng"), key=lambda p: float(re.search(r"_([0-9.]+)s\.dng$", p.name)[1]))
times = [float(re.search(r"_([0-9.]+)s\.dng$", p.name)[1]) for p in frames]
with open(sys.argv[2], "w", newline="") as fh:
    out = csv.writer(fh)
    out.writerow(["name", "dark", "bright", "ratio"])
    for i, dark in enumerate(frames):
        for j, bright in enumerate(frames):
            if j > i and 3.9 <= times[j] / times[i] <= 16.5:  # the names round the times
                out.writerow([f"{dark.stem}__{bright.stem}", dark.resolve(), bright.resolve(), times[j] / times[i]])
PYEOF
"$PY" -m lowsim generate --params sony_a7s2 --output raw --src "$DATA/clean" --n "$N" --size "$SIZE" \
    --out "$OUT/data" --manifest "$OUT/data.parquet" --workers "$WORKERS" --no-progress
"$PY" -m transfer pretrain --manifest "$OUT/data.parquet" --input raw --run-dir "$OUT/pretrain" \
    --iters "$PRETRAIN_ITERS" --patch "$PATCH" --batch "$BATCH" --width "$WIDTH" --quiet $TRAIN_ARGS $PRETRAIN_ARGS
"$PY" -m transfer finetune --checkpoint "$OUT/pretrain" --pairs "$OUT/mcr.csv" --frac 1.0 --run-dir "$OUT/finetune" \
    --iters "$FINETUNE_ITERS" --patch "$FINETUNE_PATCH" --batch 4 --val-limit 2 --quiet $TRAIN_ARGS
"$PY" -m transfer train --pairs "$OUT/mcr.csv" --input raw --frac 1.0 --run-dir "$OUT/scratch" --width "$WIDTH" \
    --iters "$FINETUNE_ITERS" --patch "$FINETUNE_PATCH" --batch 4 --val-limit 2 --quiet $TRAIN_ARGS
for run in pretrain finetune scratch; do
    "$PY" -m transfer evaluate --checkpoint "$OUT/$run" --pairs "$OUT/mcr.csv" --split val --out "$OUT/mcr-val-$run.csv"
done
"$PY" -m transfer evaluate --checkpoint "$OUT/pretrain" --manifest "$OUT/data.parquet" --split "$EVAL_SPLIT" \
    --out "$OUT/pretrain-test.csv"
"$PY" -m transfer enhance --checkpoint "$OUT/finetune" "$DATA/raw-real/blackmagic_pocket4k.dng" --ratio 1 \
    --out "$OUT/enhanced"
PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" "$PY" scripts/raw_smoke_figure.py --manifest "$OUT/data.parquet" --pretrain "$OUT/pretrain" \
    --finetune "$OUT/finetune" --blackmagic "$DATA/raw-real/blackmagic_pocket4k.dng" --enhanced "$OUT/enhanced" \
    --out "$FIGURES"
"$PY" - "$OUT" "$EVAL_SPLIT" <<'PYEOF'
import sys
import pandas as pd
out = sys.argv[1]
print(f"{'scored':52s} {'pairs':>5s} {'PSNR':>6s} {'GT-mean':>7s} {'SSIM':>6s}")
for name, csv in [(f"pretrained, generated {sys.argv[2]} split", "pretrain-test"), ("MCR held-out, zero-shot", "mcr-val-pretrain"),
                  ("MCR held-out, fine-tuned", "mcr-val-finetune"), ("MCR held-out, scratch on MCR", "mcr-val-scratch")]:
    t = pd.read_csv(f"{out}/{csv}.csv")
    print(f"{name:52s} {len(t):5d} {t.psnr.mean():6.2f} {t.psnr_gt_mean.mean():7.2f} {t.ssim.mean():6.3f}")
PYEOF
echo "raw run done: $OUT (figures in $FIGURES)"
