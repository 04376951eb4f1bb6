"""Table 1's recipe rows (`transfer experiment --recipes generic,unprocessing,uncalibrated`): the data a user would
make instead of lowsim's calibrated data, at the main row's budget. Per recipe: `lowsim generate --recipe` at the
same n, size and seed; pretrain the same network for the same iterations; zero-shot; fine-tune 10% as the main
fine-tuned row (the first of `--finetune-methods`, at the same rate) over the same subset seeds. The results page
shows, per recipe, the paired per-image difference of the calibrated fine-tuned row against the recipe's
(transfer.experiment.page.recipe_section)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from lowsim.errors import LowsimError
from transfer.experiment.runner import Experiment, Row, merged_sources

EXPERIMENT_RECIPES = ("generic", "unprocessing", "uncalibrated")  # calibrated is the main row itself


def parse_recipes(text: str | None) -> tuple[str, ...]:
    """'generic,unprocessing' -> ('generic', 'unprocessing'); an unknown or repeated name is a one-line error."""
    if not text:
        return ()
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [n for n in names if n not in EXPERIMENT_RECIPES]
    if unknown or len(set(names)) != len(names):
        raise LowsimError(f"--recipes takes distinct names among {', '.join(EXPERIMENT_RECIPES)} (calibrated is the "
                          f"main row); got {text!r}")
    return names


def row_name(recipe: str, what: str) -> str:
    """A recipe row's name, e.g. 'recipe generic: zero-shot'."""
    return f"recipe {recipe}: {what}"


def generate_recipe(exp: Experiment, recipe: str, source: Path) -> Path:
    """`lowsim generate --recipe` at the main row's n, size and seed; returns the manifest."""
    b = exp.budget
    manifest = exp.out / "manifests" / f"recipe-{recipe}.parquet"
    exp.run(f"generate-recipe-{recipe}", "lowsim", "generate", "--src", source, "--n", b.n_synthetic,
            "--recipe", recipe, "--out", exp.out / "synthetic" / f"recipe-{recipe}", "--manifest", manifest,
            "--size", b.synthetic_size, "--seed", exp.seed, "--workers", b.workers, "--no-progress")
    return manifest


def pretrain_recipe(exp: Experiment, recipe: str, manifest: Path, train_args: list) -> Path:
    """Pretrain the main row's network for its iterations on a recipe's data; returns the run folder."""
    b = exp.budget
    run_dir = exp.out / "runs" / f"pretrain-recipe-{recipe}"
    exp.train(f"pretrain-recipe-{recipe}", run_dir, "pretrain", "--manifest", manifest, "--model", b.model,
              "--iters", b.pretrain_iters, "--seed", exp.seed, *train_args)
    return run_dir


def recipe_rows(exp: Experiment, recipes: Sequence[str], pool_csv: Path, val_csv: Path, pretrain_args: list,
                train_args: list) -> list[Row]:
    """Per recipe: generate, pretrain, the zero-shot row and the fine-tuned 10% row (same subset seeds)."""
    from transfer.experiment.table1 import finetune_row, main_finetune_row

    b, source, rows = exp.budget, merged_sources(exp), []
    for recipe in recipes:
        pre = pretrain_recipe(exp, recipe, generate_recipe(exp, recipe, source), pretrain_args)
        seconds = exp.stage_seconds[f"pretrain-recipe-{recipe}"]
        rows.append(exp.evaluate(row_name(recipe, "zero-shot"), pre, val_csv, pairs_used="0 real",
                                 budget=f"{b.pretrain_iters} it × {b.batch}", seconds=seconds))
        name, frac, how = main_finetune_row(exp)
        rows.append(finetune_row(exp, row_name(recipe, name), frac, *how, checkpoint=pre, pool_csv=pool_csv,
                                 val_csv=val_csv, train_args=train_args))
    return rows
