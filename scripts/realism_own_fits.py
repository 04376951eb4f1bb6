"""Diagnosis behind docs/realism.md: a calibration's own pairs, real darks against darks simulated from their
bright images, with each pair's own fit or as the samplers pair fits and scenes.

    PYTHONPATH=src .venv/bin/python scripts/realism_own_fits.py --params src/lowsim/data/params/lol.json \\
        --pairing own shuffled own-jitter drawn

For every pair the calibration used (its `.pairs.parquet`), the real dark image and synthetic ones from the
pair's bright image (fast sampler, whole image or a centred --crop) are measured with `lowsim.statistics`;
printed: the median of each statistic over the pairs, real and per pairing, with the relative difference.
Pairings: `own` (the pair's own fit, no jitter: what the calibration matched), `shuffled` (another pair's
fit, no jitter: scene and fit drawn independently, as the empirical sampler does), `own-jitter` (the own fit
plus the file's jitter), `drawn` (a draw of the file's sampler: another pair's fit plus jitter).
`--real-splits DIR` instead prints the real darks' medians per split of DIR (pool, val), whole images and
random 400-px crops (as `scripts/realism_table.py` cuts them), with a bootstrap 95 % interval of each median.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from lowsim.calibrate import table_path_for
from lowsim.degradation import v2_fast
from lowsim.imageio import read_image
from lowsim.params import IspParams, ParamDistribution, from_unconstrained, to_unconstrained
from lowsim.statistics import STATISTICS, dark_statistics

PAIRINGS = ("own", "shuffled", "own-jitter", "drawn")


def fit_of(row: pd.Series) -> IspParams:
    """The fitted parameters of one table row."""
    return IspParams.from_mapping(row.to_dict())


def jittered(p: IspParams, dist: ParamDistribution, rng: np.random.Generator) -> IspParams:
    """p plus the empirical sampler's jitter (N(0, jitter² · cov) in the unconstrained coordinates)."""
    centre = np.array([float(to_unconstrained(n, getattr(p, n))) for n in dist.names])
    values = centre + dist.jitter * (np.linalg.cholesky(dist.cov) @ rng.standard_normal(len(dist.names)))
    return IspParams(**{**p.to_dict(), **{n: float(from_unconstrained(n, v)) for n, v in zip(dist.names, values)}})


def centre_crop(img: np.ndarray, size: int | None) -> np.ndarray:
    """The centred size-wide columns of a landscape image (all of it for None)."""
    if size is None or size >= img.shape[1]:
        return img
    left = (img.shape[1] - size) // 2
    return img[:, left:left + size]


def real_splits(root: Path, seed: int) -> None:
    """Medians of the real darks' statistics per split, whole and in random 400-px crops, with intervals."""
    from lowsim.compare import select_real_pairs
    from lowsim.pairs import find_pairs

    rng = np.random.default_rng(seed)
    print("| split | images | statistic | whole image [95 % interval] | 400-px crops |")
    print("|---|---|---|---|---|")
    for split in ("pool", "val"):
        pairs = select_real_pairs(find_pairs(root), split)
        whole, crops = [], []
        for pair in pairs:
            dark = read_image(pair.dark)
            left = int(rng.integers(0, dark.shape[1] - 400 + 1))
            whole.append(dark_statistics(dark))
            crops.append(dark_statistics(dark[:, left:left + 400]))
        for name in ("brightness", "residual_sd", "clipped_black"):
            values = np.array([s[name] for s in whole])
            boot = [np.median(rng.choice(values, len(values))) for _ in range(2000)]
            low, high = np.percentile(boot, [2.5, 97.5])
            print(f"| {split} | {len(pairs)} | {name} | {np.median(values):.3g} [{low:.3g}, {high:.3g}] | "
                  f"{np.median([s[name] for s in crops]):.3g} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", type=Path, default=Path("src/lowsim/data/params/lol.json"))
    parser.add_argument("--pairing", nargs="+", choices=PAIRINGS, default=["own"])
    parser.add_argument("--crop", type=int, default=None, help="centred crop width in px (default: whole images)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--real-splits", type=Path, default=None, help="real pairs folder: its splits' medians")
    args = parser.parse_args()
    if args.real_splits is not None:
        real_splits(args.real_splits, args.seed)
        return
    dist = ParamDistribution.load(args.params).with_sampler("empirical")
    table = pd.read_parquet(table_path_for(args.params))
    table = table[~table["excluded"]].reset_index(drop=True)
    rng = np.random.default_rng(args.seed)
    others = rng.permutation(len(table))
    rows = []
    for k, row in table.iterrows():
        dark = centre_crop(read_image(row["dark_path"]), args.crop)
        bright = centre_crop(read_image(row["bright_path"]), args.crop)
        own = fit_of(row)
        fits = {"own": own, "shuffled": fit_of(table.iloc[others[k]]), "own-jitter": jittered(own, dist, rng),
                "drawn": dist.sample(rng)}
        stats = {"real": dark_statistics(dark)}
        for pairing in args.pairing:
            stats[pairing] = dark_statistics(v2_fast.degrade_to_codes(bright, fits[pairing], rng,
                                                                       sampler=v2_fast.FAST_SAMPLER))
        rows.append({(kind, name): s[name] for kind, s in stats.items() for name in STATISTICS})
    medians = pd.DataFrame(rows).median()
    print(f"{len(table)} pairs of {args.params}, {'whole images' if args.crop is None else f'{args.crop}-px crops'}")
    print("| statistic | real | " + " | ".join(args.pairing) + " |")
    print("|---" * (len(args.pairing) + 2) + "|")
    for name in STATISTICS:
        real = medians[("real", name)]
        cells = [f"{medians[(p, name)]:.3g} ({medians[(p, name)] / real - 1:+.0%})" for p in args.pairing]
        print(f"| {name} | {real:.3g} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
