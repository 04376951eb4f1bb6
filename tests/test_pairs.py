"""Tests for lowsim.pairs: LOL, SID and CSV layouts, exposure ratios, read_pair, and every bad input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lowsim.errors import LowsimError
from lowsim.imageio import read_image, write_png
from lowsim.pairs import (SID_RATIO_CAP, Pair, detect_layout, find_pairs, parse_sid_name, read_pair,
                          sid_exposure_ratio)
from rawfixtures import make_sid_tree, random_bayer, write_bayer_dng


def tiny(value: int, height: int = 8, width: int = 12) -> np.ndarray:
    """A flat uint8 RGB image."""
    return np.full((height, width, 3), value, np.uint8)


def make_lol(root: Path, dark: list[str], bright: list[str], bright_dir: str = "high") -> Path:
    """A LOL-style folder with the given file names (flat 8x12 PNGs, dark=20, bright=200)."""
    for name in dark:
        write_png(root / "low" / name, tiny(20))
    for name in bright:
        write_png(root / bright_dir / name, tiny(200))
    (root / "low").mkdir(parents=True, exist_ok=True)
    (root / bright_dir).mkdir(parents=True, exist_ok=True)
    return root


# ---------------------------------------------------------------------------------------------- LOL

def test_real_lol_dev_pairs(lol_dev: Path) -> None:
    pairs = find_pairs(lol_dev)
    assert len(pairs) == 240
    assert [p.name for p in pairs] == sorted(p.name for p in pairs)
    assert len({p.name for p in pairs}) == 240
    assert all(p.dark.stem == p.bright.stem == p.name and p.ratio is None for p in pairs)
    for pair in pairs[:3]:
        dark, bright = read_pair(pair)
        assert dark.shape == bright.shape == (400, 600, 3)
        assert dark.dtype == bright.dtype == np.float32
        assert 0.0 <= dark.min() and bright.max() <= 1.0
        assert dark.mean() < bright.mean()


def test_lol_matches_by_stem_and_accepts_normal_folder(tmp_path: Path) -> None:
    make_lol(tmp_path, ["1.png", "2.png", "10.png"], ["1.png", "2.jpg.png", "10.png", "2.png"],
             bright_dir="normal")
    with pytest.warns(UserWarning, match="1 bright image has no dark partner: 2.jpg.png"):
        pairs = find_pairs(tmp_path, layout="auto", strict=False)
    assert [p.name for p in pairs] == ["1", "10", "2"]
    assert pairs[2] == Pair("2", tmp_path / "low" / "2.png", tmp_path / "normal" / "2.png", None)
    dark, bright = read_pair(pairs[0])
    np.testing.assert_allclose(dark, 20 / 255)
    np.testing.assert_allclose(bright, 200 / 255)


def test_lol_unmatched_names_raise_listing_them(tmp_path: Path) -> None:
    make_lol(tmp_path, ["a.png", "b.png", "c.png", "d.png"], ["a.png", "z.png"])
    with pytest.raises(LowsimError) as err:
        find_pairs(tmp_path, layout="lol")
    message = str(err.value)
    assert "3 dark images have no bright partner: b.png, c.png, d.png" in message
    assert "1 bright image has no dark partner: z.png" in message
    assert str(tmp_path) in message


def test_lol_unmatched_skipped_with_warning_when_not_strict(tmp_path: Path) -> None:
    make_lol(tmp_path, ["a.png", "b.png"], ["a.png"])
    with pytest.warns(UserWarning, match="b.png"):
        pairs = find_pairs(tmp_path, strict=False)
    assert [p.name for p in pairs] == ["a"]


def test_long_unmatched_lists_are_shortened(tmp_path: Path) -> None:
    make_lol(tmp_path, [f"{i:02d}.png" for i in range(9)], ["99.png"])
    with pytest.raises(LowsimError, match=r"9 dark images have no bright partner: 00.png, 01.png, "
                                          r"02.png, 03.png, 04.png, …"):
        find_pairs(tmp_path)


def test_no_pair_matched_is_an_error_even_when_not_strict(tmp_path: Path) -> None:
    make_lol(tmp_path, ["a.png"], ["b.png"])
    with pytest.raises(LowsimError, match="no bright partner: a.png"):
        find_pairs(tmp_path, strict=False)


def test_lol_empty_low_folder(tmp_path: Path) -> None:
    make_lol(tmp_path, [], ["a.png"])
    with pytest.raises(LowsimError, match="no images in low/"):
        find_pairs(tmp_path)


def test_lol_ambiguous_stems(tmp_path: Path) -> None:
    make_lol(tmp_path, ["a.png"], ["a.png"])
    (tmp_path / "low" / "a.bmp").write_bytes((tmp_path / "low" / "a.png").read_bytes())
    with pytest.raises(LowsimError, match="two images share the name 'a'"):
        find_pairs(tmp_path)


def test_pair_of_different_sizes(tmp_path: Path) -> None:
    write_png(tmp_path / "low" / "a.png", tiny(20, 8, 12))
    write_png(tmp_path / "high" / "a.png", tiny(200, 12, 8))
    (pair,) = find_pairs(tmp_path)
    with pytest.raises(LowsimError, match=r"dark image is 12x8 but bright image .*a.png is 8x12"):
        read_pair(pair)


def test_read_pair_surfaces_a_corrupt_file(tmp_path: Path) -> None:
    make_lol(tmp_path, ["a.png"], ["a.png"])
    (tmp_path / "high" / "a.png").write_bytes(b"garbage")
    (pair,) = find_pairs(tmp_path)
    with pytest.raises(LowsimError, match="high/a.png: not a readable image"):
        read_pair(pair)


def test_16bit_pair_scaled_by_65535(tmp_path: Path) -> None:
    write_png(tmp_path / "low" / "a.png", np.full((4, 6, 3), 65535 // 5, np.uint16))
    write_png(tmp_path / "high" / "a.png", tiny(255, 4, 6))
    dark, bright = read_pair(find_pairs(tmp_path)[0])
    np.testing.assert_allclose(dark, (65535 // 5) / 65535, rtol=1e-6)
    np.testing.assert_allclose(bright, 1.0)


# ---------------------------------------------------------------------------------------------- folders

def test_missing_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(LowsimError, match="pairs folder not found") as err:
        find_pairs(tmp_path / "absent")
    assert "absent" in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(LowsimError, match="pairs folder is empty"):
        find_pairs(tmp_path / "empty")


def test_unrecognised_layout(tmp_path: Path) -> None:
    write_png(tmp_path / "photos" / "a.png", tiny(1))
    with pytest.raises(LowsimError, match="cannot tell the pairs layout"):
        find_pairs(tmp_path)
    with pytest.raises(LowsimError, match="unknown pairs layout 'sidd'"):
        find_pairs(tmp_path, layout="sidd")
    with pytest.raises(LowsimError, match="expected a LOL layout"):
        find_pairs(tmp_path, layout="lol")
    with pytest.raises(LowsimError, match="expected a SID layout"):
        find_pairs(tmp_path, layout="sid")


# ---------------------------------------------------------------------------------------------- SID

def test_sid_names_and_ratios() -> None:
    assert parse_sid_name("00001_00_0.04s.ARW") == ("00001", 0.04)
    assert parse_sid_name(Path("Sony/long/00001_00_10s.ARW")) == ("00001", 10.0)
    assert sid_exposure_ratio("00001_00_0.1s.ARW", "00001_00_10s.ARW") == pytest.approx(100.0)
    assert sid_exposure_ratio("00001_00_0.04s.ARW", "00001_00_10s.ARW") == pytest.approx(250.0)
    assert sid_exposure_ratio("00001_00_0.033s.ARW", "00001_00_10s.ARW") == SID_RATIO_CAP == 300.0
    with pytest.raises(LowsimError, match="not a SID file name") as err:
        parse_sid_name("IMG_1234.ARW")
    assert "IMG_1234.ARW" in str(err.value)


def test_sid_tree_pairs_every_short_with_its_long(tmp_path: Path) -> None:
    make_sid_tree(tmp_path, n_scenes=3, short_exposures=(0.1, 0.04, 0.033))
    assert detect_layout(tmp_path) == "sid"
    pairs = find_pairs(tmp_path)
    assert len(pairs) == 9
    by_name = {p.name: p for p in pairs}
    assert set(by_name) == {f"{scene:05d}_{shot:02d}_{sec}s" for scene in (1, 2, 3)
                            for shot, sec in enumerate(("0.1", "0.04", "0.033"))}
    assert by_name["00002_00_0.1s"].ratio == pytest.approx(100.0)
    assert by_name["00002_01_0.04s"].ratio == pytest.approx(250.0)
    assert by_name["00002_02_0.033s"].ratio == 300.0
    assert all(p.bright.name == f"{p.name[:5]}_00_10s.ARW" for p in pairs)
    assert all(p.dark.parent.name == "short" and p.bright.parent.name == "long" for p in pairs)


def test_sid_read_pair_decodes_short_like_long_without_ratio(tmp_path: Path) -> None:
    make_sid_tree(tmp_path, n_scenes=1, height=32, width=48)
    pair = find_pairs(tmp_path)[0]
    dark, bright = read_pair(pair)
    assert dark.shape == bright.shape == (32, 48, 3) and dark.dtype == np.float32
    np.testing.assert_array_equal(dark, read_image(pair.dark).astype(np.float32) / np.float32(65535))
    assert dark.mean() < bright.mean()


def test_sid_list_files(tmp_path: Path) -> None:
    lists = make_sid_tree(tmp_path, n_scenes=3, test_scenes=1)
    train = find_pairs(tmp_path, layout="sid", list_file="train")
    test = find_pairs(tmp_path, list_file="test")
    assert {p.dark.name for p in train} == {Path(s).name for s, _ in lists["train"]}
    assert {p.dark.name for p in test} == {Path(s).name for s, _ in lists["test"]}
    assert len(train) == 4 and len(test) == 2
    assert {p.ratio for p in test} == {250.0, 300.0}
    explicit = find_pairs(tmp_path, list_file=tmp_path / "Sony_test_list.txt")
    assert explicit == test
    assert test == [p for p in find_pairs(tmp_path) if p.name.startswith("00003")]  # same Pair either way
    with pytest.raises(LowsimError, match="no SID list file for split 'val'"):
        find_pairs(tmp_path, list_file="val")


def test_sid_list_naming_a_missing_file(tmp_path: Path) -> None:
    make_sid_tree(tmp_path, n_scenes=1)
    (tmp_path / "Sony_test_list.txt").write_text(
        "./Sony/short/00009_00_0.1s.ARW ./Sony/long/00009_00_10s.ARW ISO200 F8\n")
    with pytest.raises(LowsimError, match="2 files named in the list are missing") as err:
        find_pairs(tmp_path, list_file="test")
    assert "Sony_test_list.txt" in str(err.value)


def test_sid_short_without_long(tmp_path: Path) -> None:
    make_sid_tree(tmp_path, n_scenes=2)
    (tmp_path / "Sony" / "long" / "00002_00_10s.ARW").unlink()
    with pytest.raises(LowsimError, match="2 dark images have no bright partner: 00002_00_0.04s.ARW, "
                                          "00002_01_0.033s.ARW"):
        find_pairs(tmp_path)
    with pytest.warns(UserWarning):
        assert len(find_pairs(tmp_path, strict=False)) == 2


def test_sid_bad_file_name(tmp_path: Path) -> None:
    make_sid_tree(tmp_path, n_scenes=1)
    write_bayer_dng(tmp_path / "Sony" / "short" / "DSC0001.ARW",
                    random_bayer(np.random.default_rng(np.random.SeedSequence(1)), 8, 8))
    with pytest.raises(LowsimError, match="DSC0001.ARW: not a SID file name"):
        find_pairs(tmp_path)


def test_sid_root_may_be_the_camera_folder_and_cameras_get_prefixes(tmp_path: Path) -> None:
    make_sid_tree(tmp_path, n_scenes=1)
    assert [p.name for p in find_pairs(tmp_path / "Sony")] == ["00001_00_0.04s", "00001_01_0.033s"]
    make_sid_tree(tmp_path, n_scenes=1, camera="Fuji", ext=".RAF", short_exposures=(0.1,))
    names = [p.name for p in find_pairs(tmp_path)]
    assert names == ["fuji_00001_00_0.1s", "sony_00001_00_0.04s", "sony_00001_01_0.033s"]


def test_sid_unreadable_raw_in_pair(tmp_path: Path) -> None:
    make_sid_tree(tmp_path, n_scenes=1)
    (tmp_path / "Sony" / "long" / "00001_00_10s.ARW").write_bytes(b"broken" * 100)
    pair = find_pairs(tmp_path)[0]
    with pytest.raises(LowsimError, match="00001_00_10s.ARW: rawpy cannot read"):
        read_pair(pair)


# ---------------------------------------------------------------------------------------------- CSV

def make_csv_pairs(root: Path, text: str) -> Path:
    """Images d1/d2 (dark) and b1/b2 (bright) under root/img plus a CSV with the given text."""
    for name, value in (("d1", 10), ("d2", 30), ("b1", 100), ("b2", 250)):
        write_png(root / "img" / f"{name}.png", tiny(value))
    (root / "pairs.csv").write_text(text)
    return root / "pairs.csv"


def test_csv_with_names_and_ratio(tmp_path: Path) -> None:
    csv_path = make_csv_pairs(tmp_path, "name,dark,bright,ratio\n"
                                        "second,img/d2.png,img/b2.png,8\nfirst,img/d1.png,img/b1.png,\n")
    pairs = find_pairs(csv_path)
    assert pairs == [Pair("first", tmp_path / "img/d1.png", tmp_path / "img/b1.png", None),
                     Pair("second", tmp_path / "img/d2.png", tmp_path / "img/b2.png", 8.0)]
    assert find_pairs(tmp_path) == pairs  # a folder holding one CSV is detected too
    dark, bright = read_pair(pairs[1])
    np.testing.assert_allclose(dark, 30 / 255)
    np.testing.assert_allclose(bright, 250 / 255)


def test_csv_without_name_uses_dark_stem(tmp_path: Path) -> None:
    csv_path = make_csv_pairs(tmp_path, "dark,bright\nimg/d1.png,img/b1.png\nimg/d2.png,img/b2.png\n")
    assert [p.name for p in find_pairs(csv_path, layout="csv")] == ["d1", "d2"]


def test_csv_missing_columns(tmp_path: Path) -> None:
    csv_path = make_csv_pairs(tmp_path, "low,bright\nimg/d1.png,img/b1.png\n")
    with pytest.raises(LowsimError, match="lacks column.s. dark; expected columns dark, bright") as err:
        find_pairs(csv_path)
    assert "pairs.csv" in str(err.value)


def test_csv_pointing_to_missing_files(tmp_path: Path) -> None:
    csv_path = make_csv_pairs(tmp_path, "dark,bright\nimg/d1.png,img/nope.png\n")
    with pytest.raises(LowsimError, match="1 files named in the CSV are missing: .*nope.png"):
        find_pairs(csv_path)


def test_csv_empty_and_bad_ratio_and_duplicate_names(tmp_path: Path) -> None:
    csv_path = make_csv_pairs(tmp_path, "dark,bright\n")
    with pytest.raises(LowsimError, match="no rows"):
        find_pairs(csv_path)
    csv_path.write_text("dark,bright,ratio\nimg/d1.png,img/b1.png,fast\n")
    with pytest.raises(LowsimError, match="row 2: ratio 'fast' is not a number"):
        find_pairs(csv_path)
    csv_path.write_text("name,dark,bright\nx,img/d1.png,img/b1.png\nx,img/d2.png,img/b2.png\n")
    with pytest.raises(LowsimError, match="pair names are not unique: x"):
        find_pairs(csv_path)
