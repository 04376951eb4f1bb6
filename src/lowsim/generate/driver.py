"""The driver of `lowsim generate`: check the options, open (and lock) the journal, run the missing samples on
a backend until there are n ok ones, and write the manifests. See the package docstring for what it makes."""
from __future__ import annotations

import contextlib
import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Mapping

from lowsim.errors import LowsimError, is_printable, printable
from lowsim.generate.journal import Journal, image_folders, row_is_intact
from lowsim.generate.local import local_executor
from lowsim.generate.plan import KEY_FILE, RunSpec, find_sources, parse_fractions
from lowsim.generate.publish import publish
from lowsim.generate.workers import RunMissing, ignore_file_size_signal
from lowsim.params import SAMPLERS, ParamDistribution, file_sha256
from lowsim.project import default_manifest
from lowsim.safe_io import check_write_target, resolve_inside

BACKENDS = ("local", "ray")
# Missing indices are planned this many at a time, so the driver's memory does not grow with --n.
PLAN_BATCH = 4096


@dataclass
class GenerateResult:
    """What a run produced."""

    out: Path
    manifest: Path
    metadata: Path
    n_ok: int
    n_errors: int
    n_made: int  # samples made by this invocation (the rest came from the journal)
    rows: list[dict[str, Any]]


def generate(*, src: Path | None, n: int, params: Path, out: Path, manifest: Path | None = None,
             size: int | None = None, seed: int = 0, workers: int = 1, bit_depth: int = 8,
             split_fractions: str | Mapping[str, float] | None = None,
             progress: bool = True, backend: str = "local", address: str | None = None,
             shard_size: int | None = None, max_retries: int = 3, model: str | None = None,
             sampler: str | None = None, on_note: Callable[[str], None] | None = None,
             recipe: str | None = None) -> GenerateResult:
    """Generate (or resume) a dataset of exactly n ok samples; see the `lowsim.generate` package docstring.

    backend "local" runs `workers` processes on this machine; "ray" runs shards of samples as Ray tasks
    (lowsim.generate.ray_executor) on the cluster at `address`, or on a new local instance of `workers` CPUs.
    The dataset does not depend on the backend, the worker count or the shard size. `model` (v1 | v2),
    when given, must be the params file's; `sampler` (normal | empirical) overrides the file's sampler.
    `on_note` receives one-line notes (workers capped, run record rebuilt). `recipe` (lowsim.recipes) is recorded
    in every row; `params` must then be the recipe's file (lowsim.recipes.recipe_params).
    """
    note = on_note or (lambda message: None)
    _check_counts(n, size, workers, bit_depth, seed)
    _check_backend(backend, address, shard_size, max_retries)
    fractions = parse_fractions(split_fractions)
    dist = load_distribution(params, model, sampler)
    _check_depth_for_jpeg(dist, bit_depth, params)
    root, sources = find_sources(src)
    out = Path(out)
    _check_printable_paths(out, manifest)
    workers = _cap_workers(workers, n, backend, address, note)
    manifest = Path(manifest) if manifest is not None else default_manifest(out)
    spec = RunSpec(src_root=str(root), sources=tuple(sources), params_path=str(Path(params).resolve()),
                   params_sha256=file_sha256(params), seed=seed, size=size, bit_depth=bit_depth,
                   fractions=tuple(fractions.items()), out=str(out.resolve()), model=dist.model,
                   param_sampler=dist.sampler, recipe=recipe)
    ignore_file_size_signal()
    journal = _open_journal(out, spec)
    try:
        check_write_target(manifest)  # before any sample is made: refuse a target we would not write to
        for message in journal.notes:
            note(message)
        done = {i: r for i, r in journal.load().items() if row_is_intact(r, out)}
        check_sources_unchanged(spec, done)
        executor = _executor(spec, dist, done, journal, backend=backend, workers=workers, address=address,
                             shard_size=shard_size, max_retries=max_retries)
        made = _run(spec, n, done, executor, progress)
        rows = _final_rows(done, n)
        _remove_surplus(out, {r["key"] for r in rows if r["status"] == "ok"})
        ok_rows = [r for r in rows if r["status"] == "ok"]
        metadata = publish(spec, dist, rows, n, out, manifest)
    finally:
        journal.close()
    return GenerateResult(out=out, manifest=manifest, metadata=metadata, n_ok=len(ok_rows),
                          n_errors=len(rows) - len(ok_rows), n_made=made, rows=rows)


def _check_counts(n: int, size: int | None, workers: int, bit_depth: int, seed: int) -> None:
    """Refuse a non-positive --n, --size or --workers, a --bit-depth other than 8 or 16 and a negative --seed."""
    if n <= 0:
        raise LowsimError(f"--n must be a positive number of samples, got {n}")
    if size is not None and size <= 0:
        raise LowsimError(f"--size must be a positive number of pixels, got {size}")
    if workers <= 0:
        raise LowsimError(f"--workers must be at least 1, got {workers}")
    if bit_depth not in (8, 16):
        raise LowsimError(f"--bit-depth must be 8 or 16, got {bit_depth}")
    if seed < 0:
        raise LowsimError(f"--seed must be >= 0, got {seed}")


def _check_depth_for_jpeg(dist: Any, bit_depth: int, params: Path) -> None:
    """Refuse 16-bit output from a params file whose camera JPEG-encodes (8-bit), before any run folder exists."""
    quality = getattr(dist, "fixed", {}).get("jpeg_quality", 0.0)  # a recipe has no fixed values
    if quality and bit_depth != 8:
        raise LowsimError(f"jpeg_quality {quality:g} makes 8-bit JPEG output, but --bit-depth {bit_depth} was "
                          "asked for; use --bit-depth 8 or a params file with jpeg_quality 0 (off)", params)


def _check_printable_paths(out: Path, manifest: Path | None) -> None:
    """Refuse an --out or --manifest whose absolute path is not valid UTF-8 (the manifest stores paths as text)."""
    for option, value in (("--out", out), ("--manifest", manifest)):
        if value is not None and not is_printable(str(Path(value).resolve())):
            raise LowsimError(f"{option} path is not valid UTF-8 (the manifest stores paths as text); "
                              "choose another folder", printable(str(value)))


def _open_journal(out: Path, spec: RunSpec) -> Journal:
    """The output folder's journal, opened (and locked) for this run's signature."""
    journal = Journal(out)
    try:
        journal.open(spec.signature())
    except OSError as err:
        raise LowsimError(f"cannot use the output folder ({err.strerror or err})", out) from None
    return journal


def _executor(spec: RunSpec, dist: Any, done: dict[int, dict[str, Any]], journal: Journal, *, backend: str,
              workers: int, address: str | None, shard_size: int | None,
              max_retries: int) -> ContextManager[RunMissing]:
    """The backend that makes missing samples: Ray tasks, or worker processes on this machine."""
    if backend == "ray":
        from lowsim.generate.ray_executor import ray_executor

        return ray_executor(spec, dist, done, journal, workers=workers, address=address,
                            shard_size=shard_size, max_retries=max_retries)
    return local_executor(spec, dist, done, journal, workers)


def load_distribution(params: Path, model: str | None, sampler: str | None) -> Any:
    """The params file's distribution (a recipe's ranges file, or a ParamDistribution), checked against a
    requested model and drawn with `sampler`."""
    from lowsim.degradation.registry import check_params_model
    from lowsim.recipes.ranges import RangeDistribution, is_ranges_file

    if is_ranges_file(params):
        dist = RangeDistribution.load(params)
        check_params_model(dist.model, model, params)
        try:
            return dist.with_sampler(sampler)
        except LowsimError as err:
            raise LowsimError(str(err), params) from None
    dist = ParamDistribution.load(params)
    check_params_model(dist.model, model, params)
    if sampler is not None and sampler not in SAMPLERS:
        raise LowsimError(f"--sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}")
    try:
        return dist.with_sampler(sampler)
    except LowsimError as err:
        raise LowsimError(str(err), params) from None


def _check_backend(backend: str, address: str | None, shard_size: int | None, max_retries: int) -> None:
    """The backend options make sense together (and Ray is installed when it is asked for)."""
    if backend not in BACKENDS:
        raise LowsimError(f"--backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if backend != "ray" and (address is not None or shard_size is not None):
        given = "--address" if address is not None else "--shard-size"
        raise LowsimError(f"{given} is an option of --backend ray; got --backend {backend}")
    if shard_size is not None and shard_size <= 0:
        raise LowsimError(f"--shard-size must be a positive number of samples, got {shard_size}")
    if max_retries < 0:
        raise LowsimError(f"max_retries must be >= 0, got {max_retries}")
    if backend == "ray":  # before anything is written to the output folder
        from lowsim.generate.ray_executor import check_address, import_ray

        import_ray()
        check_address(address)


def _ok_count(done: Mapping[int, Mapping[str, Any]], end: int) -> int:
    return sum(1 for i, r in done.items() if i < end and r["status"] == "ok")


def _missing_batches(done: Mapping[int, Any], end: int) -> Iterator[list[int]]:
    """The indices below `end` not yet done, lazily, in lists of at most PLAN_BATCH."""
    pending = (i for i in range(end) if i not in done)
    while batch := list(itertools.islice(pending, PLAN_BATCH)):
        yield batch


def _run(spec: RunSpec, n: int, done: dict[int, dict[str, Any]], executor: ContextManager[RunMissing],
         show_progress: bool) -> int:
    """Make missing samples until indices [0, end) hold n ok rows (the executor journals). Returns #made."""
    end = n
    made = 0
    all_sources = {printable(s) for s in spec.sources}  # error rows carry printable names
    with _progress(show_progress, n) as advance, executor as run_missing:
        advance(_ok_count(done, end))
        while True:
            for batch in _missing_batches(done, end):
                made += len(batch)
                run_missing(batch, advance)
            ok = _ok_count(done, end)
            if ok >= n:
                return made
            bad = {r["source_path"] for r in done.values() if r["status"] == "error"}
            if bad >= all_sources:
                first = min((r for r in done.values() if r["status"] == "error"), key=lambda r: r["index"])
                raise LowsimError(f"no readable source image among {len(spec.sources)} in "
                                  f"{spec.src_root} (e.g. {first['error_message']})")
            end += n - ok  # replacement samples for the ones whose source was unreadable


def _cap_workers(workers: int, n: int, backend: str, address: str | None, note: Callable[[str], None]) -> int:
    """At most one worker per sample and per core of this machine (not for a Ray cluster), with a note."""
    if backend == "ray" and address is not None:
        return workers
    cores = os.cpu_count() or 1
    capped = max(1, min(workers, n, cores))
    if capped < workers:
        note(f"--workers {workers} capped at {capped} ({n} samples, {cores} cores on this machine)")
    return capped


def check_sources_unchanged(spec: RunSpec, done: Mapping[int, Mapping[str, Any]]) -> None:
    """Refuse a resume when a source photo differs from the one journaled samples were made from."""
    seen: dict[str, tuple[str, str]] = {}
    for row in done.values():
        if row.get("status") == "ok" and row.get("source_path") not in seen:
            seen[row["source_path"]] = (str(row.get("source_sha256")), str(row.get("key")))
    for source, (recorded, key) in sorted(seen.items()):
        path = resolve_inside(spec.src_root, source, "source_path")
        try:
            current = file_sha256(path)
        except OSError as err:
            raise LowsimError(f"cannot read a source of this run ({err.strerror or err})", path) from None
        if current != recorded:
            raise LowsimError(f"source photo changed since sample {key} was made from it (sha256 differs); "
                              "restore it, or generate into a new --out", path)


@contextlib.contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr counting ok samples; a no-op when disabled."""
    if not enabled:
        yield lambda k: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("generate"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True)) as bar:
        task = bar.add_task("generate", total=total)
        yield lambda k: bar.advance(task, k)


def _final_rows(done: Mapping[int, dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """The first n ok rows by index, plus one error row per unreadable source met before the n-th ok row."""
    rows: list[dict[str, Any]] = []
    bad_sources: set[str] = set()
    ok = 0
    for i in sorted(done):
        if ok == n:
            break
        row = done[i]
        if row["status"] == "ok":
            ok += 1
            rows.append(row)
        elif row["source_path"] not in bad_sources:
            bad_sources.add(row["source_path"])
            rows.append(row)
    return rows


def _remove_surplus(out: Path, keep: set[str]) -> None:
    """Delete image files of samples not in the final manifest (left by a run with a larger --n)."""
    for folder in image_folders(out):
        for path in folder.iterdir():
            match = KEY_FILE.match(path.name)
            if match and match.group(1) not in keep:
                with contextlib.suppress(OSError):
                    path.unlink()
