"""Raw training pairs from clean photos (`lowsim generate --output raw`, model `lowsim.raw/v1`).

    linear  = srgb_to_linear(clean)                          inverse tone curve (a 256-entry table for 8-bit)
    camera  = mosaic(SCENE_TO_CAMERA · linear)               v2's inverse colour matrix and white balance, RGGB
    bright  = min(camera · bright_level·(white − black) / mean green, white − black)   the long exposure, DN
    codes   = noisy_codes(bright / exposure_ratio)           shot, Tukey read, row noise, black offsets, ADC
    dark    = pack(codes)                                    (H/2, W/2, 4) uint16 R, G1, B, G2 (SID's order)

The long exposure is placed so that its mean green signal is `bright_level` of full scale (as a photographer
exposes the reference shot); it clips at white. The dark frame is stored packed as SID's network reads it,
codes as the ADC gives them (black level included), so `(dark − adc_black) / (adc_white − adc_black) ×
exposure_ratio` is SID's input. Every draw comes from the one `rng` (noisy_codes' order).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from lowsim.degradation import stages, v2
from lowsim.params import RawParams
from lowsim.raw.noise import PATTERN, noisy_codes
from lowsim.raw.read import site_of_colour

MODEL_SAMPLER = "raw-reference/v1"
PACKED_ORDER = ("r", "g1", "b", "g2")  # SID's pack_raw channel order
_SRGB_TABLE = stages.srgb_to_linear(np.arange(256, dtype=np.float32) / np.float32(255))


def linear_light(clean: np.ndarray) -> np.ndarray:
    """Linear light of an sRGB photo (uint8 through a 256-entry table: a quarter of the float work and memory)."""
    if clean.dtype == np.uint8:
        return _SRGB_TABLE[clean]
    return stages.srgb_to_linear(stages.to_float(clean))


def bright_mosaic(clean: np.ndarray, p: RawParams) -> np.ndarray:
    """The long exposure's noiseless RGGB mosaic in DN above black (float32), even-cropped."""
    height, width = clean.shape[0] // 2 * 2, clean.shape[1] // 2 * 2
    camera = np.maximum(stages.mosaic(linear_light(clean[:height, :width]), PATTERN, matrix=v2.SCENE_TO_CAMERA), 0.0)
    green = np.concatenate([camera[r::2, c::2].ravel() for r, c in (site_of_colour(PATTERN)[g] for g in ("g1", "g2"))])
    full_scale = np.float32(p.adc_white - p.adc_black)
    scale = np.float32(p.bright_level) * full_scale / np.float32(max(float(green.mean()), 1e-6))
    return np.minimum(camera * scale, full_scale)


def pack(mosaic: np.ndarray, pattern: str = PATTERN) -> np.ndarray:
    """An (H, W) mosaic as (H/2, W/2, 4) in SID's order R, G1, B, G2."""
    sites = site_of_colour(pattern)
    return np.stack([mosaic[sites[c][0]::2, sites[c][1]::2] for c in PACKED_ORDER], axis=-1)


def degrade_to_codes(clean: np.ndarray, p: RawParams, rng: np.random.Generator, bit_depth: int = 8,
                     sampler: str | None = None) -> np.ndarray:
    """The packed dark raw frame (uint16 codes) of a clean photo; `bit_depth` is the clean target's, unused here."""
    if sampler not in (None, MODEL_SAMPLER):
        raise ValueError(f"unknown sampler {sampler!r} for the raw model, expected {MODEL_SAMPLER!r}")
    dark_signal = bright_mosaic(clean, p) / np.float32(p.exposure_ratio)
    return pack(noisy_codes(dark_signal, p, rng))


def degrade_stages(clean: np.ndarray, p: RawParams, rng: np.random.Generator):
    """(label, sRGB-viewable image) after each step, for `lowsim preview` (a quick demosaic, gamma 2.2)."""
    def shown(mosaic: np.ndarray, gain: float) -> np.ndarray:
        rgb = stages.demosaic(mosaic / np.float32(p.adc_white - p.adc_black) * np.float32(gain))
        return stages.apply_gamma(v2.from_camera(rgb), 2.2)

    yield "original", stages.to_float(clean)
    bright = bright_mosaic(clean, p)
    yield "long exposure (raw, demosaiced)", shown(bright, 1.0)
    codes = noisy_codes(bright / np.float32(p.exposure_ratio), p, rng).astype(np.float32) - np.float32(p.adc_black)
    yield f"short exposure x{p.exposure_ratio:.0f}", shown(codes, p.exposure_ratio)


def write_packed(path: str | Path, packed: np.ndarray) -> Path:
    """Write a packed raw frame as .npy atomically (no fsync: the rename keeps readers safe, as write_png)."""
    from lowsim.safe_io import atomic_write_bytes

    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(packed), allow_pickle=False)
    return atomic_write_bytes(path, buffer.getvalue(), fsync=False)


def check_output_kind(params: Path, output: str | None) -> None:
    """`--output` must match the params file: raw needs a raw-model file, srgb an sRGB model's (one line if not)."""
    from lowsim.errors import LowsimError
    from lowsim.params import RAW_MODEL, ParamDistribution

    if output is None:
        return
    if output not in ("srgb", "raw"):
        raise LowsimError(f"--output must be srgb or raw, got {output!r}")
    model = ParamDistribution.load(params).model
    if (output == "raw") != (model == RAW_MODEL):
        wanted = "a raw-model params file (lowsim.raw/v1, e.g. --params sony_a7s2)" if output == "raw" else \
            "an sRGB-model params file (v1 or v2, e.g. --params lol)"
        raise LowsimError(f"--output {output} needs {wanted}; this file is for {model}", params)


def read_packed(path: str | Path, black: float, white: float) -> np.ndarray:
    """A packed raw .npy as float32 (H/2, W/2, 4), (codes − black) / (white − black) clipped to [0, 1] (as
    `lowsim.imageio.read_bayer_packed` gives a raw file); LowsimError naming the file if it is not one."""
    from lowsim.errors import LowsimError

    try:
        codes = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise LowsimError(f"not a readable packed raw frame ({err})", path) from None
    if codes.ndim != 3 or codes.shape[2] != 4 or codes.dtype != np.uint16:
        raise LowsimError(f"expected a packed raw frame (H/2, W/2, 4) uint16, got {codes.shape} {codes.dtype}", path)
    scaled = (codes.astype(np.float32) - np.float32(black)) / np.float32(white - black)
    return np.clip(scaled, 0.0, 1.0)
