"""The raw noise model (ELD's, in DN above black): a frame's raw codes from its noiseless signal.

    codes = ADC( row( read( K·Poisson(signal / K); σ_read, λ ); σ_row ) + black offset per site; black, white )

Every draw comes from the one `rng`, in a fixed order: shot, read, row. The same chain makes the simulator's
known-truth pairs and `lowsim generate --output raw`'s dark frames.
"""
from __future__ import annotations

import numpy as np

from lowsim.degradation import stages
from lowsim.params import RawParams
from lowsim.raw.read import site_of_colour

PATTERN = "RGGB"  # of every mosaic lowsim writes (v2's mosaic stage)


def site_offsets(p: RawParams, pattern: str = PATTERN) -> np.ndarray:
    """The black offsets as a (2, 2) array over the colour-filter cell of `pattern`."""
    out = np.zeros((2, 2))
    for colour, (row, col) in site_of_colour(pattern).items():
        out[row, col] = getattr(p, f"black_offset_{colour}")
    return out


def noisy_codes(signal: np.ndarray, p: RawParams, rng: np.random.Generator, pattern: str = PATTERN) -> np.ndarray:
    """Raw codes (uint16) of a frame whose noiseless signal is `signal` (float32 DN above black)."""
    x = stages.add_gain_shot_noise(signal.astype(np.float32, copy=False), p.system_gain, rng)
    x = stages.add_tukey_read_noise(x, p.read_noise, p.read_shape, rng)
    x = stages.add_row_noise(x, p.row_noise, rng)
    x = stages.add_site_offsets(x, site_offsets(p, pattern))
    return stages.digitize_dn(x, p.adc_black, p.adc_white)
