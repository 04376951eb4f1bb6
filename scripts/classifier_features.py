"""Which of compare's classifier features tell a synthetic set from real darks (a diagnostic, for choices made
on the calibration split).

    PYTHONPATH=src .venv/bin/python scripts/classifier_features.py --real ../shared/data/lol-dev \\
        --real-split pool --manifest runs/jit/pool/j25.parquet [--features laplacian]

Measures both sets as `lowsim compare` does (same seeds, patches and brightness matching), then prints the
held-out accuracy with all features, with each feature alone and with each feature left out, and each feature's
median and 10th-90th percentiles on both sides. A feature whose removal lowers the accuracy most is what
separates the sets; alone, a feature may read near 0.5 and still matter jointly.
"""
from __future__ import annotations

import argparse

import numpy as np

from lowsim.compare import (DEFAULT_FEATURE_SET, _held_out_predictions, _pool_patches, feature_set_names,
                            match_brightness, measure_inputs)


def accuracy(features: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> float:
    """Held-out accuracy (5 folds grouped by image), as compare's classifier."""
    return float((_held_out_predictions(features, labels, groups, 5, 0) == labels).mean())


def spread(values: np.ndarray) -> str:
    """median (p10-p90) of finite values."""
    v = values[np.isfinite(values)]
    return f"{np.median(v):.3f} ({np.percentile(v, 10):.3f} to {np.percentile(v, 90):.3f})" if v.size else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", required=True)
    parser.add_argument("--real-split", default="pool")
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--features", default=DEFAULT_FEATURE_SET)
    args = parser.parse_args()
    names = feature_set_names(args.features)
    real, synthetic, _ = measure_inputs(args.real, args.manifest, real_split=args.real_split)
    features, labels, groups, brightness = _pool_patches(real, synthetic, args.features)
    keep = match_brightness(brightness, labels, np.random.default_rng([0, 2]))
    features, labels, groups = features[keep], labels[keep], groups[keep]
    print(f"{len(labels)} brightness-matched patches; all features: {accuracy(features, labels, groups):.3f}\n")
    print("| feature | alone | left out | real median (p10 to p90) | synthetic median (p10 to p90) |")
    print("|---|---:|---:|---|---|")
    for i, name in enumerate(names):
        alone = accuracy(features[:, [i]], labels, groups)
        without = accuracy(np.delete(features, i, axis=1), labels, groups)
        print(f"| {name} | {alone:.3f} | {without:.3f} | {spread(features[labels == 0, i])} "
              f"| {spread(features[labels == 1, i])} |")


if __name__ == "__main__":
    main()
