"""`lowsim calibrate` on bad pairs: swapped low/high, identical pairs, tiny images, non-UTF-8 names, images over
the pixel cap, pairs of different sizes. Garbage is excluded with a reason (never calibrated into gains of
2-3 or 1.0); a run with nothing usable stops with one line and writes no params file."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from lowsim.calibrate import write_table
from lowsim.degrade import to_float
from lowsim.pair_checks import exclusion_reason, pair_checks
from lowsim.pairs import Pair, find_pairs
from tests.robustness.conftest import assert_one_line_error, invoke

pytestmark = pytest.mark.usefixtures("in_tmp_folder")


@pytest.fixture(scope="module")
def lol_crop(lol_dev: Path) -> tuple[np.ndarray, np.ndarray]:
    """A real dark/bright pair, cropped small: (dark, bright) float in [0, 1]."""
    name = sorted(p.name for p in (lol_dev / "low").iterdir())[0]
    dark, bright = (cv2.imread(str(lol_dev / side / name))[100:196, 200:328, ::-1] for side in ("low", "high"))
    return to_float(np.ascontiguousarray(dark)), to_float(np.ascontiguousarray(bright))


def _write_pairs(root: Path, pairs: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    for side in ("low", "high"):
        (root / side).mkdir(parents=True, exist_ok=True)
    for name, (dark, bright) in pairs.items():
        _write_png(root / "low" / name, dark)
        _write_png(root / "high" / name, bright)
    return root


def _write_png(path: Path, image: np.ndarray) -> None:
    """cv2.imwrite by bytes: OpenCV crashes on a file name that is not UTF-8."""
    path.write_bytes(cv2.imencode(".png", image)[1].tobytes())


# ================================================================================ plausible garbage


def test_a_real_pair_passes_the_checks(lol_crop: tuple[np.ndarray, np.ndarray]) -> None:
    assert exclusion_reason(pair_checks(*lol_crop)) == ""


def test_a_swapped_pair_is_excluded(lol_crop: tuple[np.ndarray, np.ndarray]) -> None:
    dark, bright = lol_crop
    assert "are low/ and high/ swapped?" in exclusion_reason(pair_checks(bright, dark))


def test_an_identical_pair_is_excluded(lol_crop: tuple[np.ndarray, np.ndarray]) -> None:
    assert exclusion_reason(pair_checks(lol_crop[1], lol_crop[1])) == "dark and bright are the same image"


def test_tiny_pairs_stop_the_run_with_one_line_and_no_params(tmp_path: Path) -> None:
    tiny = {f"{k}.png": (np.full((3, 3, 3), 10, np.uint8), np.full((3, 3, 3), 100, np.uint8)) for k in range(3)}
    pairs = _write_pairs(tmp_path / "pairs", tiny)
    result = invoke("calibrate", "--pairs", pairs, "--out", tmp_path / "p.json", "--workers", "1", "--method",
                    "paper")
    assert_one_line_error(result, 2, "most pairs cannot be used", r"too few unsaturated pixels \(9 < 2000\)")
    assert not (tmp_path / "p.json").exists()


# ================================================================================ tracebacks, limits


def test_a_non_utf8_pair_name_is_named_by_its_escaped_bytes(tmp_path: Path) -> None:
    image = np.full((40, 40, 3), 50, np.uint8)
    pairs = _write_pairs(tmp_path / "pairs", {os.fsdecode(b"\xffa.png"): (image, image), "b.png": (image, image)})
    names = sorted(p.name for p in find_pairs(pairs))
    assert names == ["\\xffa", "b"]
    table = write_table([{"name": n, "gain_r": 0.2} for n in names], tmp_path / "t.parquet")
    assert table.is_file()


def test_a_non_utf8_unmatched_file_is_one_printable_line(tmp_path: Path) -> None:
    image = np.full((40, 40, 3), 50, np.uint8)
    pairs = _write_pairs(tmp_path / "pairs", {"a.png": (image, image)})
    _write_png(pairs / "low" / os.fsdecode(b"\xffb.png"), image)
    result = invoke("calibrate", "--pairs", pairs, "--out", tmp_path / "p.json")
    line = assert_one_line_error(result, 2, "pairs", r"\\xffb.png", "no bright partner")
    assert "--no-strict" not in line


def test_pairs_over_the_pixel_cap_are_refused_before_decoding(tmp_path: Path) -> None:
    image = np.full((40, 40, 3), 50, np.uint8)
    pairs = _write_pairs(tmp_path / "pairs", {"a.png": (image, image * 2)})
    result = invoke("calibrate", "--pairs", pairs, "--out", tmp_path / "p.json", "--workers", "1",
                    "--max-pixels", "100")
    assert_one_line_error(result, 2, "a.png", "40x40 = 1,600 pixels, over the limit of 100")
    assert not (tmp_path / "p.json").exists()


def test_a_missing_pairs_folder(tmp_path: Path) -> None:
    result = invoke("calibrate", "--pairs", tmp_path / "nowhere", "--out", tmp_path / "p.json")
    assert_one_line_error(result, 2, "nowhere")


def test_a_pair_of_different_sizes_names_both_files(tmp_path: Path) -> None:
    pairs = _write_pairs(tmp_path / "pairs", {"a.png": (np.full((40, 40, 3), 20, np.uint8),
                                                        np.full((40, 48, 3), 90, np.uint8))})
    result = invoke("calibrate", "--pairs", pairs, "--out", tmp_path / "p.json", "--workers", "1")
    assert_one_line_error(result, 2, "a.png", "40x40", "40x48|48x40")
    assert not (tmp_path / "p.json").exists()


def test_pair_names_are_always_printable() -> None:
    assert Pair(os.fsdecode(b"x\xfey"), Path("d"), Path("b")).name == "x\\xfey"
