"""The known-truth table of docs/raw.md: raw pairs simulated from ELD's camera parameters, calibrated back.

    PYTHONPATH=src .venv/bin/python scripts/raw_recovery_table.py --eld ../shared/data/noise-params/eld \\
        --out runs/raw-recovery [--size 512] [--seed 0]

For each camera (SonyA7S2, NikonD850) and ratio (100, 300): one DNG pair (SID layout) per system gain K across
the camera's range, noise by ELD's relations at that K (`lowsim.raw.simulate`); then the same calibration as
`lowsim calibrate --pairs OUT/<camera>-<ratio>` (`lowsim.raw.calibrate.run_raw_calibration`). Prints one
markdown table: true and recovered K, read noise and row noise, and the errors.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from lowsim.raw.calibrate import run_raw_calibration
from lowsim.raw.simulate import simulate_camera

GAINS = {"SonyA7S2": [0.1, 0.5, 2.0, 6.0], "NikonD850": [0.5, 2.0, 8.0, 25.0]}  # across ELD's Kmin..Kmax
RATIOS = (100, 300)


def table_rows(eld: Path, out: Path, size: int, seed: int) -> list[str]:
    """One markdown row per simulated pair."""
    rows = []
    for camera, gains in GAINS.items():
        for ratio in RATIOS:
            root = out / f"{camera}-{ratio}"
            pairs = simulate_camera(root, eld / f"{camera}.json", gains, ratio, size=size, seed=seed, camera=camera)
            result = run_raw_calibration(root, out / f"{camera}-{ratio}.json")
            for pair, row in zip(pairs, result.rows):
                t = pair.truth
                rows.append(f"| {camera} | {ratio} | {t.system_gain:.3g} | {row['system_gain']:.3g} | "
                            f"{row['system_gain'] / t.system_gain - 1:+.1%} | {t.read_noise:.3g} | "
                            f"{row['read_noise']:.3g} | {row['read_noise'] / t.read_noise - 1:+.1%} | "
                            f"{t.row_noise:.3g} | {row['row_noise']:.3g} | {t.read_shape:.2f} | "
                            f"{row['read_shape']:.2f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eld", type=Path, default=Path("../shared/data/noise-params/eld"))
    parser.add_argument("--out", type=Path, default=Path("runs/raw-recovery"))
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print("| camera | ratio | K | K fit | K error | read σ (DN) | σ fit | σ error | row σ | row fit | λ | λ fit |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(table_rows(args.eld, args.out, args.size, args.seed)))


if __name__ == "__main__":
    main()
