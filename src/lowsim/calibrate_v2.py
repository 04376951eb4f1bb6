"""Calibration of model v2 (`lowsim.degradation.v2`) from sRGB pairs.

Per pair, two steps:

1. **Tone and colour** (`fit_mean_v2`): robust least squares of v2's noiseless forward model
   (`v2.expected_dark`: linearise, illumination map, exposure, colour cast, black level, tone curve) on a
   pixel subsample, in the schema's unconstrained coordinates, with a weak prior that keeps the
   illumination map off unless the data need it.
2. **Noise and processing** (`fit_noise_v2`): the pair's fit is simulated through the whole v2 chain (a
   smooth surrogate of the sensor with fixed normals) and K, read noise, chroma noise reduction, sharpening,
   black level and the white-balance gains are chosen by least squares so that the simulated dark image's
   high-pass residual matches the real one's (`lowsim.statistics`): its level per intensity bin, its
   cross-channel and spatial correlation, the brightness, the clipped blacks, and the noise at the pixel scale
   (Immerkaer's estimator away from edges: its level, its colour as red and blue sd relative to green, and its
   cross-channel correlation). Tone and colour are then refitted with the noise's clipping bias taken out,
   and the noise fitted again (`refine_with_noise`). How well the final simulation matches is recorded per pair.
3. **JPEG, opt-in** (`fit_jpeg_v2`, `lowsim calibrate --fit-jpeg`): the camera's JPEG quality is chosen from
   `JPEG_GRID` by the same residual-match cost, each candidate with the fitted noise rescaled to its best
   level (the refit of the noise at that quality). The per-pair costs are recorded.

Fits that end at a bound of their search range are flagged: they are listed and left out of the
distribution, which is fitted in the schema's coordinates (log exposure, log K, ...).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize

from lowsim.degradation import v2
from lowsim.pair_checks import exclusion_reason, pair_checks, sample_pixels, valid_mask
from lowsim.params import V2_MODEL, IspParams, from_unconstrained, to_unconstrained
from lowsim.statistics import (FLAT_FRACTION, ROUNDING_RESPONSE_VARIANCE, binned_sd, channel_correlation_with_noise,
                               degradation_mask, flattest, highpass_gain, highpass_levels, laplacian_channel_sigmas,
                               laplacian_levels, noise_colour_ratios, residual_statistics, structure_levels,
                               to_levels)

MEAN_NAMES = ("exposure", "cast_r", "cast_b", "black_level", "tone_gamma", "illum_alpha", "illum_gamma")
# Search ranges of the mean fit (natural units); a fit that ends on one is flagged and not used.
# The lower ends of black_level and illum_alpha mean "off": a fit there is kept, at that value (alpha = 0.01
# changes the image by at most 0.25 %; a black level of 1e-5 is 1 % of the darkest signals).
MEAN_RANGES = {"exposure": (1e-4, 2.0), "cast_r": (0.2, 5.0), "cast_b": (0.2, 5.0),
               "black_level": (1e-5, 0.2), "tone_gamma": (0.5, 8.0), "illum_alpha": (0.01, 1.99),
               "illum_gamma": (0.05, 20.0)}
# Parameters whose lower bound is "off" (no map, no black crush, no read noise, no sharpening): a fit at that
# bound is a valid value, not a failed fit.
OFF_AT_LOWER_BOUND = ("illum_alpha", "black_level", "read_sigma", "sharpen", "out_black")
# Weight (per sqrt(pixel)) of the priors pulling alpha towards 0 and log(illum_gamma) towards 0: the map
# is nearly degenerate with exposure and tone (alpha ~ 1 with a large g is another exposure), so among
# (nearly) equal fits the one with the mildest map wins.
ILLUM_PRIOR = 1e-3
FIT_PIXELS = 10_000
START_PIXELS = 3_000
LSB = 1.0 / 255.0


def _to_theta(values: dict[str, float]) -> np.ndarray:
    """Natural mean-fit values → the schema's unconstrained coordinates."""
    return np.array([float(to_unconstrained(n, values[n])) for n in MEAN_NAMES])


def _from_theta(theta: np.ndarray) -> dict[str, float]:
    """Unconstrained coordinates → natural values of the mean-fit parameters."""
    return {n: float(from_unconstrained(n, t)) for n, t in zip(MEAN_NAMES, theta)}


def _theta_bounds() -> tuple[np.ndarray, np.ndarray]:
    """The search ranges in unconstrained coordinates."""
    lo = _to_theta({n: r[0] for n, r in MEAN_RANGES.items()})
    hi = _to_theta({n: r[1] for n, r in MEAN_RANGES.items()})
    return lo, hi


def predict_mean(theta: np.ndarray, bright: np.ndarray) -> np.ndarray:
    """v2's noiseless dark prediction for (N, 3) bright values in [0, 1] (float64)."""
    p = IspParams(**_from_theta(theta))
    return v2.expected_dark_of(bright.reshape(-1, 3).astype(np.float64), p)


def initial_theta(d: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A start from the medians: tone 2.2, exposure from the linear-light ratio, no cast or map."""
    lin_d = np.median(np.power(np.maximum(d, LSB), 2.2))
    lin_b = np.median(np.power(np.maximum(b, LSB), 2.2))
    start = {"exposure": float(np.clip(lin_d / lin_b, 2e-4, 1.0)), "cast_r": 1.0, "cast_b": 1.0,
             "black_level": 1e-5, "tone_gamma": 2.2, "illum_alpha": 0.05, "illum_gamma": 1.0}
    return _to_theta(start)


def _at_bound(names: tuple[str, ...], theta: np.ndarray, lo: np.ndarray, hi: np.ndarray,
              tolerance: float = 1e-2) -> list[str]:
    """The parameters a fit left at a bound of its range (a lower bound that means "off" does not count)."""
    return [n for n, t, low, high in zip(names, theta, lo, hi)
            if high - t < tolerance or (t - low < tolerance and n not in OFF_AT_LOWER_BOUND)]


@dataclass
class MeanFitV2:
    """The tone-and-colour fit of one pair: values, whether it converged, parameters at a bound."""

    values: dict[str, float]
    cost: float
    success: bool
    at_bound: list[str] = field(default_factory=list)


def _robust_fit(start: np.ndarray, d: np.ndarray, b: np.ndarray, f_scale: float) -> optimize.OptimizeResult:
    """One soft_l1 least-squares run with the weak prior on the illumination strength."""
    lo, hi = _theta_bounds()
    alpha, gamma = MEAN_NAMES.index("illum_alpha"), MEAN_NAMES.index("illum_gamma")
    prior = math.sqrt(d.size) * ILLUM_PRIOR

    def residuals(theta: np.ndarray) -> np.ndarray:
        strength = float(from_unconstrained("illum_alpha", theta[alpha]))
        return np.append((predict_mean(theta, b) - d).ravel(), [prior * strength, prior * theta[gamma]])

    return optimize.least_squares(residuals, np.clip(start, lo + 1e-6, hi - 1e-6), bounds=(lo, hi),
                                  loss="soft_l1", f_scale=f_scale, x_scale=1.0, ftol=1e-6, xtol=1e-6,
                                  max_nfev=200)


def fit_mean_v2(d: np.ndarray, b: np.ndarray, rng: np.random.Generator,
                start_values: dict[str, float] | None = None) -> MeanFitV2:
    """Fit tone and colour to (N, 3) dark and bright pixel values in [0, 1]: multi-start, then polish."""
    start = initial_theta(d, b) if start_values is None else _to_theta(start_values)
    resid = (predict_mean(start, b) - d).ravel()
    # soft_l1 turns linear only far out (6 robust sds): noise clipped at black is skewed, and a loss that
    # already discounts its tail would fit its median, below its mean.
    f_scale = max(6.0 * 1.4826 * float(np.median(np.abs(resid - np.median(resid)))), LSB)
    few = rng.permutation(len(d))[:START_PIXELS]
    alpha = MEAN_NAMES.index("illum_alpha")
    runs = []
    for alpha0 in (0.05, 0.5, 1.0) if start_values is None else ():
        s = start.copy()
        s[alpha] = float(to_unconstrained("illum_alpha", alpha0))
        runs.append(_robust_fit(s, d[few], b[few], f_scale))
    best = _robust_fit(min(runs, key=lambda r: r.cost).x if runs else start, d, b, f_scale)
    lo, hi = _theta_bounds()
    at_bound = _at_bound(MEAN_NAMES, best.x, lo, hi)
    return MeanFitV2(values=_from_theta(best.x), cost=float(best.cost), success=bool(best.status > 0),
                     at_bound=at_bound)


# ============================================================================================ noise fit

NOISE_NAMES = ("shot_gain", "read_sigma", "chroma_nr", "sharpen", "black_level", "out_black", "wb_red", "wb_blue")
# Lower bounds at what is invisible in an 8-bit dark image (read noise 1e-6 of full scale is far below the
# shot noise of any visible signal; sharpening by 0.02 changes the noise by ~1 %; an output black point of
# 1e-5 is 0.3 % of a level). White-balance gains: 1 (raw R or B as sensitive as G) to 8, beyond a real camera's
# (~2 red, ~1.6 blue in daylight; tungsten raises blue's to ~3): with the chroma NR that LOL's channel
# correlation asks for, a flat grey field needs gains of ~4-5 to reach LOL's red / green noise ratio 1.7, so
# the gains also stand in for what else makes R and B noisier (a stronger colour matrix); a bound of 4 would
# cut those fits off.
NOISE_RANGES = {"shot_gain": (1e-8, 0.1), "read_sigma": (1e-6, 0.05), "chroma_nr": (1e-3, 0.999),
                "sharpen": (0.02, 7.9), "black_level": (1e-5, 0.05), "out_black": (1e-5, 0.02),
                "wb_red": (1.0, 8.0), "wb_blue": (1.0, 8.0)}
NOISE_START = {"shot_gain": 1e-4, "read_sigma": 2e-4, "chroma_nr": 0.7, "sharpen": 0.5, "black_level": 1e-4,
               "out_black": 1e-3, "wb_red": 2.0, "wb_blue": 1.6}  # the gains: the former constants
NOISE_CROP = 256  # the noise fit simulates at most this many rows and columns of the pair (speed)
MIN_BIN_PIXELS = 500
# Finite-difference step (relative, unconstrained coordinates): wide enough to step over the small jumps
# that pixels crossing the statistics' mask and bin edges put into the misses.
DIFF_STEP = 0.05
# Scales of the residual statistics in the fit (what counts as a one-unit miss).
PROFILE_SCALE = 0.05  # of log residual sd per bin (a 5 % miss)
CORR_SCALE = 0.05
BRIGHTNESS_SCALE = 0.05  # of log brightness
CLIPPED_SCALE = 0.01  # a 1 % miss of the clipped fraction counts as a 5 % miss of the noise level
# Blurred levels (every channel) where the noise's colour is compared, two ranges: above 8 levels it is not
# clipped at black and no output black point reaches it (one range over 2-128 let a fit trade a blue gain at
# its bound against the black point); below, the level dependence tells read noise (scaled by a gain) from
# shot noise (by its square root), which the gains otherwise trade off against.
NOISE_COLOUR_RANGES = ((2.0, 8.0), (8.0, 128.0))
NOISE_COLOUR_SCALE = 0.05  # of log(red / green) and log(blue / green) noise sd: a 5 % miss
# The noise at the pixel scale (Immerkaer's estimator, flattest half; what `lowsim compare`'s classifier sees):
# its level per NOISE_COLOUR_RANGES entry and its cross-channel correlation over MASK_LEVELS. The residual above
# mixes fine noise with scene texture; without these a fit could match the residual with noise too white or too
# grainy (per-pair fits missed the pixel-scale channel correlation by up to 0.9).
PIXEL_SD_SCALE = 0.05  # of log pixel-scale noise sd
PIXEL_CORR_SCALE = 0.05
# Below ~1 level of noise the 8-bit rounding is no longer an independent additive noise (it follows the signal),
# so the rounding model above misreads it: on a synthetic pair at 0.5 levels it missed by 8 % at the true
# parameters and pulled the fit off them. A pixel-scale statistic counts only where the real sd reaches this.
PIXEL_MIN_SD = 1.0


@dataclass(frozen=True)
class ResidualStats:
    """What the noise fit matches: residual sd per intensity bin, channel correlation, brightness, clipping,
    and the noise's colour (red / green and blue / green noise sd per NOISE_COLOUR_RANGES entry, Immerkaer's
    estimator away from edges)."""

    profile: np.ndarray
    counts: np.ndarray
    channel_corr: float
    spatial_corr: float
    brightness: float
    clipped_black: float
    red_green: np.ndarray = field(default_factory=lambda: np.full(len(NOISE_COLOUR_RANGES), math.nan))
    blue_green: np.ndarray = field(default_factory=lambda: np.full(len(NOISE_COLOUR_RANGES), math.nan))
    pixel_sd: np.ndarray = field(default_factory=lambda: np.full(len(NOISE_COLOUR_RANGES), math.nan))
    pixel_corr: float = math.nan

    @classmethod
    def of(cls, img: np.ndarray) -> "ResidualStats":
        """Measure a dark image (uint8, or an unrounded float simulation in [0, 1]); one high-pass for all."""
        levels = to_levels(img)
        residual, blurred = highpass_levels(levels)
        profile, counts = binned_sd(blurred, residual)  # lowsim.statistics.noise_profile, from the same pass
        if img.dtype.kind == "f":  # add the 8-bit rounding the real image has (uniform, variance 1/12)
            profile = np.sqrt(profile ** 2 + highpass_gain() ** 2 / 12.0)
        s = residual_statistics(levels, residual, blurred)
        pixel = pixel_noise(levels, blurred, rounded=img.dtype.kind != "f")
        return cls(profile, np.asarray(counts, float), float(s["channel_corr"]),
                   float(s["spatial_corr"]), float(s["brightness"]), float(s["clipped_black"]), *pixel)


def pixel_noise(levels: np.ndarray, blurred: np.ndarray, rounded: bool
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The noise at the pixel scale of an image in 8-bit levels, away from edges: (red / green, blue / green,
    sd of all channels) per NOISE_COLOUR_RANGES entry, and the cross-channel correlation over MASK_LEVELS; NaN
    where too few pixels define them.

    An unrounded simulation (`rounded` False) gets the 8-bit rounding the real image has: variance 1/12 per
    channel, independent across channels (it pulls the real ratios towards 1 by a few per cent at LOL's
    ~1.6-level noise, and lowers the correlation; the simulation's must be pulled alike).
    """
    response, flat = laplacian_levels(levels), flattest(structure_levels(levels), FLAT_FRACTION)  # once per image
    ratios, sds = [], []
    for levels_range in NOISE_COLOUR_RANGES:
        sigmas = np.array(laplacian_channel_sigmas(response, degradation_mask(blurred, levels_range) & flat),
                          dtype=np.float64)
        sigmas = sigmas if rounded else np.sqrt(sigmas ** 2 + 1.0 / 12.0)
        ratios.append(noise_colour_ratios(sigmas))
        sds.append(float(np.sqrt(np.mean(sigmas ** 2))))
    red_green, blue_green = zip(*ratios)
    corr = channel_correlation_with_noise(response[degradation_mask(blurred) & flat],
                                          0.0 if rounded else ROUNDING_RESPONSE_VARIANCE)
    return np.array(red_green), np.array(blue_green), np.array(sds), corr


def match_residuals(sim: ResidualStats, real: ResidualStats, bins: np.ndarray) -> np.ndarray:
    """The scaled misses of a simulation against the real image (what the noise fit minimises).

    `bins` (bool per intensity bin) fixes which bins are compared, so the vector's length never changes;
    a bin the simulation leaves empty counts as no miss.
    """
    ratio = np.log(np.where(sim.profile > 0, sim.profile, np.nan) / real.profile)
    level = np.nan_to_num(ratio[bins], nan=0.0, posinf=0.0, neginf=0.0)
    misses = np.concatenate([level / PROFILE_SCALE, [
        (sim.channel_corr - real.channel_corr) / CORR_SCALE,
        (sim.spatial_corr - real.spatial_corr) / CORR_SCALE,
        math.log(max(sim.brightness, 1e-6) / max(real.brightness, 1e-6)) / BRIGHTNESS_SCALE,
        (sim.clipped_black - real.clipped_black) / CLIPPED_SCALE,
        *(_log_ratio(a, b) / NOISE_COLOUR_SCALE for a, b in zip(sim.red_green, real.red_green)),
        *(_log_ratio(a, b) / NOISE_COLOUR_SCALE for a, b in zip(sim.blue_green, real.blue_green)),
        *_pixel_misses(sim, real)]])
    return np.nan_to_num(misses, nan=0.0, posinf=0.0, neginf=0.0)  # a statistic too few pixels define


def _pixel_misses(sim: ResidualStats, real: ResidualStats) -> list[float]:
    """Scaled misses of the pixel-scale sd per level range and of the channel correlation; NaN (no miss) where
    the real noise is below PIXEL_MIN_SD (the correlation: in both ranges)."""
    measurable = real.pixel_sd >= PIXEL_MIN_SD  # False for NaN
    sd = [_log_ratio(a, b) / PIXEL_SD_SCALE if ok else math.nan
          for a, b, ok in zip(sim.pixel_sd, real.pixel_sd, measurable)]
    corr = (sim.pixel_corr - real.pixel_corr) / PIXEL_CORR_SCALE if measurable.any() else math.nan
    return [*sd, corr]


def _log_ratio(sim: float, real: float) -> float:
    """log(sim / real) of two positive statistics; NaN when either is undefined (no miss, see above)."""
    if not (sim > 0 and real > 0):  # also False for NaN
        return math.nan
    return math.log(sim / real)


def _profile_log_ratio(sim: ResidualStats, real: ResidualStats) -> np.ndarray:
    """log(sim / real) residual sd in the intensity bins both images populate (a bin only one of them
    reaches says the tone fit missed there, not the noise)."""
    good = (real.counts >= MIN_BIN_PIXELS) & (sim.counts >= MIN_BIN_PIXELS)
    good &= np.isfinite(real.profile) & np.isfinite(sim.profile) & (real.profile > 0) & (sim.profile > 0)
    return np.log(sim.profile[good] / real.profile[good])


def centre_crop(img: np.ndarray, size: int = NOISE_CROP) -> np.ndarray:
    """The central size x size part of an image (all of it when smaller), with even offsets (Bayer)."""
    top = max(0, (img.shape[0] - size) // 2) & ~1
    left = max(0, (img.shape[1] - size) // 2) & ~1
    return img[top:top + size, left:left + size]


@dataclass
class NoiseFitV2:
    """The noise and processing fit of one pair, with how well its simulation matches the real residual."""

    values: dict[str, float]
    match: dict[str, float]
    at_bound: list[str] = field(default_factory=list)
    cost: float = math.nan  # half the sum of squared scaled misses at the fit


def _noise_theta(values: dict[str, float]) -> np.ndarray:
    return np.array([float(to_unconstrained(n, values[n])) for n in NOISE_NAMES])


def _noise_theta_bounds() -> tuple[np.ndarray, np.ndarray]:
    """NOISE_RANGES in the noise fit's unconstrained coordinates: (lower, upper)."""
    return (_noise_theta({n: r[0] for n, r in NOISE_RANGES.items()}),
            _noise_theta({n: r[1] for n, r in NOISE_RANGES.items()}))


def fit_noise_v2(dark: np.ndarray, bright: np.ndarray, mean: dict[str, float],
                 rng: np.random.Generator, start_values: dict[str, float] | None = None) -> NoiseFitV2:
    """Choose K, read noise, chroma NR, sharpening, black levels and white balance so the simulated residual
    matches the real one. `mean`: the tone-and-colour values plus the fixed ones (row_sigma, downscale).

    Simulates v2 with its smooth sensor surrogate and fixed normals (common random numbers), so the
    misses are smooth in the parameters and a least-squares fit with finite differences converges.
    """
    dark_c, bright_c = centre_crop(dark), centre_crop(bright)
    real = ResidualStats.of(dark_c)
    normals = rng.standard_normal((3, *v2.sensor_shape(bright_c.shape, mean["downscale"])), dtype=np.float32)
    lo, hi = _noise_theta_bounds()

    def simulate(theta: np.ndarray) -> np.ndarray:
        noise = {n: float(from_unconstrained(n, t)) for n, t in zip(NOISE_NAMES, theta)}
        p = IspParams(**{**mean, **noise})
        return v2.simulate_smooth(bright_c, p, normals)

    start = np.clip(_noise_theta(start_values or NOISE_START), lo + 1e-3, hi - 1e-3)
    first = ResidualStats.of(simulate(start))
    bins = (real.counts >= MIN_BIN_PIXELS) & (first.counts >= MIN_BIN_PIXELS) & (real.profile > 0)

    def residuals(theta: np.ndarray) -> np.ndarray:
        return match_residuals(ResidualStats.of(simulate(theta)), real, bins)

    fit = optimize.least_squares(residuals, start, bounds=(lo, hi), diff_step=DIFF_STEP, x_scale=1.0,
                                 ftol=1e-4, xtol=1e-4, max_nfev=60)
    values = {n: float(from_unconstrained(n, t)) for n, t in zip(NOISE_NAMES, fit.x)}
    sim = ResidualStats.of(simulate(fit.x))
    at_bound = _at_bound(NOISE_NAMES, fit.x, lo, hi)
    return NoiseFitV2(values=values, match=_match_report(sim, real), at_bound=at_bound, cost=float(fit.cost))


BIAS_BINS = 64


def noise_bias(bright: np.ndarray, p: IspParams, normals: np.ndarray) -> np.ndarray:
    """(BIAS_BINS, 3) mean of (noisy − noiseless) dark per noiseless level and channel: what clipping the
    noise at black adds to the mean, which a noiseless tone fit would otherwise absorb into its parameters."""
    pred = v2.expected_dark(bright, p).reshape(-1, 3)
    sim = v2.simulate_smooth(bright, p, normals).reshape(-1, 3)
    table = np.zeros((BIAS_BINS, 3))
    for c in range(3):
        index = np.minimum((pred[:, c] * BIAS_BINS).astype(int), BIAS_BINS - 1)
        total = np.bincount(index, weights=sim[:, c] - pred[:, c], minlength=BIAS_BINS)
        count = np.bincount(index, minlength=BIAS_BINS)
        table[:, c] = np.divide(total, count, out=np.zeros(BIAS_BINS), where=count >= 20)
    return table


def debias(d: np.ndarray, b: np.ndarray, values: dict[str, float], table: np.ndarray) -> np.ndarray:
    """Dark pixel values with the noise-clipping bias at their predicted level taken out."""
    pred = predict_mean(_to_theta(values), b)
    index = np.minimum((pred * BIAS_BINS).astype(int), BIAS_BINS - 1)
    return d - np.take_along_axis(table, index, axis=0)


def _match_report(sim: ResidualStats, real: ResidualStats) -> dict[str, float]:
    """How close the fitted simulation's residual is to the real one (recorded per pair)."""
    ratio = _profile_log_ratio(sim, real)
    return {"match_profile_rms_log": float(np.sqrt(np.mean(ratio ** 2))) if ratio.size else math.nan,
            "match_profile_bins": int(ratio.size),
            "match_channel_corr_real": real.channel_corr, "match_channel_corr_sim": sim.channel_corr,
            "match_spatial_corr_real": real.spatial_corr, "match_spatial_corr_sim": sim.spatial_corr,
            "match_brightness_real": real.brightness, "match_brightness_sim": sim.brightness,
            "match_clipped_real": real.clipped_black, "match_clipped_sim": sim.clipped_black,
            "match_red_green_real": real.red_green[-1], "match_red_green_sim": sim.red_green[-1],
            "match_blue_green_real": real.blue_green[-1], "match_blue_green_sim": sim.blue_green[-1],
            "match_red_green_dark_real": real.red_green[0], "match_red_green_dark_sim": sim.red_green[0],
            "match_blue_green_dark_real": real.blue_green[0], "match_blue_green_dark_sim": sim.blue_green[0],
            "match_pixel_sd_real": real.pixel_sd[-1], "match_pixel_sd_sim": sim.pixel_sd[-1],
            "match_pixel_sd_dark_real": real.pixel_sd[0], "match_pixel_sd_dark_sim": sim.pixel_sd[0],
            "match_pixel_corr_real": real.pixel_corr, "match_pixel_corr_sim": sim.pixel_corr}


# ============================================================================================ JPEG fit

JPEG_GRID = (0, 95, 85, 75, 60, 40)  # candidate qualities of `fit_jpeg_v2`; 0 = no JPEG stage
# Each candidate rescales the fitted noise's sd (shot variance by s², read sd by s) to its best level: the
# noise fit without JPEG matched a JPEG's smoothed residual with far less noise (5-200x less on synthetic
# quality-40 pairs), so that noise unchanged under a JPEG would favour "off". A least-squares refit of all six
# noise parameters through the 8-bit codes stopped at its start (rounding and JPEG make the cost step-wise at
# the finite-difference steps); this one-dimensional search does not need derivatives.
JPEG_LOG_SCALE = (-1.0, 3.0)  # search range of log s: 0.37x to 20x
JPEG_SCALE_EVALS = 12


@dataclass
class JpegFitV2:
    """The chosen JPEG quality, the noise values that go with it, and the cost of every candidate."""

    values: dict[str, float]
    costs: dict[int, float]  # half the sum of squared misses per candidate, at its best noise scale
    cost: float  # the chosen candidate's
    noise: NoiseFitV2 | None  # the rescaled noise and its match, when a quality other than off was chosen

    def report(self) -> dict[str, Any]:
        """Columns of the per-pair table: the cost of each candidate and how much the chosen one improved on off."""
        off = self.costs[0]
        return {"jpeg_cost_off": off, "jpeg_cost": self.cost,
                "jpeg_cost_change": self.cost / off - 1.0 if off > 0 else math.nan,
                **{f"jpeg_cost_q{q}": c for q, c in self.costs.items() if q}}


def _scaled_noise(values: dict[str, float], log_scale: float) -> dict[str, float]:
    """The noise's sd scaled by exp(log_scale): shot variance (K) by s², read sd by s."""
    s = math.exp(log_scale)
    return {**values, "shot_gain": values["shot_gain"] * s * s, "read_sigma": values["read_sigma"] * s}


def fit_jpeg_v2(dark: np.ndarray, bright: np.ndarray, values: dict[str, float],
                rng: np.random.Generator) -> JpegFitV2:
    """Choose the JPEG quality of JPEG_GRID whose simulation matches the real residual best (`match_residuals`).

    `dark`: the real 8-bit codes; `values`: the pair's fitted parameters. Every candidate, off included, is
    simulated as 8-bit codes with the same normals and its noise level rescaled to its best (JPEG_LOG_SCALE).
    """
    dark_c, bright_c = centre_crop(dark), centre_crop(bright)
    real = ResidualStats.of(dark_c)
    normals = rng.standard_normal((3, *v2.sensor_shape(bright_c.shape, values["downscale"])), dtype=np.float32)

    def stats(candidate: dict[str, float]) -> ResidualStats:
        return ResidualStats.of(v2.simulate_codes(bright_c, IspParams(**candidate), normals))

    off = stats({**values, "jpeg_quality": 0.0})
    bins = (real.counts >= MIN_BIN_PIXELS) & (off.counts >= MIN_BIN_PIXELS) & (real.profile > 0)

    def cost(candidate: dict[str, float]) -> float:
        return 0.5 * float(np.sum(match_residuals(stats(candidate), real, bins) ** 2))

    best: dict[int, tuple[float, dict[str, float]]] = {}
    for quality in JPEG_GRID:
        search = optimize.minimize_scalar(
            lambda t: cost(_scaled_noise({**values, "jpeg_quality": float(quality)}, t)),
            bounds=JPEG_LOG_SCALE, method="bounded", options={"xatol": 0.03, "maxiter": JPEG_SCALE_EVALS})
        best[quality] = (float(search.fun), _scaled_noise({**values, "jpeg_quality": float(quality)}, search.x))
    costs = {q: c for q, (c, _) in best.items()}
    chosen = min(JPEG_GRID, key=lambda q: costs[q])  # ties: the earlier (milder) candidate
    if chosen == 0:
        return JpegFitV2(values={"jpeg_quality": 0.0}, costs=costs, cost=costs[0], noise=None)
    final = best[chosen][1]
    lo, hi = _noise_theta_bounds()
    noise = NoiseFitV2(values={n: final[n] for n in NOISE_NAMES}, match=_match_report(stats(final), real),
                       at_bound=_at_bound(NOISE_NAMES, _noise_theta(final), lo, hi), cost=costs[chosen])
    return JpegFitV2(values={"jpeg_quality": float(chosen), **noise.values}, costs=costs, cost=costs[chosen],
                     noise=noise)


def run_jpeg_quality(qualities: list[float]) -> float:
    """One JPEG quality for a whole calibration (a camera has one setting): the median of the pairs' choices,
    off counted as milder than 100; the upper middle one when their number is even."""
    if not qualities:
        return 0.0
    mildest_first = sorted(qualities, key=lambda q: -(101.0 if q == 0 else q))
    return float(mildest_first[(len(qualities) - 1) // 2])


# ============================================================================================ per pair

FIXED_V2 = {"row_sigma": 0.0}  # row noise cannot be told from scene texture in processed sRGB pairs
DOWNSCALES = (1.0, 2.0, 3.0)  # candidates of `choose_downscale`
RANGES_V2 = {**MEAN_RANGES, **NOISE_RANGES}
IDENTICAL_LEVELS = 0.5  # mean |dark − bright| below half a level: the same image twice


def fit_quality_v2(dark: np.ndarray, bright: np.ndarray, p: IspParams) -> dict[str, float]:
    """RMSE (8-bit levels) and R² of v2's noiseless prediction against the dark image."""
    pred = v2.expected_dark(bright, p).astype(np.float64)
    resid = dark.astype(np.float64) - pred
    ss_tot = float(np.sum((dark - dark.mean()) ** 2))
    return {"isp_rmse_dn": float(np.sqrt(np.mean(resid ** 2)) * 255.0),
            "isp_r2": 1.0 - float(np.sum(resid ** 2)) / ss_tot if ss_tot > 0 else math.nan}


def physical_reason(dark: np.ndarray, bright: np.ndarray, values: dict[str, float]) -> str:
    """Why a fitted pair is not a low-light pair at all ('' when it is)."""
    if float(np.mean(np.abs(dark - bright))) * 255.0 < IDENTICAL_LEVELS:
        return "dark and bright are the same image"
    if values["exposure"] >= 1.0 or float(dark.mean()) >= float(bright.mean()):
        return (f"dark image is not darker than its bright image (exposure {values['exposure']:.2f}; "
                "are low/ and high/ swapped?)")
    return ""


def to_codes(img: np.ndarray) -> np.ndarray:
    """A float image in [0, 1] as the 8-bit codes it was read from."""
    return np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)


def fit_tone(dark: np.ndarray, bright: np.ndarray, rng: np.random.Generator,
             n_pixels: int) -> tuple[np.ndarray, np.ndarray, MeanFitV2]:
    """(dark pixels, bright pixels, tone-and-colour fit) on up to n_pixels unsaturated pixels of a pair."""
    rows_idx, cols_idx = sample_pixels(valid_mask(dark, bright), n_pixels, rng)
    d, b = dark[rows_idx, cols_idx].astype(np.float64), bright[rows_idx, cols_idx].astype(np.float64)
    return d, b, fit_mean_v2(d, b, rng)


def refine_with_noise(dark: np.ndarray, bright: np.ndarray, d: np.ndarray, b: np.ndarray, mean: MeanFitV2,
                      rng: np.random.Generator, downscale: float) -> tuple[MeanFitV2, NoiseFitV2]:
    """Noise fit; then tone and colour refitted on the dark values less the noise's clipping bias, and
    the noise fitted again for the new curve (noise clipped at black raises the mean of dark pixels)."""
    dark_codes = to_codes(dark)
    fixed = {**FIXED_V2, "downscale": downscale}
    noise = fit_noise_v2(dark_codes, bright, {**mean.values, **fixed}, rng)
    first = IspParams(**{**fixed, **mean.values, **noise.values})
    normals = rng.standard_normal((3, *v2.sensor_shape(bright.shape, downscale)), dtype=np.float32)
    table = noise_bias(bright, first, normals)
    mean = fit_mean_v2(debias(d, b, mean.values, table), b, rng, start_values=mean.values)
    noise = fit_noise_v2(dark_codes, bright, {**mean.values, **fixed}, rng, start_values=noise.values)
    return mean, noise


def _record_jpeg_fit(row: dict[str, Any], values: dict[str, float], dark_codes: np.ndarray, bright: np.ndarray,
                     rng: np.random.Generator) -> NoiseFitV2 | None:
    """Choose the pair's JPEG quality into `values` and its costs into `row`; the noise refit, if any."""
    jpeg = fit_jpeg_v2(dark_codes, bright, values, rng)
    values.update(jpeg.values)
    row.update(jpeg.report())
    return jpeg.noise


def choose_downscale(pairs: list[tuple[np.ndarray, np.ndarray]], seed: int = 0) -> float:
    """How much the camera's images were resized: the DOWNSCALES candidate whose noise fits match best.

    Demosaicing correlates neighbouring pixels' noise; resizing a camera's image down averages that away
    (LOL's 600 x 400 images are resized), and no other stage can. For a few pairs, the noise fit runs at
    each candidate; the one with the smallest median miss wins.
    """
    costs: dict[float, list[float]] = {f: [] for f in DOWNSCALES}
    for k, (dark, bright) in enumerate(pairs):
        if dark.shape != bright.shape or exclusion_reason(pair_checks(dark, bright)):
            continue
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(k,)))
        _, _, mean = fit_tone(dark, bright, rng, START_PIXELS)
        if physical_reason(dark, bright, mean.values):
            continue
        codes = to_codes(dark)
        for f in DOWNSCALES:
            fit = fit_noise_v2(codes, bright, {**mean.values, **FIXED_V2, "downscale": f}, rng)
            costs[f].append(fit.cost)
    if not costs[DOWNSCALES[0]]:
        return 1.0  # no usable pair to tell: the camera's own resolution
    return min(DOWNSCALES, key=lambda f: float(np.median(costs[f])))


def calibrate_arrays_v2(name: str, dark: np.ndarray, bright: np.ndarray, seed_sequence: np.random.SeedSequence,
                        checks_reason: str, downscale: float = 1.0, fit_jpeg: bool = False) -> dict[str, Any]:
    """Everything v2 calibration records about one pair (float images in [0, 1]): a flat table row.

    `checks_reason` is the shared pair checks' verdict (lowsim.pair_checks); a pair they reject is still
    fitted when possible, so the table shows what it would have given. `fit_jpeg`: choose a JPEG quality too.
    """
    rng = np.random.default_rng(seed_sequence)
    row: dict[str, Any] = {"name": name, "method": "isp", "model": V2_MODEL}
    d, b, mean = fit_tone(dark, bright, rng, FIT_PIXELS)
    reason = checks_reason or physical_reason(dark, bright, mean.values)
    at_bound = list(mean.at_bound)
    values = {**mean.values, **FIXED_V2, "downscale": downscale, **{n: NOISE_START[n] for n in NOISE_NAMES}}
    if not reason:
        mean, noise = refine_with_noise(dark, bright, d, b, mean, rng, downscale)
        values.update(mean.values)
        values.update(noise.values)
        if fit_jpeg:  # after the noise fit, from the same rng: without the flag no draw changes
            noise = _record_jpeg_fit(row, values, to_codes(dark), bright, rng) or noise
        row.update(noise.match)
        at_bound = list(mean.at_bound) + noise.at_bound
    params = IspParams(**values)
    row.update(params.to_dict())
    row.update(fit_quality_v2(dark, bright, params))
    if not reason and at_bound:
        reason = f"fit at a bound of its search range: {', '.join(at_bound)}"
    row.update(at_bound=", ".join(at_bound), excluded=bool(reason), reason=reason,
               fit_success=mean.success, notes="")
    return row
