"""Enhancing image files with a checkpoint: sRGB files, and camera raw files (packed, times --ratio) for raw models."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from lowsim.imageio import is_raw, list_images, read_bayer_packed, read_image, write_png
from transfer.enhancer import load_enhancer
from transfer.errors import TransferError
from transfer.infer import DEFAULT_TILE
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


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given; a folder stands for the images in it (recursive, sorted)."""
    images: list[Path] = []
    for item in map(Path, inputs):
        images.extend(list_images(item) if item.is_dir() else [item])
    return images


def load_input(path: Path, input_kind: str, ratio: float | None) -> np.ndarray:
    """One file as the enhancer takes it: packed raw as float (times the ratio), sRGB as stored (uint8/uint16)."""
    if input_kind == "raw":
        if not is_raw(path):
            raise TransferError("this checkpoint takes packed camera raw input; expected a raw file "
                                "(.arw, .nef, .cr2, .dng, .raf)", path)
        if ratio is None:
            raise TransferError("a raw-input checkpoint needs --ratio (the exposure amplification, e.g. 100 "
                                "or 300 as in SID)", path)
        return np.minimum(read_bayer_packed(path) * np.float32(ratio), np.float32(1.0))
    if ratio is not None:
        raise TransferError("--ratio applies to raw-input checkpoints only; this one takes sRGB images")
    return read_image(path)


def enhance_files(checkpoint: str | Path, images: Sequence[str | Path], out_dir: str | Path,
                  ratio: float | None = None, tile: int = DEFAULT_TILE, device: str = "auto",
                  alpha: float | None = None) -> list[Path]:
    """Enhance each image (a folder: the images in it) and write <out_dir>/<stem>.png (8-bit for 8-bit inputs,
    else 16-bit); alpha sets the restoration strength of models with an alpha input (None: the checkpoint's)."""
    if not images:
        raise TransferError("no images given")
    if ratio is not None and not (np.isfinite(ratio) and ratio > 0):
        raise TransferError(f"--ratio must be a positive number, got {ratio}")
    check_output_dir(Path(out_dir), "--out")
    images = expand_inputs(images)
    outputs = output_paths(images, Path(out_dir))
    enhancer = load_enhancer(checkpoint, device=device, tile=tile, alpha=alpha)
    written = []
    for image, out in zip(images, outputs):
        x = load_input(image, enhancer.input_kind, ratio)
        if x.dtype == np.float32:  # packed raw: written at 16 bits
            result = np.round(enhancer.enhance_float(x) * 65535).astype(np.uint16)
        else:
            result = enhancer.enhance(x)
        written.append(write_png(out, result))
    return written
