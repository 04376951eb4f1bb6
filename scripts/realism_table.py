"""The realism table of docs/realism.md: synthetic dark sets from several params files against real dark images.

    .venv/bin/python scripts/realism_table.py --real ../shared/data/lol-dev --out runs/realism \\
        v1=src/lowsim/data/params/lol-v1.json v2-normal=src/lowsim/data/params/lol.json v2-empirical=src/lowsim/data/params/lol.json:empirical

For each NAME=PARAMS[:SAMPLER]: `lowsim generate` (200 crops of 400 px from ../shared/data/clean, seed 1),
then `lowsim compare` against the real pairs' val split (never calibrated on); writes OUT/NAME.json and
OUT/NAME.png and prints one markdown table (medians, classifier accuracy with its 95% interval).
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

from lowsim.compare import compare
from lowsim.compare_report import write_compare_report
from lowsim.generate import generate
from lowsim.statistics import STATISTICS


def make_set(name: str, params: Path, sampler: str | None, src: Path, out: Path, n: int,
             size: int | None = 400) -> Path:
    """Generate (or resume) one synthetic set (size None: whole sources, no crop); returns its manifest."""
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


def table(results: dict[str, dict]) -> str:
    """Markdown: one row per statistic (real and each set's median) plus the classifier row."""
    names = list(results)
    first = next(iter(results.values()))
    lines = ["| statistic | real (val) | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
    for stat in STATISTICS:
        real = next(s for s in first["statistics"] if s["name"] == stat)["real_median"]
        cells = []
        for name in names:
            s = next(s for s in results[name]["statistics"] if s["name"] == stat)
            cells.append(f"{s['synthetic_median']:.3g} ({s['relative_median_diff']:+.0%})")
        lines.append(f"| {stat} | {real:.3g} | " + " | ".join(cells) + " |")
    acc = [f"{r['classifier']['accuracy']:.2f} [{r['classifier']['ci_low']:.2f}, {r['classifier']['ci_high']:.2f}]"
           for r in results.values()]
    lines.append("| classifier accuracy [95% CI] | 0.5 | " + " | ".join(acc) + " |")
    lines.append("| distance (mean KS) | 0 | " + " | ".join(f"{r['distance']:.3f}" for r in results.values()) + " |")
    return "\n".join(lines)


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
    parser.add_argument("sets", nargs="+", help="NAME=PARAMS[:SAMPLER]")
    args = parser.parse_args()
    src = pool_scenes(args.real, args.out / "pool-scenes") if args.pool_scenes else args.src
    size = args.size if args.size is not None else (0 if args.pool_scenes else 400)
    results = {}
    for spec in args.sets:
        name, rest = spec.split("=", 1)
        params, _, sampler = rest.partition(":")
        manifest = make_set(name, Path(params), sampler or None, src, args.out, args.n, size or None)
        result = compare(args.real, manifest, real_split="val", max_images=args.n, seed=0)
        write_compare_report(result, args.out / f"{name}.png")
        results[name] = result.to_json_dict()
        (args.out / f"{name}.json").write_text(json.dumps(results[name], indent=2))
        print(f"{name}: accuracy {results[name]['classifier']['accuracy']:.3f}", flush=True)
    print(table(results))


if __name__ == "__main__":
    main()
