"""`lowsim generate` with model v2: bit-exact regeneration (8 and 16 bits, both samplers), identical output
whatever the worker count, resume, and the one-line refusals of a model or sampler the file cannot give."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from lowsim import generate as G
from lowsim.cli import main
from lowsim.degradation import v2
from lowsim.errors import LowsimError
from lowsim.manifest import read_manifest
from lowsim.params import IspParams, ParamDistribution, file_sha256
from test_generate import run_generate, sources, write_params  # noqa: F401 (sources: a fixture)


def write_v2_params(path: Path) -> Path:
    """A small v2 distribution around a LOL-like dark camera."""
    rng = np.random.default_rng(0)
    base = IspParams(exposure=0.01, shot_gain=1e-4, read_sigma=2e-4, black_level=1e-4, tone_gamma=2.4)
    samples = {n: getattr(base, n) * np.exp(0.2 * rng.standard_normal(8))
               for n in ("exposure", "cast_r", "cast_b", "shot_gain", "read_sigma", "black_level", "tone_gamma",
                         "illum_gamma")}
    samples.update(illum_alpha=rng.uniform(0.05, 0.5, 8), chroma_nr=rng.uniform(0.5, 0.9, 8))
    return ParamDistribution.fit(samples, fixed={"row_sigma": 0.0, "sharpen": 0.3, "downscale": 2.0}, model=v2.MODEL_NAME).save(path)


@pytest.fixture(scope="module")
def v2_params(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_v2_params(tmp_path_factory.mktemp("params") / "v2.json")


def _hashes(out: Path) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): file_sha256(p) for p in sorted(out.rglob("*.png"))}


@pytest.mark.parametrize("sampler,bit_depth", [("normal", 8), ("empirical", 16)])
def test_v2_samples_regenerate_bit_exactly(tmp_path: Path, sources: Path, v2_params: Path, sampler: str,
                                          bit_depth: int):
    result = run_generate(sources, tmp_path / "out", v2_params, 6, sampler=sampler, bit_depth=bit_depth)
    frame, meta = read_manifest(result.manifest)
    ok = frame[frame["status"] == "ok"]
    assert set(ok["model"]) == {v2.MODEL_NAME} and set(ok["sampler"]) == {v2.FAST_SAMPLER}  # new rows' default
    assert ok[["exposure", "shot_gain", "chroma_nr", "tone_gamma"]].notna().all().all()
    assert ok["gain_r"].isna().all()  # v1's columns stay empty
    for key, name in zip(ok["key"], ok["dark_file_name"]):
        clean, dark, _ = G.regenerate(result.manifest, key)
        stored = cv2.imread(str(result.out / name), cv2.IMREAD_UNCHANGED)[..., ::-1]
        np.testing.assert_array_equal(dark, stored)
        assert dark.dtype == (np.uint8 if bit_depth == 8 else np.uint16)


def test_reference_rows_regenerate_with_their_recorded_sampler(tmp_path: Path, sources: Path, v2_params: Path,
                                                               monkeypatch: pytest.MonkeyPatch):
    result = run_generate(sources, tmp_path / "out", v2_params, 2, bit_depth=8)
    ok = read_manifest(result.manifest)[0].query("status == 'ok'")
    key, name = ok["key"].iloc[0], ok["dark_file_name"].iloc[0]
    fast = cv2.imread(str(result.out / name), cv2.IMREAD_UNCHANGED)[..., ::-1]
    real_row = G.sample._manifest_row

    def as_reference_row(manifest: Path, wanted: str):  # the row as lowsim wrote it before isp-fast/v2
        row, meta = real_row(manifest, wanted)
        return {**row, "sampler": v2.SAMPLER}, meta

    monkeypatch.setattr(G.sample, "_manifest_row", as_reference_row)
    clean, dark, row = G.regenerate(result.manifest, key)
    params = IspParams(**{k: row[k] for k in IspParams.__dataclass_fields__})
    noise = G.sample_streams(int(row["seed"]), int(row["index"]))["noise"]
    np.testing.assert_array_equal(dark, v2.degrade_to_codes(clean, params, noise, 8, sampler=None))
    assert np.any(dark != fast)  # the recorded sampler decides, not the default


def test_v2_output_does_not_depend_on_workers_and_resumes(tmp_path: Path, sources: Path, v2_params: Path):
    one = run_generate(sources, tmp_path / "one", v2_params, 8, workers=1)
    two = run_generate(sources, tmp_path / "two", v2_params, 5, workers=2)
    two = run_generate(sources, tmp_path / "two", v2_params, 8, workers=2)  # resume to 8
    assert two.n_made == 3
    assert _hashes(one.out) == _hashes(two.out)


def test_empirical_and_normal_samplers_draw_differently(tmp_path: Path, sources: Path, v2_params: Path):
    normal = read_manifest(run_generate(sources, tmp_path / "n", v2_params, 4).manifest)[0]
    empirical = read_manifest(run_generate(sources, tmp_path / "e", v2_params, 4, sampler="empirical").manifest)[0]
    assert not np.allclose(normal["exposure"], empirical["exposure"])


def _exit_code(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    return info.value.code, capsys.readouterr().err


def test_model_and_sampler_mismatches_are_one_line_errors(tmp_path: Path, sources: Path, v2_params: Path,
                                                         capsys: pytest.CaptureFixture):
    v1_params = write_params(tmp_path / "v1.json")
    base = ["generate", "--src", str(sources), "--n", "2", "--size", "32", "--out", str(tmp_path / "o")]
    code, err = _exit_code([*base, "--params", str(v1_params), "--model", "v2"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "lowsim.degrade/v1 (schema 1)" in err and "lowsim.degrade/v2 (schema 2)" in err
    code, err = _exit_code([*base, "--params", str(v2_params), "--model", "v1"], capsys)
    assert code == 2 and "lowsim.degrade/v2 (schema 2)" in err and str(v2_params) in err
    code, err = _exit_code([*base, "--params", str(v1_params), "--sampler", "empirical"], capsys)
    assert code == 2 and "per-pair fits" in err and err.count("\n") == 1
    code, err = _exit_code([*base, "--params", str(v2_params), "--sampler", "bootstrap"], capsys)
    assert code == 2 and "--sampler must be one of normal, empirical" in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").rglob("dark"))


def test_jpeg_rows_and_rows_from_before_jpeg_quality_regenerate_bit_exactly(tmp_path: Path, sources: Path,
                                                                            v2_params: Path,
                                                                            monkeypatch: pytest.MonkeyPatch):
    dist = ParamDistribution.load(v2_params)
    jpeg_params = ParamDistribution(**{**dist.__dict__, "fixed": {**dist.fixed, "jpeg_quality": 60.0}})
    jpeg = run_generate(sources, tmp_path / "jpeg", jpeg_params.save(tmp_path / "jpeg.json"), 1, bit_depth=8)
    off = run_generate(sources, tmp_path / "off", v2_params, 1, bit_depth=8)
    real_row = G.sample._manifest_row

    def as_old_row(manifest: Path, wanted: str):  # the row as lowsim wrote it before jpeg_quality existed
        row, meta = real_row(manifest, wanted)
        return {k: v for k, v in row.items() if k != "jpeg_quality"}, meta

    for result, quality in ((jpeg, 60.0), (off, 0.0)):
        ok = read_manifest(result.manifest)[0].query("status == 'ok'")
        assert list(ok["jpeg_quality"]) == [quality]
        stored = cv2.imread(str(result.out / ok["dark_file_name"].iloc[0]), cv2.IMREAD_UNCHANGED)[..., ::-1]
        np.testing.assert_array_equal(G.regenerate(result.manifest, ok["key"].iloc[0])[1], stored)
    monkeypatch.setattr(G.sample, "_manifest_row", as_old_row)
    np.testing.assert_array_equal(G.regenerate(off.manifest, ok["key"].iloc[0])[1], stored)
    with pytest.raises(AssertionError):  # a JPEG row stripped of its quality is not the image it made
        key = read_manifest(jpeg.manifest)[0]["key"].iloc[0]
        jpeg_stored = cv2.imread(str(jpeg.out / read_manifest(jpeg.manifest)[0]["dark_file_name"].iloc[0]),
                                 cv2.IMREAD_UNCHANGED)[..., ::-1]
        np.testing.assert_array_equal(G.regenerate(jpeg.manifest, key)[1], jpeg_stored)


def test_white_balance_rows_and_rows_from_before_the_gains_regenerate_bit_exactly(tmp_path: Path, sources: Path,
                                                                                 v2_params: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch):
    dist = ParamDistribution.load(v2_params)
    assert (dist.fixed["wb_red"], dist.fixed["wb_blue"]) == (2.0, 1.6)  # a file without them reads the constants
    tungsten = ParamDistribution(**{**dist.__dict__, "fixed": {**dist.fixed, "wb_red": 1.3, "wb_blue": 3.0}})
    warm = run_generate(sources, tmp_path / "warm", tungsten.save(tmp_path / "warm.json"), 1, bit_depth=8)
    default = run_generate(sources, tmp_path / "default", v2_params, 1, bit_depth=8)
    real_row = G.sample._manifest_row

    def as_old_row(manifest: Path, wanted: str):  # the row as lowsim wrote it before the gains were parameters
        row, meta = real_row(manifest, wanted)
        return {k: v for k, v in row.items() if k not in ("wb_red", "wb_blue")}, meta

    stored = {}
    for name, result, gains in (("warm", warm, [1.3, 3.0]), ("default", default, [2.0, 1.6])):
        ok = read_manifest(result.manifest)[0].query("status == 'ok'")
        assert ok[["wb_red", "wb_blue"]].iloc[0].tolist() == gains
        stored[name] = cv2.imread(str(result.out / ok["dark_file_name"].iloc[0]), cv2.IMREAD_UNCHANGED)[..., ::-1]
        np.testing.assert_array_equal(G.regenerate(result.manifest, ok["key"].iloc[0])[1], stored[name])
    monkeypatch.setattr(G.sample, "_manifest_row", as_old_row)
    key = read_manifest(default.manifest)[0]["key"].iloc[0]
    np.testing.assert_array_equal(G.regenerate(default.manifest, key)[1], stored["default"])
    with pytest.raises(AssertionError):  # a row of other gains stripped of them is not the image it made
        key = read_manifest(warm.manifest)[0]["key"].iloc[0]
        np.testing.assert_array_equal(G.regenerate(warm.manifest, key)[1], stored["warm"])


def test_16_bit_output_of_a_jpeg_camera_is_refused_before_a_run_folder_exists(tmp_path: Path, sources: Path,
                                                                             v2_params: Path):
    dist = ParamDistribution.load(v2_params)
    jpeg_params = ParamDistribution(**{**dist.__dict__, "fixed": {**dist.fixed, "jpeg_quality": 60.0}})
    path = jpeg_params.save(tmp_path / "jpeg.json")
    with pytest.raises(LowsimError, match=r"jpeg_quality 60 .*--bit-depth 16") as refused:
        run_generate(sources, tmp_path / "run", path, 1, bit_depth=16)
    assert "jpeg.json" in str(refused.value)
    assert not (tmp_path / "run").exists()
