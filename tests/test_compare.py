"""lowsim.compare, its report and `lowsim compare`: null comparisons stay at 0.5, wrong noise is caught."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from lowsim.compare import (
    BRIGHTNESS_EDGES,
    DEFAULT_FEATURE_SET,
    FEATURE_SETS,
    PIXEL_NOISE_STATISTICS,
    capped,
    classifier_test,
    compare_images,
    compare_measurements,
    effective_size,
    match_brightness,
    measure_image,
    select_real_pairs,
    wilson_interval,
)
from lowsim.imageio import read_image, write_png
from lowsim.splits import REAL_PAIR_FRACTIONS, assign_split
from lowsim.statistics import STATISTICS

CHROMIUM = Path("/usr/bin/chromium")
N_REAL = 24  # every 10th LOL low: enough for the classifier, a few seconds to measure


# ---------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def lol_lows(lol_dev: Path) -> list[np.ndarray]:
    """N_REAL real dark images, uint8."""
    files = sorted((lol_dev / "low").glob("*.png"))[:: len(list((lol_dev / "low").glob("*.png"))) // N_REAL]
    return [read_image(f) for f in files[:N_REAL]]


@pytest.fixture(scope="module")
def lol_measured(lol_lows: list[np.ndarray]) -> list:
    """measure_image of each real dark image."""
    return [measure_image(img, seed=i) for i, img in enumerate(lol_lows)]


def with_extra_noise(img: np.ndarray, sd: float, seed: int) -> np.ndarray:
    """img plus Gaussian noise of sd levels, rounded and clipped back to uint8."""
    rng = np.random.default_rng(seed)
    return np.clip(np.round(img + sd * rng.standard_normal(img.shape)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def lol_noisier(lol_lows: list[np.ndarray]) -> list:
    """measure_image of each real dark image with 3 levels of extra Gaussian noise."""
    return [measure_image(with_extra_noise(img, 3.0, seed=100 + i), seed=i) for i, img in enumerate(lol_lows)]


# ---------------------------------------------------------------------------------------------- null and power

@pytest.mark.parametrize("feature_set", list(FEATURE_SETS))
def test_a_set_compared_with_itself_is_indistinguishable(lol_lows: list[np.ndarray], lol_measured: list,
                                                         feature_set: str) -> None:
    # The default through compare_images; the others on the same measurements (seed 0: patch seeds 0..11).
    result = (compare_images(lol_lows[:12], lol_lows[:12], seed=0) if feature_set == DEFAULT_FEATURE_SET else
              compare_measurements(lol_measured[:12], lol_measured[:12], seed=0, feature_set=feature_set))
    c = result.classifier
    assert c.feature_set == feature_set and c.features == FEATURE_SETS[feature_set]
    print(f"self-compare accuracy {c.accuracy:.3f} [{c.ci_low:.3f}, {c.ci_high:.3f}]")
    assert result.distance == pytest.approx(0.0, abs=1e-12)
    assert all(s.ks == 0 and s.relative_median_diff == 0 for s in result.statistics)
    assert c.ci_low <= 0.5 <= c.ci_high
    assert abs(c.accuracy - 0.5) < 0.05
    assert c.brightness_matched and c.n_real_images == c.n_synthetic_images == 12


@pytest.mark.parametrize("feature_set", list(FEATURE_SETS))
def test_two_halves_of_the_real_set_are_indistinguishable(lol_measured: list, feature_set: str) -> None:
    # Different images, same process: the honest null. Patches of one image never straddle folds.
    result = compare_measurements(lol_measured[::2], lol_measured[1::2], seed=0, feature_set=feature_set)
    c = result.classifier
    print(f"halves accuracy {c.accuracy:.3f} [{c.ci_low:.3f}, {c.ci_high:.3f}]")
    assert c.ci_low <= 0.5 <= c.ci_high


@pytest.mark.parametrize("feature_set", list(FEATURE_SETS))
def test_a_wrong_noise_level_is_detected(lol_measured: list, lol_noisier: list, feature_set: str) -> None:
    result = compare_measurements(lol_measured, lol_noisier, seed=0, feature_set=feature_set)
    c = result.classifier
    print(f"wrong-noise accuracy {c.accuracy:.3f} [{c.ci_low:.3f}, {c.ci_high:.3f}]")
    assert c.accuracy > 0.75 and c.ci_low > 0.6
    assert result.statistic("residual_sd").relative_median_diff > 0.2
    assert result.statistic("brightness").ks < 0.3  # noise, not exposure, is what differs
    real, synthetic = (np.array(p[:4]) for p in (result.real_noise_profile, result.synthetic_noise_profile))
    assert (synthetic > real).all()  # every dark bin is noisier
    assert result.distance > 0.15


def test_pixel_noise_statistics_see_the_colour_of_the_noise(lol_lows: list[np.ndarray], lol_measured: list) -> None:
    # Extra noise in the red channel only: red/green rises, blue/green does not; the distance keeps its 7.
    def redder(img: np.ndarray, seed: int) -> np.ndarray:
        noisy = img.copy()
        noisy[..., 0] = with_extra_noise(img[..., :1], 2.0, seed)[..., 0]
        return noisy

    measured = [measure_image(redder(img, 200 + i), seed=i) for i, img in enumerate(lol_lows[:12])]
    result = compare_measurements(lol_measured[:12], measured, seed=0)
    assert [s.name for s in result.pixel_noise] == list(PIXEL_NOISE_STATISTICS)
    assert len(result.statistics) == len(STATISTICS)
    assert result.statistic("noise_red_green").relative_median_diff > 0.3
    assert abs(result.statistic("noise_blue_green").relative_median_diff) < 0.05
    assert result.statistic("noise_sd").relative_median_diff > 0.05
    same = compare_measurements(lol_measured[:12], lol_measured[:12], seed=0)
    assert all(s.ks == 0 and s.relative_median_diff == 0 for s in same.pixel_noise)


# ---------------------------------------------------------------------------------------------- pieces

def test_wilson_interval_known_values() -> None:
    low, high = wilson_interval(50, 100)
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-3)
    low, high = wilson_interval(10, 10)
    assert high == pytest.approx(1.0) and low == pytest.approx(0.7225, abs=1e-3)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_effective_size_shrinks_to_the_image_count_when_patches_agree() -> None:
    groups = np.repeat(np.arange(20), 10)
    clustered = np.repeat(np.arange(20) % 2 == 0, 10)  # all patches of an image right or all wrong
    assert effective_size(clustered, groups) == pytest.approx(20 * 19 / 20, rel=0.1)
    rng = np.random.default_rng(0)
    independent = rng.random(200) < 0.5
    assert effective_size(independent, groups) > 100


def test_match_brightness_equalises_counts_per_bin() -> None:
    rng = np.random.default_rng(0)
    brightness = np.concatenate([rng.uniform(1, 20, 300), rng.uniform(10, 60, 300)])
    labels = np.repeat([0, 1], 300)
    keep = match_brightness(brightness, labels, rng)
    assert 0 < keep.size < 600
    assert (labels[keep] == 0).sum() == (labels[keep] == 1).sum()
    # Only the bins of the overlap (10-20 levels) survive.
    low, high = BRIGHTNESS_EDGES[np.digitize([10, 20], BRIGHTNESS_EDGES) + [-1, 0]]
    assert brightness[keep].min() >= low and brightness[keep].max() <= high


def test_classifier_needs_two_images_a_side(lol_measured: list) -> None:
    result = classifier_test(lol_measured[:1], lol_measured[1:3])
    assert math.isnan(result.accuracy) and "2 distinct images" in result.note


def test_measure_image_features_and_float_input(lol_lows: list[np.ndarray]) -> None:
    as_uint8 = measure_image(lol_lows[0], seed=3)
    as_float = measure_image(lol_lows[0].astype(np.float32) / 255, seed=3)
    assert set(as_uint8.patch_features) == set(FEATURE_SETS)
    for name, features in as_uint8.patch_features.items():
        assert features.shape == (len(as_uint8.patch_brightness), len(FEATURE_SETS[name]))
        np.testing.assert_allclose(features, as_float.patch_features[name], rtol=1e-4, atol=1e-6)
    assert as_uint8.content_id == as_float.content_id
    small = measure_image(lol_lows[0][:40, :50], seed=0)  # smaller than a patch: one patch of 40x40
    assert small.patch_features["laplacian"].shape[0] == 1 and small.crops[0].shape == (40, 40, 3)


def test_an_unknown_feature_set_is_refused(lol_measured: list) -> None:
    from lowsim.errors import LowsimError

    with pytest.raises(LowsimError, match="unknown feature set 'pixels', expected one of residual, laplacian"):
        classifier_test(lol_measured[:3], lol_measured[3:6], feature_set="pixels")


def test_real_splits_partition_the_pairs_like_calibrate(lol_dev: Path) -> None:
    from lowsim.calibrate import select_split
    from lowsim.errors import LowsimError
    from lowsim.pairs import find_pairs

    pairs = find_pairs(lol_dev)
    pool, val = select_real_pairs(pairs, "pool"), select_real_pairs(pairs, "val")
    assert [p.name for p in pool] == [p.name for p in select_split(pairs, "pool")]
    assert sorted(p.name for p in pool + val) == sorted(p.name for p in pairs)
    assert 0 < len(val) < len(pool)
    with pytest.raises(LowsimError, match="unknown real split"):
        select_real_pairs(pairs, "train")


def test_capped_is_a_seeded_ordered_choice() -> None:
    items = list(range(100))
    a, b = capped(items, 10, np.random.default_rng(5)), capped(items, 10, np.random.default_rng(5))
    assert a == b == sorted(a) and len(set(a)) == 10
    assert capped(items[:3], 10, np.random.default_rng(0)) == [0, 1, 2]


def test_json_dict_is_strict_json(lol_measured: list) -> None:
    result = compare_measurements(lol_measured[:3], lol_measured[3:6], seed=1)
    data = json.loads(json.dumps(result.to_json_dict(), allow_nan=False))
    assert [s["name"] for s in data["statistics"]] == list(STATISTICS)
    assert [s["name"] for s in data["pixel_noise"]] == list(PIXEL_NOISE_STATISTICS)
    assert set(data["classifier"]) >= {"accuracy", "ci_low", "ci_high", "n_effective"}
    assert "examples" not in data and len(data["real_values"]["residual_sd"]) == 3


# ---------------------------------------------------------------------------------------------- CLI

def run_cli(args: list[str]) -> int:
    """`lowsim <args>` in this process; the exit code."""
    from lowsim.cli import main

    try:
        main(args)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


@pytest.fixture(scope="module")
def tiny_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 6-sample generated manifest (64 px) and a LOL-layout pairs folder made of its dark/clean images."""
    base = tmp_path_factory.mktemp("compare")
    manifest = base / "tiny.parquet"
    assert run_cli(["generate", "--n", "6", "--size", "64", "--out", str(base / "tiny"),
                    "--manifest", str(manifest), "--no-progress"]) == 0
    from lowsim.manifest import dataset_dir, read_manifest

    rows, meta = read_manifest(manifest)
    root = dataset_dir(manifest, meta)
    pairs = base / "pairs"
    # Names that all fall in the pool split, so that --real-split val finds nothing.
    names = [n for n in (f"p{i}" for i in range(100)) if assign_split(n, REAL_PAIR_FRACTIONS) == "pool"]
    for name, dark, clean in zip(names, rows["dark_file_name"], rows["clean_file_name"]):
        # Flipped, so the "real" images are not byte-identical to the synthetic ones.
        write_png(pairs / "low" / f"{name}.png", np.ascontiguousarray(read_image(root / dark)[:, ::-1]))
        write_png(pairs / "high" / f"{name}.png", np.ascontiguousarray(read_image(root / clean)[:, ::-1]))
    return {"base": base, "manifest": manifest, "pairs": pairs}


@pytest.fixture(scope="module")
def cli_outputs(tiny_inputs: dict[str, Path]) -> dict[str, Path]:
    """`lowsim compare` on the tiny inputs: PNG + JSON, HTML, JSON with --features residual; outputs, stdout."""
    import contextlib
    import io

    out = tiny_inputs["base"] / "out"
    common = ["compare", "--real", str(tiny_inputs["pairs"]), "--synthetic", str(tiny_inputs["manifest"]),
              "--real-split", "all"]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert run_cli([*common, "--report", str(out / "r.png"), "--json", str(out / "r.json")]) == 0
        assert run_cli([*common, "--report", str(out / "r.html")]) == 0
        assert run_cli([*common, "--features", "residual", "--json", str(out / "residual.json")]) == 0
    (out / "stdout.txt").write_text(stdout.getvalue())
    return {"png": out / "r.png", "json": out / "r.json", "html": out / "r.html", "stdout": out / "stdout.txt",
            "residual_json": out / "residual.json"}


def test_cli_writes_png_html_and_json(cli_outputs: dict[str, Path]) -> None:
    printed = cli_outputs["stdout"].read_text()
    assert "residual_sd" in printed and "noise_blue_green" in printed and "classifier accuracy" in printed
    data = json.loads(cli_outputs["json"].read_text())
    assert data["n_real"] == data["n_synthetic"] == 6
    assert data["classifier"]["patch_size"] == 64
    # The feature set is recorded; the CLI's default is the library's.
    assert data["classifier"]["feature_set"] == data["inputs"]["feature_set"] == DEFAULT_FEATURE_SET
    assert data["classifier"]["features"] == list(FEATURE_SETS[DEFAULT_FEATURE_SET])
    assert f"{DEFAULT_FEATURE_SET} features" in printed
    residual = json.loads(cli_outputs["residual_json"].read_text())["classifier"]
    assert residual["feature_set"] == "residual" and residual["features"] == list(FEATURE_SETS["residual"])
    png = read_image(cli_outputs["png"])
    assert png.shape[0] > 500 and png.std() > 10
    page = cli_outputs["html"].read_text()
    assert "noise_red_green" in page and "Noise at the pixel scale" in page
    assert page.count("data:image/png;base64,") == 2 and "http" not in page.replace("http-equiv", "")


def _screenshot(page: Path, shot: Path) -> None:
    """Render a local HTML file with headless Chromium into a PNG."""
    profile = tempfile.mkdtemp(prefix="chromium-")
    try:
        subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        "--no-first-run", f"--user-data-dir={profile}", "--window-size=1200,1600",
                        f"--screenshot={shot}", page.resolve().as_uri()],
                       capture_output=True, timeout=60, check=False)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def test_html_report_renders_in_chromium(cli_outputs: dict[str, Path], tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} not found; scripts/setup.sh installs it with apt-get"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    shot = tmp_path / "shot.png"
    _screenshot(cli_outputs["html"], shot)
    assert shot.is_file(), "chromium wrote no screenshot"
    pixels = read_image(shot).astype(np.float64)
    assert pixels.std() > 20  # not a blank page
    assert (pixels.mean(axis=2) < 128).mean() > 0.01  # text, plots and crops: some dark ink


@pytest.mark.parametrize("change, pattern", [
    ({"--real": "missing-folder"}, "pairs folder not found"),
    ({"--synthetic": "not-a-manifest.parquet"}, "not a readable Parquet file"),
    ({"--report": "report.pdf"}, "unsupported report type"),
    ({"--synthetic-split": "nosuch"}, "no ok samples in split"),
    ({"--real-split": "val"}, "no real pairs in split 'val'"),
    ({"--max-images": "0"}, "--max-images must be positive"),
    ({"--features": "pixels"}, "unknown --features 'pixels', expected one of residual, laplacian"),
])
def test_cli_bad_input_is_one_line(tiny_inputs: dict[str, Path], capsys: pytest.CaptureFixture,
                                   change: dict[str, str], pattern: str) -> None:
    base = tiny_inputs["base"]
    (base / "not-a-manifest.parquet").write_text("hello")
    options = {"--real": str(tiny_inputs["pairs"]), "--synthetic": str(tiny_inputs["manifest"]),
               "--real-split": "all"}
    options.update({k: (str(base / v) if k in ("--real", "--synthetic", "--report") else v)
                    for k, v in change.items()})
    capsys.readouterr()
    code = run_cli(["compare", *[x for kv in options.items() for x in kv]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 1 and err[0].startswith("error:") and pattern in err[0], err
