"""Small data makers shared by the transfer tests (tiny LOL folders, lowsim-style manifests, tiny configs, VGG-16
state dicts)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lowsim.imageio import write_png
from transfer.train import TrainConfig
from transfer.models import VGG16_GROUPS


def smooth_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth random uint8 RGB image (blocky gradients, like a photo at low resolution)."""
    coarse = rng.uniform(0.1, 0.9, size=(height // 8 + 2, width // 8 + 2, 3))
    big = np.kron(coarse, np.ones((8, 8, 1)))[:height, :width]
    ramp = np.linspace(0.8, 1.0, width)[None, :, None]
    return np.clip(np.round(big * ramp * 255), 0, 255).astype(np.uint8)


def darken(rng: np.random.Generator, bright: np.ndarray) -> np.ndarray:
    """A dark, noisy version of an image (uint8)."""
    dark = bright.astype(np.float64) * 0.15 + rng.normal(0, 2.0, bright.shape)
    return np.clip(np.round(dark), 0, 255).astype(np.uint8)


def make_lol(root: Path, n: int = 6, height: int = 64, width: int = 96, seed: int = 0) -> Path:
    """A LOL-layout folder (low/, high/) of n small pairs named p00, p01, ..."""
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    for i in range(n):
        bright = smooth_image(rng, height, width)
        write_png(root / "high" / f"p{i:02d}.png", bright)
        write_png(root / "low" / f"p{i:02d}.png", darken(rng, bright))
    return root


def make_manifest(root: Path, splits: dict[str, int] | None = None, statuses: list[str] | None = None,
                  height: int = 64, width: int = 64, seed: int = 0, alphas: list[float] | None = None) -> Path:
    """A lowsim-style Parquet manifest with clean/dark PNGs under root (paths relative to the manifest); with
    `alphas`, rows (in split order) get an illum_alpha column as `lowsim generate` writes it."""
    splits = splits or {"train": 4, "val": 2}
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    rows = []
    for split, count in splits.items():
        for i in range(count):
            key = f"{split}{i:02d}"
            clean = smooth_image(rng, height, width)
            write_png(root / "clean" / f"{key}.png", clean)
            write_png(root / "dark" / f"{key}.png", darken(rng, clean))
            rows.append({"key": key, "split": split, "clean_file_name": f"clean/{key}.png",
                         "dark_file_name": f"dark/{key}.png", "status": "ok", "width": width, "height": height,
                         "gamma": 1.0})
    for row, status in zip(rows, statuses or []):
        row["status"] = status
    for row, alpha in zip(rows, alphas or []):
        row["illum_alpha"] = alpha
    path = root / "manifest.parquet"
    pd.DataFrame(rows).to_parquet(path)
    return path


def tiny_config(run_dir: Path, **overrides) -> TrainConfig:
    """A TrainConfig small enough to run in about a second on two CPU cores."""
    options = dict(mode="scratch", run_dir=run_dir, width=4, patch=32, batch=2, iters=3, progress=False,
                   val_every=2)
    options.update(overrides)
    return TrainConfig(**options)


def vgg16_bn_state_dict(width: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A torchvision-layout VGG-16-bn `features` state dict (conv, BN, ReLU per layer, max-pool per group)."""
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    index, in_ch = 0, 3
    for n_convs, out_ch in zip(VGG16_GROUPS, [width * m for m in (1, 2, 4, 8, 8)]):
        for _ in range(n_convs):
            state[f"features.{index}.weight"] = torch.randn(out_ch, in_ch, 3, 3, generator=generator)
            state[f"features.{index}.bias"] = torch.randn(out_ch, generator=generator)
            for name in ("weight", "bias", "running_mean"):
                state[f"features.{index + 1}.{name}"] = torch.randn(out_ch, generator=generator)
            state[f"features.{index + 1}.running_var"] = torch.rand(out_ch, generator=generator) + 0.5
            state[f"features.{index + 1}.num_batches_tracked"] = torch.tensor(1)
            index, in_ch = index + 3, out_ch
        index += 1  # max-pool
    state["classifier.0.weight"] = torch.randn(10, 7, generator=generator)  # ignored: not part of features
    return state


@pytest.fixture
def lol_tiny(tmp_path: Path) -> Path:
    """Six 96x64 LOL-layout pairs."""
    return make_lol(tmp_path / "lol")


@pytest.fixture
def manifest_tiny(tmp_path: Path) -> Path:
    """A manifest with 4 train and 2 val rows of 64x64 images."""
    return make_manifest(tmp_path / "synthetic")
