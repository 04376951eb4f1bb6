"""Training throughput: transfer's default training loop against a plain eager loop of the same model.

Variants, each in its own process (so peak memory is its own), same model, loss, optimizer, batch and patches:

- ``transfer``: `transfer.train.run_training` at its defaults (channels_last, decoded images cached in RAM,
  loader workers chosen automatically); timings read back from the run's metrics.csv.
- ``cached-contiguous``: the same cached data, default (contiguous) memory format: isolates channels_last.
- ``transfer-1worker`` (optional): the default loop with one loader worker instead of cutting patches in the
  training process.
- ``plain``: a plain eager loop: default memory format, every patch decoded from disk (no cache), no workers.

Reported: training images/s after warm-up (over the fastest window of consecutive steps of the best
round, because other processes on a shared machine only ever slow a window down; the all-steps figure is
printed too), the share of step time spent waiting for data, peak RSS, and each variant's speed relative to
``plain``. Default data: packed raw (SID-style) patches of 64x64 packed
pixels from a temporary tree of random Bayer DNGs (no real raw file is available here); ``--pairs`` points at
any real pairs folder instead (``--input srgb`` for LOL).

    .venv/bin/python benchmarks/bench_train.py                    # width 16, batch 16, 64^2 packed patches
    .venv/bin/python benchmarks/bench_train.py --input srgb --pairs ../shared/data/lol-dev
"""
from __future__ import annotations

import argparse
import csv
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_raw_pairs(root: Path, n_scenes: int, size: int) -> Path:
    """A SID-shaped tree of random Bayer DNGs (the tests' helper), n_scenes pairs of size x size pixels."""
    sys.path.insert(0, str(REPO / "tests"))
    from rawfixtures import make_sid_tree

    make_sid_tree(root, n_scenes=n_scenes, short_exposures=(0.1,), height=size, width=size, test_scenes=0)
    return root


def run_transfer(args: argparse.Namespace, pairs: Path, run_dir: Path, workers: int | None = None) -> dict:
    """The default training loop (workers=None: its automatic choice); step timings from its metrics.csv."""
    from transfer.train import TrainConfig, run_training

    result = run_training(TrainConfig(mode="scratch", run_dir=run_dir, pairs=pairs, input_kind=args.input,
                                      width=args.width, patch=args.patch, batch=args.batch,
                                      iters=args.warmup + args.steps, val_split=False, progress=False,
                                      workers=workers))
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))[args.warmup:]
    return {"step_s": [float(r["step_s"]) for r in rows], "data_s": [float(r["data_s"]) for r in rows],
            "workers": result["workers"]}


def run_plain(args: argparse.Namespace, pairs: Path, cached: bool) -> dict:
    """A plain eager loop over the same patches: contiguous tensors, decoded per patch unless cached."""
    import torch
    import torch.nn.functional as F

    from transfer.data import PairStore, PatchDataset, StepBatchSampler, collate_nhwc, load_pairs
    from transfer.models import create_model

    torch.manual_seed(0)
    model = create_model("sid_unet", width=args.width, input_kind=args.input)
    store = PairStore(load_pairs(pairs), args.input, cache_bytes=2**40 if cached else 0)
    dataset = PatchDataset(store, args.patch, 0, model.scale)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=StepBatchSampler(0, args.warmup + args.steps,
                                                                                 args.batch),
                                         num_workers=0, collate_fn=collate_nhwc)
    model.train()
    step_s: list[float] = []
    data_s: list[float] = []
    t_prev = time.perf_counter()
    for step, (inputs, targets) in enumerate(loader):
        t_batch = time.perf_counter()
        inputs, targets = inputs.contiguous(), targets.contiguous()
        loss = F.l1_loss(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        t_done = time.perf_counter()
        if step >= args.warmup:
            step_s.append(t_done - t_prev)
            data_s.append(t_batch - t_prev)
        t_prev = t_done
    return {"step_s": step_s, "data_s": data_s, "workers": 0}


def summarize(out: dict, batch: int, window: int) -> dict:
    """Images/s over all measured steps and over the fastest `window` consecutive steps, data-wait share."""
    steps, data = out["step_s"], out["data_s"]
    sums = [sum(steps[i: i + window]) for i in range(max(1, len(steps) - window + 1))]
    best = min(range(len(sums)), key=sums.__getitem__)
    return {**out, "images_per_s": batch * len(steps) / sum(steps),
            "best_window_images_per_s": batch * len(steps[best: best + window]) / sums[best],
            "data_share": sum(data) / sum(steps),
            "best_window_data_share": sum(data[best: best + window]) / sums[best]}


def cpu_busy_share(seconds: float = 1.0) -> float:
    """Share of all CPUs busy (any process) over `seconds`, from /proc/stat; nan where unavailable."""
    def sample() -> tuple[int, int]:
        fields = [int(v) for v in open("/proc/stat").readline().split()[1:]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, total

    try:
        idle0, total0 = sample()
        time.sleep(seconds)
        idle1, total1 = sample()
    except OSError:
        return float("nan")
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def wait_until_quiet(limit_s: float, threshold: float = 0.15) -> float:
    """Wait (up to limit_s) until other processes leave the CPUs mostly idle; return the last busy share."""
    deadline = time.monotonic() + limit_s
    busy = cpu_busy_share()
    while busy > threshold and time.monotonic() < deadline:
        busy = cpu_busy_share(2.0)
    return busy


def _child(variant: str, args: argparse.Namespace, pairs: Path, work: Path, queue: mp.Queue) -> None:
    """Run one variant and report its numbers and peak RSS."""
    if variant.startswith("transfer"):
        out = run_transfer(args, pairs, work / "run", workers=1 if variant == "transfer-1worker" else None)
    else:
        out = run_plain(args, pairs, cached=variant == "cached-contiguous")
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=64, help="patch side in input pixels (packed for raw)")
    parser.add_argument("--input", choices=("raw", "srgb"), default="raw")
    parser.add_argument("--pairs", type=Path, help="real pairs folder (default: make random raw pairs)")
    parser.add_argument("--scenes", type=int, default=16, help="generated raw pairs")
    parser.add_argument("--size", type=int, default=512, help="generated raw frame side (pixels)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--window", type=int, default=8, help="steps in the 'fastest window' statistic")
    parser.add_argument("--variants", default="transfer,cached-contiguous,plain")
    parser.add_argument("--quiet-wait", type=float, default=120.0,
                        help="before each measurement wait up to this many seconds for idle CPUs")
    parser.add_argument("--rounds", type=int, default=2,
                        help="interleaved rounds; the best round per variant is reported (other processes "
                             "on a shared machine only ever slow a round down)")
    args = parser.parse_args()

    import torch

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pairs = args.pairs or make_raw_pairs(work / "pairs", args.scenes, args.size)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; width {args.width}, batch "
              f"{args.batch}, {args.patch}^2 {args.input} patches, {args.steps} steps after {args.warmup} warm-up; "
              f"data {pairs}")
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        results: dict[str, dict] = {}
        context = mp.get_context("spawn")
        for round_index in range(args.rounds):
            for variant in args.variants.split(","):
                busy = wait_until_quiet(args.quiet_wait)
                queue = context.Queue()
                out_dir = work / f"{variant}-{round_index}"
                proc = context.Process(target=_child, args=(variant, args, pairs, out_dir, queue))
                proc.start()
                out = summarize(queue.get(), args.batch, args.window)
                proc.join()
                print(f"  round {round_index + 1} {variant}: {out['images_per_s']:.1f} images/s over all steps, "
                      f"{out['best_window_images_per_s']:.1f} in the fastest {args.window} "
                      f"(CPUs {100 * busy:.0f}% busy before it)", flush=True)
                key = "best_window_images_per_s"
                if variant not in results or out[key] > results[variant][key]:
                    results[variant] = out
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    key = "best_window_images_per_s"
    base = results.get("plain", next(iter(results.values())))[key]
    print(f"fastest {args.window}-step window of the best round per variant (other processes on a shared "
          "machine only ever slow a window down)")
    print(f"{'variant':<20}{'images/s':>10}{'vs plain':>10}{'data wait':>11}{'workers':>9}{'peak RSS':>11}"
          f"{'all-steps img/s':>17}")
    for variant, r in results.items():
        print(f"{variant:<20}{r[key]:>10.1f}{r[key] / base:>9.2f}x{100 * r['best_window_data_share']:>10.1f}%"
              f"{r['workers']:>9}{r['peak_rss_mib']:>8.0f} MiB{r['images_per_s']:>17.1f}")


if __name__ == "__main__":
    main()
