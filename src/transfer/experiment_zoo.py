"""The model-zoo rows of the Table 1 experiment: every registered network at one shared budget.

Each model is pretrained from scratch on the same synthetic manifest (same patches, batch, width and number
of steps), scored zero-shot on the validation split, fine-tuned on the same 10% subset of the training pool
(its last 2 blocks, best checkpoint picked on held-out pool pairs) and scored again. Every stage is the
project's own CLI run as a subprocess, as in `transfer.experiment`. The rows go to docs/results/zoo.csv and
to a section of docs/results.md between two markers, so a zoo-only run updates that section in place.
"""
from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Sequence

from transfer.experiment import Experiment, _merged_sources, _slug, make_synthetic, read_means, subset_csvs

SECTION_START = "<!-- zoo:start (written by `transfer experiment`; edits inside are overwritten) -->"
SECTION_END = "<!-- zoo:end -->"
ZOO_CSV = "zoo.csv"


@dataclass
class ZooRow:
    """One model's line: size, training speed, zero-shot and fine-tuned-10% scores."""

    model: str
    parameters: int
    finetuned_parameters: int
    train_images_per_s: float
    pretrain_seconds: float
    zero_shot_psnr: float
    zero_shot_ssim: float
    finetuned_psnr: float
    finetuned_ssim: float
    finetune_seconds: float


def _metrics(run_dir: Path) -> dict:
    """The metrics a training run stored in its config.json."""
    return json.loads((run_dir / "config.json").read_text())["metrics"]


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
        pre_s = _train_stage(exp, f"zoo-{model}-pretrain", pre_dir, "pretrain", "--manifest", manifest,
                             "--model", model, "--iters", b.zoo_pretrain_iters, *common)
        zero = _evaluate(exp, f"zoo-{model}-zero-shot", pre_dir, val_csv)
        args: list[str | Path] = ["--checkpoint", pre_dir, "--model", model, "--pairs", train_csv, "--layout",
                                  "csv", "--no-val-split", "--frac", 1.0, "--trainable-blocks", 2, "--iters",
                                  b.zoo_finetune_iters, "--lr", b.finetune_lr, *common]
        if holdout_csv is not None:
            args += ["--val-pairs", holdout_csv, "--val-limit", b.holdout_val]
        ft_s = _train_stage(exp, f"zoo-{model}-finetune10", ft_dir, "finetune", *args)
        tuned = _evaluate(exp, f"zoo-{model}-finetuned-10", ft_dir, val_csv)
        pre_metrics, ft_metrics = _metrics(pre_dir), _metrics(ft_dir)
        row = ZooRow(model, pre_metrics["total_params"], ft_metrics["trainable_params"],
                     pre_metrics["images_per_s"], pre_s, *zero, *tuned, ft_s)
        rows.append(row)
        print(f"  -> {model}: zero-shot {zero[0]:.2f} dB, fine-tuned 10% ({used} pairs) {tuned[0]:.2f} dB, "
              f"{row.train_images_per_s:.1f} img/s", flush=True)
    return rows, used


def _train_stage(exp: Experiment, stage: str, run_dir: Path, command: str, *args: str | Path | int | float) -> float:
    """Run a training stage; a finished run is kept (the zoo is long), an interrupted one resumes."""
    config = run_dir / "config.json"
    if config.is_file():
        metrics = json.loads(config.read_text()).get("metrics", {})
        if metrics.get("stop_reason") in ("completed", "early_stopping"):
            print(f"[{stage}] finished earlier in {run_dir}; kept", flush=True)
            exp.stage_seconds[stage] = float(metrics["seconds"])
            return exp.stage_seconds[stage]
    resume = ["--resume"] if (run_dir / "last").is_dir() else []
    return exp.run(stage, "transfer", command, "--run-dir", run_dir, *resume, *args)


def _evaluate(exp: Experiment, name: str, checkpoint: Path, val_csv: Path) -> tuple[float, float]:
    """Score a run's best checkpoint on the validation pairs; per-image rows in docs/results/<name>.csv."""
    out_csv = exp.docs / "results" / f"{_slug(name)}.csv"
    if out_csv.is_file() and out_csv.stat().st_mtime > (checkpoint / "config.json").stat().st_mtime:
        print(f"[{name}] scored earlier in {out_csv}; kept", flush=True)
        return read_means(out_csv)
    exp.run(f"evaluate-{_slug(name)}", "transfer", "evaluate", "--checkpoint", checkpoint, "--pairs", val_csv,
            "--layout", "csv", "--out", out_csv, "--quiet")
    return read_means(out_csv)


def write_zoo_csv(path: Path, rows: Sequence[ZooRow]) -> None:
    """docs/results/zoo.csv, one line per model (written atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[f.name for f in fields(ZooRow)])
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    os.replace(tmp, path)


def read_zoo_csv(path: Path) -> list[ZooRow]:
    """The rows of a zoo.csv."""
    types = {f.name: f.type for f in fields(ZooRow)}
    with open(path, newline="") as fh:
        return [ZooRow(**{k: (v if types[k] == "str" else int(v) if types[k] == "int" else float(v))
                          for k, v in line.items()}) for line in csv.DictReader(fh)]


def zoo_section(rows: Sequence[ZooRow], exp: Experiment, n_finetune_pairs: str) -> list[str]:
    """The markdown lines of the zoo section, markers included."""
    b = exp.budget
    lines = [SECTION_START, "", "## Model zoo: every registered network at one budget", "",
             f"Each model: width {b.width}, pretrained {b.zoo_pretrain_iters} iterations × batch {b.batch} "
             f"({b.patch}² patches) on the same synthetic manifest, then its last 2 blocks fine-tuned "
             f"{b.zoo_finetune_iters} iterations at lr {b.finetune_lr:g} on the same {n_finetune_pairs} (10% of "
             "the pool); both scored on the validation split. Training images/s is the pretraining run's own "
             "measure on this machine (other stages of the experiment did not run at the same time, but "
             "other processes on the machine may have; `benchmarks/bench_models.py` measures speed side by "
             "side). Per-image CSVs: `results/zoo-<model>-*.csv`.", "",
             "| model | parameters | fine-tuned parameters | train img/s | zero-shot PSNR | zero-shot SSIM | "
             "fine-tuned 10% PSNR | fine-tuned 10% SSIM | Δ to the best, per image (± s.e.) | pretrain (s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    best = max(rows, key=lambda r: r.finetuned_psnr) if rows else None
    for r in rows:
        gap = paired_gap(exp.docs, r.model, best.model) if best is not None and r is not best else None
        lines.append(f"| {r.model} | {r.parameters:,} | {r.finetuned_parameters:,} | {r.train_images_per_s:.1f} | "
                     f"{r.zero_shot_psnr:.2f} | {r.zero_shot_ssim:.3f} | {r.finetuned_psnr:.2f} | "
                     f"{r.finetuned_ssim:.3f} | {'-' if gap is None else f'{gap[0]:+.2f} ± {gap[1]:.2f}'} | "
                     f"{r.pretrain_seconds:.0f} |")
    if best is not None:
        fastest = max(rows, key=lambda r: r.train_images_per_s)
        lines += ["", f"Best fine-tuned PSNR: **{best.model}** ({best.finetuned_psnr:.2f} dB); fastest to train: "
                      f"**{fastest.model}** ({fastest.train_images_per_s:.1f} img/s). The Δ column is the mean "
                      "per-image PSNR difference to the best model on the same validation images, with its "
                      "standard error: a gap within about two standard errors is not a clear loss."]
    return lines + ["", SECTION_END]


def paired_gap(docs: Path, model: str, best: str) -> tuple[float, float] | None:
    """Mean and standard error of the per-image fine-tuned PSNR difference model − best (None without CSVs)."""
    import numpy as np
    import pandas as pd

    paths = [docs / "results" / f"{_slug(f'zoo-{m}-finetuned-10')}.csv" for m in (model, best)]
    if not all(p.is_file() for p in paths):
        return None
    a, b = (pd.read_csv(p).set_index("name")["psnr"] for p in paths)
    diff = (a - b).dropna()
    if len(diff) < 2:
        return None
    return float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(diff)))


def find_section(page: str) -> str | None:
    """The zoo section of a results page, markers included (None when it has none)."""
    if SECTION_START not in page or SECTION_END not in page:
        return None
    return SECTION_START + page.split(SECTION_START, 1)[1].split(SECTION_END, 1)[0] + SECTION_END


def replace_section(page: str, section: Sequence[str]) -> str:
    """`page` with its zoo section replaced by `section` (appended when it has none)."""
    text, old = "\n".join(section), find_section(page)
    if old is not None:
        return page.replace(old, text, 1)
    return page.rstrip("\n") + "\n\n" + text + "\n"


def update_results_page(exp: Experiment, rows: Sequence[ZooRow], n_finetune_pairs: str) -> Path:
    """Write docs/results/zoo.csv and put the zoo section into docs/results.md (atomically)."""
    write_zoo_csv(exp.docs / "results" / ZOO_CSV, rows)
    page = exp.docs / "results.md"
    old = page.read_text() if page.is_file() else "# Table 1 on real pairs\n"
    tmp = page.with_suffix(".md.tmp")
    tmp.write_text(replace_section(old, zoo_section(rows, exp, n_finetune_pairs)))
    os.replace(tmp, page)
    return page


def run_zoo_only(exp: Experiment, models: Sequence[str]) -> Path:
    """Split, calibrate and generate (joint) as the full experiment does (unless --out already holds that
    synthetic set), then only the zoo rows; finished training runs and scores in --out/--docs are kept."""
    exp.out.mkdir(parents=True, exist_ok=True)
    (exp.docs / "results").mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    pool_csv, val_csv, _, _ = exp.split_real_pairs()
    manifest = exp.out / "manifests" / "joint.parquet"
    if manifest.is_file():  # a zoo run that was interrupted, or extended with more --models
        print(f"[zoo] reusing the synthetic set of {manifest}", flush=True)
    else:
        manifest = make_synthetic(exp, "joint", pool_csv, _merged_sources(exp))
    rows, used = run_zoo(exp, models, manifest, pool_csv, val_csv)
    page = update_results_page(exp, rows, f"{used} real pairs")
    print(f"[zoo] {len(rows)} model(s) in {(time.perf_counter() - start) / 60:.1f} min; section in {page}")
    return page

