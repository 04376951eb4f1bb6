"""The Parquet manifest of a generated dataset: its columns, and atomic writing and checked reading.

One row per sample (see `lowsim.generate` for what the rows mean). Image paths (`clean_file_name`,
`dark_file_name`) are relative to the dataset folder, the Hugging Face `imagefolder` convention; the
Parquet key-value metadata says where that folder is relative to the manifest (`lowsim.dataset_dir`)
and where the sources were (`lowsim.src_root`). Readable by pyarrow, pandas and duckdb.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from lowsim.errors import LowsimError
from lowsim.params import ALL_PARAM_NAMES
from lowsim.safe_io import atomic_path

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

DATASET_DIR_KEY = "lowsim.dataset_dir"
SRC_ROOT_KEY = "lowsim.src_root"
PARAMS_PATH_KEY = "lowsim.params_path"
RUN_KEY = "lowsim.run"
PARAMS_KEY = "lowsim.params"  # the params file's JSON: schema version, mean, covariance, per-pair fits
COMMAND_KEY = "lowsim.command"  # the `lowsim generate` command that makes the dataset
REQUIRED_COLUMNS = ("key", "index", "status", "source_path", "dark_file_name", "clean_file_name")


def manifest_schema() -> "pa.Schema":
    """Column names and types of the manifest (and of the dataset's metadata.parquet)."""
    import pyarrow as pa

    columns = [
        ("key", pa.string()), ("index", pa.int64()), ("split", pa.string()), ("status", pa.string()),
        ("error_message", pa.string()),
        ("clean_file_name", pa.string()), ("dark_file_name", pa.string()),
        ("clean_bytes", pa.int64()), ("dark_bytes", pa.int64()),
        ("clean_sha256", pa.string()), ("dark_sha256", pa.string()),
        ("source_path", pa.string()), ("source_sha256", pa.string()),
        ("source_height", pa.int32()), ("source_width", pa.int32()),
        ("height", pa.int32()), ("width", pa.int32()),
        ("resize_height", pa.int32()), ("resize_width", pa.int32()),
        ("crop_y", pa.int32()), ("crop_x", pa.int32()),
        ("flip_v", pa.bool_()), ("flip_h", pa.bool_()), ("transpose", pa.bool_()),
        *[(name, pa.float64()) for name in ALL_PARAM_NAMES],
        ("model", pa.string()), ("sampler", pa.string()), ("seed", pa.int64()),
        ("metered_light", pa.float64()),  # the source's meter reading, when the exposure followed it
        # lowsim generate --recipe: its name, and the version of a library the recipe applies (albumentations)
        ("recipe", pa.string()), ("recipe_library_version", pa.string()),
        ("params_sha256", pa.string()), ("bit_depth", pa.int32()),
        ("lowsim_version", pa.string()), ("numpy_version", pa.string()),
    ]
    return pa.schema([pa.field(name, kind) for name, kind in columns])


def write_manifest(rows: Sequence[Mapping[str, Any]], path: str | Path, dataset_dir: str | Path,
                   extra_metadata: Mapping[str, Any] | None = None) -> Path:
    """Write rows as Parquet atomically (lowsim.safe_io), recording `dataset_dir` relative to the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    schema = manifest_schema()
    table = pa.Table.from_pylist([{c: r.get(c) for c in schema.names} for r in rows], schema=schema)
    relative = os.path.relpath(Path(dataset_dir).resolve(), path.resolve().parent)
    metadata = {DATASET_DIR_KEY: Path(relative).as_posix()}
    metadata.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in (extra_metadata or {}).items()})
    table = table.replace_schema_metadata(metadata)
    with atomic_path(path, what=" the manifest") as tmp:
        pq.write_table(table, tmp)
    return path


def read_manifest(path: str | Path) -> tuple["pd.DataFrame", dict[str, str]]:
    """(rows as a DataFrame, key-value metadata) of a manifest; LowsimError if it is not one."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise LowsimError("manifest not found", path)
    try:  # a damaged file fails in pyarrow's reader, its metadata's decoding or the conversion
        table = pq.read_table(path)
        meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        frame = table.to_pandas()
    except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        raise LowsimError(f"not a readable Parquet file ({type(err).__name__}: {err})", path) from None
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing or DATASET_DIR_KEY not in meta:
        what = f"columns {missing}" if missing else f"the {DATASET_DIR_KEY} metadata"
        raise LowsimError(f"not a lowsim manifest (no {what})", path)
    return frame, meta


def dataset_dir(path: str | Path, meta: Mapping[str, str] | None = None) -> Path:
    """The folder a manifest's image file names are relative to."""
    meta = meta if meta is not None else read_manifest(path)[1]
    try:
        return (Path(path).resolve().parent / meta[DATASET_DIR_KEY]).resolve()
    except (ValueError, OSError, RuntimeError) as err:  # a NUL byte, a symlink loop
        raise LowsimError(f"its {DATASET_DIR_KEY} metadata {meta[DATASET_DIR_KEY]!r} is not a usable folder "
                          f"({err})", path) from None
