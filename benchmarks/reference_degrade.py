"""Plain-numpy baseline of lowsim's degradation, for benchmarks: the same formulas, written directly.

    dark = Q( GC( PN( CD( BL( ILLUM(clean) ) ) ) ) )

float32 throughout, numpy's own Poisson and normal samplers, `np.power` for both power laws. This is the
obvious implementation the table sampler (`lowsim.degrade`, TABLE_SAMPLER) is measured against.
"""
from __future__ import annotations

import numpy as np


def reference_degrade(clean: np.ndarray, p, rng: np.random.Generator) -> np.ndarray:
    """uint8 (H, W, 3) clean -> uint8 dark with DegradationParams p, drawing from rng."""
    x = clean.astype(np.float32) / np.float32(255)
    if p.illum_alpha != 0.0:
        x = x * np.maximum(p.illum_alpha * np.power(x, np.float32(p.illum_gamma)) + (1 - p.illum_alpha), 0)
    x = np.maximum(x - np.float32(p.black_level), 0)
    x = x * np.array([p.gain_r, p.gain_g, p.gain_b], dtype=np.float32)
    x = rng.poisson(x * p.photon_scale).astype(np.float32) / np.float32(p.photon_scale)
    if p.read_sigma > 0:
        x = x + np.float32(p.read_sigma) * rng.standard_normal(x.shape, dtype=np.float32)
    x = np.power(np.clip(x, 0, 1), np.float32(1 / p.gamma))
    return np.rint(x * 255).astype(np.uint8)
