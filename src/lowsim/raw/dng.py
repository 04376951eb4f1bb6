"""Writing Bayer mosaics as uncompressed 16-bit DNG files (pidng; rawpy/LibRaw reads them back exactly).

Used by the known-truth simulator (`lowsim.raw.simulate`) and the tests. pidng is in the `dev` extra: the
package itself never needs it to calibrate or generate.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from lowsim.errors import LowsimError
from lowsim.safe_io import atomic_write_bytes

# A plain sRGB->XYZ-like matrix scaled by 10000 (DNG stores rationals); any invertible matrix works here.
_COLOR_MATRIX = [[10000, 10000], [0, 10000], [0, 10000],
                 [0, 10000], [10000, 10000], [0, 10000],
                 [0, 10000], [0, 10000], [10000, 10000]]


def _cfa_code(pattern: str) -> list[int]:
    """DNG CFAPattern codes (0=R, 1=G, 2=B) for a 4-letter pattern such as 'RGGB'."""
    return ["RGB".index(c) for c in pattern.upper()]


def dng_bytes(bayer: np.ndarray, black: int = 512, white: int = 16383, pattern: str = "RGGB",
              exposure: float | None = None, camera: str = "test",
              as_shot_neutral: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> bytes:
    """Encode an (H, W) uint16 Bayer mosaic as DNG bytes, with its levels, pattern, exposure time and camera."""
    try:
        from pidng.core import RAW2DNG
        from pidng.defs import CalibrationIlluminant, DNGVersion, PhotometricInterpretation
        from pidng.dng import DNGTags, Tag
    except ImportError:
        raise LowsimError("writing DNG files needs pidng (pip install 'lowsim[dev]')") from None
    bayer = np.ascontiguousarray(bayer, dtype=np.uint16)
    height, width = bayer.shape
    tags = DNGTags()
    for tag, value in ((Tag.ImageWidth, width), (Tag.ImageLength, height), (Tag.TileWidth, width),
                       (Tag.TileLength, height), (Tag.Orientation, 1), (Tag.SamplesPerPixel, 1),
                       (Tag.PhotometricInterpretation, PhotometricInterpretation.Color_Filter_Array),
                       (Tag.BitsPerSample, 16), (Tag.CFARepeatPatternDim, [2, 2]),
                       (Tag.CFAPattern, _cfa_code(pattern)), (Tag.BlackLevel, int(black)),
                       (Tag.WhiteLevel, int(white)), (Tag.ColorMatrix1, _COLOR_MATRIX),
                       (Tag.CalibrationIlluminant1, CalibrationIlluminant.D65),
                       (Tag.AsShotNeutral, [[int(round(v * 1000)), 1000] for v in as_shot_neutral]),
                       (Tag.BaselineExposure, [[0, 100]]), (Tag.Make, "lowsim"), (Tag.Model, camera),
                       (Tag.UniqueCameraModel, f"lowsim {camera}"),
                       (Tag.DNGVersion, DNGVersion.V1_4), (Tag.DNGBackwardVersion, DNGVersion.V1_2)):
        tags.set(tag, value)
    if exposure is not None:
        seconds = Fraction(exposure).limit_denominator(1_000_000)
        tags.set(Tag.ExposureTime, [[seconds.numerator, seconds.denominator]])
    writer = RAW2DNG()
    writer.options(tags, path="", compress=False)
    return bytes(writer.convert(bayer))


def write_dng(path: str | Path, bayer: np.ndarray, **kwargs) -> Path:
    """Write a Bayer mosaic as a DNG at `path` atomically (any extension; see dng_bytes) and return the path."""
    path = Path(path)
    atomic_write_bytes(path, dng_bytes(bayer, **kwargs))
    return path
