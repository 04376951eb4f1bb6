"""`lowsim regenerate` on damaged or malicious manifests: paths that leave their folder, missing keys, damaged
rows and files. Each case: one line naming the file and the problem, the right exit code, nothing changed."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lowsim.compare import synthetic_files
from lowsim.errors import UnsafePathError
from tests.robustness.conftest import assert_one_line_error, invoke, snapshot

pytestmark = pytest.mark.usefixtures("in_tmp_folder")


def _tampered_copy(good_run: dict[str, Path], tmp_path: Path, change: Callable[[pd.DataFrame], None]) -> Path:
    """A copy of the good manifest (beside a copy of its dataset) with `change` applied to its rows."""
    shutil.copytree(good_run["out"], tmp_path / "out")
    table = pq.read_table(good_run["manifest"])
    frame = table.to_pandas()
    change(frame)
    tampered = pa.Table.from_pandas(frame, schema=table.schema, preserve_index=False)
    path = tmp_path / "m.parquet"
    pq.write_table(tampered.replace_schema_metadata(table.schema.metadata), path)
    return path


def _set(column: str, value: Any) -> Callable[[pd.DataFrame], None]:
    def change(frame: pd.DataFrame) -> None:
        frame.loc[frame["key"] == "00000000", column] = value
    return change


@pytest.mark.parametrize(("column", "value", "problem"), [
    ("source_path", "../../etc/passwd", "contains '..'"),
    ("source_path", "/etc/passwd", "is absolute"),
    ("dark_file_name", "../../../x.png", "contains '..'"),
    ("clean_file_name", "/tmp/x.png", "is absolute"),
    ("source_path", "", "is empty"),
])
def test_paths_leaving_their_folder_are_refused(good_run: dict[str, Path], tmp_path: Path, column: str,
                                               value: str, problem: str) -> None:
    manifest = _tampered_copy(good_run, tmp_path, _set(column, value))
    before = snapshot(good_run["base"])
    result = invoke("regenerate", manifest, "--key", "00000000", "--out", tmp_path / "x.png")
    assert_one_line_error(result, 2, column, problem)
    assert not (tmp_path / "x.png").exists() and snapshot(good_run["base"]) == before


def test_a_source_symlink_leading_out_of_the_source_folder_is_refused(good_run: dict[str, Path],
                                                                     tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(good_run["src"], src)
    manifest = _tampered_copy(good_run, tmp_path, lambda frame: None)
    source = pq.read_table(manifest).to_pandas().set_index("key").loc["00000000", "source_path"]
    (tmp_path / "secret.png").write_bytes((src / source).read_bytes())
    (src / source).unlink()
    (src / source).symlink_to(tmp_path / "secret.png")
    result = invoke("regenerate", manifest, "--key", "00000000", "--out", tmp_path / "x.png", "--src", src)
    assert_one_line_error(result, 2, "source_path", "symbolic link")
    assert not (tmp_path / "x.png").exists()


def test_an_unknown_key_names_the_manifest(good_run: dict[str, Path], tmp_path: Path) -> None:
    result = invoke("regenerate", good_run["manifest"], "--key", "nope", "--out", tmp_path / "x.png")
    assert_one_line_error(result, 2, str(good_run["manifest"]), "no sample with key 'nope'")


def test_a_truncated_manifest_is_refused(good_run: dict[str, Path], tmp_path: Path) -> None:
    damaged = tmp_path / "m.parquet"
    damaged.write_bytes(good_run["manifest"].read_bytes()[:300])
    result = invoke("regenerate", damaged, "--key", "00000000", "--out", tmp_path / "x.png")
    assert_one_line_error(result, 2, "m.parquet", "not a readable Parquet file")


def test_a_row_with_a_null_seed_is_damaged_not_a_traceback(good_run: dict[str, Path], tmp_path: Path) -> None:
    manifest = _tampered_copy(good_run, tmp_path, _set("bit_depth", None))
    result = invoke("regenerate", manifest, "--key", "00000000", "--out", tmp_path / "x.png")
    assert_one_line_error(result, 2, "m.parquet", "row of sample 00000000 is damaged")


def test_an_edited_source_is_detected_by_its_sha256(good_run: dict[str, Path], tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(good_run["src"], src)
    source = pq.read_table(good_run["manifest"]).to_pandas().set_index("key").loc["00000000", "source_path"]
    (src / source).write_bytes((src / source).read_bytes() + b"edited")
    result = invoke("regenerate", good_run["manifest"], "--key", "00000000", "--out", tmp_path / "x.png",
                    "--src", src)
    assert_one_line_error(result, 2, source, "sha256 mismatch")


def test_compare_refuses_a_manifest_row_leading_out_of_its_dataset(good_run: dict[str, Path],
                                                                   tmp_path: Path) -> None:
    manifest = _tampered_copy(good_run, tmp_path, _set("dark_file_name", "../../../etc/passwd"))
    with pytest.raises(UnsafePathError, match="dark_file_name '../../../etc/passwd' contains '..'"):
        synthetic_files(manifest, None)
