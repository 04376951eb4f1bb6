"""Noise augmentation of the real pairs during fine-tuning (`transfer finetune --augment-params P`): a share
(--augment-prob) of the training patches trade their real dark input for a synthetic one, made from the pair's own
bright patch by lowsim's generate step with a parameter draw from the calibrated params file P.

Which patches, and each one's draw and noise, follow from SeedSequence(seed, spawn_key=(AUGMENT_STREAM, s, i)) for
sample i of the global batch of step s, as on-the-fly pretraining keys its samples (transfer.onthefly): a batch
stays a pure function of (run seed, step, index), so `--resume` is exact and the number of loader workers or
torchrun processes changes nothing. An augmented sample is what on-the-fly pretraining would make with the bright
patch as its photo (transfer.onthefly.synthesize_patch): the patch with the generate step's flips, degraded; a
model that reads a whole-image view (global_local) gets that synthetic patch pooled, as in pretraining, since the
synthetic dark exists for the patch alone. sRGB input only.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lowsim.errors import LowsimError, printable
from transfer.errors import TransferError

AUGMENT_STREAM = 0x0A06  # spawn-key head of augmentation draws; on-the-fly pretraining uses 0x0F1E and 0x0F1F
DEFAULT_PROB = 0.5
SCHEME = 1  # how the draws follow from (seed, step, index); part of the run's fingerprint


@dataclass(frozen=True)
class NoiseAugment:
    """What augments the training patches: the parameter distribution, the share of patches it replaces, and the
    run seed and global batch that key each patch's draw."""

    dist: Any  # lowsim.params.ParamDistribution, or a recipe's RangeDistribution (sRGB models)
    prob: float
    seed: int
    batch: int

    def seed_sequence(self, position: int) -> np.random.SeedSequence:
        """The SeedSequence of the patch at stream position `position` (step and index within the global batch)."""
        step, index = position // self.batch + 1, position % self.batch
        return np.random.SeedSequence(self.seed, spawn_key=(AUGMENT_STREAM, step, index))

    def sample(self, position: int, bright: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(synthetic input, target) float32 HWC patches made from the bright patch's stored codes, or None when
        this position keeps its real dark input."""
        from transfer.onthefly import synthesize_patch

        choose, draw = self.seed_sequence(position).spawn(2)
        if not np.random.default_rng(choose).random() < self.prob:
            return None
        return synthesize_patch(bright, self.dist, draw, bright.shape[0], bit_depth_of(bright))


def bit_depth_of(codes: np.ndarray) -> int:
    """8 or 16: the depth of stored image codes, so the synthetic dark is made at the real pairs' depth."""
    return 8 if codes.dtype == np.uint8 else 16


def check_augment_options(params: Path | None, prob: float | None, mode: str, input_kind: str | None) -> None:
    """Refuse what cannot work before any data is read: a probability without a params file or outside [0, 1], a
    mode other than fine-tuning, packed raw input."""
    if params is None:
        if prob is not None:
            raise TransferError("--augment-prob needs --augment-params (the calibrated params file to draw from)")
        return
    if mode != "finetune":
        raise TransferError(f"--augment-params augments the real pairs of a fine-tuning run; {mode} does not "
                            "fine-tune")
    if prob is not None and not 0.0 <= prob <= 1.0:
        raise TransferError(f"--augment-prob must be in [0, 1], got {prob}")
    if input_kind == "raw":
        raise TransferError("--augment-params makes sRGB dark images; it cannot augment --input raw (packed raw) "
                            "pairs")


def load_augment_params(params: Path) -> tuple[Any, Path]:
    """The distribution of --augment-params (a params file or a shipped name: lol) and its path; every problem is
    one TransferError naming the option and the file."""
    from lowsim.project import resolve_params
    from transfer.onthefly import load_srgb_distribution

    try:
        path = resolve_params(Path(params))
        return load_srgb_distribution(path, None, "noise augmentation makes sRGB dark images (use an sRGB "
                                                  "calibration)"), path
    except LowsimError as err:  # TransferError included: each one gets the option's name in front
        raise TransferError(f"--augment-params: {err}") from None


def describe_augment(dist: Any, path: Path, prob: float) -> dict[str, Any]:
    """config.json's and the fingerprint's description: what decides the augmented samples."""
    from transfer.onthefly import params_signature

    decided = {"scheme": SCHEME, **params_signature(path, dist), "prob": prob}
    digest = hashlib.sha256(json.dumps(decided, sort_keys=True).encode()).hexdigest()
    return {"params": printable(path), **decided, "sha256": digest}


def check_model_input(input_kind: str) -> None:
    """The model being fine-tuned must read sRGB images (a checkpoint of a raw model is refused)."""
    if input_kind != "srgb":
        raise TransferError(f"--augment-params makes sRGB dark images; the checkpoint's model reads {input_kind} "
                            "input")
