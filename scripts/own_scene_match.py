"""How well per-pair v2 fits reproduce their own real dark image, at the pixel scale compare's classifier sees.

    PYTHONPATH=src .venv/bin/python scripts/own_scene_match.py A.pairs.parquet B.pairs.parquet [...]

For every pair that each calibration table (`lowsim calibrate`'s *.pairs.parquet) used, one draw of the fast
sampler from the pair's fitted row on the pair's own bright image (rng seed = the pair's position), measured
as `lowsim compare` measures (`lowsim.compare.measure_image`) against the real dark image. Prints per table:
compare's classifier on these own-scene sets (real darks against their simulations; no sampler, no other scene,
so what it reads is the fit itself), and the median per-pair misses of the pixel-scale noise sd (log ratio),
of the patches' pixel-scale channel correlation (median over an image's patches) and of the residual sd.
`scripts/realism_own_fits.py` prints the medians of the residual statistics, for this and other pairings.
"""
from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from lowsim.compare import FEATURE_SETS, ImageMeasurement, classifier_test, measure_image
from lowsim.degradation import v2_fast
from lowsim.imageio import read_image
from lowsim.params import IspParams

CORR = FEATURE_SETS["laplacian"].index("noise_channel_corr")


def used_names(tables: list[pd.DataFrame]) -> list[str]:
    """Pairs that every table used (not excluded), in the first table's order."""
    names = [n for n, row in tables[0].iterrows() if not row["excluded"]]
    return [n for n in names if all(n in t.index and not t.loc[n, "excluded"] for t in tables[1:])]


def simulate(row: pd.Series, seed: int) -> np.ndarray:
    """One fast-sampler draw of the row's fit on its own bright image (8-bit codes)."""
    p = IspParams.from_mapping(row.to_dict())
    return v2_fast.degrade_to_codes(read_image(row["bright_path"]), p, np.random.default_rng(seed),
                                    sampler=v2_fast.FAST_SAMPLER)


def misses(real: ImageMeasurement, sim: ImageMeasurement) -> dict[str, float]:
    """Per-pair misses of the pixel-scale sd, the patches' channel correlation and the residual sd."""
    corr_real = float(np.nanmedian(real.patch_features["laplacian"][:, CORR]))
    corr_sim = float(np.nanmedian(sim.patch_features["laplacian"][:, CORR]))
    return {"log_pixel_sd": float(np.log(sim.pixel_noise["noise_sd"] / real.pixel_noise["noise_sd"])),
            "pixel_corr": corr_sim - corr_real,
            "log_residual_sd": float(np.log(sim.statistics["residual_sd"] / real.statistics["residual_sd"]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tables", nargs="+", help="calibration tables (*.pairs.parquet)")
    args = parser.parse_args()
    tables = []
    for path in args.tables:
        table = pd.read_parquet(path)
        tables.append(table.assign(name=table["name"].astype(str)).set_index("name"))
    names = used_names(tables)
    reals = {n: measure_image(read_image(tables[0].loc[n, "dark_path"]), None, 0) for n in names}
    print(f"{len(names)} pairs used by every table\n")
    print("| table | classifier, own scenes | median abs log pixel sd miss | median abs channel-corr miss "
          "| median abs log residual sd miss |\n|---|---:|---:|---:|---:|")
    for path, table in zip(args.tables, tables):
        sims = [measure_image(simulate(table.loc[n], i), None, 1) for i, n in enumerate(names)]
        rows = pd.DataFrame([misses(reals[n], s) for n, s in zip(names, sims)]).abs()
        accuracy = classifier_test([reals[n] for n in names], sims).accuracy
        print(f"| {path} | {accuracy:.3f} | {rows.log_pixel_sd.median():.3f} | {rows.pixel_corr.median():.3f} "
              f"| {rows.log_residual_sd.median():.3f} |")


if __name__ == "__main__":
    main()
