"""`lowsim generate --output raw`: packed raw dark frames from clean photos, their manifest, bit-exact regenerate."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from lowsim.cli import main
from lowsim.generate import generate, regenerate
from lowsim.params import RawParams
from lowsim.raw.synthesize import bright_mosaic, degrade_to_codes, pack

REPO = Path(__file__).resolve().parents[1]
SONY = REPO / "src" / "lowsim" / "data" / "params" / "sony_a7s2.json"


def _cli(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(3):
        img = cv2.GaussianBlur(rng.integers(0, 256, (96, 80, 3), dtype=np.uint8), (0, 0), 3)
        cv2.imwrite(str(folder / f"p{i}.png"), img)
    return folder


def test_grey_photo_gives_the_planned_dark_level_and_shot_noise():
    p = RawParams(system_gain=2.0, read_noise=1e-9, row_noise=0.0, exposure_ratio=100.0, bright_level=0.3,
                  black_offset_r=0.0, black_offset_g1=0.0, black_offset_b=0.0, black_offset_g2=0.0)
    clean = np.full((256, 256, 3), 180, np.uint8)
    bright = bright_mosaic(clean, p)
    assert bright[0::2, 1::2].mean() == pytest.approx(0.3 * (16383 - 512), rel=1e-4)
    packed = degrade_to_codes(clean, p, np.random.default_rng(1)).astype(np.float64) - 512
    assert packed.shape == (128, 128, 4)
    green = packed[..., 1]
    expected = 0.3 * (16383 - 512) / 100
    assert green.mean() == pytest.approx(expected, rel=0.01)
    assert green.var() == pytest.approx(2.0 * expected + 1 / 12, rel=0.08)  # K·μ plus the ADC's rounding


def test_pack_is_sids_order():
    mosaic = np.array([[1, 2], [4, 3]])  # R G / G B
    assert pack(mosaic)[0, 0].tolist() == [1, 2, 3, 4]


def test_generate_raw_writes_packed_frames_and_regenerates_them_exactly(photos: Path, tmp_path: Path):
    manifest = tmp_path / "raw.parquet"
    assert _cli(["generate", "--params", str(SONY), "--output", "raw", "--src", str(photos), "--n", "4",
                 "--size", "64", "--out", str(tmp_path / "ds"), "--manifest", str(manifest), "--no-progress"]) == 0
    table = pd.read_parquet(manifest)
    assert list(table["status"]) == ["ok"] * 4 and set(table["model"]) == {"lowsim.raw/v1"}
    for column in ("system_gain", "read_noise", "row_noise", "read_shape", "exposure_ratio", "bright_level",
                   "black_offset_g2", "adc_black", "adc_white"):
        assert table[column].notna().all()
    assert set(table["adc_black"]) == {512.0} and (table["exposure_ratio"] > 1).all()
    dark = np.load(tmp_path / "ds" / table["dark_file_name"][0])
    assert dark.shape == (32, 32, 4) and dark.dtype == np.uint16
    assert cv2.imread(str(tmp_path / "ds" / table["clean_file_name"][0])).shape == (64, 64, 3)
    for key, name in zip(table["key"], table["dark_file_name"]):
        _, again, _ = regenerate(manifest, key)
        np.testing.assert_array_equal(again, np.load(tmp_path / "ds" / name))


def test_output_kind_must_match_the_params_file(photos: Path, tmp_path: Path, capsys):
    args = ["generate", "--src", str(photos), "--n", "1", "--out", str(tmp_path / "x"), "--no-progress"]
    assert _cli([*args, "--params", str(REPO / "src" / "lowsim" / "data" / "params" / "lol.json"), "--output", "raw"]) == 2
    assert "--output raw needs a raw-model params file" in capsys.readouterr().err
    assert _cli([*args, "--params", str(SONY), "--output", "srgb"]) == 2
    assert "--output srgb needs an sRGB-model params file" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_raw_dataset_does_not_depend_on_workers(photos: Path, tmp_path: Path):
    runs = [generate(src=photos, n=3, params=SONY, out=tmp_path / f"w{w}", manifest=tmp_path / f"w{w}.parquet",
                     size=48, seed=5, workers=w, progress=False) for w in (1, 2)]
    assert [r["dark_sha256"] for r in runs[0].rows] == [r["dark_sha256"] for r in runs[1].rows]


def test_python_api_degrades_to_a_packed_raw_frame():
    import lowsim

    draw = lowsim.load_params(str(SONY)).sample(1, seed=0)[0]
    dark = lowsim.degrade(np.full((64, 48, 3), 128, np.uint8), draw, seed=1)
    assert dark.shape == (32, 24, 4) and dark.dtype == np.uint16
    np.testing.assert_array_equal(dark, lowsim.degrade(np.full((64, 48, 3), 128, np.uint8), draw, seed=1))
