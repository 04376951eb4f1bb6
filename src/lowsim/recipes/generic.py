"""The generic recipe: what a user who does not calibrate reaches for, an augmentation library's darkening and
camera-noise transforms with the ranges its documentation suggests (never tuned on LOL).

albumentations rather than kornia: kornia's transforms are torch tensors and lowsim (the data side) never imports
torch; albumentations works on numpy arrays, as lowsim's stages do. It is an optional extra
(`pip install 'lowsim[recipes]'`), imported only here and only when the recipe runs.

The one drawn parameter is the seed of the Compose (from the sample's own params stream); what albumentations then
draws while applying (gamma, contrast, brightness, the ISO noise's settings and seed, the Gaussian noise's sd) is
recorded in the manifest beside it, with the library's version, and `regenerate` checks both.
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from lowsim.degradation import stages
from lowsim.errors import LowsimError
from lowsim.params import GENERIC_MODEL, GenericParams

MODEL_NAME = GENERIC_MODEL
SAMPLER = "albumentations/v1"
SAMPLERS = (SAMPLER,)
INSTALL_HINT = "pip install 'lowsim[recipes]' (or pip install 'albumentations>=2.0.8,<2.1')"
# (transform, its arguments); p=1 always. The sources of each range are in docs/recipes.md:
# RandomGamma: the darkening half (gamma >= 1) of its docstring's example (50, 150);
# RandomBrightnessContrast: brightness the darkening half of its default (-0.2, 0.2); its contrast is a pure
#   multiplication (img * (1 + c)), and the one darkening knob a user would turn to make a dark image: 0.2-0.5x;
# ISONoise and GaussNoise: their docstrings' examples.
TRANSFORMS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("RandomGamma", {"gamma_limit": (100, 150)}),
    ("RandomBrightnessContrast", {"brightness_limit": (-0.2, 0.0), "contrast_limit": (-0.8, -0.5)}),
    ("ISONoise", {"color_shift": (0.01, 0.05), "intensity": (0.1, 0.5)}),
    ("GaussNoise", {"std_range": (0.1, 0.2)}),
)


def albumentations_module() -> Any:
    """The albumentations module, or LowsimError saying how to install it."""
    try:
        import albumentations
    except ImportError:
        raise LowsimError(f"--recipe generic needs albumentations, which is not installed: {INSTALL_HINT}") from None
    return albumentations


def library_version() -> str:
    """The installed albumentations version (recorded per sample; regenerate requires the same)."""
    return str(albumentations_module().__version__)


def build_compose(seed: int) -> Any:
    """A Compose of TRANSFORMS seeded with `seed`, recording the values it applies."""
    albu = albumentations_module()
    transforms = [getattr(albu, name)(**kwargs, p=1.0) for name, kwargs in TRANSFORMS]
    return albu.Compose(transforms, seed=seed, save_applied_params=True)


def applied_values(applied: list[tuple[str, dict[str, Any]]]) -> dict[str, float]:
    """The scalar values albumentations drew, by manifest column (the Gaussian noise as its realised sd)."""
    by_name = dict(applied)
    return {"generic_gamma": float(by_name["RandomGamma"]["gamma"]),
            "generic_contrast": float(by_name["RandomBrightnessContrast"]["alpha"]),
            "generic_brightness": float(by_name["RandomBrightnessContrast"]["beta"]),
            "iso_color_shift": float(by_name["ISONoise"]["color_shift"]),
            "iso_intensity": float(by_name["ISONoise"]["intensity"]),
            "iso_seed": float(by_name["ISONoise"]["random_seed"]),
            "gauss_noise_sd": float(np.std(by_name["GaussNoise"]["noise_map"], dtype=np.float64))}


def degrade(clean: np.ndarray, p: GenericParams) -> tuple[np.ndarray, dict[str, float]]:
    """(dark float32 in [0, 1], the values albumentations applied) for one image (float32 in, any depth)."""
    result = build_compose(int(p.albumentations_seed))(image=np.ascontiguousarray(stages.to_float(clean)))
    return np.clip(result["image"], 0.0, 1.0).astype(np.float32), applied_values(result["applied_transforms"])


def degrade_recorded(clean: np.ndarray, p: GenericParams, rng: np.random.Generator, bit_depth: int = 8,
                     sampler: str | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """(dark image at `bit_depth`, what to record: the applied values and the library version). `rng` is unused:
    albumentations draws from its own seeded generator."""
    if sampler not in (None, SAMPLER):
        raise ValueError(f"unknown sampler {sampler!r} for {MODEL_NAME}, expected {SAMPLER!r}")
    dark, values = degrade(clean, p)
    return stages.quantize(dark, bit_depth), {**values, "recipe_library_version": library_version()}


def degrade_to_codes(clean: np.ndarray, p: GenericParams, rng: np.random.Generator, bit_depth: int = 8,
                     sampler: str | None = None) -> np.ndarray:
    """The dark image at `bit_depth` (what `degrade_recorded` makes, without the record)."""
    return degrade_recorded(clean, p, rng, bit_depth, sampler)[0]


def degrade_stages(clean: np.ndarray, p: GenericParams,
                   rng: np.random.Generator) -> Iterator[tuple[str, np.ndarray]]:
    """(label, image) for `lowsim preview`: the original and the result (albumentations applies in one call)."""
    yield "original", stages.to_float(clean)
    yield "albumentations darkening + noise", degrade(clean, p)[0]


def ranges_file_dict() -> dict[str, Any]:
    """The shipped generic.json: the seed's law, and the transforms (informational; the code is authoritative)."""
    from lowsim.params import SCHEMA_VERSIONS

    return {"schema_version": SCHEMA_VERSIONS[GENERIC_MODEL], "model": GENERIC_MODEL, "method": "documented ranges",
            "source": "albumentations' documentation (docstring examples and defaults); see docs/recipes.md",
            "laws": {"albumentations_seed": {"law": "integer-uniform", "low": 0, "high": 2 ** 31}},
            "transforms": [[name, {k: list(v) for k, v in kwargs.items()}] for name, kwargs in TRANSFORMS]}
