"""Known truth: raw pairs simulated from ELD's SonyA7S2 and NikonD850 parameters, written as DNGs in SID layout
and read back through rawpy; photon transfer must recover K within 10% and the read noise within 15%."""
from __future__ import annotations

import numpy as np
import pytest

from lowsim.errors import LowsimError
from lowsim.params import RawParams
from lowsim.raw.noise import noisy_codes
from lowsim.raw.photon_transfer import photon_transfer, quantile_bins, response_line, tukey_shape
from lowsim.raw.read import RawFrame, check_compatible, exposure_ratio, read_raw_frame
from lowsim.raw.simulate import chart_signal, simulate_camera

GAINS = {"SonyA7S2": [0.2, 1.0, 4.0], "NikonD850": [0.5, 3.0, 20.0]}


@pytest.mark.parametrize("camera", sorted(GAINS))
@pytest.mark.parametrize("ratio", [100, 300])
def test_recovers_gain_and_read_noise_of_eld_cameras(tmp_path, shared_data, camera, ratio):
    pairs = simulate_camera(tmp_path, shared_data / "noise-params" / "eld" / f"{camera}.json", GAINS[camera], ratio,
                            size=256, seed=ratio)
    for pair in pairs:
        short, long = read_raw_frame(pair.short), read_raw_frame(pair.long)
        check_compatible(short, long)
        result = photon_transfer(short, long, exposure_ratio(short, long))
        assert result.problem == ""
        assert result.system_gain == pytest.approx(pair.truth.system_gain, rel=0.10)
        assert result.read_noise == pytest.approx(pair.truth.read_noise, rel=0.15)
        assert result.measured_ratio == pytest.approx(ratio, rel=0.02)
        assert result.black_offsets["r"] == pytest.approx(pair.truth.black_offset_r, abs=0.5)


def _frame(mosaic: np.ndarray, white: float = 16383.0, exposure: float | None = None) -> RawFrame:
    return RawFrame(__import__("pathlib").Path("x.dng"), mosaic, "RGGB", (512.0,) * 4, white, exposure, None)


def test_refuses_a_nonlinear_sensor():
    """A sensor whose output grows as signal^0.6 (like the MCR stack) is named nonlinear, not fitted."""
    rng = np.random.default_rng(0)
    truth = RawParams(system_gain=1.0, read_noise=2.0, adc_black=512, adc_white=16383)
    signal = chart_signal(128, 128, 15871.0)
    bent = lambda x: 15871.0 * (x / 15871.0) ** 0.6  # noqa: E731
    long = noisy_codes(bent(signal), truth, rng)
    short = noisy_codes(bent(signal / 50).astype(np.float32), truth, rng)
    result = photon_transfer(_frame(short), _frame(long), 50.0)
    assert "not linear" in result.problem
    assert np.isnan(result.system_gain)


def test_refuses_a_saturated_long_exposure():
    truth = RawParams(system_gain=1.0, read_noise=2.0)
    rng = np.random.default_rng(1)
    long = noisy_codes(np.full((64, 64), 20000.0, np.float32), truth, rng)
    short = noisy_codes(np.full((64, 64), 200.0, np.float32), truth, rng)
    with pytest.raises(LowsimError, match="saturated over 100%"):
        photon_transfer(_frame(short), _frame(long), 100.0)


def test_response_line_is_exact_on_a_line_and_flags_a_curve():
    long = np.linspace(0, 1000, 20000)
    slope, intercept, bend = response_line(long / 100 + 3.0, long)
    assert (slope, intercept, bend) == (pytest.approx(0.01), pytest.approx(3.0), pytest.approx(0.0, abs=1e-9))
    assert response_line(np.sqrt(long), long)[2] > 0.1


def test_quantile_bins_have_about_equal_counts():
    counts = np.bincount(quantile_bins(np.random.default_rng(2).random(24000)))
    assert counts.min() > 900 and counts.max() < 1100


def test_tukey_shape_of_gaussian_and_logistic_samples():
    rng = np.random.default_rng(3)
    assert tukey_shape(rng.standard_normal(20000)) == pytest.approx(0.14, abs=0.04)
    assert tukey_shape(rng.logistic(size=20000)) == pytest.approx(0.0, abs=0.04)
    assert np.isnan(tukey_shape(rng.standard_normal(100)))
