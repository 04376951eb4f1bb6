"""The raw model's parameter distribution (`lowsim.raw/v1`, params schema 3): fitted to per-pair photon-transfer
results, or built from ELD's released camera parameters.

As ELD: log K is spread over the camera's gains, and the read and row noise follow log-linear relations with
log K (log σ = slope·log K + bias + N(0, sigma²)). Both are one multivariate normal over (log K, log σ_read,
log σ_row): the conditional of log σ given log K in a joint normal is exactly that line, with slope =
cov/var(log K). The noise block keeps its full covariance (never shrunk: the relation is the point); the other
parameters (Tukey shape, black offsets, exposure ratio, bright level) are independent normals in their
unconstrained coordinates. Camera constants (black and white level) are fixed. The relations are also written
out in the file's `info` for reading.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from lowsim.errors import LowsimError
from lowsim.params import RAW_MODEL, RAW_PARAM_NAMES, SCHEMA_VERSIONS, ParamDistribution, to_unconstrained

NOISE_NAMES = ("system_gain", "read_noise", "row_noise")
CAMERA_CONSTANTS = ("adc_black", "adc_white")
SAMPLED_NAMES = tuple(n for n in RAW_PARAM_NAMES if n not in CAMERA_CONSTANTS)
VARIANCE_FLOOR = 1e-6  # a parameter that never varied stays sampleable
ROW_NOISE_FLOOR = 1e-3  # DN: a pair without measurable row noise (log needs > 0)
GAUSSIAN_SHAPE = 0.1349  # the Tukey-lambda shape closest to a normal distribution


def log_linear(log_gain: np.ndarray, log_sigma: np.ndarray) -> dict[str, float]:
    """ELD's relation log σ = slope·log K + bias + N(0, sigma²) by least squares (slope 0 when K never varied)."""
    if len(log_gain) >= 3 and np.ptp(log_gain) > 1e-6:
        slope, bias = np.polyfit(log_gain, log_sigma, 1)
    else:
        slope, bias = 0.0, float(np.mean(log_sigma))
    residual = log_sigma - (slope * log_gain + bias)
    return {"slope": float(slope), "bias": float(bias), "sigma": float(np.std(residual))}


def relation_from_normal(mean: np.ndarray, cov: np.ndarray, j: int) -> dict[str, float]:
    """The log-linear relation of noise j on log K (index 0) implied by a joint normal."""
    slope = cov[0, j] / cov[0, 0]
    return {"slope": float(slope), "bias": float(mean[j] - slope * mean[0]),
            "sigma": float(np.sqrt(max(cov[j, j] - slope * cov[0, j], 0.0)))}


def block_normal(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) of unconstrained per-pair values: full covariance over the noise block, diagonal elsewhere."""
    mean = x.mean(axis=0)
    n, k = x.shape
    full = np.cov(x, rowvar=False, ddof=1).reshape(k, k) if n > 1 else np.zeros((k, k))
    noise = len(NOISE_NAMES)
    cov = np.diag(np.diag(full))
    cov[:noise, :noise] = full[:noise, :noise]
    return mean, cov + VARIANCE_FLOOR * np.eye(k)


def per_pair_values(rows: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Natural-unit values of every sampled parameter from the usable pairs (missing Tukey shapes imputed)."""
    values = {n: np.array([float(r[n]) for r in rows]) for n in SAMPLED_NAMES}
    values["row_noise"] = np.maximum(values["row_noise"], ROW_NOISE_FLOOR)
    shapes = values["read_shape"]
    known = np.isfinite(shapes)
    values["read_shape"] = np.where(known, shapes, np.mean(shapes[known]) if known.any() else GAUSSIAN_SHAPE)
    return values


def fit_raw_distribution(rows: Sequence[Mapping[str, Any]], camera: Mapping[str, float],
                         **meta: Any) -> ParamDistribution:
    """The raw distribution of the usable pairs' results; `camera` holds adc_black and adc_white."""
    if len(rows) < 2:
        raise LowsimError(f"need at least 2 usable raw pairs to fit a distribution, got {len(rows)}")
    values = per_pair_values(rows)
    x = np.column_stack([to_unconstrained(n, values[n]) for n in SAMPLED_NAMES])
    if not np.all(np.isfinite(x)):
        bad = [n for j, n in enumerate(SAMPLED_NAMES) if not np.all(np.isfinite(x[:, j]))]
        raise LowsimError(f"per-pair values out of range for {bad}; cannot fit a distribution")
    mean, cov = block_normal(x)
    info = {"read_noise_vs_gain": log_linear(x[:, 0], x[:, 1]), "row_noise_vs_gain": log_linear(x[:, 0], x[:, 2]),
            **meta.pop("info", {})}
    return ParamDistribution(names=list(SAMPLED_NAMES), mean=mean, cov=cov, fixed=dict(camera), n_pairs=len(rows),
                             model=RAW_MODEL, schema_version=SCHEMA_VERSIONS[RAW_MODEL], points=x, info=info,
                             **meta)


def _moments(name: str, values: Sequence[float]) -> tuple[float, float]:
    """(mean, variance) of a parameter's values in its unconstrained coordinate."""
    z = to_unconstrained(name, np.asarray(values, dtype=np.float64))
    return float(np.mean(z)), float(np.var(z))


def eld_distribution(eld: Mapping[str, Any], camera: Mapping[str, float], ratios: Sequence[float],
                     bright_levels: Sequence[float], **meta: Any) -> ParamDistribution:
    """The raw distribution of ELD's parameters for one camera (`eld`: its JSON with 'profile' = the profile used).

    ELD draws log K uniformly on [log Kmin, log Kmax]; this normal has that uniform's mean and variance.
    The read and row relations are ELD's exactly (g_scale: Gaussian read noise; R_scale: row noise).
    """
    low, high = np.log(eld["Kmin"]), np.log(eld["Kmax"])
    mean_k, var_k = (low + high) / 2.0, (high - low) ** 2 / 12.0
    lines = [eld["profile"]["g_scale"], eld["profile"]["R_scale"]]
    mean = [mean_k] + [line["slope"] * mean_k + line["bias"] for line in lines]
    noise_cov = np.empty((3, 3))
    slopes = [1.0] + [line["slope"] for line in lines]
    for i in range(3):
        for j in range(3):
            noise_cov[i, j] = slopes[i] * slopes[j] * var_k + (lines[i - 1]["sigma"] ** 2 if i == j > 0 else 0.0)
    offsets = np.asarray(eld["color_bias"], dtype=np.float64)  # ELD's order R, G1, B, G2
    others = {"read_shape": eld["G_shape"], "black_offset_r": offsets[:, 0], "black_offset_g1": offsets[:, 1],
              "black_offset_b": offsets[:, 2], "black_offset_g2": offsets[:, 3], "exposure_ratio": ratios,
              "bright_level": bright_levels}
    moments = [_moments(name, others[name]) for name in SAMPLED_NAMES[3:]]
    full_mean = np.array(mean + [m for m, _ in moments])
    cov = np.zeros((len(SAMPLED_NAMES), len(SAMPLED_NAMES)))
    cov[:3, :3] = noise_cov
    cov[3:, 3:] = np.diag([v for _, v in moments])
    cov += VARIANCE_FLOOR * np.eye(len(SAMPLED_NAMES))
    info = {"read_noise_vs_gain": relation_from_normal(full_mean, cov, 1),
            "row_noise_vs_gain": relation_from_normal(full_mean, cov, 2), **meta.pop("info", {})}
    return ParamDistribution(names=list(SAMPLED_NAMES), mean=full_mean, cov=cov, fixed=dict(camera), info=info,
                             model=RAW_MODEL, schema_version=SCHEMA_VERSIONS[RAW_MODEL], **meta)
