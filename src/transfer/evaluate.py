"""Scoring a checkpoint (or the dark input itself) on real pairs at full resolution: PSNR and SSIM per image."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from lowsim.errors import printable
from lowsim.safe_io import atomic_write_text
from transfer.checkpoint import load_checkpoint, resolve_checkpoint
from transfer.data import (PairItem, bright_to_float, dark_to_float, decode_item, load_manifest, load_pairs,
                           split_real_pairs)
from transfer.device import pick_device
from transfer.errors import TransferError
from transfer.infer import DEFAULT_TILE, alpha_kwargs, predict, predict_flips
from transfer.metrics import psnr, psnr_gt_mean, ssim
from transfer.report_html import Gallery
from transfer.models import takes_alpha

SPLITS = ("all", "pool", "val")


def select_split(items: list[PairItem], split: str) -> list[PairItem]:
    """All pairs, or the ones lowsim.splits assigns to 'pool' / 'val' (REAL_PAIR_FRACTIONS)."""
    if split not in SPLITS:
        raise TransferError(f"unknown --split {split!r}, expected one of {', '.join(SPLITS)}")
    return list(items) if split == "all" else split_real_pairs(items, split)


def find_items(pairs: str | Path | None, manifest: str | Path | None, layout: str, split: str) -> list[PairItem]:
    """Real pairs (split all/pool/val by name hash) or a manifest's ok rows (split all or its own split names)."""
    if (pairs is None) == (manifest is None):
        raise TransferError("give either --pairs (real pairs) or --manifest (a lowsim synthetic manifest)")
    if manifest is not None:
        items = load_manifest(manifest, None if split == "all" else split)
    else:
        items = select_split(load_pairs(pairs, layout), split)
    if not items:
        raise TransferError(f"no pairs in split {split!r}", pairs if pairs is not None else manifest)
    return items


def evaluate_checkpoint(checkpoint: str | Path | None, pairs: str | Path | None, layout: str = "auto",
                        split: str = "all", identity: bool = False, out_csv: str | Path | None = None,
                        tile: int = DEFAULT_TILE, device: str = "auto",
                        on_image: Callable[[int, int, dict[str, Any]], None] | None = None,
                        manifest: str | Path | None = None, alpha: float | None = None,
                        report: str | Path | None = None, tta: bool = False) -> dict[str, Any]:
    """PSNR/SSIM of every pair (the checkpoint's output, or with identity=True the dark input itself).

    Pairs come from a real pairs folder, or from a lowsim manifest (`manifest=`, e.g. split "test" for the
    synthetic test set). `alpha` sets the restoration strength of models with an alpha input for every image
    (None: the checkpoint's configured one, also for manifest rows); `tta` averages the outputs of the image and
    its flips (transfer.infer.predict_flips). Returns {"rows": [{name, psnr, ssim}],
    "psnr": mean, "ssim": mean, "count", "checkpoint", "split", "alpha"}; with out_csv, also writes the rows
    (name,psnr,ssim) atomically; with report, an HTML gallery in that folder (transfer.report_html).
    """
    if identity == (checkpoint is not None):
        raise TransferError("give either --checkpoint or --identity (score the dark input itself)")
    if identity and tta:
        raise TransferError("--tta averages a model's outputs over flips; --identity runs no model")
    if identity and alpha is not None:
        raise TransferError("--alpha sets a model's restoration strength; --identity runs no model")
    items = find_items(pairs, manifest, layout, split)
    model, kind, weights = None, "srgb", None
    if not identity:
        model, meta = load_checkpoint(checkpoint, pick_device(device))
        alpha_kwargs(model, alpha)  # refused before any image is decoded
        model.eval()
        kind, weights = meta["input_kind"], str(resolve_checkpoint(checkpoint))
    rows: list[dict[str, Any]] = []
    gallery = None if report is None else Gallery(report, f"transfer evaluate: {checkpoint or 'identity'}")
    for index, item in enumerate(items):
        pair = decode_item(item, kind)
        target = bright_to_float(pair.bright)
        if model is None:
            output = dark_to_float(pair.dark, 1.0)
        else:
            run = predict_flips if tta else predict
            output = run(model, dark_to_float(pair.dark, pair.ratio), tile=tile, alpha=alpha)
        row = {"name": item.name, "psnr": psnr(output, target), "ssim": ssim(output, target),
               "psnr_gt_mean": psnr_gt_mean(output, target)}
        rows.append(row)
        if gallery is not None:
            gallery.add(item.name, dark_to_float(pair.dark, 1.0), output, target, row)
        if on_image is not None:
            on_image(index, len(items), row)
    result = {"rows": rows, "psnr": _mean([r["psnr"] for r in rows]), "ssim": _mean([r["ssim"] for r in rows]),
              "psnr_gt_mean": _mean([r["psnr_gt_mean"] for r in rows]),
              "count": len(rows), "checkpoint": weights, "identity": identity, "split": split,
              "input_kind": kind, "alpha": _effective_alpha(model, alpha), "tta": tta}
    if out_csv is not None:
        write_rows(Path(out_csv), rows)
    if gallery is not None:
        result["report"] = gallery.write(f"mean PSNR {result['psnr']:.2f} dB, mean SSIM {result['ssim']:.4f} "
                                         f"over {len(rows)} image(s), split {split}")
    return result


def _effective_alpha(model: torch.nn.Module | None, alpha: float | None) -> float | None:
    """The restoration strength the model ran with (None for models without an alpha input)."""
    if model is None or not takes_alpha(model):
        return None
    return float(alpha) if alpha is not None else float(model.alpha)


def _mean(values: list[float]) -> float:
    """Arithmetic mean over images (inf when any image is a perfect match)."""
    return float(np.mean(values)) if values else math.nan


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """name,psnr,ssim[,psnr_gt_mean] per image, written atomically (names as printable UTF-8)."""
    buffer = io.StringIO()
    gt_mean = all("psnr_gt_mean" in row for row in rows) and bool(rows)
    fields = ["name", "psnr", "ssim", *(["psnr_gt_mean"] if gt_mean else [])]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: printable(row[k]) if k == "name" else f"{row[k]:.6f}" for k in fields})
    atomic_write_text(path, buffer.getvalue())
