"""Enhancing files: sRGB in, PNG out at the input size and depth; raw files need a raw model and --ratio."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lowsim.imageio import read_image, write_png
from transfer.checkpoint import save_checkpoint
from transfer.enhance import enhance_files
from transfer.errors import TransferError
from transfer.models import create_model


def checkpoint(tmp_path: Path, kind: str) -> Path:
    model = create_model("sid_unet", width=4, input_kind=kind)
    return save_checkpoint(tmp_path / f"ck_{kind}", model, {"model": "sid_unet", "model_config": model.config,
                                                            "input_kind": kind})


def test_srgb_files_keep_size_and_depth(tmp_path: Path) -> None:
    img8 = write_png(tmp_path / "in" / "a.png", np.full((50, 70, 3), 20, np.uint8))
    img16 = write_png(tmp_path / "in" / "b.png", np.full((33, 41, 3), 3000, np.uint16))
    written = enhance_files(checkpoint(tmp_path, "srgb"), [img8, img16], tmp_path / "out")
    a, b = read_image(written[0]), read_image(written[1])
    assert a.shape == (50, 70, 3) and a.dtype == np.uint8
    assert b.shape == (33, 41, 3) and b.dtype == np.uint16
    with pytest.raises(TransferError, match="--ratio applies to raw-input checkpoints only"):
        enhance_files(checkpoint(tmp_path, "srgb"), [img8], tmp_path / "out", ratio=100)


def test_raw_files_need_a_ratio_and_come_out_at_sensor_size(tmp_path: Path) -> None:
    from rawfixtures import random_bayer, write_bayer_dng

    raw = write_bayer_dng(tmp_path / "in" / "shot.ARW", random_bayer(np.random.default_rng(0), 48, 64))
    ck = checkpoint(tmp_path, "raw")
    with pytest.raises(TransferError, match="needs --ratio"):
        enhance_files(ck, [raw], tmp_path / "out")
    out = read_image(enhance_files(ck, [raw], tmp_path / "out", ratio=100)[0])
    assert out.shape == (48, 64, 3) and out.dtype == np.uint16
    png = write_png(tmp_path / "in" / "c.png", np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(TransferError, match="takes packed camera raw input"):
        enhance_files(ck, [png], tmp_path / "out", ratio=100)


def test_two_inputs_with_one_name_are_refused(tmp_path: Path) -> None:
    a = write_png(tmp_path / "x" / "same.png", np.zeros((32, 32, 3), np.uint8))
    b = write_png(tmp_path / "y" / "same.png", np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(TransferError, match="would both be written"):
        enhance_files(checkpoint(tmp_path, "srgb"), [a, b], tmp_path / "out")
