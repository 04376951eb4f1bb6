"""Every degradation model by name: what generate, regenerate, preview and the benchmarks call.

A model is its parameters' schema (`lowsim.params.MODEL_SPECS`) plus these functions; v1 is
`lowsim.degrade`, v2 is `lowsim.degradation.v2`, raw is `lowsim.raw.synthesize` (packed raw output). All are
built from `lowsim.degradation.stages`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from lowsim import degrade as v1
from lowsim.degradation import v2, v2_fast
from lowsim.errors import LowsimError
from lowsim.params import GENERIC_MODEL, RAW_MODEL, SCHEMA_VERSIONS, UNPROCESS_MODEL, V1_MODEL, V2_MODEL
from lowsim.raw import synthesize as raw
from lowsim.recipes import generic, unprocessing

SHORT_NAMES = {"v1": V1_MODEL, "v2": V2_MODEL, "raw": RAW_MODEL, "unprocess": UNPROCESS_MODEL,
               "generic": GENERIC_MODEL}


@dataclass(frozen=True)
class DegradationModel:
    """One model's entry points (all pure; noise only from the Generator passed in)."""

    name: str
    samplers: tuple[str, ...]
    choose_sampler: Callable[[np.dtype, Any, int], str]
    degrade_to_codes: Callable[..., np.ndarray]  # (clean, params, rng, bit_depth, sampler) -> codes
    stages: Callable[..., Iterator[tuple[str, np.ndarray]]]  # (clean, params, rng) -> (label, image)...
    # Models that apply a library which draws its own values: (codes, {manifest column: value}) to record
    degrade_recorded: Callable[..., tuple[np.ndarray, dict[str, Any]]] | None = None

    @property
    def schema_version(self) -> int:
        return SCHEMA_VERSIONS[self.name]


MODELS: dict[str, DegradationModel] = {
    V1_MODEL: DegradationModel(V1_MODEL, v1.SAMPLERS, v1.choose_sampler, v1.degrade_to_codes,
                               lambda c, p, r: v1.degrade_stages(c, p, r, illumination=True)),
    V2_MODEL: DegradationModel(V2_MODEL, v2.SAMPLERS, v2.choose_sampler, v2_fast.degrade_to_codes,
                               v2.degrade_stages),
    RAW_MODEL: DegradationModel(RAW_MODEL, (raw.MODEL_SAMPLER,), lambda dtype, p, bit_depth: raw.MODEL_SAMPLER,
                                raw.degrade_to_codes, raw.degrade_stages),
    UNPROCESS_MODEL: DegradationModel(UNPROCESS_MODEL, unprocessing.SAMPLERS,
                                      lambda dtype, p, bit_depth: unprocessing.SAMPLER,
                                      unprocessing.degrade_to_codes, unprocessing.degrade_stages),
    GENERIC_MODEL: DegradationModel(GENERIC_MODEL, generic.SAMPLERS, lambda dtype, p, bit_depth: generic.SAMPLER,
                                    generic.degrade_to_codes, generic.degrade_stages, generic.degrade_recorded),
}


def get_model(name: str) -> DegradationModel:
    """A model by its full name (lowsim.degrade/v2) or short name (v2); LowsimError naming the known ones."""
    full = SHORT_NAMES.get(name, name)
    if full not in MODELS:
        raise LowsimError(f"unknown degradation model {name!r}; expected one of "
                          f"{', '.join([*SHORT_NAMES, *MODELS])}")
    return MODELS[full]


def check_params_model(params_model: str, requested: str | None, path: Any = None) -> DegradationModel:
    """The model to generate with: the params file's, which a requested one must equal."""
    model = get_model(params_model)
    if requested is not None and get_model(requested).name != model.name:
        wanted = get_model(requested)
        raise LowsimError(f"the params file is for {model.name} (schema {model.schema_version}) but "
                          f"{wanted.name} (schema {wanted.schema_version}) was requested; calibrate for that "
                          "model or drop --model", path)
    return model
