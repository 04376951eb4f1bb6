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


def gt_mean_of(exp: Experiment, row: Row) -> float:
    """A row's mean GT-mean PSNR, read from its per-image CSV (NaN where the CSV has none)."""
    import pandas as pd

    path = exp.docs / row.csv
    if not row.csv or not path.is_file():
        return math.nan
    frame = pd.read_csv(path)
    return float(frame["psnr_gt_mean"].mean()) if "psnr_gt_mean" in frame else math.nan


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
        "GT-mean PSNR (the output scaled to the target's mean brightness before scoring) is a diagnostic: "
        "what a row restores beyond exposure.",
        "",
        "| row | PSNR (dB) | GT-mean PSNR (dB) | SSIM | training pairs | budget (iterations × batch) | "
        "train time (s) | per-image CSV |",
        "|---|---:|---:|---:|---|---|---:|---|",
    ]
    for r in exp.rows:
        lines.append(f"| {r.name} | {r.psnr:.2f} | {gt_mean_of(exp, r):.2f} | {r.ssim:.3f} | {r.pairs_used} | "
                     f"{r.budget} | {r.seconds:.0f} | [{Path(r.csv).name}]({r.csv}) |")
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

    paths = [docs / "results" / f"{slug(f'zoo-{m}-finetuned-10')}.csv" for m in (model, best)]
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
    atomic_write_text(page, replace_section(old, zoo_section(rows, exp, n_finetune_pairs)))
    return page
