"""Random samplers used by the degradation model. Each takes an explicit Generator.

Two kinds live here:

- `poisson`: numpy's exact Poisson sampler, the reference.
- `InverseCdfTable`: exact inverse-CDF sampling of many small discrete distributions at once (one per
  *row*; a pixel says which row it draws from). The generator uses it to draw each 8-bit output code
  directly from its exact distribution given the source level (see `lowsim.degrade.code_cdf`), with one
  32-bit uniform per pixel. A bucket table indexed by the top `bits` of the uniform answers most draws
  with one gather; a draw whose bucket straddles a step of the CDF is finished by a short exact search on
  the full 32 bits. Probabilities are thereby resolved to 2^-32, the precision of the uniform itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

UNIFORM_BITS = 32
UNIFORM_SPAN = float(1 << UNIFORM_BITS)
AMBIGUOUS_FLAG = 0x8000  # high bit of a bucket entry: "the answer is this value or a later one"
MAX_OUTCOME = AMBIGUOUS_FLAG - 1
DEFAULT_BUCKET_BITS = 8


def poisson(lam: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Poisson draws with mean `lam` (elementwise), as float32.

    Reference implementation: numpy's exact sampler.
    """
    return rng.poisson(np.maximum(lam, 0.0)).astype(np.float32)


def uniform_u32(rng: np.random.Generator, n: int) -> np.ndarray:
    """n uniform integers on [0, 2^32) as uint32: the raw 64-bit outputs of the bit generator, split.

    Raw bit-generator output is the one stream numpy promises never to change, so a table-sampled image
    reproduces across numpy versions; it is also twice as fast as `Generator.integers`.
    """
    raw = rng.bit_generator.random_raw((n + 1) // 2)
    return raw.astype("<u8", copy=False).view("<u4")[:n].astype(np.uint32, copy=False)


def poisson_window(lam: np.ndarray, tail_sd: float = 7.5, pad: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
    """Integer bounds [lo, hi] outside which a Poisson(lam) has mass below 1e-12 (each tail).

    Checked by Chernoff bounds: the right tail is the heavier one; at lam = 100 it is 1e-12 past
    lam + 7.5 sd + 8, less for larger lam (towards the normal's 3e-14) and for smaller lam (the pad).
    """
    lam = np.asarray(lam, dtype=np.float64)
    spread = tail_sd * np.sqrt(lam) + pad
    lo = np.maximum(np.floor(lam - spread), 0).astype(np.int64)
    hi = np.ceil(lam + spread).astype(np.int64)
    return lo, hi


def poisson_log_pmf(k: np.ndarray, lam: np.ndarray, log_factorial: np.ndarray | None = None) -> np.ndarray:
    """log P(K = k) for broadcast k (integers) and lam; exact for lam = 0 (all mass at k = 0).

    `log_factorial[k]` = log k! may be passed precomputed (a table covering every k) to save time.
    """
    k = np.asarray(k)
    lam = np.asarray(lam, dtype=np.float64)
    log_kfact = special.gammaln(k + 1.0) if log_factorial is None else log_factorial[k]
    positive = lam > 0
    log_pmf = k * np.log(np.where(positive, lam, 1.0)) - (lam + log_kfact)
    if not positive.all():  # lam = 0: all mass at k = 0 (only those entries are touched)
        zero = np.broadcast_to(~positive, log_pmf.shape)
        log_pmf[zero] = np.where(np.broadcast_to(k, log_pmf.shape)[zero] == 0, 0.0, -np.inf)
    return log_pmf


@dataclass(frozen=True)
class InverseCdfTable:
    """Exact inverse-CDF sampler for `rows` discrete distributions; row r has outcomes offsets[r] + j."""

    buckets: np.ndarray  # (rows, 2**bits) uint16: outcome at the bucket's lower end, | AMBIGUOUS_FLAG
    thresholds: np.ndarray  # (rows, m) int64: outcome <= offsets[r] + j  <=>  uniform < thresholds[r, j]
    offsets: np.ndarray  # (rows,) int64
    bits: int

    @property
    def rows(self) -> int:
        return int(self.buckets.shape[0])


def build_inverse_cdf_table(cdf: np.ndarray, offsets: np.ndarray | int = 0,
                            bits: int = DEFAULT_BUCKET_BITS) -> InverseCdfTable:
    """Bucket table for non-decreasing CDF rows over outcomes offsets[r] .. offsets[r]+m-1 (last column: 1).

    The sampled outcome for a uniform U is min{j : U < 2^32 cdf[r, j]} whatever `bits` is: the buckets only
    decide how much work a draw takes, never its result.
    """
    cdf = np.asarray(cdf, dtype=np.float64)
    rows, m = cdf.shape
    offsets = np.broadcast_to(np.asarray(offsets, dtype=np.int64), (rows,)).copy()
    if offsets.min(initial=0) < 0 or offsets.max(initial=0) + m - 1 > MAX_OUTCOME:
        raise ValueError(f"outcomes must lie in 0..{MAX_OUTCOME}")
    n_buckets = 1 << bits
    shift = UNIFORM_BITS - bits
    # Integer thresholds: a uniform U in [0, 2^32) gives outcome #{j : thresholds[j] <= U}.
    thresholds = np.ceil(np.clip(cdf, 0.0, 1.0) * UNIFORM_SPAN).astype(np.int64)
    thresholds[:, -1] = 1 << UNIFORM_BITS
    # Outcome j is the lower-end answer of buckets first_bucket[j-1] .. first_bucket[j]-1, where
    # first_bucket[j] = ceil(thresholds[j] / bucket width) is the first bucket starting at or above it.
    first_bucket = np.minimum((thresholds + ((1 << shift) - 1)) >> shift, n_buckets)
    first_bucket[:, -1] = n_buckets
    runs = np.diff(first_bucket, axis=1, prepend=0).ravel()
    if runs.min() < 0:
        raise ValueError("CDF rows must be non-decreasing")
    values = (offsets[:, None] + np.arange(m)).astype(np.uint16).ravel()
    buckets = np.repeat(values, runs)
    # A bucket is ambiguous when some threshold falls strictly inside it: flag it for an exact search.
    inside = (thresholds & ((1 << shift) - 1) != 0) & (thresholds < (1 << UNIFORM_BITS))
    r_idx, j_idx = np.nonzero(inside)
    buckets[r_idx * n_buckets + (thresholds[r_idx, j_idx] >> shift)] |= np.uint16(AMBIGUOUS_FLAG)
    return InverseCdfTable(buckets=buckets.reshape(rows, n_buckets), thresholds=thresholds,
                           offsets=offsets, bits=bits)


def sample_inverse_cdf(table: InverseCdfTable, shifted_rows: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """One outcome (uint16) per element: from row `shifted_rows >> bits` (int32) with uniform `uniforms` (uint32).

    `shifted_rows` is overwritten (it becomes the bucket index): the caller's scratch, to avoid copies.
    """
    shift = UNIFORM_BITS - table.bits
    flat = shifted_rows.reshape(-1)
    u = uniforms.reshape(-1)
    np.bitwise_or(flat, (u >> np.uint32(shift)).view(np.int32), out=flat)
    out = table.buckets.reshape(-1).take(flat)
    pending = np.flatnonzero(out >= AMBIGUOUS_FLAG)
    if pending.size:
        out[pending] = _resolve(table, flat[pending], u[pending])
    return out.reshape(uniforms.shape)


def _resolve(table: InverseCdfTable, flat: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Finish ambiguous draws exactly: binary search between the bucket's lower and upper outcomes."""
    n_buckets = 1 << table.bits
    m = table.thresholds.shape[1]
    rows = flat >> table.bits
    offsets = table.offsets[rows]
    buckets = table.buckets.ravel()
    low = (buckets[flat] & np.uint16(MAX_OUTCOME)).astype(np.int64) - offsets
    is_last = (flat & (n_buckets - 1)) == n_buckets - 1
    high = np.where(is_last, m - 1,
                    (buckets[np.minimum(flat + 1, buckets.size - 1)] & np.uint16(MAX_OUTCOME)).astype(np.int64)
                    - offsets)
    high = np.maximum(high, low)
    base = rows.astype(np.int64) * m
    thresholds = table.thresholds.ravel()
    u = uniforms.astype(np.int64)
    # Invariant: the answer j* = min{j : u < thresholds[j]} lies in [low, high].
    while True:
        open_ = low < high
        if not open_.any():
            break
        mid = (low + high) >> 1
        go_up = open_ & (thresholds[base + mid] <= u)
        low = np.where(go_up, mid + 1, low)
        high = np.where(open_ & ~go_up, mid, high)
    return (low + offsets).astype(np.uint16)
