"""Reading camera raw frames as photon-transfer input: the mosaic in DN with its black and white levels, colour
filter pattern, exposure time and camera; and the checks that two frames can form a raw pair.

Metadata comes from rawpy/LibRaw first (levels, pattern, `other.shutter_speed`), then the TIFF/EXIF tags
(tifffile, then Pillow) for the camera and an exposure LibRaw did not report, then a SID file name
(`00001_00_0.04s.ARW`) or an MCR-style name ending in `_<seconds>s`. Every problem raises a LowsimError naming
the file.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lowsim.errors import LowsimError

SITES = ((0, 0), (0, 1), (1, 0), (1, 1))  # the 2x2 colour-filter cell in raster order
_SECONDS_IN_NAME = re.compile(r"_(?P<seconds>\d+(?:\.\d+)?)s$")
_EXPOSURE_TAG, _MAKE_TAG, _MODEL_TAG, _UNIQUE_MODEL_TAG, _EXIF_IFD = 33434, 271, 272, 50708, 0x8769


@dataclass(frozen=True)
class RawFrame:
    """One raw frame: its mosaic as stored (DN) and what photon transfer needs to know about it."""

    path: Path
    mosaic: np.ndarray  # (H, W) uint16, the visible area cropped to even size
    pattern: str  # colours of the 2x2 cell in raster order, e.g. 'RGGB'
    black: tuple[float, float, float, float]  # black level of each cell site, raster order
    white: float
    exposure: float | None  # seconds; None when neither metadata nor name says
    camera: str | None  # make and model when the file says

    @property
    def site_black(self) -> np.ndarray:
        """Black levels as a (2, 2) array over the cell."""
        return np.asarray(self.black, dtype=np.float64).reshape(2, 2)

    def signal(self) -> np.ndarray:
        """The mosaic minus each site's black level, float64 DN (negative values kept: they are noise)."""
        out = self.mosaic.astype(np.float64)
        for (row, col), black in zip(SITES, self.black):
            out[row::2, col::2] -= black
        return out

    def describe(self) -> str:
        """One line: size, pattern, levels, exposure, camera."""
        exposure = "unknown" if self.exposure is None else f"{self.exposure:g} s"
        return (f"{self.mosaic.shape[1]}x{self.mosaic.shape[0]} {self.pattern}, black "
                f"{'/'.join(f'{b:g}' for b in self.black)}, white {self.white:g}, exposure {exposure}, "
                f"camera {self.camera or 'unknown'}")


def _libraw_message(err: Exception) -> str:
    """LibRaw's error text without the bytes repr."""
    text = err.args[0] if err.args else ""
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _bayer_pattern(raw_pattern: np.ndarray | None, color_desc: bytes, path: Path) -> str:
    """'RGGB', 'GRBG', … from rawpy's pattern indices and colour letters; refuses non-Bayer sensors."""
    if raw_pattern is None or np.asarray(raw_pattern).shape != (2, 2):
        shape = None if raw_pattern is None else np.asarray(raw_pattern).shape
        raise LowsimError(f"not a 2x2 Bayer sensor (colour filter pattern {shape})", path)
    letters = "".join(color_desc.decode("ascii", "replace")[int(i)] for i in np.asarray(raw_pattern).ravel())
    if sorted(letters) != ["B", "G", "G", "R"]:
        raise LowsimError(f"unsupported colour filter {letters}, expected a Bayer RGGB-family pattern", path)
    return letters


def _tag_metadata(path: Path) -> tuple[float | None, str | None]:
    """(exposure seconds, 'Make Model') from the file's TIFF/EXIF tags, None where absent or unreadable."""
    tags: dict[int, object] = {}
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            page_tags = tif.pages[0].tags
            tags = {t.code: t.value for t in page_tags}
            exif = tags.get(34665)
            if isinstance(exif, dict) and "ExposureTime" in exif:
                tags[_EXPOSURE_TAG] = exif["ExposureTime"]
    except Exception:  # noqa: BLE001 - not a TIFF container (Kodak KDC, Nikon NEF with a JPEG head): try Pillow
        try:
            from PIL import Image

            with warnings.catch_warnings(), Image.open(path) as img:
                warnings.simplefilter("ignore")
                exif = img.getexif()
                tags = {**dict(exif), **dict(exif.get_ifd(_EXIF_IFD))}
        except Exception:  # noqa: BLE001 - no readable tags at all: metadata stays unknown
            return None, None
    return _exposure_value(tags.get(_EXPOSURE_TAG)), _camera_name(tags)


def _exposure_value(value: object) -> float | None:
    """Seconds from a TIFF rational (tuple), a float, or None."""
    try:
        seconds = value[0] / value[1] if isinstance(value, tuple) else float(value)  # type: ignore[index,arg-type]
    except (TypeError, ValueError, ZeroDivisionError, IndexError):
        return None
    return seconds if np.isfinite(seconds) and seconds > 0 else None


def _camera_name(tags: dict[int, object]) -> str | None:
    """'Make Model' (or the DNG unique camera model), stripped; None when the file names no camera."""
    parts = [str(tags[t]).strip(" \x00") for t in (_MAKE_TAG, _MODEL_TAG) if tags.get(t)]
    name = " ".join(p for p in parts if p) or str(tags.get(_UNIQUE_MODEL_TAG) or "").strip(" \x00")
    return name or None


def exposure_from_name(path: Path) -> float | None:
    """Seconds from a name ending in `_<seconds>s` (SID's `00001_00_0.04s`, MCR's `…_0.00391s`), else None."""
    match = _SECONDS_IN_NAME.search(path.stem)
    if match is None:
        return None
    seconds = float(match["seconds"])
    return seconds if seconds > 0 else None


def read_raw_frame(path: str | Path) -> RawFrame:
    """Read a Bayer raw file of any rawpy-readable format as a RawFrame; LowsimError naming the file on failure."""
    import rawpy

    path = Path(path)
    if not path.is_file():
        raise LowsimError("raw file not found", path)
    try:
        with rawpy.imread(str(path)) as raw:
            mosaic = np.array(raw.raw_image_visible, dtype=np.uint16)
            pattern = _bayer_pattern(raw.raw_pattern, raw.color_desc, path)
            by_colour = [float(b) for b in raw.black_level_per_channel]
            indices = np.asarray(raw.raw_pattern).ravel()
            white = float(raw.white_level)
            shutter = float(raw.other.shutter_speed)
    except LowsimError:
        raise
    except Exception as err:  # noqa: BLE001 - LibRaw raises many types for damaged or truncated files
        raise LowsimError(f"not a readable camera raw file ({_libraw_message(err)})", path) from None
    height, width = mosaic.shape[0] // 2 * 2, mosaic.shape[1] // 2 * 2
    black = tuple(by_colour[int(i)] for i in indices)
    if white <= max(black):
        raise LowsimError(f"white level {white:g} is not above the black level {max(black):g}", path)
    tag_exposure, camera = _tag_metadata(path)
    exposure = shutter if shutter > 0 else tag_exposure or exposure_from_name(path)
    return RawFrame(path, mosaic[:height, :width], pattern, black, white, exposure, camera)  # type: ignore[arg-type]


def check_compatible(dark: RawFrame, bright: RawFrame) -> None:
    """Refuse a pair whose frames differ in camera, size, colour filter, black or white level (one line)."""
    where = f"but the bright frame {bright.path.name} is"
    if dark.camera and bright.camera and dark.camera != bright.camera:
        raise LowsimError(f"pair from different cameras: {dark.camera!r} {where} {bright.camera!r}", dark.path)
    if dark.mosaic.shape != bright.mosaic.shape:
        raise LowsimError(f"pair of different sizes: {dark.mosaic.shape[1]}x{dark.mosaic.shape[0]} {where} "
                          f"{bright.mosaic.shape[1]}x{bright.mosaic.shape[0]}", dark.path)
    if dark.pattern != bright.pattern:
        raise LowsimError(f"pair with different colour filters: {dark.pattern} {where} {bright.pattern}", dark.path)
    if not np.allclose(dark.black, bright.black, atol=0.5):
        raise LowsimError(f"pair with different black levels: {'/'.join(f'{b:g}' for b in dark.black)} {where} "
                          f"{'/'.join(f'{b:g}' for b in bright.black)}", dark.path)
    if dark.white != bright.white:
        raise LowsimError(f"pair with different white levels: {dark.white:g} {where} {bright.white:g}", dark.path)


def exposure_ratio(dark: RawFrame, bright: RawFrame, given: float | None = None) -> float:
    """The bright/dark exposure ratio: `given` (a CSV's ratio column) or from the exposure times; must be > 1."""
    if given is None:
        missing = [f for f in (dark, bright) if f.exposure is None]
        if missing:
            raise LowsimError("no exposure time in the metadata or the file name, and no ratio given "
                              "(add a ratio column to the pairs CSV)", missing[0].path)
        given = bright.exposure / dark.exposure  # type: ignore[operator]
    if not np.isfinite(given):
        raise LowsimError("the stated exposure times or ratio are not positive numbers", dark.path)
    if given <= 1.0:
        raise LowsimError(f"exposure ratio {given:g} is not above 1: the dark frame must be the shorter exposure "
                          f"(bright frame {bright.path.name})", dark.path)
    return float(given)


def site_of_colour(pattern: str) -> dict[str, tuple[int, int]]:
    """Cell site of each colour in SID's packing names: {'r', 'g1', 'b', 'g2'} (g1: the first green in raster order)."""
    greens = [site for site, letter in zip(SITES, pattern) if letter == "G"]
    return {"r": SITES[pattern.index("R")], "g1": greens[0], "b": SITES[pattern.index("B")], "g2": greens[1]}
