"""The founding paper's Table 1 on real pairs, end to end, with one command.

Each stage is the project's own command line (`lowsim calibrate`, `lowsim generate`, `transfer pretrain`,
`transfer finetune`, `transfer train`, `transfer evaluate`), run as a subprocess so the experiment exercises
exactly what a user runs; this module only splits the real pairs, chains the stages, times them and writes
docs/results.md with the per-image CSVs and figures.
"""
from __future__ import annotations

import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from lowsim.errors import LowsimError
from lowsim.pairs import Pair, find_pairs
from lowsim.splits import REAL_PAIR_FRACTIONS, assign_split

# The founding paper's own numbers (Table 1, on SID, their pipeline): for reference only.
PAPER_TABLE1 = {"synthetic test set": 15.73, "zero-shot on SID": 6.33, "fine-tuned on 10% of SID": 10.19}


@dataclass
class Budget:
    """Training budgets and sizes of one experiment run (defaults: the full run; `quick()`: a smoke run)."""

    n_synthetic: int = 6000
    synthetic_size: int = 128
    width: int = 16
    patch: int = 64
    batch: int = 16
    pretrain_iters: int = 6000
    finetune_iters: int = 1000
    scratch_full_iters: int = 3000
    paper_pretrain_iters: int = 6000
    finetune_lr: float = 1e-4  # fine-tuning (pretrained weights) at a tenth of the from-scratch rate
    holdout_val: int = 16  # pool pairs outside a run's subset that pick its best checkpoint
    workers: int = 2
    max_pool: int | None = None  # quick runs use a few pairs of each split
    max_val: int | None = None
    # the model-zoo rows: every registered network at one (smaller) shared budget
    zoo_models: tuple[str, ...] = ("sid_unet", "plain_cnn", "dense_cnn", "estimate_enhance", "vgg16_residual")
    zoo_pretrain_iters: int = 2000
    zoo_finetune_iters: int = 400

    @classmethod
    def quick(cls) -> "Budget":
        return cls(n_synthetic=48, synthetic_size=64, width=8, patch=32, batch=4, pretrain_iters=20,
                   finetune_iters=10, scratch_full_iters=10, paper_pretrain_iters=20, workers=2, holdout_val=2,
                   max_pool=20, max_val=4, zoo_models=("plain_cnn",), zoo_pretrain_iters=10,
                   zoo_finetune_iters=5)


@dataclass
class Row:
    """One line of the results table."""

    name: str
    psnr: float
    ssim: float
    pairs_used: str
    budget: str
    seconds: float
    csv: str = ""
    note: str = ""


@dataclass
class Experiment:
    pairs: Path
    clean: list[Path]
    out: Path
    docs: Path
    val_pairs: Path | None = None
    layout: str = "auto"
    seed: int = 0
    budget: Budget = field(default_factory=Budget)
    command: str = ""
    rows: list[Row] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)

    # -- running the project's own commands ----------------------------------------------------
    def run(self, stage: str, tool: str, *args: str | Path) -> float:
        """Run `python -m <tool> args…`, stream its output to a log, and record its wall time."""
        cmd = [sys.executable, "-m", tool, *map(str, args)]
        log = self.out / "logs" / f"{stage}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        print(f"[{stage}] {' '.join(cmd[2:])}", flush=True)
        start = time.perf_counter()
        with open(log, "w") as fh:
            fh.write(" ".join(cmd) + "\n")
            fh.flush()
            proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=_child_env())
        seconds = time.perf_counter() - start
        self.stage_seconds[stage] = seconds
        if proc.returncode != 0:
            tail = log.read_text().strip().splitlines()[-5:]
            raise LowsimError(f"stage {stage} failed (exit {proc.returncode}); last lines of {log}:\n  "
                              + "\n  ".join(tail))
        print(f"[{stage}] done in {seconds:.1f} s", flush=True)
        return seconds

    # -- stage 1: split ------------------------------------------------------------------------
    def split_real_pairs(self) -> tuple[Path, Path, int, int]:
        """Write pool.csv and val.csv (CSV layout) so every later stage sees only its own pairs."""
        pairs = find_pairs(self.pairs, layout=self.layout)
        if self.val_pairs is not None:
            pool, val = pairs, find_pairs(self.val_pairs, layout=self.layout)
        else:
            pool = [p for p in pairs if assign_split(p.name, REAL_PAIR_FRACTIONS) == "pool"]
            val = [p for p in pairs if assign_split(p.name, REAL_PAIR_FRACTIONS) == "val"]
        if not pool or not val:
            raise LowsimError(f"the split left {len(pool)} training and {len(val)} validation pairs; need both",
                              self.pairs)
        pool, val = pool[: self.budget.max_pool], val[: self.budget.max_val]
        split_dir = self.out / "pairs"
        pool_csv, val_csv = split_dir / "pool.csv", split_dir / "val.csv"
        write_pairs_csv(pool_csv, pool)
        write_pairs_csv(val_csv, val)
        print(f"[split] {len(pool)} training-pool pairs, {len(val)} validation pairs", flush=True)
        return pool_csv, val_csv, len(pool), len(val)

    # -- evaluation helper ---------------------------------------------------------------------
    def evaluate(self, name: str, checkpoint: Path | None, pairs_csv: Path, *, pairs_used: str, budget: str,
                 seconds: float, note: str = "") -> Row:
        """Score a checkpoint (or the identity with checkpoint=None) and append a table row."""
        out_csv = self.docs / "results" / f"{_slug(name)}.csv"
        args: list[str | Path] = ["evaluate", "--pairs", pairs_csv, "--layout", "csv", "--out", out_csv]
        args += ["--identity"] if checkpoint is None else ["--checkpoint", checkpoint]
        self.run(f"evaluate-{_slug(name)}", "transfer", *args)
        psnr, ssim = read_means(out_csv)
        row = Row(name, psnr, ssim, pairs_used, budget, seconds, str(out_csv.relative_to(self.docs)), note)
        self.rows.append(row)
        print(f"  -> {name}: PSNR {psnr:.2f} dB, SSIM {ssim:.3f}", flush=True)
        return row


def write_pairs_csv(path: Path, pairs: Sequence[Pair]) -> None:
    """A CSV-layout pairs file (dark, bright, name) with paths relative to the CSV itself."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["name", "dark", "bright"])
        for p in pairs:
            writer.writerow([p.name, os.path.relpath(p.dark, path.parent), os.path.relpath(p.bright, path.parent)])
    os.replace(tmp, path)


def read_means(results_csv: Path) -> tuple[float, float]:
    """Mean PSNR and SSIM over the per-image rows of an evaluate CSV."""
    import pandas as pd

    frame = pd.read_csv(results_csv)
    return float(frame["psnr"].mean()), float(frame["ssim"].mean())


def _slug(name: str) -> str:
    import re

    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def machine_description() -> str:
    """CPU model, core count and Python/torch versions, for the results page."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return (f"{cpu}, {len(os.sched_getaffinity(0))} cores available, Python {platform.python_version()}, "
            f"torch {torch.__version__}, {'CUDA' if torch.cuda.is_available() else 'CPU only'}")


# -- the whole loop -------------------------------------------------------------------------------
def fixed_gamma_floor(exp: Experiment, pool_csv: Path, val_csv: Path) -> Row:
    """A classical floor: one global gain·x^(1/γ) curve, chosen on the training pool, applied to val."""
    from lowsim.pairs import read_pair
    from transfer.evaluate import write_rows
    from transfer.metrics import psnr, ssim

    start = time.perf_counter()
    pool = [read_pair(p) for p in find_pairs(pool_csv, layout="csv")[:48]]
    grid = [(g, k) for g in (1.0, 1.5, 2.0, 2.5, 3.0, 4.0) for k in (1.0, 1.5, 2.0, 3.0, 4.0, 6.0)]

    def curve(dark: np.ndarray, g: float, k: float) -> np.ndarray:
        return np.clip(k * np.power(dark, 1.0 / g), 0.0, 1.0)

    score = {gk: np.mean([psnr(curve(d, *gk), b) for d, b in pool]) for gk in grid}
    g, k = max(score, key=score.get)
    rows = []
    for pair in find_pairs(val_csv, layout="csv"):
        dark, bright = read_pair(pair)
        out = curve(dark, g, k)
        rows.append({"name": pair.name, "psnr": psnr(out, bright), "ssim": ssim(out, bright)})
    out_csv = exp.docs / "results" / "fixed-gamma.csv"
    write_rows(out_csv, rows)
    psnr_mean, ssim_mean = read_means(out_csv)
    row = Row(f"fixed curve {k:g}·x^(1/{g:g}) (chosen on the pool)", psnr_mean, ssim_mean, "0 (curve fitted on "
              f"{len(pool)} pool pairs)", "-", time.perf_counter() - start, str(out_csv.relative_to(exp.docs)))
    exp.rows.append(row)
    return row


def make_synthetic(exp: Experiment, method: str, pool_csv: Path, source: Path) -> Path:
    """Calibrate the pool with `method` (joint or paper) and generate the synthetic set; returns its manifest."""
    b, out = exp.budget, exp.out
    params = out / "params" / f"{method}.json"
    manifest = out / "manifests" / f"{method}.parquet"
    exp.run(f"calibrate-{method}", "lowsim", "calibrate", "--pairs", pool_csv, "--layout", "csv",
            "--method", method, "--out", params, "--report", exp.docs / f"fig2_calibration_{method}.png",
            "--seed", exp.seed, "--workers", b.workers)
    exp.run(f"generate-{method}", "lowsim", "generate", "--src", source, "--n", b.n_synthetic,
            "--params", params, "--out", out / "synthetic" / method, "--manifest", manifest,
            "--size", b.synthetic_size, "--seed", exp.seed, "--workers", b.workers, "--no-progress")
    return manifest


def run_experiment(exp: Experiment, *, paper_ablation: bool = True, zoo: bool = True) -> Path:
    """Split, calibrate, generate, pretrain, fine-tune, evaluate (and the zoo rows); write docs/results.md."""
    b, out, docs = exp.budget, exp.out, exp.docs
    out.mkdir(parents=True, exist_ok=True)
    (docs / "results").mkdir(parents=True, exist_ok=True)
    wall = time.perf_counter()
    pool_csv, val_csv, n_pool, n_val = exp.split_real_pairs()
    source = _merged_sources(exp)
    train_args = ["--width", b.width, "--patch", b.patch, "--batch", b.batch, "--seed", exp.seed, "--quiet"]

    pipelines = ["joint", "paper"] if paper_ablation else ["joint"]
    for method in pipelines:
        manifest = make_synthetic(exp, method, pool_csv, source)
        iters = b.pretrain_iters if method == "joint" else b.paper_pretrain_iters
        exp.run(f"pretrain-{method}", "transfer", "pretrain", "--manifest", manifest,
                "--run-dir", out / "runs" / f"pretrain-{method}", "--iters", iters, *train_args)
    exp.run("preview", "lowsim", "preview", "--src", _first_image(source), "--params", out / "params" / "joint.json",
            "--seed", exp.seed, "--out", docs / "fig3_degradation.png")

    pre = out / "runs" / "pretrain-joint"
    pre_budget = f"{b.pretrain_iters} it × {b.batch}"
    out_csv = docs / "results" / "synthetic-test.csv"
    exp.run("evaluate-synthetic-test", "transfer", "evaluate", "--checkpoint", pre, "--manifest",
            out / "manifests" / "joint.parquet", "--split", "test", "--out", out_csv)
    exp.rows.append(Row("synthetic test set (pretrained, ours)", *read_means(out_csv), f"{b.n_synthetic} synthetic",
                        pre_budget, exp.stage_seconds["pretrain-joint"], str(out_csv.relative_to(docs))))

    exp.evaluate("identity (dark input)", None, val_csv, pairs_used="0", budget="-", seconds=0.0)
    fixed_gamma_floor(exp, pool_csv, val_csv)
    exp.evaluate("zero-shot (pretrained only)", pre, val_csv, pairs_used="0 real", budget=pre_budget,
                 seconds=exp.stage_seconds["pretrain-joint"])

    def finetune(name: str, frac: float, *extra: str | Path, checkpoint: Path | None = pre,
                 iters: int = b.finetune_iters) -> None:
        """Train on a seeded `frac` of the pool; pool pairs outside it (never val) pick the best checkpoint."""
        run_dir = out / "runs" / _slug(name)
        train_csv, holdout_csv, used = subset_csvs(pool_csv, frac, exp.seed, out / "pairs" / _slug(name))
        args: list[str | Path] = ["--pairs", train_csv, "--layout", "csv", "--no-val-split", "--frac", 1.0,
                                  "--run-dir", run_dir, *train_args]
        if holdout_csv is not None:
            args += ["--val-pairs", holdout_csv, "--val-limit", b.holdout_val]
        if checkpoint is None:
            exp.run(_slug(name), "transfer", "train", "--iters", iters, *args, *extra)
            budget = f"{iters} it × {b.batch}, lr 1e-3"
        else:
            exp.run(_slug(name), "transfer", "finetune", "--checkpoint", checkpoint, "--iters", iters,
                    "--lr", b.finetune_lr, *args, *extra)
            budget = f"{iters} it × {b.batch}, lr {b.finetune_lr:g}"
        if holdout_csv is not None:
            budget += f", best checkpoint on {b.holdout_val} held-out pool pairs"
        exp.evaluate(name, run_dir, val_csv, pairs_used=f"{used} real", budget=budget,
                     seconds=exp.stage_seconds[_slug(name)])

    finetune("fine-tuned 10%, last 2 blocks", 0.1, "--trainable-blocks", "2")
    finetune("fine-tuned 10%, all layers", 0.1, "--all")
    finetune("fine-tuned 5%, last 2 blocks", 0.05, "--trainable-blocks", "2")
    finetune("fine-tuned 25%, last 2 blocks", 0.25, "--trainable-blocks", "2")
    finetune("scratch 10% (same budget)", 0.1, checkpoint=None)
    finetune("scratch 100% of the pool", 1.0, checkpoint=None, iters=b.scratch_full_iters)
    if paper_ablation:
        paper_pre = out / "runs" / "pretrain-paper"
        exp.evaluate("paper pipeline: zero-shot", paper_pre, val_csv, pairs_used="0 real",
                     budget=f"{b.paper_pretrain_iters} it × {b.batch}", seconds=exp.stage_seconds["pretrain-paper"])
        finetune("paper pipeline: fine-tuned 10%, last 2 blocks", 0.1, "--trainable-blocks", "2",
                 checkpoint=paper_pre)

    zoo_rows, zoo_pairs = [], 0
    if zoo and b.zoo_models:
        from transfer.experiment_zoo import run_zoo

        zoo_rows, zoo_pairs = run_zoo(exp, b.zoo_models, out / "manifests" / "joint.parquet", pool_csv, val_csv)
    _copy_curves(exp)
    _comparison_grid(exp, val_csv)
    total = time.perf_counter() - wall
    page = write_results(exp, n_pool, n_val, total)
    if zoo_rows:
        from transfer.experiment_zoo import update_results_page

        update_results_page(exp, zoo_rows, f"{zoo_pairs} real pairs")
    return page


def subset_csvs(pool_csv: Path, frac: float, seed: int, folder: Path) -> tuple[Path, Path | None, int]:
    """Split the pool into a seeded `frac` subset (train.csv) and the rest (holdout.csv, None when empty)."""
    pool = find_pairs(pool_csv, layout="csv")
    count = max(1, int(np.floor(frac * len(pool) + 0.5)))
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0x5EB5E7,)))
    chosen = set(rng.choice(len(pool), size=count, replace=False).tolist())
    train = [p for i, p in enumerate(pool) if i in chosen]
    rest = [p for i, p in enumerate(pool) if i not in chosen]
    write_pairs_csv(folder / "train.csv", train)
    if not rest:
        return folder / "train.csv", None, len(train)
    write_pairs_csv(folder / "holdout.csv", rest)
    return folder / "train.csv", folder / "holdout.csv", len(train)


def _merged_sources(exp: Experiment) -> Path:
    """`lowsim generate` takes one source folder: several --clean folders become one folder of links."""
    if len(exp.clean) == 1:
        return exp.clean[0]
    merged = exp.out / "sources"
    if merged.exists():
        shutil.rmtree(merged)
    merged.mkdir(parents=True)
    from lowsim.imageio import list_images

    for i, folder in enumerate(exp.clean):
        for path in list_images(folder):
            link = merged / f"{i:02d}_{folder.name}" / path.relative_to(folder)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(path.resolve())
    return merged


def _first_image(folder: Path) -> Path:
    from lowsim.imageio import list_images

    return list_images(folder)[0]


def _copy_curves(exp: Experiment) -> None:
    """Fig. 5: the training curves of the pretraining and the 10% fine-tune."""
    for run, name in (("pretrain-joint", "fig5_curves_pretrain.png"),
                      ("fine-tuned-10-last-2-blocks", "fig5_curves_finetune.png")):
        src = exp.out / "runs" / run / "curves.png"
        if src.is_file():
            shutil.copyfile(src, exp.docs / name)


def _comparison_grid(exp: Experiment, val_csv: Path, count: int = 3) -> None:
    """Fig. 7: dark / zero-shot / fine-tuned / scratch / truth for a few validation images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lowsim.pairs import read_pair
    from transfer.enhance import enhance_files

    pairs = find_pairs(val_csv, layout="csv")[:count]
    columns = [("dark", None), ("zero-shot", "pretrain-joint"), ("fine-tuned 10%", "fine-tuned-10-last-2-blocks"),
               ("scratch 10%", "scratch-10-same-budget"), ("truth", None)]
    outputs: dict[str, list[Path]] = {}
    for label, run in columns:
        if run is not None:
            outputs[label] = list(enhance_files(exp.out / "runs" / run, [p.dark for p in pairs],
                                                exp.out / "fig7" / run, device="cpu"))
    fig, axes = plt.subplots(len(pairs), len(columns), figsize=(3 * len(columns), 2.2 * len(pairs)), squeeze=False)
    from lowsim.imageio import read_image

    for i, pair in enumerate(pairs):
        dark, bright = read_pair(pair)
        for j, (label, run) in enumerate(columns):
            img = dark if label == "dark" else bright if label == "truth" else read_image(outputs[label][i])
            axes[i, j].imshow(img)
            axes[i, j].set_axis_off()
            if i == 0:
                axes[i, j].set_title(label)
    fig.tight_layout()
    fig.savefig(exp.docs / "fig7_comparison.png", dpi=80)
    plt.close(fig)


NOTES_MARKER = "<!-- notes: kept when `transfer experiment` rewrites this page -->"


def kept_sections(page: Path) -> list[str]:
    """What a rewrite of results.md keeps: the zoo section (until a zoo run replaces it) and the notes."""
    if not page.is_file():
        return []
    from transfer.experiment_zoo import find_section

    text, kept = page.read_text(), []
    section = find_section(text)
    if section is not None:
        kept.append(section + "\n")
    if NOTES_MARKER in text:
        kept.append(NOTES_MARKER + text.split(NOTES_MARKER, 1)[1])
    return kept


def write_results(exp: Experiment, n_pool: int, n_val: int, total_seconds: float) -> Path:
    """docs/results.md: the table, the stage times, the command and the machine."""
    lines = [
        "# Table 1 on real pairs",
        "",
        f"Real pairs: `{exp.pairs}` — {n_pool} in the training pool, {n_val} in the validation split "
        "(by a hash of the file name; the validation split is never calibrated, trained or tuned on). "
        f"Synthetic sources: {', '.join(f'`{c}`' for c in exp.clean)}.",
        "",
        f"Command: `{exp.command}`",
        "",
        f"Machine: {machine_description()}. Whole loop: {total_seconds / 60:.1f} min.",
        "",
        "| row | PSNR (dB) | SSIM | training pairs | budget (iterations × batch) | train time (s) | per-image CSV |",
        "|---|---:|---:|---|---|---:|---|",
    ]
    for r in exp.rows:
        lines.append(f"| {r.name} | {r.psnr:.2f} | {r.ssim:.3f} | {r.pairs_used} | {r.budget} | {r.seconds:.0f} | "
                     f"[{Path(r.csv).name}]({r.csv}) |")
    lines += ["", "The founding paper's own numbers (theirs, on SID, not comparable data; for reference only):", "",
              "| row (paper, SID) | PSNR (dB) |", "|---|---:|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in PAPER_TABLE1.items()]
    lines += ["", "## Stage times", "", "| stage | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in exp.stage_seconds.items()]
    lines += ["", "## Figures", "",
              "- Calibration histograms (paper Fig. 2): ![](fig2_calibration_joint.png)",
              "- Degradation strip (paper Fig. 3): ![](fig3_degradation.png)",
              "- Training curves (paper Fig. 5): ![](fig5_curves_pretrain.png) ![](fig5_curves_finetune.png)",
              "- Validation images, dark / zero-shot / fine-tuned / scratch / truth (paper Fig. 7): "
              "![](fig7_comparison.png)", ""]
    path = exp.docs / "results.md"
    lines += kept_sections(path)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines))
    os.replace(tmp, path)
    (exp.docs / "results.json").write_text(json.dumps({"rows": [asdict(r) for r in exp.rows],
                                                       "stages": exp.stage_seconds,
                                                       "budget": asdict(exp.budget)}, indent=2))
    print(path.read_text())
    return path
