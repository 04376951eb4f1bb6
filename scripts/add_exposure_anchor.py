"""Add the exposure anchor (`lowsim.params.ExposureAnchor`) to a v2 params file calibrated before it existed.

    PYTHONPATH=src .venv/bin/python scripts/add_exposure_anchor.py PARAMS.json OUT.json

Reads the per-pair table beside PARAMS (`*.pairs.parquet`; its dark_path/bright_path are read from the current
folder, as calibrate recorded them), meters every pair's dark and bright image (`stages.metered_light`, as
`lowsim calibrate` now records them), refits the distribution with `calibrate.fit_distribution` and writes OUT
with PARAMS' provenance and OUT's own table. The per-pair fits are not redone: the script checks that the
refitted mean, covariance and points are PARAMS' own, so the only change is the anchor.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from lowsim.calibrate import fit_distribution, table_path_for, write_table
from lowsim.degradation.stages import metered_light
from lowsim.imageio import read_image
from lowsim.params import ParamDistribution


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("params", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    old = ParamDistribution.load(args.params)
    table = pd.read_parquet(table_path_for(args.params))
    table["scene_light"] = [metered_light(read_image(Path(p))) for p in table["bright_path"]]
    table["dark_light"] = [metered_light(read_image(Path(p))) for p in table["dark_path"]]
    rows = table.to_dict("records")
    new = fit_distribution(rows, old.method, old.source)
    for name in ("mean", "cov", "points"):
        if not np.array_equal(getattr(new, name), getattr(old, name)):
            raise SystemExit(f"refitted {name} differs from {args.params}'s: not the same per-pair fits")
    new.info = {**old.info, "pairs_table": table_path_for(args.out).name,
                "exposure_anchor_added_by": f"scripts/add_exposure_anchor.py {args.params} {args.out}"}
    new.jitter, new.sampler = old.jitter, old.sampler
    write_table(rows, table_path_for(args.out))
    new.save(args.out)
    anchor = new.exposure_anchor
    print(json.dumps({"slope": anchor.slope, "reference": anchor.reference, "range": [anchor.low, anchor.high],
                      "pairs": len(anchor.point_keys)}))


if __name__ == "__main__":
    main()
