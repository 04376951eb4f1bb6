"""The raw model's distribution: ELD's log-linear read-noise relation kept exactly, files round-trip, draws valid."""
from __future__ import annotations

import numpy as np
import pytest

from lowsim.errors import LowsimError
from lowsim.params import RAW_MODEL, ParamDistribution, RawParams
from lowsim.raw.distribution import SAMPLED_NAMES, eld_distribution, fit_raw_distribution

ELD_LIKE = {"Kmin": 0.1, "Kmax": 6.0, "G_shape": [0.1, -0.1, 0.0], "color_bias": [[1, 2, 3, 4], [1.5, 2.5, 3.5, 4.5]],
            "profile": {"g_scale": {"slope": 0.54, "bias": 1.22, "sigma": 0.27},
                        "R_scale": {"slope": 0.53, "bias": -0.59, "sigma": 0.29},
                        "G_scale": {"slope": 0.46, "bias": 0.57, "sigma": 0.26}}}
CAMERA = {"adc_black": 512.0, "adc_white": 16383.0}


def test_eld_distribution_keeps_the_relation_and_the_gain_range(tmp_path):
    dist = eld_distribution(ELD_LIKE, CAMERA, ratios=[100, 300], bright_levels=[0.1, 0.4], method="eld")
    relation = dist.info["read_noise_vs_gain"]
    assert relation["slope"] == pytest.approx(0.54, abs=1e-3)
    assert relation["bias"] == pytest.approx(1.22, abs=1e-3) and relation["sigma"] == pytest.approx(0.27, abs=1e-2)
    draws = [dist.sample(np.random.default_rng(i)) for i in range(400)]
    gains = np.log([d.system_gain for d in draws])
    assert np.mean(gains) == pytest.approx((np.log(0.1) + np.log(6.0)) / 2, abs=0.15)
    assert all(isinstance(d, RawParams) and 1 < d.exposure_ratio < 1000 for d in draws)
    slope = np.polyfit(gains, np.log([d.read_noise for d in draws]), 1)[0]
    assert slope == pytest.approx(0.54, abs=0.08)
    path = dist.save(tmp_path / "eld.json")
    loaded = ParamDistribution.load(path)
    assert loaded.model == RAW_MODEL and loaded.schema_version == 3 and loaded.fixed == CAMERA
    np.testing.assert_allclose(loaded.cov, dist.cov)


def _row(gain: float, read: float) -> dict:
    return {"system_gain": gain, "read_noise": read, "row_noise": 0.0, "read_shape": float("nan"),
            "black_offset_r": 0.5, "black_offset_g1": 0.4, "black_offset_b": 0.3, "black_offset_g2": 0.2,
            "exposure_ratio": 100.0, "bright_level": 0.3}


def test_fit_keeps_the_noise_block_and_imputes_missing_shapes():
    rows = [_row(k, np.exp(0.5 * np.log(k) + 1.0)) for k in (0.2, 1.0, 5.0)]
    dist = fit_raw_distribution(rows, CAMERA, method="raw")
    assert dist.names == list(SAMPLED_NAMES)
    assert dist.info["read_noise_vs_gain"]["slope"] == pytest.approx(0.5)
    assert dist.cov[0, 1] / dist.cov[0, 0] == pytest.approx(0.5, rel=1e-3)  # not shrunk away
    assert dist.natural_mean()["read_shape"] == pytest.approx(0.1349, abs=1e-3)  # Gaussian when none was measured
    assert dist.natural_mean()["row_noise"] == pytest.approx(1e-3, rel=1e-3)


def test_fit_needs_two_pairs():
    with pytest.raises(LowsimError, match="at least 2"):
        fit_raw_distribution([_row(1.0, 3.0)], CAMERA)


def test_sony_preset_carries_elds_sony_relation(shared_data):
    import json
    from pathlib import Path

    eld = json.loads((shared_data / "noise-params" / "eld" / "SonyA7S2.json").read_text())["Profile-1"]["g_scale"]
    dist = ParamDistribution.load(Path(__file__).resolve().parents[1] / "src" / "lowsim" / "data" / "params" / "sony_a7s2.json")
    assert dist.model == RAW_MODEL and dist.fixed == CAMERA
    relation = dist.info["read_noise_vs_gain"]
    assert relation["slope"] == pytest.approx(eld["slope"], abs=1e-4)
    assert relation["bias"] == pytest.approx(eld["bias"], abs=1e-4)
    assert relation["sigma"] == pytest.approx(eld["sigma"], abs=1e-3)
