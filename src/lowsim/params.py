"""The one parameter schema shared by `calibrate` and `generate`.

Three models share this module: `lowsim.degrade/v1` (the founding paper's sRGB chain,
`DegradationParams`, `PARAM_SPECS`), `lowsim.degrade/v2` (the ISP-structured chain of
`lowsim.degradation.v2`, `IspParams`, `V2_PARAM_SPECS`) and `lowsim.raw/v1` (raw-domain noise in DN,
`lowsim.raw`, `RawParams`, `RAW_PARAM_SPECS`). Each model's parameters are declared once here, as
`ParamSpec`s: adding a parameter means one spec (and one stage function that uses it).

`ParamDistribution` is the distribution over one model's parameters: a multivariate normal in an
unconstrained space (log for positive, scaled logit for bounded quantities) so that every sample is valid,
or (`sampler="empirical"`) the accepted per-pair fits resampled with a small Gaussian jitter. A v2 file may
carry an `ExposureAnchor`: a draw's exposure then follows the metered light of the photo it darkens
(`ParamDistribution.sample_for_photo`), as an auto-exposure camera's would. Files are
versioned (`SCHEMA_VERSIONS`: 1 is v1, 2 is v2, 3 the raw model); a file of an unknown version is refused, not guessed at.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Mapping, Sequence

import numpy as np

from lowsim import __version__
from lowsim.errors import LowsimError
from lowsim.safe_io import atomic_write_bytes, atomic_write_text  # noqa: F401 - re-exported for callers

V1_MODEL = "lowsim.degrade/v1"
V2_MODEL = "lowsim.degrade/v2"
RAW_MODEL = "lowsim.raw/v1"
UNPROCESS_MODEL = "lowsim.unprocess/v1"  # Brooks et al. 2019's unprocessing recipe (lowsim.recipes.unprocessing)
GENERIC_MODEL = "lowsim.generic/v1"  # albumentations darkening and noise (lowsim.recipes.generic)
SCHEMA_VERSION = 1  # of v1 params files (kept: v1 files stay readable and regenerate exactly)
SCHEMA_VERSIONS = {V1_MODEL: 1, V2_MODEL: 2, RAW_MODEL: 3, UNPROCESS_MODEL: 4, GENERIC_MODEL: 5}
MODEL_OF_VERSION = {v: m for m, v in SCHEMA_VERSIONS.items()}
SAMPLERS = ("normal", "empirical")
Transform = Literal["log", "logit"]


@dataclass(frozen=True)
class ParamSpec:
    """How one parameter is bounded, transformed for the normal fit, and what it means."""

    name: str
    transform: Transform
    low: float  # inclusive lower bound of a valid value
    high: float  # exclusive upper bound (inf for log-transformed ones)
    doc: str


# Order matters: it is the order of the mean vector and covariance rows in every params file.
PARAM_SPECS: tuple[ParamSpec, ...] = (
    ParamSpec("illum_alpha", "logit", 0.0, 2.0,
              "seed 002 illumination L = a*I^g + 1 - a; 0 = no change, >1 lets dark parts reach zero"),
    ParamSpec("illum_gamma", "log", 0.0, math.inf, "exponent g of the illumination map"),
    ParamSpec("black_level", "logit", 0.0, 1.0, "BL: max(B - bl, 0), bl as a fraction of full scale"),
    ParamSpec("gain_r", "log", 0.0, math.inf, "CD: red channel gain w_r"),
    ParamSpec("gain_g", "log", 0.0, math.inf, "CD: green channel gain w_g"),
    ParamSpec("gain_b", "log", 0.0, math.inf, "CD: blue channel gain w_b"),
    ParamSpec("photon_scale", "log", 0.0, math.inf,
              "PN: photons at full scale; shot noise is Poisson(x*scale)/scale (the paper fixed it at 1)"),
    ParamSpec("read_sigma", "log", 0.0, math.inf, "PN: Gaussian read noise std, fraction of full scale"),
    ParamSpec("gamma", "log", 0.0, math.inf, "GC: x^(1/gamma); gamma < 1 darkens the shadows"),
)
PARAM_NAMES: tuple[str, ...] = tuple(s.name for s in PARAM_SPECS)

# v2: the ISP-structured model (lowsim.degradation.v2). Identifiable, roughly normal coordinates: log
# exposure and log system gain instead of per-channel gains and a photon scale that runs to its bound.
V2_PARAM_SPECS: tuple[ParamSpec, ...] = (
    ParamSpec("illum_alpha", "logit", 0.0, 2.0,
              "seed 002 illumination L = a*I^g + 1 - a on linear light; 0 = no change"),
    ParamSpec("illum_gamma", "log", 0.0, math.inf, "exponent g of the illumination map"),
    ParamSpec("exposure", "log", 0.0, math.inf, "linear exposure drop (green channel), e.g. 0.05 = 1/20"),
    ParamSpec("cast_r", "log", 0.0, math.inf, "red gain relative to green after white balance (colour cast)"),
    ParamSpec("cast_b", "log", 0.0, math.inf, "blue gain relative to green after white balance"),
    ParamSpec("shot_gain", "log", 0.0, math.inf,
              "system gain K: full-scale units per photo-electron; shot variance = K * signal"),
    ParamSpec("read_sigma", "log", 0.0, math.inf, "Gaussian read noise sd on the raw mosaic (full scale = 1)"),
    ParamSpec("row_sigma", "log", 0.0, math.inf, "row (banding) noise sd on the raw mosaic, one draw per row"),
    ParamSpec("black_level", "logit", 0.0, 1.0,
              "black level over-subtracted by the ISP after demosaicing (linear): crushes the darkest noise"),
    ParamSpec("chroma_nr", "logit", 0.0, 1.0,
              "strength of the camera's chroma noise reduction (0 off, 1 chroma fully blurred)"),
    ParamSpec("sharpen", "logit", 0.0, 8.0, "amount of the camera's unsharp-mask sharpening (0 off)"),
    ParamSpec("tone_gamma", "log", 0.0, math.inf, "output tone curve x^(1/tone_gamma) on linear values"),
    ParamSpec("downscale", "log", 0.0, math.inf,
              "sensor pixels per image pixel along a side: the camera's image was resized by this (>= 1)"),
    ParamSpec("out_black", "logit", 0.0, 1.0,
              "black point of the final (resized) image, fraction of full scale: (x - b) / (1 - b), darker "
              "values crushed to 0 (the output tone curve's toe); 0 = off"),
    # 101 is the exclusive bound, so 100 is valid; whole numbers only and never sampled (INTEGER_VALUED)
    ParamSpec("jpeg_quality", "logit", 0.0, 101.0,
              "quality (1-100, libjpeg's scale) of the camera's JPEG of its 8-bit output image; 0 = off"),
    # Per shot, as an auto-white-balance camera sets them: they amplify the raw R and B noise with the signal
    ParamSpec("wb_red", "log", 0.0, math.inf,
              "white-balance gain the ISP applies to raw red (green = 1); the inverse is applied on the way in"),
    ParamSpec("wb_blue", "log", 0.0, math.inf, "white-balance gain the ISP applies to raw blue (green = 1)"),
)
V2_PARAM_NAMES: tuple[str, ...] = tuple(s.name for s in V2_PARAM_SPECS)

# The raw model (lowsim.raw): a camera's raw noise in its own digital numbers (DN above the black level), as
# ELD (Wei et al. 2020) models it, plus the exposure of a raw pair. Names differ from v2's on purpose: v2's
# shot_gain and read_sigma are in full-scale units, these in DN.
RAW_PARAM_SPECS: tuple[ParamSpec, ...] = (
    ParamSpec("system_gain", "log", 0.0, math.inf, "system gain K in DN per photo-electron; shot variance = K * signal"),
    ParamSpec("read_noise", "log", 0.0, math.inf, "read-noise sd in DN (Tukey-lambda of shape read_shape)"),
    ParamSpec("row_noise", "log", 0.0, math.inf, "row (banding) noise sd in DN, one draw per sensor row"),
    ParamSpec("read_shape", "logit", -0.45, 0.5,
              "Tukey-lambda shape of the read noise (0.14 ~ Gaussian, < 0 heavier tails)"),
    ParamSpec("black_offset_r", "logit", -64.0, 64.0, "mean of the red sites' dark signal minus black, DN"),
    ParamSpec("black_offset_g1", "logit", -64.0, 64.0, "same for the green sites on the red rows, DN"),
    ParamSpec("black_offset_b", "logit", -64.0, 64.0, "same for the blue sites, DN"),
    ParamSpec("black_offset_g2", "logit", -64.0, 64.0, "same for the green sites on the blue rows, DN"),
    ParamSpec("exposure_ratio", "logit", 1.0, 1000.0, "long / short exposure time of a pair (SID: 100-300)"),
    ParamSpec("bright_level", "logit", 0.0, 1.0,
              "mean green signal of the long exposure, a fraction of white - black"),
    ParamSpec("adc_black", "logit", 0.0, 65535.0, "the camera's black level, DN (a camera constant)"),
    ParamSpec("adc_white", "logit", 1.0, 65536.0, "the camera's white (saturation) level, DN (a camera constant)"),
)
RAW_PARAM_NAMES: tuple[str, ...] = tuple(s.name for s in RAW_PARAM_SPECS)

# Brooks et al. 2019 (Unprocessing Images for Learned Raw Denoising), with its own names (its shot/read noise
# are variance coefficients, not v2's sd): sampled from published ranges (lowsim/data/params/unprocessing.json).
UNPROCESS_PARAM_SPECS: tuple[ParamSpec, ...] = (
    *(ParamSpec(f"ccm_weight_{k}", "logit", 0.0, 1.0, f"weight of the paper's camera matrix {k} in the random "
                "convex combination (the four weights sum to 1)") for k in range(1, 5)),
    ParamSpec("rgb_gain", "log", 0.0, math.inf, "brightness gain the inverse white balance divides by"),
    ParamSpec("red_gain", "log", 0.0, math.inf, "white-balance gain of the red channel"),
    ParamSpec("blue_gain", "log", 0.0, math.inf, "white-balance gain of the blue channel"),
    ParamSpec("darkening", "log", 0.0, math.inf,
              "linear exposure drop on the raw mosaic (lowsim's addition: unprocessing itself does not darken)"),
    ParamSpec("shot_variance", "log", 0.0, math.inf,
              "shot noise: variance = shot_variance * signal (raw, full scale 1)"),
    ParamSpec("read_variance", "log", 0.0, math.inf, "read noise variance (raw, full scale 1)"),
)
UNPROCESS_PARAM_NAMES: tuple[str, ...] = tuple(s.name for s in UNPROCESS_PARAM_SPECS)
# The generic recipe's only drawn parameter is the seed of albumentations' Compose; what albumentations then
# draws while applying is recorded beside it (GENERIC_APPLIED_NAMES) and checked by regenerate.
GENERIC_PARAM_SPECS: tuple[ParamSpec, ...] = (
    ParamSpec("albumentations_seed", "logit", 0.0, float(2 ** 31), "seed of the albumentations Compose"),
)
GENERIC_APPLIED_NAMES: tuple[str, ...] = ("generic_gamma", "generic_contrast", "generic_brightness",
                                          "iso_color_shift", "iso_intensity", "iso_seed", "gauss_noise_sd")
MODEL_SPECS: dict[str, tuple[ParamSpec, ...]] = {V1_MODEL: PARAM_SPECS, V2_MODEL: V2_PARAM_SPECS,
                                                 RAW_MODEL: RAW_PARAM_SPECS, UNPROCESS_MODEL: UNPROCESS_PARAM_SPECS,
                                                 GENERIC_MODEL: GENERIC_PARAM_SPECS}
SPECS_BY_NAME: dict[str, ParamSpec] = {s.name: s for s in PARAM_SPECS}
V2_SPECS_BY_NAME: dict[str, ParamSpec] = {s.name: s for s in V2_PARAM_SPECS}
RAW_SPECS_BY_NAME: dict[str, ParamSpec] = {s.name: s for s in RAW_PARAM_SPECS}
RECIPE_SPECS_BY_NAME: dict[str, ParamSpec] = {s.name: s for s in (*UNPROCESS_PARAM_SPECS, *GENERIC_PARAM_SPECS)}
# Every parameter column a manifest may carry (v1's, then v2's new ones, the raw model's, the recipes'), in a
# stable order.
ALL_PARAM_NAMES: tuple[str, ...] = (*PARAM_NAMES, *[n for n in V2_PARAM_NAMES if n not in PARAM_NAMES],
                                    *RAW_PARAM_NAMES, *UNPROCESS_PARAM_NAMES,
                                    *(s.name for s in GENERIC_PARAM_SPECS), *GENERIC_APPLIED_NAMES)
ZERO_ALLOWED = {"read_sigma", "row_sigma", "illum_alpha", "black_level", "chroma_nr", "sharpen", "out_black",
                "jpeg_quality", "read_noise", "row_noise", "adc_black", "albumentations_seed"}  # may be exactly 0 (off)


# Whole-number settings (a JPEG quality): a normal or a jitter would make them fractional, so a params file
# fixes them (one value for every draw, as a camera has one quality setting) and never samples them.
INTEGER_VALUED = {"jpeg_quality"}


def specs_of(model: str) -> dict[str, ParamSpec]:
    """The parameter specs of a model by name; LowsimError for an unknown model."""
    if model not in MODEL_SPECS:
        raise LowsimError(f"unknown degradation model {model!r}; expected one of {sorted(MODEL_SPECS)}")
    return {s.name: s for s in MODEL_SPECS[model]}


def check_value(spec: ParamSpec, value: Any) -> float:
    """The value as a float if it is finite and inside the spec's range, else LowsimError."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not math.isfinite(value):
        raise LowsimError(f"parameter {spec.name} must be a finite number, got {value!r}")
    zero_ok = spec.name in ZERO_ALLOWED
    if not ((value >= spec.low if zero_ok else value > spec.low) and value < spec.high):
        raise LowsimError(f"parameter {spec.name} must lie in {'[' if zero_ok else '('}"
                          f"{spec.low}, {spec.high}), got {value!r}")
    if spec.name in INTEGER_VALUED and value != math.floor(value):
        raise LowsimError(f"parameter {spec.name} must be a whole number, got {value!r}")
    return float(value)


# Values no calibration produces (at or beyond calibrate's search bounds): a params file whose mean, fixed
# values or per-pair points go past them is broken, and the degradation would overflow (exp to
# inf, a gain that saturates every pixel into a constant channel). `load` refuses it with one line.
PLAUSIBLE_MAX: dict[str, float] = {
    "gain_r": 1e4, "gain_g": 1e4, "gain_b": 1e4, "exposure": 1e4, "cast_r": 1e4, "cast_b": 1e4,
    "photon_scale": 1e12, "shot_gain": 1e3, "read_sigma": 10.0, "row_sigma": 10.0,
    "illum_gamma": 1e3, "gamma": 1e3, "tone_gamma": 1e3, "downscale": 64.0, "wb_red": 1e3, "wb_blue": 1e3,
}


def check_plausible(name: str, value: float, where: str) -> None:
    """LowsimError when a parameter is not finite or beyond PLAUSIBLE_MAX (`where` says whose value it is)."""
    limit = PLAUSIBLE_MAX.get(name, math.inf)
    if not math.isfinite(value) or value > limit:
        raise LowsimError(f"parameter {name} = {value:.4g} ({where}) is beyond its plausible maximum "
                          f"{limit:g}: it would overflow or saturate every pixel; the params file is broken")


def check_plausible_file(dist: "ParamDistribution") -> None:
    """check_plausible on the fixed values, the mean of each sampled parameter and the per-pair points."""
    for name, value in dist.fixed.items():
        check_plausible(name, float(value), "fixed")
    for k, name in enumerate(dist.names):
        check_plausible(name, float(from_unconstrained(name, dist.mean[k])), "the distribution's mean")
        if dist.points is not None and len(dist.points):
            check_plausible(name, float(from_unconstrained(name, dist.points[:, k].max())), "a per-pair fit")


class _SchemaParams:
    """What both models' parameter classes share: validation against their specs, dict and mapping I/O."""

    _specs: ClassVar[tuple[ParamSpec, ...]] = ()
    _label: ClassVar[str] = ""  # names the parameters in the "missing" error
    # Parameters added to a schema after files and manifests were written with it, with the value that turns
    # their stage off (or the constant it replaced): a mapping (row, params file) without one gets it, so what
    # it made is made again.
    _added: ClassVar[Mapping[str, float]] = {}

    def __post_init__(self) -> None:
        for spec in self._specs:
            object.__setattr__(self, spec.name, check_value(spec, getattr(self, spec.name)))

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Any:
        """Build from any mapping (a manifest row, a JSON object); extra keys are ignored."""
        names = [s.name for s in cls._specs]
        values = {**values, **{n: v for n, v in cls._added.items() if values.get(n) is None}}
        missing = [n for n in names if n not in values]
        if missing:
            raise LowsimError(f"missing {cls._label} parameters: {', '.join(missing)}")
        return cls(**{n: float(values[n]) for n in names})


@dataclass(frozen=True)
class DegradationParams(_SchemaParams):
    """One draw of the degradation model, in its natural (constrained) units."""

    illum_alpha: float = 0.0
    illum_gamma: float = 1.0
    black_level: float = 0.0
    gain_r: float = 1.0
    gain_g: float = 1.0
    gain_b: float = 1.0
    photon_scale: float = 1000.0
    read_sigma: float = 0.0
    gamma: float = 1.0

    model = V1_MODEL
    _specs = PARAM_SPECS
    _label = "degradation"

    @property
    def gains(self) -> np.ndarray:
        """Per-channel colour gains [w_r, w_g, w_b]."""
        return np.array([self.gain_r, self.gain_g, self.gain_b], dtype=np.float64)

    def to_vector(self, names: Sequence[str] = PARAM_NAMES) -> np.ndarray:
        return np.array([getattr(self, n) for n in names], dtype=np.float64)


@dataclass(frozen=True)
class IspParams(_SchemaParams):
    """One draw of the ISP-structured model v2 (`lowsim.degradation.v2`), in natural units."""

    illum_alpha: float = 0.0
    illum_gamma: float = 1.0
    exposure: float = 0.1
    cast_r: float = 1.0
    cast_b: float = 1.0
    shot_gain: float = 1e-3
    read_sigma: float = 1e-3
    row_sigma: float = 0.0
    black_level: float = 0.0
    chroma_nr: float = 0.0
    sharpen: float = 0.0
    tone_gamma: float = 2.2
    downscale: float = 1.0
    out_black: float = 0.0
    jpeg_quality: float = 0.0
    wb_red: float = 2.0
    wb_blue: float = 1.6

    model = V2_MODEL
    _specs = V2_PARAM_SPECS
    _label = V2_MODEL
    # the white-balance gains were the camera constants [2.0, 1, 1.6] before they became parameters
    _added = {"out_black": 0.0, "jpeg_quality": 0.0, "wb_red": 2.0, "wb_blue": 1.6}

    @property
    def cast(self) -> np.ndarray:
        """Per-channel gains after white balance, green = 1: [cast_r, 1, cast_b]."""
        return np.array([self.cast_r, 1.0, self.cast_b], dtype=np.float64)

    @property
    def white_balance(self) -> np.ndarray:
        """The ISP's white-balance gains on raw R, G, B: [wb_red, 1, wb_blue]."""
        return np.array([self.wb_red, 1.0, self.wb_blue], dtype=np.float64)


@dataclass(frozen=True)
class RawParams(_SchemaParams):
    """One draw of the raw model (`lowsim.raw`): noise in DN and a pair's exposure, in natural units."""

    system_gain: float = 1.0
    read_noise: float = 2.0
    row_noise: float = 0.0
    read_shape: float = 0.14
    black_offset_r: float = 0.0
    black_offset_g1: float = 0.0
    black_offset_b: float = 0.0
    black_offset_g2: float = 0.0
    exposure_ratio: float = 100.0
    bright_level: float = 0.2
    adc_black: float = 512.0
    adc_white: float = 16383.0

    model = RAW_MODEL
    _specs = RAW_PARAM_SPECS
    _label = RAW_MODEL

    @property
    def black_offsets(self) -> np.ndarray:
        """Per-colour black offsets in SID's packing order R, G1, B, G2 (DN)."""
        return np.array([self.black_offset_r, self.black_offset_g1, self.black_offset_b, self.black_offset_g2])


@dataclass(frozen=True)
class UnprocessParams(_SchemaParams):
    """One draw of Brooks et al.'s unprocessing recipe (`lowsim.recipes.unprocessing`), in natural units."""

    ccm_weight_1: float = 0.25
    ccm_weight_2: float = 0.25
    ccm_weight_3: float = 0.25
    ccm_weight_4: float = 0.25
    rgb_gain: float = 1.25
    red_gain: float = 2.15
    blue_gain: float = 1.7
    darkening: float = 0.1
    shot_variance: float = 1e-3
    read_variance: float = 1e-5

    model = UNPROCESS_MODEL
    _specs = UNPROCESS_PARAM_SPECS
    _label = UNPROCESS_MODEL

    @property
    def ccm_weights(self) -> np.ndarray:
        """The four camera matrices' weights."""
        return np.array([self.ccm_weight_1, self.ccm_weight_2, self.ccm_weight_3, self.ccm_weight_4])


@dataclass(frozen=True)
class GenericParams(_SchemaParams):
    """One draw of the generic albumentations recipe (`lowsim.recipes.generic`): the seed of its Compose."""

    albumentations_seed: float = 0.0

    model = GENERIC_MODEL
    _specs = GENERIC_PARAM_SPECS
    _label = GENERIC_MODEL


PARAMS_CLASSES: dict[str, type] = {V1_MODEL: DegradationParams, V2_MODEL: IspParams, RAW_MODEL: RawParams,
                                   UNPROCESS_MODEL: UnprocessParams, GENERIC_MODEL: GenericParams}
# shared names have equal specs
ALL_SPECS: dict[str, ParamSpec] = {**SPECS_BY_NAME, **V2_SPECS_BY_NAME, **RAW_SPECS_BY_NAME, **RECIPE_SPECS_BY_NAME}


def params_from_mapping(model: str, values: Mapping[str, Any]) -> "DegradationParams | IspParams | RawParams":
    """The model's parameter object from a mapping (a manifest row, a JSON object)."""
    specs_of(model)
    return PARAMS_CLASSES[model].from_mapping(values)


def to_unconstrained(name: str, value: np.ndarray | float) -> np.ndarray:
    """Map a parameter from its valid range to the whole real line (log or scaled logit)."""
    spec = ALL_SPECS[name]
    v = np.asarray(value, dtype=np.float64)
    if spec.transform == "log":
        return np.log(v)
    u = (v - spec.low) / (spec.high - spec.low)
    return np.log(u) - np.log1p(-u)


def from_unconstrained(name: str, value: np.ndarray | float) -> np.ndarray:
    """Inverse of `to_unconstrained`: every real number maps to a valid parameter value."""
    spec = ALL_SPECS[name]
    z = np.asarray(value, dtype=np.float64)
    if spec.transform == "log":
        with np.errstate(over="ignore"):  # inf is refused by check_plausible with a clear message
            return np.exp(z)
    return spec.low + (spec.high - spec.low) / (1.0 + np.exp(-z))


@dataclass(frozen=True)
class ExposureAnchor:
    """How a draw's exposure follows the metered light of the photo it darkens (an auto-exposure camera).

    A fixed exposure carries a photo's brightness into its dark image one to one; real dark images follow their
    scene's brightness far less (lol-dev: log dark light against log bright light has slope 0.25). A draw made
    for a scene of metered light k_draw, put on a photo of metered light k, gets its exposure multiplied by
    (k_draw / k)^(1 − slope); k is first clamped to the calibration scenes' range (no extrapolation).
    """

    slope: float  # d log(dark light) / d log(scene light) over the calibration pairs, in [0, 1]
    point_keys: tuple[float, ...]  # metered light of each per-pair fit's bright image, in `points` order

    @classmethod
    def of(cls, slope: float, point_keys: Sequence[float]) -> "ExposureAnchor":
        """The anchor of per-pair scene lights (positive) and a measured slope (clipped to [0, 1])."""
        return cls(slope=float(np.clip(slope, 0.0, 1.0)), point_keys=tuple(float(k) for k in point_keys))

    @functools.cached_property
    def reference(self) -> float:
        """The keys' geometric mean: the scene a draw of the normal sampler stands for."""
        return float(np.exp(np.mean(np.log(self.point_keys))))

    @property
    def low(self) -> float:
        """The calibration scenes' least metered light."""
        return min(self.point_keys)

    @property
    def high(self) -> float:
        """The calibration scenes' greatest metered light."""
        return max(self.point_keys)

    def factor(self, drawn_for: float, photo_light: float) -> float:
        """Exposure multiplier for a draw made for scene light `drawn_for`, put on a photo of `photo_light`."""
        photo = min(max(photo_light, self.low), self.high)
        return float((drawn_for / photo) ** (1.0 - self.slope))

    def validate(self, n_points: int | None) -> None:
        """LowsimError unless the slope and keys are usable and one key per point."""
        keys = np.asarray(self.point_keys, dtype=np.float64)
        if not 0.0 <= self.slope <= 1.0:
            raise LowsimError(f"exposure_anchor slope must be in [0, 1], got {self.slope}")
        if keys.size == 0 or not np.all(np.isfinite(keys)) or np.any(keys <= 0):
            raise LowsimError("exposure_anchor point_keys must be positive and finite")
        if n_points is not None and keys.size != n_points:
            raise LowsimError(f"exposure_anchor has {keys.size} point_keys for {n_points} points")

    def to_json_dict(self) -> dict[str, Any]:
        """The anchor as a params file stores it; reference and range are written for reading, derived on load."""
        return {"slope": self.slope, "reference": self.reference, "range": [self.low, self.high],
                "point_keys": list(self.point_keys)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ExposureAnchor":
        return cls(slope=float(data["slope"]), point_keys=tuple(float(k) for k in data["point_keys"]))


@dataclass
class ParamDistribution:
    """A distribution over one model's parameters (unconstrained space); the rest are fixed.

    `sampler="normal"`: the multivariate normal (mean, cov). `sampler="empirical"`: one of `points` (the
    accepted per-pair fits, unconstrained) chosen uniformly, plus N(0, jitter² · cov).
    """

    names: list[str]
    mean: np.ndarray  # unconstrained, shape (k,)
    cov: np.ndarray  # unconstrained, shape (k, k)
    fixed: dict[str, float] = field(default_factory=dict)
    n_pairs: int = 0
    excluded: list[dict[str, str]] = field(default_factory=list)
    method: str = "manual"
    source: str = ""
    shrinkage: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)  # free-form provenance (e.g. calibration summary)
    lowsim_version: str = __version__
    schema_version: int = SCHEMA_VERSION
    model: str = V1_MODEL
    sampler: str = "normal"
    points: np.ndarray | None = None  # (n, k) unconstrained per-pair fits, for the empirical sampler
    jitter: float = 0.25  # empirical sampler: sd of the jitter, as a fraction of the normal's sd
    exposure_anchor: ExposureAnchor | None = None  # None: the exposure is drawn as for any photo

    def __post_init__(self) -> None:
        added = getattr(PARAMS_CLASSES.get(self.model), "_added", {})
        # a file written before a parameter was added leaves it off (fixed), as every draw it made had it
        self.fixed = {**self.fixed, **{n: v for n, v in added.items() if n not in self.names and n not in self.fixed}}
        self.mean = np.asarray(self.mean, dtype=np.float64)
        self.cov = np.asarray(self.cov, dtype=np.float64)
        if self.points is not None:
            self.points = np.asarray(self.points, dtype=np.float64).reshape(-1, len(self.names))
        self.validate()

    # -- validation -------------------------------------------------------------------------
    def validate(self, path: str | Path | None = None) -> None:
        """Raise LowsimError unless names, shapes, values and positive definiteness are all right."""
        specs = specs_of(self.model)
        if SCHEMA_VERSIONS[self.model] != self.schema_version:
            raise LowsimError(f"model {self.model} goes with schema version {SCHEMA_VERSIONS[self.model]}, "
                              f"not {self.schema_version}", path)
        unknown = [n for n in [*self.names, *self.fixed] if n not in specs]
        if unknown:
            raise LowsimError(f"unknown parameter names {unknown} for {self.model}; "
                              f"expected some of {list(specs)}", path)
        sampled_integers = sorted(INTEGER_VALUED & set(self.names))
        if sampled_integers:
            raise LowsimError(f"parameters {sampled_integers} take whole numbers: a params file fixes them "
                              "('fixed'), it cannot sample them ('names')", path)
        both = set(self.names) & set(self.fixed)
        if both:
            raise LowsimError(f"parameters {sorted(both)} are both sampled and fixed", path)
        absent = [n for n in specs if n not in self.names and n not in self.fixed]
        if absent:
            raise LowsimError(f"parameters {absent} are neither sampled nor fixed", path)
        self._validate_arrays(path)
        for name, value in self.fixed.items():
            check_value(specs[name], value)

    def _validate_arrays(self, path: str | Path | None) -> None:
        """Shapes, finiteness, symmetry and positive definiteness of mean/cov; the sampler and its points."""
        k = len(self.names)
        if self.mean.shape != (k,):
            raise LowsimError(f"mean must have shape ({k},), got {self.mean.shape}", path)
        if self.cov.shape != (k, k):
            raise LowsimError(f"covariance must have shape ({k}, {k}), got {self.cov.shape}", path)
        if not np.all(np.isfinite(self.mean)) or not np.all(np.isfinite(self.cov)):
            raise LowsimError("mean and covariance must be finite (found NaN or inf)", path)
        if not np.allclose(self.cov, self.cov.T, rtol=1e-8, atol=1e-12):
            raise LowsimError("covariance must be symmetric", path)
        if k:
            try:
                np.linalg.cholesky(self.cov)
            except np.linalg.LinAlgError:
                raise LowsimError("covariance is not positive definite", path) from None
        if self.sampler not in SAMPLERS:
            raise LowsimError(f"unknown sampler {self.sampler!r}; expected one of {list(SAMPLERS)}", path)
        if self.sampler == "empirical" and (self.points is None or len(self.points) == 0):
            raise LowsimError("the empirical sampler needs the per-pair fits ('points'); "
                              "this file has none (re-calibrate, or use --sampler normal)", path)
        if self.points is not None and not np.all(np.isfinite(self.points)):
            raise LowsimError("per-pair points must be finite", path)
        if self.exposure_anchor is not None:
            if "exposure" not in specs_of(self.model):
                raise LowsimError(f"model {self.model} has no exposure to anchor", path)
            self.exposure_anchor.validate(None if self.points is None else len(self.points))

    def with_sampler(self, sampler: str | None) -> "ParamDistribution":
        """The same distribution drawn with another sampler (None keeps the file's)."""
        if sampler is None or sampler == self.sampler:
            return self
        return dataclasses.replace(self, sampler=sampler)

    # -- sampling ---------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator,
               scene_light: float | None = None) -> "DegradationParams | IspParams | RawParams":
        """Draw one valid parameter set from `rng` (normal: exactly `len(names)` standard normals).

        `scene_light` (`stages.metered_light` of the photo the draw will darken): with an exposure anchor, the
        exposure follows it; without one, or with None, the draw is the file's as it stands (same draws).
        """
        values, point = self._draw(rng)
        out = dict(self.fixed)
        for name, v in zip(self.names, values):
            out[name] = float(from_unconstrained(name, v))
            if not math.isfinite(out[name]):  # exp overflowed: a broken file that load() did not see
                check_plausible(name, out[name], "drawn from the distribution")
        anchor = self.exposure_anchor
        if anchor is not None and scene_light is not None:
            drawn_for = anchor.reference if point is None else anchor.point_keys[point]
            out["exposure"] *= anchor.factor(drawn_for, scene_light)
        return params_from_mapping(self.model, out)

    def sample_for_photo(self, rng: np.random.Generator,
                         photo: np.ndarray) -> tuple["DegradationParams | IspParams | RawParams", float | None]:
        """(one draw for darkening `photo`, the photo's meter reading or None): with an exposure anchor the
        exposure follows `stages.metered_light(photo)` (the whole frame, as the camera meters it)."""
        if self.exposure_anchor is None:
            return self.sample(rng), None
        from lowsim.degradation.stages import metered_light

        metered = metered_light(photo)
        return self.sample(rng, metered), metered

    def _draw(self, rng: np.random.Generator) -> tuple[np.ndarray, int | None]:
        """(unconstrained values, the per-pair point they were drawn around, None for the normal)."""
        if self.sampler == "empirical":
            point = int(rng.integers(len(self.points))) if self.names else None
            centre = self.points[point] if point is not None else self.mean
            z = rng.standard_normal(len(self.names))
            return (centre + self.jitter * (np.linalg.cholesky(self.cov) @ z) if self.names else z), point
        z = rng.standard_normal(len(self.names))
        return (self.mean + np.linalg.cholesky(self.cov) @ z if self.names else z), None

    def natural_mean(self) -> dict[str, float]:
        """The mean in natural units (the back-transformed unconstrained mean; a median for log)."""
        out = dict(self.fixed)
        out.update({n: float(from_unconstrained(n, m)) for n, m in zip(self.names, self.mean)})
        return out

    # -- fitting ----------------------------------------------------------------------------
    @classmethod
    def fit(cls, samples: Mapping[str, Sequence[float]], *, fixed: Mapping[str, float] | None = None,
            model: str = V1_MODEL, **meta: Any) -> "ParamDistribution":
        """Fit the normal to per-pair values (natural units), shrinking the covariance when pairs are few.

        Shrinkage is Ledoit–Wolf-type towards the diagonal of the sample covariance (the correlations are
        shrunk, the variances kept; intensity estimated on standardized values), so the result is
        positive definite even with fewer pairs than parameters. A small floor on each variance keeps a
        parameter that never varied sampleable. The per-pair points are kept for the empirical sampler.
        """
        fixed = dict(fixed or {})
        names = [n for n in specs_of(model) if n in samples and n not in fixed]
        x = np.column_stack([to_unconstrained(n, np.asarray(samples[n], float)) for n in names])
        if not np.all(np.isfinite(x)):
            bad = [n for j, n in enumerate(names) if not np.all(np.isfinite(x[:, j]))]
            raise LowsimError(f"per-pair values out of range for {bad}; cannot fit a distribution")
        n = x.shape[0]
        if n < 2:
            raise LowsimError(f"need at least 2 usable pairs to fit a distribution, got {n}")
        mean = x.mean(axis=0)
        xc = x - mean
        sample_cov = xc.T @ xc / n
        shrink = _ledoit_wolf_intensity(xc, sample_cov)
        target = np.diag(np.diag(sample_cov))
        cov = (1.0 - shrink) * sample_cov + shrink * target
        cov = cov * n / max(n - 1, 1)  # unbiased scale
        cov += np.eye(len(names)) * 1e-6  # variance floor: a constant parameter stays sampleable
        cov = 0.5 * (cov + cov.T)
        points = x if model != V1_MODEL else None  # v1 files keep their original layout
        return cls(names=names, mean=mean, cov=cov, fixed=fixed, n_pairs=n, shrinkage=float(shrink),
                   model=model, schema_version=SCHEMA_VERSIONS[model], points=points, **meta)

    # -- files ------------------------------------------------------------------------------
    def to_json_dict(self) -> dict[str, Any]:
        specs = specs_of(self.model)
        out = {
            "schema_version": self.schema_version,
            "lowsim_version": self.lowsim_version,
            "model": "lowsim.degrade" if self.model == V1_MODEL else self.model,
            "method": self.method,
            "source": self.source,
            "n_pairs": self.n_pairs,
            "names": list(self.names),
            "transforms": {n: specs[n].transform for n in self.names},
            "bounds": {n: [specs[n].low, _json_float(specs[n].high)] for n in self.names},
            "mean": self.mean.tolist(),
            "cov": self.cov.tolist(),
            "shrinkage": self.shrinkage,
            "fixed": self.fixed,
            "natural_mean": self.natural_mean(),
            "excluded": self.excluded,
            **({"info": self.info} if self.info else {}),
        }
        if self.model != V1_MODEL:
            out.update(sampler=self.sampler, jitter=self.jitter,
                       points=None if self.points is None else self.points.tolist())
        if self.exposure_anchor is not None:
            out["exposure_anchor"] = self.exposure_anchor.to_json_dict()
        return out

    def save(self, path: str | Path) -> Path:
        """Write the JSON atomically (temp file + rename)."""
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_json_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "ParamDistribution":
        """Read and validate a params file; every problem is a LowsimError naming the file."""
        path = Path(path)
        data = _read_json_object(path)
        try:
            dist = cls._from_json(data, path)
            check_plausible_file(dist)
        # a field of the wrong type or shape fails somewhere in numpy or the constructor: one message for all
        except (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError) as err:
            raise LowsimError(f"a field has the wrong type or shape ({type(err).__name__}: {err})", path) from None
        except LowsimError as err:
            if err.path is not None:
                raise
            raise LowsimError(str(err), path) from None
        return dist

    @classmethod
    def _from_json(cls, data: dict[str, Any], path: Path) -> "ParamDistribution":
        """The distribution a params file's JSON object describes (validated by the constructor)."""
        version = data.get("schema_version")
        if isinstance(version, bool) or not isinstance(version, int) or version not in MODEL_OF_VERSION:
            raise LowsimError(f"params schema version {version!r} is not supported; expected one of "
                              f"{sorted(MODEL_OF_VERSION)} ({', '.join(SCHEMA_VERSIONS)})", path)
        model = MODEL_OF_VERSION[version]
        for key in ("names", "mean", "cov"):
            if key not in data:
                raise LowsimError(f"params file lacks the key {key!r}", path)
        _check_transforms(data, specs_of(model), path)
        points = None if data.get("points") is None else np.asarray(data["points"], dtype=np.float64)
        info = data.get("info", {})
        anchor = data.get("exposure_anchor")
        return cls(names=list(data["names"]), mean=np.asarray(data["mean"], dtype=np.float64),
                   cov=np.asarray(data["cov"], dtype=np.float64), fixed=dict(data.get("fixed", {})),
                   n_pairs=int(data.get("n_pairs", 0)), excluded=list(data.get("excluded", [])),
                   method=str(data.get("method", "")), source=str(data.get("source", "")),
                   shrinkage=float(data.get("shrinkage", 0.0)), info=dict(info) if isinstance(info, dict) else {},
                   lowsim_version=str(data.get("lowsim_version", "")), schema_version=version,
                   model=model, sampler=str(data.get("sampler", "normal")), points=points,
                   jitter=float(data.get("jitter", 0.25)),
                   exposure_anchor=None if anchor is None else ExposureAnchor.from_json(anchor))


def _read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in a params file, or LowsimError naming the file and the problem."""
    if not path.is_file():
        raise LowsimError("params file not found", path)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise LowsimError(f"params file is not valid JSON ({err})", path) from None
    if not isinstance(data, dict):
        raise LowsimError("params file must hold a JSON object", path)
    return data


def _check_transforms(data: Mapping[str, Any], specs: Mapping[str, ParamSpec], path: Path) -> None:
    """A file's recorded transforms must be the ones the schema declares."""
    transforms = data.get("transforms", {})
    if not isinstance(transforms, dict) or not isinstance(data["names"], list):
        raise LowsimError("'names' must be a list and 'transforms' an object", path)
    for name in data["names"]:
        if name in specs and transforms.get(name, specs[name].transform) != specs[name].transform:
            raise LowsimError(f"parameter {name} has transform {transforms[name]!r}, "
                              f"expected {specs[name].transform!r}", path)


def _ledoit_wolf_intensity(xc: np.ndarray, sample_cov: np.ndarray) -> float:
    """Shrinkage intensity in [0, 1] of the correlations towards 0 (the variances are kept).

    Ledoit–Wolf's estimate for the diagonal target, computed on standardized values (Schäfer & Strimmer
    2005, target "D"): intensity = sum of the estimation variances of the off-diagonal correlations over
    the sum of their squares. Standardizing makes it scale-free; on raw values one parameter with a wide,
    heavy-tailed spread (e.g. a logit near its bound) dominates both sums and shrinks every correlation.
    """
    n = xc.shape[0]
    sd = np.sqrt(np.diag(sample_cov))
    xs = np.divide(xc, sd, out=np.zeros_like(xc), where=sd > 0)  # a constant column contributes nothing
    corr = xs.T @ xs / n
    outer = xs[:, :, None] * xs[:, None, :]
    var_corr = np.mean((outer - corr) ** 2, axis=0) / n  # estimation variance of each correlation
    off = ~np.eye(corr.shape[0], dtype=bool)
    signal = float(np.sum(corr[off] ** 2))
    if signal <= 0:
        return 1.0
    return float(np.clip(np.sum(var_corr[off]) / signal, 0.0, 1.0))


def _json_float(x: float) -> float | str:
    return x if math.isfinite(x) else "inf"


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
