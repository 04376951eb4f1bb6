"""The raw-frame reader on real files (Kodak KDC, Blackmagic DNG, the MCR stack, truncated NEFs) and the pair checks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lowsim.errors import LowsimError
from lowsim.raw.dng import write_dng
from lowsim.raw.read import check_compatible, exposure_from_name, exposure_ratio, read_raw_frame, site_of_colour


@pytest.fixture(scope="module")
def raw_real(shared_data: Path) -> Path:
    return shared_data / "raw-real"


def test_kodak_kdc(raw_real):
    frame = read_raw_frame(raw_real / "kodak_dc50.kdc")
    assert frame.mosaic.shape == (512, 768) and frame.mosaic.dtype == np.uint16
    assert frame.pattern == "GRBG" and frame.black == (0.0,) * 4 and frame.white == 16383
    assert frame.exposure == pytest.approx(1 / 230, rel=1e-3)
    assert "DC50" in frame.camera


def test_blackmagic_dng(raw_real):
    frame = read_raw_frame(raw_real / "blackmagic_pocket4k.dng")
    assert frame.mosaic.shape == (2176, 4128) and frame.pattern == "RGGB"
    assert frame.black == (512.0,) * 4 and frame.white == 65535
    assert frame.exposure is None  # the file records none; a pair of such frames needs a ratio
    assert frame.camera == "Blackmagic Pocket Cinema Camera 4K"


def test_mcr_stack_levels_and_exposure_ratio_from_metadata(raw_real):
    files = sorted((raw_real / "mcr-exposure-stack").glob("*.dng"))
    frames = [read_raw_frame(f) for f in files]
    assert len(frames) == 8
    assert {(f.pattern, f.black, f.white, f.mosaic.shape) for f in frames} == {("RGGB", (0.0,) * 4, 255, (1024, 1280))}
    check_compatible(frames[0], frames[-1])
    assert exposure_ratio(frames[0], frames[-1]) == pytest.approx(96.0)


@pytest.mark.parametrize("index", [1, 2, 3, 4])
def test_truncated_nef_is_one_clean_line(raw_real, index):
    path = raw_real / "truncated" / f"Issue_247-{index}.nef"
    with pytest.raises(LowsimError) as err:
        read_raw_frame(path)
    message = str(err.value)
    assert message.startswith(str(path)) and "not a readable camera raw file" in message and "\n" not in message


def _dng(tmp_path: Path, name: str, shape=(32, 48), **kwargs) -> Path:
    return write_dng(tmp_path / name, np.full(shape, 600, np.uint16), **kwargs)


@pytest.mark.parametrize("kwargs, problem", [
    ({"camera": "other camera"}, "different cameras"),
    ({"shape": (32, 64)}, "different sizes"),
    ({"black": 400}, "different black levels"),
    ({"pattern": "GRBG"}, "different colour filters"),
    ({"white": 4095}, "different white levels"),
])
def test_mismatched_pairs_are_refused(tmp_path, kwargs, problem):
    dark = read_raw_frame(_dng(tmp_path, "dark.dng", exposure=0.1))
    shape = kwargs.pop("shape", (32, 48))
    bright = read_raw_frame(_dng(tmp_path, "bright.dng", shape=shape, exposure=10.0, **kwargs))
    with pytest.raises(LowsimError, match=problem):
        check_compatible(dark, bright)


def test_exposure_ratio_needs_times_or_a_ratio_and_must_exceed_one(tmp_path):
    dark, bright = read_raw_frame(_dng(tmp_path, "a.dng")), read_raw_frame(_dng(tmp_path, "b.dng", exposure=1.0))
    with pytest.raises(LowsimError, match="no exposure time"):
        exposure_ratio(dark, bright)
    assert exposure_ratio(dark, bright, 250.0) == 250.0
    with pytest.raises(LowsimError, match="not above 1"):
        exposure_ratio(dark, bright, 1.0)
    short, long = read_raw_frame(_dng(tmp_path, "s.dng", exposure=2.0)), bright
    with pytest.raises(LowsimError, match="not above 1"):
        exposure_ratio(short, long)


def test_exposure_from_sid_and_mcr_names():
    assert exposure_from_name(Path("00001_00_0.04s.ARW")) == 0.04
    assert exposure_from_name(Path("MCR_C00400_0x007f_0.00391s.dng")) == 0.00391
    assert exposure_from_name(Path("IMG_0001.dng")) is None


def test_site_of_colour_for_each_bayer_pattern():
    assert site_of_colour("RGGB") == {"r": (0, 0), "g1": (0, 1), "b": (1, 1), "g2": (1, 0)}
    assert site_of_colour("GRBG") == {"r": (0, 1), "g1": (0, 0), "b": (1, 0), "g2": (1, 1)}


def test_not_a_raw_file_and_missing_file(tmp_path):
    junk = tmp_path / "junk.dng"
    junk.write_bytes(b"not a raw file at all")
    with pytest.raises(LowsimError, match="not a readable camera raw file"):
        read_raw_frame(junk)
    with pytest.raises(LowsimError, match="not found"):
        read_raw_frame(tmp_path / "missing.dng")
