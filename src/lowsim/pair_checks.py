"""Checks that tell a usable dark/bright pair from a mismatched or degenerate one (every model's calibrator).

Shared by `lowsim.calibrate` (v1) and `lowsim.calibrate_v2`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

# Pixels at or above this (in either image) are saturated: their true value is unknown.
SATURATED = 250.0 / 255.0
LSB = 1.0 / 255.0

# Mismatch detection. Spearman correlation of 8x8-block mean luminance: blocks average the noise away
# (a very dark, noisy but well matched pair still scores > 0.9) while a different scene or a shift does
# not average away; the rank correlation is blind to any monotone tone curve. On lol-dev the good pairs
# score 0.93–1.00 (median 0.99); 648 (different scene) 0.49, 141 0.79.
MISMATCH_BLOCK = 8
MIN_BLOCK_SPEARMAN = 0.90
MAX_SATURATED_FRACTION = 0.05  # of dark pixels: a saturated "dark" image is not a low-light image
MIN_DARK_P99 = 2.0 * LSB  # 99th percentile below 2 levels: (nearly) empty dark image
MIN_VALID_PIXELS = 2000  # unsaturated pixels needed to fit anything
# Mean |dark - bright| below half a level: the same image twice (a "pair" that calibrates gain 1.0).
IDENTICAL_LEVELS = 0.5


@dataclass(frozen=True)
class PairChecks:
    """Cheap measurements that tell a usable pair from a mismatched or degenerate one."""

    block_spearman: float  # dark vs bright over the blocks the fit does not crush to black
    block_spearman_bright: float  # dark vs bright over all blocks
    dark_saturated: float
    bright_saturated: float
    dark_p99: float
    valid_pixels: int
    dark_mean: float = math.nan  # of all pixels, [0, 1]: a dark image not darker than its bright one is swapped
    bright_mean: float = math.nan
    mean_abs_difference: float = math.nan  # [0, 1]: (near) zero for the same image twice


def block_means(img: np.ndarray, block: int = MISMATCH_BLOCK) -> np.ndarray:
    """Mean luminance (channel mean) over non-overlapping block x block tiles."""
    lum = img.mean(axis=2)
    h, w = (lum.shape[0] // block) * block, (lum.shape[1] // block) * block
    return lum[:h, :w].reshape(h // block, block, w // block, block).mean(axis=(1, 3))


def block_spearman(a: np.ndarray, b: np.ndarray, keep: np.ndarray | None = None) -> float:
    """Spearman rank correlation of the block-mean luminances of two images (0 when undefined).

    `keep` (a boolean block mask) restricts it to some blocks.
    """
    ba, bb = block_means(a), block_means(b)
    if keep is not None:
        ba, bb = ba[keep], bb[keep]
    ba, bb = ba.ravel(), bb.ravel()
    if ba.size < 3 or np.ptp(ba) == 0 or np.ptp(bb) == 0:
        return 0.0
    rho = float(stats.spearmanr(ba, bb).statistic)
    return rho if math.isfinite(rho) else 0.0


def valid_mask(dark: np.ndarray, bright: np.ndarray) -> np.ndarray:
    """Pixels (H, W) where no channel of either image is saturated."""
    return (dark.max(axis=2) < SATURATED) & (bright.max(axis=2) < SATURATED)


def pair_checks(dark: np.ndarray, bright: np.ndarray, predicted: np.ndarray | None = None) -> PairChecks:
    """Structure agreement, saturation, emptiness and usable pixels of one pair.

    With a model prediction, the structure check skips the blocks the model crushes to black (mean
    prediction below 1 level): there the dark image is clipped noise whose ranks are random, which would
    lower a good pair's score. The ranks compared are still dark vs bright, not vs the prediction, so a
    flexible fit cannot hide a different scene.
    """
    keep = None if predicted is None else block_means(predicted) >= LSB
    if keep is not None and keep.sum() < 3:
        keep = None
    return PairChecks(
        block_spearman=block_spearman(dark, bright, keep),
        block_spearman_bright=block_spearman(dark, bright),
        dark_saturated=float(np.mean(dark.max(axis=2) >= SATURATED)),
        bright_saturated=float(np.mean(bright.max(axis=2) >= SATURATED)),
        dark_p99=float(np.percentile(dark, 99)),
        valid_pixels=int(valid_mask(dark, bright).sum()),
        dark_mean=float(dark.mean()),
        bright_mean=float(bright.mean()),
        mean_abs_difference=float(np.mean(np.abs(dark - bright))),
    )


def exclusion_reason(checks: PairChecks) -> str:
    """Why a pair must not enter the distribution fit ('' when it may)."""
    if checks.mean_abs_difference * 255.0 < IDENTICAL_LEVELS:
        return "dark and bright are the same image"
    if checks.dark_p99 < MIN_DARK_P99:
        return f"dark image nearly empty (99th percentile {checks.dark_p99 * 255:.1f}/255)"
    if checks.dark_saturated > MAX_SATURATED_FRACTION:
        return f"dark image saturated ({checks.dark_saturated:.1%} of pixels >= 250/255)"
    if checks.valid_pixels < MIN_VALID_PIXELS:
        return f"too few unsaturated pixels ({checks.valid_pixels} < {MIN_VALID_PIXELS})"
    if checks.dark_mean >= checks.bright_mean:
        return (f"dark image is not darker than its bright image (mean {checks.dark_mean * 255:.1f} vs "
                f"{checks.bright_mean * 255:.1f} of 255; are low/ and high/ swapped?)")
    if checks.block_spearman < MIN_BLOCK_SPEARMAN:
        return (f"images do not match (different scene or misaligned): block rank correlation "
                f"{checks.block_spearman:.2f} < {MIN_BLOCK_SPEARMAN}")
    return ""


def sample_pixels(mask: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of up to n distinct pixels where mask is true."""
    flat = np.flatnonzero(mask)
    if flat.size > n:
        flat = np.sort(rng.choice(flat, size=n, replace=False))
    return np.unravel_index(flat, mask.shape)
