"""The founding paper's Table 1 on real pairs, end to end: split, calibrate, generate, pretrain, zero-shot,
fine-tune on subsets of the pool, train from scratch, evaluate, and the figures (with the model-zoo rows of
transfer.experiment.zoo); docs/results.md is written by transfer.experiment.page."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from lowsim.pairs import find_pairs
from transfer.evaluate import write_rows
from transfer.experiment.page import update_results_page, write_results
from transfer.experiment.runner import (Experiment, Row, main_params, make_synthetic, merged_sources, read_means, slug,
                                        subset_csvs)
from transfer.experiment.zoo import run_zoo


def run_experiment(exp: Experiment, *, paper_ablation: bool = True, zoo: bool = True) -> Path:
    """Split, calibrate, generate, pretrain, fine-tune, evaluate (and the zoo rows); write docs/results.md."""
    b, out = exp.budget, exp.out
    out.mkdir(parents=True, exist_ok=True)
    (exp.docs / "results").mkdir(parents=True, exist_ok=True)
    wall = time.perf_counter()
    pool_csv, val_csv, n_pool, n_val = exp.split_real_pairs()
    train_args = ["--width", b.width, "--patch", b.patch, "--batch", b.batch, "--seed", exp.seed, "--quiet"]
    pretrain_all(exp, pool_csv, [exp.method, "paper"] if paper_ablation else [exp.method], train_args)
    reference_rows(exp, pool_csv, val_csv)
    finetune_rows(exp, pool_csv, val_csv, train_args, paper_ablation)
    zoo_rows, zoo_pairs = [], 0
    if zoo and b.zoo_models:
        zoo_rows, zoo_pairs = run_zoo(exp, b.zoo_models, out / "manifests" / f"{exp.method}.parquet", pool_csv, val_csv)
    _copy_curves(exp)
    _comparison_grid(exp, val_csv)
    page = write_results(exp, n_pool, n_val, time.perf_counter() - wall)
    if zoo_rows:
        update_results_page(exp, zoo_rows, f"{zoo_pairs} real pairs")
    return page


def pretrain_all(exp: Experiment, pool_csv: Path, methods: list[str], train_args: list) -> None:
    """Calibrate, generate and pretrain with each pipeline (the main one, paper); the degradation strip (Fig. 3)."""
    b, out = exp.budget, exp.out
    source = merged_sources(exp)
    for method in methods:
        manifest = make_synthetic(exp, method, pool_csv, source)
        iters = b.pretrain_iters if method == exp.method else b.paper_pretrain_iters
        exp.run(f"pretrain-{method}", "transfer", "pretrain", "--manifest", manifest,
                "--run-dir", out / "runs" / f"pretrain-{method}", "--iters", iters, *train_args)
    exp.run("preview", "lowsim", "preview", "--src", _first_image(source), "--params", main_params(exp),
            "--seed", exp.seed, "--out", exp.docs / "fig3_degradation.png")


def reference_rows(exp: Experiment, pool_csv: Path, val_csv: Path) -> None:
    """The synthetic test set, the identity and fixed-curve floors, and the zero-shot row."""
    b, out, docs = exp.budget, exp.out, exp.docs
    pre = out / "runs" / f"pretrain-{exp.method}"
    pre_budget = f"{b.pretrain_iters} it × {b.batch}"
    out_csv = docs / "results" / "synthetic-test.csv"
    exp.run("evaluate-synthetic-test", "transfer", "evaluate", "--checkpoint", pre, "--manifest",
            out / "manifests" / f"{exp.method}.parquet", "--split", "test", "--out", out_csv)
    exp.rows.append(Row("synthetic test set (pretrained, ours)", *read_means(out_csv), f"{b.n_synthetic} synthetic",
                        pre_budget, exp.stage_seconds[f"pretrain-{exp.method}"], str(out_csv.relative_to(docs))))
    exp.evaluate("identity (dark input)", None, val_csv, pairs_used="0", budget="-", seconds=0.0)
    fixed_gamma_floor(exp, pool_csv, val_csv)
    exp.evaluate("zero-shot (pretrained only)", pre, val_csv, pairs_used="0 real", budget=pre_budget,
                 seconds=exp.stage_seconds[f"pretrain-{exp.method}"])


def finetune_rows(exp: Experiment, pool_csv: Path, val_csv: Path, train_args: list, paper_ablation: bool) -> None:
    """Fine-tuned and from-scratch rows on seeded subsets of the pool (and the paper pipeline's)."""
    b = exp.budget
    pre = exp.out / "runs" / f"pretrain-{exp.method}"
    common = dict(pool_csv=pool_csv, val_csv=val_csv, train_args=train_args)
    finetune_row(exp, "fine-tuned 10%, last 2 blocks", 0.1, "--trainable-blocks", "2", checkpoint=pre, **common)
    finetune_row(exp, "fine-tuned 10%, all layers", 0.1, "--all", checkpoint=pre, **common)
    finetune_row(exp, "fine-tuned 5%, last 2 blocks", 0.05, "--trainable-blocks", "2", checkpoint=pre, **common)
    finetune_row(exp, "fine-tuned 25%, last 2 blocks", 0.25, "--trainable-blocks", "2", checkpoint=pre, **common)
    finetune_row(exp, "scratch 10% (same budget)", 0.1, checkpoint=None, **common)
    finetune_row(exp, "scratch 100% of the pool", 1.0, checkpoint=None, iters=b.scratch_full_iters, **common)
    if paper_ablation:
        paper_pre = exp.out / "runs" / "pretrain-paper"
        exp.evaluate("paper pipeline: zero-shot", paper_pre, val_csv, pairs_used="0 real",
                     budget=f"{b.paper_pretrain_iters} it × {b.batch}", seconds=exp.stage_seconds["pretrain-paper"])
        finetune_row(exp, "paper pipeline: fine-tuned 10%, last 2 blocks", 0.1, "--trainable-blocks", "2",
                     checkpoint=paper_pre, **common)


def finetune_row(exp: Experiment, name: str, frac: float, *extra: str | Path, pool_csv: Path, val_csv: Path,
                 train_args: list, checkpoint: Path | None, iters: int | None = None) -> None:
    """Train on a seeded `frac` of the pool (fine-tune `checkpoint`, or from scratch without one); pool pairs
    outside it (never val) pick the best checkpoint; score it on val as a row."""
    b = exp.budget
    iters = b.finetune_iters if iters is None else iters
    run_dir = exp.out / "runs" / slug(name)
    train_csv, holdout_csv, used = subset_csvs(pool_csv, frac, exp.seed, exp.out / "pairs" / slug(name))
    args: list[str | Path] = ["--pairs", train_csv, "--layout", "csv", "--no-val-split", "--frac", 1.0,
                              "--run-dir", run_dir, *train_args]
    if holdout_csv is not None:
        args += ["--val-pairs", holdout_csv, "--val-limit", b.holdout_val]
    if checkpoint is None:
        exp.run(slug(name), "transfer", "train", "--iters", iters, *args, *extra)
        budget = f"{iters} it × {b.batch}, lr 1e-3"
    else:
        exp.run(slug(name), "transfer", "finetune", "--checkpoint", checkpoint, "--iters", iters,
                "--lr", b.finetune_lr, *args, *extra)
        budget = f"{iters} it × {b.batch}, lr {b.finetune_lr:g}"
    if holdout_csv is not None:
        budget += f", best checkpoint on {b.holdout_val} held-out pool pairs"
    exp.evaluate(name, run_dir, val_csv, pairs_used=f"{used} real", budget=budget,
                 seconds=exp.stage_seconds[slug(name)])


def fixed_gamma_floor(exp: Experiment, pool_csv: Path, val_csv: Path) -> Row:
    """A classical floor: one global gain·x^(1/γ) curve, chosen on the training pool, applied to val."""
    from lowsim.pairs import read_pair
    from transfer.metrics import psnr, psnr_gt_mean, ssim

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
        rows.append({"name": pair.name, "psnr": psnr(out, bright), "ssim": ssim(out, bright),
                     "psnr_gt_mean": psnr_gt_mean(out, bright)})
    out_csv = exp.docs / "results" / "fixed-gamma.csv"
    write_rows(out_csv, rows)
    psnr_mean, ssim_mean = read_means(out_csv)
    row = Row(f"fixed curve {k:g}·x^(1/{g:g}) (chosen on the pool)", psnr_mean, ssim_mean, "0 (curve fitted on "
              f"{len(pool)} pool pairs)", "-", time.perf_counter() - start, str(out_csv.relative_to(exp.docs)))
    exp.rows.append(row)
    return row


def _first_image(folder: Path) -> Path:
    from lowsim.imageio import list_images

    return list_images(folder)[0]


def _copy_curves(exp: Experiment) -> None:
    """Fig. 5: the training curves of the pretraining and the 10% fine-tune."""
    for run, name in ((f"pretrain-{exp.method}", "fig5_curves_pretrain.png"),
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
    columns = [("dark", None), ("zero-shot", f"pretrain-{exp.method}"), ("fine-tuned 10%", "fine-tuned-10-last-2-blocks"),
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
