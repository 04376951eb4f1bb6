"""Full-image inference at any size: pad to the network's multiple and crop back, or tile with blended overlaps.

Tiles are weighted by a separable linear ramp across the overlap (1 in the middle, tapering towards the
tile's edge, never 0), so neighbouring tiles cross-fade and a 4240x2832 SID frame runs in bounded memory.
The output is clipped to [0, 1] (seed 004: values outside the valid range have no meaning). `alpha` is the
restoration strength of models with an alpha input (estimate_enhance); None uses the model's configured one.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from transfer.errors import TransferError
from transfer.models import BlockModel, alpha_models, registered_name, takes_alpha

# Inputs up to this many pixels (input representation) run in one pass; larger ones are tiled.
DEFAULT_TILE = 512
DEFAULT_OVERLAP = 64


def to_tensor(img: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(H, W, C) float array -> (1, C, H, W) float32 tensor on device."""
    return torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1)[None].to(device)


def to_image(x: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) tensor -> (H, W, C) float32 numpy array."""
    return x[0].permute(1, 2, 0).detach().float().cpu().numpy()


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (N, C, H, W) at the bottom/right to multiples of `multiple` (reflect, replicate when too small)."""
    height, width = x.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h == 0 and pad_w == 0:
        return x, (height, width)
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode), (height, width)


def alpha_kwargs(model: torch.nn.Module, alpha: float | None) -> dict[str, Any]:
    """Forward keyword arguments for a restoration strength: none for None; a model without an alpha input, or
    a negative or non-finite alpha, is a TransferError."""
    if alpha is None:
        return {}
    if not takes_alpha(model):
        raise TransferError(f"model {registered_name(model)} has no alpha input; --alpha applies to "
                            f"{', '.join(alpha_models())}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not (math.isfinite(alpha) and alpha >= 0):
        raise TransferError(f"--alpha must be a finite number >= 0, got {alpha!r}")
    return {"alpha": float(alpha)}


def image_context(model: torch.nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """The model's per-image forward arguments for the whole image x (none for a plain module)."""
    context = getattr(model, "image_context", None)
    return {} if context is None else context(x)


@torch.no_grad()
def run_padded(model: BlockModel, x: torch.Tensor, alpha: float | None = None,
               context: dict[str, Any] | None = None) -> torch.Tensor:
    """Run the model on an input of any size: pad to its multiple, run, crop the output back (not clipped).
    `context`: the model's image_context of the whole image x belongs to (default: of x itself, unpadded)."""
    if context is None:
        context = image_context(model, x)
    padded, (height, width) = pad_to_multiple(x, model.pad_multiple)
    out = model(padded, **alpha_kwargs(model, alpha), **context)
    return out[..., : height * model.scale, : width * model.scale]


def ramp_weights(length: int, overlap: int, at_start: bool, at_end: bool) -> np.ndarray:
    """1-D blending weights: a linear ramp over `overlap` samples at inner edges, 1 elsewhere, never 0."""
    weights = np.ones(length, dtype=np.float32)
    ramp_len = min(overlap, length // 2)
    if ramp_len > 0:
        ramp = (np.arange(ramp_len, dtype=np.float32) + 0.5) / ramp_len
        if not at_start:
            weights[:ramp_len] = ramp
        if not at_end:
            weights[length - ramp_len:] = ramp[::-1]
    return weights


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of length `tile` covering [0, size) with at least `overlap` shared samples."""
    if size <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride)) + [size - tile]
    return sorted(set(starts))


@torch.no_grad()
def run_tiled(model: BlockModel, x: torch.Tensor, tile: int = DEFAULT_TILE,
              overlap: int = DEFAULT_OVERLAP, alpha: float | None = None) -> torch.Tensor:
    """Run the model tile by tile (sizes in input pixels) and blend the outputs; returns (1, 3, H*s, W*s)."""
    if overlap < 0 or tile <= overlap:
        raise ValueError(f"tile ({tile}) must be larger than overlap ({overlap}) >= 0")
    _, _, height, width = x.shape
    scale = model.scale
    out = torch.zeros(1, 3, height * scale, width * scale, dtype=torch.float32)
    norm = torch.zeros(1, 1, height * scale, width * scale, dtype=torch.float32)
    ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    context = image_context(model, x)  # per-image decisions (global exposure) from the whole image, not per tile
    for y in ys:
        for x0 in xs:
            patch = x[..., y: y + tile, x0: x0 + tile]
            pred = run_padded(model, patch, alpha, context).float().cpu()
            th, tw = pred.shape[-2:]
            wy = ramp_weights(th, overlap * scale, y == ys[0], y == ys[-1])
            wx = ramp_weights(tw, overlap * scale, x0 == xs[0], x0 == xs[-1])
            weight = torch.from_numpy(np.outer(wy, wx))[None, None]
            oy, ox = y * scale, x0 * scale
            out[..., oy: oy + th, ox: ox + tw] += pred * weight
            norm[..., oy: oy + th, ox: ox + tw] += weight
    return out / norm


def predict_flips(model: BlockModel, img: np.ndarray, **options: Any) -> np.ndarray:
    """Test-time augmentation: the mean of `predict` over the image and its horizontal, vertical and double flips
    (each output flipped back)."""
    outputs = []
    for axes in ((), (1,), (0,), (0, 1)):
        flipped = np.flip(img, axis=axes) if axes else img
        out = predict(model, np.ascontiguousarray(flipped), **options)
        outputs.append(np.flip(out, axis=axes) if axes else out)
    return np.mean(outputs, axis=0, dtype=np.float32)


@torch.no_grad()
def predict(model: BlockModel, img: np.ndarray, tile: int | None = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP,
            device: torch.device | str | None = None, alpha: float | None = None) -> np.ndarray:
    """Enhance one (H, W, C) float image: whole when it fits in one tile (or tile=None), else tiled; clip to [0, 1]."""
    if tile is not None and tile < model.pad_multiple:
        raise TransferError(f"--tile must be at least {model.pad_multiple} input pixels, got {tile}")
    alpha_kwargs(model, alpha)  # refuse a bad alpha before any work
    if device is None:
        device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        x = to_tensor(img, device)
        if tile is None or (x.shape[-2] <= tile and x.shape[-1] <= tile):
            out = run_padded(model, x, alpha)
        else:
            out = run_tiled(model, x, tile, min(overlap, tile // 4), alpha)  # small tiles: keep a useful stride
    finally:
        model.train(was_training)
    return np.clip(to_image(out), 0.0, 1.0)
