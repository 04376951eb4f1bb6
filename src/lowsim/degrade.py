"""The low-light degradation model, one small pure function per physical step.

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
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from lowsim.params import DegradationParams
from lowsim.sampling import poisson

MODEL_NAME = "lowsim.degrade/v1"


def apply_illumination(img: np.ndarray, alpha: float, gamma: float) -> np.ndarray:
    """Seed 002's illumination map: I·max(α·I^g + 1 − α, 0)."""
    if alpha == 0.0:
        return img
    light = alpha * np.power(img, gamma, dtype=img.dtype) + (1.0 - alpha)
    return img * np.maximum(light, 0.0)


def subtract_black_level(img: np.ndarray, black_level: float) -> np.ndarray:
    """BL: max(B − bl, 0)."""
    return np.maximum(img - black_level, 0.0)


def apply_channel_gains(img: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """CD: multiply each colour channel by its gain."""
    return img * np.asarray(gains, dtype=img.dtype)


def add_shot_noise(img: np.ndarray, photon_scale: float, rng: np.random.Generator) -> np.ndarray:
    """Shot noise: Poisson(x·scale)/scale, so the variance is x/scale."""
    return (poisson(img * photon_scale, rng) / photon_scale).astype(img.dtype, copy=False)


def add_read_noise(img: np.ndarray, read_sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Read noise: additive zero-mean Gaussian of standard deviation read_sigma."""
    if read_sigma == 0.0:
        return img
    return img + read_sigma * rng.standard_normal(img.shape, dtype=np.float32).astype(img.dtype, copy=False)


def apply_gamma(img: np.ndarray, gamma: float) -> np.ndarray:
    """GC: clip to [0, 1], then x^(1/γ)."""
    return np.power(np.clip(img, 0.0, 1.0), 1.0 / gamma, dtype=img.dtype)


def quantize(img: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """Round [0, 1] floats to unsigned integers of the given bit depth (8 or 16)."""
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    top = (1 << bit_depth) - 1
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    return np.rint(np.clip(img, 0.0, 1.0) * top).astype(dtype)


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


def degrade_stages(clean: np.ndarray, p: DegradationParams,
                   rng: np.random.Generator) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (label, image) after each step of the paper's Figure 3 (for `lowsim preview`)."""
    x = to_float(clean)
    yield "original", x
    x = subtract_black_level(x, p.black_level)
    yield "+ black level", x
    x = apply_channel_gains(x, p.gains)
    yield "+ colour", np.clip(x, 0, 1)
    x = add_read_noise(add_shot_noise(x, p.photon_scale, rng), p.read_sigma, rng)
    yield "+ noise", np.clip(x, 0, 1)
    yield "+ gamma", apply_gamma(x, p.gamma)


def to_float(img: np.ndarray) -> np.ndarray:
    """uint8/uint16 → float32 in [0, 1]; float input is passed through as float32."""
    if img.dtype == np.uint8:
        return img.astype(np.float32) / np.float32(255)
    if img.dtype == np.uint16:
        return img.astype(np.float32) / np.float32(65535)
    return img.astype(np.float32, copy=False)
