"""Model v1: the founding paper's sRGB degradation chain, built from `lowsim.degradation.stages`.

    dark = Q( GC( PN( CD( BL( ILLUM(clean) ) ) ) ) )

ILLUM  seed 002 §3.1: I' = L·I with L = α·I^g + 1 − α, clipped at 0 (light sources stay bright).
BL     seed 001 §3.1.1: max(B − bl, 0).
CD     seed 001 §3.1.2: per-channel gains [w_r, w_g, w_b].
PN     seed 001 §3.1.3, generalised: Poisson(x·scale)/scale shot noise plus Gaussian read noise.
       The paper's poisson(B/255)·255 is photon_scale = 1, read_sigma = 0.
GC     seed 001 §3.1.4: x^(1/γ), after clipping to [0, 1].
Q      rounding to the output bit depth.

Images are float arrays in [0, 1], shape (H, W, 3), in the sRGB encoding the sources come in (as the
paper did). Every random draw comes from the `numpy.random.Generator` passed in.

Two samplers realise the same model (`degrade_to_codes` picks one; the manifest records which):

- ``REFERENCE_SAMPLER``: the steps above literally, in float32, with numpy's Poisson and normal samplers,
  then `quantize`. Any input (8/16-bit, float), any output depth.
- ``TABLE_SAMPLER`` (8-bit source, 8-bit output): an 8-bit source has at most 3×256 distinct pre-noise
  values (one per channel and level), so everything before the noise is a lookup table, and the 8-bit
  output code of a pixel has an exact discrete distribution given its (channel, level): shot noise
  Poisson(λ), plus Gaussian read noise, then clip, gamma and rounding, is

      P(code <= j) = P(K/s + σZ < T_j+1),   T_j = ((j − ½)/255)^γ   (the rounding thresholds pulled back
                   = Σ_k Poisson(k; λ) Φ((T_j+1 − k/s)/σ)            through the gamma curve)

  (σ = 0: a Poisson CDF). `code_cdf` computes it per distinct λ and `lowsim.sampling` draws each pixel's
  code from it with one 32-bit uniform (inverse CDF, exact to 2^-32). The sums are exact (truncated where
  less than 1e-12 of the Poisson mass is left), except where read noise is wide enough to smooth the
  Poisson lattice away (σ·s >= 3 photons, e.g. the LOL calibration's ~1e5 photons with σ ≈ 1.5 levels):
  there the sum over up to ~10^5 photon counts is replaced by the third-order Edgeworth expansion of
  K/s + σZ, whose error is below ~5e-10 per CDF value (see `edgeworth_rows`; tested against the sums
  and against the reference sampler). It falls back to the reference when the exact sums would
  cost more than the reference itself (many photons with little read noise).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
from scipy import special

from lowsim.degradation.stages import (add_read_noise, add_shot_noise, apply_channel_gains, apply_gamma,
                                      apply_illumination, quantize, subtract_black_level, to_float)
from lowsim.params import V1_MODEL, DegradationParams
from lowsim.sampling import (
    InverseCdfTable,
    build_inverse_cdf_table,
    poisson_log_pmf,
    poisson_window,
    sample_inverse_cdf,
    uniform_u32,
)

MODEL_NAME = V1_MODEL
REFERENCE_SAMPLER = "numpy-reference/v1"
TABLE_SAMPLER = "exact-table/v1"
SAMPLERS = (REFERENCE_SAMPLER, TABLE_SAMPLER)
# The reference sampler degrades images in bands of this many rows (bounded memory for huge sources).
# Part of its random stream's definition: changing it changes every sample, so it is a constant.
TILE_ROWS = 256
# The table sampler's bands (memory only: its result does not depend on them, see table_band_rows).
TABLE_BAND_PIXELS = 1 << 21
READ_NOISE_SDS = 7.5  # Φ is 0 or 1 to within 3e-14 beyond this many read-noise sds
# Table work limits (pmf entries; multiply-adds of the Poisson ⊗ Gaussian sum): beyond them the
# reference sampler is cheaper. Measured single-threaded: 2e8 multiply-adds take ~8 ms.
MAX_TABLE_PMF = 4e6
MAX_TABLE_MACS = 2e8
# Where read noise smooths the shot noise's lattice away, the code CDF comes from an Edgeworth expansion
# (see edgeworth_rows). These bound its error: lattice terms exp(−2π²·9) ≈ 1e-77; the CDF error measured
# against the exact sums over s·σ from 10 to 100 photons stays below 0.005 x the neglected terms' sum,
# so below 5e-10 here, about the 2^-32 resolution of the uniforms (tests/test_degrade.py checks 1e-9).
EDGEWORTH_MIN_SMOOTHING = 3.0
EDGEWORTH_TOLERANCE = 1e-7
















def expected_dark(clean: np.ndarray, p: DegradationParams) -> np.ndarray:
    """The noiseless forward model (what the calibrator fits): GC(CD(BL(ILLUM(B))))."""
    x = apply_illumination(clean, p.illum_alpha, p.illum_gamma)
    x = apply_channel_gains(subtract_black_level(x, p.black_level), p.gains)
    return apply_gamma(x, p.gamma)


def degrade(clean: np.ndarray, p: DegradationParams, rng: np.random.Generator) -> np.ndarray:
    """The whole pipeline on a float image in [0, 1]; returns float32 in [0, 1] (not yet quantized)."""
    x = apply_illumination(to_float(clean), p.illum_alpha, p.illum_gamma)
    x = subtract_black_level(x, p.black_level)
    x = apply_channel_gains(x, p.gains)
    x = add_shot_noise(x, p.photon_scale, rng)
    x = add_read_noise(x, p.read_sigma, rng)
    return apply_gamma(x, p.gamma)


def degrade_stages(clean: np.ndarray, p: DegradationParams, rng: np.random.Generator,
                   illumination: bool = False) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (label, image) after each step of the paper's Figure 3 (for `lowsim preview`).

    With `illumination`, seed 002's illumination map is applied (and shown) first, as `degrade` does.
    """
    x = to_float(clean)
    yield "original", x
    if illumination:
        x = apply_illumination(x, p.illum_alpha, p.illum_gamma)
        yield "+ illumination", x
    x = subtract_black_level(x, p.black_level)
    yield "+ black level", x
    x = apply_channel_gains(x, p.gains)
    yield "+ colour", np.clip(x, 0, 1)
    x = add_read_noise(add_shot_noise(x, p.photon_scale, rng), p.read_sigma, rng)
    yield "+ noise", np.clip(x, 0, 1)
    yield "+ gamma", apply_gamma(x, p.gamma)




# ------------------------------------------------------------------------------------------------
# Quantized output: the samplers


def level_intensities(p: DegradationParams, bit_depth: int = 8) -> np.ndarray:
    """Pre-noise values CD(BL(ILLUM(v))) for every source level v and channel, shape (levels, 3), float64."""
    levels = np.arange(1 << bit_depth, dtype=np.float64) / ((1 << bit_depth) - 1)
    x = np.repeat(levels[:, None], 3, axis=1)
    x = apply_illumination(x, p.illum_alpha, p.illum_gamma)
    return apply_channel_gains(subtract_black_level(x, p.black_level), p.gains)


def rounding_thresholds(gamma: float, bit_depth: int = 8) -> np.ndarray:
    """T_j = ((j − ½)/top)^γ for j = 1..top: code <= j−1 exactly when the pre-gamma value is < T_j."""
    top = (1 << bit_depth) - 1
    return np.power((np.arange(1, top + 1, dtype=np.float64) - 0.5) / top, gamma)


def noiseless_code(k: np.ndarray, p: DegradationParams) -> np.ndarray:
    """The 8-bit code of k photons without read noise, computed exactly as the reference does (float32)."""
    shot = (np.asarray(k, dtype=np.float32) / p.photon_scale).astype(np.float32, copy=False)
    return quantize(apply_gamma(shot, p.gamma), 8)


def photon_cut(p: DegradationParams) -> np.ndarray:
    """cut[c] = max{k : noiseless_code(k) <= c} for c = 0..254 (−1 when none): the σ = 0 code CDF steps.

    Starts from the exact-arithmetic answer ceil(s·T_{c+1}) − 1 and corrects it against the reference's
    float32 rounding, so that ties (k/s landing exactly on a rounding threshold) break the same way.
    """
    cut = np.ceil(p.photon_scale * rounding_thresholds(p.gamma)) - 1.0
    codes = np.arange(255)
    for _ in range(8):  # float32 error moves a cut by at most a step or two
        up = noiseless_code(cut + 1, p) <= codes
        down = (cut >= 0) & (noiseless_code(np.maximum(cut, 0), p) > codes)
        if not (up.any() or down.any()):
            break
        cut = cut + up - down
    return cut


def _code_windows(lam: np.ndarray, p: DegradationParams) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per λ: the Poisson window [k_lo, k_hi] and the code window [c_lo, c_hi] outside which P is 0 or 1."""
    k_lo, k_hi = poisson_window(lam)
    reach = READ_NOISE_SDS * p.read_sigma
    thresholds = rounding_thresholds(p.gamma)
    c_lo = np.searchsorted(thresholds, k_lo / p.photon_scale - reach, side="right")
    c_hi = np.searchsorted(thresholds, k_hi / p.photon_scale + reach, side="right")
    return k_lo, k_hi, c_lo, c_hi


# Relative cost of one scipy.special.pdtr call and one element of the cumulative-sum route (measured).
PDTR_COST = 12.0


def _poisson_cdf_route(k_lo: np.ndarray, k_hi: np.ndarray, c_lo: np.ndarray,
                       c_hi: np.ndarray) -> tuple[str, float]:
    """How to evaluate the σ = 0 code CDF: ("cumsum" over each Poisson window | "pdtr" per code), cost."""
    cumsum = k_lo.size * float((k_hi - k_lo).max() + 1)
    pdtr = PDTR_COST * float((c_hi - c_lo + 1).sum())
    return ("cumsum", cumsum) if cumsum <= pdtr else ("pdtr", pdtr)


def table_cost(lam: np.ndarray, p: DegradationParams) -> float | None:
    """Rough work (array elements) to build the exact tables for these λ, or None when unaffordable."""
    k_lo, k_hi, c_lo, c_hi = _code_windows(lam, p)
    if p.read_sigma == 0.0:
        return _poisson_cdf_route(k_lo, k_hi, c_lo, c_hi)[1]
    lattice = ~edgeworth_rows(lam, p)
    edgeworth = float((~lattice).sum()) * float((c_hi - c_lo).max() + 1) * 20.0
    if not lattice.any():
        return edgeworth
    dense = float(lattice.sum()) * float(k_hi[lattice].max() - k_lo[lattice].min() + 1)
    macs = dense * float(c_hi[lattice].max() - c_lo[lattice].min() + 1)
    if dense > MAX_TABLE_PMF or macs > MAX_TABLE_MACS:
        return None
    return edgeworth + macs / 20.0


def edgeworth_rows(lam: np.ndarray, p: DegradationParams) -> np.ndarray:
    """Which λ get their code CDF from the Edgeworth expansion (`_edgeworth_code_cdf`) instead of a sum.

    Needs read noise wide enough to smooth the Poisson lattice away (σ·s >= EDGEWORTH_MIN_SMOOTHING photons:
    lattice terms ~exp(−2π²(σs)²)), and the first neglected (fourth-order) terms of the expansion, in the
    standardized cumulants g_n = κ_n/sd^n of K/s + σZ, summing to at most EDGEWORTH_TOLERANCE.
    """
    lam = np.asarray(lam, dtype=np.float64)
    if p.read_sigma * p.photon_scale < EDGEWORTH_MIN_SMOOTHING:
        return np.zeros(lam.shape, dtype=bool)
    g3, g4, g5, g6 = _standardized_cumulants(lam, p)[2:]
    neglected = g6 + g3 * g5 + g4 * g4 + g3 * g3 * g4 + g3 ** 4
    return neglected <= EDGEWORTH_TOLERANCE


def _standardized_cumulants(lam: np.ndarray, p: DegradationParams) -> tuple[np.ndarray, ...]:
    """(mean, sd, g3, g4, g5, g6) of t = K/s + σZ: a Poisson's cumulants are all λ (times s^-n here)."""
    s = p.photon_scale
    var = lam / s ** 2 + p.read_sigma ** 2
    sd = np.sqrt(var)
    scaled = lam / s / sd  # κ_n / sd^n = λ (1/(s sd))^n
    step = 1.0 / (s * sd)
    return (lam / s, sd, *(scaled * step ** (n - 1) for n in (3, 4, 5, 6)))


def _edgeworth_code_cdf(lam: np.ndarray, p: DegradationParams, codes: np.ndarray) -> np.ndarray:
    """P(code <= c) = P(t < T_{c+1}) by the third-order Edgeworth expansion of t = K/s + σZ.

    F(z) = Φ(z) − φ(z) [g3/6 He2 + g4/24 He3 + g3²/72 He5 + g5/120 He4 + g3 g4/144 He6 + g3³/1296 He8]
    with z standardized and He the probabilists' Hermite polynomials; the error is of the order of the
    neglected terms, kept below EDGEWORTH_TOLERANCE by `edgeworth_rows`.
    """
    mean, sd, g3, g4, g5, _ = (v[:, None] for v in _standardized_cumulants(lam, p))
    cuts = np.append(rounding_thresholds(p.gamma), np.inf)[codes]
    z = np.minimum((cuts - mean) / sd, 40.0)  # beyond 40 sd the CDF is 1 (and inf would make nan)
    he = [np.ones_like(z), z]
    for n in range(1, 8):  # He_{n+1} = z He_n − n He_{n−1}
        he.append(z * he[n] - n * he[n - 1])
    series = (g3 / 6.0 * he[2] + g4 / 24.0 * he[3] + g3 * g3 / 72.0 * he[5] + g5 / 120.0 * he[4]
              + g3 * g4 / 144.0 * he[6] + g3 ** 3 / 1296.0 * he[8])
    density = np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)
    return special.ndtr(z) - density * series


def _lattice_code_cdf(lam: np.ndarray, p: DegradationParams, codes: np.ndarray, k_lo: np.ndarray,
                      k_hi: np.ndarray) -> np.ndarray:
    """P(code <= c) = Σ_k Poisson(k; λ) Φ((T_{c+1} − k/s)/σ): one matrix product over a shared k range."""
    c_first, c_last = int(codes.min()), int(codes.max())
    cuts = np.append(rounding_thresholds(p.gamma), np.inf)[c_first:c_last + 1]
    k = np.arange(int(k_lo.min()), int(k_hi.max()) + 1)
    log_factorial = special.gammaln(np.arange(int(k_hi.max()) + 1, dtype=np.float64) + 1.0)
    pmf = np.exp(poisson_log_pmf(k[None, :], lam[:, None], log_factorial))
    gauss = special.ndtr((cuts[None, :] - k[:, None] / p.photon_scale) / p.read_sigma)
    return np.take_along_axis(pmf @ gauss, codes - c_first, axis=1)


def _poisson_code_cdf(lam: np.ndarray, p: DegradationParams, codes: np.ndarray, k_lo: np.ndarray,
                      k_hi: np.ndarray, route: str) -> np.ndarray:
    """σ = 0: P(code <= c) = P(K <= cut[c]), a Poisson CDF read at each row's codes."""
    cut = np.append(photon_cut(p), np.inf)[codes]  # code 255 is certain
    before = cut < k_lo[:, None]  # the CDF is < 1e-12 there
    after = cut >= k_hi[:, None]  # and > 1 − 1e-12 there
    cdf = np.where(after, 1.0, 0.0)
    inside = ~(before | after)
    rows = np.nonzero(inside)[0]
    if route == "pdtr":
        cdf[inside] = special.pdtr(cut[inside], lam[rows])
        return cdf
    # A cumulative sum of each row's Poisson window, read at cut[c].
    log_factorial = special.gammaln(np.arange(int(k_hi.max()) + 1, dtype=np.float64) + 1.0)
    k = k_lo[:, None] + np.arange(int((k_hi - k_lo).max()) + 1)
    pmf = np.exp(poisson_log_pmf(np.minimum(k, k_hi[:, None]), lam[:, None], log_factorial))
    pmf[k > k_hi[:, None]] = 0.0
    cum = np.cumsum(pmf, axis=1)
    cdf[inside] = cum[rows, (cut[inside] - k_lo[rows]).astype(np.int64)]
    return cdf


def code_cdf(lam: np.ndarray, p: DegradationParams) -> tuple[np.ndarray, np.ndarray]:
    """CDF of the 8-bit output code for each photon mean λ: (cdf (rows, m), offsets (rows,)).

    Exact sums, or the Edgeworth expansion for the rows `edgeworth_rows` selects (error < ~5e-10).

    cdf[r, j] = P(code <= offsets[r] + j | λ_r); the last column is 1 and codes below offsets[r] have
    probability < 1e-12. Raises ValueError when `table_cost` says the tables are unaffordable.
    """
    lam = np.asarray(lam, dtype=np.float64)
    if table_cost(lam, p) is None:
        raise ValueError("tables too large for these parameters; use the reference sampler")
    k_lo, k_hi, c_lo, c_hi = _code_windows(lam, p)
    width = int((c_hi - c_lo).max()) + 1
    codes = np.minimum(c_lo[:, None].astype(np.int32) + np.arange(width, dtype=np.int32), 255)  # (rows, width)
    if p.read_sigma == 0.0:
        route, _ = _poisson_cdf_route(k_lo, k_hi, c_lo, c_hi)
        cdf = _poisson_code_cdf(lam, p, codes, k_lo, k_hi, route)
    else:
        cdf = np.empty(codes.shape, dtype=np.float64)
        smooth = edgeworth_rows(lam, p)
        if smooth.any():
            cdf[smooth] = _edgeworth_code_cdf(lam[smooth], p, codes[smooth])
        if not smooth.all():
            rough = ~smooth
            cdf[rough] = _lattice_code_cdf(lam[rough], p, codes[rough], k_lo[rough], k_hi[rough])
        cdf = np.maximum.accumulate(cdf, axis=1)  # rounding must never make a CDF decrease
    cdf = np.clip(cdf, 0.0, 1.0)
    cdf[codes >= 255] = 1.0
    return cdf, c_lo.astype(np.int64)


def choose_sampler(dtype: np.dtype, p: DegradationParams, bit_depth: int = 8) -> str:
    """TABLE_SAMPLER for 8-bit in and out when its tables are affordable, else REFERENCE_SAMPLER."""
    if np.dtype(dtype) != np.uint8 or bit_depth != 8:
        return REFERENCE_SAMPLER
    lam = np.unique(level_intensities(p) * p.photon_scale)
    return TABLE_SAMPLER if table_cost(lam, p) is not None else REFERENCE_SAMPLER


def level_code_table(p: DegradationParams, pixels: int = 1 << 18) -> tuple[InverseCdfTable, np.ndarray]:
    """The code sampler for an 8-bit source: (table, rows) where rows[v, c] is the table row of (v, c).

    `pixels` (how many draws will be made) only tunes the bucket count; results never depend on it.
    """
    lam_levels = level_intensities(p) * p.photon_scale  # (256, 3)
    lam, rows = np.unique(lam_levels, return_inverse=True)
    cdf, offsets = code_cdf(lam, p)
    # More buckets: fewer draws need the exact search (~2 % with 8 buckets per code of the window), but
    # more table to build and a table too big for the cache. Measured on 512x512 crops.
    bits = int(np.clip(np.round(np.log2(min(8 * cdf.shape[1], 8 * max(pixels, 1) / lam.size))), 6, 12))
    return build_inverse_cdf_table(cdf, offsets, bits=bits), rows.reshape(lam_levels.shape)


def degrade_to_codes(clean: np.ndarray, p: DegradationParams, rng: np.random.Generator,
                     bit_depth: int = 8, sampler: str | None = None) -> np.ndarray:
    """The whole pipeline including quantization: uint8/uint16 dark image of clean's shape.

    `sampler` None picks with `choose_sampler`; pass the recorded one to reproduce a sample.
    Rows are processed in bands of TILE_ROWS, drawing from `rng` band after band.
    """
    sampler = sampler or choose_sampler(clean.dtype, p, bit_depth)
    if sampler == TABLE_SAMPLER:
        return _table_codes(clean, p, rng, bit_depth)
    if sampler == REFERENCE_SAMPLER:
        return _reference_codes(clean, p, rng, bit_depth)
    raise ValueError(f"unknown sampler {sampler!r}, expected one of {SAMPLERS}")


def _table_codes(clean: np.ndarray, p: DegradationParams, rng: np.random.Generator,
                 bit_depth: int) -> np.ndarray:
    """TABLE_SAMPLER: one uniform per pixel, drawn band by band."""
    import cv2

    if clean.dtype != np.uint8 or bit_depth != 8 or clean.ndim != 3 or clean.shape[2] != 3:
        raise ValueError("the table sampler needs an (H, W, 3) uint8 image and 8-bit output")
    table, rows = level_code_table(p, pixels=clean.size)
    # (v, c) -> row << bits, as a 3-channel LUT so OpenCV maps the interleaved image in one pass.
    lut = np.ascontiguousarray((rows.astype(np.int32) << table.bits)[None, :, :])
    out = np.empty(clean.shape, dtype=np.uint8)
    rows_per_band = table_band_rows(clean.shape[1])
    for top in range(0, clean.shape[0], rows_per_band):
        band = np.ascontiguousarray(clean[top:top + rows_per_band])
        uniforms = uniform_u32(rng, band.size).reshape(band.shape)
        out[top:top + rows_per_band] = sample_inverse_cdf(table, cv2.LUT(band, lut), uniforms)
    return out


def table_band_rows(width: int) -> int:
    """Rows per band of the table sampler: about TABLE_BAND_PIXELS values, and always an even number.

    Even, so every band but the last draws a whole number of 64-bit raw outputs: the uniforms then
    concatenate to the same stream whatever the band size, and the result does not depend on it.
    """
    return max(2, (TABLE_BAND_PIXELS // max(1, 3 * width)) & ~1)


def _reference_codes(clean: np.ndarray, p: DegradationParams, rng: np.random.Generator,
                     bit_depth: int) -> np.ndarray:
    """REFERENCE_SAMPLER: `degrade` then `quantize`, band by band."""
    out = np.empty(clean.shape, dtype=np.uint8 if bit_depth == 8 else np.uint16)
    for top in range(0, clean.shape[0], TILE_ROWS):
        out[top:top + TILE_ROWS] = quantize(degrade(clean[top:top + TILE_ROWS], p, rng), bit_depth)
    return out


# `lowsim.degrade(...)` calls lowsim.api.degrade (this module is the package attribute of that name)
from lowsim.api import callable_module  # noqa: E402

callable_module(__name__)
