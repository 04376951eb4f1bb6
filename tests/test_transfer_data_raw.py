"""transfer on `lowsim generate --output raw` datasets: manifest rows with their ratio and levels, packed raw
decoding, `transfer pretrain --input raw` and `transfer enhance` of a raw file with --ratio (tiny budgets)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from lowsim.generate import generate
from lowsim.params import RawParams
from lowsim.raw.dng import write_dng
from lowsim.raw.noise import noisy_codes
from transfer.data import decode_item, load_manifest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def raw_manifest(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rawset")
    rng = np.random.default_rng(0)
    for i in range(4):
        cv2.imwrite(str(root / f"p{i}.png"), cv2.GaussianBlur(rng.integers(0, 256, (80, 80, 3), np.uint8), (0, 0), 2))
    result = generate(src=root, n=8, params=REPO / "src" / "lowsim" / "data" / "params" / "sony_a7s2.json", out=root / "ds",
                      manifest=root / "m.parquet", size=32, seed=0, progress=False,
                      split_fractions="train=0.75,val=0.25")
    return result.manifest


def test_manifest_rows_carry_ratio_and_levels_and_decode_as_packed_raw(raw_manifest: Path):
    items = load_manifest(raw_manifest, None)
    assert len(items) == 8 and all(i.levels == (512.0, 16383.0) and i.ratio > 1 for i in items)
    decoded = decode_item(items[0], "raw")
    assert decoded.dark.shape == (16, 16, 4) and decoded.bright.shape == (32, 32, 3)
    codes = np.load(items[0].dark).astype(np.float64)
    expected = np.clip((codes - 512) / (16383 - 512), 0, 1)
    np.testing.assert_allclose(decoded.dark / 65535.0, expected, atol=1 / 65535)
    assert decoded.ratio == items[0].ratio


def _transfer(args: list[str]) -> int:
    from transfer.cli import main

    try:
        main(args)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def test_pretrain_raw_then_enhance_a_raw_file_with_a_ratio(raw_manifest: Path, tmp_path: Path, capsys):
    run = tmp_path / "run"
    assert _transfer(["pretrain", "--manifest", str(raw_manifest), "--run-dir", str(run), "--iters", "2",
                      "--patch", "32", "--batch", "2", "--width", "4", "--quiet"]) == 2
    assert "holds packed raw dark frames; pretrain it with --input raw" in capsys.readouterr().err
    assert _transfer(["pretrain", "--manifest", str(raw_manifest), "--run-dir", str(run), "--input", "raw",
                      "--iters", "2", "--patch", "16", "--batch", "2", "--width", "4", "--quiet"]) == 0
    truth = RawParams(system_gain=1.0, read_noise=3.0)
    dark = noisy_codes(np.full((48, 64), 30.0, np.float32), truth, np.random.default_rng(1))
    write_dng(tmp_path / "in" / "dark.dng", dark, exposure=0.1)
    assert _transfer(["enhance", "--checkpoint", str(run), str(tmp_path / "in" / "dark.dng"), "--ratio", "100",
                      "--out", str(tmp_path / "out")]) == 0
    assert cv2.imread(str(tmp_path / "out" / "dark.png")).shape == (48, 64, 3)


def test_fine_tune_on_real_raw_pairs_of_the_mcr_stack(raw_manifest: Path, tmp_path: Path, shared_data: Path):
    """The raw chain's last link on real files: a raw-pretrained model fine-tuned on MCR-stack pairs (real DNGs,
    ratio from each pair's exposure times) and enhancing one of them (tiny budget: plumbing, not quality)."""
    stack = sorted((shared_data / "raw-real" / "mcr-exposure-stack").glob("*.dng"))
    pairs = tmp_path / "mcr.csv"
    pairs.write_text("name,dark,bright,ratio\n" + "".join(
        f"p{i},{stack[i]},{stack[i + 2]},4\n" for i in range(2)))
    pre, tuned = tmp_path / "pre", tmp_path / "tuned"
    assert _transfer(["pretrain", "--manifest", str(raw_manifest), "--run-dir", str(pre), "--input", "raw",
                      "--iters", "1", "--patch", "16", "--batch", "2", "--width", "4", "--quiet"]) == 0
    assert _transfer(["finetune", "--checkpoint", str(pre), "--pairs", str(pairs), "--layout", "csv",
                      "--frac", "1.0", "--no-val-split", "--run-dir", str(tuned), "--iters", "2", "--patch", "32",
                      "--batch", "2", "--quiet"]) == 0
    assert (tuned / "last" / "model.safetensors").is_file()
    assert _transfer(["enhance", "--checkpoint", str(tuned), str(stack[0]), "--ratio", "4",
                      "--out", str(tmp_path / "out")]) == 0
    assert cv2.imread(str(tmp_path / "out" / (stack[0].stem + ".png"))) is not None
