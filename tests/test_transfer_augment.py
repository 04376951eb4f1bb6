"""Noise augmentation of the real pairs (transfer.augment): at probability 1 every dark input is a synthetic one made
from the pair's own bright patch, at 0 none is; the draws are a pure function of (run seed, step, index), so loader
workers change nothing and a resumed run equals an uninterrupted one; user mistakes are one line."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lowsim.project import shipped_params
from test_transfer_cli import assert_one_line_error, run_cli
from test_transfer_fixtures import lol_tiny, manifest_tiny, tiny_config  # noqa: F401
from transfer.augment import AUGMENT_STREAM, NoiseAugment, load_augment_params
from transfer.checkpoint import save_checkpoint
from transfer.data import (PairStore, PatchDataset, StepBatchSampler, adaptive_average_pool, bright_to_float,
                           load_pairs, make_loader, plan_patch)
from transfer.errors import TransferError
from transfer.models import create_model
from transfer.onthefly import synthesize_patch
from transfer.train import run_training

PATCH = 32


@pytest.fixture(scope="module")
def lol_dist():
    return load_augment_params(Path("lol"))[0]


@pytest.fixture
def store(lol_tiny: Path) -> PairStore:
    return PairStore(load_pairs(lol_tiny), "srgb", 2**30)


def dataset(store: PairStore, dist, prob: float | None, seed: int = 3, batch: int = 4, **extra) -> PatchDataset:
    """The patches of a run with seed `seed`; prob None: no augmentation at all."""
    augment = None if prob is None else NoiseAugment(dist, prob, seed, batch)
    return PatchDataset(store, PATCH, seed, 1, augment=augment, **extra)


def bright_patch(store: PairStore, seed: int, position: int) -> np.ndarray:
    """The stored bright codes under the patch planned for `position`."""
    plan = plan_patch(seed, position, store.dark_shapes, PATCH)
    return store.get(plan.index).bright[plan.top:plan.top + PATCH, plan.left:plan.left + PATCH]


def test_probability_one_replaces_every_dark_input_and_zero_none(store: PairStore, lol_dist) -> None:
    plain, never, always = (dataset(store, lol_dist, prob) for prob in (None, 0.0, 1.0))
    for position in range(12):
        real_dark, real_bright = plain[position]
        kept = never[position]
        assert np.array_equal(kept[0], real_dark) and np.array_equal(kept[1], real_bright)
        dark, bright = always[position]
        assert dark.shape == real_dark.shape == (PATCH, PATCH, 3) and dark.dtype == np.float32
        assert not np.array_equal(dark, real_dark)
        crop = bright_patch(store, 3, position)
        # the target is the pair's own bright patch (with the generate step's flips), the input its degradation
        assert np.array_equal(np.sort(bright.ravel()), np.sort(bright_to_float(crop).ravel()))
        draw = np.random.SeedSequence(3, spawn_key=(AUGMENT_STREAM, position // 4 + 1, position % 4)).spawn(2)[1]
        made = synthesize_patch(crop, lol_dist, draw, PATCH)
        assert np.array_equal(made[0], dark) and np.array_equal(made[1], bright)
        assert dark.mean() < bright.mean()  # darkened, as the calibrated LOL model does


def test_probability_sets_the_share_of_augmented_patches(store: PairStore, lol_dist) -> None:
    plain, half = dataset(store, lol_dist, None), dataset(store, lol_dist, 0.5)
    replaced = sum(not np.array_equal(plain[p][0], half[p][0]) for p in range(60))
    assert 18 <= replaced <= 42


def test_draws_follow_seed_step_and_index(store: PairStore, lol_dist) -> None:
    first, again, other = (dataset(store, lol_dist, 1.0, seed) for seed in (3, 3, 4))
    assert all(np.array_equal(first[p][0], again[p][0]) for p in range(6))
    assert NoiseAugment(lol_dist, 1.0, 3, 4).seed_sequence(9).spawn_key == (AUGMENT_STREAM, 3, 1)
    # another run seed draws other parameters and noise for its patches
    assert not any(np.array_equal(first[p][0], other[p][0]) for p in range(6))


def test_batches_do_not_depend_on_loader_workers(store: PairStore, lol_dist) -> None:
    half = dataset(store, lol_dist, 0.5)

    def batches(workers: int) -> list[torch.Tensor]:
        return [b[0] for b in make_loader(half, StepBatchSampler(0, 3, 4), workers)]

    assert all(torch.equal(a, b) for a, b in zip(batches(0), batches(2)))


def test_a_synthetic_patch_is_its_own_whole_image_view(store: PairStore, lol_dist) -> None:
    plain, always = dataset(store, lol_dist, None, view_size=8), dataset(store, lol_dist, 1.0, view_size=8)
    dark, _, view = always[5]
    assert np.array_equal(view, adaptive_average_pool(dark, 8)) and not np.array_equal(view, plain[5][2])


def finetune_config(run_dir: Path, pre: Path, pairs: Path, **overrides):
    """A tiny fine-tuning run with noise augmentation of half its patches."""
    options = dict(mode="finetune", checkpoint=pre, pairs=pairs, iters=5, val_every=2, val_split=False,
                   augment_params=Path("lol"), augment_prob=0.5, workers=0)
    options.update(overrides)
    return tiny_config(run_dir, **options)


def losses(run_dir: Path) -> list[str]:
    return [row["loss"] for row in csv.DictReader(open(run_dir / "metrics.csv"))]


def test_augmented_finetuning_resumes_exactly(tmp_path: Path, manifest_tiny: Path, lol_tiny: Path) -> None:
    pre = tmp_path / "pre"
    run_training(tiny_config(pre, mode="pretrain", manifest=manifest_tiny, iters=1))
    straight = run_training(finetune_config(tmp_path / "a", pre, lol_tiny))
    # the interrupted run loads in a worker process: the draws depend on (seed, step, index) only
    run_training(finetune_config(tmp_path / "b", pre, lol_tiny, stop_after=2, workers=1))
    resumed = run_training(finetune_config(tmp_path / "b", pre, lol_tiny, resume=True, workers=1))
    assert straight["steps"] == resumed["steps"] == 5
    a, b = (load_file(str(tmp_path / d / "last" / "model.safetensors")) for d in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    assert saved["noise_augment"]["prob"] == 0.5 and saved["noise_augment"]["model"] == "lowsim.degrade/v2"
    assert saved["fingerprint"]["augment_sha256"] == saved["noise_augment"]["sha256"]
    run_training(finetune_config(tmp_path / "c", pre, lol_tiny, augment_params=None, augment_prob=None))
    assert losses(tmp_path / "c") != losses(tmp_path / "a")
    assert json.loads((tmp_path / "c" / "config.json").read_text())["noise_augment"] is None
    with pytest.raises(TransferError, match="options differ.*augment"):  # another share is another run
        run_training(finetune_config(tmp_path / "b", pre, lol_tiny, resume=True, augment_prob=1.0))


def test_bad_augmentation_options_are_one_line(tmp_path: Path, manifest_tiny: Path, lol_tiny: Path,
                                               capsys) -> None:
    tiny = ["--width", "4", "--patch", "32", "--batch", "2", "--iters", "1", "--quiet", "--no-val-split"]
    pre = tmp_path / "pre"
    run_training(tiny_config(pre, mode="pretrain", manifest=manifest_tiny, iters=1))
    finetune = ["finetune", "--checkpoint", pre, "--pairs", lol_tiny, "--run-dir", tmp_path / "ft", *tiny]
    code, _, err = run_cli([*finetune, "--augment-prob", "0.5"], capsys)
    assert_one_line_error(code, err, "--augment-prob needs --augment-params")
    code, _, err = run_cli([*finetune, "--augment-params", "lol", "--augment-prob", "1.5"], capsys)
    assert_one_line_error(code, err, "--augment-prob must be in [0, 1], got 1.5")
    code, _, err = run_cli([*finetune, "--augment-params", tmp_path / "missing.json"], capsys)
    assert_one_line_error(code, err, "--augment-params: ")
    assert "missing.json" in err
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps({"schema_version": 99, "names": [], "mean": [], "cov": []}))
    code, _, err = run_cli([*finetune, "--augment-params", odd], capsys)
    assert_one_line_error(code, err, "odd.json: params schema version 99 is not supported")
    code, _, err = run_cli([*finetune, "--augment-params", "sony_a7s2"], capsys)
    assert_one_line_error(code, err, "noise augmentation makes sRGB dark images")
    assert "sony_a7s2.json" in err
    raw = create_model("sid_unet", width=4, input_kind="raw")
    save_checkpoint(tmp_path / "raw", raw, {"model": "sid_unet", "model_config": raw.config, "input_kind": "raw"})
    code, _, err = run_cli([*finetune[:2], tmp_path / "raw", *finetune[3:], "--augment-params", "lol"], capsys)
    assert_one_line_error(code, err, "the checkpoint's model reads raw input")
    assert not (tmp_path / "ft").exists()  # every mistake is refused before the run starts
    with pytest.raises(TransferError, match="cannot augment --input raw"):
        run_training(tiny_config(tmp_path / "r", pairs=lol_tiny, mode="finetune", checkpoint=pre,
                                 input_kind="raw", augment_params=Path("lol")))
    with pytest.raises(TransferError, match="pretrain does not fine-tune"):
        run_training(tiny_config(tmp_path / "p", mode="pretrain", manifest=manifest_tiny,
                                 augment_params=shipped_params("lol")))
