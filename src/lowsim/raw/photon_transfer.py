"""Photon-transfer calibration of one raw pair (a short and a long exposure of the same still scene).

The long exposure divided by the ratio predicts the short one's signal μ pixel by pixel; what the short exposure
adds around that prediction is its noise. Per colour site of the Bayer cell:

1. response: bin means of short against long should lie on a line s = α + β·l. The slope β is the measured
   1/ratio, α = b·(1 − β) gives the black-level offset b; bin means far off the line mean the sensor is not
   linear (then nothing below is meaningful and the pair is refused);
2. the residual d = s − (α + β·l) has zero mean; row noise is the spread of its row means beyond what the
   pixel noise explains;
3. with row means removed, variance against mean per intensity bin is linear: Var d = K(1 + β)·μ +
   (σ_read² + 1/12)(1 + β²) (shot noise of both frames, read noise and ADC rounding of both) → the system
   gain K and the read noise σ_read, by weighted least squares over the bins of all four sites;
4. where enough pixels are read-noise dominated, the Tukey-λ shape of the read noise by the probability-plot
   correlation (ELD's method).

All quantities are in the camera's DN above black (the frame's own white level sets the scale).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lowsim.errors import LowsimError
from lowsim.raw.read import SITES, RawFrame, site_of_colour

N_BINS = 24
SATURATION = 0.95  # of white - black: above it a pixel is treated as clipped
MAX_SATURATED_FRACTION = 0.25  # of the long exposure's pixels: more and the pair is refused
QUANTIZATION_VAR = 1.0 / 12.0  # DN², the ADC's rounding
MAX_LINEARITY_ERROR = 0.03  # bin means off the line by more than this fraction of the signal range: not linear
MAX_RATIO_MISMATCH = 1.25  # measured brightness ratio vs the stated exposure ratio, either way
MAX_PTC_CHI2 = 25.0  # reduced χ² of variance vs mean beyond which the variance is not linear in the mean
MIN_SHAPE_PIXELS = 2000  # read-dominated pixels needed to estimate the Tukey-λ shape
OUTLIER_SDS = 10.0  # robust sds beyond which a residual (hot pixel, dust) is left out of a bin's variance


@dataclass
class PhotonTransfer:
    """What one pair's photon transfer found; `problem` is set (and the noise left NaN) when the pair is unusable."""

    system_gain: float = float("nan")
    read_noise: float = float("nan")
    row_noise: float = float("nan")
    read_shape: float = float("nan")
    black_offsets: dict[str, float] = field(default_factory=dict)  # by colour r, g1, b, g2
    ratio: float = float("nan")  # as stated (metadata or CSV)
    measured_ratio: float = float("nan")  # 1 / the response slope
    linearity_error: float = float("nan")  # largest bin-mean deviation from the line, fraction of the range
    ptc_chi2: float = float("nan")  # reduced χ² of the variance-vs-mean line
    bright_level: float = float("nan")  # mean long-exposure green signal, fraction of white - black
    saturated_fraction: float = 0.0
    per_site_gain: list[float] = field(default_factory=list)
    problem: str = ""


def valid_mask(short: np.ndarray, long: np.ndarray, full_scale: float, path) -> tuple[np.ndarray, float]:
    """Pixels clipped in neither frame, and the long frame's clipped fraction; refuses a saturated long exposure."""
    clipped = long >= SATURATION * full_scale
    fraction = float(clipped.mean())
    if fraction > MAX_SATURATED_FRACTION:
        raise LowsimError(f"long exposure is saturated over {fraction:.0%} of its pixels (more than "
                          f"{MAX_SATURATED_FRACTION:.0%}); photon transfer needs unclipped signal", path)
    return ~clipped & (short < SATURATION * full_scale), fraction


def quantile_bins(x: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """Bin index of each value of x, bins of about equal count (ties may merge bins)."""
    edges = np.unique(np.quantile(x, np.linspace(0.0, 1.0, n_bins + 1)[1:-1]))
    return np.searchsorted(edges, x, side="right")


def bin_means(values: np.ndarray, bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean per bin, count per bin) over the occupied bins."""
    count = np.bincount(bins)
    total = np.bincount(bins, weights=values)
    used = count > 0
    return total[used] / count[used], count[used]


def weighted_line(x: np.ndarray, y: np.ndarray, weight: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(slope, intercept, 2x2 covariance of the two) of y ≈ slope·x + intercept by weighted least squares."""
    design = np.column_stack([x, np.ones_like(x)])
    normal = design.T @ (design * weight[:, None])
    cov = np.linalg.inv(normal)
    slope, intercept = cov @ (design.T @ (weight * y))
    return float(slope), float(intercept), cov


def response_line(short: np.ndarray, long: np.ndarray) -> tuple[float, float, float]:
    """(slope β, intercept α, nonlinearity) of short ≈ α + β·long over bins of long.

    Nonlinearity: the largest deviation of a bin mean from the line that exceeds 5 standard errors (noise is
    not nonlinearity), as a fraction of the short exposure's signal range; 0 for a linear sensor.
    """
    bins = quantile_bins(long)
    long_mean, count = bin_means(long, bins)
    short_mean, _ = bin_means(short, bins)
    short_sq, _ = bin_means(short * short, bins)
    stderr = np.sqrt(np.maximum(short_sq - short_mean ** 2, 1e-12) / count)
    slope, intercept, _ = weighted_line(long_mean, short_mean, count.astype(np.float64))
    deviation = np.abs(short_mean - (slope * long_mean + intercept))
    significant = np.where(deviation > 5.0 * stderr, deviation, 0.0)
    signal_range = max(float(short_mean.max() - short_mean.min()), 1e-9)
    return slope, intercept, float(significant.max() / signal_range)


def remove_row_means(residual: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, float]:
    """(residual minus its row means, sd of the row offsets beyond what the pixel noise explains)."""
    counts = np.maximum(valid.sum(axis=1), 1)
    masked = np.where(valid, residual, 0.0)
    means = masked.sum(axis=1) / counts
    within = (np.where(valid, residual * residual, 0.0).sum(axis=1) / counts - means ** 2)
    row_var = float(np.mean(means ** 2 - within / counts))
    return residual - means[:, None], float(np.sqrt(max(row_var, 0.0)))


def variance_per_bin(mu: np.ndarray, residual: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean signal, variance, count) of the residual per intensity bin, leaving out gross outliers."""
    bins = quantile_bins(mu)
    centre = np.median(residual)
    robust_sd = 1.4826 * np.median(np.abs(residual - centre))
    kept = np.abs(residual - centre) <= OUTLIER_SDS * max(robust_sd, 1.0)
    mean_mu, count = bin_means(mu[kept], bins[kept])
    mean_d, _ = bin_means(residual[kept], bins[kept])
    mean_sq, _ = bin_means(residual[kept] ** 2, bins[kept])
    variance = (mean_sq - mean_d ** 2) * count / np.maximum(count - 1, 1)
    return mean_mu, variance, count


def fit_variance_line(mu: np.ndarray, variance: np.ndarray, count: np.ndarray) -> tuple[float, float, float]:
    """(slope, intercept, reduced χ²) of variance ≈ slope·μ + intercept, weighted by each bin's precision."""
    fitted = np.maximum(variance, 1e-6)
    for _ in range(3):  # weights from the fitted line: a bin variance's own noise must not set its weight
        weight = (count - 1) / (2.0 * fitted ** 2)
        slope, intercept, _ = weighted_line(mu, variance, weight)
        fitted = np.maximum(slope * mu + intercept, 1e-6)
    chi2 = float(np.sum(weight * (variance - fitted) ** 2) / max(len(mu) - 2, 1))
    return slope, intercept, chi2


def tukey_shape(z: np.ndarray) -> float:
    """Tukey-λ shape that best straightens the probability plot of z (ELD's PPCC); NaN when z is too small."""
    from scipy import stats

    if z.size < MIN_SHAPE_PIXELS:
        return float("nan")
    step = max(1, z.size // 20000)  # every step-th value: a deterministic subsample, fast enough
    return float(stats.ppcc_max(np.sort(z)[::step], brack=(-0.3, 0.3), dist="tukeylambda"))


@dataclass
class SitePlanes:
    """The four colour sites of both frames, as flat arrays of their valid pixels, and where they sit."""

    short: list[np.ndarray]
    long: list[np.ndarray]
    valid: np.ndarray  # (H, W) bool


def site_planes(short: np.ndarray, long: np.ndarray, valid: np.ndarray) -> SitePlanes:
    """Split both signal mosaics into the valid pixels of each of the four cell sites (raster order)."""
    pick = [(short[r::2, c::2][valid[r::2, c::2]], long[r::2, c::2][valid[r::2, c::2]]) for r, c in SITES]
    return SitePlanes([p[0] for p in pick], [p[1] for p in pick], valid)


def _residual_mosaic(short: np.ndarray, long: np.ndarray, lines: list[tuple[float, float]]) -> np.ndarray:
    """short − (α + β·long), each site with its own line."""
    out = np.empty_like(short)
    for (row, col), (slope, intercept) in zip(SITES, lines):
        out[row::2, col::2] = short[row::2, col::2] - (intercept + slope * long[row::2, col::2])
    return out


def _signal_mosaic(long: np.ndarray, lines: list[tuple[float, float]]) -> np.ndarray:
    """The short exposure's expected signal μ = β·(long − b), b = α / (1 − β) the site's black offset."""
    out = np.empty_like(long)
    for (row, col), (slope, intercept) in zip(SITES, lines):
        out[row::2, col::2] = slope * (long[row::2, col::2] - intercept / (1.0 - slope))
    return out


def check_response(result: PhotonTransfer, nonlinearity: list[float], slopes: list[float]) -> None:
    """Set result.problem when the sensor's response is not linear or the brightness ratio is not the stated one."""
    result.linearity_error = max(nonlinearity)
    result.measured_ratio = 1.0 / float(np.median(slopes)) if np.median(slopes) > 0 else float("inf")
    mismatch = result.measured_ratio / result.ratio
    if result.linearity_error > MAX_LINEARITY_ERROR:
        result.problem = (f"response is not linear: short-exposure bin means leave the line against the long "
                          f"exposure by up to {result.linearity_error:.0%} of the signal range "
                          f"(limit {MAX_LINEARITY_ERROR:.0%}) and brightness grows {result.measured_ratio:.3g}x for "
                          f"an exposure ratio of {result.ratio:.3g}x; photon transfer needs a linear sensor")
    elif not 1.0 / MAX_RATIO_MISMATCH <= mismatch <= MAX_RATIO_MISMATCH:
        result.problem = (f"brightness grows {result.measured_ratio:.3g}x between the frames but the exposure "
                          f"ratio is {result.ratio:.3g}x: the response is not linear in exposure (or the "
                          "exposure times are wrong)")


def photon_transfer(short_frame: RawFrame, long_frame: RawFrame, ratio: float) -> PhotonTransfer:
    """Calibrate the raw noise from one pair (see the module doc); a nonlinear pair comes back with `problem` set."""
    full_scale = long_frame.white - float(np.max(long_frame.black))
    short, long = short_frame.signal(), long_frame.signal()
    valid, saturated = valid_mask(short, long, full_scale, long_frame.path)
    result = PhotonTransfer(ratio=ratio, saturated_fraction=saturated)
    planes = site_planes(short, long, valid)
    fits = [response_line(s, l) for s, l in zip(planes.short, planes.long)]
    lines = [(slope, intercept) for slope, intercept, _ in fits]
    check_response(result, [f[2] for f in fits], [f[0] for f in fits])
    colours = site_of_colour(short_frame.pattern)
    result.black_offsets = {c: lines[SITES.index(site)][1] / (1.0 - lines[SITES.index(site)][0])
                            for c, site in colours.items()}
    greens = [SITES.index(colours["g1"]), SITES.index(colours["g2"])]
    result.bright_level = float(np.mean(np.concatenate([planes.long[i] for i in greens]))) / full_scale
    if result.problem:
        return result
    residual, result.row_noise = remove_row_means(_residual_mosaic(short, long, lines), valid)
    slope = float(np.median([line[0] for line in lines]))
    result.row_noise /= float(np.sqrt(1.0 + slope ** 2))  # both frames' row offsets, the long one's times β
    _fit_noise(result, _signal_mosaic(long, lines), residual, valid, slope)
    return result


def _fit_noise(result: PhotonTransfer, mu: np.ndarray, residual: np.ndarray, valid: np.ndarray,
               slope: float) -> None:
    """K, read noise, per-site K, χ² and the Tukey shape from the row-corrected residual (steps 3 and 4)."""
    row_share = 1.0 - 1.0 / max(valid.sum(axis=1).mean(), 2.0)  # removing row means took this share of the variance
    per_site = []
    for row, col in SITES:
        site_mu, site_res = mu[row::2, col::2][valid[row::2, col::2]], residual[row::2, col::2][valid[row::2, col::2]]
        per_site.append(variance_per_bin(site_mu, site_res / np.sqrt(row_share)))
    all_mu, all_var, all_n = (np.concatenate(parts) for parts in zip(*per_site))
    gain_slope, intercept, result.ptc_chi2 = fit_variance_line(all_mu, all_var, all_n)
    result.per_site_gain = [fit_variance_line(*site)[0] / (1.0 + slope) for site in per_site]
    result.system_gain = gain_slope / (1.0 + slope)
    result.read_noise = float(np.sqrt(max(intercept / (1.0 + slope ** 2) - QUANTIZATION_VAR, 0.0)))
    if result.ptc_chi2 > MAX_PTC_CHI2:
        result.problem = (f"variance is not linear in the mean (photon-transfer χ²/dof {result.ptc_chi2:.3g}, "
                          f"limit {MAX_PTC_CHI2:g}): the sensor's response is not linear")
        return
    read_dominated = valid & (gain_slope * mu < 0.1 * max(intercept, 1e-9))
    z = residual[read_dominated] / np.sqrt(max(intercept, 1e-9))
    result.read_shape = tukey_shape(z)
