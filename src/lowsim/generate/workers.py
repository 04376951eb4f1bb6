"""What both executors (local.py, ray_executor.py) share: their contract with the driver (`RunMissing`),
how many samples go to one task (`chunk_size`), and the setup of a process that makes samples."""
from __future__ import annotations

import contextlib
import math
import signal
from typing import Callable, Sequence

# Runs the given missing indices, journals their rows, adds them to `done` and advances the progress bar.
RunMissing = Callable[[Sequence[int], Callable[[int], None]], None]


def chunk_size(n_missing: int, workers: int) -> int:
    """Samples per task: small enough to balance and to lose little on a crash, big enough to amortize."""
    return int(max(1, min(16, math.ceil(n_missing / max(1, workers * 4)))))


def ignore_file_size_signal() -> None:
    """Make a write past RLIMIT_FSIZE fail with EFBIG (an OSError we report) instead of killing us."""
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def limit_worker_threads() -> None:
    """One thread per worker in OpenCV (its resize and PNG encoder would otherwise use every core)."""
    with contextlib.suppress(Exception):
        import cv2

        cv2.setNumThreads(1)
