"""The model-zoo rows of the Table 1 experiment: every registered network at one shared budget.

Each model is pretrained from scratch on the same synthetic manifest (same patches, batch, width and number
of steps), scored zero-shot on the validation split, fine-tuned on the same 10% subset of the training pool
(its last 2 blocks, best checkpoint picked on held-out pool pairs) and scored again. Every stage is the
project's own CLI run as a subprocess (transfer.experiment.runner). The rows go to docs/results/zoo.csv and
to a section of docs/results.md between two markers (transfer.experiment.page), so a zoo-only run updates that
section in place.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

from transfer.checkpoint import resolve_checkpoint
from transfer.experiment.page import ZooRow, update_results_page
from transfer.experiment.runner import (Experiment, make_synthetic, merged_sources, read_means, run_metrics, slug,
                                        subset_csvs)


def run_zoo(exp: Experiment, models: Sequence[str], manifest: Path, pool_csv: Path,
            val_csv: Path) -> tuple[list[ZooRow], int]:
    """Pretrain, zero-shot evaluate, fine-tune 10% (last 2 blocks) and evaluate each model at one budget;
    returns the rows and the number of real pairs fine-tuned on."""
    b, out = exp.budget, exp.out
    common = ["--width", b.width, "--patch", b.patch, "--batch", b.batch, "--seed", exp.seed, "--quiet"]
    train_csv, holdout_csv, used = subset_csvs(pool_csv, 0.1, exp.seed, out / "pairs" / "zoo-10")
    rows = []
    for model in models:
        pre_dir, ft_dir = out / "runs" / f"zoo-{model}-pretrain", out / "runs" / f"zoo-{model}-finetune10"
        pre_s = exp.train(f"zoo-{model}-pretrain", pre_dir, "pretrain", "--manifest", manifest, "--model", model,
                          "--iters", b.zoo_pretrain_iters, *common)
        zero = _evaluate(exp, f"zoo-{model}-zero-shot", pre_dir, val_csv)
        args: list[str | Path] = ["--checkpoint", pre_dir, "--model", model, "--pairs", train_csv, "--layout",
                                  "csv", "--no-val-split", "--frac", 1.0, "--trainable-blocks", 2, "--iters",
                                  b.zoo_finetune_iters, "--lr", b.zoo_finetune_lr, *common]
        if holdout_csv is not None:
            args += ["--val-pairs", holdout_csv, "--val-limit", b.holdout_val]
        ft_s = exp.train(f"zoo-{model}-finetune10", ft_dir, "finetune", *args)
        tuned = _evaluate(exp, f"zoo-{model}-finetuned-10", ft_dir, val_csv)
        pre_metrics, ft_metrics = run_metrics(pre_dir), run_metrics(ft_dir)
        row = ZooRow(model, pre_metrics["total_params"], ft_metrics["trainable_params"],
                     pre_metrics["images_per_s"], pre_s, *zero, *tuned, ft_s)
        rows.append(row)
        print(f"  -> {model}: zero-shot {zero[0]:.2f} dB, fine-tuned 10% ({used} pairs) {tuned[0]:.2f} dB, "
              f"{row.train_images_per_s:.1f} img/s", flush=True)
    return rows, used


def _evaluate(exp: Experiment, name: str, checkpoint: Path, val_csv: Path) -> tuple[float, float]:
    """Score a run's best checkpoint on the validation pairs; per-image rows in docs/results/<name>.csv."""
    out_csv = exp.docs / "results" / f"{slug(name)}.csv"
    # newer than the weights it scores (a resumed run rewrites its config.json, not a finished run's weights)
    if out_csv.is_file() and out_csv.stat().st_mtime > resolve_checkpoint(checkpoint).stat().st_mtime:
        print(f"[{name}] scored earlier in {out_csv}; kept", flush=True)
        return read_means(out_csv)
    exp.run(f"evaluate-{slug(name)}", "transfer", "evaluate", "--checkpoint", checkpoint, "--pairs", val_csv,
            "--layout", "csv", "--out", out_csv, "--quiet")
    return read_means(out_csv)


def run_zoo_only(exp: Experiment, models: Sequence[str]) -> Path:
    """Split, calibrate and generate (the main pipeline) as the full experiment does (unless --out already holds that
    synthetic set), then only the zoo rows; finished training runs and scores in --out/--docs are kept."""
    exp.out.mkdir(parents=True, exist_ok=True)
    (exp.docs / "results").mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    pool_csv, val_csv, _, _ = exp.split_real_pairs()
    manifest = exp.out / "manifests" / f"{exp.method}.parquet"
    if manifest.is_file():  # a zoo run that was interrupted, or extended with more --models
        print(f"[zoo] reusing the synthetic set of {manifest}", flush=True)
    else:
        manifest = make_synthetic(exp, exp.method, pool_csv, merged_sources(exp))
    rows, used = run_zoo(exp, models, manifest, pool_csv, val_csv)
    page = update_results_page(exp, rows, f"{used} real pairs")
    print(f"[zoo] {len(rows)} model(s) in {(time.perf_counter() - start) / 60:.1f} min; section in {page}")
    return page
