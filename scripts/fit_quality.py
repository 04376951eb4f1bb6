"""Per-pair fit quality of v2 calibrations, side by side: one markdown row per calibration's pairs table.

    .venv/bin/python scripts/fit_quality.py NAME=PAIRS.parquet [NAME=PAIRS.parquet ...]

A row: pairs used and fits at a bound of their search range, the median miss of the fitted pair's simulated
noise profile against its real one (rms of the log sd ratio over intensity bins), and the medians of the real
and simulated statistics the v2 noise fit matches (the `match_*` columns `lowsim calibrate` writes).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

STATISTICS = {"spatial_corr": "spatial corr.", "pixel_corr": "pixel-scale corr.", "pixel_sd": "pixel-scale sd",
              "channel_corr": "channel corr."}


def fit_quality_row(name: str, pairs: pd.DataFrame) -> str:
    """One markdown row for a pairs table (medians over the pairs that were fitted)."""
    fitted = pairs[pairs["match_profile_rms_log"].notna()]
    at_bound = int((pairs["at_bound"].fillna("") != "").sum())  # the parameters a fit ended at, comma-separated
    cells = [name, str(int((~pairs["excluded"]).sum())), str(at_bound),
             f"{np.median(fitted['match_profile_rms_log']):.3f}"]
    cells += [f"{np.nanmedian(fitted[f'match_{s}_real']):.2f} / {np.nanmedian(fitted[f'match_{s}_sim']):.2f}"
              for s in STATISTICS]
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str]) -> int:
    if not argv or any("=" not in a for a in argv):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    print("| calibration | pairs used | fits at a bound | noise-profile miss (rms log sd) | "
          + " | ".join(f"{label} real / sim." for label in STATISTICS.values()) + " |")
    print("|---|---:|---:|---:|" + "---|" * len(STATISTICS))
    for arg in argv:
        name, path = arg.split("=", 1)
        if not Path(path).is_file():
            print(f"error: {path}: no such pairs table", file=sys.stderr)
            return 2
        print(fit_quality_row(name, pd.read_parquet(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
