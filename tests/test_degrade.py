"""lowsim.degrade: the model's steps, and the exact table sampler checked against the reference."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from lowsim import degrade as D
from lowsim.params import DegradationParams

# Parameter sets spanning the regimes of the table sampler: few/many photons, with and without read
# noise, gamma below/above 1, the illumination map, a black level that zeroes the shadows.
CASES = {
    "paper-like": dict(black_level=0.05, gain_r=0.3, gain_g=0.2, gain_b=0.25, photon_scale=300.0,
                       read_sigma=0.0, gamma=1.0),
    "read-noise": dict(black_level=0.02, gain_r=0.3, gain_g=0.2, gain_b=0.25, photon_scale=300.0,
                       read_sigma=0.01, gamma=0.6),
    "few-photons": dict(gain_r=0.5, gain_g=0.5, gain_b=0.5, photon_scale=2.0, gamma=1.5),
    "many-photons": dict(gain_r=0.1, gain_g=0.12, gain_b=0.2, photon_scale=1e5, gamma=1.0),
    "illumination": dict(illum_alpha=0.7, illum_gamma=2.0, black_level=0.01, gain_r=0.2, gain_g=0.2,
                         gain_b=0.2, photon_scale=3000.0, read_sigma=0.002, gamma=0.8),
    "paper-scale-1": dict(photon_scale=1.0),
    # like the LOL calibration: ~1e5 photons, read noise dominating (the Edgeworth rows)
    "lol-like": dict(illum_alpha=0.12, illum_gamma=2.5, black_level=0.012, gain_r=0.37, gain_g=0.38,
                     gain_b=0.36, photon_scale=2e5, read_sigma=0.006, gamma=0.7),
    # read noise of 30 photons: the darkest rows (up to ~70 photons) by Edgeworth, the others by the sum
    "mixed-rows": dict(gain_r=0.2, gain_g=0.2, gain_b=0.2, photon_scale=3000.0, read_sigma=0.01,
                       gamma=1.0),
}


def params(name: str) -> DegradationParams:
    return DegradationParams(**CASES[name])


# ---------------------------------------------------------------------------------- the steps


def test_steps_match_the_paper_formulas() -> None:
    x = np.array([[[0.0, 0.2, 0.9]]], dtype=np.float32)
    assert np.allclose(D.subtract_black_level(x, 0.1), [[[0.0, 0.1, 0.8]]])
    assert np.allclose(D.apply_channel_gains(x, np.array([1.0, 0.5, 2.0])), [[[0.0, 0.1, 1.8]]])
    assert np.allclose(D.apply_gamma(np.array([0.25, 2.0, -1.0]), 2.0), [0.5, 1.0, 0.0])
    lit = D.apply_illumination(x, alpha=1.0, gamma=1.0)  # I * I: shadows darken, 1 stays 1
    assert np.allclose(lit, x * x)
    assert D.quantize(np.array([0.0, 0.5, 1.2]), 8).tolist() == [0, 128, 255]
    assert D.quantize(np.array([1.0]), 16).dtype == np.uint16


def test_expected_dark_is_degrade_without_noise() -> None:
    p = DegradationParams(illum_alpha=0.4, black_level=0.03, gain_r=0.3, gain_g=0.4, gain_b=0.5,
                          photon_scale=1e9, read_sigma=0.0, gamma=1.3)
    clean = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    noisy = D.degrade(clean, p, np.random.default_rng(1))
    assert np.allclose(noisy, D.expected_dark(clean, p), atol=2e-3)


def test_degrade_stages_show_illumination_only_when_asked() -> None:
    img = np.full((4, 4, 3), 128, np.uint8)
    plain = [label for label, _ in D.degrade_stages(img, params("paper-like"), np.random.default_rng(0))]
    lit = [label for label, _ in D.degrade_stages(img, params("illumination"), np.random.default_rng(0),
                                                   illumination=True)]
    assert plain == ["original", "+ black level", "+ colour", "+ noise", "+ gamma"]
    assert lit == ["original", "+ illumination", *plain[1:]]


# ---------------------------------------------------------------------------------- exact tables


def brute_force_code_pmf(lam: float, p: DegradationParams) -> np.ndarray:
    """P(code = c) by summing the model over photon counts directly (scipy's pmf and normal CDF)."""
    k = np.arange(max(0, int(lam - 40 * np.sqrt(lam) - 60)), int(lam + 40 * np.sqrt(lam) + 60))
    pk = stats.poisson.pmf(k, lam)
    if p.read_sigma == 0:
        codes = D.noiseless_code(k, p)  # the reference's own float32 arithmetic, ties included
        return np.bincount(codes, weights=pk, minlength=256)
    edges = ((np.arange(256) + 0.5) / 255) ** p.gamma  # code <= c  <=>  t < edges[c]
    below = stats.norm.cdf((edges[None, :] - k[:, None] / p.photon_scale) / p.read_sigma)
    cdf = np.append((pk[:, None] * below).sum(axis=0)[:-1], 1.0)
    return np.diff(cdf, prepend=0.0)


@pytest.mark.parametrize("case", sorted(CASES))
def test_code_cdf_matches_brute_force(case: str) -> None:
    p = params(case)
    lam = np.unique(D.level_intensities(p) * p.photon_scale)
    lam = lam[np.linspace(0, lam.size - 1, 12).astype(int)]  # dark to bright
    cdf, offsets = D.code_cdf(lam, p)
    for r, value in enumerate(lam):
        full = np.ones(256)
        full[:offsets[r]] = 0.0
        width = min(cdf.shape[1], 256 - offsets[r])
        full[offsets[r]:offsets[r] + width] = cdf[r, :width]
        pmf = np.diff(full, prepend=0.0)
        assert np.allclose(pmf, brute_force_code_pmf(value, p), atol=1e-9), f"lambda={value}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_table_sampler_matches_reference_sampler(case: str) -> None:
    """Chi-square of code histograms, table vs numpy reference, per channel at dark/mid/bright levels."""
    p = params(case)
    assert D.choose_sampler(np.uint8, p) == D.TABLE_SAMPLER
    levels = np.array([3, 40, 128, 230, 255], dtype=np.uint8)
    clean = np.repeat(levels, 8000).reshape(200, 200)[..., None].repeat(3, axis=2)
    table = D.degrade_to_codes(clean, p, np.random.default_rng(10), sampler=D.TABLE_SAMPLER)
    reference = D.degrade_to_codes(clean, p, np.random.default_rng(11), sampler=D.REFERENCE_SAMPLER)
    for level in levels:
        at = clean[..., 0] == level
        for c in range(3):
            a = np.bincount(table[..., c][at], minlength=256)
            b = np.bincount(reference[..., c][at], minlength=256)
            seen = (a + b) > 0
            if seen.sum() < 2:
                assert np.array_equal(a, b)
                continue
            pvalue = stats.chi2_contingency(np.stack([a[seen], b[seen]])).pvalue
            assert pvalue > 1e-4, f"level {level} channel {c}: p={pvalue}"


def test_table_sampler_moments_at_low_and_high_photon_counts() -> None:
    """Mean and variance of the table sampler agree with the exact code distribution."""
    for case in ("few-photons", "read-noise", "many-photons"):
        p = params(case)
        clean = np.full((300, 300, 3), 180, np.uint8)
        codes = D.degrade_to_codes(clean, p, np.random.default_rng(5), sampler=D.TABLE_SAMPLER)[..., 1]
        lam = D.level_intensities(p)[180, 1] * p.photon_scale
        pmf = brute_force_code_pmf(lam, p)
        mean = (pmf * np.arange(256)).sum()
        var = (pmf * np.arange(256) ** 2).sum() - mean ** 2
        se = np.sqrt(var / codes.size) + 1e-9
        assert abs(codes.mean() - mean) < 5 * se, case
        assert abs(codes.var() - var) < 0.05 * var + 1e-6, case


def test_degrade_to_codes_is_reproducible_and_shaped() -> None:
    clean = np.random.default_rng(0).integers(0, 256, (300, 17, 3), dtype=np.uint8)  # > TILE_ROWS rows
    p = params("read-noise")
    a = D.degrade_to_codes(clean, p, np.random.default_rng(3))
    b = D.degrade_to_codes(clean, p, np.random.default_rng(3))
    c = D.degrade_to_codes(clean, p, np.random.default_rng(4))
    assert a.shape == clean.shape and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_sampler_choice() -> None:
    p = params("read-noise")
    assert D.choose_sampler(np.uint8, p, 8) == D.TABLE_SAMPLER
    assert D.choose_sampler(np.uint16, p, 8) == D.REFERENCE_SAMPLER
    assert D.choose_sampler(np.uint8, p, 16) == D.REFERENCE_SAMPLER
    assert D.choose_sampler(np.float32, p, 8) == D.REFERENCE_SAMPLER
    # a million photons and read noise too small to smooth their lattice: the exact Poisson x Gaussian
    # sum would cost more than numpy's sampler
    huge = DegradationParams(gain_r=1.0, gain_g=1.0, gain_b=1.0, photon_scale=1e6, read_sigma=1e-6)
    assert D.choose_sampler(np.uint8, huge, 8) == D.REFERENCE_SAMPLER
    with pytest.raises(ValueError):
        D.code_cdf(np.unique(D.level_intensities(huge) * huge.photon_scale), huge)


def test_reference_sampler_handles_16_bit() -> None:
    """16-bit in and out; with 1e5 photons at full scale the result is close to the noiseless model."""
    clean = np.full((64, 64, 3), 40000, np.uint16)
    p = params("many-photons")
    dark = D.degrade_to_codes(clean, p, np.random.default_rng(0), bit_depth=16)
    assert dark.dtype == np.uint16 and dark.shape == clean.shape
    expected = D.quantize(D.expected_dark(D.to_float(clean), p), 16).astype(float)
    assert np.allclose(dark.mean(axis=(0, 1)), expected[0, 0], rtol=2e-3)
    assert dark[..., 0].std() > 0  # shot noise survives at 16 bits


def test_edgeworth_rows_are_used_where_promised() -> None:
    lol = params("lol-like")
    lam = np.unique(D.level_intensities(lol) * lol.photon_scale)
    assert D.edgeworth_rows(lam, lol).all()
    mixed = params("mixed-rows")
    rows = D.edgeworth_rows(np.unique(D.level_intensities(mixed) * mixed.photon_scale), mixed)
    assert rows.any() and not rows.all()
    assert not D.edgeworth_rows(lam, params("paper-like")).any()  # no read noise: exact sums only


@pytest.mark.parametrize("case", ["mixed-rows", "lol-like"])
def test_edgeworth_matches_the_exact_sum_up_to_its_boundary(case: str) -> None:
    """Where it is used, even at the edge of its domain, the expansion agrees with the exact sum."""
    p = params(case)
    lam = np.unique(D.level_intensities(p) * p.photon_scale)
    used = lam[D.edgeworth_rows(lam, p)]
    lam = used[np.linspace(0, used.size - 1, 16).astype(int)]  # includes the largest λ it is used for
    k_lo, k_hi, c_lo, c_hi = D._code_windows(lam, p)
    codes = np.minimum(c_lo[:, None] + np.arange(int((c_hi - c_lo).max()) + 1), 255)
    exact = D._lattice_code_cdf(lam, p, codes, k_lo, k_hi)
    series = D._edgeworth_code_cdf(lam, p, codes)
    assert np.abs(series - exact)[codes < 255].max() < 1e-9


def test_noiseless_code_ties_follow_the_reference() -> None:
    """photon_cut is exactly the last photon count of each code under the reference's float32 maths."""
    for case in ("paper-like", "few-photons", "many-photons", "paper-scale-1"):
        p = params(case)
        cut = D.photon_cut(p)
        k = np.arange(0, int(p.photon_scale * 1.01) + 2)
        codes = D.noiseless_code(k, p)
        expected = np.array([k[codes <= c].max(initial=-1) for c in range(255)])
        assert np.array_equal(cut, expected), case


def test_table_sampler_result_does_not_depend_on_band_size(monkeypatch: pytest.MonkeyPatch) -> None:
    clean = np.random.default_rng(0).integers(0, 256, (101, 33, 3), dtype=np.uint8)
    p = params("read-noise")
    whole = D.degrade_to_codes(clean, p, np.random.default_rng(8))
    monkeypatch.setattr(D, "TABLE_BAND_PIXELS", 500)  # bands of 4 rows (even, as required)
    assert D.table_band_rows(33) == 4
    assert np.array_equal(D.degrade_to_codes(clean, p, np.random.default_rng(8)), whole)
