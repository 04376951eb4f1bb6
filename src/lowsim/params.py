"""The one parameter schema shared by `calibrate` and `generate`.

`DegradationParams` is one sample of the degradation model (see `lowsim.degrade`); `ParamDistribution`
is the multivariate normal over those parameters, fitted in an unconstrained space (log for positive,
scaled logit for bounded quantities) so that every sample is valid. Both are versioned by
`SCHEMA_VERSION`; a params file of another version is refused rather than guessed at.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from lowsim import __version__
from lowsim.errors import LowsimError

SCHEMA_VERSION = 1
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
SPECS_BY_NAME: dict[str, ParamSpec] = {s.name: s for s in PARAM_SPECS}


@dataclass(frozen=True)
class DegradationParams:
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

    def __post_init__(self) -> None:
        for spec in PARAM_SPECS:
            value = getattr(self, spec.name)
            if not isinstance(value, (int, float, np.floating, np.integer)) or not math.isfinite(value):
                raise LowsimError(f"parameter {spec.name} must be a finite number, got {value!r}")
            # log-transformed quantities must be > 0 except read noise, which may be exactly 0 (off)
            low_ok = value >= spec.low if spec.name in ("read_sigma", "illum_alpha", "black_level") \
                else value > spec.low
            if not (low_ok and value < spec.high):
                raise LowsimError(
                    f"parameter {spec.name} must lie in "
                    f"{'[' if spec.name in ('read_sigma', 'illum_alpha', 'black_level') else '('}"
                    f"{spec.low}, {spec.high}), got {value!r}")
            object.__setattr__(self, spec.name, float(value))

    @property
    def gains(self) -> np.ndarray:
        """Per-channel colour gains [w_r, w_g, w_b]."""
        return np.array([self.gain_r, self.gain_g, self.gain_b], dtype=np.float64)

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "DegradationParams":
        """Build from any mapping (a manifest row, a JSON object); extra keys are ignored."""
        missing = [n for n in PARAM_NAMES if n not in values]
        if missing:
            raise LowsimError(f"missing degradation parameters: {', '.join(missing)}")
        return cls(**{n: float(values[n]) for n in PARAM_NAMES})

    def to_vector(self, names: Sequence[str] = PARAM_NAMES) -> np.ndarray:
        return np.array([getattr(self, n) for n in names], dtype=np.float64)


def to_unconstrained(name: str, value: np.ndarray | float) -> np.ndarray:
    """Map a parameter from its valid range to the whole real line (log or scaled logit)."""
    spec = SPECS_BY_NAME[name]
    v = np.asarray(value, dtype=np.float64)
    if spec.transform == "log":
        return np.log(v)
    u = (v - spec.low) / (spec.high - spec.low)
    return np.log(u) - np.log1p(-u)


def from_unconstrained(name: str, value: np.ndarray | float) -> np.ndarray:
    """Inverse of `to_unconstrained`: every real number maps to a valid parameter value."""
    spec = SPECS_BY_NAME[name]
    z = np.asarray(value, dtype=np.float64)
    if spec.transform == "log":
        return np.exp(z)
    return spec.low + (spec.high - spec.low) / (1.0 + np.exp(-z))


@dataclass
class ParamDistribution:
    """A multivariate normal over some parameters (in unconstrained space); the rest are fixed."""

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

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float64)
        self.cov = np.asarray(self.cov, dtype=np.float64)
        self.validate()

    # -- validation -------------------------------------------------------------------------
    def validate(self, path: str | Path | None = None) -> None:
        """Raise LowsimError unless names, shapes, values and positive definiteness are all right."""
        unknown = [n for n in [*self.names, *self.fixed] if n not in SPECS_BY_NAME]
        if unknown:
            raise LowsimError(f"unknown parameter names {unknown}; expected some of {list(PARAM_NAMES)}", path)
        both = set(self.names) & set(self.fixed)
        if both:
            raise LowsimError(f"parameters {sorted(both)} are both sampled and fixed", path)
        absent = [n for n in PARAM_NAMES if n not in self.names and n not in self.fixed]
        if absent:
            raise LowsimError(f"parameters {absent} are neither sampled nor fixed", path)
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
        for name, value in self.fixed.items():
            DegradationParams.from_mapping({**DegradationParams().to_dict(), name: value})

    # -- sampling ---------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> DegradationParams:
        """Draw one valid parameter set; uses exactly `len(names)` standard normals from `rng`."""
        z = rng.standard_normal(len(self.names))
        values = self.mean + np.linalg.cholesky(self.cov) @ z if self.names else z
        out = dict(self.fixed)
        for name, v in zip(self.names, values):
            out[name] = float(from_unconstrained(name, v))
        return DegradationParams.from_mapping(out)

    def natural_mean(self) -> dict[str, float]:
        """The mean in natural units (the back-transformed unconstrained mean; a median for log)."""
        out = dict(self.fixed)
        out.update({n: float(from_unconstrained(n, m)) for n, m in zip(self.names, self.mean)})
        return out

    # -- fitting ----------------------------------------------------------------------------
    @classmethod
    def fit(cls, samples: Mapping[str, Sequence[float]], *, fixed: Mapping[str, float] | None = None,
            **meta: Any) -> "ParamDistribution":
        """Fit the normal to per-pair values (natural units), shrinking the covariance when pairs are few.

        Shrinkage is Ledoit–Wolf-type towards the diagonal of the sample covariance (the correlations are
        shrunk, the variances kept; intensity estimated on standardized values), so the result is
        positive definite even with fewer pairs than parameters. A small floor on each variance keeps a parameter that never varied sampleable.
        """
        fixed = dict(fixed or {})
        names = [n for n in PARAM_NAMES if n in samples and n not in fixed]
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
        return cls(names=names, mean=mean, cov=cov, fixed=fixed, n_pairs=n, shrinkage=float(shrink), **meta)

    # -- files ------------------------------------------------------------------------------
    def to_json_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "lowsim_version": self.lowsim_version,
            "model": "lowsim.degrade",
            "method": self.method,
            "source": self.source,
            "n_pairs": self.n_pairs,
            "names": list(self.names),
            "transforms": {n: SPECS_BY_NAME[n].transform for n in self.names},
            "bounds": {n: [SPECS_BY_NAME[n].low, _json_float(SPECS_BY_NAME[n].high)] for n in self.names},
            "mean": self.mean.tolist(),
            "cov": self.cov.tolist(),
            "shrinkage": self.shrinkage,
            "fixed": self.fixed,
            "natural_mean": self.natural_mean(),
            "excluded": self.excluded,
            **({"info": self.info} if self.info else {}),
        }

    def save(self, path: str | Path) -> Path:
        """Write the JSON atomically (temp file + rename)."""
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_json_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "ParamDistribution":
        """Read and validate a params file; every problem is a LowsimError naming the file."""
        path = Path(path)
        if not path.is_file():
            raise LowsimError("params file not found", path)
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise LowsimError(f"params file is not valid JSON ({err})", path) from None
        if not isinstance(data, dict):
            raise LowsimError("params file must hold a JSON object", path)
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise LowsimError(
                f"params schema version {version!r} is not supported; expected {SCHEMA_VERSION}", path)
        for key in ("names", "mean", "cov"):
            if key not in data:
                raise LowsimError(f"params file lacks the key {key!r}", path)
        transforms = data.get("transforms", {})
        for name in data["names"]:
            if name in SPECS_BY_NAME and transforms.get(name, SPECS_BY_NAME[name].transform) != SPECS_BY_NAME[name].transform:
                raise LowsimError(f"parameter {name} has transform {transforms[name]!r}, "
                                  f"expected {SPECS_BY_NAME[name].transform!r}", path)
        try:
            mean = np.asarray(data["mean"], dtype=np.float64)
            cov = np.asarray(data["cov"], dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise LowsimError(f"mean/cov are not numeric arrays ({err})", path) from None
        try:
            return cls(names=list(data["names"]), mean=mean, cov=cov, fixed=dict(data.get("fixed", {})),
                       n_pairs=int(data.get("n_pairs", 0)), excluded=list(data.get("excluded", [])),
                       method=str(data.get("method", "")), source=str(data.get("source", "")),
                       shrinkage=float(data.get("shrinkage", 0.0)),
                       info=dict(data.get("info", {})) if isinstance(data.get("info", {}), dict) else {},
                       lowsim_version=str(data.get("lowsim_version", "")), schema_version=version)
        except LowsimError as err:
            raise LowsimError(str(err), path) from None


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


def atomic_write_text(path: Path, text: str) -> None:
    """Write text via a temp file in the same directory and an atomic rename."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write bytes via a temp file in the same directory, fsync, then an atomic rename."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        raise LowsimError(f"cannot write ({err.strerror or err})", path) from None


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
