"""The raw presets shipped in src/lowsim/data/params/ (`--params sony_a7s2`): one `lowsim.raw/v1` distribution
per camera from ELD's released noise parameters.

    PYTHONPATH=src .venv/bin/python scripts/eld_presets.py --eld ../shared/data/noise-params/eld --out src/lowsim/data/params

Reads <eld>/<Camera>.json (ELD, Wei et al. CVPR 2020: Kmin/Kmax, the log-linear read (g_scale) and row
(R_scale) noise relations of its first profile, the Tukey shapes G_shape and per-ISO black offsets color_bias)
and writes <out>/<camera>.json (sony_a7s2.json, …) with `lowsim.raw.distribution.eld_distribution`. Only the
small derived parameter files are committed, never ELD's data.

Not from ELD, and said so in each file's info: the exposure ratios are SID's (100, 250, 300); the long
exposure's level (mean green signal 5-30% of full scale) is an assumption; black 512 and white 16383 are SID's
Sony A7S2 levels, used for every camera (ELD's numbers are DN on a 14-bit scale, which these levels keep).
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from lowsim.raw.distribution import eld_distribution
from lowsim.raw.simulate import SID_BLACK, SID_WHITE, eld_profile

SID_RATIOS = (100.0, 250.0, 300.0)
BRIGHT_LEVELS = (0.05, 0.1, 0.2, 0.3)  # assumed spread of the long exposure's mean green level


def preset_name(camera: str) -> str:
    """'SonyA7S2' -> 'sony_a7s2', 'CanonEOS5D4' -> 'canon_eos5d4'."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", camera).lower()


def write_preset(eld_file: Path, out_dir: Path, command: str) -> Path:
    """Build and save one camera's preset; returns its path."""
    eld = eld_profile(eld_file)
    info = {"camera": eld_file.stem, "eld_profile": "Profile-1" if "Profile-1" in eld else "first",
            "from_eld": "system_gain, read_noise, row_noise, read_shape, black offsets",
            "assumed": {"exposure_ratio": list(SID_RATIOS), "bright_level": list(BRIGHT_LEVELS),
                        "adc_black_white": [SID_BLACK, SID_WHITE]},
            "read_noise_note": "ELD's Gaussian read-noise scale g_scale, used as the read noise sd"}
    dist = eld_distribution(eld, {"adc_black": float(SID_BLACK), "adc_white": float(SID_WHITE)}, SID_RATIOS,
                            BRIGHT_LEVELS, method="eld", source=command, info=info)
    return dist.save(out_dir / f"{preset_name(eld_file.stem)}.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eld", type=Path, default=Path("../shared/data/noise-params/eld"))
    parser.add_argument("--out", type=Path, default=Path("src/lowsim/data/params"))
    args = parser.parse_args()
    command = "scripts/eld_presets.py --eld ../shared/data/noise-params/eld --out src/lowsim/data/params"
    for eld_file in sorted(args.eld.glob("*.json")):
        print(write_preset(eld_file, args.out, command))


if __name__ == "__main__":
    main()
