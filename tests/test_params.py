"""The parameter schema: DegradationParams validation, ParamDistribution fit/sample/save/load."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from lowsim.errors import LowsimError
from lowsim.params import (
    PARAM_NAMES,
    PARAM_SPECS,
    SCHEMA_VERSION,
    SCHEMA_VERSIONS,
    SPECS_BY_NAME,
    DegradationParams,
    ParamDistribution,
    from_unconstrained,
    to_unconstrained,
)


def _samples(n: int, seed: int) -> dict[str, list[float]]:
    """n valid per-pair parameter sets, as fit() receives them (natural units)."""
    rng = np.random.default_rng(seed)
    return {
        "illum_alpha": list(rng.uniform(0.05, 0.9, n)),
        "illum_gamma": list(rng.uniform(0.5, 3.0, n)),
        "black_level": list(rng.uniform(0.001, 0.1, n)),
        "gain_r": list(rng.uniform(0.2, 0.6, n)),
        "gain_g": list(rng.uniform(0.2, 0.6, n)),
        "gain_b": list(rng.uniform(0.2, 0.6, n)),
        "photon_scale": list(rng.uniform(100, 5000, n)),
        "read_sigma": list(rng.uniform(0.001, 0.02, n)),
        "gamma": list(rng.uniform(0.4, 1.2, n)),
    }


def _is_positive_definite(matrix: np.ndarray) -> bool:
    try:
        np.linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        return False
    return True


def test_transforms_are_inverse_and_map_into_the_valid_range():
    z = np.linspace(-30, 30, 61)
    for spec in PARAM_SPECS:
        values = from_unconstrained(spec.name, z)
        assert np.all(values >= spec.low) and np.all(values <= spec.high), spec.name
        inner = np.abs(z) < 15  # away from float saturation of the logistic
        np.testing.assert_allclose(to_unconstrained(spec.name, values[inner]), z[inner], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name, value", [("black_level", -0.1), ("black_level", 1.0), ("gamma", 0.0),
                                         ("gain_r", -1.0), ("illum_alpha", 2.0), ("read_sigma", math.nan),
                                         ("photon_scale", math.inf)])
def test_degradation_params_refuse_out_of_range_values(name, value):
    with pytest.raises(LowsimError, match=name):
        DegradationParams(**{name: value})


def test_round_trip_keeps_everything(tmp_path: Path):
    dist = ParamDistribution.fit(_samples(30, 1), fixed={"illum_alpha": 0.0}, method="joint",
                                 source="lowsim calibrate --pairs x",
                                 excluded=[{"name": "648", "reason": "images do not match"}])
    dist.info = {"fit_quality": {"joint_r2_mean": 0.9}}
    path = dist.save(tmp_path / "p.json")
    back = ParamDistribution.load(path)
    assert back.names == dist.names and back.fixed == dist.fixed
    np.testing.assert_array_equal(back.mean, dist.mean)
    np.testing.assert_array_equal(back.cov, dist.cov)
    assert back.excluded == dist.excluded and back.info == dist.info
    assert (back.method, back.source, back.n_pairs) == ("joint", "lowsim calibrate --pairs x", 30)
    assert back.sample(np.random.default_rng(5)) == dist.sample(np.random.default_rng(5))
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    assert set(data["transforms"]) == set(dist.names)
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temp file


def test_fit_recovers_mean_and_covariance_of_many_samples():
    rng = np.random.default_rng(2)
    names = list(PARAM_NAMES)
    true_mean = np.array([to_unconstrained(n, v) for n, v in zip(names, (0.4, 1.5, 0.03, 0.4, 0.45, 0.35,
                                                                           800.0, 0.005, 0.7))])
    a = rng.normal(size=(9, 9)) * 0.2
    true_cov = a @ a.T + np.eye(9) * 0.02
    z = rng.multivariate_normal(true_mean, true_cov, size=4000)
    samples = {n: list(from_unconstrained(n, z[:, j])) for j, n in enumerate(names)}
    dist = ParamDistribution.fit(samples)
    np.testing.assert_allclose(dist.mean, true_mean, atol=0.02)
    np.testing.assert_allclose(dist.cov, true_cov, atol=0.02)
    assert dist.shrinkage < 0.05  # plenty of samples: little shrinkage


def test_every_sample_is_valid_even_from_a_wide_distribution():
    dist = ParamDistribution(names=list(PARAM_NAMES), mean=np.zeros(9), cov=np.eye(9) * 25.0)
    rng = np.random.default_rng(3)
    for _ in range(2000):
        p = dist.sample(rng)  # the constructor validates every value
        for spec in PARAM_SPECS:
            assert spec.low <= getattr(p, spec.name) < spec.high


def test_shrinkage_keeps_covariance_positive_definite_with_fewer_pairs_than_parameters():
    samples = _samples(4, 4)
    raw = np.column_stack([to_unconstrained(n, np.array(samples[n])) for n in PARAM_NAMES])
    assert not _is_positive_definite(np.cov(raw, rowvar=False))  # rank <= 3: singular without shrinkage
    dist = ParamDistribution.fit(samples)
    assert _is_positive_definite(dist.cov)
    assert 0.0 < dist.shrinkage <= 1.0
    dist.sample(np.random.default_rng(0))


def test_a_constant_parameter_stays_sampleable():
    samples = _samples(10, 5)
    samples["gamma"] = [0.7] * 10
    dist = ParamDistribution.fit(samples)
    assert _is_positive_definite(dist.cov)
    draws = [dist.sample(np.random.default_rng(s)).gamma for s in range(20)]
    assert np.allclose(draws, 0.7, rtol=0.01)


def test_fit_needs_two_pairs():
    with pytest.raises(LowsimError, match="at least 2"):
        ParamDistribution.fit(_samples(1, 6))


def _valid_file(tmp_path: Path) -> tuple[Path, dict]:
    path = ParamDistribution.fit(_samples(12, 7)).save(tmp_path / "good.json")
    return path, json.loads(path.read_text())


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    """One broken params file per kind of damage."""
    _, data = _valid_file(tmp_path)
    files = {"missing": tmp_path / "absent.json"}
    files["malformed"] = tmp_path / "malformed.json"
    files["malformed"].write_text('{"schema_version": 1, "names": [')
    files["version"] = tmp_path / "version.json"
    files["version"].write_text(json.dumps({**data, "schema_version": max(SCHEMA_VERSIONS.values()) + 1}))
    nan_mean = list(data["mean"])
    nan_mean[2] = math.nan
    files["nan"] = tmp_path / "nan.json"
    files["nan"].write_text(json.dumps({**data, "mean": nan_mean}))  # json writes NaN, as a buggy tool would
    not_pd = np.eye(len(data["names"]))
    not_pd[0, 1] = not_pd[1, 0] = 2.0  # symmetric but indefinite: 1 - 2^2 < 0
    files["not_pd"] = tmp_path / "not_pd.json"
    files["not_pd"].write_text(json.dumps({**data, "cov": not_pd.tolist()}))
    files["not_object"] = tmp_path / "list.json"
    files["not_object"].write_text("[1, 2]")
    files["transform"] = tmp_path / "transform.json"
    files["transform"].write_text(json.dumps({**data, "transforms": {**data["transforms"], "gamma": "logit"}}))
    return files


@pytest.mark.parametrize("kind, expected", [
    ("missing", "not found"), ("malformed", "not valid JSON"), ("version", "schema version"),
    ("nan", "finite"), ("not_pd", "positive definite"), ("not_object", "JSON object"),
    ("transform", "transform"),
])
def test_bad_params_files_give_one_line_errors_naming_the_file(tmp_path: Path, kind: str, expected: str):
    path = _bad_files(tmp_path)[kind]
    with pytest.raises(LowsimError) as info:
        ParamDistribution.load(path)
    message = str(info.value)
    assert str(path) in message and expected in message
    assert "\n" not in message


def test_the_valid_file_itself_loads(tmp_path: Path):
    path, _ = _valid_file(tmp_path)
    dist = ParamDistribution.load(path)
    assert dist.names == [n for n in PARAM_NAMES if n in SPECS_BY_NAME]


def test_a_row_or_file_from_before_out_black_leaves_it_off(tmp_path: Path):
    """out_black was added to v2 after files and manifests existed: without it, its stage is off."""
    from lowsim.params import V2_PARAM_NAMES, IspParams

    row = IspParams(exposure=0.05).to_dict()
    del row["out_black"]
    assert IspParams.from_mapping(row).out_black == 0.0
    assert IspParams.from_mapping({**row, "out_black": None}).out_black == 0.0  # a null manifest cell
    with pytest.raises(LowsimError, match="missing .* exposure"):
        IspParams.from_mapping({k: v for k, v in row.items() if k != "exposure"})
    names = [n for n in V2_PARAM_NAMES if n not in ("row_sigma", "downscale", "out_black", "jpeg_quality")]
    rng = np.random.default_rng(0)
    samples = {n: list(np.exp(rng.normal(-3, 0.1, 8))) for n in names}
    data = ParamDistribution.fit(samples, fixed={"row_sigma": 0.0, "downscale": 1.0},
                                 model="lowsim.degrade/v2").to_json_dict()
    data["fixed"].pop("out_black")  # as a file written before the parameter existed
    (tmp_path / "old.json").write_text(json.dumps(data))
    dist = ParamDistribution.load(tmp_path / "old.json")
    assert dist.fixed["out_black"] == 0.0 and "out_black" not in dist.names
    assert dist.sample(np.random.default_rng(1)).out_black == 0.0


def test_a_row_or_file_from_before_jpeg_quality_leaves_it_off_and_it_is_never_sampled(tmp_path: Path):
    """jpeg_quality was added after out_black: without it the JPEG stage is off; it takes whole numbers and a
    params file may only fix it."""
    from lowsim.params import V2_PARAM_NAMES, IspParams

    row = IspParams(exposure=0.05, out_black=0.001).to_dict()
    del row["jpeg_quality"]
    assert IspParams.from_mapping(row).jpeg_quality == 0.0
    assert IspParams.from_mapping({**row, "jpeg_quality": None}).jpeg_quality == 0.0
    assert IspParams.from_mapping({**row, "jpeg_quality": 100}).jpeg_quality == 100.0
    for bad in (75.5, 101, -1):
        with pytest.raises(LowsimError, match="jpeg_quality"):
            IspParams(exposure=0.05, jpeg_quality=bad)
    names = [n for n in V2_PARAM_NAMES if n not in ("row_sigma", "downscale", "jpeg_quality")]
    rng = np.random.default_rng(0)
    samples = {n: list(np.exp(rng.normal(-3, 0.1, 8))) for n in names}
    data = ParamDistribution.fit(samples, fixed={"row_sigma": 0.0, "downscale": 1.0},
                                 model="lowsim.degrade/v2").to_json_dict()
    assert data["fixed"]["jpeg_quality"] == 0.0
    data["fixed"].pop("jpeg_quality")  # as a file written before the parameter existed
    (tmp_path / "old.json").write_text(json.dumps(data))
    dist = ParamDistribution.load(tmp_path / "old.json")
    assert dist.fixed["jpeg_quality"] == 0.0 and dist.sample(np.random.default_rng(1)).jpeg_quality == 0.0
    data["fixed"]["jpeg_quality"] = 85
    (tmp_path / "jpeg.json").write_text(json.dumps(data))
    assert ParamDistribution.load(tmp_path / "jpeg.json").sample(np.random.default_rng(1)).jpeg_quality == 85.0
    with pytest.raises(LowsimError, match="jpeg_quality.*whole numbers"):  # a normal would make it fractional
        ParamDistribution.fit({**samples, "jpeg_quality": [85.0] * 8}, fixed={"row_sigma": 0.0, "downscale": 1.0},
                              model="lowsim.degrade/v2")


def test_a_row_or_file_from_before_the_white_balance_gains_reads_the_former_constants(tmp_path: Path):
    """wb_red and wb_blue replaced v2's constant gains [2.0, 1, 1.6]: a row or params file without them reads
    those, so it draws what it drew; a file that fits them samples them like any other parameter."""
    from lowsim.params import V2_PARAM_NAMES, IspParams

    row = IspParams(exposure=0.05, jpeg_quality=0).to_dict()
    for name in ("wb_red", "wb_blue"):
        del row[name]
    old = IspParams.from_mapping(row)
    assert (old.wb_red, old.wb_blue) == (2.0, 1.6)
    assert IspParams.from_mapping({**row, "wb_red": None}).wb_red == 2.0  # a null manifest cell
    assert IspParams.from_mapping({**row, "wb_red": 3.5}).white_balance.tolist() == [3.5, 1.0, 1.6]
    with pytest.raises(LowsimError, match="wb_blue"):
        IspParams(exposure=0.05, wb_blue=0.0)
    names = [n for n in V2_PARAM_NAMES if n not in ("row_sigma", "downscale", "jpeg_quality", "wb_red", "wb_blue")]
    rng = np.random.default_rng(0)
    samples = {n: list(np.exp(rng.normal(-3, 0.1, 8))) for n in names}
    data = ParamDistribution.fit(samples, fixed={"row_sigma": 0.0, "downscale": 1.0},
                                 model="lowsim.degrade/v2").to_json_dict()
    for name in ("wb_red", "wb_blue"):
        data["fixed"].pop(name)  # as a file written before the parameters existed
    (tmp_path / "old.json").write_text(json.dumps(data))
    dist = ParamDistribution.load(tmp_path / "old.json")
    assert (dist.fixed["wb_red"], dist.fixed["wb_blue"]) == (2.0, 1.6) and "wb_red" not in dist.names
    draw = dist.sample(np.random.default_rng(1))
    assert (draw.wb_red, draw.wb_blue) == (2.0, 1.6)
    gains = {"wb_red": list(np.exp(rng.normal(1.0, 0.2, 8))), "wb_blue": list(np.exp(rng.normal(0.8, 0.2, 8)))}
    fitted = ParamDistribution.fit({**samples, **gains}, fixed={"row_sigma": 0.0, "downscale": 1.0},
                                   model="lowsim.degrade/v2")
    assert {"wb_red", "wb_blue"} <= set(fitted.names)
    draws = [fitted.with_sampler(s).sample(np.random.default_rng(k)) for s in ("normal", "empirical")
             for k in range(20)]
    assert len({d.wb_red for d in draws}) == len(draws) and 1.5 < np.median([d.wb_red for d in draws]) < 4.0


def test_the_shipped_v2_files_draw_their_white_balance():
    """Files from before the gains draw the former constants; the default `lol` and `lol-v2c` were calibrated
    with them."""
    import lowsim

    folder = Path(lowsim.__file__).parent / "data" / "params"
    for name in ("lol-v2a.json", "lol-v2b.json"):
        draw = ParamDistribution.load(folder / name).sample(np.random.default_rng(0))
        assert (draw.wb_red, draw.wb_blue) == (2.0, 1.6), name
    for name in ("lol.json", "lol-v2c.json"):
        dist = ParamDistribution.load(folder / name)
        assert {"wb_red", "wb_blue"} <= set(dist.names), name
        draws = [dist.sample(np.random.default_rng(k)) for k in range(20)]
        assert 2.5 < np.median([d.wb_red for d in draws]) < 6.5, name
        assert 2.5 < np.median([d.wb_blue for d in draws]) < 6.5, name
