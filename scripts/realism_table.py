"""The realism table of docs/realism.md: synthetic dark sets from several params files against real dark images.

    .venv/bin/python scripts/realism_table.py --real ../shared/data/lol-dev --out runs/realism \\
        v1=src/lowsim/data/params/lol-v1.json v2-normal=src/lowsim/data/params/lol.json v2-empirical=src/lowsim/data/params/lol.json:empirical

For each NAME=PARAMS[:SAMPLER]: `lowsim generate` (200 crops of 400 px from ../shared/data/clean, seed 1),
then `lowsim compare` against the real pairs' val split (never calibrated on); writes OUT/NAME.json and
OUT/NAME.png and prints one markdown table (medians, classifier accuracy with its 95% interval).
`--features A,B` names the classifier's feature sets (`lowsim compare --features`; default laplacian): with more
than one, each set's images are measured once, the files are OUT/NAME-FEATURES.json / .png, and one table is
printed per feature set. The tables of docs/realism.md before "Content leakage of compare's features" were
made with the residual features (`--features residual`).
`--pool-scenes` takes the sources from the bright images of the real pairs' pool split instead (the same kind
of scenes as the real darks, none of the val scenes): the comparison then sees the degradation, not the
difference between two photo collections. The pool scenes are taken whole (600 x 400, as the real darks are
measured: a 400-px crop has a higher residual sd than its whole image, +7 % on the real val darks); `--size`
sets a crop side for either source (0: whole).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from lowsim.compare import (DEFAULT_FEATURE_SET, FEATURE_SETS, PIXEL_NOISE_STATISTICS, REAL_SPLITS,
                            compare_measurements, measure_inputs)
from lowsim.compare_report import write_compare_report
from lowsim.generate import generate
from lowsim.statistics import STATISTICS


def finished_set(manifest: Path, params: Path, sampler: str | None, n: int, size: int | None) -> bool:
    """Whether manifest already holds n ok samples made from this params file, sampler, size and seed 1."""
    from lowsim.manifest import read_manifest
    from lowsim.params import file_sha256

    if not manifest.is_file():
        return False
    rows, meta = read_manifest(manifest)
    run = json.loads(meta.get("lowsim.run", "{}"))
    return (int((rows["status"] == "ok").sum()) == n and run.get("params_sha256") == file_sha256(params)
            and run.get("seed") == 1 and run.get("size") == size
            and (sampler is None or run.get("param_sampler") == sampler))


def make_set(name: str, params: Path, sampler: str | None, src: Path, out: Path, n: int,
             size: int | None = 400) -> Path:
    """Generate (or resume) one synthetic set (size None: whole sources, no crop); returns its manifest."""
    # A finished set is reused as is: generate's resume check refuses the pool-scenes folder, whose sources
    # are links out of it.
    if finished_set(out / f"{name}.parquet", params, sampler, n, size):
        return out / f"{name}.parquet"
    result = generate(src=src, n=n, params=params, out=out / name, manifest=out / f"{name}.parquet", size=size,
                      seed=1, workers=2, progress=False, sampler=sampler)
    return result.manifest


def pool_scenes(real: Path, folder: Path) -> Path:
    """A folder of links to the bright images of the real pairs' pool split."""
    from lowsim.calibrate import select_split
    from lowsim.pairs import find_pairs

    folder.mkdir(parents=True, exist_ok=True)
    for pair in select_split(find_pairs(real), "pool"):
        link = folder / pair.bright.name
        if not link.exists():
            link.symlink_to(pair.bright.resolve())
    return folder


def table(results: dict[str, dict], real_split: str = "val") -> str:
    """Markdown: one row per statistic and pixel-noise statistic (real and each set's median), the classifier
    row and the distance (over STATISTICS only)."""
    names = list(results)
    first = next(iter(results.values()))
    lines = [f"| statistic | real ({real_split}) | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
    for group, stats in (("statistics", STATISTICS), ("pixel_noise", PIXEL_NOISE_STATISTICS)):
        for stat in stats:
            if not all(group in r for r in results.values()):  # JSON written before pixel_noise existed
                continue
            real = next(s for s in first[group] if s["name"] == stat)["real_median"]
            cells = []
            for name in names:
                s = next(s for s in results[name][group] if s["name"] == stat)
                cells.append(f"{s['synthetic_median']:.3g} ({s['relative_median_diff']:+.0%})")
            lines.append(f"| {stat} | {real:.3g} | " + " | ".join(cells) + " |")
    acc = [f"{r['classifier']['accuracy']:.2f} [{r['classifier']['ci_low']:.2f}, {r['classifier']['ci_high']:.2f}]"
           for r in results.values()]
    lines.append("| classifier accuracy [95% CI] | 0.5 | " + " | ".join(acc) + " |")
    lines.append("| distance (mean KS) | 0 | " + " | ".join(f"{r['distance']:.3f}" for r in results.values()) + " |")
    return "\n".join(lines)


def feature_sets(text: str) -> list[str]:
    """The comma-separated feature-set names of --features, each checked against FEATURE_SETS."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in FEATURE_SETS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"expected comma-separated names of {', '.join(FEATURE_SETS)}, "
                                         f"got {text!r}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--real", type=Path, required=True)
    parser.add_argument("--src", type=Path, default=Path("../shared/data/clean"))
    parser.add_argument("--out", type=Path, default=Path("runs/realism"))
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--pool-scenes", action="store_true",
                        help="sources: the bright images of the real pairs' pool split (not --src)")
    parser.add_argument("--size", type=int, default=None,
                        help="crop side in px; 0: whole sources (default: 0 with --pool-scenes, else 400)")
    parser.add_argument("--features", type=feature_sets, default=[DEFAULT_FEATURE_SET],
                        help=f"classifier feature sets, comma-separated, of {', '.join(FEATURE_SETS)} "
                             f"(lowsim compare --features; default {DEFAULT_FEATURE_SET})")
    parser.add_argument("--real-split", choices=REAL_SPLITS, default="val",
                        help="the real darks compared against (val: never calibrated on; pool: for choices "
                             "made on the calibration split)")
    parser.add_argument("sets", nargs="+", help="NAME=PARAMS[:SAMPLER]")
    args = parser.parse_args()
    src = pool_scenes(args.real, args.out / "pool-scenes") if args.pool_scenes else args.src
    size = args.size if args.size is not None else (0 if args.pool_scenes else 400)
    results: dict[str, dict[str, dict]] = {f: {} for f in args.features}
    for spec in args.sets:
        name, rest = spec.split("=", 1)
        params, _, sampler = rest.partition(":")
        manifest = make_set(name, Path(params), sampler or None, src, args.out, args.n, size or None)
        real, synthetic, inputs = measure_inputs(args.real, manifest, real_split=args.real_split, max_images=args.n, seed=0)
        for features in args.features:
            stem = name if len(args.features) == 1 else f"{name}-{features}"
            result = compare_measurements(real, synthetic, seed=0, inputs={**inputs, "feature_set": features},
                                          feature_set=features)
            write_compare_report(result, args.out / f"{stem}.png")
            results[features][name] = result.to_json_dict()
            (args.out / f"{stem}.json").write_text(json.dumps(results[features][name], indent=2))
            print(f"{name} ({features} features): accuracy {result.classifier.accuracy:.3f}", flush=True)
    for features, by_set in results.items():
        print(f"\n{features} features:\n{table(by_set, args.real_split)}")


if __name__ == "__main__":
    main()
