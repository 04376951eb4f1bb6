"""Calibration of model v2 (lowsim.calibrate_v2): recovery on pairs simulated with known parameters, the
physical checks (swapped, identical), and the refusal to write a distribution when most pairs fail.

What is identifiable from one processed sRGB pair (measured on 256-px crops of scikit-image photos): the
noiseless curve (within ~1.5 levels), the chroma noise-reduction strength (within ~0.05) and the residual
level per intensity bin; the split of that level between shot noise (K) and read noise is only loosely
pinned down, so the test checks the resulting residual, not K and σ separately.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage import data

from lowsim.calibrate import fit_distribution, run_calibration
from lowsim.calibrate_v2 import JPEG_GRID, ResidualStats, calibrate_arrays_v2, centre_crop, run_jpeg_quality
from lowsim.degradation import v2
from lowsim.degradation.stages import metered_light
from lowsim.errors import LowsimError
from lowsim.imageio import read_image, write_png
from lowsim.params import IspParams, ParamDistribution

TRUE = IspParams(exposure=0.01, cast_r=0.9, cast_b=1.1, shot_gain=5e-5, read_sigma=6e-4, black_level=5e-4,
                 chroma_nr=0.5, tone_gamma=2.0)


def _pair(photo: np.ndarray, p: IspParams, seed: int = 3, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    clean = np.ascontiguousarray(photo[:size, :size])
    return v2.degrade_to_codes(clean, p, np.random.default_rng(seed)), clean


def _calibrate(dark: np.ndarray, clean: np.ndarray) -> dict:
    return calibrate_arrays_v2("pair", dark.astype(np.float32) / 255, clean.astype(np.float32) / 255,
                               np.random.SeedSequence(0), "")


@pytest.mark.slow
def test_recovers_the_curve_the_chroma_nr_and_the_residual_level():
    dark, clean = _pair(data.coffee(), TRUE)
    row = _calibrate(dark, clean)
    assert not row["excluded"], row["reason"]
    fitted = IspParams(**{k: row[k] for k in IspParams.__dataclass_fields__})
    curve = (v2.expected_dark(clean, fitted).astype(float) - v2.expected_dark(clean, TRUE).astype(float)) * 255
    assert np.abs(curve).mean() < 1.5
    assert row["chroma_nr"] == pytest.approx(TRUE.chroma_nr, abs=0.1)
    assert row["match_profile_rms_log"] < 0.1  # residual sd per bin within ~10 %
    assert row["match_channel_corr_sim"] == pytest.approx(row["match_channel_corr_real"], abs=0.05)
    assert row["match_brightness_sim"] == pytest.approx(row["match_brightness_real"], rel=0.05)
    assert row["match_pixel_sd_sim"] == pytest.approx(row["match_pixel_sd_real"], rel=0.1)
    assert row["match_pixel_corr_sim"] == pytest.approx(row["match_pixel_corr_real"], abs=0.1)


def test_swapped_and_identical_pairs_are_excluded_with_a_reason():
    dark, clean = _pair(data.astronaut(), TRUE)
    swapped = calibrate_arrays_v2("s", clean.astype(np.float32) / 255, dark.astype(np.float32) / 255,
                                  np.random.SeedSequence(0), "")
    assert swapped["excluded"] and "swapped" in swapped["reason"]
    same = _calibrate(clean, clean)
    assert same["excluded"] and "same image" in same["reason"]


def test_most_pairs_failing_stops_without_writing_a_distribution(tmp_path: Path):
    root = tmp_path / "pairs"
    photos = [data.astronaut(), data.coffee(), data.chelsea()]
    for k, photo in enumerate(photos):
        dark, clean = _pair(photo, TRUE, seed=k, size=96)
        low, high = (clean, dark) if k else (dark, clean)  # two of three swapped
        write_png(root / "low" / f"{k}.png", low)
        write_png(root / "high" / f"{k}.png", high)
    out = tmp_path / "p.json"
    with pytest.raises(LowsimError, match="most pairs cannot be used"):
        run_calibration(root, out, method="isp", workers=1)
    assert not out.exists()


def test_v2_distribution_keeps_its_pairs_for_the_empirical_sampler(tmp_path: Path):
    values = {n: [getattr(TRUE, n) * f for f in (0.8, 1.0, 1.25)] for n in IspParams.__dataclass_fields__
              if n not in ("row_sigma", "illum_alpha", "illum_gamma")}
    values.update(illum_alpha=[0.1, 0.2, 0.3], illum_gamma=[1.0, 1.5, 2.0])
    dist = ParamDistribution.fit(values, fixed={"row_sigma": 0.0, "sharpen": 0.0, "downscale": 1.0, "out_black": 0.0,
                                                "jpeg_quality": 0.0}, model=v2.MODEL_NAME)
    path = dist.save(tmp_path / "v2.json")
    back = ParamDistribution.load(path).with_sampler("empirical")
    assert back.model == v2.MODEL_NAME and back.points.shape == (3, len(back.names))
    draws = [back.sample(np.random.default_rng(s)) for s in range(50)]
    exposures = np.array([d.exposure for d in draws])
    # draws sit near one of the three pairs' exposures (jitter 0.25 sd), not spread like the normal
    nearest = np.min(np.abs(np.log(exposures)[:, None] - np.log(values["exposure"])[None, :]), axis=1)
    assert np.median(nearest) < 0.1
    assert back.sample(np.random.default_rng(1)) == back.sample(np.random.default_rng(1))


@pytest.mark.slow
def test_clipped_blacks_of_an_output_black_point_are_matched():
    """A pair whose zeros come from the black point after a resize (as LOL's): the fit's simulation has as many.
    (Which stage makes them is not identifiable on this photo: the fit may share them with the black level.)"""
    crushed = IspParams(**{**TRUE.to_dict(), "out_black": 1.5 / 255, "downscale": 2.0})
    dark, clean = _pair(data.coffee(), crushed)
    row = calibrate_arrays_v2("pair", dark.astype(np.float32) / 255, clean.astype(np.float32) / 255,
                              np.random.SeedSequence(0), "", downscale=2.0)
    assert row["match_clipped_real"] > 0.05  # the black point makes many of the dark values 0
    assert not row["excluded"], row["reason"]
    assert row["match_clipped_sim"] == pytest.approx(row["match_clipped_real"], abs=0.02)


@pytest.mark.slow
def test_white_balance_gains_are_fitted_from_the_noise_colour():
    """Pairs made with v2 at white-balance gains (3.0, 2.4), red and blue noisier than at the defaults: the fit
    finds gains clearly above the defaults (2.0, 1.6) there, and near the defaults for a pair made at them.
    On this crop the gains trade off with the shot/read split (read noise scales with a gain, shot noise with its
    square root): measured (2.82, 2.36) and (2.55, 1.47) since the fit also matches the pixel-scale noise level
    (before it, (2.73, 2.36) and (2.41, 1.54); on astronaut now (2.71, 2.24) and (2.30, 1.68)): at the defaults this
    pair's fit puts nearly all the noise into read noise, which the red gain scales, so red is asked for within
    15 % and 30 %, and the order of the two fits. The ratios above 8 levels are matched within 8 % (the fit
    balances them against the ratios below and the other misses)."""
    fits = {}
    for gains in ((3.0, 2.4), (2.0, 1.6)):
        dark, clean = _pair(data.coffee(), IspParams(**{**TRUE.to_dict(), "wb_red": gains[0], "wb_blue": gains[1]}))
        row = _calibrate(dark, clean)
        assert not row["excluded"], row["reason"]
        assert row["match_red_green_sim"] == pytest.approx(row["match_red_green_real"], rel=0.08)
        assert row["match_blue_green_sim"] == pytest.approx(row["match_blue_green_real"], rel=0.08)
        fits[gains] = (row["wb_red"], row["wb_blue"])
    (red, blue), (red0, blue0) = fits[(3.0, 2.4)], fits[(2.0, 1.6)]
    assert red == pytest.approx(3.0, rel=0.15) and blue == pytest.approx(2.4, rel=0.15)
    assert red > 2.5 and blue > 2.1  # clearly above the defaults
    assert red0 == pytest.approx(2.0, rel=0.3) and blue0 == pytest.approx(1.6, rel=0.15)
    assert red > red0 and blue > blue0 + 0.5


def test_fit_jpeg_picks_a_low_quality_for_jpeg_darks_and_off_without(tmp_path: Path):
    """A calibration run with fit_jpeg on two synthetic pairs made with v2 (the noise of TRUE, 256-px crops): one
    at JPEG quality 40, one without JPEG. Each picks its own; the file fixes their median."""
    root = tmp_path / "pairs"
    for name, quality in (("q40", 40.0), ("off", 0.0)):
        dark, clean = _pair(data.astronaut(), IspParams(**{**TRUE.to_dict(), "jpeg_quality": quality}))
        write_png(root / "low" / f"{name}.png", dark)
        write_png(root / "high" / f"{name}.png", clean)
    result = run_calibration(root, tmp_path / "p.json", method="isp", workers=1, downscale=1.0, fit_jpeg=True)
    rows = {r["name"]: r for r in result.rows}
    assert not any(r["excluded"] for r in rows.values()), [r["reason"] for r in rows.values()]
    assert 0 < rows["q40"]["jpeg_quality"] <= 75 and rows["q40"]["jpeg_cost_change"] < -0.5
    assert rows["off"]["jpeg_quality"] == 0 or rows["off"]["jpeg_quality"] >= 90
    for row in rows.values():
        costs = [row["jpeg_cost_off"], *(row[f"jpeg_cost_q{q}"] for q in JPEG_GRID if q)]
        assert row["jpeg_cost"] == min(costs)
    assert result.distribution.fixed["jpeg_quality"] == run_jpeg_quality([r["jpeg_quality"] for r in rows.values()])
    assert sum(result.distribution.info["fit_jpeg"]["pairs_per_quality"].values()) == 2
    for name, row in rows.items():  # the meter readings behind the exposure anchor (3 pairs at least make one)
        assert row["scene_light"] == pytest.approx(metered_light(read_image(root / "high" / f"{name}.png")))
        assert row["dark_light"] == pytest.approx(metered_light(read_image(root / "low" / f"{name}.png")))
    assert result.distribution.exposure_anchor is None


def test_one_jpeg_quality_per_run_and_the_flag_is_for_isp_only(tmp_path: Path):
    assert run_jpeg_quality([0.0, 0.0, 85.0]) == 0.0  # off is the mildest
    assert run_jpeg_quality([40.0, 60.0, 95.0]) == 60.0
    assert run_jpeg_quality([40.0, 60.0, 0.0, 95.0]) == 95.0  # even count: the milder of the middle two
    assert run_jpeg_quality([]) == 0.0
    on = dict(illum_alpha=0.1, black_level=1e-3, chroma_nr=0.5, sharpen=1.0, out_black=1e-3)  # logit: not 0
    rows = [{**IspParams(exposure=0.01 * (k + 1), jpeg_quality=q, **on).to_dict(), "name": str(k), "excluded": False,
             "reason": ""} for k, q in enumerate((60.0, 75.0, 60.0))]
    dist = fit_distribution(rows, "isp", "test")
    assert dist.fixed["jpeg_quality"] == 60.0 and "jpeg_quality" not in dist.names
    with pytest.raises(LowsimError, match="JPEG quality goes with method isp"):
        run_calibration(tmp_path, tmp_path / "out.json", method="joint", fit_jpeg=True)


def _noisy_grey(shared: float, seed: int = 0) -> np.ndarray:
    """A flat 20-level image whose noise (sd 2 levels) is a mix of one plane shared by all channels and
    independent planes: channel correlation `shared`."""
    rng = np.random.default_rng(seed)
    common, own = rng.standard_normal((256, 256, 1)), rng.standard_normal((256, 256, 3))
    noise = np.sqrt(shared) * common + np.sqrt(1 - shared) * own
    return (20.0 + 2.0 * noise).astype(np.float32) / 255.0


def test_pixel_scale_noise_statistics_measure_level_and_channel_correlation():
    """The noise fit's pixel-scale statistics: the correlation follows how much noise the channels share, the
    level follows the noise sd, and an unrounded simulation reads as its 8-bit rounded self (the rounding's
    variance is added, not ignored)."""
    independent, shared = ResidualStats.of(_noisy_grey(0.0)), ResidualStats.of(_noisy_grey(0.8))
    assert abs(independent.pixel_corr) < 0.05
    assert shared.pixel_corr == pytest.approx(0.8 * 4 / (4 + 1 / 12), abs=0.05)
    assert shared.pixel_sd[-1] == pytest.approx(np.hypot(2.0, np.sqrt(1 / 12)), rel=0.05)
    assert np.isnan(shared.pixel_sd[0])  # no pixel below 8 levels
    sim = _noisy_grey(0.8, seed=1)
    rounded = ResidualStats.of(np.round(sim * 255).astype(np.uint8))
    assert ResidualStats.of(sim).pixel_corr == pytest.approx(rounded.pixel_corr, abs=0.02)
    assert ResidualStats.of(sim).pixel_sd[-1] == pytest.approx(rounded.pixel_sd[-1], rel=0.02)


def test_pixel_scale_statistics_tell_grainy_from_fine_noise_of_the_same_residual():
    """Two v2 darks of the same photo whose chroma noise reduction differs: the pixel-scale channel correlation
    tells them apart by far more than its scale in the fit."""
    low, high = (ResidualStats.of(centre_crop(_pair(data.astronaut(), IspParams(**{**TRUE.to_dict(),
                                                                                  "chroma_nr": c}))[0]))
                 for c in (0.1, 0.9))
    assert high.pixel_corr - low.pixel_corr > 0.3
