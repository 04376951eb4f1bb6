"""The pictures of docs/raw.md's end-to-end smoke run (the commands are in docs/raw.md).

    PYTHONPATH=src .venv/bin/python scripts/raw_smoke_figure.py --manifest runs/raw-smoke/data.parquet \\
        --pretrain runs/raw-smoke/pretrain --finetune runs/raw-smoke/finetune \\
        --blackmagic ../shared/data/raw-real/blackmagic_pocket4k.dng --enhanced runs/raw-smoke/enhanced \\
        --out docs/raw

smoke_pairs.jpg: for three generated val/test samples, the dark raw frame amplified by its ratio (bilinear
demosaic, v2's camera colour, gamma 2.2), the pretrained network's output and the clean target.
smoke_blackmagic.jpg: the Blackmagic DNG as rawpy renders it and as the fine-tuned network enhances it (--ratio 1),
both 1024 pixels wide.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from lowsim.degradation import stages, v2
from lowsim.imageio import read_image, read_raw_rgb
from lowsim.safe_io import atomic_write_bytes
from lowsim.raw.synthesize import read_packed
from transfer.data import load_manifest
from transfer.enhancer import load_enhancer


def preview(packed: np.ndarray) -> np.ndarray:
    """A packed R, G1, B, G2 frame in [0, 1] as a viewable uint8 RGB image (2x size)."""
    mosaic = np.zeros((packed.shape[0] * 2, packed.shape[1] * 2), np.float32)
    for channel, (row, col) in enumerate(((0, 0), (0, 1), (1, 1), (1, 0))):
        mosaic[row::2, col::2] = packed[..., channel]
    rgb = v2.from_camera(stages.demosaic(mosaic))
    return stages.quantize(stages.apply_gamma(rgb, 2.2), 8)


def pairs_strip(manifest: Path, pretrain: Path, count: int = 3) -> np.ndarray:
    """Rows of (dark x ratio, network output, clean target) for the first `count` held-out samples."""
    enhancer = load_enhancer(pretrain, device="cpu")
    items = [i for split in ("val", "test") for i in load_manifest(manifest, split)][:count]
    rows = []
    for item in items:
        dark = np.minimum(read_packed(item.dark, *item.levels) * np.float32(item.ratio), 1.0)
        out = stages.quantize(np.asarray(enhancer.enhance(dark)), 8)
        rows.append(np.concatenate([preview(dark), out, read_image(item.bright)], axis=1))
    return np.concatenate(rows, axis=0)


def side_by_side(reference: np.ndarray, enhanced: np.ndarray, width: int = 1024) -> np.ndarray:
    """Two images resized to `width` and stacked vertically (uint8)."""
    def small(img: np.ndarray) -> np.ndarray:
        img = img if img.dtype == np.uint8 else (img // 257).astype(np.uint8)
        return cv2.resize(img, (width, int(round(img.shape[0] * width / img.shape[1]))), interpolation=cv2.INTER_AREA)
    return np.concatenate([small(reference), small(enhanced)], axis=0)


def write_jpeg(path: Path, rgb: np.ndarray) -> None:
    """An RGB uint8 image as JPEG (quality 85: noise makes PNGs of these megabytes), atomically."""
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 85])
    atomic_write_bytes(path, data.tobytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("manifest", "pretrain", "finetune", "blackmagic", "enhanced", "out"):
        parser.add_argument(f"--{name}", type=Path, required=True)
    args = parser.parse_args()
    write_jpeg(args.out / "smoke_pairs.jpg", pairs_strip(args.manifest, args.pretrain))
    enhanced = read_image(args.enhanced / f"{args.blackmagic.stem}.png")
    write_jpeg(args.out / "smoke_blackmagic.jpg", side_by_side(read_raw_rgb(args.blackmagic), enhanced))


if __name__ == "__main__":
    main()
