"""`lowsim calibrate` on raw pairs: the raw method chosen for SID-layout DNGs, the params file it writes, a batch
with bad pairs (error rows, the rest goes on), and the MCR stack's nonlinear response named, not fitted."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lowsim.cli import main
from lowsim.params import RAW_MODEL, ParamDistribution
from lowsim.raw.calibrate import calibrate_raw_pair, central_crop
from lowsim.raw.dng import write_dng
from lowsim.raw.read import read_raw_frame
from lowsim.raw.simulate import simulate_camera


def _cli(args: list[str]) -> int:
    """`lowsim <args>` in this process, one worker (spawning a pool costs more than these small pairs)."""
    try:
        main([*args, "--workers", "1"])
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


@pytest.fixture(scope="module")
def sony_tree(shared_data: Path, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sid")
    simulate_camera(root, shared_data / "noise-params" / "eld" / "SonyA7S2.json", [0.3, 1.0, 3.0], 100,
                    size=128, camera="Sony")
    return root


def test_auto_method_calibrates_raw_pairs_and_writes_a_schema_3_file(sony_tree: Path, tmp_path: Path):
    out = tmp_path / "sony.json"
    assert _cli(["calibrate", "--pairs", str(sony_tree), "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["schema_version"] == 3 and data["model"] == RAW_MODEL and data["method"] == "raw"
    assert data["fixed"] == {"adc_black": 512.0, "adc_white": 16383.0}
    dist = ParamDistribution.load(out)
    assert dist.n_pairs == 3
    relation = dist.info["read_noise_vs_gain"]  # ELD's SonyA7S2: slope 0.54, bias 1.22
    assert relation["slope"] == pytest.approx(0.54, abs=0.08) and relation["bias"] == pytest.approx(1.22, abs=0.1)
    draw = dist.sample(np.random.default_rng(0))
    assert 0.05 < draw.system_gain < 20 and draw.adc_black == 512
    table = pd.read_parquet(tmp_path / "sony.pairs.parquet")
    assert list(table["excluded"]) == [False] * 3


def test_a_batch_with_bad_pairs_gets_error_rows_and_goes_on(sony_tree: Path, shared_data: Path, tmp_path: Path):
    shutil.copytree(sony_tree, tmp_path / "tree")
    long_dir, short_dir = tmp_path / "tree" / "Sony" / "long", tmp_path / "tree" / "Sony" / "short"
    shutil.copy(shared_data / "raw-real" / "truncated" / "Issue_247-1.nef", long_dir / "00004_00_10s.nef")
    write_dng(short_dir / "00004_00_0.1s.dng", np.full((128, 128), 600, np.uint16), exposure=0.1)
    write_dng(long_dir / "00005_00_10s.dng", np.full((64, 64), 600, np.uint16), exposure=10)
    write_dng(short_dir / "00005_00_0.1s.dng", np.full((128, 128), 600, np.uint16), exposure=0.1)
    out = tmp_path / "batch.json"
    assert _cli(["calibrate", "--pairs", str(tmp_path / "tree"), "--method", "raw", "--out", str(out)]) == 0
    table = pd.read_parquet(tmp_path / "batch.pairs.parquet").set_index("name")
    assert table["excluded"].to_dict() == {"00001_00_0.3s": False, "00002_00_0.3s": False, "00003_00_0.3s": False,
                                           "00004_00_0.1s": True, "00005_00_0.1s": True}
    assert "00004_00_10s.nef: not a readable camera raw file" in table.loc["00004_00_0.1s", "reason"]
    assert "different sizes" in table.loc["00005_00_0.1s", "reason"]
    assert ParamDistribution.load(out).n_pairs == 3


def test_mcr_stack_is_named_nonlinear_not_fitted(shared_data: Path, tmp_path: Path, capsys):
    stack = sorted((shared_data / "raw-real" / "mcr-exposure-stack").glob("*.dng"))
    rows = ["name,dark,bright"] + [f"p{i},{dark},{stack[-1]}" for i, dark in enumerate(stack[:-1])]
    (tmp_path / "mcr.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "mcr.json"
    assert _cli(["calibrate", "--pairs", str(tmp_path / "mcr.csv"), "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "response is not linear" in error and "no usable raw pair (7 refused)" in error
    assert not out.exists()
    row = calibrate_raw_pair("p0", stack[0], stack[-1], None)
    assert row["exposure_ratio"] == pytest.approx(96.0)
    assert row["measured_ratio"] < 20  # mean 10 -> 133: brightness grows far less than the exposure
    assert np.isnan(row["system_gain"])


def test_ratio_column_and_bad_ratio_in_a_csv(sony_tree: Path, tmp_path: Path):
    short = sorted((sony_tree / "Sony" / "short").glob("*.dng"))
    long = sorted((sony_tree / "Sony" / "long").glob("*.dng"))
    assert calibrate_raw_pair("a", short[0], long[0], 100.0)["excluded"] is False
    row = calibrate_raw_pair("b", long[0], short[0], None)
    assert row["excluded"] and "not above 1" in row["reason"]


def test_central_crop_keeps_the_colour_phase(shared_data: Path):
    frame = read_raw_frame(shared_data / "raw-real" / "blackmagic_pocket4k.dng")
    crop = central_crop(frame, 1024)
    assert crop.mosaic.shape == (1024, 1024)
    top, left = (2176 - 1024) // 4 * 2, (4128 - 1024) // 4 * 2
    assert top % 2 == 0 and left % 2 == 0
    np.testing.assert_array_equal(crop.mosaic, frame.mosaic[top:top + 1024, left:left + 1024])


def test_csv_exposure_columns_give_the_ratio_when_files_lack_it(tmp_path: Path):
    from lowsim.params import RawParams
    from lowsim.raw.noise import noisy_codes
    from lowsim.raw.simulate import chart_signal

    truth = RawParams(system_gain=2.0, read_noise=4.0)
    rng = np.random.default_rng(0)
    signal = chart_signal(128, 128, 15871.0)
    lines = ["name,dark,bright,dark_exposure,bright_exposure"]
    for i, (dark_s, bright_s) in enumerate([("0.1", "20"), ("0.2", "40"), ("0", "40")]):
        write_dng(tmp_path / f"d{i}.dng", noisy_codes(signal / 200, truth, rng))  # no ExposureTime tag
        write_dng(tmp_path / f"b{i}.dng", noisy_codes(signal, truth, rng))
        lines.append(f"p{i},d{i}.dng,b{i}.dng,{dark_s},{bright_s}")
    (tmp_path / "pairs.csv").write_text("\n".join(lines) + "\n")
    assert _cli(["calibrate", "--pairs", str(tmp_path / "pairs.csv"), "--out", str(tmp_path / "c.json")]) == 0
    table = pd.read_parquet(tmp_path / "c.pairs.parquet").set_index("name")
    assert table.loc["p0", "exposure_ratio"] == 200.0
    assert table.loc["p1", "system_gain"] == pytest.approx(2.0, rel=0.1)
    assert table.loc["p2", "excluded"] and "not positive numbers" in table.loc["p2", "reason"]


def test_results_do_not_depend_on_the_worker_count(sony_tree: Path, tmp_path: Path):
    from lowsim.raw.calibrate import run_raw_calibration

    one = run_raw_calibration(sony_tree, tmp_path / "one.json", workers=1)
    two = run_raw_calibration(sony_tree, tmp_path / "two.json", workers=2)
    assert pd.DataFrame(one.rows).equals(pd.DataFrame(two.rows))
