"""The Python API (lowsim.api, transfer.enhancer): the command line's twin, in a few calls."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import lowsim
import transfer
from lowsim.imageio import read_image, write_png
from lowsim.params import IspParams
from lowsim.project import calibrated_pairs
from transfer.checkpoint import save_checkpoint
from transfer.cli import main as transfer_main


HEAVY = ('numpy', 'scipy', 'pandas', 'typer', 'matplotlib', 'cv2', 'torch')


def test_import_lowsim_is_cheap_and_torch_free() -> None:
    code = (f"import sys, lowsim; print(sorted(m for m in {HEAVY} if m in sys.modules)); "
            f"lowsim.load_params('lol').sample(2, seed=0); print(sorted(m for m in {HEAVY} if m in sys.modules)); "
            "lowsim.generate; lowsim.degrade; lowsim.calibrate; print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:3] == ["[]", "['numpy']", "False"]


def test_load_params_sample_is_seeded() -> None:
    params = lowsim.load_params("lol")
    first, again, other = params.sample(3, seed=4), params.sample(3, seed=4), params.sample(3, seed=5)
    assert all(isinstance(p, IspParams) for p in first) and len(first) == 3
    assert [p.to_dict() for p in first] == [p.to_dict() for p in again]
    assert first[0].to_dict() != other[0].to_dict()
    assert params.model.endswith("v2") and "exposure" in params.names


@pytest.mark.parametrize("dtype, top", [(np.uint8, 255), (np.uint16, 65535), (np.float32, 1.0)])
def test_degrade_keeps_dtype_and_shape_and_is_seeded(dtype: type, top: float) -> None:
    rng = np.random.default_rng(0)
    clean = (rng.random((37, 45, 3)) * top).astype(dtype)
    draw = lowsim.load_params("lol").sample(1, seed=0)[0]
    dark = lowsim.degrade(clean, draw, seed=1)
    assert dark.dtype == clean.dtype and dark.shape == clean.shape
    assert np.array_equal(dark, lowsim.degrade(clean, draw, seed=1))
    assert not np.array_equal(dark, lowsim.degrade(clean, draw, seed=2))  # the noise follows the seed
    assert dark.astype(np.float64).mean() < 0.5 * clean.astype(np.float64).mean()
    from_name = lowsim.degrade(clean, "lol", seed=3)  # one set drawn from the shipped params
    assert from_name.dtype == clean.dtype


def test_degrade_refuses_a_bad_image() -> None:
    with pytest.raises(lowsim.errors.LowsimError, match="expected an .H, W, 3. or .H, W. image"):
        lowsim.degrade(np.zeros((4, 4, 5), np.uint8), "lol")


def test_generate_mirrors_the_command(tmp_path: Path, clean_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = lowsim.generate(clean_dir / "set5", 4, size=32, params="lol-v1", seed=3)
    assert result.out == Path("data/set5") and result.manifest == Path("data/set5/manifest.parquet")
    rows = pd.read_parquet(result.manifest)
    assert len(rows) == 4 and set(rows.width) == {32} and set(rows.model) == {"lowsim.degrade/v1"}
    from lowsim.generate import regenerate

    key = rows.key.iloc[0]
    _, dark, _ = regenerate(result.manifest, key)
    assert np.array_equal(dark, read_image(result.out / rows.dark_file_name.iloc[0]))


def test_calibrate_mirrors_the_command(tmp_path: Path, lol_dev: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pairs = tmp_path / "three"
    for kind in ("low", "high"):
        (pairs / kind).mkdir(parents=True)
        for name in ("101", "103", "104"):
            shutil.copy(lol_dev / kind / f"{name}.png", pairs / kind)
    monkeypatch.chdir(tmp_path)
    result = lowsim.calibrate(pairs, method="joint", workers=1, report=False)
    assert result.params_path == Path("params/three.json") and result.params_path.is_file()
    assert not Path("params/three.png").exists()
    assert calibrated_pairs(result.params_path) == (pairs.resolve(), "auto")
    assert lowsim.load_params(result.params_path).sample(1, seed=0)[0].model.endswith("v1")


# ---- transfer.load_enhancer ----------------------------------------------------------------------------------

@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = transfer.create_model("sid_unet", width=4, input_kind="srgb")
    save_checkpoint(tmp_path / "run" / "best", model, {"model": "sid_unet", "model_config": model.config,
                                                       "input_kind": "srgb"})
    return tmp_path / "run"


@pytest.mark.parametrize("dtype, top", [(np.uint8, 255), (np.uint16, 65535)])
def test_enhancer_is_bit_identical_to_transfer_enhance(tmp_path: Path, run_dir: Path, dtype: type,
                                                        top: int) -> None:
    rng = np.random.default_rng(1)
    image = (rng.random((45, 77, 3)) * 0.2 * top).astype(dtype)  # not a multiple of 32: padded
    write_png(tmp_path / "in" / "x.png", image)
    with pytest.raises(SystemExit) as stop:
        transfer_main(["enhance", str(tmp_path / "in"), "--checkpoint", str(run_dir), "--out",
                       str(tmp_path / "out")])  # a folder, as users pass it
    assert stop.value.code in (0, None)
    from_file = read_image(tmp_path / "out" / "x.png")
    from_array = transfer.load_enhancer(run_dir).enhance(image)
    assert from_array.dtype == image.dtype and from_array.shape == image.shape
    assert np.array_equal(from_array, from_file)


def test_enhancer_takes_floats_tensors_and_tiles(run_dir: Path) -> None:
    rng = np.random.default_rng(2)
    image = rng.random((70, 90, 3)).astype(np.float32) * 0.2
    whole = transfer.load_enhancer(run_dir).enhance(image)
    tiled = transfer.load_enhancer(run_dir, tile=32).enhance(image)
    assert whole.dtype == np.float32 and whole.shape == image.shape and tiled.shape == image.shape
    assert np.abs(whole - tiled).mean() < 0.05  # tiles blend into the same picture
    as64 = transfer.load_enhancer(run_dir).enhance(image.astype(np.float64))
    assert as64.dtype == np.float64
    tensor = torch.from_numpy(image).permute(2, 0, 1)
    out = transfer.load_enhancer(run_dir).enhance(tensor[None])
    assert isinstance(out, torch.Tensor) and out.shape == (1, 3, 70, 90) and out.dtype == torch.float32
    assert np.allclose(out[0].permute(1, 2, 0).numpy(), whole)


def test_enhancer_refuses_a_wrong_shape(run_dir: Path) -> None:
    with pytest.raises(transfer.errors.TransferError, match=r"takes \(H, W, 3\) RGB images; got shape \(8, 8\)"):
        transfer.load_enhancer(run_dir).enhance(np.zeros((8, 8), np.uint8))
