"""Calibrate the degradation model (`lowsim.degrade`) on real dark/bright pairs.

Per pair, one of two methods turns (dark, bright) into a `DegradationParams`:

- ``paper``: the founding paper's estimators (seed 001 §3.1), exactly: on the 0–255 scale, over values in
  [5, 250], bl = mean(b − d), w_c = mean(d/b) per channel, 1/γ = mean(log_b d). The paper applies its chain
  on the 0–255 scale, so its gamma x^(1/γ) also divides by 255^(1/γ − 1); `paper_params` maps that exactly
  onto our [0, 1] model (see there). It estimates no illumination and no noise.
- ``joint`` (default): a robust (soft_l1) least-squares fit of the whole noiseless forward model
  `expected_dark(bright, p)` (illumination, black level, gains, gamma) on a seeded pixel subsample,
  started from a log-log regression with a multi-start over the illumination strength; then the shot and
  read noise from how the spread of neighbour-difference residuals grows with intensity, matched by
  simulating the same statistic through the model (gamma, clip at 0 and 8-bit rounding included, rather
  than a delta-method approximation); finally the mean parameters are refitted to the model's mean under
  that noise (the clip at 0 and the gamma bend the mean of a noisy image away from the noiseless curve).
  Weakly identified directions (illum_alpha/illum_gamma vs gains and gamma) are reported per pair as
  Gauss–Newton standard errors and the largest parameter correlation.

Pairs that do not match (different scene, misaligned, saturated, empty, too few usable pixels) are flagged
and left out of the distribution fit. The per-pair values are then fitted by `ParamDistribution.fit`.
"""
from __future__ import annotations

import hashlib
import math
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
from scipy import optimize, special

from lowsim.degrade import expected_dark
from lowsim.degradation.stages import metered_light
from lowsim.errors import LowsimError, printable
from lowsim.pair_checks import (LSB, MAX_SATURATED_FRACTION, MIN_BLOCK_SPEARMAN, MIN_DARK_P99,
                                MIN_VALID_PIXELS, PairChecks, block_means, exclusion_reason, pair_checks,
                                sample_pixels, valid_mask)
from lowsim.pairs import Pair, read_pair
from lowsim.calibrate_v2 import (FIXED_V2, RANGES_V2, calibrate_arrays_v2, choose_downscale,
                                  run_jpeg_quality)
from lowsim.params import (ALL_PARAM_NAMES, PARAM_NAMES, V1_MODEL, V2_MODEL, V2_PARAM_NAMES, DegradationParams,
                           ExposureAnchor, ParamDistribution)

METHODS = ("isp", "joint", "paper")  # isp: model v2 (lowsim.calibrate_v2); joint, paper: v1

# The paper's valid range for every estimate (values in [0, 5) carry no information, (250, 255] are
# saturated light sources).
PAPER_RANGE_DN = (5.0, 250.0)
# Joint fit settings.
FIT_PIXELS = 10_000  # subsampled pixel locations per pair (x3 channels) for the final fit
START_PIXELS = 3_000  # the multi-start runs on a smaller subsample of those, then the best is polished
NOISE_PIXEL_PAIRS = 20_000  # horizontal neighbour pairs for the noise fit (x3 channels)
NOISE_BINS = 12
# Weak priors pulling illum_alpha to 0 and log(illum_gamma) to 0. The illumination map is nearly
# degenerate with the gains and gamma (alpha = 1 with bl = 0 is exactly a power law, the same curve as
# alpha = 0 with another gamma), so among (nearly) equal fits we prefer the one without a map. Per unit of
# alpha or log(illum_gamma) each costs 1e-6 per residual, ~1 % of the data cost of a dark pair with 2-3
# levels of noise: it breaks ties but yields to any curve change the data can see.
ILLUM_PRIOR = 1e-3
# Optimizer bounds (natural units). Strictly inside the schema's ranges so the logit/log transforms
# of ParamDistribution stay finite; a value at a bound is recorded in the pair's notes.
BOUNDS: dict[str, tuple[float, float]] = {
    # alpha = 0.01 changes I' by at most 0.01*max I(1-I^g) <= 0.0025 (0.6 levels): no visible map
    "illum_alpha": (0.01, 1.98),
    "illum_gamma": (0.1, 10.0),
    "black_level": (1e-3, 0.9),  # 1e-3 = 0.26 levels: no visible black level
    "gain": (1e-4, 1e4),
    "gamma": (0.05, 20.0),
    # shot noise of 1e6 photons at full scale has sd 1e-3 (0.26 levels): no visible shot noise
    "photon_scale": (1.0, 1e6),
    "read_sigma": (1e-4, 0.5),  # 0.03 levels: no visible read noise
}
MEAN_PARAMS = ("illum_alpha", "illum_gamma", "black_level", "gain_r", "gain_g", "gain_b", "gamma")
NOISE_PARAMS = ("photon_scale", "read_sigma")
# Fixed for the paper method (it estimates no illumination and no read noise).
PAPER_FIXED = {"illum_alpha": 0.0, "illum_gamma": 1.0, "read_sigma": 0.0}


# ============================================================================================ paper method

@dataclass(frozen=True)
class PaperEstimate:
    """The paper's raw per-pair estimates, on its own 0–255 scale."""

    black_level_dn: float
    w_r: float
    w_g: float
    w_b: float
    inv_gamma: float
    n_values: int


def paper_estimate(dark: np.ndarray, bright: np.ndarray) -> PaperEstimate:
    """Seed 001 §3.1 estimators over the values where both images lie in [5, 250] (0–255 scale)."""
    d = dark.astype(np.float64) * 255.0
    b = bright.astype(np.float64) * 255.0
    # The rule is on integer levels: a tolerance keeps 250/255 in float32 (250.00002 after * 255) in.
    lo, hi = PAPER_RANGE_DN[0] - 1e-3, PAPER_RANGE_DN[1] + 1e-3
    ok = (d >= lo) & (d <= hi) & (b >= lo) & (b <= hi)
    n = int(ok.sum())
    if n == 0:
        raise LowsimError("no values in [5, 250] in both images; the paper's estimators are undefined")
    ratios = []
    for c in range(3):
        okc = ok[..., c]
        # The paper's formula divides by 3mn (a typo for one channel); we take the mean over the channel.
        ratios.append(float(np.mean(d[..., c][okc] / b[..., c][okc])) if okc.any() else math.nan)
    return PaperEstimate(
        black_level_dn=float(np.mean(b[ok] - d[ok])),
        w_r=ratios[0], w_g=ratios[1], w_b=ratios[2],
        inv_gamma=float(np.mean(np.log(d[ok]) / np.log(b[ok]))),  # log base b of d
        n_values=n,
    )


def paper_params(est: PaperEstimate) -> tuple[DegradationParams, list[str]]:
    """Map the paper's estimates onto our schema so that expected_dark reproduces the paper's chain.

    The paper runs f = GC(PN(CD(BL(B)))) on the 0–255 scale: d' = (w·(b' − bl'))^(1/γ) with primes for
    0–255 values. In [0, 1] units that is d = (w·255^(1−γ)·(b − bl'/255))^(1/γ), so black_level = bl'/255,
    gain = w·255^(1−γ), gamma = γ. Its noise poisson(B'/255)·255 on the pre-gamma 0–255 value becomes
    photon_scale = 255^(γ−1) in our pre-gamma units (= 1 only when γ = 1). Returns (params, notes).
    """
    notes: list[str] = []
    values = [est.w_r, est.w_g, est.w_b, est.inv_gamma, est.black_level_dn]
    if not all(math.isfinite(v) for v in values) or est.inv_gamma <= 0 or min(values[:3]) <= 0:
        raise LowsimError(f"paper estimates are not usable ({est})")
    gamma = 1.0 / est.inv_gamma
    black = est.black_level_dn / 255.0
    lo, hi = BOUNDS["black_level"]
    if not lo <= black <= hi:
        notes.append(f"paper black level {est.black_level_dn:.2f}/255 clipped into [{lo:g}, {hi:g}]")
        black = min(max(black, lo), hi)
    scale = 255.0 ** (1.0 - gamma)
    params = DegradationParams(
        **PAPER_FIXED, black_level=black, gamma=gamma, photon_scale=255.0 ** (gamma - 1.0),
        gain_r=est.w_r * scale, gain_g=est.w_g * scale, gain_b=est.w_b * scale)
    return params, notes


# ============================================================================================ pair checks

# ============================================================================================ fit quality

def fit_quality(dark: np.ndarray, bright: np.ndarray, p: DegradationParams,
                noisy: bool = False) -> dict[str, float]:
    """RMSE (in 8-bit levels) and R^2 of the model vs dark over all pixels, and R^2 of 8x8 block means.

    The model is expected_dark (the noiseless forward model) or, with noisy=True, the mean of the dark
    image under the model's noise (what `degrade` produces on average).
    """
    if noisy:
        table = noisy_mean_table(_params_to_theta(p), p.photon_scale, p.read_sigma)
        pred = _interp_channels(bright.reshape(-1, 3).astype(np.float64), table).reshape(bright.shape)
    else:
        pred = expected_dark(bright.astype(np.float32), p).astype(np.float64)
    d = dark.astype(np.float64)
    resid = d - pred
    ss_tot = float(np.sum((d - d.mean()) ** 2))
    bd, bp = block_means(d), block_means(pred)
    ss_tot_b = float(np.sum((bd - bd.mean()) ** 2))
    return {
        "rmse_dn": float(np.sqrt(np.mean(resid**2)) * 255.0),
        "r2": 1.0 - float(np.sum(resid**2)) / ss_tot if ss_tot > 0 else math.nan,
        "r2_blocks": 1.0 - float(np.sum((bd - bp) ** 2)) / ss_tot_b if ss_tot_b > 0 else math.nan,
    }


# ============================================================================================ joint fit

def _mean_model(theta: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pre-gamma value, post-gamma value) of the noiseless model for parameter vector theta."""
    alpha, log_ig, black, log_gr, log_gg, log_gb, log_gamma = theta
    light = np.maximum(alpha * np.power(b, math.exp(log_ig)) + (1.0 - alpha), 0.0)
    x = np.maximum(b * light - black, 0.0) * np.exp([log_gr, log_gg, log_gb])
    return x, np.power(np.clip(x, 0.0, 1.0), math.exp(-log_gamma))


def _theta_to_dict(theta: np.ndarray) -> dict[str, float]:
    alpha, log_ig, black, log_gr, log_gg, log_gb, log_gamma = (float(t) for t in theta)
    return {"illum_alpha": alpha, "illum_gamma": math.exp(log_ig), "black_level": black,
            "gain_r": math.exp(log_gr), "gain_g": math.exp(log_gg), "gain_b": math.exp(log_gb),
            "gamma": math.exp(log_gamma)}


def _theta_bounds() -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of theta = (alpha, log ig, bl, log g_r, log g_g, log g_b, log gamma)."""
    b = BOUNDS
    lo = [b["illum_alpha"][0], math.log(b["illum_gamma"][0]), b["black_level"][0],
          *[math.log(b["gain"][0])] * 3, math.log(b["gamma"][0])]
    hi = [b["illum_alpha"][1], math.log(b["illum_gamma"][1]), b["black_level"][1],
          *[math.log(b["gain"][1])] * 3, math.log(b["gamma"][1])]
    return np.array(lo), np.array(hi)


def loglog_init(d: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Initial theta from ln d_c = a_c + (1/γ) ln b_c (no illumination, no black level)."""
    ok = (d >= 2 * LSB) & (b >= 5 * LSB)
    lo, hi = _theta_bounds()
    if ok.sum() < 30:
        theta = np.array([lo[0], 0.0, lo[2], 0.0, 0.0, 0.0, 0.0])
    else:
        rows = np.nonzero(ok)
        design = np.zeros((rows[0].size, 4))
        design[np.arange(rows[0].size), rows[1]] = 1.0
        design[:, 3] = np.log(b[rows])
        coef, *_ = np.linalg.lstsq(design, np.log(d[rows]), rcond=None)
        slope = max(float(coef[3]), 0.05)  # = 1/gamma
        theta = np.array([lo[0], 0.0, lo[2], *(coef[:3] / slope), -math.log(slope)])
    return np.clip(theta, lo + 1e-9, hi - 1e-9)


@dataclass
class MeanFit:
    """Result of the noiseless-model fit: parameters, standard errors, degeneracy diagnostics."""

    values: dict[str, float]
    stderr: dict[str, float]  # of alpha, bl (natural) and of log(ig), log(gains), log(gamma)
    max_correlation: float
    most_correlated: str
    cost: float
    success: bool
    notes: list[str] = field(default_factory=list)


def fit_mean(dark: np.ndarray, bright: np.ndarray, rng: np.random.Generator,
             n_pixels: int = FIT_PIXELS) -> MeanFit:
    """Robust least-squares fit of illumination, black level, gains and gamma on a pixel subsample."""
    rows, cols = sample_pixels(valid_mask(dark, bright), n_pixels, rng)
    d = dark[rows, cols].astype(np.float64)
    b = bright[rows, cols].astype(np.float64)
    lo, hi = _theta_bounds()
    init = loglog_init(d, b)
    start_resid = (_mean_model(init, b)[1] - d).ravel()
    # soft_l1 switches from squares to absolute values at about 2x the robust noise level of the start.
    f_scale = max(2.0 * 1.4826 * float(np.median(np.abs(start_resid - np.median(start_resid)))), LSB)
    # Multi-start over the illumination strength on a small subsample (alpha trades off against gains
    # and gamma, with separate basins for "no map" and "strong map"), then polish the best on all.
    few = rng.permutation(len(d))[:START_PIXELS]
    starts = []
    for alpha0 in (lo[0], 0.5, 1.0):
        start = init.copy()
        start[0] = alpha0
        starts.append(_robust_fit(start, d[few], b[few], f_scale, (lo, hi)))
    best = _robust_fit(min(starts, key=lambda r: r.cost).x, d, b, f_scale, (lo, hi))
    n_data = d.size
    stderr, max_corr, pair_name = _identifiability(best.jac[:n_data], best.fun[:n_data])
    values = _theta_to_dict(best.x)
    notes = [f"{name} at its bound" for name, t, l, h in zip(MEAN_PARAMS, best.x, lo, hi)
             if name not in ("illum_alpha", "illum_gamma")
             and (t - l < 1e-6 * max(1.0, abs(l)) or h - t < 1e-6 * max(1.0, abs(h)))]
    return MeanFit(values=values, stderr=stderr, max_correlation=max_corr, most_correlated=pair_name,
                   cost=float(best.cost), success=bool(best.status > 0), notes=notes)


def _robust_fit(start: np.ndarray, d: np.ndarray, b: np.ndarray, f_scale: float,
                bounds: tuple[np.ndarray, np.ndarray]) -> optimize.OptimizeResult:
    """One soft_l1 least-squares run of the noiseless model with the weak illumination priors."""
    prior_weight = math.sqrt(d.size) * ILLUM_PRIOR

    def residuals(theta: np.ndarray) -> np.ndarray:
        return np.concatenate([(_mean_model(theta, b)[1] - d).ravel(), prior_weight * theta[:2]])

    return optimize.least_squares(residuals, start, bounds=bounds, loss="soft_l1", f_scale=f_scale,
                                  x_scale="jac", ftol=1e-6, xtol=1e-6, max_nfev=200)


# The model is a per-channel function of the bright value alone, so its noisy mean is tabulated on a
# grid (exact at 8-bit values) and interpolated.
_B_GRID = np.linspace(0.0, 1.0, 256)
# 8-bit rounding thresholds of the output: round(255 y) >= k  <=>  y >= (k - 0.5) / 255.
_ROUNDING_THRESHOLDS = (np.arange(1, 256) - 0.5) / 255.0


def noisy_mean_table(theta: np.ndarray, photon_scale: float, read_sigma: float) -> np.ndarray:
    """E[round(255 GC(clip(x + noise))) / 255] per channel on _B_GRID, shape (256, 3).

    Exact for Gaussian noise of the model's variance x/scale + sigma^2 (the Poisson part approximated
    by a Gaussian): E[round(255 Y)] = sum_k P(Y >= (k - 1/2)/255) and, GC being increasing, each term
    is P(x + noise >= ((k - 1/2)/255)^gamma), a normal tail. The clips at 0 and 1 come for free.
    """
    x, _ = _mean_model(theta, np.repeat(_B_GRID[:, None], 3, axis=1))
    sd = np.sqrt(np.maximum(x, 0.0) / photon_scale + read_sigma**2)
    pre_thresholds = np.power(_ROUNDING_THRESHOLDS, math.exp(theta[6]))
    z = (x[..., None] - pre_thresholds) / sd[..., None]
    return special.ndtr(z).sum(axis=-1) / 255.0


def _interp_channels(b: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Per-channel linear interpolation of a (256, 3) table at bright values b (N, 3)."""
    return np.column_stack([np.interp(b[:, c], _B_GRID, table[:, c]) for c in range(3)])


def refit_mean_with_noise(dark: np.ndarray, bright: np.ndarray, first: MeanFit, photon_scale: float,
                          read_sigma: float, rng: np.random.Generator,
                          n_pixels: int = FIT_PIXELS) -> MeanFit:
    """Refit the mean parameters to E[dark] under the fitted noise instead of the noiseless curve.

    Noise raises the mean where the clip at 0 cuts it off and bends it through the gamma (Jensen), so
    the noiseless fit biases the black level and gamma of noisy pairs; this removes most of that bias.
    """
    rows, cols = sample_pixels(valid_mask(dark, bright), n_pixels, rng)
    d = dark[rows, cols].astype(np.float64)
    b = bright[rows, cols].astype(np.float64)
    lo, hi = _theta_bounds()
    theta0 = np.clip(_params_to_theta(DegradationParams(**first.values)), lo + 1e-9, hi - 1e-9)
    prior_weight = math.sqrt(d.size) * ILLUM_PRIOR

    def residuals(theta: np.ndarray) -> np.ndarray:
        pred = _interp_channels(b, noisy_mean_table(theta, photon_scale, read_sigma))
        return np.concatenate([(pred - d).ravel(), prior_weight * theta[:2]])

    start = residuals(theta0)[: d.size]
    f_scale = max(2.0 * 1.4826 * float(np.median(np.abs(start - np.median(start)))), LSB)
    res = optimize.least_squares(residuals, theta0, bounds=(lo, hi), loss="soft_l1", f_scale=f_scale,
                                 x_scale="jac", ftol=1e-6, xtol=1e-6, max_nfev=200)
    stderr, max_corr, pair_name = _identifiability(res.jac[: d.size], res.fun[: d.size])
    notes = [f"{name} at its bound" for name, t, l, h in zip(MEAN_PARAMS, res.x, lo, hi)
             if name not in ("illum_alpha", "illum_gamma")
             and (t - l < 1e-6 * max(1.0, abs(l)) or h - t < 1e-6 * max(1.0, abs(h)))]
    return MeanFit(values=_theta_to_dict(res.x), stderr=stderr, max_correlation=max_corr,
                   most_correlated=pair_name, cost=float(res.cost), success=bool(res.status > 0),
                   notes=notes)


def _identifiability(jac: np.ndarray, resid: np.ndarray) -> tuple[dict[str, float], float, str]:
    """Gauss–Newton standard errors and the largest parameter correlation at the solution.

    They assume independent residuals, so they are optimistic in absolute size; their use is relative:
    which parameters are pinned down by the data and which trade off against each other.
    """
    jac = np.asarray(jac, dtype=np.float64)
    dof = max(resid.size - jac.shape[1], 1)
    sigma2 = float(np.sum(resid**2)) / dof
    cov = np.linalg.pinv(jac.T @ jac) * sigma2
    sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    names = ("illum_alpha", "log_illum_gamma", "black_level", "log_gain_r", "log_gain_g", "log_gain_b",
             "log_gamma")
    stderr = {n: (float(s) if s > 0 else math.inf) for n, s in zip(names, sd)}
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(sd, sd)
    corr[~np.isfinite(corr)] = 0.0
    np.fill_diagonal(corr, 0.0)
    i, j = np.unravel_index(int(np.argmax(np.abs(corr))), corr.shape)
    return stderr, float(abs(corr[i, j])), f"{names[i]}~{names[j]}"


# ============================================================================================ noise fit

@dataclass
class NoiseFit:
    """Shot and read noise from the residual spread, with the per-bin data for the report."""

    photon_scale: float
    read_sigma: float
    bin_intensity: np.ndarray
    bin_spread: np.ndarray
    model_spread: np.ndarray
    correlated_ratio: float  # spread of single residuals / neighbour differences; ~1 for white noise
    notes: list[str] = field(default_factory=list)


def _robust_var(x: np.ndarray) -> float:
    """Variance from the median absolute deviation (1.4826·MAD)^2, robust to edges and misfit."""
    return float((1.4826 * np.median(np.abs(x - np.median(x)))) ** 2)


@dataclass(frozen=True)
class _NeighbourDiffs:
    """The model at sampled horizontal neighbour pairs (1: left, 2: right) and their residual differences."""

    x1: np.ndarray  # pre-gamma model values
    x2: np.ndarray
    m1: np.ndarray  # post-gamma model values (the noiseless prediction of dark)
    m2: np.ndarray
    d1: np.ndarray  # dark values at the left pixels
    resid_diff: np.ndarray  # (d1 - d2) - (m1 - m2)
    level: np.ndarray  # predicted intensity of each pair, 0.5 (m1 + m2)


def _neighbour_diffs(dark: np.ndarray, bright: np.ndarray, p: DegradationParams, rng: np.random.Generator,
                     n_pairs: int) -> _NeighbourDiffs:
    """Sample n_pairs horizontal neighbour pairs of valid pixels and evaluate the noiseless model there."""
    mask = valid_mask(dark, bright)
    left = mask[:, :-1] & mask[:, 1:]
    rows, cols = sample_pixels(left, n_pairs, rng)
    b1 = bright[rows, cols].astype(np.float64)
    b2 = bright[rows, cols + 1].astype(np.float64)
    d1 = dark[rows, cols].astype(np.float64).ravel()
    d2 = dark[rows, cols + 1].astype(np.float64).ravel()
    theta = _params_to_theta(p)
    x1, m1 = (a.ravel() for a in _mean_model(theta, b1))
    x2, m2 = (a.ravel() for a in _mean_model(theta, b2))
    return _NeighbourDiffs(x1=x1, x2=x2, m1=m1, m2=m2, d1=d1, resid_diff=(d1 - d2) - (m1 - m2),
                           level=0.5 * (m1 + m2))


def _level_bins(level: np.ndarray, n_bins: int) -> list[np.ndarray]:
    """Indices per quantile bin of predicted intensity, keeping bins of at least 50 pairs (at least 2 bins)."""
    edges = np.unique(np.quantile(level, np.linspace(0.0, 1.0, n_bins + 1)))
    which = np.clip(np.searchsorted(edges, level, side="right") - 1, 0, len(edges) - 2)
    bins = [np.flatnonzero(which == k) for k in range(len(edges) - 1)]
    bins = [k for k in bins if k.size >= 50]
    if len(bins) < 2:
        raise LowsimError("too few pixels to fit the noise")
    return bins


def _simulated_diff_var(nd: _NeighbourDiffs, z1: np.ndarray, z2: np.ndarray, inv_gamma: float,
                        bins: list[np.ndarray], log_scale: float, log_sigma: float) -> np.ndarray:
    """Robust variance per bin of the residual differences simulated through the model with noise z1, z2.

    Gaussian approximation of the Poisson-Gaussian noise before the gamma, clip to [0, 1], gamma, 8-bit rounding.
    """
    var_pre1 = nd.x1 * math.exp(-log_scale) + math.exp(2 * log_sigma)
    var_pre2 = nd.x2 * math.exp(-log_scale) + math.exp(2 * log_sigma)
    s1 = np.rint(np.power(np.clip(nd.x1 + np.sqrt(var_pre1) * z1, 0.0, 1.0), inv_gamma) * 255.0)
    s2 = np.rint(np.power(np.clip(nd.x2 + np.sqrt(var_pre2) * z2, 0.0, 1.0), inv_gamma) * 255.0)
    sim = (s1 - s2) * LSB - (nd.m1 - nd.m2)
    return np.array([_robust_var(sim[k]) for k in bins])


def _noise_log_bounds() -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of (log photon_scale, log read_sigma)."""
    lo = np.log([BOUNDS["photon_scale"][0], BOUNDS["read_sigma"][0]])
    hi = np.log([BOUNDS["photon_scale"][1], BOUNDS["read_sigma"][1]])
    return lo, hi


def _best_noise_fit(residuals: Callable[[np.ndarray], np.ndarray],
                    delta_start: tuple[float, float]) -> optimize.OptimizeResult:
    """Refine two starts of (log photon_scale, log read_sigma) by least squares and keep the better.

    The starts are the delta-method estimate (close unless the gamma/clip/rounding matter) and the best point
    of a coarse grid (the objective is a narrow valley).
    """
    lo, hi = _noise_log_bounds()
    grid = [(math.log(s), math.log(r)) for s in np.logspace(0.5, 5.5, 6) for r in np.logspace(-3.5, -1.5, 3)]
    starts = [delta_start, min(grid, key=lambda t: float(np.sum(residuals(np.array(t)) ** 2)))]
    return min((optimize.least_squares(residuals, np.clip(np.array(t), lo + 1e-6, hi - 1e-6),
                                       bounds=(lo, hi), diff_step=5e-2, x_scale=1.0, max_nfev=100)
                for t in starts), key=lambda r: r.cost)


def _noise_bound_notes(log_noise: np.ndarray) -> list[str]:
    """Notes for a fitted (log photon_scale, log read_sigma) at its bounds."""
    lo, hi = _noise_log_bounds()
    notes = []
    if log_noise[0] - lo[0] < 1e-3 or hi[0] - log_noise[0] < 1e-3:
        notes.append("photon_scale at its bound")
    if log_noise[1] - lo[1] < 1e-3:
        notes.append("read_sigma at its lower bound (no read noise detectable)")
    return notes


# Keeps log() finite for an exactly noiseless bin.
_NOISE_VAR_FLOOR = (0.05 * LSB) ** 2


def fit_noise(dark: np.ndarray, bright: np.ndarray, p: DegradationParams, rng: np.random.Generator,
              n_pairs: int = NOISE_PIXEL_PAIRS, n_bins: int = NOISE_BINS) -> NoiseFit:
    """Fit photon_scale and read_sigma to the residual spread of horizontal neighbour differences.

    Differences of horizontal neighbours cancel the spatially smooth model misfit; their spread per bin
    of predicted intensity is matched by simulating the same statistic through the model (Gaussian
    approximation of Poisson-Gaussian noise before the gamma, clip to [0, 1], gamma, 8-bit rounding),
    with common random numbers so the objective changes continuously with the two parameters.
    """
    nd = _neighbour_diffs(dark, bright, p, rng, n_pairs)
    bins = _level_bins(nd.level, n_bins)
    data_var = np.array([_robust_var(nd.resid_diff[k]) for k in bins])
    counts = np.array([k.size for k in bins], dtype=np.float64)
    z1, z2 = rng.standard_normal(nd.x1.size), rng.standard_normal(nd.x2.size)  # the common random numbers
    inv_gamma = 1.0 / p.gamma

    def simulated_var(log_scale: float, log_sigma: float) -> np.ndarray:
        return _simulated_diff_var(nd, z1, z2, inv_gamma, bins, log_scale, log_sigma)

    def residuals(theta_noise: np.ndarray) -> np.ndarray:
        sim = simulated_var(*theta_noise)
        return np.sqrt(counts) * (np.log(sim + _NOISE_VAR_FLOOR) - np.log(data_var + _NOISE_VAR_FLOOR))

    pre_level = np.array([float(np.median(0.5 * (nd.x1 + nd.x2)[k])) for k in bins])
    res = _best_noise_fit(residuals, _delta_method_start(pre_level, data_var, counts, p.gamma))
    photon_scale, read_sigma = (float(math.exp(v)) for v in res.x)
    # Spatial correlation check: single residuals (no differencing) vs neighbour differences / 2.
    single = nd.d1 - nd.m1
    ratio = _robust_var(single) / max(_robust_var(nd.resid_diff) / 2.0, 1e-20)
    return NoiseFit(photon_scale=photon_scale, read_sigma=read_sigma,
                    bin_intensity=np.array([float(np.median(nd.level[k])) for k in bins]),
                    bin_spread=np.sqrt(data_var), model_spread=np.sqrt(simulated_var(*res.x)),
                    correlated_ratio=float(ratio), notes=_noise_bound_notes(res.x))


def _delta_method_start(pre_level: np.ndarray, diff_var: np.ndarray, counts: np.ndarray,
                        gamma: float) -> tuple[float, float]:
    """(log photon_scale, log read_sigma) from var(d1 - d2) ~ 2 GC'(x)^2 (x/scale + sigma^2) + 2/12 LSB^2.

    Weighted non-negative least squares per bin; ignores the clip at 0 and the rounding's non-linearity,
    so it is only a starting point.
    """
    x = np.maximum(pre_level, 1e-6)
    slope2 = ((1.0 / gamma) * np.power(x, 1.0 / gamma - 1.0)) ** 2
    target = diff_var / 2.0 - LSB**2 / 12.0
    weight = np.sqrt(counts) / np.maximum(diff_var / 2.0, 1e-12)
    design = np.column_stack([slope2 * x, slope2]) * weight[:, None]
    (inv_scale, sigma2), _ = optimize.nnls(design, target * weight)
    lo_s, hi_s = BOUNDS["photon_scale"]
    lo_r, hi_r = BOUNDS["read_sigma"]
    scale = min(max(1.0 / inv_scale, lo_s), hi_s) if inv_scale > 0 else hi_s
    sigma = min(max(math.sqrt(sigma2), lo_r), hi_r)
    return math.log(scale), math.log(sigma)


def _params_to_theta(p: DegradationParams) -> np.ndarray:
    return np.array([p.illum_alpha, math.log(p.illum_gamma), p.black_level, math.log(p.gain_r),
                     math.log(p.gain_g), math.log(p.gain_b), math.log(p.gamma)])


# ============================================================================================ per pair

def pair_seed(seed: int, name: str) -> np.random.SeedSequence:
    """A pair's own seed, from the run seed and a stable hash of its name (not its position or worker)."""
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
    return np.random.SeedSequence(entropy=seed, spawn_key=(key,))


QUALITY_PIXELS = 4_000_000


def quality_view(img: np.ndarray, max_pixels: int = QUALITY_PIXELS) -> np.ndarray:
    """The image itself, or a strided view of it with at most about max_pixels pixels."""
    step = math.ceil(math.sqrt(img.shape[0] * img.shape[1] / max_pixels))
    return img if step <= 1 else img[::step, ::step]


def _check_pair_arrays(name: str, dark: np.ndarray, bright: np.ndarray, method: str) -> None:
    """Refuse an unknown method or images that are not (H, W, 3) of the same shape."""
    if method not in METHODS:
        raise LowsimError(f"unknown calibration method {method!r}, expected one of {', '.join(METHODS)}")
    if dark.shape != bright.shape or dark.ndim != 3 or dark.shape[2] != 3:
        raise LowsimError(f"pair {name!r}: images must be (H, W, 3) of the same shape, got "
                          f"{dark.shape} and {bright.shape}")


def _record_paper_fit(row: dict[str, Any], notes: list[str], dark_view: np.ndarray, bright_view: np.ndarray,
                      method: str) -> tuple[DegradationParams | None, str]:
    """Add the paper estimators' columns to row; (params, failure) for method paper, (None, "") otherwise."""
    try:
        est = paper_estimate(dark_view, bright_view)
        paper, paper_notes = paper_params(est)
        row.update({f"paper_raw_{k}": v for k, v in est.__dict__.items()})
        row.update({f"paper_{k}": v for k, v in fit_quality(dark_view, bright_view, paper).items()})
        # The same estimates read as a gamma on the [0, 1] scale (an alternative reading of the paper,
        # not what its 0-255 formulas say); recorded to show the comparison does not hinge on it.
        naive = DegradationParams(**{**paper.to_dict(), "photon_scale": 1.0, "gain_r": est.w_r,
                                     "gain_g": est.w_g, "gain_b": est.w_b})
        row.update({f"paper01_{k}": v for k, v in fit_quality(dark_view, bright_view, naive).items()})
    except LowsimError as err:
        notes.append(f"paper estimators failed: {err}")
        return None, (f"paper estimators failed: {err}" if method == "paper" else "")
    if method != "paper":
        return None, ""
    notes.extend(paper_notes)
    return paper, ""


def _record_noise_fit(row: dict[str, Any], notes: list[str], dark: np.ndarray, bright: np.ndarray,
                      dark_view: np.ndarray, bright_view: np.ndarray, mean: MeanFit,
                      provisional: DegradationParams, rng: np.random.Generator) -> tuple[MeanFit, DegradationParams]:
    """Fit the noise, refit the mean under it and add their columns to row; (refitted mean, joint params)."""
    noise = fit_noise(dark, bright, provisional, rng)
    mean = refit_mean_with_noise(dark, bright, mean, noise.photon_scale, noise.read_sigma, rng)
    notes.extend(mean.notes + noise.notes)
    chosen = DegradationParams(**mean.values, photon_scale=noise.photon_scale, read_sigma=noise.read_sigma)
    row.update({"noise_correlated_ratio": noise.correlated_ratio,
                "noise_bin_intensity": noise.bin_intensity.tolist(),
                "noise_bin_spread": noise.bin_spread.tolist(),
                "noise_model_spread": noise.model_spread.tolist()})
    noisy = fit_quality(dark_view, bright_view, chosen, noisy=True)
    row.update({f"joint_noisy_{k}": v for k, v in noisy.items()})
    return mean, chosen


def _record_joint_fit(row: dict[str, Any], notes: list[str], dark: np.ndarray, bright: np.ndarray,
                      dark_view: np.ndarray, bright_view: np.ndarray, method: str,
                      rng: np.random.Generator) -> tuple[np.ndarray | None, DegradationParams | None, str]:
    """Add the joint fit's columns to row; (the noiseless fit's predicted dark view, params, failure).

    The params and failure are those of method joint (None, "" for the others). Columns and notes recorded
    before a failure stay in row and notes.
    """
    predicted, chosen, failure = None, None, ""
    if int(valid_mask(dark, bright).sum()) < MIN_VALID_PIXELS:
        return predicted, chosen, failure
    try:
        mean = fit_mean(dark, bright, rng)
        provisional = DegradationParams(**mean.values, photon_scale=1e3, read_sigma=0.0)
        predicted = expected_dark(bright_view.astype(np.float32), provisional)
        if method == "joint":
            mean, chosen = _record_noise_fit(row, notes, dark, bright, dark_view, bright_view, mean, provisional,
                                             rng)
            if not mean.success:
                failure = "joint fit did not converge"
        row.update({f"stderr_{k}": v for k, v in mean.stderr.items()})
        row.update({"max_param_correlation": mean.max_correlation,
                    "most_correlated": mean.most_correlated, "fit_success": mean.success})
        joint = chosen if method == "joint" and chosen is not None else provisional
        row.update({f"joint_{k}": v for k, v in fit_quality(dark_view, bright_view, joint).items()})
    except LowsimError as err:
        if method == "joint":
            return predicted, None, f"joint fit failed: {err}"
    return predicted, chosen, failure


def _record_outcome(row: dict[str, Any], notes: list[str], checks: PairChecks, chosen: DegradationParams | None,
                    failure: str) -> None:
    """Add the pair checks, the chosen params (NaN when none), whether and why the pair is excluded, and the notes."""
    row.update({f"check_{k}": v for k, v in checks.__dict__.items()})
    reason = exclusion_reason(checks) or failure or ("" if chosen is not None else "no fit possible")
    row.update(chosen.to_dict() if chosen is not None else {n: math.nan for n in PARAM_NAMES})
    row["excluded"] = bool(reason)
    row["reason"] = reason
    row["notes"] = "; ".join(notes)


def calibrate_arrays(name: str, dark: np.ndarray, bright: np.ndarray, method: str,
                     seed: int, downscale: float = 1.0, fit_jpeg: bool = False) -> dict[str, Any]:
    """Everything calibration records about one pair (a flat row of the per-pair table).

    Both methods' fit quality is always measured (so they can be compared), and the joint noiseless fit
    always runs because the mismatch check compares the dark image with its prediction. The noise fit
    runs for the joint method only (the paper's noise is fixed). `fit_jpeg` (isp only): choose a JPEG quality.
    """
    _check_pair_arrays(name, dark, bright, method)
    if method == "isp":
        return _calibrate_arrays_isp(name, dark, bright, seed, downscale, fit_jpeg)
    rng = np.random.default_rng(pair_seed(seed, name))
    # Whole-image measurements (estimators, quality, checks) on a strided view of very large images
    # (camera raw: 12+ Mpx) to bound memory; the fits sample pixels from the full images.
    dark_view, bright_view = quality_view(dark), quality_view(bright)
    row: dict[str, Any] = {"name": name, "method": method, "height": dark.shape[0], "width": dark.shape[1]}
    notes: list[str] = []
    paper, paper_failure = _record_paper_fit(row, notes, dark_view, bright_view, method)
    predicted, joint, joint_failure = _record_joint_fit(row, notes, dark, bright, dark_view, bright_view, method,
                                                        rng)
    chosen = paper if method == "paper" else joint
    _record_outcome(row, notes, pair_checks(dark_view, bright_view, predicted), chosen,
                    paper_failure or joint_failure)
    return row


def _calibrate_arrays_isp(name: str, dark: np.ndarray, bright: np.ndarray, seed: int,
                          downscale: float, fit_jpeg: bool = False) -> dict[str, Any]:
    """Method isp (model v2): the shared pair checks, then lowsim.calibrate_v2's fits."""
    checks = pair_checks(quality_view(dark), quality_view(bright))
    row = calibrate_arrays_v2(name, dark, bright, pair_seed(seed, name), exclusion_reason(checks), downscale,
                              fit_jpeg)
    row.update({f"check_{k}": v for k, v in checks.__dict__.items()}, height=dark.shape[0], width=dark.shape[1])
    # what an exposure meter reads in each: how far the dark's brightness follows its scene's (ExposureAnchor)
    row.update(scene_light=metered_light(bright), dark_light=metered_light(dark))
    return row


def calibrate_pair(pair: Pair, method: str, seed: int, downscale: float = 1.0,
                   fit_jpeg: bool = False) -> dict[str, Any]:
    """Read one pair and calibrate it (the unit of work of the process pool)."""
    started = time.perf_counter()
    dark, bright = read_pair(pair)
    row = calibrate_arrays(pair.name, dark, bright, method, seed, downscale, fit_jpeg)
    row["dark_path"], row["bright_path"] = printable(pair.dark), printable(pair.bright)
    row["seconds"] = time.perf_counter() - started
    return row


def _calibrate_pair_star(args: tuple[Pair, str, int, float, bool]) -> dict[str, Any]:
    return calibrate_pair(*args)


# Worker processes run single-threaded BLAS: the fits do many small SVDs (30k x 7), where OpenBLAS
# threads only spin (measured: ~10x the CPU time for the same wall time on 2 cores), and a fixed thread
# count keeps the floating-point results identical whatever the number of workers.
_SINGLE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@contextmanager
def _single_threaded_children() -> Iterator[None]:
    """Set the BLAS thread variables while worker processes are spawned (they read them at start)."""
    saved = {k: os.environ.get(k) for k in _SINGLE_THREAD_ENV}
    os.environ.update(_SINGLE_THREAD_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def calibrate_pairs(pairs: Sequence[Pair], method: str = "joint", seed: int = 0, workers: int = 1,
                    on_done: Callable[[dict[str, Any]], None] | None = None,
                    downscale: float = 1.0, fit_jpeg: bool = False) -> list[dict[str, Any]]:
    """Calibrate every pair in `workers` fresh processes; rows in the order of `pairs`.

    Always in spawned processes (even one) so every pair runs under the same single-threaded BLAS;
    each pair's random draws come from its own name-derived seed, so neither the worker count nor the
    order of completion changes any result.
    """
    jobs = [(p, method, seed, downscale, fit_jpeg) for p in pairs]
    rows: list[dict[str, Any]] = []
    if not jobs:
        return rows
    context = multiprocessing.get_context("spawn")
    with _single_threaded_children(), \
            ProcessPoolExecutor(max_workers=max(1, min(workers, len(jobs))), mp_context=context) as pool:
        for row in pool.map(_calibrate_pair_star, jobs, chunksize=1):
            rows.append(row)
            if on_done:
                on_done(row)
    return rows


def fitted_names(method: str) -> tuple[list[str], dict[str, float]]:
    """(sampled parameter names, fixed values) of the distribution a method produces."""
    if method == "isp":  # downscale and the JPEG quality: one value for a run (fit_distribution)
        return [n for n in V2_PARAM_NAMES if n not in FIXED_V2 and n not in ("downscale", "jpeg_quality")], \
            dict(FIXED_V2)
    fixed = dict(PAPER_FIXED) if method == "paper" else {}
    return [n for n in PARAM_NAMES if n not in fixed], fixed


def model_of(method: str) -> str:
    """The degradation model a calibration method fits."""
    return V2_MODEL if method == "isp" else V1_MODEL


def fit_distribution(rows: Iterable[dict[str, Any]], method: str, source: str) -> ParamDistribution:
    """ParamDistribution over the included pairs; the excluded ones are listed with their reasons."""
    rows = list(rows)
    names, fixed = fitted_names(method)
    used = [r for r in rows if not r["excluded"]]
    excluded = [{"name": r["name"], "reason": r["reason"]} for r in rows if r["excluded"]]
    examples = "; ".join(e["name"] + ": " + e["reason"] for e in excluded[:3])
    if len(used) < len(rows) / 2:
        raise LowsimError(f"most pairs cannot be used ({len(excluded)} of {len(rows)} excluded, e.g. "
                          f"{examples}); no distribution written")
    if len(used) < 2:
        raise LowsimError(f"only {len(used)} usable pairs after excluding {len(excluded)} "
                          f"({examples}); need at least 2 to fit a distribution")
    samples = {n: [r[n] for r in used] for n in names}
    extra: dict[str, Any] = {}
    if method == "isp":
        fixed["downscale"] = float(used[0]["downscale"])  # one value for the whole calibration run
        # a camera has one JPEG setting (and a whole number cannot live in the normal): the pairs' median
        fixed["jpeg_quality"] = run_jpeg_quality([float(r.get("jpeg_quality", 0.0)) for r in used])
        # The empirical sampler is v2's default: on lol-dev it matched the real darks' spread better and
        # its pretrained U-Net scored 1.0 dB higher zero-shot than the normal's (docs/realism.md).
        extra["sampler"] = "empirical"
        extra["exposure_anchor"] = exposure_anchor(used)
    return ParamDistribution.fit(samples, fixed=fixed, method=method, source=source, excluded=excluded,
                                 model=model_of(method), **extra)


def exposure_anchor(used: Sequence[dict[str, Any]]) -> ExposureAnchor | None:
    """The pairs' auto-exposure: the slope of log dark light on log scene light, and each pair's scene light.

    None when a row lacks the meter readings (a table written before them) or the scenes do not vary.
    """
    keys = np.array([r.get("scene_light", math.nan) for r in used], dtype=np.float64)
    darks = np.array([r.get("dark_light", math.nan) for r in used], dtype=np.float64)
    if not (np.all(np.isfinite(keys)) and np.all(keys > 0) and np.all(np.isfinite(darks)) and np.all(darks > 0)):
        return None
    if len(used) < 3 or np.ptp(np.log(keys)) == 0.0:
        return None
    return ExposureAnchor.of(float(np.polyfit(np.log(keys), np.log(darks), 1)[0]), keys)


# Within this distance of a bound in unconstrained units (2 % for a log-transformed value), a per-pair
# value counts as "at the bound" (optimizers stop just inside their bounds).
AT_BOUND = 0.02


def clip_bounds(method: str) -> dict[str, tuple[float, float]]:
    """The bounds each method clips its per-pair values to (a value there means "this far or beyond")."""
    if method == "paper":
        return {"black_level": BOUNDS["black_level"]}
    if method == "isp":
        return {n: RANGES_V2[n] for n in fitted_names("isp")[0]}
    bounds = {n: BOUNDS[n] for n in ("illum_alpha", "illum_gamma", "black_level", "gamma", "photon_scale",
                                     "read_sigma")}
    bounds.update({g: BOUNDS["gain"] for g in ("gain_r", "gain_g", "gain_b")})
    return bounds


def count_at_bounds(rows: Sequence[dict[str, Any]], method: str) -> dict[str, list[int]]:
    """Per parameter, how many included pairs sit at its (low, high) bound."""
    from lowsim.params import to_unconstrained

    used = [r for r in rows if not r["excluded"]]
    out = {}
    for name, (low, high) in clip_bounds(method).items():
        z = to_unconstrained(name, np.array([r[name] for r in used], dtype=np.float64))
        z_low, z_high = to_unconstrained(name, low), to_unconstrained(name, high)
        out[name] = [int(np.sum(z <= z_low + AT_BOUND)), int(np.sum(z >= z_high - AT_BOUND))]
    return out


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Mean and median fit quality of both methods (and the paper's [0, 1] reading) over included pairs."""
    used = [r for r in rows if not r["excluded"]]
    out: dict[str, float] = {"n_pairs": float(len(rows)), "n_used": float(len(used))}
    for prefix in ("paper", "paper01", "joint", "joint_noisy", "isp"):
        for metric in ("rmse_dn", "r2", "r2_blocks"):
            vals = [r.get(f"{prefix}_{metric}", math.nan) for r in used]
            vals = [v for v in vals if v is not None and math.isfinite(v)]
            if vals:
                out[f"{prefix}_{metric}_mean"] = float(np.mean(vals))
                out[f"{prefix}_{metric}_median"] = float(np.median(vals))
    return out


def jpeg_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What --fit-jpeg chose over the included pairs: how many chose each quality, the median cost change."""
    used = [r for r in rows if not r["excluded"] and "jpeg_cost" in r]
    chosen = [int(r["jpeg_quality"]) for r in used]
    changes = [r["jpeg_cost_change"] for r in used if math.isfinite(r["jpeg_cost_change"])]
    return {"pairs_per_quality": {str(q): chosen.count(q) for q in sorted(set(chosen))},
            "median_cost_change": float(np.median(changes)) if changes else math.nan,
            "run_quality": run_jpeg_quality([float(q) for q in chosen])}


# ============================================================================================ whole run

DOWNSCALE_PAIRS = 6  # pairs that choose_downscale fits at each candidate

SPLITS = ("all", "pool")


def select_split(pairs: Sequence[Pair], split: str) -> list[Pair]:
    """All pairs, or only those `assign_split(name, REAL_PAIR_FRACTIONS)` puts in the pool split."""
    from lowsim.splits import REAL_PAIR_FRACTIONS, assign_split

    if split not in SPLITS:
        raise LowsimError(f"unknown split {split!r}, expected one of {', '.join(SPLITS)}")
    if split == "all":
        return list(pairs)
    return [p for p in pairs if assign_split(p.name, REAL_PAIR_FRACTIONS) == split]


def table_path_for(params_path: str | Path) -> Path:
    """The per-pair table beside a params file: same stem, `.pairs.parquet`."""
    params_path = Path(params_path)
    return params_path.with_name(params_path.stem + ".pairs.parquet")


def write_table(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write the per-pair table as Parquet, atomically."""
    import io

    import pandas as pd

    from lowsim.safe_io import atomic_write_bytes

    frame = pd.DataFrame(list(rows))
    first = ["name", "excluded", "reason", *ALL_PARAM_NAMES]
    frame = frame[[c for c in first if c in frame] + [c for c in frame if c not in first]]
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def identifiability(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Median Gauss–Newton standard error per fitted quantity over the included pairs."""
    used = [r for r in rows if not r["excluded"]]
    keys = sorted({k for r in used for k in r if k.startswith("stderr_")})
    out = {}
    for key in keys:
        vals = [r.get(key) for r in used if r.get(key) is not None]
        out[key.removeprefix("stderr_")] = float(np.median(vals)) if vals else math.nan
    return out


def _json_safe(value: Any) -> Any:
    """NaN/inf to None (JSON has no NaN), recursively."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class CalibrationResult:
    """What a calibration run produced and where it wrote it."""

    distribution: ParamDistribution
    rows: list[dict[str, Any]]
    summary: dict[str, float]
    params_path: Path
    table_path: Path
    report_path: Path | None
    n_found: int
    seconds: float


def run_calibration(pairs_root: str | Path, out: str | Path, *, layout: str = "auto",
                    method: str = "isp", report: str | Path | None = None, split: str = "all",
                    seed: int = 0, workers: int = 1, source: str = "",
                    on_start: Callable[[int], None] | None = None,
                    on_done: Callable[[dict[str, Any]], None] | None = None,
                    downscale: float | None = None, fit_jpeg: bool = False) -> CalibrationResult:
    """Find pairs, calibrate each, fit the distribution, write params JSON, per-pair Parquet and report.

    `downscale` (isp only): how much the camera's images were resized; None chooses it from the pairs.
    `fit_jpeg` (isp only): also choose each pair's JPEG quality (lowsim.calibrate_v2.fit_jpeg_v2).
    """
    from lowsim.pairs import find_pairs
    from lowsim.project import pairs_dir_entry

    started = time.perf_counter()
    out = Path(out)
    if method not in METHODS:
        raise LowsimError(f"unknown calibration method {method!r}, expected one of {', '.join(METHODS)}")
    if fit_jpeg and method != "isp":
        raise LowsimError(f"fitting a JPEG quality goes with method isp (model v2), not {method}")
    found = find_pairs(pairs_root, layout=layout)
    pairs = select_split(found, split)
    if not pairs:
        raise LowsimError(f"none of the {len(found)} pairs falls in the {split!r} split", pairs_root)
    if method == "isp" and downscale is None:
        downscale = choose_downscale([read_pair(p) for p in pairs[:DOWNSCALE_PAIRS]], seed)
    if on_start:
        on_start(len(pairs))
    rows = calibrate_pairs(pairs, method=method, seed=seed, workers=workers, on_done=on_done,
                           downscale=downscale or 1.0, fit_jpeg=fit_jpeg)
    summary = summarize(rows)
    dist = fit_distribution(rows, method, source or f"lowsim calibrate --pairs {pairs_root}")
    table = table_path_for(out)
    dist.info = _json_safe({
        "pairs_found": len(found), "split": split, "pairs_in_split": len(pairs), "seed": seed,
        "layout": layout, "pairs_dir": pairs_dir_entry(Path(pairs_root), out), "pairs_table": table.name,
        "fit_quality": summary,
        "median_stderr": identifiability(rows),
        "pairs_at_bounds_low_high": count_at_bounds(rows, method),
        **({"downscale": downscale} if method == "isp" else {}),
        **({"fit_jpeg": jpeg_summary(rows)} if fit_jpeg else {}),
        "checks": {"min_block_spearman": MIN_BLOCK_SPEARMAN, "max_saturated_fraction": MAX_SATURATED_FRACTION,
                   "min_dark_p99": MIN_DARK_P99, "min_valid_pixels": MIN_VALID_PIXELS},
    })
    write_table(rows, table)
    dist.save(out)
    report_path = None
    if report is not None:
        from lowsim.report import write_report

        report_path = write_report(report, rows, dist)
    return CalibrationResult(distribution=dist, rows=rows, summary=summary, params_path=out,
                             table_path=table, report_path=report_path, n_found=len(found),
                             seconds=time.perf_counter() - started)


# `lowsim.calibrate(...)` calls lowsim.api.calibrate (this module is the package attribute of that name)
from lowsim.api import callable_module  # noqa: E402

callable_module(__name__)
