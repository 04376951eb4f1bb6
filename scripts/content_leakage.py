"""Content leakage of `lowsim compare`'s classifier: two synthetic sets, one degradation, different scenes.

    PYTHONPATH=src .venv/bin/python scripts/content_leakage.py --real ../shared/data/lol-dev --out runs/leakage \\
        --params src/lowsim/data/params/lol.json:empirical --n 100

The same params file, sampler and seed degrade two source collections: the bright images of the real pairs'
pool split (whole, as `scripts/realism_table.py --pool-scenes` takes them) and `--src` (the clean photo set,
400-px crops, as `realism_table.py` takes it). Since the degradation is identical, the classifier's held-out
accuracy between the two synthetic sets above 0.5 is content leakage: the features telling scenes apart.
Sensitivity: on the same sources, the same params with the noise variance x `--noise-factor` (shot gain x f,
read sigma x sqrt f) against the unchanged params; the classifier should tell those apart well. Every
comparison is run with each feature set of `lowsim.compare.FEATURE_SETS`; writes OUT/leakage.json and prints
a markdown table. No real dark image is compared (the real val split is the held-out target).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # realism_table's generation, not a copy of it

from realism_table import make_set, pool_scenes  # noqa: E402

NOISE_NAMES = {"shot_gain": 1.0, "read_sigma": 0.5}  # log-parameter shift per log(factor): K·x + σ² scales


def noise_scaled_params(params: Path, factor: float, out: Path) -> Path:
    """A copy of a v2 params file whose noise variance is x factor (mean and per-pair points shifted)."""
    data = json.loads(params.read_text())
    names = data["names"]
    missing = [n for n in NOISE_NAMES if n not in names or data["transforms"].get(n) != "log"]
    if missing:
        raise SystemExit(f"{params}: expected log-transformed {', '.join(NOISE_NAMES)} (a v2 file), "
                         f"missing or not log: {', '.join(missing)}")
    for name, power in NOISE_NAMES.items():
        k, shift = names.index(name), power * math.log(factor)
        data["mean"][k] += shift
        for point in data.get("points") or []:
            point[k] += shift
        if name in data.get("natural_mean", {}):
            data["natural_mean"][name] *= factor ** power
    data["source"] = f"{data.get('source', '')} | noise variance x {factor:g} (scripts/content_leakage.py)"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1))
    return out


def generate_sets(real: Path, src: Path, out: Path, params: Path, sampler: str | None, n: int,
                  factor: float) -> dict[str, Path]:
    """The four synthetic sets (LOL scenes / clean photos, params / noise x factor); name -> manifest."""
    noisy = noise_scaled_params(params, factor, out / f"noise-x{factor:g}.json")
    scenes = pool_scenes(real, out / "pool-scenes")
    plan = {"lol-scenes": (params, scenes, None), "clean": (params, src, 400),
            "lol-scenes-noisy": (noisy, scenes, None), "clean-noisy": (noisy, src, 400)}
    return {name: make_set(name, p, sampler, source, out, n, size) for name, (p, source, size) in plan.items()}


COMPARISONS = {  # (label-0 set, label-1 set): what their classifier accuracy measures
    "leakage": ("lol-scenes", "clean"),
    "sensitivity, LOL scenes": ("lol-scenes", "lol-scenes-noisy"),
    "sensitivity, clean photos": ("clean", "clean-noisy"),
}


def measure_sets(manifests: dict[str, Path], n: int) -> dict[str, list]:
    """measure_image of every set's dark images; the second of a comparison gets the next seed, as compare."""
    from lowsim.compare import measure_manifest

    seeds = {"lol-scenes": 1, "clean": 2, "lol-scenes-noisy": 2, "clean-noisy": 3}
    return {name: measure_manifest(m, max_images=n, seed=seeds[name]) for name, m in manifests.items()}


def run_comparisons(measured: dict[str, list], seed: int) -> dict[str, dict[str, dict]]:
    """Classifier result (as JSON) of every comparison with every feature set: {feature set: {comparison: ...}}."""
    from lowsim.compare import FEATURE_SETS, classifier_test

    return {feature_set: {label: classifier_test(measured[a], measured[b], seed, feature_set).to_json_dict()
                          for label, (a, b) in COMPARISONS.items()}
            for feature_set in FEATURE_SETS}


def table(results: dict[str, dict[str, dict]]) -> str:
    """Markdown: one row per feature set, accuracy [95 % CI] per comparison."""
    lines = ["| features | " + " | ".join(COMPARISONS) + " |", "|---" * (len(COMPARISONS) + 1) + "|"]
    for feature_set, row in results.items():
        cells = [f"{c['accuracy']:.2f} [{c['ci_low']:.2f}, {c['ci_high']:.2f}]" for c in row.values()]
        lines.append(f"| `{feature_set}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--real", type=Path, required=True,
                        help="real pairs folder (the bright images of its pool split are the LOL scenes)")
    parser.add_argument("--src", type=Path, default=Path("../shared/data/clean"))
    parser.add_argument("--out", type=Path, default=Path("runs/leakage"))
    parser.add_argument("--params", default="src/lowsim/data/params/lol.json:empirical", help="PARAMS[:SAMPLER]")
    parser.add_argument("--n", type=int, default=100, help="images per set")
    parser.add_argument("--noise-factor", type=float, default=2.0,
                        help="noise variance factor of the sensitivity sets")
    parser.add_argument("--seed", type=int, default=0, help="classifier folds and brightness matching")
    args = parser.parse_args()
    params, _, sampler = args.params.partition(":")
    manifests = generate_sets(args.real, args.src, args.out, Path(params), sampler or None, args.n,
                              args.noise_factor)
    results = run_comparisons(measure_sets(manifests, args.n), args.seed)
    record = {"params": args.params, "n": args.n, "noise_factor": args.noise_factor, "seed": args.seed,
              "sets": {name: str(m) for name, m in manifests.items()}, "comparisons": COMPARISONS,
              "results": results}
    (args.out / "leakage.json").write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
