"""lowsim.sampling: the reference Poisson sampler and the exact bucketed inverse-CDF tables."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from lowsim.sampling import (
    AMBIGUOUS_FLAG,
    build_inverse_cdf_table,
    poisson,
    poisson_log_pmf,
    poisson_window,
    sample_inverse_cdf,
    uniform_u32,
)


def random_cdfs(rng: np.random.Generator, rows: int, m: int) -> np.ndarray:
    """CDF rows with some exactly-zero and some tiny probabilities (the hard cases for buckets)."""
    pmf = rng.random((rows, m)) ** 4
    pmf[rng.random((rows, m)) < 0.3] = 0.0
    pmf[:, rng.integers(0, m)] = 1e-11  # a step far thinner than any bucket
    pmf[:, -1] += 1e-3
    return np.cumsum(pmf / pmf.sum(axis=1, keepdims=True), axis=1)


def brute_force(table, rows: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """min{j : u < threshold[j]} by a per-element binary search, plus the row offset."""
    return np.array([np.searchsorted(table.thresholds[r], u, side="right") + table.offsets[r]
                     for r, u in zip(rows, uniforms)])


@pytest.mark.parametrize("bits", [1, 4, 8, 11])
def test_table_sampler_is_the_exact_inverse_cdf(bits: int) -> None:
    rng = np.random.default_rng(1)
    cdf = random_cdfs(rng, rows=40, m=23)
    offsets = rng.integers(0, 200, size=40)
    table = build_inverse_cdf_table(cdf, offsets, bits=bits)
    rows = rng.integers(0, 40, size=20_000).astype(np.int32)
    uniforms = uniform_u32(rng, rows.size)
    got = sample_inverse_cdf(table, rows << bits, uniforms)
    assert np.array_equal(got, brute_force(table, rows, uniforms))
    assert not np.any(got >= AMBIGUOUS_FLAG)


def test_outcome_does_not_depend_on_bucket_count() -> None:
    rng = np.random.default_rng(2)
    cdf = random_cdfs(rng, rows=10, m=50)
    rows = rng.integers(0, 10, size=50_000).astype(np.int32)
    uniforms = uniform_u32(rng, rows.size)
    results = [sample_inverse_cdf(build_inverse_cdf_table(cdf, 3, bits=b), rows << b, uniforms)
               for b in (2, 6, 10, 12)]
    for other in results[1:]:
        assert np.array_equal(results[0], other)


def test_uniform_extremes_hit_first_and_last_outcomes() -> None:
    cdf = np.array([[0.0, 0.25, 0.25, 1.0]])
    table = build_inverse_cdf_table(cdf, bits=4)
    u = np.array([0, (1 << 30) - 1, 1 << 30, (1 << 32) - 1], dtype=np.uint32)
    got = sample_inverse_cdf(table, np.zeros(4, dtype=np.int32), u)
    # outcome 0 has probability 0; 1 takes [0, 1/4); 2 has probability 0; 3 takes [1/4, 1)
    assert got.tolist() == [1, 1, 3, 3]


def test_sampled_frequencies_match_probabilities() -> None:
    rng = np.random.default_rng(3)
    pmf = np.array([0.5, 0.2, 0.0, 0.25, 0.05])
    table = build_inverse_cdf_table(np.cumsum(pmf)[None, :], bits=3)
    got = sample_inverse_cdf(table, np.zeros(200_000, dtype=np.int32), uniform_u32(rng, 200_000))
    counts = np.bincount(got, minlength=5)
    assert counts[2] == 0
    keep = pmf > 0
    assert stats.chisquare(counts[keep], pmf[keep] * got.size).pvalue > 1e-3


def test_decreasing_cdf_is_refused() -> None:
    with pytest.raises(ValueError, match="non-decreasing"):
        build_inverse_cdf_table(np.array([[0.5, 0.2, 1.0]]))


def test_uniform_u32_is_reproducible_and_uniform() -> None:
    a = uniform_u32(np.random.default_rng(7), 100_001)
    b = uniform_u32(np.random.default_rng(7), 100_001)
    assert a.dtype == np.uint32 and a.shape == (100_001,)
    assert np.array_equal(a, b)
    top_bytes = np.bincount(a >> 24, minlength=256)
    assert stats.chisquare(top_bytes).pvalue > 1e-3


@pytest.mark.parametrize("lam", [0.0, 1e-3, 0.5, 3.0, 30.0, 100.0, 1e3, 1e5])
def test_poisson_window_leaves_less_than_1e_12_outside(lam: float) -> None:
    lo, hi = poisson_window(np.array([lam]))
    outside = stats.poisson.cdf(lo[0] - 1, lam) + stats.poisson.sf(hi[0], lam)
    assert outside < 1e-12


def test_poisson_log_pmf_matches_scipy() -> None:
    k = np.arange(0, 60)[None, :]
    lam = np.array([0.0, 0.3, 7.0, 40.0])[:, None]
    got = np.exp(poisson_log_pmf(k, lam))
    assert np.allclose(got, stats.poisson.pmf(k, lam), rtol=1e-12, atol=0)


def test_reference_poisson_has_poisson_moments() -> None:
    lam = np.full(200_000, 4.5)
    draws = poisson(lam, np.random.default_rng(0))
    assert draws.dtype == np.float32
    assert abs(draws.mean() - 4.5) < 0.03 and abs(draws.var() - 4.5) < 0.06
