"""Peak memory of `lowsim generate` against --n: the driver's peak RSS (VmHWM) and the whole process tree's
peak RSS over the first SECONDS, for a small and a huge --n (docs/reliability.md quotes the numbers).

    .venv/bin/python benchmarks/bench_generate_memory.py --src DIR [--seconds 30] [--n 100 1000000000]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _status_kib(pid: int, field: str) -> int:
    """A `VmHWM:`/`VmRSS:` line of /proc/PID/status in KiB (0 once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [pid] + [d for child in map(int, out) for d in _tree(child)]


def measure(src: Path, n: int, seconds: float, size: int) -> tuple[float, float, float]:
    """(driver peak RSS MiB, process-tree peak RSS MiB, seconds watched) of one generate run."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
        args = [sys.executable, "-m", "lowsim", "generate", "--src", str(src), "--n", str(n), "--size", str(size),
                "--out", f"{tmp}/out", "--manifest", f"{tmp}/m.parquet", "--workers", "2", "--no-progress"]
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started, driver, tree = time.monotonic(), 0, 0
        while proc.poll() is None and time.monotonic() - started < seconds:
            driver = max(driver, _status_kib(proc.pid, "VmHWM:"))
            tree = max(tree, sum(_status_kib(p, "VmRSS:") for p in _tree(proc.pid)))
            time.sleep(0.2)
        watched = time.monotonic() - started
        if proc.poll() is None:
            proc.terminate()
        proc.wait()
    return driver / 1024, tree / 1024, watched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--n", type=int, nargs="+", default=[100, 10**9])
    args = parser.parse_args()
    results = {n: measure(args.src, n, args.seconds, args.size) for n in args.n}
    print("| --n | driver peak RSS (MiB) | process tree peak RSS (MiB) | watched (s) |")
    print("|---:|---:|---:|---:|")
    for n, (driver, tree, watched) in results.items():
        print(f"| {n:,} | {driver:.0f} | {tree:.0f} | {watched:.0f} |")
    first, last = results[args.n[0]], results[args.n[-1]]
    print(f"ratio driver {last[0] / first[0]:.3f}, tree {last[1] / first[1]:.3f}")


if __name__ == "__main__":
    main()
