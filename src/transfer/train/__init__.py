"""The training core: pretraining on a synthetic manifest, fine-tuning a pretrained model on a fraction of real
pairs with all but the last blocks frozen, and training from scratch on real pairs (the baseline).

`run_training(TrainConfig(...))` is the one entry point (the CLI and the experiment driver call it). It uses the
paper's L1 loss (MAE) and Adam at 1e-3 with a decay schedule, validates PSNR on full images at intervals, keeps
`best` and `last` checkpoints, and resumes an interrupted run exactly: batches are a pure function of (seed, step)
(see transfer.data) and the optimizer, scheduler and RNG states travel with `last`.

- `config`: `TrainConfig`, the option checks, the step budget and learning-rate schedule.
- `prepare`: the run's pairs (`resolve_data`), its model (`build_model`) and fingerprint.
- `state`: `RunState`, everything a resumed run continues from; it saves and loads itself.
- `trainer`: `Trainer` (setup, `step`, `validate_and_track`, `save`, `run`) and `run_training`.
- `report`: progress output and curves.png.

Models with a per-sample training input (estimate_enhance's alpha) say so themselves
(`BlockModel.training_inputs`): pretrained on a manifest, each patch's `illum_alpha` is the restoration strength
(and, without --alpha, their mean becomes the configured strength); on real pairs (finetune, scratch), which have
none, they use their configured `alpha`, as do validation and inference unless given one.
"""
from __future__ import annotations

from transfer.train.config import (DEFAULT_ITERS, LR_FLOOR, MODES, SCHEDULES, TrainConfig, check_config,
                                   check_model_options, check_patch, lr_factor, total_steps)
from transfer.train.prepare import RunData, backbone_description, build_model, fingerprint, resolve_data
from transfer.train.state import (TRAIN_COLUMNS, TRAIN_CSV, VAL_COLUMNS, VAL_CSV, RunState, capture_rng,
                                  restore_rng)
from transfer.train.trainer import CONFIG_JSON, CURVES_PNG, Trainer, run_training, validate

__all__ = ["CONFIG_JSON", "CURVES_PNG", "DEFAULT_ITERS", "LR_FLOOR", "MODES", "SCHEDULES", "TRAIN_COLUMNS",
           "TRAIN_CSV", "VAL_COLUMNS", "VAL_CSV", "RunData", "RunState", "TrainConfig", "Trainer",
           "backbone_description", "build_model", "capture_rng", "check_config", "check_model_options",
           "check_patch", "fingerprint", "lr_factor", "resolve_data", "restore_rng", "run_training",
           "total_steps", "validate"]
