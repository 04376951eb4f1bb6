"""What one training run is asked to do (`TrainConfig`, fields one-to-one with the CLI options), the checks that
refuse impossible options before any data is read, and the step budget and learning-rate schedule."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from transfer.augment import check_augment_options
from transfer.device import DEVICES
from transfer.errors import TransferError
from transfer.infer import DEFAULT_TILE
from transfer.train.losses import loss_function
from transfer.models import (COMMON_OPTIONS, INPUT_KINDS, BlockModel, check_model_name, list_models, model_options,
                             option_flag)

MODES = ("pretrain", "finetune", "scratch")
FINETUNE_METHODS = ("last-blocks", "all", "adapter")
SCHEDULES = ("cosine", "step", "constant")
DEFAULT_ITERS = 1000
LR_FLOOR = 0.01  # cosine decays to 1% of the initial rate; "step" divides by 10 halfway (SID: 1e-4 -> 1e-5)


@dataclass
class TrainConfig:
    """Everything one training run needs; fields map one-to-one to CLI options."""

    mode: str
    run_dir: Path
    manifest: Path | None = None  # pretrain: a lowsim manifest (Parquet)
    params: Path | None = None  # pretrain on the fly (transfer.onthefly): a params file or a shipped name (lol)
    src: Path | None = None  # pretrain on the fly: the folder of clean photos to degrade
    sampler: str | None = None  # pretrain on the fly: how parameters are drawn (normal | empirical; the file's)
    pairs: Path | None = None  # finetune / scratch: real pairs in any lowsim layout
    layout: str = "auto"
    frac: float = 1.0  # share of the real training pool actually trained on
    val_pairs: Path | None = None  # held-out real pairs; else the pool/val hash split of `pairs`
    val_split: bool = True
    val_limit: int | None = None  # validate on the first N validation pairs only (by name)
    checkpoint: Path | None = None  # finetune: the pretrained weights
    trainable_blocks: int | None = 2  # finetune: train the last N blocks (the paper's 2); None = all
    method: str = "last-blocks"  # finetune: last-blocks (trainable_blocks), all, or adapter (models.adapters)
    model: str | None = "sid_unet"  # None (finetune only): the checkpoint's model
    width: int | None = None  # None: DEFAULT_WIDTH, or the checkpoint's when fine-tuning
    input_kind: str | None = None  # None: srgb, or the checkpoint's when fine-tuning
    norm: str | None = None  # None: the model's own default (none for sid_unet, batch for the BN models)
    # Model-specific constructor options (models.declared_options), e.g. {"depth": 2} or {"backbone_weights":
    # path}; fine-tuning keeps the checkpoint's, so there they must equal its values (backbone_weights is refused).
    model_options: dict[str, Any] = field(default_factory=dict)
    iters: int | None = None
    epochs: float | None = None
    patch: int = 64  # side of a training patch in input pixels (sRGB pixels, or packed raw pixels as SID's ps)
    batch: int = 16  # global batch, split across processes under torchrun
    lr: float = 1e-3
    loss: str = "l1"  # transfer.train.losses: l1 (the paper's) or l1+ssim
    augment_params: Path | None = None  # finetune: noise augmentation from this params file (transfer.augment)
    augment_prob: float | None = None  # share of training patches it replaces (None: augment.DEFAULT_PROB)
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


def check_config(config: TrainConfig) -> None:
    """Refuse impossible options before any data is read."""
    _check_model_choice(config)
    _check_pretrain_data(config)
    if config.mode != "pretrain" and config.pairs is None:
        raise TransferError(f"{config.mode} needs --pairs (a folder of real dark/bright pairs)")
    if config.mode == "finetune" and config.checkpoint is None:
        raise TransferError("finetune needs --checkpoint (a pretrained run directory or .safetensors file)")
    if not (0.0 < config.frac <= 1.0):
        raise TransferError(f"--frac must be in (0, 1], got {config.frac:g}")
    loss_function(config.loss)  # an unknown name is refused here
    check_augment_options(config.augment_params, config.augment_prob, config.mode, config.input_kind)
    if config.method not in FINETUNE_METHODS:
        raise TransferError(f"unknown --method {config.method!r}, expected one of {', '.join(FINETUNE_METHODS)}")
    if config.method != "last-blocks" and config.mode != "finetune":
        raise TransferError(f"--method {config.method} is a way to fine-tune; {config.mode} trains every layer")
    if config.iters is not None and config.epochs is not None:
        raise TransferError("give --iters or --epochs, not both")
    _check_numbers(config)
    if config.schedule not in SCHEDULES:
        raise TransferError(f"unknown --schedule {config.schedule!r}, expected one of {', '.join(SCHEDULES)}")
    if config.input_kind is not None and config.input_kind not in INPUT_KINDS:
        raise TransferError(f"unknown --input {config.input_kind!r}, expected one of {', '.join(INPUT_KINDS)}")
    if config.workers is not None and config.workers < 0:
        raise TransferError(f"--workers must be >= 0, got {config.workers}")
    if config.device not in DEVICES:
        raise TransferError(f"--device must be auto, cpu or cuda, got {config.device!r}")


def _check_pretrain_data(config: TrainConfig) -> None:
    """Pretraining reads a manifest, or makes pairs on the fly from --params and --src; never both."""
    on_the_fly = {"--params": config.params, "--src": config.src, "--sampler": config.sampler}
    given = [flag for flag, value in on_the_fly.items() if value is not None]
    if config.mode != "pretrain":
        if given:
            raise TransferError(f"{', '.join(given)} make pretraining pairs on the fly; {config.mode} trains on "
                                "--pairs")
        return
    if config.manifest is not None and given:
        raise TransferError(f"give --manifest (pre-generated pairs) or --params with --src (pairs made on the fly), "
                            f"not both; got --manifest and {', '.join(given)}")
    if config.manifest is None and config.params is None and config.src is None:
        raise TransferError("pretraining needs --manifest (a Parquet manifest written by `lowsim generate`) or "
                            "--params with --src (pairs made on the fly)")
    if config.manifest is None and (config.params is None) != (config.src is None):
        missing, present = ("--src", "--params") if config.src is None else ("--params", "--src")
        raise TransferError(f"on-the-fly pretraining needs both --params and --src; got {present} without "
                            f"{missing}")
    if config.params is not None and config.input_kind == "raw":
        raise TransferError("on-the-fly pretraining makes sRGB pairs; for --input raw generate a raw manifest "
                            "(`lowsim generate --output raw`) and pass --manifest")


def _check_model_choice(config: TrainConfig) -> None:
    """The mode, the model name and its model-specific options."""
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


def _check_numbers(config: TrainConfig) -> None:
    """Sizes, budgets and intervals must be positive; the learning rate a positive number."""
    positive = {"--iters": config.iters, "--epochs": config.epochs, "--patch": config.patch,
                "--batch": config.batch, "--val-every": config.val_every, "--save-every": config.save_every,
                "--patience": config.patience, "--stop-after": config.stop_after, "--tile": config.tile,
                "--val-limit": config.val_limit, "--width": config.width}
    for name, value in positive.items():
        if value is not None and not (value > 0):
            raise TransferError(f"{name} must be positive, got {value}")
    if not (math.isfinite(config.lr) and config.lr > 0):
        raise TransferError(f"--lr must be a positive number, got {config.lr}")
    if config.epochs is not None and not math.isfinite(config.epochs):
        raise TransferError(f"--epochs must be a finite number, got {config.epochs}")
    if not (math.isfinite(config.cache_mb) and config.cache_mb >= 0):
        raise TransferError(f"--cache-mb must be a number >= 0, got {config.cache_mb}")
    if not 0 <= config.seed < 2**63:  # numpy's SeedSequence and torch.manual_seed take no negative seed
        raise TransferError(f"--seed must be an integer from 0 to 2**63 - 1, got {config.seed}")


def check_model_options(name: str, options: dict[str, Any]) -> None:
    """Model-specific options must be ones the model's constructor takes; the message lists those it does."""
    common = sorted(set(options) & set(COMMON_OPTIONS))
    if common:
        raise TransferError(f"model option(s) {', '.join(common)} have options of their own (--width, --input, "
                            f"--norm); expected only model-specific options in model_options")
    accepted = model_options(name)
    unknown = [key for key in options if key not in accepted]
    if unknown:
        flags = ", ".join(option_flag(key) for key in unknown)
        raise TransferError(f"model {name} does not take {flags}; its options: {', '.join(accepted)}")


def check_patch(patch: int, model: BlockModel) -> None:
    """A patch must survive the network's downsampling: a multiple of 32 (sRGB) or 16 (packed raw)."""
    if patch % model.pad_multiple:
        after = ", after space-to-depth" if model.scale == 1 else ""
        raise TransferError(f"--patch {patch} must be a multiple of {model.pad_multiple} for "
                            f"{model.input_kind} input (4 poolings{after})")


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
