"""The exposure anchor: metering (stages.metered_light), the anchor's arithmetic and file round trip
(params.ExposureAnchor), its estimate from calibration rows (calibrate.exposure_anchor) and generate's use of
it (the draw follows the source's meter reading; rows regenerate bit-exactly)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from lowsim import generate as G
from lowsim.calibrate import exposure_anchor
from lowsim.degradation import stages
from lowsim.errors import LowsimError
from lowsim.manifest import read_manifest
from lowsim.params import ExposureAnchor, ParamDistribution
from test_generate import run_generate
from test_generate_v2 import write_v2_params


def test_metered_light_is_the_mean_linear_light_whatever_the_dtype():
    img = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    expected = float(stages.srgb_to_linear(img.astype(np.float64) / 255.0).mean())
    assert stages.metered_light(img) == pytest.approx(expected, rel=1e-9)
    assert stages.metered_light(img.astype(np.float32) / 255) == pytest.approx(expected, rel=1e-6)
    assert stages.metered_light(img.astype(np.uint16) * 257) == pytest.approx(expected, rel=1e-6)
    assert stages.metered_light(np.zeros((8, 8, 3), np.uint8)) == 0.0
    assert stages.metered_light(np.full((8, 8, 3), 255, np.uint8)) == pytest.approx(1.0)


def test_metered_light_reads_a_large_image_on_a_grid_without_changing_a_flat_one():
    flat = np.full((3000, 2000, 3), 128, np.uint8)
    assert stages.metered_light(flat) == pytest.approx(stages.metered_light(flat[:10, :10]))


def test_the_factor_follows_the_photo_by_one_minus_the_slope_and_clamps_to_the_range():
    anchor = ExposureAnchor.of(0.25, [0.05, 0.1, 0.2, 0.4])
    assert anchor.reference == pytest.approx(np.exp(np.mean(np.log([0.05, 0.1, 0.2, 0.4]))))
    assert anchor.factor(0.2, 0.1) == pytest.approx(2.0 ** 0.75)
    assert anchor.factor(0.1, 0.1) == 1.0
    assert anchor.factor(0.2, 0.001) == anchor.factor(0.2, 0.05)  # below the range: as at its edge
    assert ExposureAnchor.of(1.0, [0.1, 0.2]).factor(0.2, 0.1) == 1.0  # slope 1: a fixed exposure
    assert ExposureAnchor.of(-0.3, [0.1, 0.2]).slope == 0.0


def _anchored(tmp_path: Path, slope: float = 0.25) -> tuple[ParamDistribution, Path]:
    dist = ParamDistribution.load(write_v2_params(tmp_path / "plain.json"))
    keys = np.linspace(0.05, 0.4, len(dist.points))
    dist.exposure_anchor = ExposureAnchor.of(slope, keys)
    return dist, dist.save(tmp_path / "anchored.json")


@pytest.mark.parametrize("sampler", ["empirical", "normal"])
def test_a_draw_follows_the_scene_light_and_without_it_is_the_files_draw(tmp_path: Path, sampler: str):
    dist, path = _anchored(tmp_path)
    dist = ParamDistribution.load(path).with_sampler(sampler)
    plain = ParamDistribution.load(tmp_path / "plain.json").with_sampler(sampler)
    for seed in range(5):
        unanchored = plain.sample(np.random.default_rng(seed))
        assert dist.sample(np.random.default_rng(seed)) == unanchored  # no meter reading: the same draw
        dim = dist.sample(np.random.default_rng(seed), 0.1)
        bright = dist.sample(np.random.default_rng(seed), 0.2)
        assert dim.exposure / bright.exposure == pytest.approx(2.0 ** 0.75)
        assert {k: v for k, v in dim.to_dict().items() if k != "exposure"} == \
            {k: v for k, v in unanchored.to_dict().items() if k != "exposure"}


def test_the_anchor_round_trips_and_a_bad_one_is_refused_naming_the_file(tmp_path: Path):
    dist, path = _anchored(tmp_path)
    assert ParamDistribution.load(path).exposure_anchor == dist.exposure_anchor
    data = json.loads(path.read_text())
    data["exposure_anchor"]["point_keys"] = data["exposure_anchor"]["point_keys"][:-1]
    (tmp_path / "short.json").write_text(json.dumps(data))
    with pytest.raises(LowsimError, match=r"short\.json.*point_keys for"):
        ParamDistribution.load(tmp_path / "short.json")
    data = json.loads(path.read_text())
    data["exposure_anchor"]["slope"] = 1.5
    (tmp_path / "steep.json").write_text(json.dumps(data))
    with pytest.raises(LowsimError, match=r"steep\.json.*slope must be in \[0, 1\]"):
        ParamDistribution.load(tmp_path / "steep.json")


def test_calibration_rows_give_the_slope_of_dark_light_on_scene_light():
    rng = np.random.default_rng(0)
    keys = np.exp(rng.uniform(np.log(0.05), np.log(0.5), 60))
    darks = 0.01 * keys ** 0.3 * np.exp(0.01 * rng.standard_normal(60))
    anchor = exposure_anchor([{"scene_light": k, "dark_light": d} for k, d in zip(keys, darks)])
    assert anchor.slope == pytest.approx(0.3, abs=0.02)
    assert anchor.point_keys == tuple(keys)
    assert exposure_anchor([{"scene_light": 0.1, "dark_light": 0.01}] * 5) is None  # scenes that never vary
    assert exposure_anchor([{"name": "old row"}] * 5) is None  # a table from before the meter readings


@pytest.fixture()
def lit_sources(tmp_path: Path) -> Path:
    """One photo and the same photo at a quarter of its light (linear), so the meter reads 4x apart."""
    rng = np.random.default_rng(3)
    photo = cv2.GaussianBlur(rng.integers(40, 200, (96, 96, 3)).astype(np.uint8), (0, 0), 2)
    linear = stages.srgb_to_linear(photo.astype(np.float64) / 255.0) / 4.0
    dim = np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)
    folder = tmp_path / "src"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), photo)
    cv2.imwrite(str(folder / "b.png"), np.round(dim * 255).astype(np.uint8))
    return folder


def test_generate_meters_each_source_records_it_and_regenerates_bit_exactly(tmp_path: Path, lit_sources: Path):
    _, path = _anchored(tmp_path)
    result = run_generate(lit_sources, tmp_path / "out", path, 6)
    ok = read_manifest(result.manifest)[0].query("status == 'ok'")
    metered = {s: m for s, m in zip(ok["source_path"], ok["metered_light"])}
    assert metered["a.png"] / metered["b.png"] == pytest.approx(4.0, rel=0.05)
    dist = ParamDistribution.load(path)
    for _, row in ok.iterrows():  # each row's exposure is its draw's, moved by the anchor for its source
        streams = G.sample_streams(5, int(row["index"]))
        drawn = dist.sample(streams["params"], row["metered_light"])
        assert row["exposure"] == drawn.exposure
        clean, dark, _ = G.regenerate(result.manifest, row["key"])
        stored = cv2.imread(str(result.out / row["dark_file_name"]), cv2.IMREAD_UNCHANGED)[..., ::-1]
        np.testing.assert_array_equal(dark, stored)


def test_an_unanchored_file_leaves_the_meter_column_empty(tmp_path: Path, lit_sources: Path):
    result = run_generate(lit_sources, tmp_path / "out", write_v2_params(tmp_path / "plain.json"), 2)
    assert read_manifest(result.manifest)[0]["metered_light"].isna().all()


def test_the_shipped_default_is_lol_v2d_with_an_anchor_fitted_on_its_pairs():
    """`lol` = `lol-v2d` (the previous default: same fits, mean, covariance and points) plus the anchor, whose keys
    are the used pairs' scene lights in the per-pair table's order."""
    import pandas as pd

    from lowsim.project import shipped_params

    anchored, plain = (ParamDistribution.load(shipped_params(n)) for n in ("lol", "lol-v2d"))
    assert plain.exposure_anchor is None and anchored.exposure_anchor is not None
    for name in ("mean", "cov", "points"):
        np.testing.assert_array_equal(getattr(anchored, name), getattr(plain, name))
    table = pd.read_parquet(shipped_params("lol").with_name("lol.pairs.parquet"))
    used = table[~table["excluded"]]
    assert anchored.exposure_anchor.point_keys == tuple(used["scene_light"])
    slope = np.polyfit(np.log(used["scene_light"]), np.log(used["dark_light"]), 1)[0]
    assert anchored.exposure_anchor.slope == pytest.approx(slope)
    assert 0.0 < anchored.exposure_anchor.slope < 0.5  # LOL's darks follow their scenes weakly
