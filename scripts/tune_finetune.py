"""Choose the fine-tuning (and from-scratch) learning rate by cross-validation inside the training pool.

For each subset seed (never the seeds Table 1 reports) the pool is split as `transfer experiment` splits it: 10%
to train on, the rest held out. The first `--select` held-out pairs pick each run's best checkpoint (as in the
experiment); the next `--score` held-out pairs, which no run has seen or selected on, score it. The validation
split is never read. Prints a table and writes it (Markdown and JSON) to --out.

    .venv/bin/python scripts/tune_finetune.py --pool runs/exp-gl/pairs/pool.csv \
        --checkpoint runs/exp-gl/runs/pretrain-isp --out runs/tune

--augment-params P with --augment-probs 0,0.5 compares each fine-tuning configuration without and with noise
augmentation from P (docs/tuning.md).
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import pandas as pd

from lowsim.pairs import find_pairs
from transfer.experiment.runner import Experiment, read_scores, subset_csvs, write_pairs_csv
from transfer.experiment.table1 import fit_fixed_curve, model_init_args

METHODS = {"last-blocks": ("--method", "last-blocks", "--trainable-blocks", "2"), "all": ("--method", "all"),
           "adapter": ("--method", "adapter")}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=Path, required=True, help="the experiment's pool.csv")
    parser.add_argument("--checkpoint", type=Path, required=True, help="the pretrained run to fine-tune")
    parser.add_argument("--out", type=Path, default=Path("runs/tune"))
    parser.add_argument("--methods", default="last-blocks,all")
    parser.add_argument("--lrs", default="1e-4,3e-4,1e-3,3e-3")
    parser.add_argument("--scratch-lrs", default="1e-3,3e-3", help="from-scratch rates ('' for none)")
    parser.add_argument("--seeds", default="100", help="subset seeds (not Table 1's 0,1,2)")
    parser.add_argument("--iters", type=int, default=1000)
    parser.add_argument("--select", type=int, default=16, help="held-out pairs that pick the best checkpoint")
    parser.add_argument("--score", type=int, default=40, help="further held-out pairs that score it")
    parser.add_argument("--model", default="global_local")
    parser.add_argument("--augment-params", help="params file (or shipped name) for noise augmentation of the "
                                                 "fine-tuning pairs (transfer finetune --augment-params)")
    parser.add_argument("--augment-probs", default="0", help="with --augment-params: the --augment-prob values to "
                                                             "compare (0: no augmentation)")
    return parser.parse_args()


def split_subset(pool: Path, seed: int, folder: Path, select: int, score: int) -> tuple[Path, Path, Path]:
    """train.csv (10% of the pool), select.csv (picks checkpoints), score.csv (scores them); disjoint."""
    train_csv, holdout_csv, _ = subset_csvs(pool, 0.1, seed, folder)
    held = find_pairs(holdout_csv, layout="csv")
    write_pairs_csv(folder / "select.csv", held[:select])
    write_pairs_csv(folder / "score.csv", held[select:select + score])
    return train_csv, folder / "select.csv", folder / "score.csv"


def best_step(run_dir: Path) -> int:
    """The step of the run's best validation PSNR."""
    frame = pd.read_csv(run_dir / "val.csv")
    return int(frame.loc[frame["val_psnr"].idxmax(), "step"])


def one_run(exp: Experiment, name: str, seed: int, args: argparse.Namespace, extra: list) -> dict:
    """Train one configuration on one subset seed; its score on the scoring pairs."""
    folder = exp.out / "pairs" / f"seed-{seed}"
    train_csv, select_csv, score_csv = split_subset(args.pool, seed, folder, args.select, args.score)
    run_dir = exp.out / "runs" / f"{name}-seed-{seed}"
    common = ["--pairs", train_csv, "--layout", "csv", "--no-val-split", "--frac", 1.0, "--val-pairs", select_csv,
              "--run-dir", run_dir, "--seed", seed, "--iters", args.iters, "--width", 16, "--patch", 128,
              "--batch", 8, "--quiet"]
    seconds = exp.run(f"{name}-seed-{seed}", "transfer", *extra[:1], *common, *extra[1:])
    out_csv = exp.out / "scores" / f"{name}-seed-{seed}.csv"
    exp.run(f"score-{name}-seed-{seed}", "transfer", "evaluate", "--checkpoint", run_dir, "--pairs", score_csv,
            "--layout", "csv", "--out", out_csv)
    scores = read_scores(out_csv)
    return {"config": name, "seed": seed, "psnr": scores.psnr, "gt_mean": scores.gt_mean, "ssim": scores.ssim,
            "best_step": best_step(run_dir), "seconds": round(seconds, 1)}


def configurations(args: argparse.Namespace, model_args: list) -> list[tuple[str, list]]:
    """(name, [command, flags…]) of every configuration in the grid."""
    configs = []
    for method in filter(None, args.methods.split(",")):
        for lr in filter(None, args.lrs.split(",")):
            for name, augment in augment_options(args):
                configs.append((f"finetune-{method}-lr{lr}{name}",
                                ["finetune", "--checkpoint", args.checkpoint, "--lr", lr, *METHODS[method], *augment]))
    for lr in filter(None, args.scratch_lrs.split(",")):
        configs.append((f"scratch-lr{lr}", ["train", "--model", args.model, "--lr", lr, *model_args]))
    return configs


def augment_options(args: argparse.Namespace) -> list[tuple[str, list]]:
    """(name suffix, finetune flags) per --augment-probs value; probability 0 is the run without augmentation."""
    if args.augment_params is None:
        return [("", [])]
    return [("", []) if float(prob) == 0 else
            (f"-aug{prob}", ["--augment-params", args.augment_params, "--augment-prob", prob])
            for prob in filter(None, args.augment_probs.split(","))]


def summarise(results: list[dict]) -> str:
    """A Markdown table: per configuration, mean over seeds of the scoring pairs' PSNR and GT-mean PSNR."""
    lines = ["| configuration | PSNR (dB) | GT-mean PSNR (dB) | per seed | best step | train s |",
             "|---|---:|---:|---|---|---:|"]
    for name in dict.fromkeys(r["config"] for r in results):
        rs = [r for r in results if r["config"] == name]
        lines.append(f"| {name} | {statistics.fmean(r['psnr'] for r in rs):.2f} | "
                     f"{statistics.fmean(r['gt_mean'] for r in rs):.2f} | "
                     f"{' / '.join(format(r['psnr'], '.2f') for r in rs)} | {' / '.join(str(r['best_step']) for r in rs)} | "
                     f"{statistics.fmean(r['seconds'] for r in rs):.0f} |")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    exp = Experiment(pairs=args.pool, clean=[], out=args.out, docs=args.out)
    model_args = model_init_args(args.model, fit_fixed_curve(args.pool))
    results_path = args.out / "tuning.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else []
    done = {(r["config"], r["seed"]) for r in results}
    for name, extra in configurations(args, model_args):
        for seed in map(int, args.seeds.split(",")):
            if (name, seed) in done:  # rerunning the script continues where it stopped
                continue
            results.append(one_run(exp, name, seed, args, extra))
            results_path.write_text(json.dumps(results, indent=1))
            print(summarise(results), flush=True)
    (args.out / "tuning.md").write_text(summarise(results) + "\n")
    print(summarise(results))


if __name__ == "__main__":
    main()
