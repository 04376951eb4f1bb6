"""`lowsim generate` (and preview) on bad input, by class: plausible garbage, unbounded memory, tracebacks.
Bad sources become error rows (status + message) and are skipped; bad options and params files stop the run
with one line naming the file and the problem; earlier good output is never touched."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import cv2
import pandas as pd
import pytest

from lowsim.generate.driver import PLAN_BATCH, _missing_batches
from tests.robustness.conftest import assert_one_line_error, invoke, photo, snapshot, temp_files, write_sources

pytestmark = pytest.mark.usefixtures("in_tmp_folder")


def _generate(src: Path, out: Path, params: Path, n: int = 3, *extra: str):
    return invoke("generate", "--src", src, "--n", str(n), "--size", "48", "--params", params, "--out", out,
                  "--manifest", out.parent / f"{out.name}.parquet", "--no-progress", *extra)


def _errors(manifest: Path) -> dict[str, str]:
    frame = pd.read_parquet(manifest)
    return dict(zip(frame.loc[frame["status"] == "error", "source_path"],
                    frame.loc[frame["status"] == "error", "error_message"]))


# ================================================================================ plausible garbage


@pytest.mark.parametrize(("height", "width"), [(1, 1), (3, 3), (2, 500)])
def test_tiny_sources_are_error_rows_not_flat_crops(tmp_path: Path, params_file: Path, height: int,
                                                   width: int) -> None:
    src = write_sources(tmp_path / "src", 2)
    cv2.imwrite(str(src / "tiny.png"), photo(height, width))
    result = _generate(src, tmp_path / "out", params_file, 4)
    assert result.code == 0, result.stderr
    errors = _errors(tmp_path / "out.parquet")
    assert list(errors) == ["tiny.png"]
    assert f"{width}x{height} px, smaller than the minimum of 32 px" in errors["tiny.png"]


def _params_with(params_file: Path, tmp_path: Path, **changes: Any) -> Path:
    data = json.loads(params_file.read_text())
    for key, value in changes.items():
        if key.startswith("mean_"):
            data["mean"][data["names"].index(key[5:])] = value
        elif key.startswith("fixed_"):
            data["fixed"][key[6:]] = value
        else:
            data[key] = value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("change", [{"mean_gain_r": 300.0}, {"mean_gain_g": 50.0}, {"fixed_illum_gamma": 1e300}])
def test_an_overflowing_gain_is_refused_before_any_sample(tmp_path: Path, params_file: Path,
                                                         change: dict[str, float]) -> None:
    bad = _params_with(params_file, tmp_path, **change)
    result = _generate(write_sources(tmp_path / "src", 1), tmp_path / "out", bad)
    assert_one_line_error(result, 2, "bad.json", "plausible maximum")
    assert not (tmp_path / "out").exists()


def test_a_source_edited_between_two_runs_is_refused_on_resume(tmp_path: Path, params_file: Path) -> None:
    src = write_sources(tmp_path / "src", 2)
    assert _generate(src, tmp_path / "out", params_file, 3).code == 0
    before = snapshot(tmp_path / "out", tmp_path / "out.parquet")
    edited = photo(72, 96, seed=99)
    cv2.imwrite(str(src / "a.png"), edited)
    result = _generate(src, tmp_path / "out", params_file, 5)
    assert_one_line_error(result, 2, "a.png", "changed since sample")
    assert snapshot(tmp_path / "out", tmp_path / "out.parquet") == before


# ================================================================================ unbounded memory


def test_the_plan_is_lazy_whatever_n() -> None:
    started = time.perf_counter()
    first = next(_missing_batches({}, 10**15))
    assert first == list(range(PLAN_BATCH)) and time.perf_counter() - started < 1.0


def test_a_decompression_bomb_is_an_error_row(tmp_path: Path, params_file: Path, bomb: Path) -> None:
    src = write_sources(tmp_path / "src", 2)
    shutil.copy(bomb, src / "bomb.png")
    result = _generate(src, tmp_path / "out", params_file, 3)
    assert result.code == 0, result.stderr
    message = _errors(tmp_path / "out.parquet")["bomb.png"]
    assert "11000x11000 = 121,000,000 pixels, over the limit of 100,000,000" in message


def test_preview_refuses_a_bomb_in_under_a_second(tmp_path: Path, params_file: Path, bomb: Path) -> None:
    started = time.perf_counter()
    result = invoke("preview", "--src", bomb, "--params", params_file, "--out", tmp_path / "fig.png")
    assert time.perf_counter() - started < 1.0
    assert_one_line_error(result, 2, "bomb.png", "over the limit", "--max-pixels")


def test_max_pixels_is_an_option(tmp_path: Path, params_file: Path) -> None:
    src = write_sources(tmp_path / "src", 1)
    result = invoke("preview", "--src", src / "a.png", "--params", params_file, "--out", tmp_path / "f.png",
                    "--max-pixels", "1000")
    assert_one_line_error(result, 2, "a.png", "96x72 = 6,912 pixels, over the limit of 1,000")


def test_max_pixels_must_be_positive(tmp_path: Path, params_file: Path) -> None:
    result = _generate(write_sources(tmp_path / "src", 1), tmp_path / "out", params_file, 1, "--max-pixels", "0")
    assert_one_line_error(result, 2, "--max-pixels must be a positive")


def test_workers_are_capped_at_samples_and_cores_with_a_note(tmp_path: Path, params_file: Path) -> None:
    result = _generate(write_sources(tmp_path / "src", 2), tmp_path / "out", params_file, 2, "--workers", "1000")
    assert result.code == 0, result.stderr
    assert f"note: --workers 1000 capped at {min(2, os.cpu_count() or 1)}" in result.stderr


# ================================================================================ tracebacks


def test_a_non_utf8_source_name_is_an_error_row(tmp_path: Path, params_file: Path) -> None:
    src = write_sources(tmp_path / "src", 2)
    shutil.copy(src / "a.png", os.fsdecode(bytes(src) + b"/\xffbad.png"))
    result = _generate(src, tmp_path / "out", params_file, 3)
    assert result.code == 0, result.stderr
    errors = _errors(tmp_path / "out.parquet")
    assert "file name is not valid UTF-8" in errors["\\xffbad.png"]


@pytest.mark.parametrize(("field", "value"), [
    ("mean", "abc"), ("names", 5), ("fixed", [1, 2]), ("schema_version", [1]), ("cov", {"a": 1}),
    ("n_pairs", "many"), ("transforms", "log"), ("fixed_gamma", "1.2"),
])
def test_a_params_file_with_a_wrongly_typed_field(tmp_path: Path, params_file: Path, field: str,
                                                  value: Any) -> None:
    bad = _params_with(params_file, tmp_path, **{field: value})
    result = _generate(write_sources(tmp_path / "src", 1), tmp_path / "out", bad)
    assert_one_line_error(result, 2, "bad.json")
    assert not (tmp_path / "out").exists()


def test_a_params_file_that_is_not_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\xff\xfe{")
    result = _generate(write_sources(tmp_path / "src", 1), tmp_path / "out", bad)
    assert_one_line_error(result, 2, "bad.json", "not valid JSON")


def test_only_bad_sources_is_one_line(tmp_path: Path, params_file: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    cv2.imwrite(str(src / "tiny.png"), photo(3, 3))
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    result = _generate(src, tmp_path / "out", params_file, 2)
    assert_one_line_error(result, 2, "no readable source image among 2")


def test_an_empty_source_folder(tmp_path: Path, params_file: Path) -> None:
    (tmp_path / "src").mkdir()
    result = _generate(tmp_path / "src", tmp_path / "out", params_file, 2)
    assert_one_line_error(result, 2, "src", "no images found")
    assert temp_files(tmp_path) == []
