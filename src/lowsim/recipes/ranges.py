"""A distribution of independent published ranges, one law per parameter (`lowsim/data/params/unprocessing.json`,
`generic.json`): what the recipes sample instead of a calibrated normal. Same interface as ParamDistribution where
generate, publish and the dataset card use it (model, sampler, names, fixed, sample, natural_mean)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lowsim.errors import LowsimError
from lowsim.params import GENERIC_MODEL, MODEL_OF_VERSION, UNPROCESS_MODEL, params_from_mapping, specs_of

SAMPLER = "published-ranges"


@dataclass
class RangeDistribution:
    """Independent laws per parameter (`lowsim.recipes.unprocessing.LAWS`), drawn in the schema's order."""

    model: str
    laws: dict[str, dict[str, Any]]
    method: str = "published ranges"
    source: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    sampler: str = SAMPLER
    n_pairs: int = 0
    fixed: dict[str, float] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """The sampled parameters, in the schema's order."""
        return list(specs_of(self.model))

    def sample(self, rng: np.random.Generator) -> Any:
        """One parameter set of the recipe's model, every draw from `rng`."""
        from lowsim.recipes.unprocessing import draw_laws

        return params_from_mapping(self.model, draw_laws(self.laws, tuple(self.names), rng))

    def natural_mean(self) -> dict[str, float]:
        """A centre per parameter for the dataset card: the mean of 2000 draws from a fixed seed."""
        rng = np.random.default_rng(0)
        draws = [self.sample(rng).to_dict() for _ in range(2000)]
        return {n: float(np.mean([d[n] for d in draws])) for n in self.names}

    def with_sampler(self, sampler: str | None) -> "RangeDistribution":
        """Itself; a ranges file has one sampler (LowsimError for another)."""
        if sampler not in (None, self.sampler):
            raise LowsimError(f"a recipe's ranges are drawn with {self.sampler!r}; drop --sampler")
        return self

    @classmethod
    def load(cls, path: str | Path) -> "RangeDistribution":
        """Read and check a ranges file; LowsimError naming the file and the problem."""
        from lowsim.recipes.unprocessing import LAWS

        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            model = MODEL_OF_VERSION[data["schema_version"]]
            laws = {str(k): dict(v) for k, v in data["laws"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise LowsimError(f"not a readable recipe ranges file ({type(err).__name__}: {err})", path) from None
        missing = [n for n in specs_of(model) if n not in laws]
        unknown = sorted({law.get("law") for law in laws.values()} - set(LAWS))
        if missing or unknown:
            raise LowsimError(f"ranges file lacks laws for {missing}" if missing else f"unknown laws {unknown}", path)
        return cls(model=model, laws=laws, method=str(data.get("method", "")), source=str(data.get("source", "")),
                   info={k: v for k, v in data.items() if k not in ("laws", "schema_version", "model")})


RANGE_MODELS = (UNPROCESS_MODEL, GENERIC_MODEL)


def is_ranges_file(path: str | Path) -> bool:
    """True when a params file's schema version is a recipe's (a ranges file, not a calibrated normal)."""
    try:
        version = json.loads(Path(path).read_text(encoding="utf-8")).get("schema_version")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(version, int) and not isinstance(version, bool) and MODEL_OF_VERSION.get(version) in RANGE_MODELS
