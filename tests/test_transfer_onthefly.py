"""Pretraining on pairs made on the fly (transfer.onthefly): samples are lowsim's generate step, a pure function of
(run seed, step, index in the global batch), the same for any number of workers or processes, and an interrupted
run resumed equals an uninterrupted one; two torchrun processes train what one does."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lowsim import generate as G
from lowsim.imageio import read_image
from lowsim.project import shipped_params
from transfer.data import StepBatchSampler, bright_to_float, dark_to_float, make_loader
from transfer.onthefly import (OnTheFlyDataset, SourceStore, resolve_sources, sample_seed_sequence,
                               synthesize_patch)
from transfer.train import TrainConfig, run_training

# lowsim.splits assigns these names: photo02 to 'test', photo16 to 'val', the others to 'train'
PHOTOS = {"photo00.png": (48, 64), "photo01.png": (40, 36), "photo02.png": (48, 48), "photo03.png": (64, 80),
          "sub/photo04.png": (56, 40), "photo16.png": (48, 64)}


def write_photos(root: Path) -> Path:
    """Small textured clean photos (one smaller than a 48 px crop, one in a subfolder)."""
    rng = np.random.default_rng(11)
    for name, (height, width) in PHOTOS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        y, x = np.mgrid[0:height, 0:width]
        base = np.stack([x / width, y / height, (x + y) / (height + width)], axis=-1) * 180 + 40
        cv2.imwrite(str(root / name), np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8))
    return root


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return write_photos(tmp_path_factory.mktemp("photos"))


def config(run_dir: Path, photos: Path, **overrides) -> TrainConfig:
    """A tiny on-the-fly pretraining run (width 8, patch 32)."""
    options = dict(mode="pretrain", params=Path("lol"), src=photos, run_dir=run_dir, width=8, patch=32, batch=2,
                   iters=5, val_every=2, progress=False, workers=0)
    options.update(overrides)
    return TrainConfig(**options)


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "last" / "model.safetensors"))


def losses(run_dir: Path) -> list[str]:
    return [row["loss"] for row in csv.DictReader(open(run_dir / "metrics.csv"))]


def test_sources_split_like_generates_rows(photos: Path) -> None:
    sources = resolve_sources(photos, shipped_params("lol"), None)
    assert [s.name for s in sources.train] == ["photo00.png", "photo01.png", "photo03.png", "sub/photo04.png"]
    assert [s.name for s in sources.val] == ["photo16.png"]
    assert sources.dist.model == "lowsim.degrade/v2" and sources.description["kind"] == "onthefly"
    assert sources.dist.sampler == "empirical"  # the shipped file's own; --sampler overrides it
    normal = resolve_sources(photos, shipped_params("lol"), "normal")
    assert normal.dist.sampler == "normal" and normal.description["sha256"] != sources.description["sha256"]


def test_a_sample_is_generates_step_from_seed_step_and_index(photos: Path) -> None:
    sources = resolve_sources(photos, shipped_params("lol"), None)
    store = SourceStore(sources.train, 2**30)
    dataset = OnTheFlyDataset(store, sources.dist, 32, seed=4, batch=3)
    position = 3 * 2 + 1  # step 3, index 1
    dark, bright = dataset[position]
    source = read_image(sources.train[G.source_index(4, position, len(sources.train))].path)
    made = G.synthesize(source, sources.dist, G.streams_of(sample_seed_sequence(4, 3, 1)), 32)
    # converted as a manifest run converts the PNGs generate writes
    assert np.array_equal(dark, dark_to_float(made.dark, 1.0)) and np.array_equal(bright, bright_to_float(made.clean))
    assert dark.shape == (32, 32, 3) and dark.dtype == np.float32
    again = synthesize_patch(source, sources.dist, sample_seed_sequence(4, 3, 1), 32)
    assert all(np.array_equal(a, b) for a, b in zip(again, (dark, bright)))
    assert not np.array_equal(dataset[position + 1][0], dark)


def test_batches_do_not_depend_on_workers_or_processes(photos: Path) -> None:
    sources = resolve_sources(photos, shipped_params("lol"), None)
    dataset = OnTheFlyDataset(SourceStore(sources.train, 2**30), sources.dist, 32, seed=0, batch=4)

    def batches(workers: int, rank: int = 0, world: int = 1) -> list[torch.Tensor]:
        return [b[0] for b in make_loader(dataset, StepBatchSampler(1, 4, 4, rank, world), workers)]

    one = batches(0)
    assert len(one) == 3 and one[0].shape == (4, 3, 32, 32)
    assert all(torch.equal(a, b) for a, b in zip(one, batches(2)))
    halves = [batches(0, rank, 2) for rank in (0, 1)]
    assert all(torch.equal(a, torch.cat([h0, h1])) for a, h0, h1 in zip(one, *halves))


def test_onthefly_pretrain_writes_a_run_that_validates(tmp_path: Path, photos: Path) -> None:
    run = tmp_path / "run"
    result = run_training(config(run, photos, iters=4))
    assert result["steps"] == 4 and result["train_count"] == 4 and result["val_count"] == 1
    assert result["best_step"] is not None and (run / "best" / "model.safetensors").is_file()
    saved = json.loads((run / "config.json").read_text())
    assert saved["data"]["kind"] == "onthefly" and saved["data"]["sampler"] == "empirical"
    assert saved["options"]["params"] == "lol" and saved["fingerprint"]["data_sha256"] == saved["data"]["sha256"]
    assert (run / "train_pairs.txt").read_text().split()[-1] == "sub/photo04.png"
    assert (run / "val_pairs.txt").read_text().split() == ["photo16.png"]


def test_interrupted_onthefly_run_resumed_equals_an_uninterrupted_one(tmp_path: Path, photos: Path) -> None:
    straight = run_training(config(tmp_path / "a", photos))
    # the interrupted run loads in a worker process: samples depend on (seed, step, index) only
    first = run_training(config(tmp_path / "b", photos, stop_after=2, workers=1))
    assert first["steps"] == 2 and first["stop_reason"] == "stopped_after"
    resumed = run_training(config(tmp_path / "b", photos, resume=True, workers=1))
    assert straight["steps"] == resumed["steps"] == 5
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert losses(tmp_path / "a") == losses(tmp_path / "b") and len(losses(tmp_path / "a")) == 5
    run_training(config(tmp_path / "c", photos, seed=1))
    assert losses(tmp_path / "c") != losses(tmp_path / "a")


@pytest.mark.timeout(240)
def test_torchrun_two_processes_train_what_one_does(tmp_path: Path, photos: Path) -> None:
    def args(run_dir: Path) -> list[str]:
        return ["-m", "transfer", "pretrain", "--params", "lol", "--src", str(photos), "--run-dir", str(run_dir),
                "--iters", "3", "--width", "8", "--patch", "32", "--batch", "4", "--workers", "0", "--quiet"]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    for command in ([*torchrun, *args(tmp_path / "ddp")], [sys.executable, *args(tmp_path / "one")]):
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=200)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "ddp" / "config.json").read_text())["metrics"]["world_size"] == 2
    ddp, one = weights(tmp_path / "ddp"), weights(tmp_path / "one")
    # each rank degraded its half of the same global batches: equal up to the gradients' summation order
    assert max(float((ddp[k] - one[k]).abs().max()) for k in one) < 1e-5
    assert losses(tmp_path / "ddp") != [] and len(losses(tmp_path / "one")) == 3


def test_global_local_gets_the_whole_sample_as_its_view(tmp_path: Path, photos: Path) -> None:
    sources = resolve_sources(photos, shipped_params("lol"), None)
    dataset = OnTheFlyDataset(SourceStore(sources.train, 2**30), sources.dist, 32, seed=0, batch=2, view_size=16)
    dark, _, view = dataset[3]
    assert view.shape == (16, 16, 3) and np.allclose(view, dark.reshape(16, 2, 16, 2, 3).mean(axis=(1, 3)),
                                                     atol=1e-6)
    result = run_training(config(tmp_path / "gl", photos, model="global_local", iters=2))
    assert result["steps"] == 2
