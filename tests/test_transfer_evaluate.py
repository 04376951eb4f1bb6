"""Evaluation: per-image PSNR/SSIM at full resolution, the identity baseline, splits, the CSV."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lowsim.imageio import read_image
from lowsim.splits import REAL_PAIR_FRACTIONS, assign_split
from test_transfer_fixtures import lol_tiny, make_lol, tiny_config  # noqa: F401
from transfer.checkpoint import save_checkpoint
from transfer.errors import TransferError
from transfer.evaluate import evaluate_checkpoint
from transfer.metrics import psnr, ssim
from transfer.models import create_model
from transfer.train import run_training


def test_identity_scores_the_dark_input(tmp_path: Path, lol_tiny: Path) -> None:
    out = tmp_path / "id.csv"
    result = evaluate_checkpoint(None, lol_tiny, identity=True, out_csv=out)
    dark = read_image(lol_tiny / "low" / "p00.png") / 255.0
    bright = read_image(lol_tiny / "high" / "p00.png") / 255.0
    first = result["rows"][0]
    assert first["name"] == "p00" and math.isclose(first["psnr"], psnr(dark, bright), rel_tol=1e-5)
    assert math.isclose(first["ssim"], ssim(dark, bright), rel_tol=1e-5)
    rows = list(csv.DictReader(open(out)))
    assert [r["name"] for r in rows] == [f"p{i:02d}" for i in range(6)]
    assert list(rows[0]) == ["name", "psnr", "ssim", "psnr_gt_mean"]
    assert math.isclose(result["psnr"], np.mean([float(r["psnr"]) for r in rows]), rel_tol=1e-6)
    # GT-mean: the dark input scaled to the target's mean scores far higher than the dark input itself
    assert first["psnr_gt_mean"] > first["psnr"] + 5
    scaled = np.clip(dark * (bright.mean() / dark.mean()), 0, 1)
    assert math.isclose(first["psnr_gt_mean"], psnr(scaled, bright), rel_tol=1e-4)


def test_split_selects_the_held_out_pairs(lol_tiny: Path) -> None:
    result = evaluate_checkpoint(None, lol_tiny, identity=True, split="val")
    expected = [f"p{i:02d}" for i in range(6) if assign_split(f"p{i:02d}", REAL_PAIR_FRACTIONS) == "val"]
    assert [r["name"] for r in result["rows"]] == expected and result["count"] == len(expected)
    with pytest.raises(TransferError, match="unknown --split"):
        evaluate_checkpoint(None, lol_tiny, identity=True, split="test")


def test_checkpoint_is_scored_at_full_resolution_and_tiling_agrees(tmp_path: Path) -> None:
    pairs = make_lol(tmp_path / "lol", n=2, height=100, width=140)
    run_training(tiny_config(tmp_path / "r", pairs=pairs, iters=2, val_split=False))
    whole = evaluate_checkpoint(tmp_path / "r", pairs, tile=512)
    tiled = evaluate_checkpoint(tmp_path / "r", pairs, tile=64)
    assert whole["count"] == 2 and whole["input_kind"] == "srgb"
    assert abs(whole["psnr"] - tiled["psnr"]) < 0.05 and abs(whole["ssim"] - tiled["ssim"]) < 0.01
    assert whole["psnr"] != evaluate_checkpoint(None, pairs, identity=True)["psnr"]


def test_a_perfect_model_scores_infinity(tmp_path: Path, lol_tiny: Path) -> None:
    # A checkpoint whose weights are zero outputs 0 everywhere: compare it with an all-black target pair.
    model = create_model("sid_unet", width=4)
    for param in model.parameters():
        torch.nn.init.zeros_(param)
    save_checkpoint(tmp_path / "zero", model, {"model": "sid_unet", "model_config": model.config,
                                               "input_kind": "srgb"})
    from lowsim.imageio import write_png

    black = tmp_path / "black"
    write_png(black / "low" / "a.png", np.full((40, 40, 3), 9, np.uint8))
    write_png(black / "high" / "a.png", np.zeros((40, 40, 3), np.uint8))
    result = evaluate_checkpoint(tmp_path / "zero", black)
    assert result["psnr"] == math.inf and result["ssim"] == 1.0


def test_checkpoint_and_identity_are_exclusive(tmp_path: Path, lol_tiny: Path) -> None:
    with pytest.raises(TransferError, match="either --checkpoint or --identity"):
        evaluate_checkpoint(None, lol_tiny)
    with pytest.raises(TransferError, match="checkpoint not found"):
        evaluate_checkpoint(tmp_path / "missing", lol_tiny)


def test_manifest_split_is_scored(tmp_path: Path) -> None:
    from test_transfer_fixtures import make_manifest

    manifest = make_manifest(tmp_path / "m", {"train": 2, "test": 3})
    result = evaluate_checkpoint(None, None, manifest=manifest, split="test", identity=True)
    assert [r["name"] for r in result["rows"]] == ["test00", "test01", "test02"]
    assert evaluate_checkpoint(None, None, manifest=manifest, identity=True)["count"] == 5
    with pytest.raises(TransferError, match="either --pairs .* or --manifest"):
        evaluate_checkpoint(None, tmp_path, manifest=manifest, identity=True)
    with pytest.raises(TransferError, match="no pairs in split 'val'"):
        evaluate_checkpoint(None, None, manifest=manifest, split="val", identity=True)
