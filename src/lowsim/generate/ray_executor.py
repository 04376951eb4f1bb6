"""`lowsim generate --backend ray`: the missing samples of a run, in shards, as Ray tasks.

A shard is a run of consecutive missing indices. Its task makes each sample with `make_sample` (a pure
function of the run spec, the distribution and the index, so the result does not depend on where or in which
shard a sample is made), writes the images into OUT and journals the shard's rows itself, as one part of the
run's journal (`OUT/.lowsim-journal/part-*.parquet`, the file the local backend writes per chunk). So a
finished shard is durable even if the driver dies before it hears of it, resume is the local backend's
(journaled rows whose files are intact are kept, everything else is made again), and the driver merges the
parts into the one manifest exactly as the local backend does, with the same error rows and replacement
samples for unreadable sources.

Sources are read and images written by path, so --src and --out must be on a filesystem every node mounts
at the same path, and every node needs the same lowsim and numpy as the driver (a task checks both before
it writes anything). A task that raises or whose worker dies is retried by Ray (`max_retries`); when the
retries are spent the run stops with a LowsimError naming the shard, and the finished shards stay journaled.
"""
from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from lowsim import __version__
from lowsim.errors import LowsimError
from lowsim.generate.journal import Journal, accept_rows
from lowsim.generate.plan import JOURNAL_DIR, RunSpec, sample_key
from lowsim.generate.sample import make_sample
from lowsim.generate.workers import RunMissing, chunk_size, ignore_file_size_signal, limit_worker_threads
from lowsim.params import ParamDistribution

INSTALL_HINT = "pip install 'lowsim[ray]'"
# Fault injection for the tests: a folder holding `fail-<first index of a shard>` files, each "raise K" or
# "exit K": the next K attempts at that shard raise (or kill their worker process) before making anything.
FAULTS_ENV = "LOWSIM_RAY_FAULTS"


def import_ray() -> Any:
    """The ray module, or a LowsimError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise LowsimError(f"--backend ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def check_address(address: str | None, timeout: float = 10.0) -> None:
    """A HOST:PORT address must accept connections: Ray itself would retry a wrong one for minutes."""
    if not address or address in ("auto", "local") or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise LowsimError(f"--address must look like HOST:PORT (the head node's GCS port, 6379 by default), "
                          f"or auto; got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        raise LowsimError(f"cannot reach the Ray cluster at {address} ({err.strerror or err}); is "
                          "`ray start --head --port=PORT` running there?") from None


def shard_name(indices: Sequence[int]) -> str:
    """How errors name a shard: its first and last key and its size."""
    return f"shard {sample_key(indices[0])}-{sample_key(indices[-1])} ({len(indices)} samples)"


# ================================================================================== in a Ray worker


def make_shard(spec: RunSpec, dist: ParamDistribution, indices: Sequence[int],
               versions: dict[str, str]) -> list[dict[str, Any]]:
    """The Ray task: make the shard's samples, journal its rows (one part), return them."""
    _prepare_worker()
    _check_worker(spec, versions)
    _inject_fault(indices[0])
    rows = [make_sample(spec, dist, i) for i in indices]
    Journal(Path(spec.out)).record(rows)
    return rows


def _prepare_worker() -> None:
    """One thread per task (Ray runs one task per CPU), and EFBIG rather than death on a full disk."""
    limit_worker_threads()
    with contextlib.suppress(ValueError):  # only possible from the main thread
        ignore_file_size_signal()


def versions() -> dict[str, str]:
    """What must be the same on the driver and every worker for the samples to be identical."""
    return {"lowsim": __version__, "numpy": np.__version__}


def _check_worker(spec: RunSpec, expected: dict[str, str]) -> None:
    """Refuse to work on a node that cannot see the run's folders or has other lowsim/numpy versions."""
    host = socket.gethostname()
    here = versions()
    if here != expected:
        raise LowsimError(f"worker on host {host} has {here}, the driver {expected}; install the same "
                          "lowsim and numpy on every node")
    for what, path in (("--src", Path(spec.src_root)), ("--out", Path(spec.out) / JOURNAL_DIR)):
        if not path.is_dir():
            raise LowsimError(f"{what} folder not found on worker host {host}: --src and --out must be on a "
                              "filesystem shared by every node, at the same path", path)


def _inject_fault(first: int) -> None:
    """Test hook (see FAULTS_ENV): fail this attempt if a fault is planted for the shard starting at `first`."""
    folder = os.environ.get(FAULTS_ENV)
    if not folder:
        return
    plan = Path(folder) / f"fail-{sample_key(first)}"
    try:
        how, count = plan.read_text().split()
    except (OSError, ValueError):
        return
    if int(count) <= 0:
        return
    plan.write_text(f"{how} {int(count) - 1}")
    if how == "exit":
        os._exit(1)  # the worker process dies, as when the OS kills it
    raise RuntimeError(f"injected failure of the shard starting at {sample_key(first)}")


# ================================================================================== the driver


@contextlib.contextmanager
def ray_session(address: str | None, workers: int) -> Iterator[Any]:
    """Connected Ray: the cluster at `address`, else a new local instance of `workers` CPUs.

    An already initialized Ray (a program embedding lowsim, the tests) is used as it is and left running.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    options: dict[str, Any] = {"include_dashboard": False, "logging_level": "WARNING"}
    try:
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(address="local", num_cpus=workers, **options)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as err:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        # Seen with Ray 2.60: a `ray start` cluster requires a token that a driver sends only when it is
        # told to, so a connection without RAY_AUTH_MODE=token fails (after ~20 s) with this cause.
        hint = (" (a cluster with token authentication needs RAY_AUTH_MODE=token and its token, "
                "~/.ray/auth_token or RAY_AUTH_TOKEN, on this machine too)") if address else ""
        raise LowsimError(f"cannot start or connect to {where}: {err}{hint}") from None
    try:
        yield ray
    finally:
        ray.shutdown()  # ends this driver's session; a cluster's nodes keep running


@contextlib.contextmanager
def ray_executor(spec: RunSpec, dist: ParamDistribution, done: dict[int, dict[str, Any]], journal: Journal, *,
                 workers: int, address: str | None, shard_size: int | None,
                 max_retries: int) -> Iterator[RunMissing]:
    """The ray backend for `lowsim.generate.driver._run`: run missing indices as shards of Ray tasks."""
    del journal  # the tasks journal their own shards (see the module docstring)
    with ray_session(address, workers) as ray:
        # No runtime_env for thread limits: Ray already starts a 1-CPU task's worker with OMP_NUM_THREADS=1,
        # which OpenBLAS and MKL follow, and OpenCV is limited in the task; a runtime_env would cost a
        # second set of worker processes.
        task = ray.remote(make_shard).options(max_retries=max_retries, retry_exceptions=True, num_cpus=1)
        spec_ref, dist_ref = ray.put(spec), ray.put(dist)  # shipped to each node once, not per task
        cpus = max(1, int(ray.cluster_resources().get("CPU", workers)))

        def run_missing(missing: Sequence[int], advance: Callable[[int], None]) -> None:
            size = shard_size or chunk_size(len(missing), cpus)
            shards = {task.remote(spec_ref, dist_ref, chunk, versions()): chunk
                      for chunk in (list(missing[s:s + size]) for s in range(0, len(missing), size))}
            _collect(ray, shards, done, advance, max_retries)

        yield run_missing


def _collect(ray: Any, shards: dict[Any, list[int]], done: dict[int, dict[str, Any]],
             advance: Callable[[int], None], max_retries: int) -> None:
    """Wait for every shard, adding its rows to `done`; on a failed shard (retries spent) cancel the rest."""
    pending = list(shards)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                accept_rows(_result(ray, ref, shards[ref], max_retries), done, advance)
    except BaseException:
        for ref in pending:
            with contextlib.suppress(Exception):
                ray.cancel(ref)
        if pending:  # let them stop before the folder's lock is released (a stubborn one dies with the session)
            with contextlib.suppress(Exception):
                ray.wait(pending, num_returns=len(pending), timeout=10)
        raise


def _result(ray: Any, ref: Any, indices: list[int], max_retries: int) -> list[dict[str, Any]]:
    """A finished shard's rows, or a LowsimError naming the shard and why its last attempt failed."""
    attempts = f"{max_retries + 1} attempt{'s' if max_retries else ''}"
    resume = "; run the same command again to resume (finished shards are kept)"
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        cause = err.cause if getattr(err, "cause", None) is not None else err
        raise LowsimError(f"{shard_name(indices)} failed after {attempts}: {cause}{resume}") from None
    except ray.exceptions.RayError as err:  # the worker or its node died, the object was lost, ...
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise LowsimError(f"{shard_name(indices)} failed after {attempts}, its worker process died "
                          f"(out of memory?): {type(err).__name__}: {reason}{resume}") from None
