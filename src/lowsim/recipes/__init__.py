"""Recipes: the synthetic data a user could make instead of lowsim's calibrated data (`lowsim generate --recipe`).

- generic: albumentations' darkening and camera-noise transforms at their documented ranges (generic.py)
- unprocessing: Brooks et al. 2019's unprocessing with the paper's ranges, from lowsim's stages (unprocessing.py)
- uncalibrated: lowsim's model v2 from broad default ranges instead of a calibration (uncalibrated.py)
- calibrated: lowsim's calibrated distribution (`--params`), as without --recipe

Each is a degradation model in lowsim.degradation.registry with a shipped params file of its own, so its
samples record their generator and every parameter in the manifest and `lowsim regenerate` rebuilds them.
See docs/recipes.md.
"""
from __future__ import annotations

from pathlib import Path

from lowsim.errors import LowsimError

RECIPES = ("generic", "unprocessing", "uncalibrated", "calibrated")
DEFAULT_RECIPE = "calibrated"
SHIPPED = {"generic": "generic", "unprocessing": "unprocessing", "uncalibrated": "v2-uncalibrated"}


def check_recipe(recipe: str) -> str:
    """The recipe name, or LowsimError naming the known ones."""
    if recipe not in RECIPES:
        raise LowsimError(f"--recipe must be one of {', '.join(RECIPES)}; got {recipe!r}")
    return recipe


def recipe_params(recipe: str, params: Path | None) -> Path | None:
    """The params file a recipe uses: its shipped one (a --params is refused: it would not be used), or for
    `calibrated` the given --params (None: the caller's default)."""
    check_recipe(recipe)
    if recipe == "calibrated":
        return params
    if params is not None:
        raise LowsimError(f"--recipe {recipe} draws from its own shipped ranges ({SHIPPED[recipe]}) and does not use "
                          f"--params {params}; drop --params, or use --recipe calibrated")
    if recipe == "generic":
        from lowsim.recipes.generic import albumentations_module

        albumentations_module()  # one line saying how to install it, before anything is written
    from lowsim.project import shipped_params

    return shipped_params(SHIPPED[recipe])
