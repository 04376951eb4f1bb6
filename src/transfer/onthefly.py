"""Pretraining on pairs made on the fly: `transfer pretrain --params P --src DIR` degrades every training sample
from a clean photo with lowsim's own generate step (lowsim.generate.synthesize) when the loader asks for it,
instead of reading pre-generated pairs from a manifest.

Sample i of the global batch of step s is stream position p = (s - 1) * B + i. Its source is the (p mod S)-th
photo of cycle p // S, each cycle a seeded shuffle of the S training photos (lowsim's source_index, as generate
picks sources); its crop, parameter draw and noise come from SeedSequence(seed, spawn_key=(TRAIN_STREAM, s, i)).
So a batch is a pure function of (run seed, step, index): a resumed run sees the batches an uninterrupted one
would, and the global batch is the same for any number of loader workers or torchrun processes (each takes its
slice of the step's indices, transfer.data.StepBatchSampler).

A sample is generate's with --size = --patch and --bit-depth 8: a patch x patch crop (a source smaller than that
upscaled first), random flips and transpose, a parameter set drawn from the params file (--sampler normal or
empirical), the degradation, both images as 8-bit codes; with the same source, streams and params it is exactly
the pair `lowsim generate` writes. Photos split as generate's rows do (lowsim.splits on the path below --src):
'train' photos are trained on, 'val' photos give the fixed validation pairs (one per photo, drawn once from
SeedSequence(VALIDATION_SEED, spawn_key=(VAL_STREAM, k)), the same for every --seed), 'test' photos are left
out. Every training photo is decoded once up front (an unreadable one stops the run before step 1) and kept in RAM
within --cache-mb; loader workers inherit that cache, photos past the budget are decoded on each use.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from lowsim.errors import LowsimError, printable
from lowsim.splits import DEFAULT_FRACTIONS, assign_split
from transfer.data import Decoded, DecodedStore, PatchItem, adaptive_average_pool, bright_to_float, dark_to_float
from transfer.errors import TransferError

# spawn-key heads of training (3-part keys) and validation (2-part) samples; generate's keys are (i,) and (ORDER, c)
TRAIN_STREAM = 0x0F1E
VAL_STREAM = 0x0F1F
BIT_DEPTH = 8  # generate's default depth: the same codes a manifest run trains on
VALIDATION_SEED = 0  # validation pairs do not follow --seed: runs of several seeds validate on the same pairs
SCHEME = 1  # how samples follow from (seed, step, index); part of the data fingerprint


@dataclass(frozen=True)
class SourceItem:
    """One clean photo: its path below --src (the name) and on disk; alpha: none (models with an alpha input use
    their configured one)."""

    name: str
    path: Path
    alpha: float | None = None


@dataclass(frozen=True)
class OnTheFlySources:
    """The photos of --src by split, the parameter distribution to draw from, and their description."""

    root: Path
    train: list[SourceItem]
    val: list[SourceItem]
    dist: Any  # lowsim.params.ParamDistribution, or a recipe's RangeDistribution
    description: dict[str, Any]


# ------------------------------------------------------------------------------------------ finding the inputs

def resolve_sources(src: Path, params: Path, sampler: str | None) -> OnTheFlySources:
    """The photos under --src (generate's listing) split by name, and the params file's distribution."""
    from lowsim.generate import find_sources

    dist = load_onthefly_params(params, sampler)
    root, names = find_sources(Path(src))
    items: dict[str, list[SourceItem]] = {split: [] for split in DEFAULT_FRACTIONS}
    for name in names:
        items[assign_split(name, DEFAULT_FRACTIONS)].append(SourceItem(name, root / name))
    if not items["train"]:
        raise TransferError(f"none of the {len(names)} photo(s) in --src falls in the train split (photos split "
                            "90/5/5 by a hash of their path); add photos", src)
    return OnTheFlySources(root, items["train"], items["val"], dist,
                           describe_sources(root, names, params, dist))


def load_onthefly_params(params: Path, sampler: str | None) -> Any:
    """generate's distribution of a params file (--sampler overriding the file's); sRGB models only."""
    return load_srgb_distribution(params, sampler, "on-the-fly pretraining makes sRGB pairs (generate a raw "
                                                   "manifest and pass --manifest)")


def load_srgb_distribution(params: Path, sampler: str | None, needs_srgb: str) -> Any:
    """generate's distribution of a params file, refused when its model makes packed raw frames (`needs_srgb`
    says what wants sRGB pairs instead)."""
    from lowsim.generate import load_distribution
    from lowsim.params import RAW_MODEL

    dist = load_distribution(Path(params), None, sampler)
    if dist.model == RAW_MODEL:
        raise TransferError(f"the params file is for {dist.model}, which makes packed raw frames; {needs_srgb}",
                            params)
    return dist


def params_signature(params: Path, dist: Any) -> dict[str, Any]:
    """What of a params file decides synthetic samples: its bytes, model and sampler, and the model's noise
    samplers, as in generate's run signature (a lowsim that renders otherwise refuses --resume)."""
    from lowsim.degradation.registry import get_model
    from lowsim.params import file_sha256

    return {"params_sha256": file_sha256(params), "model": dist.model, "sampler": dist.sampler,
            "noise_samplers": list(get_model(dist.model).samplers)}


def describe_sources(root: Path, names: Sequence[str], params: Path, dist: Any) -> dict[str, Any]:
    """config.json's data description; its sha256 covers what decides the samples (photos, params, sampler)."""
    listing = hashlib.sha256("\n".join(names).encode("utf-8", "surrogateescape")).hexdigest()
    decided = {"scheme": SCHEME, "sources_sha256": listing, "n_sources": len(names),
               **params_signature(params, dist), "bit_depth": BIT_DEPTH}
    digest = hashlib.sha256(json.dumps(decided, sort_keys=True).encode()).hexdigest()
    return {"kind": "onthefly", "src": printable(root), "params": printable(params), **decided, "sha256": digest}


# ------------------------------------------------------------------------------------------ photos in RAM

def read_source(item: SourceItem) -> np.ndarray:
    """A photo's pixels as generate reads them; unreadable or too small for generate: TransferError."""
    from lowsim.generate.plan import MIN_SOURCE_SIDE
    from lowsim.imageio import read_image

    try:
        image = read_image(item.path)
    except LowsimError as err:
        raise TransferError(f"cannot use source photo: {err}") from None
    except OSError as err:
        raise TransferError(f"cannot read source photo ({err.strerror or err})", item.path) from None
    if min(image.shape[:2]) < MIN_SOURCE_SIDE:
        raise TransferError(f"source photo is {image.shape[1]}x{image.shape[0]} px, smaller than the "
                            f"{MIN_SOURCE_SIDE} px a side generate needs; remove it from --src", item.path)
    return image


class SourceStore(DecodedStore[np.ndarray]):
    """The clean photos, decoded as generate reads them (read_source), in RAM up to a byte budget."""

    def decode(self, item: SourceItem) -> np.ndarray:
        """The photo's pixels."""
        return read_source(item)


# ------------------------------------------------------------------------------------------ samples

def sample_seed_sequence(seed: int, step: int, index: int) -> np.random.SeedSequence:
    """The SeedSequence of sample `index` of the global batch of step `step` (1-based)."""
    return np.random.SeedSequence(seed, spawn_key=(TRAIN_STREAM, step, index))


def synthesize_codes(source: np.ndarray, dist: Any, seed_sequence: np.random.SeedSequence,
                     patch: int, bit_depth: int = BIT_DEPTH) -> tuple[np.ndarray, np.ndarray]:
    """(dark, clean) HWC codes (8 bits unless asked) of one sample: lowsim's generate step at --size patch."""
    from lowsim.generate import streams_of, synthesize

    made = synthesize(source, dist, streams_of(seed_sequence), patch, bit_depth)
    return made.dark, made.clean


def synthesize_patch(source: np.ndarray, dist: Any, seed_sequence: np.random.SeedSequence,
                     patch: int, bit_depth: int = BIT_DEPTH) -> tuple[np.ndarray, np.ndarray]:
    """(input, target) float32 HWC patches of one sample, converted as a manifest run converts its PNGs."""
    dark, clean = synthesize_codes(source, dist, seed_sequence, patch, bit_depth)
    return dark_to_float(dark, 1.0), bright_to_float(clean)


class OnTheFlyDataset(torch.utils.data.Dataset):
    """Map-style dataset indexed by stream position (transfer.data.StepBatchSampler's); item = (input, target)
    float32 HWC patches degraded on the fly, plus, when `view_size` is given (global_local), the sample pooled to
    view_size a side: a sample is a whole synthetic image, as a manifest row at --size PATCH is."""

    def __init__(self, store: SourceStore, dist: Any, patch: int, seed: int, batch: int,
                 view_size: int | None = None) -> None:
        self.store, self.dist, self.patch, self.seed, self.batch = store, dist, patch, seed, batch
        self.view_size = view_size

    def __len__(self) -> int:  # positions are unbounded; the sampler decides which ones are used
        return 2**62

    def __getitem__(self, position: int) -> PatchItem:
        from lowsim.generate import source_index

        step, index = position // self.batch + 1, position % self.batch
        source = self.store.get(source_index(self.seed, position, len(self.store)))
        dark, clean = synthesize_patch(source, self.dist, sample_seed_sequence(self.seed, step, index), self.patch)
        if self.view_size is None:
            return dark, clean
        return dark, clean, adaptive_average_pool(dark, self.view_size)  # the sample is its whole image


class SyntheticValidation:
    """The fixed validation pairs: one sample per 'val' photo, made once and the same for every run seed (runs
    stay comparable); a PairStore's get/len for transfer.train.trainer.validate."""

    def __init__(self, items: Sequence[SourceItem], dist: Any, patch: int) -> None:
        self.pairs = [Decoded(*synthesize_codes(read_source(item), dist, validation_seed_sequence(k), patch))
                      for k, item in enumerate(items)]
        self.cached_bytes = sum(pair.nbytes for pair in self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def get(self, index: int) -> Decoded:
        """Validation pair `index` (stored 8-bit codes)."""
        return self.pairs[index]


def validation_seed_sequence(index: int) -> np.random.SeedSequence:
    """The SeedSequence of validation sample `index`: seed-independent, so every run validates on the same pairs."""
    return np.random.SeedSequence(VALIDATION_SEED, spawn_key=(VAL_STREAM, index))
