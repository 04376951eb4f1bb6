"""Speed and memory of `lowsim generate --output raw` against sRGB v2, at SID's geometry.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_raw.py --sid-src DIR --big-src DIR [--n 12]

--sid-src: a folder of 4240x2832 photos (SID's Sony A7S2 frame); --big-src: a folder of one 24-megapixel photo
(6000x4000). Each configuration runs `lowsim generate` (one worker) in its own process, so its peak RSS is its
own. Reported: seconds per sample for 512x512 crops with the v2 params (lol) and the raw preset (sony_a7s2),
their ratio, the degradation maths alone on a 512x512 crop (ms, median of 9), and the peak RSS of one raw
sample made from the whole 24-megapixel photo (no crop).
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def run_generate(src: Path, params: str, n: int, size: int | None, out: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one `lowsim generate` in a fresh process."""
    args = [sys.executable, "-m", "lowsim", "generate", "--src", str(src), "--params", params, "--n", str(n),
            "--out", str(out), "--manifest", str(out.with_suffix(".parquet")), "--no-progress"]
    args += ["--size", str(size)] if size else []
    started = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, peak / 1024.0  # KB on Linux; the largest child so far, so measure the one that matters first


def maths_ms(params: str) -> float:
    """Median ms of the degradation alone on a 512x512 8-bit crop (one draw of the params)."""
    from lowsim.degradation.registry import get_model
    from lowsim.params import ParamDistribution
    from lowsim.project import resolve_params

    dist = ParamDistribution.load(resolve_params(Path(params)))
    p = dist.sample(np.random.default_rng(0))
    model = get_model(p.model)
    clean = np.random.default_rng(1).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    times = []
    for i in range(9):
        started = time.perf_counter()
        model.degrade_to_codes(clean, p, np.random.default_rng(i), 8)
        times.append(time.perf_counter() - started)
    return 1000.0 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sid-src", type=Path, required=True)
    parser.add_argument("--big-src", type=Path, required=True)
    parser.add_argument("--n", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        _, peak = run_generate(args.big_src, "sony_a7s2", 1, None, Path(tmp) / "big")  # first: RSS is a running max
        v2, _ = run_generate(args.sid_src, "lol", args.n, 512, Path(tmp) / "v2")
        raw, _ = run_generate(args.sid_src, "sony_a7s2", args.n, 512, Path(tmp) / "raw")
    print(f"per sample, 512 crops of 4240x2832: v2 {v2 / args.n:.3f} s, raw {raw / args.n:.3f} s "
          f"(raw/v2 = {raw / v2:.2f})")
    print(f"degradation alone, 512x512: v2 {maths_ms('lol'):.1f} ms, raw {maths_ms('sony_a7s2'):.1f} ms")
    print(f"peak RSS, one raw sample from a 24-megapixel photo: {peak:.0f} MB")


if __name__ == "__main__":
    main()
