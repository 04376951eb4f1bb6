"""`lowsim generate`: degrade clean photos into a synthetic low-light dataset with a Parquet manifest.

Layout of an output folder OUT (the dataset):

    OUT/clean/<key>.png        clean target, the same crop/flip as the dark image
    OUT/dark/<key>.png         the degraded image
    OUT/metadata.parquet       the manifest's ok rows: the Hugging Face `imagefolder` metadata file
    OUT/.lowsim-journal/       run signature, a Parquet part of finished rows per chunk (local) or shard
                               (Ray), lock: the resume state; the parts are merged into the manifest

and the manifest (default manifests/<OUT name>.parquet) holds every row, ok and error. File names in both
are relative to OUT (the `imagefolder` convention: columns named `*_file_name` are image paths relative to
the metadata file, so `datasets.load_dataset("imagefolder", data_dir=OUT)` yields `clean` and `dark` image
columns). For that reason the source photo's path is in `source_path` (relative to the --src folder), not in
a `*_file_name` column, which the loader would try to open. The manifest's Parquet key-value metadata holds
`lowsim.dataset_dir` (OUT relative to the manifest's folder) and `lowsim.src_root` (the --src folder).

Samples. Sample i has key `f"{i:08d}"`. Its source is the (i mod S)-th entry of cycle i // S, each cycle a
seeded shuffle of the S sources. All its random draws come from three independent child streams of
SeedSequence(seed, spawn_key=(i,)): geometry (crop, flips, transpose), parameters (ParamDistribution.sample),
noise (lowsim.degrade); never from global state, so a sample does not depend on --workers or on which
samples were made before. Its split is `assign_split(source_path)`: by source, not by key, so crops of one
photo (sources are reused when N exceeds their number) never straddle train and test.

Bad sources. A source that cannot be read is recorded once, as an error row (status "error", the message,
key of the first sample that drew it) and the samples that drew it are replaced by later indices: the
manifest always has exactly N ok rows (keys need not be contiguous) plus one error row per bad source.

Resume. Image files are written atomically; each finished chunk of rows is journaled atomically; the
manifest is written atomically at the end. Running the same command again (after a crash, Ctrl-C or
kill -9) trusts only journaled rows whose files exist with the recorded size and sha256, removes orphan temp
files, makes only what is missing, and rewrites the manifest. The run signature (sources, params file
hash, seed, size, bit depth, split fractions, model and sampler versions) is stored in the journal; a
resume with any of them different is refused. --n may change: more samples extend the run; fewer drop the
surplus files.

Backends. `--backend local` makes chunks of missing indices in a pool of spawned processes and journals each
chunk as it comes back; `--backend ray` makes shards of them as Ray tasks, each journaling its own shard
(lowsim.ray_backend). Both run under `_run`, so the replacement samples, the journal, resume and the
manifest are the same, and so is every output byte.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import re
import signal
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Mapping, Sequence

import numpy as np

from lowsim import __version__
from lowsim.degrade import MODEL_NAME, SAMPLERS, choose_sampler, degrade_to_codes
from lowsim.errors import LowsimError
from lowsim.imageio import list_images, read_image, write_png
from lowsim.manifest import PARAMS_PATH_KEY, RUN_KEY, SRC_ROOT_KEY, read_manifest, write_manifest
from lowsim.params import (DegradationParams, ParamDistribution, atomic_write_bytes, atomic_write_text,
                           file_sha256)
from lowsim.splits import DEFAULT_FRACTIONS, assign_split

KEY_DIGITS = 8
CLEAN_DIR = "clean"
DARK_DIR = "dark"
METADATA_FILE = "metadata.parquet"
JOURNAL_DIR = ".lowsim-journal"
RUN_FILE = "run.json"
LOCK_FILE = "lock"
MANIFESTS_DIR = "manifests"
# spawn_key (ORDER_STREAM, cycle) seeds the shuffle of a cycle; it cannot collide with a sample's (i,)
# or its children (i, 0..2), since no run has 2^62 samples.
ORDER_STREAM = 1 << 62
STREAMS = ("geometry", "params", "noise")
# scikit-image's bundled colour photographs (the default --src), used when present on disk.
SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
                  "motorcycle_right.png", "hubble_deep_field.jpg", "retina.jpg", "ihc.png")
KEY_FILE = re.compile(r"^(\d{%d,})\.png$" % KEY_DIGITS)
BACKENDS = ("local", "ray")


# ================================================================================== inputs


def repo_root() -> Path:
    """The project checkout this package is installed from (editable install: src/lowsim/..)."""
    return Path(__file__).resolve().parents[2]


def default_params_path() -> Path:
    """params/lol.json of the checkout (the shipped calibration on LOL)."""
    return repo_root() / "params" / "lol.json"


def skimage_photo_dir() -> Path:
    """scikit-image's sample-data folder (its colour photos are the default sources)."""
    import skimage.data

    return Path(skimage.data.__file__).resolve().parent


def find_sources(src: Path | None) -> tuple[Path, list[str]]:
    """(root, sorted relative posix paths) of the source photos; None means scikit-image's photos."""
    if src is None:
        root = skimage_photo_dir()
        names = [n for n in SKIMAGE_PHOTOS if (root / n).is_file()]
        if not names:
            raise LowsimError("none of scikit-image's sample photos are on disk; pass --src", root)
        return root, names
    src = Path(src)
    if not src.exists():
        raise LowsimError("source folder not found", src)
    if not src.is_dir():
        raise LowsimError("--src must be a folder of images", src)
    root = src.resolve()
    return root, [p.relative_to(root).as_posix() for p in list_images(root)]


def parse_fractions(text: str | Mapping[str, float] | None) -> dict[str, float]:
    """'train=0.9,val=0.05,test=0.05' -> dict; every name non-empty, every value >= 0, sum > 0."""
    if text is None:
        return dict(DEFAULT_FRACTIONS)
    if isinstance(text, Mapping):
        items = [(str(k), v) for k, v in text.items()]
    else:
        items = []
        for part in str(text).split(","):
            name, sep, value = part.partition("=")
            if not sep or not name.strip():
                raise LowsimError(f"split fractions must look like train=0.9,val=0.05,test=0.05; got {text!r}")
            items.append((name.strip(), value.strip()))
    fractions: dict[str, float] = {}
    for name, value in items:
        try:
            fraction = float(value)
        except ValueError:
            raise LowsimError(f"split fraction for {name!r} is not a number: {value!r}") from None
        if not math.isfinite(fraction) or fraction < 0:
            raise LowsimError(f"split fraction for {name!r} must be a finite number >= 0, got {value!r}")
        if name in fractions:
            raise LowsimError(f"split {name!r} is given twice")
        fractions[name] = fraction
    if sum(fractions.values()) <= 0:
        raise LowsimError(f"split fractions must not all be zero, got {text!r}")
    return fractions


# ================================================================================== sampling plan


def sample_key(index: int) -> str:
    """The key (and file stem) of sample `index`."""
    return f"{index:0{KEY_DIGITS}d}"


def sample_streams(seed: int, index: int) -> dict[str, np.random.Generator]:
    """Independent generators for the geometry, params and noise draws of sample `index`."""
    children = np.random.SeedSequence(seed, spawn_key=(index,)).spawn(len(STREAMS))
    return {name: np.random.default_rng(child) for name, child in zip(STREAMS, children)}


def cycle_order(seed: int, cycle: int, n_sources: int) -> np.ndarray:
    """The seeded shuffle of source indices used by cycle `cycle`."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(ORDER_STREAM, cycle)))
    return rng.permutation(n_sources)


def source_index(seed: int, index: int, n_sources: int) -> int:
    """Which source sample `index` degrades."""
    return int(cycle_order(seed, index // n_sources, n_sources)[index % n_sources])


@dataclass(frozen=True)
class Geometry:
    """How a sample's pixels come from its source: resize, crop box, flips, transpose (in that order)."""

    resize_height: int
    resize_width: int
    crop_y: int
    crop_x: int
    height: int
    width: int
    flip_v: bool = False
    flip_h: bool = False
    transpose: bool = False

    def fields(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Geometry":
        return cls(**{f.name: (bool(row[f.name]) if f.type == "bool" else int(row[f.name]))
                      for f in dataclasses.fields(cls)})


def draw_geometry(rng: np.random.Generator, src_height: int, src_width: int, size: int | None) -> Geometry:
    """Crop of size x size (after upscaling a smaller source so its short side is `size`) and flips.

    With size None the whole source is used as it is, and nothing is drawn.
    """
    if size is None:
        return Geometry(src_height, src_width, 0, 0, src_height, src_width)
    scale = max(1.0, size / min(src_height, src_width))
    rh = max(size, int(round(src_height * scale))) if scale > 1 else src_height
    rw = max(size, int(round(src_width * scale))) if scale > 1 else src_width
    crop_y = int(rng.integers(0, rh - size + 1))
    crop_x = int(rng.integers(0, rw - size + 1))
    flip_v, flip_h, transpose = (bool(b) for b in rng.integers(0, 2, size=3))
    return Geometry(rh, rw, crop_y, crop_x, size, size, flip_v, flip_h, transpose)


def apply_geometry(img: np.ndarray, g: Geometry) -> np.ndarray:
    """The sample's pixels: resize (bicubic, only ever up) to (rh, rw), crop, flip, transpose; contiguous."""
    import cv2

    if img.shape[:2] != (g.resize_height, g.resize_width):  # only sources smaller than the crop
        img = cv2.resize(img, (g.resize_width, g.resize_height), interpolation=cv2.INTER_CUBIC)
    out = img[g.crop_y:g.crop_y + g.height, g.crop_x:g.crop_x + g.width]
    if g.flip_v:
        out = out[::-1]
    if g.flip_h:
        out = out[:, ::-1]
    if g.transpose:
        out = out.transpose(1, 0, 2)
    return np.ascontiguousarray(out)


def to_bit_depth(img: np.ndarray, bit_depth: int) -> np.ndarray:
    """uint8/uint16 image at the output depth, by exact integer rescaling (x257, or rounded /257)."""
    if bit_depth == 8:
        if img.dtype == np.uint8:
            return img
        return ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if img.dtype == np.uint16:
        return img
    return img.astype(np.uint16) * np.uint16(257)


def render_sample(source: np.ndarray, geometry: Geometry, params: DegradationParams,
                  noise_rng: np.random.Generator, bit_depth: int,
                  sampler: str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """(clean, dark, sampler used) for one sample: geometry, then the degradation at the output depth."""
    clean = apply_geometry(source, geometry)
    sampler = sampler or choose_sampler(clean.dtype, params, bit_depth)
    dark = degrade_to_codes(clean, params, noise_rng, bit_depth, sampler=sampler)
    return to_bit_depth(clean, bit_depth), dark, sampler


# ================================================================================== the run


@dataclass(frozen=True)
class RunSpec:
    """Everything that decides the samples (the run signature), plus where they go."""

    src_root: str
    sources: tuple[str, ...]
    params_path: str
    params_sha256: str
    seed: int
    size: int | None
    bit_depth: int
    fractions: tuple[tuple[str, float], ...]
    out: str

    def signature(self) -> dict[str, Any]:
        """What must match for a resume (not n, workers, or the paths of params and manifest)."""
        listing = hashlib.sha256("\n".join(self.sources).encode()).hexdigest()
        return {"src_root": self.src_root, "n_sources": len(self.sources), "sources_sha256": listing,
                "params_sha256": self.params_sha256, "seed": self.seed, "size": self.size,
                "bit_depth": self.bit_depth, "split_fractions": dict(self.fractions),
                "model": MODEL_NAME, "samplers": list(SAMPLERS)}


def _source_error_row(spec: RunSpec, index: int, source: str, message: str) -> dict[str, Any]:
    """The row recording an unreadable source."""
    return {"key": sample_key(index), "index": index, "status": "error", "error_message": message,
            "source_path": source, "split": assign_split(source, dict(spec.fractions)),
            "seed": spec.seed, "params_sha256": spec.params_sha256, "bit_depth": spec.bit_depth,
            "model": MODEL_NAME, "lowsim_version": __version__, "numpy_version": np.__version__}


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def _source_sha256(path: Path) -> str:
    """sha256 of a source file, cached per process by (path, size, mtime)."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = file_sha256(path)
    return _SHA_CACHE[key]


def make_sample(spec: RunSpec, dist: ParamDistribution, index: int) -> dict[str, Any]:
    """Make sample `index`: read its source, draw, degrade, write both PNGs; return its manifest row.

    An unreadable source gives an error row; a failure to write raises (the run cannot go on).
    """
    source = spec.sources[source_index(spec.seed, index, len(spec.sources))]
    path = Path(spec.src_root) / source
    try:
        image = read_image(path)
        source_sha = _source_sha256(path)
    except LowsimError as err:
        return _source_error_row(spec, index, source, str(err))
    except OSError as err:  # vanished or unreadable between listing and reading
        return _source_error_row(spec, index, source, f"{path}: cannot read ({err.strerror or err})")
    streams = sample_streams(spec.seed, index)
    source_height, source_width = image.shape[:2]
    geometry = draw_geometry(streams["geometry"], source_height, source_width, spec.size)
    params = dist.sample(streams["params"])
    clean, dark, sampler = render_sample(image, geometry, params, streams["noise"], spec.bit_depth)
    del image
    key = sample_key(index)
    row = _source_error_row(spec, index, source, "")
    row.update(status="ok", error_message=None, source_sha256=source_sha, source_height=source_height,
               source_width=source_width, sampler=sampler)
    for kind, img in ((CLEAN_DIR, clean), (DARK_DIR, dark)):
        target = Path(spec.out) / kind / f"{key}.png"
        write_png(target, img)
        row[f"{kind}_file_name"] = f"{kind}/{key}.png"
        row[f"{kind}_bytes"] = target.stat().st_size
        row[f"{kind}_sha256"] = file_sha256(target)
    row.update(geometry.fields())
    row.update(params.to_dict())
    return row


# ================================================================================== journal


ABSENT_KEYS = "__absent_keys__"  # journal parts: per row, the columns it does not have


class Journal:
    """Resume state in OUT/.lowsim-journal: the run signature, finished rows per chunk, a lock."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.dir = self.out / JOURNAL_DIR
        self._lock_fh: Any = None

    def open(self, signature: Mapping[str, Any]) -> None:
        """Create or check the signature, take the lock, and remove orphan temp files."""
        run_file = self.dir / RUN_FILE
        if run_file.is_file():
            try:
                stored = json.loads(run_file.read_text())
            except (OSError, json.JSONDecodeError) as err:
                raise LowsimError(f"damaged run signature ({err}); delete the folder to start over",
                                  run_file) from None
            differ = [k for k in signature if stored.get(k) != json.loads(json.dumps(signature[k]))]
            if differ:
                detail = "; ".join(f"{k}: was {stored.get(k)!r}, now {signature[k]!r}" for k in differ)
                raise LowsimError(f"holds a run with different settings ({detail}); resume with the same "
                                  "settings or choose another --out", self.out)
        else:
            if self.out.exists() and not self.out.is_dir():
                raise LowsimError("--out must be a folder, found a file", self.out)
            if self.out.exists() and any(p.name != JOURNAL_DIR for p in self.out.iterdir()):
                raise LowsimError("output folder is not empty and holds no lowsim run; choose an empty or "
                                  "new folder", self.out)
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise LowsimError(f"cannot create the output folder ({err.strerror or err})", self.out) from None
            atomic_write_text(run_file, json.dumps(signature, indent=2) + "\n")
        self._lock()
        for folder in (self.out / CLEAN_DIR, self.out / DARK_DIR, self.dir, self.out):
            if folder.is_dir():
                for tmp in folder.glob(".*.tmp"):
                    with contextlib.suppress(OSError):
                        tmp.unlink()

    def _lock(self) -> None:
        """An exclusive lock on the folder for this process (released by the OS even on kill -9)."""
        import fcntl

        try:
            self._lock_fh = open(self.dir / LOCK_FILE, "a")  # noqa: SIM115 - held for the run
            fcntl.flock(self._lock_fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LowsimError("another lowsim generate is writing to this folder", self.out) from None
        except OSError as err:
            raise LowsimError(f"cannot lock the output folder ({err.strerror or err})", self.out) from None

    def close(self) -> None:
        if self._lock_fh is not None:
            self._lock_fh.close()
            self._lock_fh = None

    def record(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Journal one finished chunk (or shard) of rows as a Parquet part, atomically: whole or absent."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        indices = sorted(int(r["index"]) for r in rows)
        name = f"part-{indices[0]:0{KEY_DIGITS + 1}d}-{len(indices)}-{_digest(indices)}.parquet"
        # columns are the union of the rows' keys; ABSENT_KEYS lists the keys a row lacks (an error row has
        # fewer), so it reads back with exactly its own keys; pyarrow keeps ints, floats, strings, None exactly
        columns = list(dict.fromkeys(k for r in rows for k in r))
        table = {k: [r.get(k) for r in rows] for k in columns}
        table[ABSENT_KEYS] = [[k for k in columns if k not in r] for r in rows]
        buffer = pa.BufferOutputStream()
        pq.write_table(pa.table(table), buffer)
        atomic_write_bytes(self.dir / name, buffer.getvalue().to_pybytes())

    def load(self) -> dict[int, dict[str, Any]]:
        """Every journaled row by index (parts that do not read are ignored: they were never finished)."""
        import pyarrow.parquet as pq

        rows: dict[int, dict[str, Any]] = {}
        for part in sorted(self.dir.glob("part-*.parquet")):
            try:
                for row in pq.read_table(part).to_pylist():
                    absent = set(row.pop(ABSENT_KEYS) or ())
                    rows.setdefault(int(row["index"]), {k: v for k, v in row.items() if k not in absent})
            except (OSError, ValueError, TypeError, KeyError):
                continue
        return rows


def _digest(indices: Sequence[int]) -> str:
    """Short hash of a chunk's indices, so differently chunked runs never overwrite each other's parts."""
    return hashlib.sha256(",".join(map(str, indices)).encode()).hexdigest()[:10]


def row_is_intact(row: Mapping[str, Any], out: Path) -> bool:
    """An ok row is trusted only when both its files exist with the recorded size and sha256."""
    if row.get("status") != "ok":
        return True
    for kind in (CLEAN_DIR, DARK_DIR):
        path = out / str(row.get(f"{kind}_file_name"))
        try:
            if path.stat().st_size != row.get(f"{kind}_bytes") or file_sha256(path) != row.get(f"{kind}_sha256"):
                return False
        except OSError:
            return False
    return True


# ================================================================================== workers

_WORKER: dict[str, Any] = {}
# Per-process thread counts for the worker processes: one core each (the parallelism is the processes).
_WORKER_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def ignore_file_size_signal() -> None:
    """Make a write past RLIMIT_FSIZE fail with EFBIG (an OSError we report) instead of killing us."""
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def _die_with_parent() -> None:
    """Linux: have the kernel kill this worker when its parent dies (e.g. kill -9), so none is orphaned."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _init_worker(spec: RunSpec, dist: ParamDistribution) -> None:
    """Worker start: one thread, die with the parent, keep the run's spec and distribution."""
    _die_with_parent()
    ignore_file_size_signal()
    limit_worker_threads()
    _WORKER["spec"], _WORKER["dist"] = spec, dist


def _run_chunk(indices: Sequence[int]) -> list[dict[str, Any]]:
    """Make the samples of one chunk in a worker."""
    return [make_sample(_WORKER["spec"], _WORKER["dist"], i) for i in indices]


def limit_worker_threads() -> None:
    """One thread per worker in OpenCV (its resize and PNG encoder would otherwise use every core)."""
    with contextlib.suppress(Exception):
        import cv2

        cv2.setNumThreads(1)


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


# ================================================================================== driver


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


def chunk_size(n_missing: int, workers: int) -> int:
    """Samples per task: small enough to balance and to lose little on a crash, big enough to amortize."""
    return int(max(1, min(16, math.ceil(n_missing / max(1, workers * 4)))))


def _chunks(indices: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(indices), size):
        yield list(indices[start:start + size])


def generate(*, src: Path | None, n: int, params: Path, out: Path, manifest: Path | None = None,
             size: int | None = None, seed: int = 0, workers: int = 1, bit_depth: int = 8,
             split_fractions: str | Mapping[str, float] | None = None,
             progress: bool = True, backend: str = "local", address: str | None = None,
             shard_size: int | None = None, max_retries: int = 3) -> GenerateResult:
    """Generate (or resume) a dataset of exactly n ok samples; see the module docstring.

    backend "local" runs `workers` processes on this machine; "ray" runs shards of samples as Ray tasks
    (lowsim.ray_backend) on the cluster at `address`, or on a new local instance of `workers` CPUs.
    The dataset does not depend on the backend, the worker count or the shard size.
    """
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
    _check_backend(backend, address, shard_size, max_retries)
    fractions = parse_fractions(split_fractions)
    dist = ParamDistribution.load(params)
    root, sources = find_sources(src)
    out = Path(out)
    manifest = Path(manifest) if manifest is not None else Path(MANIFESTS_DIR) / f"{out.resolve().name}.parquet"
    spec = RunSpec(src_root=str(root), sources=tuple(sources), params_path=str(Path(params).resolve()),
                   params_sha256=file_sha256(params), seed=seed, size=size, bit_depth=bit_depth,
                   fractions=tuple(fractions.items()), out=str(out.resolve()))
    ignore_file_size_signal()
    journal = Journal(out)
    try:
        journal.open(spec.signature())
    except OSError as err:
        raise LowsimError(f"cannot use the output folder ({err.strerror or err})", out) from None
    try:
        done = {i: r for i, r in journal.load().items() if row_is_intact(r, out)}
        if backend == "ray":
            from lowsim.ray_backend import ray_executor

            executor = ray_executor(spec, dist, done, journal, workers=workers, address=address,
                                    shard_size=shard_size, max_retries=max_retries)
        else:
            executor = _local_executor(spec, dist, done, journal, workers)
        made = _run(spec, n, done, executor, progress)
        rows = _final_rows(done, n)
        _remove_surplus(out, {r["key"] for r in rows if r["status"] == "ok"})
        ok_rows = [r for r in rows if r["status"] == "ok"]
        extra = {SRC_ROOT_KEY: spec.src_root, PARAMS_PATH_KEY: spec.params_path, RUN_KEY: spec.signature()}
        metadata = write_manifest(ok_rows, out / METADATA_FILE, out, extra)
        write_manifest(rows, manifest, out, extra)
    finally:
        journal.close()
    return GenerateResult(out=out, manifest=manifest, metadata=metadata, n_ok=len(ok_rows),
                          n_errors=len(rows) - len(ok_rows), n_made=made, rows=rows)


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
        from lowsim.ray_backend import check_address, import_ray

        import_ray()
        check_address(address)


# Runs the given missing indices, journals their rows, adds them to `done` and advances the progress bar.
RunMissing = Callable[[Sequence[int], Callable[[int], None]], None]


def _ok_count(done: Mapping[int, Mapping[str, Any]], end: int) -> int:
    return sum(1 for i, r in done.items() if i < end and r["status"] == "ok")


@contextlib.contextmanager
def _local_executor(spec: RunSpec, dist: ParamDistribution, done: dict[int, dict[str, Any]],
                    journal: Journal, workers: int) -> Iterator[RunMissing]:
    """The local backend: a pool of `workers` spawned processes on this machine."""
    with _worker_environment(), ProcessPoolExecutor(max_workers=workers, mp_context=_spawn_context(),
                                                    initializer=_init_worker, initargs=(spec, dist)) as pool:
        yield lambda missing, advance: _run_missing(pool, missing, workers, done, journal, advance)


def _run(spec: RunSpec, n: int, done: dict[int, dict[str, Any]], executor: ContextManager[RunMissing],
         show_progress: bool) -> int:
    """Make missing samples until indices [0, end) hold n ok rows (the executor journals). Returns #made."""
    end = n
    made = 0
    with _progress(show_progress, n) as advance, executor as run_missing:
        advance(_ok_count(done, end))
        while True:
            missing = [i for i in range(end) if i not in done]
            if missing:
                made += len(missing)
                run_missing(missing, advance)
            ok = _ok_count(done, end)
            if ok >= n:
                return made
            bad = {r["source_path"] for r in done.values() if r["status"] == "error"}
            if bad >= set(spec.sources):
                first = min((r for r in done.values() if r["status"] == "error"), key=lambda r: r["index"])
                raise LowsimError(f"no readable source image among {len(spec.sources)} in "
                                  f"{spec.src_root} (e.g. {first['error_message']})")
            end += n - ok  # replacement samples for the ones whose source was unreadable


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


def accept_rows(rows: Sequence[dict[str, Any]], done: dict[int, dict[str, Any]],
                advance: Callable[[int], None]) -> None:
    """Add a finished (already journaled) chunk's rows to `done` and count its ok samples."""
    for row in rows:
        done[int(row["index"])] = row
    advance(sum(1 for r in rows if r["status"] == "ok"))


def _spawn_context() -> Any:
    """'spawn' workers: no inherited locks, threads or file descriptors from the driver."""
    import multiprocessing

    return multiprocessing.get_context("spawn")


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
    for kind in (CLEAN_DIR, DARK_DIR):
        folder = out / kind
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            match = KEY_FILE.match(path.name)
            if match and match.group(1) not in keep:
                with contextlib.suppress(OSError):
                    path.unlink()


# ================================================================================== regenerate


def regenerate(manifest: Path, key: str, src: Path | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Rebuild one sample bit-exactly from its manifest row: (clean, dark, row).

    The source is read from the recorded --src folder (or `src`), checked against its sha256; geometry and
    parameters come from the row, the noise from the sample's own stream.
    """
    frame, meta = read_manifest(manifest)
    match = frame[frame["key"] == key]
    if match.empty:
        raise LowsimError(f"no sample with key {key!r} (keys look like {frame['key'].iloc[0]!r})", manifest)
    row = {k: (None if _is_missing(v) else v) for k, v in match.iloc[0].to_dict().items()}
    if row["status"] != "ok":
        raise LowsimError(f"sample {key} was not generated: {row['error_message']}", manifest)
    root = Path(src) if src is not None else Path(meta[SRC_ROOT_KEY])
    path = root / row["source_path"]
    image = read_image(path)
    if file_sha256(path) != row["source_sha256"]:
        raise LowsimError("source file differs from the one sample "
                          f"{key} was made from (sha256 mismatch)", path)
    if row["sampler"] not in SAMPLERS:
        raise LowsimError(f"sample {key} used sampler {row['sampler']!r}, unknown to lowsim {__version__}")
    params = DegradationParams.from_mapping(row)
    noise = sample_streams(int(row["seed"]), int(row["index"]))["noise"]
    clean, dark, _ = render_sample(image, Geometry.from_row(row), params, noise, int(row["bit_depth"]),
                                   sampler=row["sampler"])
    return clean, dark, row


def _is_missing(value: Any) -> bool:
    """True for None and pandas' NaN/NA placeholders of null cells."""
    try:
        return value is None or bool(np.isnan(value))
    except (TypeError, ValueError):
        return False
