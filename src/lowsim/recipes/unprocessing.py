"""Brooks et al. 2019's unprocessing recipe (*Unprocessing Images for Learned Raw Denoising*, CVPR), built from
lowsim's stages, made dark: the sRGB photo is taken back to a raw mosaic with a random camera (colour matrix,
white balance, brightness), darkened, made noisy with shot and read noise from the paper's log-log line, and
processed forward again as the paper's `process` does (white balance, bilinear demosaic, colour matrix, gamma
2.2, smoothstep tone curve). No calibration: every range is the paper's (lowsim/data/params/unprocessing.json),
except `darkening`, lowsim's addition (unprocessing itself keeps the exposure; see docs/recipes.md).

Sampling (`sample_params`) is separate from applying (`degrade`); every draw comes from the Generator passed in.
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping

import numpy as np

from lowsim.degradation import stages
from lowsim.params import UNPROCESS_MODEL, UNPROCESS_PARAM_NAMES, UnprocessParams

MODEL_NAME = UNPROCESS_MODEL
SAMPLER = "unprocessing-reference/v1"
SAMPLERS = (SAMPLER,)
GAMMA = 2.2  # the paper's fixed display gamma
# The paper's four XYZ -> camera matrices (its code's xyz2cams) and linear sRGB -> XYZ (D65).
XYZ_TO_CAMS = np.array([[[1.0234, -0.2969, -0.2266], [-0.5625, 1.6328, -0.0469], [-0.0703, 0.2188, 0.6406]],
                        [[0.4913, -0.0541, -0.0202], [-0.613, 1.3513, 0.2906], [-0.1564, 0.2151, 0.7183]],
                        [[0.838, -0.263, -0.0639], [-0.2887, 1.0725, 0.2496], [-0.0627, 0.1427, 0.5438]],
                        [[0.6596, -0.2079, -0.0562], [-0.4782, 1.3016, 0.1933], [-0.097, 0.1581, 0.5181]]])
RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                       [0.2126729, 0.7151522, 0.0721750],
                       [0.0193339, 0.1191920, 0.9503041]])


def rgb_to_camera(weights: np.ndarray) -> np.ndarray:
    """The random camera's linear sRGB -> camera matrix: the weighted mix of the four, rows normalised to 1."""
    xyz_to_cam = np.tensordot(np.asarray(weights, dtype=np.float64), XYZ_TO_CAMS, axes=1)
    rgb_to_cam = xyz_to_cam @ RGB_TO_XYZ
    return rgb_to_cam / rgb_to_cam.sum(axis=-1, keepdims=True)


# ------------------------------------------------------------------------------------- sampling


def _draw(law: Mapping[str, Any], rng: np.random.Generator, drawn: Mapping[str, float]) -> float:
    """One value from one law of a ranges file (a fixed number of draws per law)."""
    kind = law["law"]
    if kind in ("uniform", "normalised-uniform"):
        return float(rng.uniform(law["low"], law["high"]))
    if kind == "log-uniform":
        return float(np.exp(rng.uniform(np.log(law["low"]), np.log(law["high"]))))
    if kind == "reciprocal-normal":
        return float(1.0 / rng.normal(law["mean"], law["sd"]))
    if kind == "log-log-line":  # the paper's read noise: log read = slope * log shot + intercept + N(0, sd²)
        return float(np.exp(law["slope"] * np.log(drawn[law["of"]]) + law["intercept"] + rng.normal(0.0, law["sd"])))
    if kind == "integer-uniform":
        return float(rng.integers(int(law["low"]), int(law["high"])))
    raise ValueError(f"unknown law {kind!r}")


LAWS = ("uniform", "normalised-uniform", "log-uniform", "reciprocal-normal", "log-log-line", "integer-uniform")


def draw_laws(laws: Mapping[str, Mapping[str, Any]], names: tuple[str, ...],
              rng: np.random.Generator) -> dict[str, float]:
    """Values of `names` drawn in that order; the normalised-uniform ones are then divided by their sum."""
    drawn: dict[str, float] = {}
    for name in names:
        drawn[name] = _draw(laws[name], rng, drawn)
    group = [n for n in names if laws[n]["law"] == "normalised-uniform"]
    total = sum(drawn[n] for n in group)
    drawn.update({n: drawn[n] / total for n in group})
    return drawn


def sample_params(laws: Mapping[str, Mapping[str, Any]], rng: np.random.Generator) -> UnprocessParams:
    """One draw of the recipe's parameters from the ranges file's laws."""
    return UnprocessParams(**draw_laws(laws, UNPROCESS_PARAM_NAMES, rng))


# ------------------------------------------------------------------------------------- applying


def unprocess(clean: np.ndarray, p: UnprocessParams) -> np.ndarray:
    """sRGB photo -> linear raw mosaic of the random camera: inverse tone, gamma, colour matrix, gains."""
    linear = stages.apply_gamma(stages.inverse_smoothstep(stages.to_float(clean)), 1.0 / GAMMA)
    camera = stages.apply_colour_matrix(linear, rgb_to_camera(p.ccm_weights))
    gains = np.array([p.red_gain, 1.0, p.blue_gain]) * p.rgb_gain
    return stages.mosaic(np.clip(stages.invert_gains_safely(camera, gains), 0.0, 1.0))


def add_noise(raw: np.ndarray, p: UnprocessParams, rng: np.random.Generator) -> np.ndarray:
    """Shot noise of variance shot_variance·x (Poisson through that gain), then Gaussian read noise."""
    noisy = stages.add_gain_shot_noise(raw, p.shot_variance, rng)
    return stages.add_read_noise(noisy, float(np.sqrt(p.read_variance)), rng)


def process(raw: np.ndarray, p: UnprocessParams) -> np.ndarray:
    """The paper's forward processing: white balance, demosaic, colour matrix, gamma, smoothstep."""
    gains = np.array([p.red_gain, 1.0, p.blue_gain], dtype=np.float32)
    site_gains = stages.mosaic(np.broadcast_to(gains, (*raw.shape, 3)))  # each site's channel gain
    rgb = stages.demosaic(np.clip(raw * site_gains, 0.0, 1.0))  # as the paper: gains and clip on the mosaic
    cam_to_rgb = np.linalg.inv(rgb_to_camera(p.ccm_weights))
    linear = np.clip(stages.apply_colour_matrix(rgb, cam_to_rgb), 0.0, 1.0)
    return stages.smoothstep(stages.apply_gamma(linear, GAMMA))


def degrade(clean: np.ndarray, p: UnprocessParams, rng: np.random.Generator) -> np.ndarray:
    """The whole recipe on an (H, W, 3) image; float32 in [0, 1]."""
    raw = unprocess(clean, p) * np.float32(p.darkening)
    return process(add_noise(raw, p, rng), p)


def degrade_to_codes(clean: np.ndarray, p: UnprocessParams, rng: np.random.Generator, bit_depth: int = 8,
                     sampler: str | None = None) -> np.ndarray:
    """The recipe including quantization: the dark image at `bit_depth`."""
    if sampler not in (None, SAMPLER):
        raise ValueError(f"unknown sampler {sampler!r} for {MODEL_NAME}, expected {SAMPLER!r}")
    return stages.quantize(degrade(clean, p, rng), bit_depth)


def degrade_stages(clean: np.ndarray, p: UnprocessParams,
                   rng: np.random.Generator) -> Iterator[tuple[str, np.ndarray]]:
    """(label, sRGB-viewable image) after each step, for `lowsim preview`; the last equals `degrade`."""
    yield "original", stages.to_float(clean)
    raw = unprocess(clean, p) * np.float32(p.darkening)
    yield "unprocessed, darkened (shown processed)", process(raw, p)
    yield "+ shot and read noise", process(add_noise(raw, p, rng), p)
