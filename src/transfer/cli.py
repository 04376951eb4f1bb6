"""The `transfer` command line: pretrain, finetune, train (scratch baseline), evaluate, enhance, models.

User mistakes (TransferError / LowsimError, bad option values) print one line "error: ..." and exit 2, refused
reads and writes exit 1, a diverged run 3; never a traceback. Ctrl-C stops a training run after the step in flight,
saves `last`, says how to resume and exits 130.
"""
from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from lowsim.errors import LowsimError, printable

INTERRUPTED = 130  # the shell's code for a process stopped by SIGINT
_OWNS_PROCESS = False  # main() was called as the program (argv from sys.argv), so it may end the process at once


def _click_exceptions():  # noqa: ANN202 - a module
    """The exceptions of the click that typer runs on: its own copy (typer >= 0.26) or the click package."""
    try:
        from typer._click import exceptions
    except ImportError:
        from click import exceptions
    return exceptions


_CLICK = _click_exceptions()

app = typer.Typer(
    name="transfer",
    help="Train the SID U-Net on lowsim's synthetic pairs, fine-tune it on a few real pairs, evaluate, enhance.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)

# ---- options shared by the three training commands (typer has no option groups; these are reused) ----
RunDir = Annotated[Optional[Path], typer.Option("--run-dir", help="Run directory (default runs/<command>).")]
Model = Annotated[str, typer.Option("--model", help="Registered model name (see `transfer models`).")]
FinetuneModel = Annotated[Optional[str], typer.Option("--model", help="Model name; must be the checkpoint's "
                                                                   "(default: the checkpoint's).")]
Norm = Annotated[Optional[str], typer.Option("--norm", help="Normalisation: none or batch (default: the model's "
                                                         "own; none for sid_unet and the plain/dense CNNs, batch "
                                                         "for estimate_enhance and vgg16_residual).")]
InferAlpha = Annotated[Optional[float], typer.Option(
    "--alpha", help="Restoration strength (>= 0) for models with an alpha input (estimate_enhance); default: "
                    "the checkpoint's configured alpha.")]
Width = Annotated[Optional[int], typer.Option("--width", help="Base width (channels of the first block); "
                                                         "default 16 (SID uses 32).")]
Epochs = Annotated[Optional[float], typer.Option("--epochs", help="Budget in passes over the training images "
                                                               "(one patch per image per pass).")]
Iters = Annotated[Optional[int], typer.Option("--iters", help="Budget in optimizer steps (default 1000).")]
Patch = Annotated[int, typer.Option("--patch", help="Patch side in input pixels (packed pixels for raw input); "
                                                    "a multiple of 32 (sRGB) or 16 (raw).")]
Batch = Annotated[int, typer.Option("--batch", help="Global batch size (split across torchrun processes).")]
Lr = Annotated[float, typer.Option("--lr", help="Adam learning rate.")]
Loss = Annotated[str, typer.Option("--loss", help="l1 (the paper's) or l1+ssim (L1 + 0.2·(1 − SSIM)).")]
Schedule = Annotated[str, typer.Option("--schedule", help="Learning-rate decay: cosine, step or constant.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed of weights, subset, order and patches.")]
ValEvery = Annotated[Optional[int], typer.Option("--val-every", help="Validate every N steps (default: 10 "
                                                                  "times per run).")]
SaveEvery = Annotated[Optional[int], typer.Option("--save-every", help="Save `last` every N steps "
                                                                    "(default: at each validation).")]
Patience = Annotated[Optional[int], typer.Option("--patience", help="Early stopping: stop after N validations "
                                                                 "without a better PSNR.")]
Workers = Annotated[Optional[int], typer.Option(
    "--workers", help="Loader processes per training process (default 0 when all images fit in the RAM cache, "
                      "else min(2, cores / processes on this machine - 1), the processes being torchrun's "
                      "LOCAL_WORLD_SIZE).")]
CacheMb = Annotated[float, typer.Option("--cache-mb", help="RAM budget for decoded images, MiB.")]
Device = Annotated[str, typer.Option("--device", help="auto (CUDA when present), cpu or cuda.")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue the interrupted run in --run-dir exactly.")]
StopAfter = Annotated[Optional[int], typer.Option("--stop-after", help="Leave after N steps of this invocation "
                                                                    "(continue later with --resume).")]
Tile = Annotated[int, typer.Option("--tile", help="Tile side (input pixels) for full-image inference.")]
Quiet = Annotated[bool, typer.Option("--quiet", help="No progress output.")]
Layout = Annotated[str, typer.Option("--layout", help="Pairs layout: auto, lol, sid or csv.")]
ValPairs = Annotated[Optional[Path], typer.Option("--val-pairs", help="Held-out validation pairs (never "
                                                                   "trained on).")]
ValSplit = Annotated[bool, typer.Option("--val-split/--no-val-split",
                                        help="Without --val-pairs: hold out the pairs lowsim.splits assigns to "
                                             "'val' (pool 80% / val 20% by name hash).")]
ValLimit = Annotated[Optional[int], typer.Option("--val-limit", help="Validate on the first N validation pairs.")]
Input = Annotated[Optional[str], typer.Option("--input", help="Input kind: srgb (default) or raw (packed Bayer "
                                                           "times the exposure ratio, as SID).")]


def with_model_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give a training command (which takes them as **model_options) a flag for every model-specific option the
    registered models declare (transfer.models.registry): `--depth`, `--alpha`, `--backbone-weights`, ..."""
    from transfer.models import all_declared_options

    signature = inspect.signature(command, eval_str=True)
    params = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    for name, (option, models) in all_declared_options().items():
        flag = typer.Option(option.flag, help=f"{', '.join(models)}: {option.help}")
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=Annotated[Optional[option.type], flag]))
    command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    return command


def _train(model_options: dict[str, Any] | None = None, **options: Any) -> None:
    """Build a TrainConfig from CLI options (model-specific options that were given; paths as strings) and run it."""
    from transfer.project import default_run_dir
    from transfer.train import TrainConfig, run_training

    options["model_options"] = {key: str(value) if isinstance(value, Path) else value
                                for key, value in (model_options or {}).items() if value is not None}
    options["progress"] = not options.pop("quiet")
    if options.get("run_dir") is None:
        options["run_dir"] = default_run_dir(str(options["mode"]))
    try:
        result = run_training(TrainConfig(**options))
    except KeyboardInterrupt as err:  # TrainingInterrupted says what was saved; a bare one came before step 1
        _interrupted(str(err) or f"run the same command with --resume to continue {options['run_dir']} from "
                                 "its last saved step (it starts afresh when none was saved)")
    if result["stop_reason"] == "stopped_after":
        typer.echo(f"stopped at step {result['steps']}/{result['total_steps']}; continue with --resume")


@app.command()
@with_model_options
def pretrain(
    manifest: Annotated[Optional[Path], typer.Option("--manifest", help="Parquet manifest written by `lowsim "
                                                     "generate` [the newest data/*/manifest.parquet].")] = None,
    params: Annotated[Optional[Path], typer.Option("--params", help="Instead of --manifest: make every training "
                                                   "pair on the fly from --src with this params file (or a "
                                                   "shipped name: lol), as `lowsim generate --size PATCH` would.")]
    = None,
    src: Annotated[Optional[Path], typer.Option("--src", help="With --params: the folder of clean photos to "
                                                "degrade ('train' photos train, 'val' photos validate).")] = None,
    sampler: Annotated[Optional[str], typer.Option("--sampler", help="With --params: how parameters are drawn, "
                                                   "normal or empirical (default: the params file's).")] = None,
    run_dir: RunDir = None, model: Model = "sid_unet", width: Width = None, norm: Norm = None, epochs: Epochs = None,
    iters: Iters = None, patch: Patch = 64, batch: Batch = 16, lr: Lr = 1e-3, loss: Loss = "l1",
    schedule: Schedule = "cosine",
    seed: Seed = 0, val_every: ValEvery = None, save_every: SaveEvery = None, patience: Patience = None,
    val_limit: ValLimit = None, workers: Workers = None, cache_mb: CacheMb = 4096.0, device: Device = "auto",
    resume: Resume = False, stop_after: StopAfter = None, tile: Tile = 512, quiet: Quiet = False,
    input_kind: Input = None, **model_options: Any,
) -> None:
    """Train from scratch on synthetic pairs: a manifest's (ok rows; split train trains, split val validates), or
    pairs made on the fly from --src photos with --params (transfer.onthefly)."""
    from transfer.project import manifest_or_default

    on_the_fly = params is not None or src is not None or sampler is not None
    _train(mode="pretrain", manifest=manifest if on_the_fly else manifest_or_default(manifest), params=params,
           src=src, sampler=sampler, run_dir=run_dir, model=model, width=width, norm=norm,
           input_kind=input_kind,
           model_options=model_options, epochs=epochs, iters=iters, patch=patch, batch=batch, lr=lr, loss=loss,
           schedule=schedule, seed=seed, val_every=val_every,
           save_every=save_every, patience=patience, val_limit=val_limit, workers=workers, cache_mb=cache_mb,
           device=device, resume=resume, stop_after=stop_after, tile=tile, quiet=quiet)


@app.command()
def finetune(
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", help="Pretrained run directory, checkpoint "
                                                       "folder or .safetensors file [the newest pretrain run in "
                                                       "runs/].")] = None,
    pairs: Annotated[Optional[Path], typer.Option("--pairs", help="Real pairs (LOL, SID or CSV layout) [the pairs "
                                                  "the newest params/*.json was calibrated on].")] = None,
    frac: Annotated[float, typer.Option("--frac", help="Share of the training pairs to use, in (0, 1] "
                                                       "(the paper: 0.1).")] = 0.1,
    trainable_blocks: Annotated[int, typer.Option("--trainable-blocks", help="Train the last N blocks "
                                                  "(the paper: 2, up4 and head).")] = 2,
    all_blocks: Annotated[bool, typer.Option("--all", help="Train every block (the same as --method all).")]
    = False,
    method: Annotated[str, typer.Option("--method", help="last-blocks (the last --trainable-blocks blocks), all, "
                                                         "or adapter: per-channel scales and a zero-initialised "
                                                         "1x1 branch on every convolution of the frozen model, "
                                                         "folded back into plain convolutions when saved.")]
    = "last-blocks",
    augment_params: Annotated[Optional[Path], typer.Option("--augment-params", help="Noise augmentation: replace "
                                                           "the dark input of a share of the training patches by "
                                                           "a synthetic one, made from the pair's bright patch "
                                                           "with a draw from this params file (or a shipped name: "
                                                           "lol); sRGB only [off].")] = None,
    augment_prob: Annotated[Optional[float], typer.Option("--augment-prob", help="With --augment-params: the share "
                                                          "of patches augmented, in [0, 1] [0.5].")] = None,
    layout: Layout = "auto", val_pairs: ValPairs = None, val_split: ValSplit = True, val_limit: ValLimit = None,
    run_dir: RunDir = None, model: FinetuneModel = None, width: Width = None, epochs: Epochs = None,
    iters: Iters = None, patch: Patch = 64, batch: Batch = 16, lr: Lr = 1e-3, loss: Loss = "l1",
    schedule: Schedule = "cosine",
    seed: Seed = 0, val_every: ValEvery = None, save_every: SaveEvery = None, patience: Patience = None,
    workers: Workers = None, cache_mb: CacheMb = 4096.0, device: Device = "auto", resume: Resume = False,
    stop_after: StopAfter = None, tile: Tile = 512, quiet: Quiet = False,
) -> None:
    """Fine-tune a pretrained model on a fraction of real pairs, all but the last N blocks frozen; the model, its
    options (depth, norm, alpha, ...) and weights are the checkpoint's."""
    from transfer.project import checkpoint_or_default, pairs_or_default

    checkpoint = checkpoint_or_default(checkpoint)
    pairs, layout = pairs_or_default(pairs, layout)
    _train(mode="finetune", checkpoint=checkpoint, pairs=pairs, frac=frac,
           trainable_blocks=None if all_blocks or method == "all" else trainable_blocks,
           method="all" if all_blocks else method, layout=layout, val_pairs=val_pairs,
           val_split=val_split, val_limit=val_limit, run_dir=run_dir, model=model, width=width, epochs=epochs,
           iters=iters, patch=patch, batch=batch, lr=lr, loss=loss, schedule=schedule, seed=seed, val_every=val_every,
           save_every=save_every, patience=patience, workers=workers, cache_mb=cache_mb, device=device,
           resume=resume, stop_after=stop_after, tile=tile, quiet=quiet, augment_params=augment_params,
           augment_prob=augment_prob)


@app.command()
@with_model_options
def train(
    pairs: Annotated[Path, typer.Option("--pairs", help="Real pairs (LOL, SID or CSV layout).")],
    frac: Annotated[float, typer.Option("--frac", help="Share of the training pairs to use, in (0, 1].")] = 1.0,
    input_kind: Input = None, layout: Layout = "auto", val_pairs: ValPairs = None, val_split: ValSplit = True,
    val_limit: ValLimit = None, run_dir: RunDir = None, model: Model = "sid_unet", width: Width = None,
    norm: Norm = None, epochs: Epochs = None, iters: Iters = None, patch: Patch = 64, batch: Batch = 16, lr: Lr = 1e-3,
    loss: Loss = "l1", schedule: Schedule = "cosine", seed: Seed = 0, val_every: ValEvery = None,
    save_every: SaveEvery = None,
    patience: Patience = None, workers: Workers = None, cache_mb: CacheMb = 4096.0, device: Device = "auto",
    resume: Resume = False, stop_after: StopAfter = None, tile: Tile = 512, quiet: Quiet = False,
    **model_options: Any,
) -> None:
    """Train the same model from scratch on real pairs (the baseline)."""
    _train(mode="scratch", pairs=pairs, frac=frac, input_kind=input_kind, layout=layout, val_pairs=val_pairs,
           val_split=val_split, val_limit=val_limit, run_dir=run_dir, model=model, width=width, norm=norm,
           model_options=model_options, epochs=epochs,
           iters=iters, patch=patch, batch=batch, lr=lr, loss=loss, schedule=schedule, seed=seed, val_every=val_every,
           save_every=save_every, patience=patience, workers=workers, cache_mb=cache_mb, device=device,
           resume=resume, stop_after=stop_after, tile=tile, quiet=quiet)


@app.command()
def evaluate(
    pairs: Annotated[Optional[Path], typer.Option("--pairs", help="Real pairs (LOL, SID or CSV layout).")] = None,
    manifest: Annotated[Optional[Path], typer.Option("--manifest", help="Or a lowsim manifest (synthetic pairs; "
                                                                       "--split test for its test set).")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", help="Run directory, checkpoint folder "
                                                                            "or .safetensors file.")] = None,
    identity: Annotated[bool, typer.Option("--identity", help="Score the dark input itself.")] = False,
    layout: Layout = "auto",
    split: Annotated[str, typer.Option("--split", help="all; for pairs the lowsim.splits part pool or val; for "
                                                       "a manifest its split column (train, val, test).")] = "all",
    out: Annotated[Optional[Path], typer.Option("--out", help="Per-image CSV (name,psnr,ssim,psnr_gt_mean).")]
    = None,
    report: Annotated[Optional[Path], typer.Option("--report", help="Folder for an HTML gallery: dark input, "
                                                   "output, target, PSNR and SSIM per image, sortable "
                                                   "(DIR/index.html).")] = None,
    alpha: InferAlpha = None, tile: Tile = 512, device: Device = "auto", quiet: Quiet = False,
    tta: Annotated[bool, typer.Option("--tta", help="Test-time augmentation: average the outputs of the image and "
                                                    "its three flips (4x the time).")] = False,
) -> None:
    """PSNR and SSIM of every pair (real pairs or a synthetic manifest) at full resolution; prints the means."""
    from transfer.evaluate import evaluate_checkpoint
    from transfer.paths import check_output_dir, check_output_file

    if out is not None:
        check_output_file(out, "--out")
    if report is not None:
        check_output_dir(report, "--report")

    def show(index: int, count: int, row: dict) -> None:
        if not quiet:
            typer.echo(f"[{index + 1}/{count}] {printable(row['name'])}: PSNR {row['psnr']:.2f} dB, "
                       f"SSIM {row['ssim']:.4f}")

    result = evaluate_checkpoint(checkpoint, pairs, layout=layout, split=split, identity=identity, out_csv=out,
                                 tile=tile, device=device, on_image=show, manifest=manifest, alpha=alpha,
                                 report=report, tta=tta)
    what = "identity (dark input)" if identity else printable(result["checkpoint"])
    if result["alpha"] is not None:
        what += f" (alpha {result['alpha']:g})"
    typer.echo(f"{what}: mean PSNR {result['psnr']:.3f} dB (GT-mean {result['psnr_gt_mean']:.3f} dB, a diagnostic), "
               f"mean SSIM {result['ssim']:.4f} over {result['count']} image(s)"
               + (f"; rows in {printable(out)}" if out else "")
               + (f"; gallery {printable(result['report'])}" if report else ""))


@app.command()
def enhance(
    images: Annotated[list[Path], typer.Argument(help="Images or folders of images (sRGB files, or raw files for "
                                                      "raw models).")],
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="Run directory, checkpoint folder or "
                                                                  ".safetensors file.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (PNG per input).")],
    ratio: Annotated[Optional[float], typer.Option("--ratio", help="Exposure amplification for raw input "
                                                                   "(SID: 100 to 300).")] = None,
    alpha: InferAlpha = None, tile: Tile = 512, device: Device = "auto",
) -> None:
    """Enhance image files with a checkpoint; writes <out>/<stem>.png."""
    from transfer.enhance import enhance_files

    for path in enhance_files(checkpoint, images, out, ratio=ratio, tile=tile, device=device, alpha=alpha):
        typer.echo(printable(path))


@app.command()
def models(width: Width = None) -> None:
    """List the registered models with parameter counts per block."""
    from transfer.models import (DEFAULT_WIDTH, block_parameter_counts, count_parameters, create_model, list_models,
                                 model_options)

    for name in list_models():
        model = create_model(name, width=width or DEFAULT_WIDTH)
        blocks = ", ".join(f"{b} {n:,}" for b, n in block_parameter_counts(model).items())
        typer.echo(f"{name} (width {width or DEFAULT_WIDTH}): {count_parameters(model)[1]:,} parameters; {blocks}; "
                   f"options: {', '.join(model_options(name))}")


_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


# ---- options of `transfer experiment` (aliases keep its signature short) ----
ExpPairs = Annotated[Path, typer.Option("--pairs", help="Real pairs to split into a training pool (~80%) and a "
                                                        "validation split (~20%, by a hash of the name).")]
ExpValPairs = Annotated[Optional[Path], typer.Option("--val-pairs", help="A separate validation set; then all "
                                                                         "of --pairs is the training pool.")]
ExpClean = Annotated[Optional[list[Path]], typer.Option("--clean", help="Clean source photo folder(s); "
                                                                        "repeatable.")]
ExpOut = Annotated[Path, typer.Option("--out", help="Working folder (data, runs, logs).")]
ExpDocs = Annotated[Path, typer.Option("--docs", help="Where results.md, CSVs and figures go.")]
ExpQuick = Annotated[bool, typer.Option("--quick", help="Tiny budgets: the same loop in a few minutes.")]
ExpN = Annotated[Optional[int], typer.Option("--n", help="Synthetic pairs (default 6000, as the paper).")]
ExpPretrainIters = Annotated[Optional[int], typer.Option("--pretrain-iters")]
ExpFinetuneIters = Annotated[Optional[int], typer.Option("--finetune-iters")]
ExpPaperAblation = Annotated[bool, typer.Option("--paper-ablation/--no-paper-ablation",
                                                help="Also run the paper-faithful pipeline.")]
ExpZoo = Annotated[bool, typer.Option("--zoo/--no-zoo", help="Also run the model-zoo rows (every model at one "
                                                          "shared, smaller budget).")]
ExpZooOnly = Annotated[bool, typer.Option("--zoo-only", help="Split, calibrate and generate, then only the "
                                                             "zoo rows (updates that section of results.md).")]
ExpModels = Annotated[Optional[str], typer.Option("--models", help="Comma-separated models for the zoo rows "
                                                                  "(default: all registered).")]
ExpZooPretrainIters = Annotated[Optional[int], typer.Option("--zoo-pretrain-iters")]
ExpZooFinetuneIters = Annotated[Optional[int], typer.Option("--zoo-finetune-iters")]
ExpCalibration = Annotated[str, typer.Option("--calibration", help="The main pipeline's calibration: isp "
                                                                   "(model v2) or joint (model v1).")]
ExpParams = Annotated[Optional[Path], typer.Option("--params", help="Use this params file for the main pipeline "
                                                                   "instead of calibrating the pool (it must not "
                                                                   "have seen the validation pairs).")]
ExpSampler = Annotated[Optional[str], typer.Option("--sampler", help="lowsim generate --sampler for the main "
                                                                    "pipeline (normal | empirical).")]
ExpModel = Annotated[Optional[str], typer.Option("--model", help="Table 1's network (default global_local; the "
                                                                "zoo rows run every registered model).")]
ExpSubsetSeeds = Annotated[Optional[str], typer.Option("--subset-seeds", help="Comma-separated seeds: each "
                                                       "fine-tuned and scratch row is the mean ± s.d. over these "
                                                       "subsets of the pool (default 0,1,2).")]
ExpFinetuneMethods = Annotated[Optional[str], typer.Option("--finetune-methods", help="Comma-separated "
                                                           "fine-tuning methods, one row each (last-blocks, "
                                                           "adapter, all; default all three; the first is the one "
                                                           "figures and recipe rows follow).")]
ExpFinetuneLr = Annotated[Optional[float], typer.Option("--finetune-lr", help="Fine-tuning learning rate "
                                                        "(default 1e-3, chosen by scripts/tune_finetune.py "
                                                        "inside the pool).")]
ExpFinetuneAugment = Annotated[Optional[float], typer.Option("--finetune-augment-prob", help="Noise augmentation "
                                                             "of the fine-tuned rows: this share of their "
                                                             "patches takes a synthetic dark input from the main "
                                                             "pipeline's params (transfer finetune "
                                                             "--augment-prob; default 0, off).")]
ExpRecipes = Annotated[Optional[str], typer.Option("--recipes", help="Comma-separated data recipes to add rows "
                                                  "for (generic, unprocessing, uncalibrated; docs/recipes.md): "
                                                  "each generated, pretrained and fine-tuned as the main row "
                                                  "(default: none).")]


@app.command()
def experiment(
    pairs: ExpPairs = _DATA / "lol-dev", val_pairs: ExpValPairs = None, clean: ExpClean = None,
    out: ExpOut = Path("runs/experiment"), docs: ExpDocs = Path("docs"), layout: Layout = "auto",
    quick: ExpQuick = False, n: ExpN = None, pretrain_iters: ExpPretrainIters = None,
    finetune_iters: ExpFinetuneIters = None, paper_ablation: ExpPaperAblation = True, zoo: ExpZoo = True,
    zoo_only: ExpZooOnly = False, models: ExpModels = None, zoo_pretrain_iters: ExpZooPretrainIters = None,
    zoo_finetune_iters: ExpZooFinetuneIters = None, calibration: ExpCalibration = "isp", params: ExpParams = None,
    sampler: ExpSampler = None, model: ExpModel = None, subset_seeds: ExpSubsetSeeds = None,
    finetune_methods: ExpFinetuneMethods = None, finetune_lr: ExpFinetuneLr = None, recipes: ExpRecipes = None,
    finetune_augment_prob: ExpFinetuneAugment = None, seed: Seed = 0,
) -> None:
    """The founding paper's Table 1 on real pairs: split, calibrate, generate, pretrain, fine-tune, evaluate."""
    import shlex

    from transfer.experiment import Budget, Experiment, run_experiment, run_zoo_only
    from transfer.experiment.recipes import parse_recipes

    recipe_names = parse_recipes(recipes)

    params = _check_experiment_options(counts={"--n": n, "--pretrain-iters": pretrain_iters,
                                               "--finetune-iters": finetune_iters,
                                               "--zoo-pretrain-iters": zoo_pretrain_iters,
                                               "--zoo-finetune-iters": zoo_finetune_iters},
                                       calibration=calibration, sampler=sampler, params=params, out=out, docs=docs)
    budget = _experiment_budget(Budget.quick() if quick else Budget(), n=n, pretrain_iters=pretrain_iters,
                                finetune_iters=finetune_iters, models=models, model=model, subset_seeds=subset_seeds,
                                zoo_pretrain_iters=zoo_pretrain_iters, zoo_finetune_iters=zoo_finetune_iters,
                                finetune_methods=finetune_methods, finetune_lr=finetune_lr,
                                finetune_augment_prob=finetune_augment_prob)
    exp = Experiment(pairs=pairs, clean=list(clean or [_DATA / "clean"]), out=out, docs=docs, val_pairs=val_pairs,
                     layout=layout, seed=seed, budget=budget, method=calibration, params=params, sampler=sampler,
                     command="transfer " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    if zoo_only:
        run_zoo_only(exp, budget.zoo_models)
    else:
        run_experiment(exp, paper_ablation=paper_ablation, zoo=zoo, recipes=recipe_names)


def _experiment_budget(budget: Any, *, n: int | None, pretrain_iters: int | None, finetune_iters: int | None,
                       models: str | None, model: str | None, subset_seeds: str | None,
                       zoo_pretrain_iters: int | None, zoo_finetune_iters: int | None,
                       finetune_methods: str | None = None, finetune_lr: float | None = None,
                       finetune_augment_prob: float | None = None) -> Any:
    """The experiment's Budget with the options that were given; model names and methods are checked now, listing
    the known ones, not after an hour."""
    from transfer.models import check_model_name

    if n is not None:
        budget.n_synthetic = n
    if pretrain_iters is not None:
        budget.pretrain_iters = budget.paper_pretrain_iters = pretrain_iters
    if finetune_iters is not None:
        budget.finetune_iters = budget.scratch_full_iters = finetune_iters
    if models is not None:
        budget.zoo_models = tuple(m.strip() for m in models.split(",") if m.strip())
    if model is not None:
        budget.model = model
    for name in (*budget.zoo_models, budget.model):
        check_model_name(name)
    if subset_seeds is not None:
        budget.subset_seeds = _seed_list(subset_seeds)
    if zoo_pretrain_iters is not None:
        budget.zoo_pretrain_iters = zoo_pretrain_iters
    if zoo_finetune_iters is not None:
        budget.zoo_finetune_iters = zoo_finetune_iters
    if finetune_methods is not None:
        budget.finetune_methods = _method_list(finetune_methods)
    if finetune_lr is not None:
        if not finetune_lr > 0:
            raise LowsimError(f"--finetune-lr must be positive, got {finetune_lr}")
        budget.finetune_lr = finetune_lr
    if finetune_augment_prob is not None:
        if not 0 <= finetune_augment_prob <= 1:
            raise LowsimError(f"--finetune-augment-prob must be in [0, 1], got {finetune_augment_prob}")
        budget.finetune_augment_prob = finetune_augment_prob
    return budget


def _method_list(text: str) -> tuple[str, ...]:
    """'all,last-blocks' -> ('all', 'last-blocks'); an unknown or repeated method is a one-line error."""
    from transfer.experiment.table1 import FINETUNE_ROWS

    methods = tuple(part.strip() for part in text.split(",") if part.strip())
    if not methods or len(set(methods)) != len(methods) or any(m not in FINETUNE_ROWS for m in methods):
        raise LowsimError(f"--finetune-methods takes distinct names among {', '.join(FINETUNE_ROWS)}; got {text!r}")
    return methods


def _seed_list(text: str) -> tuple[int, ...]:
    """'0,1,2' -> (0, 1, 2); anything else is a one-line error."""
    try:
        seeds = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise LowsimError(f"--subset-seeds must be comma-separated integers, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise LowsimError(f"--subset-seeds must list at least one seed, each once; got {text!r}")
    return seeds


def _check_experiment_options(counts: dict[str, int | None], calibration: str, sampler: str | None,
                              params: Path | None, out: Path, docs: Path) -> Path | None:
    """Refuse the experiment's impossible options before an hour of work starts; returns the params file (a
    path, or a shipped one by name: lol, lol-v1)."""
    from transfer.paths import check_output_dir

    for flag, value in counts.items():
        if value is not None and value <= 0:
            raise LowsimError(f"{flag} must be positive, got {value}")
    if calibration not in ("isp", "joint"):
        raise LowsimError(f"--calibration must be isp or joint; got {calibration!r}")
    if sampler is not None and sampler not in ("normal", "empirical"):
        raise LowsimError(f"--sampler must be normal or empirical, got {sampler!r}")
    if params is not None:
        from lowsim.project import resolve_params

        params = resolve_params(params)
        if not params.is_file():
            raise LowsimError("params file not found", params)
    check_output_dir(out, "--out")
    check_output_dir(docs, "--docs")
    return params


def _print_version(value: bool) -> None:
    if value:
        from lowsim import __version__

        typer.echo(f"transfer (lowsim) {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")) -> None:
    """Options before the command."""


def main(argv: list[str] | None = None) -> None:
    """Entry point: a bad option, a user mistake or a refused write is one line "error: ..." and a non-zero exit
    (2 usage, 1 runtime, 3 a diverged run, 130 Ctrl-C), never a traceback."""
    from lowsim.project import command_defaults

    global _OWNS_PROCESS
    _OWNS_PROCESS = argv is None  # the command line itself, not a caller's main([...]) (tests, the experiment)
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        # lowsim.toml's tables are the commands' defaults (project folder convention, lowsim.project)
        defaults = command_defaults(typer.main.get_command(app), args)
        # not standalone: typer would print usage errors as a multi-line panel; they are one line here
        code = app(args=args, prog_name="transfer", default_map=defaults, standalone_mode=False)
    except _CLICK.NoArgsIsHelpError as err:
        err.show()
        sys.exit(err.exit_code)
    except _CLICK.ClickException as err:
        _fail(_usage_message(err), err.exit_code)
    except typer.Abort:
        _fail("aborted", 1)
    except LowsimError as err:
        _fail(str(err), err.exit_code)
    except OSError as err:  # a read or write the system refused outside the paths checked up front
        _fail(_os_message(err), 1)
    if code == INTERRUPTED:  # typer turns Ctrl-C in a command into Exit(130); training commands say more
        _interrupted("interrupted; files already written are complete (every write is atomic)")
    sys.exit(code or 0)


def _usage_message(err: Exception) -> str:
    """'transfer pretrain: Invalid value for '--iters': ...' (click's message, with the command)."""
    context = getattr(err, "ctx", None)
    message = err.format_message()  # type: ignore[attr-defined]
    return f"{context.command_path}: {message}" if context is not None else message


def _os_message(err: OSError) -> str:
    """'<file>: <reason>' for an OSError."""
    reason = err.strerror or str(err)
    return f"{err.filename}: {reason}" if err.filename else reason


def _fail(message: str, code: int) -> None:
    """Print one line "error: ..." to stderr and exit with `code`."""
    typer.secho(f"error: {_one_line(message)}", err=True, fg=typer.colors.RED)
    sys.exit(code)


def _interrupted(message: str) -> None:
    """Print what Ctrl-C left behind (one line) and exit 130: at once when this process is the command (what it
    wrote is closed and complete; the interpreter's teardown with torch loaded takes 1-3 s on a busy machine)."""
    typer.secho(f"interrupted: {_one_line(message)}", err=True)
    if _OWNS_PROCESS:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(INTERRUPTED)
    sys.exit(INTERRUPTED)


def _one_line(message: str) -> str:
    """A message as one printable line (file names that are not UTF-8 shown with \\x escapes)."""
    return " ".join(printable(message).split("\n"))
