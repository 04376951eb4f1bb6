"""lowsim's own model v2 sampled from broad default ranges instead of a calibration (`--recipe uncalibrated`,
the shipped `v2-uncalibrated.json`): what isolates the value of calibration itself.

Each parameter's law is a normal in the schema's unconstrained space (log or scaled logit; lowsim.params), with
a centre and a spread set from the parameter's meaning and camera physics, never from LOL or any pair set:
`python -m lowsim.recipes.uncalibrated` rewrites the shipped file from UNCALIBRATED_PRIORS.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lowsim.params import SCHEMA_VERSIONS, V2_MODEL, ParamDistribution, to_unconstrained

# name: (centre in natural units, sd in the unconstrained space, why). ±2 sd covers what the comment says.
UNCALIBRATED_PRIORS: dict[str, tuple[float, float, str]] = {
    "illum_alpha": (0.5, 1.0, "from no illumination map (0) to a strong one (~1.5): the map's whole useful range"),
    "illum_gamma": (1.0, 0.7, "exponent 0.25-4 around the neutral 1"),
    "exposure": (0.05, 1.0, "2-7 stops under a normal exposure (0.007-0.37): a dim room to near darkness"),
    "cast_r": (1.0, 0.2, "colour cast of about ±50% either way (log sd 0.2)"),
    "cast_b": (1.0, 0.2, "colour cast of about ±50% either way"),
    "shot_gain": (3e-4, 1.2, "full-scale per electron for full wells of ~300-30000 e- (high to low ISO)"),
    "read_sigma": (1e-3, 1.0, "read noise 1-100 DN of a 14-bit ADC"),
    "row_sigma": (1e-4, 1.0, "banding an order of magnitude below the read noise"),
    "black_level": (0.001, 1.0, "an ISP over-subtracting up to about 1% of full scale"),
    "chroma_nr": (0.5, 1.5, "chroma noise reduction anywhere from off to full"),
    "sharpen": (0.5, 1.0, "unsharp mask amount 0.07-3: none to strong"),
    "tone_gamma": (2.2, 0.15, "tone curve 1.6-3 around sRGB's 2.2"),
}
FIXED_DOWNSCALE = 2.0  # the middle of the 1, 2, 3 that calibrate chooses from (no data to choose with)


def uncalibrated_distribution() -> ParamDistribution:
    """v2's broad default distribution: independent normals (unconstrained) from UNCALIBRATED_PRIORS."""
    names = list(UNCALIBRATED_PRIORS)
    mean = np.array([float(to_unconstrained(n, UNCALIBRATED_PRIORS[n][0])) for n in names])
    cov = np.diag([UNCALIBRATED_PRIORS[n][1] ** 2 for n in names])
    return ParamDistribution(names=names, mean=mean, cov=cov, fixed={"downscale": FIXED_DOWNSCALE},
                             method="uncalibrated", source="lowsim.recipes.uncalibrated (physics, no data)",
                             info={"why": {n: why for n, (_, _, why) in UNCALIBRATED_PRIORS.items()}},
                             schema_version=SCHEMA_VERSIONS[V2_MODEL], model=V2_MODEL)


def write_shipped(path: Path) -> Path:
    """(Re)write the shipped file."""
    return uncalibrated_distribution().save(path)


if __name__ == "__main__":
    from lowsim.project import SHIPPED_PARAMS

    print(write_shipped(Path(__file__).resolve().parents[1] / SHIPPED_PARAMS / "v2-uncalibrated.json"))
