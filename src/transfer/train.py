"""The training core: pretraining on a synthetic manifest, fine-tuning a pretrained model on a fraction of real
pairs with all but the last blocks frozen, and training from scratch on real pairs (the baseline).

`run_training(TrainConfig(...))` is the one entry point (the CLI and the experiment driver call it). It uses the
paper's L1 loss (MAE) and Adam at 1e-3 with a decay schedule, validates PSNR on full images at intervals, keeps
`best` and `last` checkpoints, and resumes an interrupted run exactly: batches are a pure function of (seed, step)
(see transfer.data) and the optimizer, scheduler and RNG states travel with `last`.

Models with an alpha input (estimate_enhance) are pretrained with each patch's manifest `illum_alpha` as the
restoration strength (and, without --alpha, their mean becomes the configured strength); on real pairs (finetune,
scratch), which have none, they use their configured `alpha`, as do validation and inference unless given one.

The network output is NOT clipped during training: a clamp has zero gradient outside [0, 1], so pixels the
network overshoots (dark targets near 0, highlights near 1) would stop learning; SID trains unclipped too.
Inference clips (seed 004).
"""
from __future__ import annotations

import csv
import io
import json
import math
import random
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console

from lowsim import __version__ as lowsim_version
from lowsim.params import atomic_write_bytes, atomic_write_text, file_sha256
from transfer import checkpoint as ckpt
from transfer.data import (ALPHA_COLUMN, PairItem, PairStore, PatchDataset, StepBatchSampler, bright_to_float,
                           check_disjoint, dark_to_float, default_workers, items_sha256, load_manifest, load_pairs,
                           make_loader, select_fraction, split_real_pairs)
from transfer.distributed import (DistInfo, barrier, broadcast_buffers, broadcast_flag, gather_strings,
                                  init_distributed, mean_across, shutdown)
from transfer.errors import TrainingDiverged, TransferError
from transfer.infer import DEFAULT_TILE, predict
from transfer.metrics import psnr
from transfer.models import (BLOCK_NAMES, DEFAULT_WIDTH, INPUT_KINDS, SIDUNet, check_model_name, count_parameters,
                             create_model, freeze_all_but_last, list_models, model_options, registered_name,
                             takes_alpha, trainable_blocks)

MODES = ("pretrain", "finetune", "scratch")
SCHEDULES = ("cosine", "step", "constant")
DEFAULT_ITERS = 1000
LR_FLOOR = 0.01  # cosine decays to 1% of the initial rate; "step" divides by 10 halfway (SID: 1e-4 -> 1e-5)
TRAIN_CSV, VAL_CSV, CONFIG_JSON, CURVES_PNG = "metrics.csv", "val.csv", "config.json", "curves.png"
TRAIN_COLUMNS = ("step", "epoch", "loss", "lr", "step_s", "data_s")
VAL_COLUMNS = ("step", "epoch", "val_psnr", "best_val_psnr")
# Model-specific constructor options and the CLI flags that set them (width, input_kind and norm are fields of
# their own because every model takes them).
OPTION_FLAGS = {"depth": "--depth", "activation": "--activation", "alpha": "--alpha",
                "backbone_weights": "--backbone-weights"}
COMMON_OPTIONS = ("width", "input_kind", "norm")


@dataclass
class TrainConfig:
    """Everything one training run needs; fields map one-to-one to CLI options."""

    mode: str
    run_dir: Path
    manifest: Path | None = None  # pretrain: a lowsim manifest (Parquet)
    pairs: Path | None = None  # finetune / scratch: real pairs in any lowsim layout
    layout: str = "auto"
    frac: float = 1.0  # share of the real training pool actually trained on
    val_pairs: Path | None = None  # held-out real pairs; else the pool/val hash split of `pairs`
    val_split: bool = True
    val_limit: int | None = None  # validate on the first N validation pairs only (by name)
    checkpoint: Path | None = None  # finetune: the pretrained weights
    trainable_blocks: int | None = 2  # finetune: train the last N blocks (the paper's 2); None = all
    model: str | None = "sid_unet"  # None (finetune only): the checkpoint's model
    width: int | None = None  # None: DEFAULT_WIDTH, or the checkpoint's when fine-tuning
    input_kind: str | None = None  # None: srgb, or the checkpoint's when fine-tuning
    norm: str | None = None  # None: the model's own default (none for sid_unet, batch for the BN models)
    # Model-specific constructor options (models.model_options), e.g. {"depth": 2} or {"backbone_weights": path};
    # fine-tuning keeps the checkpoint's, so there they must equal its values (backbone_weights is refused).
    model_options: dict[str, Any] = field(default_factory=dict)
    iters: int | None = None
    epochs: float | None = None
    patch: int = 64  # side of a training patch in input pixels (sRGB pixels, or packed raw pixels as SID's ps)
    batch: int = 16  # global batch, split across processes under torchrun
    lr: float = 1e-3
    schedule: str = "cosine"
    seed: int = 0
    val_every: int | None = None  # default: 10 validations per run
    save_every: int | None = None  # default: at each validation
    patience: int | None = None  # stop after this many validations without a better PSNR
    workers: int | None = None  # loader processes; None: 0 when all images are cached, else up to 2
    cache_mb: float = 4096.0
    device: str = "auto"
    channels_last: bool = True
    resume: bool = False
    stop_after: int | None = None  # leave after this many steps in this invocation (resumable)
    tile: int = DEFAULT_TILE
    progress: bool = True
    log_every: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes stored in config.json

    def to_json(self) -> dict[str, Any]:
        """JSON-safe dict of the config."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}


def _jsonable(value: Any) -> Any:
    """Paths as strings, also inside dicts (model_options may hold a backbone weights path)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


# ------------------------------------------------------------------------------------------ checks

def check_config(config: TrainConfig) -> None:
    """Refuse impossible options before any data is read."""
    if config.mode not in MODES:
        raise TransferError(f"unknown training mode {config.mode!r}, expected one of {', '.join(MODES)}")
    if config.model is not None:
        check_model_name(config.model)
    elif config.mode != "finetune":
        raise TransferError(f"{config.mode} needs --model (known models: {', '.join(list_models())})")
    if config.mode == "finetune" and "backbone_weights" in config.model_options:
        raise TransferError("--backbone-weights initialises a new model; finetune starts from all the weights of "
                            "--checkpoint (use it with pretrain or train)")
    if config.model is not None:
        check_model_options(config.model, config.model_options)
    if config.mode == "pretrain" and config.manifest is None:
        raise TransferError("pretraining needs --manifest (a Parquet manifest written by `lowsim generate`)")
    if config.mode != "pretrain" and config.pairs is None:
        raise TransferError(f"{config.mode} needs --pairs (a folder of real dark/bright pairs)")
    if config.mode == "finetune" and config.checkpoint is None:
        raise TransferError("finetune needs --checkpoint (a pretrained run directory or .safetensors file)")
    if not (0.0 < config.frac <= 1.0):
        raise TransferError(f"--frac must be in (0, 1], got {config.frac:g}")
    if config.iters is not None and config.epochs is not None:
        raise TransferError("give --iters or --epochs, not both")
    positive = {"--iters": config.iters, "--epochs": config.epochs, "--patch": config.patch,
                "--batch": config.batch, "--val-every": config.val_every, "--save-every": config.save_every,
                "--patience": config.patience, "--stop-after": config.stop_after, "--tile": config.tile,
                "--val-limit": config.val_limit, "--width": config.width}
    for name, value in positive.items():
        if value is not None and not (value > 0):
            raise TransferError(f"{name} must be positive, got {value}")
    if not (math.isfinite(config.lr) and config.lr > 0):
        raise TransferError(f"--lr must be a positive number, got {config.lr}")
    if config.schedule not in SCHEDULES:
        raise TransferError(f"unknown --schedule {config.schedule!r}, expected one of {', '.join(SCHEDULES)}")
    if config.input_kind is not None and config.input_kind not in INPUT_KINDS:
        raise TransferError(f"unknown --input {config.input_kind!r}, expected one of {', '.join(INPUT_KINDS)}")
    if config.mode == "pretrain" and config.input_kind == "raw":
        raise TransferError("a synthetic manifest holds sRGB images; pretraining takes --input srgb")
    if config.workers is not None and config.workers < 0:
        raise TransferError(f"--workers must be >= 0, got {config.workers}")
    if config.device not in ("auto", "cpu", "cuda"):
        raise TransferError(f"--device must be auto, cpu or cuda, got {config.device!r}")


def check_model_options(name: str, options: dict[str, Any]) -> None:
    """Model-specific options must be ones the model's constructor takes; the message lists those it does."""
    common = sorted(set(options) & set(COMMON_OPTIONS))
    if common:
        raise TransferError(f"model option(s) {', '.join(common)} have options of their own (--width, --input, "
                            f"--norm); expected only model-specific options in model_options")
    accepted = model_options(name)
    unknown = [key for key in options if key not in accepted]
    if unknown:
        flags = ", ".join(OPTION_FLAGS.get(key, key) for key in unknown)
        raise TransferError(f"model {name} does not take {flags}; its options: {', '.join(accepted)}")


def check_patch(patch: int, model: SIDUNet) -> None:
    """A patch must survive the network's downsampling: a multiple of 32 (sRGB) or 16 (packed raw)."""
    if patch % model.pad_multiple:
        raise TransferError(f"--patch {patch} must be a multiple of {model.pad_multiple} for "
                            f"{model.input_kind} input (4 poolings{', after space-to-depth' if model.scale == 1 else ''})")


def pick_device(name: str) -> torch.device:
    """CUDA when present (or asked for), else CPU."""
    if name == "cuda" and not torch.cuda.is_available():
        raise TransferError("--device cuda was asked for but no CUDA device is available")
    return torch.device("cuda" if name != "cpu" and torch.cuda.is_available() else "cpu")


# ------------------------------------------------------------------------------------------ data

@dataclass
class RunData:
    """The resolved training and validation pairs and a description for config.json."""

    train: list[PairItem]
    val: list[PairItem]
    description: dict[str, Any]


def resolve_data(config: TrainConfig) -> RunData:
    """Training/validation pairs for the mode: manifest splits, or real pairs with --frac and a held-out set."""
    if config.mode == "pretrain":
        manifest = Path(config.manifest)
        train, val = load_manifest(manifest, "train"), load_manifest(manifest, "val")
        if not train:
            raise TransferError("manifest has no ok rows in split 'train'", manifest)
        desc = {"kind": "manifest", "path": str(manifest), "sha256": file_sha256(manifest)}
    else:
        pairs = load_pairs(config.pairs, config.layout)
        if config.val_pairs is not None:
            pool, val = pairs, load_pairs(config.val_pairs, config.layout)
            check_disjoint(pool, val)
        elif config.val_split:
            pool, val = split_real_pairs(pairs, "pool"), split_real_pairs(pairs, "val")
        else:
            pool, val = pairs, []
        if not pool:
            raise TransferError("no training pairs are left after holding out the validation split", config.pairs)
        train = select_fraction(pool, config.frac, config.seed)
        desc = {"kind": "pairs", "path": str(config.pairs), "layout": config.layout, "frac": config.frac,
                "pool_count": len(pool), "sha256": items_sha256(train),
                "val_source": "val_pairs" if config.val_pairs is not None else
                ("hash_split" if config.val_split else "none")}
    val = sorted(val, key=lambda item: item.name)[: config.val_limit]
    desc.update(train_count=len(train), val_count=len(val), val_sha256=items_sha256(val))
    return RunData(train, val, desc)


# ------------------------------------------------------------------------------------------ model

def build_model(config: TrainConfig, device: torch.device) -> tuple[SIDUNet, dict[str, Any] | None]:
    """A fresh seeded model, or the pretrained checkpoint with all but the last blocks frozen (its architecture
    and options are the checkpoint's: an option given here must equal the checkpoint's value)."""
    if config.mode == "finetune":
        weights = ckpt.resolve_checkpoint(config.checkpoint)
        held = ckpt.read_meta(weights).get("model")
        if config.model in (None, held):  # another model name is refused by load_checkpoint's expectations
            check_model_options(str(held), config.model_options)
        expect = {"model": config.model, "width": config.width, "input_kind": config.input_kind,
                  "norm": config.norm, **config.model_options}
        model, meta = ckpt.load_checkpoint(weights, "cpu", expect=expect)
        init = {"path": str(weights), "sha256": file_sha256(weights), "step": meta.get("step"),
                "data_sha256": meta.get("data_sha256")}
        if config.trainable_blocks is not None:
            freeze_all_but_last(model, config.trainable_blocks)
        return model, init
    torch.manual_seed(config.seed)  # weight init is torch's only random draw
    norm = {} if config.norm is None else {"norm": config.norm}
    model = create_model(str(config.model), width=config.width or DEFAULT_WIDTH,
                         input_kind=config.input_kind or "srgb", **norm, **config.model_options)
    return model, None


def backbone_description(config: TrainConfig) -> dict[str, Any] | None:
    """The backbone weights file that initialised the model ({path, sha256}), None without one."""
    path = config.model_options.get("backbone_weights")
    if path is None:
        return None
    return {"path": str(path), "sha256": file_sha256(Path(path))}


def train_alphas(model: torch.nn.Module, items: list[PairItem]) -> list[float] | None:
    """One alpha per training pair for a model with an alpha input when the pairs carry one (a manifest's
    illum_alpha; a row without a value gets the model's configured alpha); None otherwise: batches then hold
    no alpha tensor and the model uses its configured alpha (real pairs)."""
    if not takes_alpha(model) or all(item.alpha is None for item in items):
        return None
    configured = float(getattr(model, "alpha"))
    return [configured if item.alpha is None else float(item.alpha) for item in items]


def describe_alphas(model: torch.nn.Module, alphas: list[float] | None) -> dict[str, Any] | None:
    """Where training's alpha comes from, for config.json (None for models without an alpha input)."""
    if not takes_alpha(model):
        return None
    if alphas is None:
        return {"source": "model config", "value": float(getattr(model, "alpha"))}
    return {"source": f"manifest {ALPHA_COLUMN}", "min": min(alphas), "mean": float(np.mean(alphas)),
            "max": max(alphas)}


def total_steps(config: TrainConfig, n_train: int) -> int:
    """The step budget: --iters, or --epochs passes over the training images (one patch each), or the default."""
    if config.iters is not None:
        return int(config.iters)
    if config.epochs is not None:
        return max(1, math.ceil(config.epochs * n_train / config.batch))
    return DEFAULT_ITERS


def lr_factor(schedule: str, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the base learning rate after `done` optimizer steps."""
    def cosine(done: int) -> float:
        return LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * min(done, total_steps) / total_steps))

    def step(done: int) -> float:
        return 1.0 if done < total_steps // 2 else 0.1

    return {"cosine": cosine, "step": step, "constant": lambda done: 1.0}[schedule]


# ------------------------------------------------------------------------------------------ run state

def capture_rng() -> dict[str, Any]:
    """torch, numpy and python global RNG states (nothing here draws from them after init, but a resumed
    run must not differ from an uninterrupted one if a library does)."""
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
            "python": random.getstate()}


def restore_rng(state: dict[str, Any]) -> None:
    """Undo capture_rng."""
    torch.set_rng_state(state["torch"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def fingerprint(config: TrainConfig, model: SIDUNet, data: RunData, init: dict | None, total: int) -> dict:
    """What must not change between an interrupted run and its resumption."""
    return {"mode": config.mode, "model": registered_name(model), "model_config": model.config,
            "trained_blocks": trainable_blocks(model), "data_sha256": data.description["sha256"],
            "val_sha256": data.description["val_sha256"], "seed": config.seed, "total_steps": total,
            "patch": config.patch, "batch": config.batch, "lr": config.lr, "schedule": config.schedule,
            "init_sha256": None if init is None else init["sha256"]}


def _read_csv_rows(path: Path, up_to_step: int) -> list[dict[str, str]]:
    """Rows of an earlier metrics CSV up to a step (a resumed run rewrites everything after it)."""
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [row for row in csv.DictReader(handle) if int(row["step"]) <= up_to_step]


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    """Write rows atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def plot_curves(path: Path, train_rows: list[dict], val_rows: list[dict]) -> None:
    """A PNG with the training loss and the validation PSNR against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_psnr) = plt.subplots(1, 2, figsize=(10, 3.6))
    if train_rows:
        steps = np.array([float(r["step"]) for r in train_rows])
        losses = np.array([float(r["loss"]) for r in train_rows])
        ax_loss.plot(steps, losses, lw=0.6, alpha=0.4, label="per step")
        window = max(1, len(losses) // 50)
        if window > 1:
            smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
            ax_loss.plot(steps[window - 1:], smooth, lw=1.5, label=f"mean of {window}")
        ax_loss.set_yscale("log")
        ax_loss.legend()
    ax_loss.set(xlabel="step", ylabel="L1 loss", title="training loss")
    if val_rows:
        ax_psnr.plot([float(r["step"]) for r in val_rows], [float(r["val_psnr"]) for r in val_rows], "o-")
    ax_psnr.set(xlabel="step", ylabel="PSNR (dB)", title="validation PSNR (full images)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


# ------------------------------------------------------------------------------------------ validation

@torch.no_grad()
def validate(model: SIDUNet, store: PairStore, tile: int) -> list[float]:
    """PSNR of every validation pair at full resolution (tiled when large), output clipped to [0, 1]."""
    scores = []
    for index in range(len(store)):
        pair = store.get(index)
        prediction = predict(model, dark_to_float(pair.dark, pair.ratio), tile=tile)
        scores.append(psnr(prediction, bright_to_float(pair.bright)))
    return scores


# ------------------------------------------------------------------------------------------ the run

class _Reporter:
    """Progress for people: a rich bar on a terminal, periodic lines otherwise, nothing when quiet."""

    def __init__(self, enabled: bool) -> None:
        self.console = Console(soft_wrap=True)
        self.enabled = enabled
        self.bar = None
        self.log_every = 1

    def start(self, total: int, start: int, log_every: int | None) -> None:
        """Show a bar (terminal) or plan a line every `log_every` steps (default: 20 lines per run)."""
        self.log_every = log_every or max(1, total // 20)
        if self.enabled and self.console.is_terminal:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.bar = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                console=self.console)
            self.task = self.bar.add_task("train", total=total, completed=start, info="")
            self.bar.start()

    def print(self, message: str) -> None:
        """A line of information."""
        if self.enabled:
            self.console.print(message, highlight=False, markup=False)

    def step(self, step: int, total: int, info: str) -> None:
        """Advance to `step`."""
        if self.bar is not None:
            self.bar.update(self.task, completed=step, info=info)
        elif self.enabled and (step % self.log_every == 0 or step == total):
            self.print(f"step {step}/{total} {info}")

    def close(self) -> None:
        """Stop the bar."""
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def run_training(config: TrainConfig) -> dict[str, Any]:
    """Train as configured and return a summary (steps, best/final metrics, checkpoint paths)."""
    check_config(config)
    device = pick_device(config.device)
    info = init_distributed(device.type == "cuda")
    try:
        return _run(config, info, device)
    finally:
        shutdown(info)


def _run(config: TrainConfig, info: DistInfo, device: torch.device) -> dict[str, Any]:
    started = time.perf_counter()
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    # The model first: a bad option, checkpoint or backbone file is refused before any data is read.
    model, init = build_model(config, device)
    check_patch(config.patch, model)
    name = registered_name(model)
    data = resolve_data(config)
    trained = trainable_blocks(model)
    n_trainable, n_total = count_parameters(model)
    reporter = _Reporter(config.progress and info.is_main)
    reporter.print(f"{config.mode}: {model.config} on {device}, {info.world} process(es); "
                   f"training {n_trainable:,} of {n_total:,} parameters (blocks {', '.join(trained)})")

    total = total_steps(config, len(data.train))
    val_every = config.val_every or max(1, total // 10)
    save_every = config.save_every or val_every

    run_dir = Path(config.run_dir)
    last_dir, best_dir = run_dir / "last", run_dir / "best"
    prints = fingerprint(config, model, data, init, total)
    backbone = backbone_description(config)
    if backbone is not None:  # only then, so that runs without one keep resuming
        prints["backbone_sha256"] = backbone["sha256"]
    has_last = ckpt.existing_checkpoint_dir(last_dir) is not None
    if has_last and not config.resume:
        raise TransferError("run directory already holds a checkpoint; pass --resume to continue it or choose "
                            "another --run-dir", run_dir)

    cache_bytes = int(config.cache_mb * 2**20)
    store = PairStore(data.train, model.input_kind, cache_bytes)
    store.check_patch(config.patch)
    val_store = PairStore(data.val, model.input_kind, max(0, cache_bytes - store.cached_bytes)) \
        if info.is_main and data.val else None
    cached_mib = (store.cached_bytes + (val_store.cached_bytes if val_store else 0)) / 2**20
    reporter.print(f"data: {len(data.train)} training pair(s), {len(data.val)} validation pair(s); "
                   f"{cached_mib:.0f} MiB of decoded images cached in RAM"
                   + ("" if store.fully_cached else " (training set larger than --cache-mb: decoded per patch)")
                   + ("" if data.val else "; no validation pairs, so no `best` checkpoint (use `last`)"))
    alphas = train_alphas(model, data.train)
    if alphas is not None and "alpha" not in config.model_options:
        # without --alpha, the strength used later (validation, evaluate, enhance) is the training mean: the
        # network never saw a strength far from the rows' alphas (after the fingerprint, so resume agrees)
        model.alpha = model.config["alpha"] = float(np.mean(alphas))
    alpha_info = describe_alphas(model, alphas)
    if alpha_info is not None:
        reporter.print(f"alpha: the model's configured {alpha_info['value']:g} (the pairs carry no {ALPHA_COLUMN})"
                       if alphas is None else
                       f"alpha: each patch's manifest {ALPHA_COLUMN} (min {alpha_info['min']:g}, mean "
                       f"{alpha_info['mean']:g}, max {alpha_info['max']:g}); validation uses the configured "
                       f"{model.alpha:g}")
        if alphas is not None and max(alphas) == 0:
            reporter.print(f"warning: every training row has {ALPHA_COLUMN} 0, so alpha * I^D is 0 and "
                           "Estimate-Net gets no gradient; only Enhance-Net learns")

    # Channels-last before the optimizer exists, so that Adam's moments share the parameters' layout in both
    # a fresh and a resumed run (the same layout means the same floating-point results).
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config.schedule, total))
    start, best_psnr, best_step, bad_validations = 0, -math.inf, None, 0
    train_rows: list[dict[str, Any]] = []
    val_rows: list[dict[str, Any]] = []
    if has_last:
        start, best_psnr, best_step, bad_validations = _resume(run_dir, last_dir, model, optimizer, scheduler,
                                                               prints)
        train_rows = _read_csv_rows(run_dir / TRAIN_CSV, start)
        val_rows = _read_csv_rows(run_dir / VAL_CSV, start)
        reporter.print(f"resuming {run_dir} at step {start}/{total}")
    elif config.resume:
        reporter.print(f"nothing to resume in {run_dir}; starting a new run")

    run_config = {"command": config.mode, "model": name, "model_config": model.config,
                  "input_kind": model.input_kind, "trained_blocks": trained, "trainable_params": n_trainable,
                  "total_params": n_total, "data": data.description, "data_sha256": data.description["sha256"],
                  "init_checkpoint": init, "backbone_weights": backbone, "train_alpha": alpha_info,
                  "seed": config.seed, "lowsim_version": lowsim_version,
                  "torch_version": torch.__version__, "device": str(device), "world_size": info.world,
                  "total_steps": total, "val_every": val_every, "fingerprint": prints,
                  "options": config.to_json()}
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "train_pairs.txt", "".join(f"{i.name}\n" for i in data.train))
        atomic_write_text(run_dir / "val_pairs.txt", "".join(f"{i.name}\n" for i in data.val))
        atomic_write_text(run_dir / CONFIG_JSON, json.dumps(run_config, indent=2) + "\n")
    barrier(info)

    net: torch.nn.Module = model
    if info.enabled:
        if device.type == "cuda":  # batch statistics over the global batch, as one process would compute them
            torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # in place below the root (CPU: GPU-only layer)
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    workers = default_workers(store.fully_cached) if config.workers is None else config.workers
    end = total if config.stop_after is None else min(total, start + config.stop_after)
    loader = make_loader(PatchDataset(store, config.patch, config.seed, model.scale, alphas),
                         StepBatchSampler(start, end, config.batch, info.rank, info.world), workers)

    def meta(step: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"model": name, "model_config": model.config, "input_kind": model.input_kind,
                "trained_blocks": trained, "step": step, "epoch": step * config.batch / len(data.train),
                "data_sha256": data.description["sha256"], "seed": config.seed, "lowsim_version": lowsim_version,
                "best_val_psnr": None if best_step is None else best_psnr, "best_step": best_step,
                **(extra or {})}

    def save_last(step: int) -> None:
        if not info.is_main:
            return
        state = {"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "rng": capture_rng(), "best_psnr": best_psnr, "best_step": best_step,
                 "bad_validations": bad_validations, "fingerprint": json.dumps(prints, sort_keys=True)}
        ckpt.save_checkpoint(last_dir, model, meta(step), state)
        _write_csv(run_dir / TRAIN_CSV, TRAIN_COLUMNS, train_rows)
        _write_csv(run_dir / VAL_CSV, VAL_COLUMNS, val_rows)

    reporter.start(total, start, config.log_every)
    net.train()
    step, saved_step, stop_reason = start, start if has_last else None, "completed"
    images, compute_s, data_s_total = 0, 0.0, 0.0
    last_loss = math.nan
    t_prev = time.perf_counter()
    try:
        for batch in loader:
            t_batch = time.perf_counter()
            inputs = batch[0].to(device, non_blocking=True, memory_format=memory_format)
            targets = batch[1].to(device, non_blocking=True, memory_format=memory_format)
            # a third tensor holds per-sample alphas (models with an alpha input, manifest rows); DDP passes
            # keyword arguments through to the model
            extra = {"alpha": batch[2].to(device, non_blocking=True)} if len(batch) > 2 else {}
            loss = F.l1_loss(net(inputs, **extra), targets)
            loss_value = float(mean_across(loss.detach(), info))
            if not math.isfinite(loss_value):
                raise _diverged(step + 1, loss_value, config.lr, saved_step, last_dir)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            t_done = time.perf_counter()
            data_s, step_s = t_batch - t_prev, t_done - t_prev
            images += config.batch
            compute_s += step_s
            data_s_total += data_s
            last_loss = loss_value
            train_rows.append({"step": step, "epoch": f"{step * config.batch / len(data.train):.4f}",
                               "loss": f"{loss_value:.6g}", "lr": f"{optimizer.param_groups[0]['lr']:.6g}",
                               "step_s": f"{step_s:.4f}", "data_s": f"{data_s:.4f}"})
            stop = False
            if step % val_every == 0 or step == total:
                if val_store is not None:
                    scores = validate(model, val_store, config.tile)
                    score = float(np.mean(scores))
                    improved = score > best_psnr
                    if improved:
                        best_psnr, best_step, bad_validations = score, step, 0
                        ckpt.save_checkpoint(best_dir, model, meta(step, {"val_psnr": score}))
                    else:
                        bad_validations += 1
                    val_rows.append({"step": step, "epoch": f"{step * config.batch / len(data.train):.4f}",
                                     "val_psnr": f"{score:.4f}", "best_val_psnr": f"{best_psnr:.4f}"})
                    reporter.print(f"step {step}: validation PSNR {score:.2f} dB over {len(scores)} image(s)"
                                   f" (best {best_psnr:.2f} dB at step {best_step})")
                    stop = config.patience is not None and bad_validations >= config.patience
                    net.train()
                stop = broadcast_flag(stop, info, device)
            if stop or step % save_every == 0 or step == end:
                save_last(step)
                saved_step = step
            reporter.step(step, total, f"loss {loss_value:.4f} lr {optimizer.param_groups[0]['lr']:.2e} "
                                       f"{images / max(compute_s, 1e-9):.1f} img/s")
            t_prev = time.perf_counter()  # validation and saving are not step time
            if stop:
                stop_reason = "early_stopping"
                reporter.print(f"early stopping at step {step}: no better validation PSNR in "
                               f"{bad_validations} validations")
                break
    except KeyboardInterrupt:
        reporter.close()
        if step > (saved_step or 0):
            save_last(step)
        raise
    finally:
        reporter.close()
        if info.is_main and train_rows:
            _write_csv(run_dir / TRAIN_CSV, TRAIN_COLUMNS, train_rows)
            _write_csv(run_dir / VAL_CSV, VAL_COLUMNS, val_rows)
            plot_curves(run_dir / CURVES_PNG, train_rows, val_rows)
    if stop_reason == "completed" and step < total:
        stop_reason = "stopped_after"

    broadcast_buffers(model, info)  # CPU batch norm keeps per-process running statistics: rank 0's are saved
    checksums = gather_strings(_weights_checksum(model), info)
    result = {"run_dir": str(run_dir), "mode": config.mode, "steps": step, "total_steps": total,
              "stop_reason": stop_reason, "final_loss": last_loss,
              "best_val_psnr": None if best_step is None else best_psnr, "best_step": best_step,
              "last_checkpoint": str(last_dir), "best_checkpoint": str(best_dir) if best_step else None,
              "trainable_params": n_trainable, "total_params": n_total, "trained_blocks": trained,
              "train_count": len(data.train), "val_count": len(data.val), "world_size": info.world,
              "rank_weight_sha256": checksums, "workers": workers, "images_per_s": images / max(compute_s, 1e-9),
              "data_wait_share": data_s_total / max(compute_s, 1e-9), "seconds": time.perf_counter() - started}
    if info.is_main:
        run_config["metrics"] = result
        atomic_write_text(run_dir / CONFIG_JSON, json.dumps(run_config, indent=2) + "\n")
        reporter.print(f"{stop_reason} at step {step}/{total}: loss {last_loss:.4f}, "
                       f"{result['images_per_s']:.1f} img/s"
                       + (f", best validation PSNR {best_psnr:.2f} dB (step {best_step})" if best_step else ""))
    return result


def _resume(run_dir: Path, last_dir: Path, model: SIDUNet, optimizer: torch.optim.Optimizer,
            scheduler: Any, prints: dict) -> tuple[int, float, int | None, int]:
    """Load weights, optimizer, scheduler and RNG states of `last`; the run must be the same one."""
    found = ckpt.existing_checkpoint_dir(last_dir)
    state = ckpt.load_train_state(found)
    saved = json.loads(state["fingerprint"])
    changed = sorted(k for k in set(saved) | set(prints) if saved.get(k) != prints.get(k))
    if changed:
        details = "; ".join(f"{k}: {saved.get(k)!r} -> {prints.get(k)!r}" for k in changed)
        raise TransferError(f"cannot resume: the options differ from the interrupted run ({details})", run_dir)
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(found / ckpt.WEIGHTS_FILE)))
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    restore_rng(state["rng"])
    return int(state["step"]), float(state["best_psnr"]), state["best_step"], int(state["bad_validations"])


def _diverged(step: int, loss: float, lr: float, saved_step: int | None, last_dir: Path) -> TrainingDiverged:
    """The error for a NaN/inf loss: where the last good checkpoint is (it is never overwritten)."""
    kept = f"the last good checkpoint is {last_dir} (step {saved_step})" if saved_step is not None else \
        "no checkpoint had been saved yet"
    return TrainingDiverged(f"training stopped: the loss became {loss} at step {step} (learning rate {lr:g}); "
                            f"{kept}; try a lower --lr")


def _weights_checksum(model: torch.nn.Module) -> str:
    """sha256 of all parameters and buffers (to check that processes agree)."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()

