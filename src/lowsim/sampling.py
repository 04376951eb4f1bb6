"""Random samplers used by the degradation model. Each takes an explicit Generator."""
from __future__ import annotations

import numpy as np


def poisson(lam: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Poisson draws with mean `lam` (elementwise), as float32.

    Reference implementation: numpy's exact sampler.
    """
    return rng.poisson(np.maximum(lam, 0.0)).astype(np.float32)
