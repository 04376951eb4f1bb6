"""`lowsim generate --backend local`: chunks of missing indices in a pool of spawned worker processes.

The driver journals each chunk's rows as the chunk comes back, so a finished chunk survives a crash.
"""
from __future__ import annotations

import contextlib
import os
import signal
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Callable, Iterator, Sequence

from lowsim.errors import LowsimError
from lowsim.generate.journal import Journal, accept_rows
from lowsim.generate.plan import RunSpec
from lowsim.generate.sample import make_sample
from lowsim.generate.workers import RunMissing, chunk_size, ignore_file_size_signal, limit_worker_threads
from lowsim.params import ParamDistribution

_WORKER: dict[str, Any] = {}
# Per-process thread counts for the worker processes: one core each (the parallelism is the processes).
_WORKER_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# ================================================================================== in the driver


@contextlib.contextmanager
def local_executor(spec: RunSpec, dist: ParamDistribution, done: dict[int, dict[str, Any]],
                   journal: Journal, workers: int) -> Iterator[RunMissing]:
    """The local backend: a pool of `workers` spawned processes on this machine."""
    with _worker_environment(), ProcessPoolExecutor(max_workers=workers, mp_context=_spawn_context(),
                                                    initializer=_init_worker, initargs=(spec, dist)) as pool:
        yield lambda missing, advance: _run_missing(pool, missing, workers, done, journal, advance)


def _chunks(indices: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(indices), size):
        yield list(indices[start:start + size])


def _run_missing(pool: ProcessPoolExecutor, missing: Sequence[int], workers: int,
                 done: dict[int, dict[str, Any]], journal: Journal, advance: Callable[[int], None]) -> None:
    """Run the missing indices in chunks, journaling each chunk as it finishes (few in flight at once)."""
    pending: set[Future] = set()
    chunks = _chunks(missing, chunk_size(len(missing), workers))
    try:
        for chunk in chunks:
            pending.add(pool.submit(_run_chunk, chunk))
            if len(pending) >= 2 * workers:
                pending = _collect(wait(pending, return_when=FIRST_COMPLETED), done, journal, advance)
        while pending:
            pending = _collect(wait(pending, return_when=FIRST_COMPLETED), done, journal, advance)
    except BaseException:
        for future in pending:
            future.cancel()
        raise


def _collect(waited: Any, done: dict[int, dict[str, Any]], journal: Journal,
             advance: Callable[[int], None]) -> set[Future]:
    """Journal the finished chunks; return the still pending ones. A worker's error stops the run."""
    finished, pending = waited
    for future in finished:
        try:
            rows = future.result()
        except LowsimError:
            raise
        except OSError as err:
            raise LowsimError(f"cannot write the dataset ({err.strerror or err})") from None
        except Exception as err:  # noqa: BLE001 - e.g. a worker killed by the OS (out of memory)
            from concurrent.futures.process import BrokenProcessPool

            if isinstance(err, BrokenProcessPool):
                raise LowsimError("a worker process died (out of memory?); run the same command again "
                                  "to resume, perhaps with fewer --workers") from None
            raise
        journal.record(rows)
        accept_rows(rows, done, advance)
    return pending


def _spawn_context() -> Any:
    """'spawn' workers: no inherited locks, threads or file descriptors from the driver."""
    import multiprocessing

    return multiprocessing.get_context("spawn")


@contextlib.contextmanager
def _worker_environment() -> Iterator[None]:
    """Set the worker thread limits in os.environ while workers are being spawned, then restore it."""
    saved = {k: os.environ.get(k) for k in _WORKER_ENV}
    os.environ.update(_WORKER_ENV)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ================================================================================== in a worker process


def _die_with_parent() -> None:
    """Linux: have the kernel kill this worker when its parent dies (e.g. kill -9), so none is orphaned."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _init_worker(spec: RunSpec, dist: ParamDistribution) -> None:
    """Worker start: one thread, die with the parent, ignore Ctrl-C, keep the run's spec and distribution."""
    _die_with_parent()
    # Ctrl-C reaches the whole process group; the driver alone stops the run, so a worker never dies
    # halfway through writing a file (its chunk finishes while the pool shuts down).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ignore_file_size_signal()
    limit_worker_threads()
    _WORKER["spec"], _WORKER["dist"] = spec, dist


def _run_chunk(indices: Sequence[int]) -> list[dict[str, Any]]:
    """Make the samples of one chunk in a worker."""
    return [make_sample(_WORKER["spec"], _WORKER["dist"], i) for i in indices]
