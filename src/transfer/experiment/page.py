"""The experiment's results page and files: docs/results.md (the Table 1 rows, stage times, figures; the zoo
section between two markers, rewritten in place by a zoo-only run; notes after a marker, kept by every rewrite),
docs/results.json, and docs/results/zoo.csv."""
from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Sequence

from lowsim.safe_io import atomic_write_text
from transfer.experiment.runner import Experiment, Row, slug

# The founding paper's own numbers (Table 1, on SID, their pipeline): for reference only.
PAPER_TABLE1 = {"synthetic test set": 15.73, "zero-shot on SID": 6.33, "fine-tuned on 10% of SID": 10.19}
SECTION_START = "<!-- zoo:start (written by `transfer experiment`; edits inside are overwritten) -->"
SECTION_END = "<!-- zoo:end -->"
ZOO_CSV = "zoo.csv"
NOTES_MARKER = "<!-- notes: kept when `transfer experiment` rewrites this page -->"


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


def kept_sections(page: Path) -> list[str]:
    """What a rewrite of results.md keeps: the zoo section (until a zoo run replaces it) and the notes."""
    if not page.is_file():
        return []
    text, kept = page.read_text(), []
    section = find_section(text)
    if section is not None:
        kept.append(section + "\n")
    if NOTES_MARKER in text:
        kept.append(NOTES_MARKER + text.split(NOTES_MARKER, 1)[1])
    return kept


def shown_path(path: Path) -> str:
    """A data path as the page shows it: relative to the working directory (the repository), never a
    machine's absolute path."""
    return Path(os.path.relpath(Path(path).resolve(), Path.cwd())).as_posix()


def with_spread(mean: float, sd: float) -> str:
    """'17.32' or, over several seeds, '17.32 ± 0.41'."""
    return f"{mean:.2f}" if math.isnan(sd) else f"{mean:.2f} ± {sd:.2f}"


def csv_links(row: Row) -> str:
    """Links to a row's per-image CSV(s)."""
    return ", ".join(f"[{Path(c).name}]({c})" for c in row.csv.split(", ") if c)


def row_line(row: Row) -> str:
    """One markdown table line of a results row."""
    seeds = " / ".join(f"{p:.2f}" for p in row.seed_psnr) or "-"
    return (f"| {row.name} | {with_spread(row.psnr, row.psnr_sd)} | {with_spread(row.gt_mean, row.gt_mean_sd)} | "
            f"{row.ssim:.3f} | {seeds} | {row.pairs_used} | {row.budget} | {row.seconds:.0f} | {csv_links(row)} |")


def write_results(exp: Experiment, n_pool: int, n_val: int, total_seconds: float) -> Path:
    """docs/results.md: the table, the stage times, the command and the machine."""
    lines = [
        "# Table 1 on real pairs",
        "",
        f"Real pairs: `{shown_path(exp.pairs)}` — {n_pool} in the training pool, {n_val} in the validation split "
        "(by a hash of the file name; the validation split is never calibrated, trained or tuned on). "
        f"Synthetic sources: {', '.join(f'`{shown_path(c)}`' for c in exp.clean)}.",
        "",
        f"Command: `{exp.command}`",
        "",
        f"Machine: {machine_description()}. Whole loop: {total_seconds / 60:.1f} min.",
        "",
        f"Network: `{exp.budget.model}` (width {exp.budget.width}, {exp.budget.patch}² patches). Rows trained on "
        "real pairs are the mean ± standard deviation over the subset seeds (each seed its own subset of the "
        "pool, its own held-out pool pairs picking the best checkpoint); the per-seed PSNRs are listed. "
        "GT-mean PSNR (the output scaled to the target's mean brightness before scoring) is a diagnostic: "
        "what a row restores beyond exposure.",
        "",
        "| row | PSNR (dB) | GT-mean PSNR (dB) | SSIM | PSNR per seed | training pairs | budget (iterations × batch) "
        "| train time per run (s) | per-image CSV |",
        "|---|---:|---:|---:|---|---|---|---:|---|",
    ]
    lines += [row_line(r) for r in exp.rows]
    lines += ["", "The founding paper's own numbers (theirs, on SID, not comparable data; for reference only):", "",
              "| row (paper, SID) | PSNR (dB) |", "|---|---:|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in PAPER_TABLE1.items()]
    lines += ["", "## Stage times", "", "| stage | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in exp.stage_seconds.items()]
    lines += ["", "## Figures", "",
              f"- Calibration histograms (paper Fig. 2): ![](fig2_calibration_{exp.method}.png)",
              "- Degradation strip (paper Fig. 3): ![](fig3_degradation.png)",
              "- Training curves (paper Fig. 5): ![](fig5_curves_pretrain.png) ![](fig5_curves_finetune.png)",
              "- Validation images, dark / zero-shot / fine-tuned / scratch / truth (paper Fig. 7): "
              "![](fig7_comparison.png)", ""]
    path = exp.docs / "results.md"
    lines += kept_sections(path)
    atomic_write_text(path, "\n".join(lines))
    atomic_write_text(exp.docs / "results.json", json.dumps({"rows": [asdict(r) for r in exp.rows],
                                                            "stages": exp.stage_seconds,
                                                            "budget": asdict(exp.budget)}, indent=2))
    print(path.read_text())
    return path


def write_zoo_csv(path: Path, rows: Sequence[ZooRow]) -> None:
    """docs/results/zoo.csv, one line per model (written atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=[f.name for f in fields(ZooRow)])
    writer.writeheader()
    writer.writerows(asdict(r) for r in rows)
    atomic_write_text(path, buffer.getvalue())


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
             f"{b.zoo_finetune_iters} iterations at lr {b.zoo_finetune_lr:g} on the same {n_finetune_pairs} (10% of "
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
    paths = [docs / "results" / f"{slug(f'zoo-{m}-finetuned-10')}.csv" for m in (model, best)]
    return paired_difference([paths[0]], [paths[1]])


def paired_difference(a_csvs: Sequence[Path], b_csvs: Sequence[Path]) -> tuple[float, float] | None:
    """Mean and standard error over images of PSNR(a) − PSNR(b), each image's PSNR first averaged over its row's
    CSVs (one per seed); None when a CSV is missing or fewer than 2 images are shared."""
    import numpy as np
    import pandas as pd

    if not a_csvs or not b_csvs or not all(p.is_file() for p in [*a_csvs, *b_csvs]):
        return None
    a, b = (pd.concat([pd.read_csv(p).set_index("name")["psnr"] for p in csvs], axis=1).mean(axis=1)
            for csvs in (a_csvs, b_csvs))
    diff = (a - b).dropna()
    if len(diff) < 2:
        return None
    return float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(diff)))


def find_section(page: str, start: str = SECTION_START, end: str = SECTION_END) -> str | None:
    """A marked section of a results page (the zoo's by default), markers included (None when it has none)."""
    if start not in page or end not in page:
        return None
    return start + page.split(start, 1)[1].split(end, 1)[0] + end


def replace_section(page: str, section: Sequence[str], start: str = SECTION_START, end: str = SECTION_END) -> str:
    """`page` with its marked section (the zoo's by default) replaced by `section` (appended when it has none)."""
    text, old = "\n".join(section), find_section(page, start, end)
    if old is not None:
        return page.replace(old, text, 1)
    return page.rstrip("\n") + "\n\n" + text + "\n"


def update_results_page(exp: Experiment, rows: Sequence[ZooRow], n_finetune_pairs: str) -> Path:
    """Write docs/results/zoo.csv and put the zoo section into docs/results.md (atomically)."""
    write_zoo_csv(exp.docs / "results" / ZOO_CSV, rows)
    page = exp.docs / "results.md"
    old = page.read_text() if page.is_file() else "# Table 1 on real pairs\n"
    atomic_write_text(page, replace_section(old, zoo_section(rows, exp, n_finetune_pairs)))
    return page


RECIPES_START = "<!-- recipes:start (written by `transfer experiment --recipes`; edits inside are overwritten) -->"
RECIPES_END = "<!-- recipes:end -->"


def seed_csvs(docs: Path, name: str, seeds: Sequence[int]) -> list[Path]:
    """The per-image CSVs of a fine-tuned row, one per subset seed (as table1.finetune_row writes them)."""
    return [docs / "results" / f"{slug(f'{name} seed {seed}')}.csv" for seed in seeds]


def recipe_section(exp: Experiment, recipes: Sequence[str], calibrated_row: str) -> list[str]:
    """The markdown lines of the recipes section: per recipe, calibrated − recipe fine-tuned PSNR per image."""
    seeds = exp.budget.subset_seeds
    lines = [RECIPES_START, "", "## Calibrated data against the data a user would make instead", "",
             f"Per recipe (docs/recipes.md): the per-image PSNR difference of the calibrated row "
             f"\"{calibrated_row}\" minus the recipe's, each image's PSNR first averaged over subset seeds "
             f"{', '.join(map(str, seeds))}; mean ± standard error over the validation images.", "",
             "| recipe | calibrated − recipe, fine-tuned 10% PSNR (dB, ± s.e.) |", "|---|---:|"]
    ours = seed_csvs(exp.docs, calibrated_row, seeds)
    for recipe in recipes:
        gap = paired_difference(ours, seed_csvs(exp.docs, f"recipe {recipe}: {calibrated_row}", seeds))
        lines.append(f"| {recipe} | {'-' if gap is None else f'{gap[0]:+.2f} ± {gap[1]:.2f}'} |")
    return lines + ["", RECIPES_END]


def update_recipe_section(exp: Experiment, recipes: Sequence[str], calibrated_row: str) -> Path:
    """Put the recipes section into docs/results.md (atomically)."""
    page = exp.docs / "results.md"
    old = page.read_text() if page.is_file() else "# Table 1 on real pairs\n"
    section = recipe_section(exp, recipes, calibrated_row)
    atomic_write_text(page, replace_section(old, section, RECIPES_START, RECIPES_END))
    return page
