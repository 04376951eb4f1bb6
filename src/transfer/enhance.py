"""Enhancing image files with a checkpoint: sRGB files, and camera raw files (packed, times --ratio) for raw models."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from lowsim.imageio import is_raw, read_bayer_packed, read_image, write_png
from transfer.checkpoint import load_checkpoint
from transfer.data import dark_to_float
from transfer.device import pick_device
from transfer.errors import TransferError
from transfer.infer import DEFAULT_TILE, alpha_kwargs, predict
from transfer.paths import check_output_dir


def output_paths(images: Sequence[Path], out_dir: Path) -> list[Path]:
    """<out_dir>/<stem>.png for each input; two inputs with one stem would overwrite each other: refuse."""
    outputs = [out_dir / f"{Path(p).stem}.png" for p in images]
    seen: dict[Path, Path] = {}
    for image, out in zip(images, outputs):
        if out in seen:
            raise TransferError(f"{seen[out]} and {image} would both be written to {out}; enhance them "
                                "in separate runs")
        seen[out] = Path(image)
    return outputs


def load_input(path: Path, input_kind: str, ratio: float | None) -> tuple[np.ndarray, type]:
    """The network input for one file and the dtype to write the result in."""
    if input_kind == "raw":
        if not is_raw(path):
            raise TransferError("this checkpoint takes packed camera raw input; expected a raw file "
                                "(.arw, .nef, .cr2, .dng, .raf)", path)
        if ratio is None:
            raise TransferError("a raw-input checkpoint needs --ratio (the exposure amplification, e.g. 100 "
                                "or 300 as in SID)", path)
        return np.minimum(read_bayer_packed(path) * np.float32(ratio), np.float32(1.0)), np.uint16
    if ratio is not None:
        raise TransferError("--ratio applies to raw-input checkpoints only; this one takes sRGB images")
    image = read_image(path)
    return dark_to_float(image, 1.0), image.dtype.type


def enhance_files(checkpoint: str | Path, images: Sequence[str | Path], out_dir: str | Path,
                  ratio: float | None = None, tile: int = DEFAULT_TILE, device: str = "auto",
                  alpha: float | None = None) -> list[Path]:
    """Enhance each image and write <out_dir>/<stem>.png (8-bit for 8-bit inputs, else 16-bit); alpha sets the
    restoration strength of models with an alpha input (None: the checkpoint's)."""
    if not images:
        raise TransferError("no images given")
    if ratio is not None and not (np.isfinite(ratio) and ratio > 0):
        raise TransferError(f"--ratio must be a positive number, got {ratio}")
    images = [Path(p) for p in images]
    check_output_dir(Path(out_dir), "--out")
    outputs = output_paths(images, Path(out_dir))
    model, meta = load_checkpoint(checkpoint, pick_device(device))
    alpha_kwargs(model, alpha)  # a model without an alpha input refuses --alpha before any file is read
    written = []
    for image, out in zip(images, outputs):
        x, dtype = load_input(image, meta["input_kind"], ratio)
        result = predict(model, x, tile=tile, alpha=alpha)
        peak = 255 if dtype == np.uint8 else 65535
        written.append(write_png(out, np.round(result * peak).astype(dtype)))
    return written
