"""Degradation statistics of one dark image: noise level, its colour and spatial correlation, colour cast.

Everything is measured on a high-pass residual, ``x - GaussianBlur(x, sigma=1.5)`` in 8-bit levels, so that
scene content (edges aside) drops out and what is left is mostly noise. Only "mid-dark" pixels count:
those whose blurred value lies in ``MASK_LEVELS`` in EVERY channel. Below 2 levels the noise is
crushed by the black clip and quantisation; above 128 the image is no longer dark.

Definitions (all over masked pixels unless said otherwise):

- ``brightness``: mean of the whole image (all pixels and channels) on 0-1.
- ``residual_sd``: standard deviation of the residual, the three channels pooled, in 8-bit levels. For
  white noise of sd s this is ``s * highpass_gain()`` (about 0.95 s at sigma 1.5), not s.
- ``channel_corr``: mean of the three pairwise Pearson correlations between the channels' residuals.
- ``spatial_corr``: lag-1 Pearson correlation of each channel's residual with its right neighbour and
  with its lower neighbour (pairs where both pixels are masked), averaged over the 2 directions and 3
  channels. White noise gives a small negative value (the blur's own correlation), not 0.
- ``blue_ratio`` / ``red_ratio``: mean of the blue / red channel over the mean of all channels, whole image.
- ``clipped_black``: fraction of channel values (not pixels) at code 0, whole image.

The residual also holds the scene's own fine texture, darkened (docs/realism.md, "Content leakage of compare's
features"). The Laplacian statistics below see much less of it: ``laplacian_levels`` is the response to
Immerkaer's mask [[1, -2, 1], [-2, 4, -2], [1, -2, 1]] (a horizontal times a vertical second difference), which
is zero on locally linear shading and on straight horizontal or vertical edges, and ``laplacian_sigma`` turns
its mean absolute value into a noise sd (Immerkaer 1996, "Fast noise variance estimation"). Edges that are not
straight still respond, so the strongest are left out first (as Tai and Yang 2008 do): ``structure_levels``
measures them on a blurred grey image, where the noise barely moves the choice, and ``flattest`` keeps the rest.

Medians over the 240 LOL lows: brightness 0.052, residual_sd 2.43, channel_corr 0.62, spatial_corr 0.215,
blue_ratio 0.92. The per-channel mask reproduces the published residual_sd (2.4) and channel_corr (0.62); a
mask on the channel-mean of the blurred image gives 2.31 and 0.59. The published brightness 0.053 is the
Rec.601 luma mean (0.0526); the published spatial_corr 0.25 lies between this per-channel definition
and the same on the channel-mean residual (0.26); blue_ratio over masked pixels only is 0.93 (published 0.94).
"""
from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

HIGHPASS_SIGMA = 1.5
MASK_LEVELS = (2.0, 128.0)  # pixels whose blurred value (8-bit levels) lies in this range, every channel
NOISE_BINS = np.array([2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0])  # edges on blurred intensity, 8-bit levels
MIN_PIXELS = 50  # fewer masked pixels (or per noise bin) than this gives NaN, not a noisy estimate
STATISTICS: tuple[str, ...] = ("brightness", "residual_sd", "channel_corr", "spatial_corr", "blue_ratio",
                               "red_ratio", "clipped_black")
_CHANNEL_PAIRS = ((0, 1), (0, 2), (1, 2))
IMMERKAER_MASK = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
# For white noise of sd s the mask's response has sd 6 s (sum of its squared taps is 36) and, being Gaussian,
# mean |response| = sqrt(2 / pi) * 6 s: Immerkaer's estimator inverts that.
IMMERKAER_SCALE = math.sqrt(math.pi / 2.0) / 6.0
IMMERKAER_GAIN = 6.0
# The mask's response variance from 8-bit rounding (uniform, variance 1/12 per pixel, independent): 36 / 12.
ROUNDING_RESPONSE_VARIANCE = float((IMMERKAER_MASK.astype(np.float64) ** 2).sum()) / 12.0
STRUCTURE_SIGMA = 2.0  # blur before the edge measure: it damps the noise ~7x, so edges, not noise, choose
FLAT_FRACTION = 0.5  # the Laplacian statistics use the half of the pixels farthest from edges (`flattest`)


def to_levels(img: np.ndarray) -> np.ndarray:
    """float32 (H, W, 3) in 8-bit levels from uint8, uint16 (/257) or float in [0, 1] (x255)."""
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {img.shape}")
    if img.dtype == np.uint8:
        return img.astype(np.float32)
    if img.dtype == np.uint16:
        return img.astype(np.float32) / np.float32(257.0)
    if np.issubdtype(img.dtype, np.floating):
        return img.astype(np.float32) * np.float32(255.0)
    raise ValueError(f"unsupported image dtype {img.dtype}, expected uint8, uint16 or float in [0, 1]")


def highpass_residual(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(residual, blurred) in 8-bit levels, float32, shape (H, W, 3): x - GaussianBlur(x, sigma=1.5)."""
    return highpass_levels(to_levels(img))


def highpass_levels(levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """highpass_residual of an image already in float32 8-bit levels (see to_levels)."""
    blurred = cv2.GaussianBlur(levels, (0, 0), HIGHPASS_SIGMA)
    return levels - blurred, blurred


def highpass_gain() -> float:
    """Residual sd per unit sd of white noise: sqrt(1 - 2 k0 + sum k^2) of the blur's 2-D kernel."""
    size = 8 * math.ceil(HIGHPASS_SIGMA) + 1  # room for the whole kernel, so no border reflection
    impulse = np.zeros((size, size), np.float32)
    impulse[size // 2, size // 2] = 1.0
    kernel = cv2.GaussianBlur(impulse, (0, 0), HIGHPASS_SIGMA).astype(np.float64)
    return float(math.sqrt(1.0 - 2.0 * kernel[size // 2, size // 2] + (kernel ** 2).sum()))


def degradation_mask(blurred: np.ndarray, levels_range: tuple[float, float] = MASK_LEVELS) -> np.ndarray:
    """(H, W) bool: every channel's blurred value in `levels_range` (MASK_LEVELS unless given)."""
    low, high = levels_range
    return ((blurred >= low) & (blurred < high)).all(axis=2)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equal-length samples; NaN when too few or either is constant."""
    if a.size < MIN_PIXELS:
        return math.nan
    a = a.astype(np.float64) - a.mean()
    b = b.astype(np.float64) - b.mean()
    denominator = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denominator) if denominator > 0 else math.nan


def _nanmean(values: list[float]) -> float:
    """Mean of the finite values, NaN when none (no RuntimeWarning)."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def channel_correlation(residual: np.ndarray, mask: np.ndarray) -> float:
    """Mean pairwise Pearson correlation of the residual's channels over masked pixels."""
    pixels = residual[mask]
    return _nanmean([pearson(pixels[:, i], pixels[:, j]) for i, j in _CHANNEL_PAIRS])


def channel_correlation_with_noise(pixels: np.ndarray, added_variance: float) -> float:
    """`channel_correlation` of (n, 3) values as it would read after independent noise of `added_variance` per
    channel were added (how an unrounded simulation reads once rounded to 8 bits); from their covariance."""
    if len(pixels) < MIN_PIXELS:
        return math.nan
    cov = np.cov(pixels.astype(np.float64), rowvar=False)
    var = np.diag(cov) + added_variance
    pairs = [cov[i, j] / math.sqrt(var[i] * var[j]) for i, j in _CHANNEL_PAIRS if var[i] * var[j] > 0]
    return float(np.mean(pairs)) if pairs else math.nan


def spatial_correlation(residual: np.ndarray, mask: np.ndarray) -> float:
    """Lag-1 correlation with the right and lower neighbour, per channel, averaged; both pixels masked."""
    right = mask[:, :-1] & mask[:, 1:]
    down = mask[:-1, :] & mask[1:, :]
    values = []
    for c in range(residual.shape[2]):
        r = residual[:, :, c]
        values.append(pearson(r[:, :-1][right], r[:, 1:][right]))
        values.append(pearson(r[:-1, :][down], r[1:, :][down]))
    return _nanmean(values)


def residual_statistics(levels: np.ndarray, residual: np.ndarray, blurred: np.ndarray) -> dict[str, float]:
    """dark_statistics from precomputed parts (lets callers cut patches after a whole-image blur)."""
    mask = degradation_mask(blurred)
    masked = residual[mask]
    channel_means = levels.reshape(-1, 3).mean(axis=0, dtype=np.float64)
    grey = float(channel_means.mean())
    return {
        "brightness": grey / 255.0,
        "residual_sd": float(masked.std(dtype=np.float64)) if mask.sum() >= MIN_PIXELS else math.nan,
        "channel_corr": channel_correlation(residual, mask),
        "spatial_corr": spatial_correlation(residual, mask),
        "blue_ratio": float(channel_means[2] / grey) if grey > 0 else math.nan,
        "red_ratio": float(channel_means[0] / grey) if grey > 0 else math.nan,
        "clipped_black": float((levels < 0.5).mean()),
    }


def dark_statistics(img: np.ndarray) -> dict[str, float]:
    """Per-image statistics of a dark uint8 (H,W,3) RGB image (uint16 accepted: scaled to 8-bit levels)."""
    levels = to_levels(img)
    return residual_statistics(levels, *highpass_levels(levels))


def binned_sd(intensity: np.ndarray, residual: np.ndarray,
              bins: np.ndarray = NOISE_BINS) -> tuple[np.ndarray, np.ndarray]:
    """(sd of residual per intensity bin, count per bin); NaN where fewer than MIN_PIXELS values."""
    intensity, residual = intensity.ravel(), residual.ravel().astype(np.float64)
    index = np.digitize(intensity, bins) - 1  # bin i holds bins[i] <= v < bins[i + 1]
    n_bins = len(bins) - 1
    inside = (index >= 0) & (index < n_bins)
    index, residual = index[inside], residual[inside]
    counts = np.bincount(index, minlength=n_bins).astype(np.int64)
    sums = np.bincount(index, residual, minlength=n_bins)
    squares = np.bincount(index, residual * residual, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / counts
        variance = np.maximum(squares / counts - mean * mean, 0.0)
    sd = np.where(counts >= MIN_PIXELS, np.sqrt(variance), np.nan)
    return sd, counts


def noise_profile(img: np.ndarray, bins: np.ndarray = NOISE_BINS) -> tuple[np.ndarray, np.ndarray]:
    """(residual sd per intensity bin in 8-bit levels, pixel count per bin), NaN where too few pixels."""
    residual, blurred = highpass_residual(img)
    # Per channel value: each channel's residual is binned by that channel's own blurred level.
    return binned_sd(blurred, residual, bins)


def monotone_mapping(source: np.ndarray, target: np.ndarray, n_bins: int = 128) -> np.ndarray:
    """target predicted from source (1-D): binned medians, made non-decreasing, linearly interpolated."""
    edges = np.linspace(0.0, 256.0, n_bins + 1)
    index = np.clip(np.digitize(source, edges) - 1, 0, n_bins - 1)
    order = np.argsort(index, kind="stable")
    starts = np.searchsorted(index[order], np.arange(n_bins + 1))
    centres, medians = [], []
    for b in range(n_bins):
        members = order[starts[b]:starts[b + 1]]
        if members.size >= 10:  # a median of fewer values would put noise into the mapping
            centres.append(float(np.median(source[members])))
            medians.append(float(np.median(target[members])))
    if not centres:
        return np.full(source.shape, float(np.median(target)), np.float32)
    # Dark is a monotone function of bright; enforcing it stops a noisy bin from bending the curve.
    medians = np.maximum.accumulate(np.asarray(medians))
    return np.interp(source, np.asarray(centres), medians).astype(np.float32)


def pair_noise_profile(dark: np.ndarray, bright: np.ndarray,
                       bins: np.ndarray = NOISE_BINS) -> tuple[np.ndarray, np.ndarray]:
    """(sd of dark minus a monotone per-channel mapping of bright, count) per predicted-dark-level bin."""
    dark_levels, bright_levels = to_levels(dark), to_levels(bright)
    if dark_levels.shape != bright_levels.shape:
        raise ValueError(f"dark {dark_levels.shape} and bright {bright_levels.shape} differ in shape")
    predicted = np.empty_like(dark_levels)
    for c in range(3):
        predicted[:, :, c] = monotone_mapping(bright_levels[:, :, c].ravel(),
                                              dark_levels[:, :, c].ravel()).reshape(dark_levels.shape[:2])
    return binned_sd(predicted, dark_levels - predicted, bins)


def laplacian_levels(levels: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 response of each channel to IMMERKAER_MASK (reflect-101 border)."""
    return cv2.filter2D(levels, -1, IMMERKAER_MASK, borderType=cv2.BORDER_REFLECT_101)


def laplacian_sigma(response: np.ndarray) -> float:
    """Immerkaer's noise sd from mask responses (any shape); NaN when fewer than MIN_PIXELS values."""
    if response.size < MIN_PIXELS:
        return math.nan
    return IMMERKAER_SCALE * float(np.abs(response).mean(dtype=np.float64))


def laplacian_channel_sigmas(response: np.ndarray, mask: np.ndarray) -> list[float]:
    """laplacian_sigma of each channel over masked pixels."""
    pixels = response[mask]
    return [laplacian_sigma(pixels[:, c]) for c in range(pixels.shape[1])]


def structure_levels(levels: np.ndarray) -> np.ndarray:
    """(H, W) float32 edge strength: Sobel gradient magnitude of the grey image blurred by STRUCTURE_SIGMA."""
    grey = cv2.GaussianBlur(levels.mean(axis=2, dtype=np.float32), (0, 0), STRUCTURE_SIGMA)
    return np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))


def flattest(structure: np.ndarray, fraction: float) -> np.ndarray:
    """(H, W) bool: the pixels of lowest structure, fraction of them (ties all kept)."""
    return structure <= np.quantile(structure, fraction)


def noise_colour_ratios(sigmas: Sequence[float]) -> tuple[float, float]:
    """(red / green, blue / green) of per-channel noise sds; NaN where green has none."""
    red, green, blue = sigmas
    if not (math.isfinite(green) and green > 0):
        return math.nan, math.nan
    return red / green, blue / green
