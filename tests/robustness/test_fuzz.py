"""Property-based fuzzing of the three readers of user files: the params schema (lowsim.params, JSON), the
manifest reader (lowsim.manifest) and the pairs CSV reader (lowsim.pairs). Valid inputs, valid inputs with
random damage and random garbage may be accepted or refused, but the only exception ever raised is the
project's own LowsimError.

Examples per property: LOWSIM_FUZZ_EXAMPLES (default 25, enough for CI; try 2000 locally).
"""
from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lowsim.errors import LowsimError
from lowsim.manifest import DATASET_DIR_KEY, dataset_dir, read_manifest, write_manifest
from lowsim.pairs import find_csv_pairs
from lowsim.params import ParamDistribution
from tests.robustness.conftest import write_params

FUZZ = settings(max_examples=int(os.environ.get("LOWSIM_FUZZ_EXAMPLES", "25")), deadline=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
WORK = Path(tempfile.mkdtemp(prefix="lowsim-fuzz-"))

json_scalars = st.none() | st.booleans() | st.integers(-10**30, 10**30) | \
    st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([1e308, -1e308, 1e-320]) | st.text(max_size=8)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=5) |
                           st.dictionaries(st.text(max_size=8), inner, max_size=5), max_leaves=20)


def _valid_params() -> dict[str, Any]:
    path = WORK / "valid.json"
    if not path.exists():
        write_params(path)
    return json.loads(path.read_text())


def _only_our_errors(action: Any) -> None:
    """Run action(); any exception but LowsimError fails the property."""
    try:
        action()
    except LowsimError as err:
        assert str(err) and "\n" not in str(err).strip()


# ================================================================================ params files


@st.composite
def damaged_params(draw: st.DrawFn) -> Any:
    """A valid params object with a few fields replaced, deleted or added (or pure random JSON)."""
    if draw(st.integers(0, 4)) == 0:
        return draw(json_values)
    data = _valid_params()
    keys = list(data) + ["points", "sampler", "jitter", "extra"]
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(keys))
        action = draw(st.sampled_from(["replace", "delete", "element"]))
        if action == "delete":
            data.pop(key, None)
        elif action == "element" and isinstance(data.get(key), list) and data[key]:
            data[key][draw(st.integers(0, len(data[key]) - 1))] = draw(json_values)
        elif action == "element" and isinstance(data.get(key), dict) and data[key]:
            data[key][draw(st.sampled_from(sorted(data[key])))] = draw(json_values)
        else:
            data[key] = draw(json_values)
    return data


@FUZZ
@given(damaged_params())
def test_params_load_raises_only_lowsim_errors(data: Any) -> None:
    path = WORK / "fuzz.json"
    path.write_text(json.dumps(data))
    _only_our_errors(lambda: ParamDistribution.load(path))


@FUZZ
@given(st.binary(max_size=200))
def test_params_load_of_random_bytes(data: bytes) -> None:
    path = WORK / "bytes.json"
    path.write_bytes(data)
    _only_our_errors(lambda: ParamDistribution.load(path))


def test_the_fuzzed_params_start_from_a_loadable_file() -> None:
    path = WORK / "roundtrip.json"
    path.write_text(json.dumps(_valid_params()))
    assert ParamDistribution.load(path).names  # the mutations start from a file that loads


# ================================================================================ manifests


def _valid_manifest_bytes() -> bytes:
    path = WORK / "valid.parquet"
    if not path.exists():
        rows = [{"key": f"{i:08d}", "index": i, "status": "ok", "source_path": "a.png",
                 "dark_file_name": f"dark/{i:08d}.png", "clean_file_name": f"clean/{i:08d}.png", "seed": 0}
                for i in range(3)]
        write_manifest(rows, path, WORK)
    return path.read_bytes()


@st.composite
def damaged_manifests(draw: st.DrawFn) -> bytes:
    """A valid manifest truncated, with bytes flipped, or random bytes."""
    data = bytearray(_valid_manifest_bytes())
    kind = draw(st.sampled_from(["truncate", "flip", "random"]))
    if kind == "truncate":
        return bytes(data[:draw(st.integers(0, len(data) - 1))])
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    return draw(st.binary(max_size=300))


@FUZZ
@given(damaged_manifests())
def test_read_manifest_raises_only_lowsim_errors(data: bytes) -> None:
    path = WORK / "fuzz.parquet"
    path.write_bytes(data)
    _only_our_errors(lambda: read_manifest(path))


column_values = st.lists(st.none() | st.text(max_size=6) | st.integers(-5, 5), min_size=1, max_size=3)


@FUZZ
@given(st.dictionaries(st.sampled_from(["key", "index", "status", "source_path", "dark_file_name",
                                        "clean_file_name", "seed", "other"]), column_values, max_size=8),
       st.dictionaries(st.sampled_from([DATASET_DIR_KEY, "lowsim.src_root", "x"]), st.text(max_size=12),
                       max_size=3))
def test_foreign_parquet_files_raise_only_lowsim_errors(columns: dict[str, list[Any]],
                                                        metadata: dict[str, str]) -> None:
    length = min((len(v) for v in columns.values()), default=0)
    table = pa.table({k: pa.array([str(x) if x is not None else None for x in v[:length]], pa.string())
                      for k, v in columns.items()}) if columns else pa.table({})
    path = WORK / "foreign.parquet"
    buffer = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(metadata), buffer)
    path.write_bytes(buffer.getvalue())

    def read() -> None:
        frame, meta = read_manifest(path)
        dataset_dir(path, meta)
        assert isinstance(frame.shape, tuple)
    _only_our_errors(read)


# ================================================================================ pairs CSV


cells = st.lists(st.sampled_from(list("ab./\\,\"' \n\x00é") + ["dark.png", "..", "1e9", "-1", "nan"]),
                max_size=4).map("".join)


@st.composite
def pairs_csvs(draw: st.DrawFn) -> bytes:
    """A CSV with plausible and implausible headers and cells, or random bytes."""
    if draw(st.integers(0, 5)) == 0:
        return draw(st.binary(max_size=200))
    header = draw(st.lists(st.sampled_from(["dark", "bright", "name", "ratio", "Dark ", "x", ""]),
                           min_size=0, max_size=5))
    rows = draw(st.lists(st.lists(cells, min_size=len(header), max_size=len(header)), max_size=4))
    lines = [",".join(header)] + [",".join(row) for row in rows]
    return "\n".join(lines).encode("utf-8", "surrogatepass")


@FUZZ
@given(pairs_csvs())
def test_csv_pairs_reader_raises_only_lowsim_errors(data: bytes) -> None:
    root = WORK / "csv"
    root.mkdir(exist_ok=True)
    for name in ("dark.png", "a.png"):
        (root / name).write_bytes(b"png")
    path = root / "pairs.csv"
    path.write_bytes(data)
    _only_our_errors(lambda: find_csv_pairs(path))


def test_a_good_csv_still_reads() -> None:
    root = WORK / "good-csv"
    root.mkdir(exist_ok=True)
    for name in ("d.png", "b.png"):
        (root / name).write_bytes(np.zeros(4, np.uint8).tobytes())
    (root / "pairs.csv").write_text("dark,bright,ratio\nd.png,b.png,100\n")
    pairs = find_csv_pairs(root / "pairs.csv")
    assert [(p.name, p.ratio) for p in pairs] == [("d", 100.0)]
