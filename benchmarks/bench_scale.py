"""Throughput of `lowsim generate` with the local and the Ray backend, 1 and 2 workers, side by side.

    .venv/bin/python benchmarks/bench_scale.py [--data DIR] [--params FILE] [--n 96] [--size 256] [--rounds 2]

Sources: the clean photos in DIR/clean (default ../shared/data, or $LOWSIM_DATA), else scikit-image's sample
photos. Every configuration makes the same n samples (same seed) into a fresh folder through
`lowsim.generate.generate`, end to end: worker start (local), sharding, the samples, journal, manifest.
For Ray the instance is started first, warmed up, and its start time reported apart: on a cluster it is paid
once, not per run. The best of --rounds is reported (the least disturbed by other load on the machine).

Also reported: Ray's own cost per task (a no-op task's round trip, and no-op tasks/s when many are in
flight), the measured cost of one shard, the bytes each sample reads and writes, and from those an
extrapolation to N machines (an estimate, not a measurement).
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_generate import representative_params  # noqa: E402
from lowsim import generate as G  # noqa: E402
from lowsim.manifest import read_manifest  # noqa: E402

WORKERS = (1, 2)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of fn()."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def best_run(tmp: Path, name: str, rounds: int, **kw: Any) -> tuple[float, G.GenerateResult]:
    """Fastest of `rounds` fresh runs of generate(**kw): (seconds, its result)."""
    best: tuple[float, G.GenerateResult] | None = None
    for round_ in range(rounds):
        out = tmp / f"{name}-{round_}" / "set"
        seconds, result = timed(lambda: G.generate(out=out, manifest=out.parent / "manifest.parquet",
                                                   progress=False, **kw))
        slower = result if best is not None and seconds >= best[0] else (best[1] if best else None)
        if slower is None or slower is not result:
            best = (seconds, result)
        if slower is not None:  # keep only the best run's output, for the identity check
            shutil.rmtree(slower.out.parent)
    assert best is not None
    return best


def task_overhead(ray: Any, rounds: int = 200) -> dict[str, float]:
    """Ray's cost of a task that does nothing: ms per sequential round trip, and tasks/s pipelined."""
    noop = ray.remote(_noop).options(num_cpus=1)
    ray.get([noop.remote() for _ in range(8)])  # warm the workers
    round_trip, _ = timed(lambda: [ray.get(noop.remote()) for _ in range(rounds)])
    pipelined, _ = timed(lambda: ray.get([noop.remote() for _ in range(rounds * 5)]))
    return {"round_trip_ms": round_trip / rounds * 1e3, "tasks_per_s": rounds * 5 / pipelined}


def _noop() -> None:
    return None


def identical(a: G.GenerateResult, b: G.GenerateResult) -> bool:
    """Same manifest bytes and same image bytes."""
    if a.manifest.read_bytes() != b.manifest.read_bytes():
        return False
    return all((a.out / r[f"{kind}_file_name"]).read_bytes() == (b.out / r[f"{kind}_file_name"]).read_bytes()
               for r in a.rows if r["status"] == "ok" for kind in ("clean", "dark"))


def parse_args() -> argparse.Namespace:
    """The command line: data folder, params file, samples per run, crop size, rounds."""
    default_data = Path(os.environ.get("LOWSIM_DATA", REPO.parent / "shared" / "data"))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=default_data, help="folder holding clean/")
    parser.add_argument("--params", type=Path, default=None, help="params JSON [params/lol.json, else a stand-in]")
    parser.add_argument("--n", type=int, default=96, help="samples per run")
    parser.add_argument("--size", type=int, default=256, help="crop size")
    parser.add_argument("--rounds", type=int, default=2, help="runs per configuration; the best is reported")
    return parser.parse_args()


def local_rows(tmp: Path, rounds: int, common: dict[str, Any]) -> list[dict[str, Any]]:
    """The local backend at each worker count: best wall time of `rounds` runs."""
    rows = []
    for workers in WORKERS:
        seconds, result = best_run(tmp, f"local{workers}", rounds, workers=workers, **common)
        rows.append({"name": f"local, {workers} worker{'s' * (workers > 1)}", "seconds": seconds,
                     "start": 0.0, "result": result})
    return rows


def ray_rows(ray: Any, tmp: Path, rounds: int, common: dict[str, Any]) -> tuple[list[dict[str, Any]], dict, dict]:
    """The Ray backend at each worker count, plus its task overhead and the cost of one 16-sample shard."""
    rows: list[dict[str, Any]] = []
    overhead: dict[str, float] = {}
    shard: dict[str, float] = {}
    for workers in WORKERS:
        start_s, _ = timed(lambda: ray.init(address="local", num_cpus=workers, include_dashboard=False,
                                            logging_level="WARNING"))
        try:
            # Warm-up: start the worker processes and import lowsim, OpenCV, ... in them.
            warm = tmp / f"warm{workers}" / "set"
            G.generate(out=warm, manifest=warm.parent / "m.parquet", progress=False, backend="ray",
                       **{**common, "n": 2 * workers})
            if workers == max(WORKERS):
                overhead = task_overhead(ray)
            if workers == 1:  # one CPU, 16-sample shards: the cost of one shard, Ray included
                seconds, result = best_run(tmp, "shard", 1, backend="ray", shard_size=16, **common)
                shard = {"seconds": seconds / -(-result.n_made // 16), "size": 16}
            seconds, result = best_run(tmp, f"ray{workers}", rounds, backend="ray", **common)
        finally:
            stop_s, _ = timed(ray.shutdown)
        rows.append({"name": f"ray, {workers} worker{'s' * (workers > 1)}", "seconds": seconds,
                     "start": start_s + stop_s, "result": result})
    return rows, overhead, shard


def print_rates(rows: list[dict[str, Any]], n: int) -> None:
    """The side-by-side table: images/s and the ratio to one local worker, and whether outputs are equal."""
    base = n / rows[0]["seconds"]
    print("\nimages/s, end to end (read + crop + degrade + write 2 PNGs + journal + manifest)\n")
    print("| backend, workers | images/s | x local-1 | wall s | + Ray start/stop s | output = local-1 |")
    print("|---|---:|---:|---:|---:|---|")
    for row in rows:
        rate = n / row["seconds"]
        same = "yes" if identical(row["result"], rows[0]["result"]) else "NO"
        start = f"{row['start']:.1f}" if row["start"] else "-"
        print(f"| {row['name']} | {rate:.1f} | {rate / base:.2f} | {row['seconds']:.2f} | {start} | {same} |")


def print_ray_costs(rows: list[dict[str, Any]], overhead: dict, shard: dict, root: Path) -> float:
    """Ray's start/stop and task costs, one shard's time and the bytes a sample moves; returns the per-sample
    bytes read + written."""
    ok = [r for r in rows[0]["result"].rows if r["status"] == "ok"]
    frame, _ = read_manifest(rows[0]["result"].manifest)
    written = float((frame["clean_bytes"] + frame["dark_bytes"]).mean())
    read = sum((root / r["source_path"]).stat().st_size for r in ok) / len(ok)
    print(f"\nRay: start + stop of a local instance {rows[2]['start']:.1f} s (1 CPU), "
          f"{rows[3]['start']:.1f} s (2 CPUs); a no-op task {overhead['round_trip_ms']:.2f} ms round trip, "
          f"{overhead['tasks_per_s']:.0f} no-op tasks/s in flight together (2 CPUs)")
    print(f"one shard of {shard['size']} samples on one CPU: {shard['seconds']:.2f} s "
          f"({shard['seconds'] / shard['size'] * 1e3:.0f} ms per sample; Ray's round trip is "
          f"{overhead['round_trip_ms'] / 1e3 / shard['seconds']:.2%} of it)")
    print(f"per sample: reads {read / 1e6:.2f} MB of source, writes {written / 1e6:.2f} MB of PNG")
    return read + written


def print_extrapolation(overhead: dict, shard: dict, sample_bytes: float) -> None:
    """What N machines of C cores would do at the measured one-CPU rate (not measured)."""
    print("\nextrapolation (not measured): N machines x C cores at the one-CPU rate above, capped by the "
          "driver's task dispatch and by the shared filesystem")
    per_sample = shard["seconds"] / shard["size"]
    dispatch = overhead["tasks_per_s"] * shard["size"]
    for machines, cores in ((1, 16), (4, 16), (16, 16)):
        compute = machines * cores / per_sample
        fs_gbs = compute * sample_bytes / 1e9
        print(f"  {machines:>2} x {cores} cores: ~{compute:.0f} samples/s (6000 in "
              f"~{6000 / compute:.0f} s + start), needs {fs_gbs:.2f} GB/s from the shared filesystem; "
              f"dispatch limit ~{dispatch:.0f} samples/s")


def main() -> int:
    args = parse_args()
    import_s, ray = timed(lambda: __import__("ray"))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp_name:
        tmp = Path(tmp_name)
        params = args.params or G.default_params_path()
        if not params.is_file():
            params = representative_params(tmp / "params.json")
        src = args.data / "clean" if (args.data / "clean").is_dir() else None
        root, names = G.find_sources(src)
        common = dict(src=src, n=args.n, params=params, size=args.size, seed=0)
        print(f"{len(names)} sources in {root}; {args.size}x{args.size} crops; n={args.n}; "
              f"{os.cpu_count()} CPUs; load average {load_before[0]:.2f} before; ray {ray.__version__} "
              f"(import {import_s:.2f} s)")
        rows = local_rows(tmp, args.rounds, common)
        more, overhead, shard = ray_rows(ray, tmp, args.rounds, common)
        rows += more
        load_after = os.getloadavg()
        print_rates(rows, args.n)
        sample_bytes = print_ray_costs(rows, overhead, shard, root)
        print(f"load average {load_after[0]:.2f} after (2 cores shared with other work: numbers are noisy)")
        print_extrapolation(overhead, shard, sample_bytes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
