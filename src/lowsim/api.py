"""lowsim's Python API, the command line's twin: `lowsim.calibrate`, `lowsim.generate`, `lowsim.load_params`,
`lowsim.degrade`.

    import lowsim
    result = lowsim.calibrate("pairs/")                       # -> params/pairs.json, as `lowsim calibrate`
    data = lowsim.generate("photos/", 100, size=256)          # -> data/photos/, as `lowsim generate`
    draws = lowsim.load_params("lol").sample(4, seed=0)       # four parameter sets of the shipped calibration
    dark = lowsim.degrade(clean_uint8, draws[0], seed=1)      # uint8 in, uint8 out

`lowsim.calibrate`, `lowsim.generate` and `lowsim.degrade` are also the names of modules of this package, and
importing a submodule makes it the package's attribute. So those three modules are made callable (`callable_module`):
the attribute is the module, and calling it calls the function here. Defaults are the command line's (the
project folder convention, lowsim.project), without its printed notes.
"""
from __future__ import annotations

import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from lowsim.errors import LowsimError
from lowsim.project import default_dataset_dir, default_params_out, newest_params, shipped_params


def calibrate(pairs: str | Path, out: str | Path | None = None, *, layout: str = "auto", method: str = "isp",
              split: str = "all", seed: int = 0, workers: int = 0, downscale: float | None = None,
              report: str | Path | bool = True) -> Any:
    """Fit the degradation model on real pairs, as `lowsim calibrate`; returns lowsim.calibrate.CalibrationResult
    (`.distribution`, `.params_path`, `.rows`, ...). out: params/<pairs folder name>.json; report: True for the
    PNG beside `out`, a path, or False for none; workers 0: one process per CPU core."""
    from lowsim.calibrate import run_calibration

    out = default_params_out(Path(pairs)) if out is None else Path(out)
    if out.suffix.lower() != ".json":
        raise LowsimError("out must name a .json file", out)
    report_path = out.with_suffix(".png") if report is True else (Path(report) if report else None)
    source = f"lowsim.calibrate({str(pairs)!r}, layout={layout!r}, method={method!r}, split={split!r}, seed={seed})"
    return run_calibration(pairs, out, layout=layout, method=method, report=report_path, split=split, seed=seed,
                           workers=workers or os.cpu_count() or 1, source=source, downscale=downscale)


def generate(src: str | Path | None, n: int, *, params: str | Path | None = None, out: str | Path | None = None,
             manifest: str | Path | None = None, progress: bool = False, data_format: str = "imagefolder",
             **options: Any) -> Any:
    """Degrade clean photos into a dataset, as `lowsim generate`; returns lowsim.generate.GenerateResult
    (`.out`, `.manifest`, `.rows`, ...). src None: scikit-image's sample photos; params: a file or a shipped name
    (`lol`), default the project's newest params/*.json, else `lol`; out: data/<src folder name>. Other options
    are the command's (size, seed, workers, bit_depth, split_fractions, backend, model, sampler, ...);
    data_format "webdataset" also writes tar shards (lowsim.webdataset)."""
    from lowsim.generate.driver import generate as run

    if data_format not in ("imagefolder", "webdataset"):
        raise LowsimError(f"data_format must be imagefolder or webdataset, got {data_format!r}")
    params_path = _params_path(params)
    out = default_dataset_dir(None if src is None else Path(src)) if out is None else Path(out)
    result = run(src=None if src is None else Path(src), n=n, params=params_path, out=out,
                 manifest=None if manifest is None else Path(manifest), progress=progress, **options)
    if data_format == "webdataset":
        from lowsim.webdataset import write_shards

        write_shards(result.manifest)
    return result


def _params_path(params: str | Path | None) -> Path:
    """A params file, a shipped one by name, or the project's default, quietly."""
    if params is None:
        return newest_params() or shipped_params("lol")
    path = Path(params)
    if path.is_file() or path.suffix or len(path.parts) > 1:
        return path
    return shipped_params(str(path))


@dataclass
class Params:
    """A fitted parameter distribution (a params JSON): `sample(n, seed)` draws parameter sets for `degrade`."""

    distribution: Any  # lowsim.params.ParamDistribution
    path: Path

    @property
    def model(self) -> str:
        return self.distribution.model

    @property
    def names(self) -> list[str]:
        """Every parameter of the model, sampled or fixed."""
        return [*self.distribution.names, *self.distribution.fixed]

    def mean(self) -> dict[str, float]:
        """The distribution's mean in natural units."""
        return self.distribution.natural_mean()

    def sample(self, n: int = 1, seed: int = 0) -> list[Any]:
        """n parameter sets (DegradationParams or IspParams; `.to_dict()` for plain values), reproducible by seed."""
        if n < 0:
            raise LowsimError(f"n must be >= 0, got {n}")
        rng = np.random.default_rng(seed)
        return [self.distribution.sample(rng) for _ in range(n)]


def load_params(path: str | Path) -> Params:
    """Read a params JSON (or a shipped one by name: `lol`, `lol-v1`)."""
    from lowsim.params import ParamDistribution

    resolved = _params_path(path)
    return Params(ParamDistribution.load(resolved), resolved)


def degrade(image: np.ndarray, params: Any, seed: int = 0) -> np.ndarray:
    """Darken one clean (H, W, 3) image (or (H, W) gray) as `lowsim generate` does a sample.

    params: one parameter set (from `Params.sample`), a Params / params file / shipped name (one set is drawn
    with `seed`), or a mapping of values with `model` naming the model. Returns the input's dtype: uint8 ->
    8-bit codes, uint16 -> 16-bit codes, float (in [0, 1]) -> the 16-bit codes as float32 in [0, 1]. The raw model
    (`sony_a7s2`, …) returns the packed dark raw frame instead: (H/2, W/2, 4) uint16 codes, black level included."""
    from lowsim.degradation.registry import get_model

    clean = _as_rgb(image)
    params_rng, noise_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    draw = _one_parameter_set(params, params_rng, clean)
    bit_depth = 8 if clean.dtype == np.uint8 else 16
    dark = get_model(draw.model).degrade_to_codes(clean, draw, noise_rng, bit_depth)
    if np.issubdtype(image.dtype, np.floating) and dark.ndim == clean.ndim and dark.shape[2] == 3:
        return (dark.astype(np.float32) / np.float32(65535)).astype(np.float32)
    return dark


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8/uint16/float32 in [0, 1]; gray is replicated, an alpha channel dropped."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise LowsimError(f"expected an (H, W, 3) or (H, W) image, got shape {image.shape}")
    image = image[..., :3]
    if image.dtype in (np.uint8, np.uint16):
        return np.ascontiguousarray(image)
    if not np.issubdtype(image.dtype, np.floating):
        raise LowsimError(f"expected a uint8, uint16 or float image, got {image.dtype}")
    return np.ascontiguousarray(np.clip(image, 0.0, 1.0), dtype=np.float32)


def _one_parameter_set(params: Any, rng: np.random.Generator, photo: np.ndarray) -> Any:
    """A parameter set as given, or drawn for `photo` from a distribution (Params, file, shipped name)."""
    from lowsim.params import DegradationParams, IspParams, RawParams, params_from_mapping

    if isinstance(params, (DegradationParams, IspParams, RawParams)):
        return params
    if isinstance(params, Mapping):
        values = dict(params)
        model = values.pop("model", None)
        if model is None:
            raise LowsimError("a mapping of parameter values needs `model` (e.g. 'v2')")
        from lowsim.degradation.registry import get_model

        return params_from_mapping(get_model(str(model)).name, values)
    dist = params if isinstance(params, Params) else load_params(params)
    return dist.distribution.sample_for_photo(rng, photo)[0]


class _CallableModule(types.ModuleType):
    """A module that is also this API's function of the same name (see the module docstring)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return globals()[self.__name__.rsplit(".", 1)[-1]](*args, **kwargs)


def callable_module(name: str) -> None:
    """Make the module `name` (lowsim.calibrate, lowsim.generate, lowsim.degrade) callable as the function here."""
    sys.modules[name].__class__ = _CallableModule
