"""lowsim.manifest: the Parquet manifest's schema, atomic write and checked read (pandas and duckdb)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from lowsim.errors import LowsimError
from lowsim.manifest import (
    DATASET_DIR_KEY,
    dataset_dir,
    manifest_schema,
    read_manifest,
    write_manifest,
)
from lowsim.params import PARAM_NAMES


def rows() -> list[dict]:
    ok = {"key": "00000000", "index": 0, "split": "train", "status": "ok", "error_message": None,
          "clean_file_name": "clean/00000000.png", "dark_file_name": "dark/00000000.png",
          "source_path": "a/b.png", "height": 64, "width": 64, "flip_h": True, "seed": 3, "bit_depth": 8,
          **{name: 0.5 for name in PARAM_NAMES}}
    bad = {"key": "00000001", "index": 1, "split": "test", "status": "error",
           "error_message": "c.jpg: truncated", "source_path": "c.jpg", "seed": 3, "bit_depth": 8}
    return [ok, bad]


def test_schema_has_every_parameter_and_the_imagefolder_columns() -> None:
    names = manifest_schema().names
    assert set(PARAM_NAMES) <= set(names)
    assert "clean_file_name" in names and "dark_file_name" in names
    # Only image paths end in _file_name: the imagefolder loader opens every such column as an image.
    assert [n for n in names if n.endswith("_file_name")] == ["clean_file_name", "dark_file_name"]


def test_roundtrip_with_pandas_and_duckdb(tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    path = write_manifest(rows(), tmp_path / "manifests" / "m.parquet", tmp_path / "data" / "set",
                          {"lowsim.src_root": "/somewhere"})
    frame, meta = read_manifest(path)
    assert frame["key"].tolist() == ["00000000", "00000001"]
    assert meta[DATASET_DIR_KEY] == "../data/set" and meta["lowsim.src_root"] == "/somewhere"
    assert dataset_dir(path) == (tmp_path / "data" / "set").resolve()
    plain = pd.read_parquet(path)
    assert plain.loc[1, "status"] == "error" and pd.isna(plain.loc[1, "dark_file_name"])
    assert plain.loc[0, "gamma"] == 0.5 and bool(plain.loc[0, "flip_h"]) is True
    [(count, errors)] = duckdb.sql(f"select count(*), count(*) filter (where status = 'error') "
                                   f"from '{path}'").fetchall()
    assert (count, errors) == (2, 1)


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = write_manifest(rows(), tmp_path / "m.parquet", tmp_path)
    write_manifest(rows()[:1], path, tmp_path)  # replace
    assert len(read_manifest(path)[0]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.parquet"]


def test_unwritable_manifest_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(LowsimError, match="cannot write the manifest"):
        write_manifest(rows(), blocker / "m.parquet", tmp_path)


def test_bad_manifests_are_refused(tmp_path: Path) -> None:
    with pytest.raises(LowsimError, match="manifest not found"):
        read_manifest(tmp_path / "none.parquet")
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet at all")
    with pytest.raises(LowsimError, match="not a readable Parquet file"):
        read_manifest(junk)
    other = tmp_path / "other.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(other)
    with pytest.raises(LowsimError, match="not a lowsim manifest"):
        read_manifest(other)
