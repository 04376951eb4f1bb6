"""The experiment's frame: its budget, its results rows, and running the project's own commands.

Each stage is the project's own command line (`lowsim calibrate`, `lowsim generate`, `transfer pretrain`,
`transfer finetune`, `transfer train`, `transfer evaluate`), run as a subprocess so the experiment exercises
exactly what a user runs. This module splits the real pairs, runs and times the stages, scores checkpoints and
picks fine-tuning subsets (with transfer.data's one subset selector, so a seed picks the same pairs as
`--frac` does).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from lowsim.errors import LowsimError
from lowsim.safe_io import atomic_write_text
from lowsim.pairs import Pair, find_pairs
from lowsim.splits import REAL_PAIR_FRACTIONS, assign_split
from transfer.data import split_fraction
from transfer.models import list_models

REFERENCE_MODEL = "sid_unet"  # the founding paper's network: Table 1's rows, and the first of the zoo rows


def default_zoo_models() -> tuple[str, ...]:
    """Every registered model, the reference model first."""
    names = list_models()
    return tuple(sorted(names, key=lambda name: (name != REFERENCE_MODEL, name)))


@dataclass
class Budget:
    """Training budgets and sizes of one experiment run (defaults: the full run; `quick()`: a smoke run)."""

    n_synthetic: int = 6000
    synthetic_size: int = 128
    model: str = "global_local"  # Table 1's network (the zoo rows run every registered one)
    width: int = 16
    patch: int = 128  # whole synthetic images, so a global branch sees what it will see at inference
    batch: int = 8
    pretrain_iters: int = 2000
    finetune_iters: int = 1000
    scratch_full_iters: int = 2000
    paper_pretrain_iters: int = 2000
    subset_seeds: tuple[int, ...] = (0, 1, 2)  # every fine-tuned and scratch row: mean ± s.d. over these
    # fine-tuning rate, chosen by cross-validation inside the pool (scripts/tune_finetune.py; docs/tuning.md): 1e-3
    # beat 1e-4 and 3e-4 for global_local's last blocks
    finetune_lr: float = 1e-3
    # noise augmentation of the fine-tuned rows' real pairs from the main pipeline's params (transfer finetune
    # --augment-prob); 0: off, as the published Table 1 ran (docs/tuning.md has its cross-validation)
    finetune_augment_prob: float = 0.0
    finetune_methods: tuple[str, ...] = ("last-blocks", "adapter", "all")  # one fine-tuned row each; the first
    # is the one figures and recipe rows follow
    holdout_val: int = 16  # pool pairs outside a run's subset that pick its best checkpoint
    workers: int = 2
    max_pool: int | None = None  # quick runs use a few pairs of each split
    max_val: int | None = None
    # the model-zoo rows: every registered network at one (smaller) shared budget
    zoo_models: tuple[str, ...] = field(default_factory=default_zoo_models)
    zoo_pretrain_iters: int = 2000
    zoo_finetune_iters: int = 400
    zoo_finetune_lr: float = 1e-4  # the zoo's published rows were fine-tuned at this rate (not tuned per model)
    downscale: float | None = None  # lowsim calibrate --downscale for isp (None: calibration chooses it)

    @classmethod
    def quick(cls) -> "Budget":
        return cls(n_synthetic=48, synthetic_size=64, width=8, patch=32, batch=4, pretrain_iters=20,
                   finetune_iters=10, scratch_full_iters=10, paper_pretrain_iters=20, workers=2, holdout_val=2,
                   max_pool=20, max_val=4, zoo_models=("plain_cnn",), zoo_pretrain_iters=10,
                   zoo_finetune_iters=5, downscale=2.0, subset_seeds=(0,))


@dataclass
class Row:
    """One line of the results table: means over its per-image CSV(s); with several subset seeds, the mean and
    standard deviation over the seeds' means (and each seed's PSNR)."""

    name: str
    psnr: float
    ssim: float
    pairs_used: str
    budget: str
    seconds: float
    csv: str = ""
    note: str = ""
    gt_mean: float = math.nan
    psnr_sd: float = math.nan
    gt_mean_sd: float = math.nan
    seed_psnr: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Scores:
    """Mean PSNR, SSIM and GT-mean PSNR of one evaluate CSV."""

    psnr: float
    ssim: float
    gt_mean: float
    csv: Path


def seeded_row(name: str, scores: Sequence[Scores], docs: Path, *, pairs_used: str, budget: str, seconds: float,
               note: str = "") -> Row:
    """A row over one or more seeds' scores: means, and the seeds' standard deviations."""
    def spread(values: list[float]) -> float:
        return statistics.stdev(values) if len(values) > 1 else math.nan

    psnrs, gts = [s.psnr for s in scores], [s.gt_mean for s in scores]
    csvs = ", ".join(str(s.csv.relative_to(docs)) for s in scores)
    return Row(name, statistics.fmean(psnrs), statistics.fmean(s.ssim for s in scores), pairs_used, budget, seconds,
               csvs, note, statistics.fmean(gts), spread(psnrs), spread(gts), psnrs if len(scores) > 1 else [])


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
    method: str = "isp"  # the main pipeline's calibration method (lowsim calibrate --method)
    params: Path | None = None  # a params file for the main pipeline instead of calibrating the pool
    sampler: str | None = None  # lowsim generate --sampler for the main pipeline (None: the file's)
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
            last = next((line.strip() for line in reversed(log.read_text(errors="replace").splitlines())
                         if line.strip()), "no output")
            raise LowsimError(f"stage {stage} failed (exit {proc.returncode}): {last} (whole output in {log})")
        print(f"[{stage}] done in {seconds:.1f} s", flush=True)
        return seconds

    def train(self, stage: str, run_dir: Path, command: str, *args: str | Path | int | float) -> float:
        """Run a training stage (pretrain, finetune, train) so that rerunning the experiment continues it: a run
        folder that holds a checkpoint is resumed (the trainer refuses one made with other options; a finished one
        trains nothing and is kept). Returns the run's own training time, from its config.json."""
        resume = ["--resume"] if (run_dir / "last").is_dir() else []
        wall = self.run(stage, "transfer", command, "--run-dir", run_dir, *resume, *args)
        self.stage_seconds[stage] = recorded_seconds(run_dir, wall)
        return self.stage_seconds[stage]

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
    def score(self, name: str, checkpoint: Path | None, pairs_csv: Path) -> Scores:
        """Score a checkpoint (or the identity with checkpoint=None) into docs/results/<name>.csv."""
        out_csv = self.docs / "results" / f"{slug(name)}.csv"
        args: list[str | Path] = ["evaluate", "--pairs", pairs_csv, "--layout", "csv", "--out", out_csv]
        args += ["--identity"] if checkpoint is None else ["--checkpoint", checkpoint]
        self.run(f"evaluate-{slug(name)}", "transfer", *args)
        return read_scores(out_csv)

    def add_row(self, row: Row) -> Row:
        """Append a table row and say so."""
        self.rows.append(row)
        spread = "" if math.isnan(row.psnr_sd) else f" ± {row.psnr_sd:.2f}"
        print(f"  -> {row.name}: PSNR {row.psnr:.2f}{spread} dB (GT-mean {row.gt_mean:.2f}), SSIM {row.ssim:.3f}",
              flush=True)
        return row

    def evaluate(self, name: str, checkpoint: Path | None, pairs_csv: Path, *, pairs_used: str, budget: str,
                 seconds: float, note: str = "") -> Row:
        """Score a checkpoint (or the identity with checkpoint=None) and append a table row."""
        scores = self.score(name, checkpoint, pairs_csv)
        return self.add_row(seeded_row(name, [scores], self.docs, pairs_used=pairs_used, budget=budget,
                                       seconds=seconds, note=note))


def run_metrics(run_dir: Path) -> dict:
    """The summary a training run stored in its config.json (the invocation that trained it)."""
    return json.loads((run_dir / "config.json").read_text())["metrics"]


def recorded_seconds(run_dir: Path, default: float) -> float:
    """The seconds a training run's config.json records for the invocation that trained it (else `default`)."""
    try:
        return float(run_metrics(run_dir)["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return default


def write_pairs_csv(path: Path, pairs: Sequence[Pair]) -> None:
    """A CSV-layout pairs file (dark, bright, name) with paths relative to the CSV itself."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(["name", "dark", "bright"])
    for p in pairs:
        writer.writerow([p.name, os.path.relpath(p.dark, path.parent), os.path.relpath(p.bright, path.parent)])
    atomic_write_text(path, buffer.getvalue())


def read_means(results_csv: Path) -> tuple[float, float]:
    """Mean PSNR and SSIM over the per-image rows of an evaluate CSV."""
    scores = read_scores(results_csv)
    return scores.psnr, scores.ssim


def read_scores(results_csv: Path) -> Scores:
    """Mean PSNR, SSIM and GT-mean PSNR (NaN when the CSV has none) over an evaluate CSV's per-image rows."""
    import pandas as pd

    frame = pd.read_csv(results_csv)
    gt_mean = float(frame["psnr_gt_mean"].mean()) if "psnr_gt_mean" in frame else math.nan
    return Scores(float(frame["psnr"].mean()), float(frame["ssim"].mean()), gt_mean, results_csv)


def slug(name: str) -> str:
    """A row or stage name as a file-name part: lower case, runs of other characters as one dash."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def subset_csvs(pool_csv: Path, frac: float, seed: int, folder: Path) -> tuple[Path, Path | None, int]:
    """Split the pool into a seeded `frac` subset (train.csv) and the rest (holdout.csv, None when empty), with
    the subset selector of `--frac` (transfer.data.split_fraction)."""
    train, rest = split_fraction(find_pairs(pool_csv, layout="csv"), frac, seed)
    write_pairs_csv(folder / "train.csv", train)
    if not rest:
        return folder / "train.csv", None, len(train)
    write_pairs_csv(folder / "holdout.csv", rest)
    return folder / "train.csv", folder / "holdout.csv", len(train)


def make_synthetic(exp: Experiment, method: str, pool_csv: Path, source: Path) -> Path:
    """Calibrate the pool with `method` (isp, joint or paper) and generate the synthetic set; returns its
    manifest. The main pipeline takes `exp.params` instead of calibrating when it is given."""
    b, out = exp.budget, exp.out
    params = out / "params" / f"{method}.json"
    manifest = out / "manifests" / f"{method}.parquet"
    main = method == exp.method
    if main and exp.params is not None:
        params = exp.params
    else:
        downscale = ["--downscale", b.downscale] if method == "isp" and b.downscale is not None else []
        exp.run(f"calibrate-{method}", "lowsim", "calibrate", "--pairs", pool_csv, "--layout", "csv",
                "--method", method, "--out", params, "--report", exp.docs / f"fig2_calibration_{method}.png",
                "--seed", exp.seed, "--workers", b.workers, *downscale)
    sampler = ["--sampler", exp.sampler] if main and exp.sampler else []
    exp.run(f"generate-{method}", "lowsim", "generate", "--src", source, "--n", b.n_synthetic,
            "--params", params, "--out", out / "synthetic" / method, "--manifest", manifest,
            "--size", b.synthetic_size, "--seed", exp.seed, "--workers", b.workers, "--no-progress", *sampler)
    return manifest


def main_params(exp: Experiment) -> Path:
    """The params file of the main pipeline."""
    return exp.params if exp.params is not None else exp.out / "params" / f"{exp.method}.json"


def merged_sources(exp: Experiment) -> Path:
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
