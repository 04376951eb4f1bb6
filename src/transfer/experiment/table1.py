"""The founding paper's Table 1 on real pairs, end to end: split, calibrate, generate, pretrain, zero-shot,
fine-tune on subsets of the pool, train from scratch, evaluate, and the figures (with the model-zoo rows of
transfer.experiment.zoo); docs/results.md is written by transfer.experiment.page."""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from lowsim.pairs import find_pairs
from transfer.evaluate import write_rows
from transfer.experiment.page import update_recipe_section, update_results_page, write_results
from transfer.experiment.runner import (Experiment, Row, main_params, make_synthetic, merged_sources, read_scores,
                                        seeded_row, slug, subset_csvs)
from transfer.experiment.zoo import run_zoo
from transfer.models import declared_options

# The fine-tuning rows by method (`--finetune-methods`): name, share of the pool, transfer finetune's flags
FINETUNE_ROWS: dict[str, tuple[str, float, tuple[str, ...]]] = {
    "last-blocks": ("fine-tuned 10%, last 2 blocks", 0.1, ("--method", "last-blocks", "--trainable-blocks", "2")),
    "adapter": ("fine-tuned 10%, adapter", 0.1, ("--method", "adapter")),
    "all": ("fine-tuned 10%, all layers", 0.1, ("--method", "all")),
}


def main_finetune_row(exp: Experiment) -> tuple[str, float, tuple[str, ...]]:
    """The fine-tuning row that figures and recipe rows follow: the first of the experiment's methods."""
    return FINETUNE_ROWS[exp.budget.finetune_methods[0]]


CURVE_GRID = [(g, k) for g in (1.0, 1.5, 2.0, 2.5, 3.0, 4.0) for k in (1.0, 1.5, 2.0, 3.0, 4.0, 6.0)]


def run_experiment(exp: Experiment, *, paper_ablation: bool = True, zoo: bool = True,
                   recipes: Sequence[str] = ()) -> Path:
    """Split, calibrate, generate, pretrain, fine-tune, evaluate (and the zoo rows, and the rows of each recipe in
    transfer.experiment.recipes); write docs/results.md."""
    b, out = exp.budget, exp.out
    out.mkdir(parents=True, exist_ok=True)
    (exp.docs / "results").mkdir(parents=True, exist_ok=True)
    wall = time.perf_counter()
    pool_csv, val_csv, n_pool, n_val = exp.split_real_pairs()
    curve = fit_fixed_curve(pool_csv)
    train_args = ["--width", b.width, "--patch", b.patch, "--batch", b.batch, "--quiet"]
    model_args = model_init_args(b.model, curve)
    pretrain_all(exp, pool_csv, [exp.method, "paper"] if paper_ablation else [exp.method], train_args + model_args)
    reference_rows(exp, pool_csv, val_csv, curve)
    finetune_rows(exp, pool_csv, val_csv, train_args, paper_ablation, model_args)
    if recipes:
        from transfer.experiment.recipes import recipe_rows

        recipe_rows(exp, recipes, pool_csv, val_csv, train_args + model_args, train_args)
    zoo_rows, zoo_pairs = [], 0
    if zoo and b.zoo_models:
        zoo_rows, zoo_pairs = run_zoo(exp, b.zoo_models, out / "manifests" / f"{exp.method}.parquet", pool_csv, val_csv)
    _copy_curves(exp)
    _comparison_grid(exp, val_csv)
    page = write_results(exp, n_pool, n_val, time.perf_counter() - wall)
    if zoo_rows:
        update_results_page(exp, zoo_rows, f"{zoo_pairs} real pairs")
    if recipes:
        update_recipe_section(exp, recipes, main_finetune_row(exp)[0])
    return page


def model_init_args(model: str, curve: tuple[float, float]) -> list:
    """A new model's options from the pool: one with a tone-curve start (global_local) starts at the curve fitted
    on the pool."""
    declared = {option.name for option in declared_options(model)}
    return ["--curve-gamma", curve[0], "--curve-gain", curve[1]] if "curve_gain" in declared else []


def pretrain_all(exp: Experiment, pool_csv: Path, methods: list[str], train_args: list) -> None:
    """Calibrate, generate and pretrain with each pipeline (the main one, paper); the degradation strip (Fig. 3)."""
    b, out = exp.budget, exp.out
    source = merged_sources(exp)
    for method in methods:
        manifest = make_synthetic(exp, method, pool_csv, source)
        iters = b.pretrain_iters if method == exp.method else b.paper_pretrain_iters
        exp.train(f"pretrain-{method}", out / "runs" / f"pretrain-{method}", "pretrain", "--manifest", manifest,
                  "--model", b.model, "--iters", iters, "--seed", exp.seed, *train_args)
    exp.run("preview", "lowsim", "preview", "--src", _first_image(source), "--params", main_params(exp),
            "--seed", exp.seed, "--out", exp.docs / "fig3_degradation.png")


def reference_rows(exp: Experiment, pool_csv: Path, val_csv: Path, curve: tuple[float, float]) -> None:
    """The synthetic test set, the identity and fixed-curve floors, and the zero-shot row."""
    b, out, docs = exp.budget, exp.out, exp.docs
    pre = out / "runs" / f"pretrain-{exp.method}"
    pre_budget = f"{b.pretrain_iters} it × {b.batch}"
    out_csv = docs / "results" / "synthetic-test.csv"
    exp.run("evaluate-synthetic-test", "transfer", "evaluate", "--checkpoint", pre, "--manifest",
            out / "manifests" / f"{exp.method}.parquet", "--split", "test", "--out", out_csv)
    exp.add_row(seeded_row("synthetic test set (pretrained, ours)", [read_scores(out_csv)], docs,
                           pairs_used=f"{b.n_synthetic} synthetic", budget=pre_budget,
                           seconds=exp.stage_seconds[f"pretrain-{exp.method}"]))
    exp.evaluate("identity (dark input)", None, val_csv, pairs_used="0", budget="-", seconds=0.0)
    fixed_gamma_floor(exp, pool_csv, val_csv, curve)
    exp.evaluate("zero-shot (pretrained only)", pre, val_csv, pairs_used="0 real", budget=pre_budget,
                 seconds=exp.stage_seconds[f"pretrain-{exp.method}"])


def finetune_rows(exp: Experiment, pool_csv: Path, val_csv: Path, train_args: list, paper_ablation: bool,
                  model_args: list) -> None:
    """Fine-tuned and from-scratch rows on seeded subsets of the pool (and the paper pipeline's); a model from
    scratch gets the same start options (`model_args`) as the pretrained one."""
    b = exp.budget
    pre = exp.out / "runs" / f"pretrain-{exp.method}"
    common = dict(pool_csv=pool_csv, val_csv=val_csv, train_args=train_args)
    for method in b.finetune_methods:
        name, frac, how = FINETUNE_ROWS[method]
        finetune_row(exp, name, frac, *how, *augment_args(exp), checkpoint=pre, **common)
    finetune_row(exp, "scratch 10% (same budget)", 0.1, *model_args, checkpoint=None, **common)
    finetune_row(exp, "scratch 100% of the pool", 1.0, *model_args, checkpoint=None, iters=b.scratch_full_iters,
                 **common)
    if paper_ablation:
        paper_pre = exp.out / "runs" / "pretrain-paper"
        exp.evaluate("paper pipeline: zero-shot", paper_pre, val_csv, pairs_used="0 real",
                     budget=f"{b.paper_pretrain_iters} it × {b.batch}", seconds=exp.stage_seconds["pretrain-paper"])
        finetune_row(exp, "paper pipeline: fine-tuned 10%, last 2 blocks", 0.1, "--trainable-blocks", "2",
                     checkpoint=paper_pre, **common)


def run_name(name: str, seed: int) -> str:
    """The run folder (and stage) name of one subset seed of a row."""
    return f"{slug(name)}-seed-{seed}"


def augment_args(exp: Experiment) -> list[str | Path]:
    """transfer finetune's noise-augmentation flags for the main fine-tuned rows (none when it is off): draws from
    the main pipeline's params, the ones its pretraining data came from."""
    prob = exp.budget.finetune_augment_prob
    return ["--augment-params", main_params(exp), "--augment-prob", prob] if prob > 0 else []


def finetune_row(exp: Experiment, name: str, frac: float, *extra: str | Path, pool_csv: Path, val_csv: Path,
                 train_args: list, checkpoint: Path | None, iters: int | None = None) -> Row:
    """For each subset seed: train on that seed's `frac` of the pool (fine-tune `checkpoint`, or from scratch
    without one), pool pairs outside it (never val) pick the best checkpoint, score it on val; one row over the
    seeds."""
    b = exp.budget
    iters = b.finetune_iters if iters is None else iters
    scores, seconds, used = [], [], 0
    for seed in b.subset_seeds:
        stage = run_name(name, seed)
        train_csv, holdout_csv, used = subset_csvs(pool_csv, frac, seed, exp.out / "pairs" / stage)
        args: list[str | Path] = ["--pairs", train_csv, "--layout", "csv", "--no-val-split", "--frac", 1.0,
                                  "--seed", seed, "--iters", iters, *train_args]
        if holdout_csv is not None:
            args += ["--val-pairs", holdout_csv, "--val-limit", b.holdout_val]
        run_dir = exp.out / "runs" / stage
        if checkpoint is None:
            seconds.append(exp.train(stage, run_dir, "train", "--model", b.model, *args, *extra))
        else:
            seconds.append(exp.train(stage, run_dir, "finetune", "--checkpoint", checkpoint, "--lr", b.finetune_lr,
                                     *args, *extra))
        scores.append(exp.score(f"{name} seed {seed}", exp.out / "runs" / stage, val_csv))
    budget = f"{iters} it × {b.batch}, lr {1e-3 if checkpoint is None else b.finetune_lr:g}"
    if "--augment-prob" in extra:
        budget += f", noise augmentation of {b.finetune_augment_prob:g} of the patches"
    if frac < 1:
        budget += f", best checkpoint on {b.holdout_val} held-out pool pairs"
    seeds = f"subset seeds {', '.join(map(str, b.subset_seeds))}" if frac < 1 else \
        f"seeds {', '.join(map(str, b.subset_seeds))}"
    return exp.add_row(seeded_row(name, scores, exp.docs, pairs_used=f"{used} real ({seeds})", budget=budget,
                                  seconds=sum(seconds) / len(seconds)))


def apply_fixed_curve(dark: np.ndarray, g: float, k: float) -> np.ndarray:
    """The classical floor's curve: clip(k · x^(1/g))."""
    return np.clip(k * np.power(dark, 1.0 / g), 0.0, 1.0)


def fit_fixed_curve(pool_csv: Path, limit: int = 48) -> tuple[float, float]:
    """(g, k) of the best gain·x^(1/γ) curve on the grid, by mean PSNR over the first `limit` pool pairs."""
    from lowsim.pairs import read_pair
    from transfer.metrics import psnr

    pool = [read_pair(p) for p in find_pairs(pool_csv, layout="csv")[:limit]]
    score = {gk: np.mean([psnr(apply_fixed_curve(d, *gk), b) for d, b in pool]) for gk in CURVE_GRID}
    return max(score, key=score.get)


def fixed_gamma_floor(exp: Experiment, pool_csv: Path, val_csv: Path, curve: tuple[float, float]) -> Row:
    """A classical floor: one global gain·x^(1/γ) curve, chosen on the training pool, applied to val."""
    from lowsim.pairs import read_pair
    from transfer.metrics import psnr, psnr_gt_mean, ssim

    start = time.perf_counter()
    g, k = curve
    rows = []
    for pair in find_pairs(val_csv, layout="csv"):
        dark, bright = read_pair(pair)
        out = apply_fixed_curve(dark, g, k)
        rows.append({"name": pair.name, "psnr": psnr(out, bright), "ssim": ssim(out, bright),
                     "psnr_gt_mean": psnr_gt_mean(out, bright)})
    out_csv = exp.docs / "results" / "fixed-gamma.csv"
    write_rows(out_csv, rows)
    return exp.add_row(seeded_row(f"fixed curve {k:g}·x^(1/{g:g}) (chosen on the pool)", [read_scores(out_csv)],
                                  exp.docs, pairs_used="0 (curve fitted on up to 48 pool pairs)", budget="-",
                                  seconds=time.perf_counter() - start))


def _first_image(folder: Path) -> Path:
    from lowsim.imageio import list_images

    return list_images(folder)[0]


def _copy_curves(exp: Experiment) -> None:
    """Fig. 5: the training curves of the pretraining and the 10% fine-tune."""
    for run, name in ((f"pretrain-{exp.method}", "fig5_curves_pretrain.png"),
                      (run_name(main_finetune_row(exp)[0], exp.budget.subset_seeds[0]), "fig5_curves_finetune.png")):
        src = exp.out / "runs" / run / "curves.png"
        if src.is_file():
            shutil.copyfile(src, exp.docs / name)


def as_unit_float(img: np.ndarray) -> np.ndarray:
    """An image file's integer codes as floats in [0, 1] (floats unchanged), to score it against a pair's."""
    return img.astype(np.float32) / np.iinfo(img.dtype).max if np.issubdtype(img.dtype, np.integer) else img


def _comparison_grid(exp: Experiment, val_csv: Path, count: int = 3) -> None:
    """Fig. 7: dark / zero-shot / fine-tuned / scratch / truth for a few validation images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lowsim.pairs import read_pair
    from transfer.enhance import enhance_files

    pairs = find_pairs(val_csv, layout="csv")[:count]
    seed = exp.budget.subset_seeds[0]
    columns = [("dark", None), ("zero-shot", f"pretrain-{exp.method}"),
               ("fine-tuned 10%", run_name(main_finetune_row(exp)[0], seed)),
               ("scratch 10%", run_name("scratch 10% (same budget)", seed)), ("truth", None)]
    outputs: dict[str, list[Path]] = {}
    for label, run in columns:
        if run is not None:
            outputs[label] = list(enhance_files(exp.out / "runs" / run, [p.dark for p in pairs],
                                                exp.out / "fig7" / run, device="cpu"))
    fig, axes = plt.subplots(len(pairs), len(columns), figsize=(3 * len(columns), 2.4 * len(pairs)), squeeze=False)
    from lowsim.imageio import read_image
    from transfer.metrics import psnr

    for i, pair in enumerate(pairs):
        dark, bright = read_pair(pair)
        for j, (label, run) in enumerate(columns):
            img = dark if label == "dark" else bright if label == "truth" else as_unit_float(read_image(outputs[label][i]))
            axes[i, j].imshow(img)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if label != "truth":  # each tile's own score against the truth of its row
                axes[i, j].set_xlabel(f"{psnr(img, bright):.2f} dB", fontsize=9)
            if i == 0:
                axes[i, j].set_title(label)
    fig.tight_layout()
    fig.savefig(exp.docs / "fig7_comparison.png", dpi=80)
    plt.close(fig)
