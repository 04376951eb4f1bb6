"""lowsim.generate and the `lowsim generate / regenerate / preview` commands."""
from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from lowsim import generate as G
from lowsim.errors import LowsimError
from lowsim.imageio import read_image
from lowsim.manifest import read_manifest
from lowsim.params import PARAM_NAMES, ParamDistribution, file_sha256

REPO = Path(__file__).resolve().parents[1]
LOWSIM = REPO / ".venv" / "bin" / "lowsim"


# ================================================================================== fixtures


def write_params(path: Path) -> Path:
    """A small fitted distribution (the shipped params/lol.json may not exist yet)."""
    rng = np.random.default_rng(0)
    samples = {"black_level": rng.uniform(0.01, 0.05, 12), "gain_r": rng.uniform(0.15, 0.3, 12),
               "gain_g": rng.uniform(0.15, 0.3, 12), "gain_b": rng.uniform(0.15, 0.3, 12),
               "photon_scale": rng.uniform(200, 800, 12), "read_sigma": rng.uniform(0.002, 0.01, 12),
               "gamma": rng.uniform(0.8, 1.3, 12)}
    return ParamDistribution.fit(samples, fixed={"illum_alpha": 0.3, "illum_gamma": 1.0}).save(path)


def write_sources(root: Path) -> Path:
    """Mixed sources: PNG, JPEG, BMP, 16-bit TIFF, grayscale, one smaller than the crop, a subfolder."""
    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    (root / "sub").mkdir(exist_ok=True)

    def photo(h: int, w: int) -> np.ndarray:
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([x / w, y / h, (x + y) / (h + w)], axis=-1) * 200 + 20
        return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)

    cv2.imwrite(str(root / "a.png"), photo(90, 120))
    cv2.imwrite(str(root / "b.jpg"), photo(100, 70))
    cv2.imwrite(str(root / "c.bmp"), photo(64, 64))
    cv2.imwrite(str(root / "sub" / "d.png"), photo(40, 50))  # smaller than the crop: upscaled
    cv2.imwrite(str(root / "gray.png"), photo(80, 80)[..., 0])
    cv2.imwrite(str(root / "deep.tif"), photo(70, 90).astype(np.uint16) * 257)
    return root


@pytest.fixture(scope="module")
def params_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_params(tmp_path_factory.mktemp("params") / "params.json")


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sources(tmp_path_factory.mktemp("sources"))


def run_generate(src: Path | None, out: Path, params: Path, n: int, **kw) -> G.GenerateResult:
    kw.setdefault("size", 48)
    kw.setdefault("seed", 5)
    return G.generate(src=src, n=n, params=params, out=out, manifest=out.parent / f"{out.name}.parquet",
                      progress=False, **kw)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, sources: Path, params_file: Path) -> G.GenerateResult:
    """14 samples from 6 sources (so 3 cycles), two workers."""
    return run_generate(sources, tmp_path_factory.mktemp("run") / "set", params_file, 14, workers=2)


def ok_rows(result: G.GenerateResult) -> list[dict]:
    return [r for r in result.rows if r["status"] == "ok"]


def assert_dataset_consistent(out: Path, manifest: Path, n: int) -> pd.DataFrame:
    """Exactly n ok rows, unique keys, files = rows (no orphans, no temp files), sizes and hashes right."""
    frame, _ = read_manifest(manifest)
    ok = frame[frame["status"] == "ok"]
    assert len(ok) == n
    assert frame["key"].is_unique
    for kind in ("clean", "dark"):
        on_disk = sorted(p.name for p in out.glob(f"*/{kind}/*"))  # OUT/<split>/<kind>/
        assert on_disk == sorted(f"{k}.png" for k in ok["key"])
        for _, row in ok.iterrows():
            path = out / row[f"{kind}_file_name"]
            assert path.stat().st_size == row[f"{kind}_bytes"]
            assert file_sha256(path) == row[f"{kind}_sha256"]
    assert not list(out.rglob("*.tmp"))
    return frame


# ================================================================================== units


def test_parse_fractions() -> None:
    assert G.parse_fractions("train=0.8, val=0.1,test=0.1") == {"train": 0.8, "val": 0.1, "test": 0.1}
    assert G.parse_fractions(None) == {"train": 0.9, "val": 0.05, "test": 0.05}
    for bad in ("train", "train=x", "train=-1", "=0.5", "train=0,val=0", "a=1,a=2", "a=nan"):
        with pytest.raises(LowsimError):
            G.parse_fractions(bad)


def test_each_cycle_uses_every_source_once_in_a_seeded_order() -> None:
    picks = [G.source_index(3, i, 7) for i in range(21)]
    for cycle in range(3):
        assert sorted(picks[cycle * 7:(cycle + 1) * 7]) == list(range(7))
    assert picks[:7] != picks[7:14]  # reshuffled each cycle
    assert picks == [G.source_index(3, i, 7) for i in range(21)]
    assert picks != [G.source_index(4, i, 7) for i in range(21)]


def test_sample_streams_depend_only_on_seed_and_index() -> None:
    a = G.sample_streams(1, 10)
    b = G.sample_streams(1, 10)
    c = G.sample_streams(1, 11)
    draws = {name: a[name].random() for name in G.STREAMS}
    assert draws == {name: b[name].random() for name in G.STREAMS}
    assert draws != {name: c[name].random() for name in G.STREAMS}
    assert len(set(draws.values())) == 3  # geometry, params and noise streams differ


def test_geometry_crops_inside_and_upscales_small_sources() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        g = G.draw_geometry(rng, 90, 120, 64)
        assert (g.resize_height, g.resize_width) == (90, 120)
        assert 0 <= g.crop_y <= 90 - 64 and 0 <= g.crop_x <= 120 - 64
    small = G.draw_geometry(rng, 40, 50, 64)
    assert (small.resize_height, small.resize_width) == (64, 80)
    img = np.arange(40 * 50 * 3, dtype=np.uint8).reshape(40, 50, 3)
    assert G.apply_geometry(img, small).shape == (64, 64, 3)
    whole = G.draw_geometry(rng, 40, 50, None)
    assert np.array_equal(G.apply_geometry(img, whole), img)
    flipped = G.Geometry(40, 50, 0, 0, 40, 50, flip_v=True, flip_h=True, transpose=True)
    assert np.array_equal(G.apply_geometry(img, flipped), img[::-1, ::-1].transpose(1, 0, 2))


def test_bit_depth_conversion_is_exact() -> None:
    v8 = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    v16 = G.to_bit_depth(v8, 16)
    assert v16.dtype == np.uint16 and v16.max() == 65535
    assert np.array_equal(G.to_bit_depth(v16, 8), v8)
    assert np.array_equal(G.to_bit_depth(np.array([[[128, 129, 65535]]], np.uint16), 8), [[[0, 1, 255]]])


# ================================================================================== end to end


def test_dataset_has_n_ok_rows_and_a_complete_manifest(dataset: G.GenerateResult) -> None:
    frame = assert_dataset_consistent(dataset.out, dataset.manifest, 14)
    ok = frame[frame["status"] == "ok"]
    assert set(PARAM_NAMES) <= set(frame.columns)
    assert ok[list(PARAM_NAMES)].notna().all().all()
    assert set(ok["split"]) <= {"train", "val", "test"}
    assert (ok["height"] == 48).all() and (ok["width"] == 48).all()
    assert (ok["model"] == "lowsim.degrade/v1").all() and (ok["seed"] == 5).all()
    assert set(ok["source_path"]) == {"a.png", "b.jpg", "c.bmp", "sub/d.png", "gray.png", "deep.tif"}
    assert ok.groupby("source_path").size().between(2, 3).all()  # 14 samples over 6 sources
    # the 16-bit TIFF is degraded by the reference sampler, the 8-bit sources by the tables
    assert set(ok.loc[ok["source_path"] == "deep.tif", "sampler"]) == {"numpy-reference/v1"}
    assert set(ok.loc[ok["source_path"] == "a.png", "sampler"]) == {"exact-table/v1"}
    for _, row in ok.iterrows():
        dark = read_image(dataset.out / row["dark_file_name"])
        clean = read_image(dataset.out / row["clean_file_name"])
        assert dark.shape == clean.shape == (48, 48, 3) and dark.dtype == np.uint8
        assert dark.mean() < clean.mean()


def test_split_follows_the_source(dataset: G.GenerateResult) -> None:
    frame, _ = read_manifest(dataset.manifest)
    assert (frame.groupby("source_path")["split"].nunique() == 1).all()


def test_metadata_parquet_is_an_imagefolder_metadata_file(dataset: G.GenerateResult) -> None:
    meta = pd.read_parquet(dataset.out / "metadata.parquet")
    assert (meta["status"] == "ok").all() and len(meta) == 14
    for column in (c for c in meta.columns if c.endswith("_file_name")):
        assert all((dataset.out / name).is_file() for name in meta[column])


def test_manifest_reads_with_duckdb(dataset: G.GenerateResult) -> None:
    duckdb = pytest.importorskip("duckdb")
    [(count, keys)] = duckdb.sql(f"select count(*), count(distinct key) from '{dataset.manifest}' "
                                 "where status = 'ok'").fetchall()
    assert count == keys == 14


def test_every_sample_regenerates_bit_exactly(dataset: G.GenerateResult) -> None:
    for row in ok_rows(dataset):
        clean, dark, _ = G.regenerate(dataset.manifest, row["key"])
        assert np.array_equal(dark, read_image(dataset.out / row["dark_file_name"]))
        assert np.array_equal(clean, read_image(dataset.out / row["clean_file_name"]))


def test_workers_do_not_change_the_dataset(dataset: G.GenerateResult, sources: Path, params_file: Path,
                                           tmp_path: Path) -> None:
    single = run_generate(sources, tmp_path / "one", params_file, 14, workers=1)
    for a, b in zip(ok_rows(dataset), ok_rows(single)):
        assert a["key"] == b["key"] and a["dark_sha256"] == b["dark_sha256"]
        assert a["clean_sha256"] == b["clean_sha256"] and a["gamma"] == b["gamma"]
    assert len(ok_rows(single)) == 14


def test_bad_sources_are_recorded_and_replaced(sources: Path, params_file: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for p in sources.rglob("*.png"):
        (src / p.name).write_bytes(p.read_bytes())
    good = (src / "a.png").read_bytes()
    (src / "truncated.png").write_bytes(good[: len(good) // 2])
    (src / "empty.jpg").write_bytes(b"")
    (src / "text.bmp").write_text("not an image")
    result = run_generate(src, tmp_path / "set", params_file, 10, workers=2)
    frame = assert_dataset_consistent(result.out, result.manifest, 10)
    errors = frame[frame["status"] == "error"]
    assert sorted(errors["source_path"]) == ["empty.jpg", "text.bmp", "truncated.png"]
    assert errors["error_message"].str.len().gt(0).all()
    assert errors["dark_file_name"].isna().all()
    assert result.n_errors == 3 and result.n_ok == 10


def test_only_bad_sources_is_an_error(params_file: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "x.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(LowsimError, match="no readable source image"):
        run_generate(src, tmp_path / "set", params_file, 3)


def test_resume_trusts_only_intact_files(sources: Path, params_file: Path, tmp_path: Path) -> None:
    first = run_generate(sources, tmp_path / "set", params_file, 6)
    out = first.out
    by_key = {r["key"]: r for r in ok_rows(first)}
    truncated = out / by_key["00000001"]["dark_file_name"]
    truncated.write_bytes(truncated.read_bytes()[:100])
    (out / by_key["00000004"]["clean_file_name"]).unlink()
    (truncated.parent / ".00000002.png.999.1.tmp").write_bytes(b"half a file")
    again = run_generate(sources, out, params_file, 6)
    assert again.n_made == 2
    assert_dataset_consistent(out, again.manifest, 6)
    assert [r["dark_sha256"] for r in ok_rows(again)] == [r["dark_sha256"] for r in ok_rows(first)]


def test_resume_with_other_settings_is_refused(sources: Path, params_file: Path, tmp_path: Path) -> None:
    run_generate(sources, tmp_path / "set", params_file, 2)
    with pytest.raises(LowsimError, match="different settings.*seed"):
        run_generate(sources, tmp_path / "set", params_file, 2, seed=6)
    with pytest.raises(LowsimError, match="size"):
        run_generate(sources, tmp_path / "set", params_file, 2, size=32)


def test_n_can_grow_and_shrink(sources: Path, params_file: Path, tmp_path: Path) -> None:
    small = run_generate(sources, tmp_path / "set", params_file, 4)
    grown = run_generate(sources, tmp_path / "set", params_file, 7)
    assert grown.n_made == 3
    assert [r["dark_sha256"] for r in ok_rows(grown)][:4] == [r["dark_sha256"] for r in ok_rows(small)]
    shrunk = run_generate(sources, tmp_path / "set", params_file, 3)
    assert shrunk.n_made == 0
    assert_dataset_consistent(shrunk.out, shrunk.manifest, 3)


def test_foreign_output_folder_is_refused(sources: Path, params_file: Path, tmp_path: Path) -> None:
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "notes.txt").write_text("mine")
    with pytest.raises(LowsimError, match="not empty"):
        run_generate(sources, tmp_path / "set", params_file, 2)


def test_sixteen_bit_output(sources: Path, params_file: Path, tmp_path: Path) -> None:
    result = run_generate(sources, tmp_path / "set", params_file, 3, bit_depth=16)
    for row in ok_rows(result):
        assert read_image(result.out / row["dark_file_name"]).dtype == np.uint16
        assert read_image(result.out / row["clean_file_name"]).dtype == np.uint16
        assert row["sampler"] == "numpy-reference/v1"
    clean, dark, _ = G.regenerate(result.manifest, ok_rows(result)[0]["key"])
    assert np.array_equal(dark, read_image(result.out / ok_rows(result)[0]["dark_file_name"]))


def test_default_sources_are_scikit_image_photos(params_file: Path, tmp_path: Path) -> None:
    root, names = G.find_sources(None)
    assert names and set(names) <= set(G.SKIMAGE_PHOTOS)
    result = run_generate(None, tmp_path / "set", params_file, 2, size=32)
    assert {r["source_path"] for r in ok_rows(result)} <= set(names)


def test_real_clean_photos(clean_dir: Path, params_file: Path, tmp_path: Path) -> None:
    """The shared clean sets: PNG, TIFF, BMP (one grayscale), JPEG, mixed orientations."""
    src = tmp_path / "mixed"
    src.mkdir()
    for folder in sorted(clean_dir.iterdir()):
        for path in sorted(folder.iterdir())[:2]:
            os.symlink(path, src / f"{folder.name}-{path.name}")
    result = run_generate(src, tmp_path / "set", params_file, 12, size=128, workers=2)
    frame = assert_dataset_consistent(result.out, result.manifest, 12)
    assert (frame["status"] == "ok").all()


# ================================================================================== the CLI


def lowsim(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(LOWSIM), *args], capture_output=True, text=True, timeout=timeout, **kw)


def assert_clean_error(result: subprocess.CompletedProcess, pattern: str) -> None:
    """Non-zero exit, one line on stderr starting with 'error:', matching pattern, no traceback."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert re.search(pattern, lines[0]), lines[0]


@pytest.fixture(scope="module")
def cli_inputs(tmp_path_factory: pytest.TempPathFactory, sources: Path, params_file: Path) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("cli")
    return {"base": base, "src": sources, "params": params_file}


def gen_args(inputs: dict[str, Path], out: Path, *extra: str, n: str = "4") -> list[str]:
    return ["generate", "--src", str(inputs["src"]), "--params", str(inputs["params"]), "--out", str(out),
            "--manifest", str(out.parent / f"{out.name}.parquet"), "--n", n, "--size", "48", "--no-progress",
            *extra]


@pytest.mark.parametrize("n", ["0", "-3"])
def test_cli_rejects_non_positive_n(cli_inputs: dict[str, Path], n: str) -> None:
    assert_clean_error(lowsim(*gen_args(cli_inputs, cli_inputs["base"] / f"n{n}", n=n)), "--n must be")


def test_cli_missing_and_empty_source_folders(cli_inputs: dict[str, Path], tmp_path: Path) -> None:
    args = gen_args(cli_inputs, tmp_path / "out")
    args[args.index("--src") + 1] = str(tmp_path / "nowhere")
    assert_clean_error(lowsim(*args), "source folder not found")
    (tmp_path / "empty").mkdir()
    args[args.index("--src") + 1] = str(tmp_path / "empty")
    assert_clean_error(lowsim(*args), "no images found")


def test_cli_bad_params_files(cli_inputs: dict[str, Path], tmp_path: Path) -> None:
    args = gen_args(cli_inputs, tmp_path / "out")
    at = args.index("--params") + 1
    args[at] = str(tmp_path / "missing.json")
    assert_clean_error(lowsim(*args), "params file not found")
    (tmp_path / "bad.json").write_text("{ not json")
    args[at] = str(tmp_path / "bad.json")
    assert_clean_error(lowsim(*args), "not valid JSON")
    data = json.loads(cli_inputs["params"].read_text())
    data["cov"] = [[1.0]]
    (tmp_path / "shape.json").write_text(json.dumps(data))
    args[at] = str(tmp_path / "shape.json")
    assert_clean_error(lowsim(*args), "covariance must have shape")


def test_cli_unwritable_output(cli_inputs: dict[str, Path], tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert_clean_error(lowsim(*gen_args(cli_inputs, blocker / "out")), "cannot create the output folder")
    if os.geteuid() == 0:
        pytest.skip("running as root: a read-only folder would still be writable")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        assert_clean_error(lowsim(*gen_args(cli_inputs, locked / "out")), "cannot create the output folder")
    finally:
        locked.chmod(0o700)


def _limit_file_size() -> None:
    """A 'full disk': no file may grow past 20 kB (every sample PNG here is bigger)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))


def test_cli_full_disk_is_a_clean_error(cli_inputs: dict[str, Path], tmp_path: Path) -> None:
    args = gen_args(cli_inputs, tmp_path / "out", "--workers", "2")
    args[args.index("--size") + 1] = "160"
    result = lowsim(*args, preexec_fn=_limit_file_size)
    assert_clean_error(result, "File too large")
    # ... and after freeing space, the same command completes the run
    assert lowsim(*args).returncode == 0
    assert_dataset_consistent(tmp_path / "out", tmp_path / "out.parquet", 4)


@pytest.mark.slow
def test_cli_kill_9_then_resume(cli_inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = gen_args(cli_inputs, out, "--workers", "2", n="240")  # long enough to be caught mid-run
    proc = subprocess.Popen([str(LOWSIM), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while len(list((out / ".lowsim-journal").glob("part-*.parquet"))) < 2:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    os.kill(proc.pid, signal.SIGKILL)  # the driver only: its workers must not outlive it
    proc.wait()
    time.sleep(0.5)
    for pid in workers:
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().split()[2] == "Z", f"worker {pid} outlived its parent"
    with pytest.raises(LowsimError):
        read_manifest(out.parent / "out.parquet")  # the manifest appears only at the end
    resumed = lowsim(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert "made now" in resumed.stdout and "(240 made now" not in resumed.stdout
    frame = assert_dataset_consistent(out, out.parent / "out.parquet", 240)
    for key in frame["key"]:
        _, dark, row = G.regenerate(out.parent / "out.parquet", key)
        assert np.array_equal(dark, read_image(out / row["dark_file_name"]))


def test_cli_resume_with_different_seed_is_refused(cli_inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert lowsim(*gen_args(cli_inputs, out, "--seed", "1")).returncode == 0
    assert_clean_error(lowsim(*gen_args(cli_inputs, out, "--seed", "2")), "different settings.*seed")


def test_cli_regenerate(cli_inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert lowsim(*gen_args(cli_inputs, out)).returncode == 0
    manifest = str(tmp_path / "out.parquet")
    result = lowsim("regenerate", manifest, "--key", "00000002", "--out", str(tmp_path / "r.png"),
                    "--clean-out", str(tmp_path / "c.png"))
    assert result.returncode == 0, result.stderr
    [dark_file] = out.glob("*/dark/00000002.png")  # in its split's folder
    [clean_file] = out.glob("*/clean/00000002.png")
    assert np.array_equal(read_image(tmp_path / "r.png"), read_image(dark_file))
    assert np.array_equal(read_image(tmp_path / "c.png"), read_image(clean_file))
    assert_clean_error(lowsim("regenerate", manifest, "--key", "nope", "--out", str(tmp_path / "x.png")),
                       "no sample with key")
    assert_clean_error(lowsim("regenerate", str(tmp_path / "none.parquet"), "--key", "1", "--out",
                              str(tmp_path / "x.png")), "manifest not found")


def test_cli_preview(cli_inputs: dict[str, Path], tmp_path: Path) -> None:
    photo = cli_inputs["src"] / "a.png"
    out = tmp_path / "preview.png"
    result = lowsim("preview", "--src", str(photo), "--params", str(cli_inputs["params"]), "--out", str(out))
    assert result.returncode == 0, result.stderr
    strip = read_image(out)
    assert strip.shape[1] > 1.5 * strip.shape[0]  # three rows (the p10/p50/p90 darkness draws) of six panels
    assert_clean_error(lowsim("preview", "--src", str(tmp_path / "none.png"), "--params",
                              str(cli_inputs["params"]), "--out", str(out)), "file not found")
    assert_clean_error(lowsim("preview", "--src", str(photo), "--params", str(cli_inputs["params"]),
                              "--out", str(tmp_path / "p.jpg")), "must be a .png")
