"""Model v2's fast sampler (`isp-fast/v2`): the chain of `lowsim.degradation.v2.degrade`, computed cheaply.

The reference sampler (`isp-reference/v2`) stays as it was, so rows written with it regenerate bit-exactly;
this one is what new rows use. The deterministic stages compute the same quantities as the reference (up
to float rounding): the same scene table, colour matrices, ADC, demosaic (exactly equal, see
`demosaic_codes`), tone curve, chroma NR, sharpening and resize. Only the noise is drawn differently, with
the same mean and variance per pixel:

- shot + read noise: where the expected photon count λ = x/K is at least `POISSON_BELOW` (Poisson skew
  1/√λ ≤ 0.1) one Gaussian of variance K·x + σ_read²; below it the exact K·Poisson(λ) plus Gaussian read
  noise, as the reference;
- the Gaussians are read from a 16-bit inverse-CDF table of the standard normal (`normal_table`): one
  16-bit slice of the bit generator's raw output per pixel (tails cut at ±4.3 sd; unit variance).

After the noise, `finish` processes a large sensor in strips of rows (each with a halo as wide as the filters
reach): the bytes of one pass over the whole sensor, with small temporaries the allocator reuses.

Draw order, fixed: the table normals of every sensor pixel, Poisson counts of the dark pixels (raster order),
then row noise. The same rng state therefore gives the same bytes (for the same numpy and OpenCV).
"""
from __future__ import annotations

import functools

import numpy as np

from lowsim.degradation import stages, v2
from lowsim.params import IspParams
from lowsim.sampling import (UNIFORM_SPAN, InverseCdfTable, build_inverse_cdf_table, poisson_window,
                             sample_inverse_cdf, uniform_u32)

FAST_SAMPLER = v2.FAST_SAMPLER
POISSON_BELOW = 100.0  # photons: exact Poisson below, where the Gaussian's missing skew (1/√λ) exceeds 0.1
NORMAL_BITS = 16
POISSON_TABLE_BITS = 10  # buckets per row: few draws need the exact search
POISSON_GRID = 64  # table means per photon: the remainder (< 1/64) is almost always 0 or 1 photons
_WHITE = (1 << v2.SENSOR_BITS) - 1
_DEMOSAIC_SCALE = 4  # codes × 4 make OpenCV's integer bilinear averages exact (sums of 2 or 4 neighbours)
STRIP_PIXELS = 1 << 19  # sensor pixels per strip of `finish` (~6 MB of float RGB per temporary)


def _blur_reach(sigma: float) -> int:
    """Pixels a float GaussianBlur of this sigma reaches (OpenCV's kernel size for float: round(8σ + 1) | 1)."""
    return (int(np.round(8 * sigma + 1)) | 1) // 2


# rows a strip needs beyond its own: the demosaic's 1 and both blurs' reach, even (keeps the Bayer phase)
STRIP_HALO = 2 * -(-(1 + _blur_reach(v2.CHROMA_SIGMA) + _blur_reach(v2.SHARPEN_SIGMA)) // 2)


@functools.lru_cache(maxsize=1)
def normal_table() -> np.ndarray:
    """Standard-normal quantiles at the 2^16 bin midpoints, rescaled to unit variance (float32)."""
    from scipy import special

    table = special.ndtri((np.arange(1 << NORMAL_BITS) + 0.5) / (1 << NORMAL_BITS))
    return (table / np.sqrt(np.mean(table ** 2))).astype(np.float32)  # the cut tails would lower it by 0.04 %


def table_normals(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Approximately standard normals (float32), one 16-bit slice of raw bit-generator output each.

    Raw output is the stream numpy promises not to change, and ~3× cheaper than `standard_normal`.
    """
    n = int(np.prod(shape))
    raw = rng.bit_generator.random_raw((n + 3) // 4).astype("<u8", copy=False)
    return np.take(normal_table(), raw.view("<u2")[:n]).reshape(shape)


def raw_mosaic(scene: np.ndarray, p: IspParams) -> np.ndarray:
    """`v2.raw_mosaic`; for 8-bit scenes each Bayer site is one table lookup per value and a channel sum.

    Site channel c is Σ_j M[c, j]·light_j(v_j): a (256, 3) table per c, so only the kept channel is computed.
    """
    import cv2

    if scene.dtype != np.uint8 or scene.ndim != 3:
        return v2.raw_mosaic(scene, p)
    levels = np.repeat((np.arange(256, dtype=np.float32) / np.float32(255))[:, None], 3, 1)
    light = v2._scene_light(levels, p).astype(np.float32)  # the reference's own table
    out = np.empty(scene.shape[:2], dtype=np.float32)
    ones = np.ones((1, 3), dtype=np.float32)
    matrix = v2.scene_to_camera(p)
    for row, col, channel in stages.BAYER_OFFSETS["RGGB"]:
        table = (light * matrix[channel].astype(np.float32)).reshape(256, 1, 3)
        site = cv2.LUT(bayer_site(scene, row, col), table)
        out[row::2, col::2] = cv2.transform(site, ones)
    return np.maximum(out, 0.0, out=out)


def bayer_site(img: np.ndarray, row: int, col: int) -> np.ndarray:
    """The pixels of one 2x2-cell site (every other row and column) of a uint8 (H, W, 3) image, contiguous."""
    pixels = np.ascontiguousarray(img).view(f"V{img.shape[2]}")  # one 3-byte item per pixel: a 3x cheaper copy
    return np.ascontiguousarray(pixels[row::2, col::2]).view(np.uint8)


def shot_read_noise(raw: np.ndarray, p: IspParams, rng: np.random.Generator) -> np.ndarray:
    """Shot (gain K) and read noise: one Gaussian where λ ≥ POISSON_BELOW, K·Poisson(λ) + read below."""
    z = table_normals(rng, raw.shape)
    out = raw * np.float32(p.shot_gain)  # in place from here: each full-size temporary costs a pass
    out += np.float32(p.read_sigma) ** 2
    np.sqrt(out, out=out)
    out *= z
    out += raw
    dark = np.flatnonzero(raw < np.float32(POISSON_BELOW * p.shot_gain))
    if dark.size:
        counts = poisson_counts(raw.ravel()[dark].astype(np.float64) / p.shot_gain, rng)
        read = np.float32(p.read_sigma) * z.ravel()[dark]
        out.ravel()[dark] = (counts * p.shot_gain).astype(np.float32) + read
    return out


@functools.lru_cache(maxsize=1)
def poisson_grid_table() -> InverseCdfTable:
    """Exact inverse-CDF table of Poisson(i / POISSON_GRID) for every grid mean below POISSON_BELOW."""
    from scipy import stats

    lam = np.arange(int(POISSON_BELOW * POISSON_GRID) + 1) / POISSON_GRID
    lo, hi = poisson_window(lam)
    width = int((hi - lo).max()) + 1
    cdf = stats.poisson.cdf(lo[:, None] + np.arange(width), lam[:, None])
    return build_inverse_cdf_table(cdf, lo, bits=POISSON_TABLE_BITS)


def poisson_counts(lam: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exact Poisson(λ) draws for 0 ≤ λ < POISSON_BELOW (int64), two 32-bit uniforms each.

    Poisson(λ) = Poisson(g) + Poisson(λ − g) for g the grid mean below λ: the first from the table, the
    second (mean < 1/POISSON_GRID, so almost always 0) by its own inverse CDF.
    """
    grid = (lam * POISSON_GRID).astype(np.int32)  # floor, as λ ≥ 0
    np.minimum(grid, int(POISSON_BELOW * POISSON_GRID), out=grid)
    table = poisson_grid_table()
    uniforms = uniform_u32(rng, 2 * lam.size).reshape(2, -1)
    rest = small_poisson(lam, grid, uniforms[1])
    counts = sample_inverse_cdf(table, np.left_shift(grid, table.bits, out=grid), uniforms[0])
    return counts + rest


def small_poisson(lam: np.ndarray, grid: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Poisson(δ), δ = λ − grid / POISSON_GRID < 1/POISSON_GRID, by inverse CDF on 32-bit uniforms (int64).

    Only a uniform above 1 − 1/POISSON_GRID (< P(k = 0)) can give k ≥ 1: those few walk up the exact CDF.
    """
    k = np.zeros(lam.shape, dtype=np.int64)
    some = np.flatnonzero(uniforms >= np.uint32(UNIFORM_SPAN * (1.0 - 1.0 / POISSON_GRID)))
    if some.size:
        d = lam[some] - grid[some] / POISSON_GRID
        v = uniforms[some].astype(np.float64) / UNIFORM_SPAN
        term = np.exp(-d)
        cdf, count = term.copy(), np.zeros(some.size, dtype=np.int64)
        while (open_ := v >= cdf).any():  # walk up the CDF until each uniform falls below it
            count += open_
            term = term * d / np.maximum(count, 1)
            cdf = np.where(open_, cdf + term, cdf)
        k[some] = count
    return k


def adc(raw: np.ndarray) -> np.ndarray:
    """`stages.digitize` at v2's 14 bits and pedestal, in place: integer codes held in float32 (exact < 2^24)."""
    raw *= np.float32(_WHITE)
    raw += np.float32(v2.PEDESTAL)
    np.rint(raw, out=raw)
    return np.clip(raw, 0, _WHITE + v2.PEDESTAL, out=raw)


def demosaic_codes(codes: np.ndarray) -> tuple[np.ndarray, int]:
    """Bilinear demosaic of integer-valued codes as (uint16 image, offset): the demosaic is image / 4 + offset.

    Exactly `stages.demosaic` of the codes: the codes are shifted to start at 0 and scaled by 4 (so every
    average of 2 or 4 neighbours is an integer), OpenCV's 16-bit bilinear Bayer conversion (its BG name is
    our RGGB) runs on a 2-pixel reflect-101 border (the reference's border; it keeps the Bayer phase). A
    range too wide for 16 bits (saturated highlights next to clipped blacks) takes the float stage.
    """
    scaled = scaled_codes(codes)
    if scaled is None:
        return stages.demosaic(codes.astype(np.float32)) * np.float32(_DEMOSAIC_SCALE), 0
    padded, low = scaled
    return demosaic_rows(padded, 0, codes.shape[0]), low


def scaled_codes(codes: np.ndarray) -> tuple[np.ndarray, int] | None:
    """(codes − low) × 4 as uint16 with a 2-pixel reflect-101 border, and low; None if too wide for 16 bits."""
    import cv2

    low = int(codes.min())
    if (int(codes.max()) - low) * _DEMOSAIC_SCALE > np.iinfo(np.uint16).max:
        return None
    scaled = np.subtract(codes, low, dtype=np.float32)
    scaled *= np.float32(_DEMOSAIC_SCALE)
    return cv2.copyMakeBorder(scaled.astype(np.uint16), 2, 2, 2, 2, cv2.BORDER_REFLECT_101), low


def demosaic_rows(padded: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Sensor rows [lo, hi) (lo even: the Bayer phase) of the demosaic of `scaled_codes`' bordered image."""
    import cv2

    return cv2.cvtColor(padded[lo:hi + 4], cv2.COLOR_BayerBG2RGB)[2:-2, 2:-2]


def to_toned(demosaiced: np.ndarray, low: int, p: IspParams) -> np.ndarray:
    """Scaled demosaiced codes → tone(max(from_camera(linear) − black level, 0)): one affine map, clip, power."""
    import cv2

    matrix = v2.camera_to_scene(p)
    scale = matrix / (_DEMOSAIC_SCALE * _WHITE)
    offset = matrix.sum(axis=1) * (low - v2.PEDESTAL) / _WHITE - p.black_level
    affine = np.hstack([scale, offset[:, None]]).astype(np.float32)
    rgb = cv2.transform(np.ascontiguousarray(demosaiced, dtype=np.float32), affine)
    return tone_curve(rgb, p.tone_gamma)


def tone_curve(rgb: np.ndarray, gamma: float) -> np.ndarray:
    """`stages.apply_gamma` in place: clip to [0, 1], then x^(1/γ).

    numpy's power takes a slow path (3-100x) for 0 and wherever its result lands near or below the smallest
    normal float32, so the clip's floor is the larger of that float and the value the power maps to 2^-100
    (15 % of a dark image is clipped there). Zeros so come out between 8e-31 and 2e-9 (γ < 4.3), far below a
    16-bit level; above that they are reset to 0.
    """
    tiny = np.float32(np.finfo(np.float32).tiny)
    floor = max(tiny, np.float32(2.0 ** -100) ** np.float32(gamma))
    np.clip(rgb, floor, 1.0, out=rgb)
    np.power(rgb, np.float32(1.0 / gamma), out=rgb)
    raised = floor ** np.float32(1.0 / gamma)
    if raised > 2e-9:
        rgb[rgb <= raised] = 0.0
    return rgb


def chroma_denoise(img: np.ndarray, strength: float, sigma: float) -> np.ndarray:
    """`stages.chroma_denoise` with OpenCV's blend: Cr, Cb ← (1 − s)·C + s·blur(C), written back in place."""
    import cv2

    if strength == 0.0:
        return img
    ycc = cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb)
    for channel in (1, 2):  # one plane at a time: cv2.split/merge of all three cost several times more
        plane = cv2.extractChannel(ycc, channel)
        blended = cv2.addWeighted(plane, 1.0 - strength, cv2.GaussianBlur(plane, (0, 0), sigma), strength, 0.0)
        cv2.insertChannel(blended, ycc, channel)
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB, dst=ycc)


def sharpen_clip(img: np.ndarray, amount: float, sigma: float) -> np.ndarray:
    """`stages.sharpen` then clip to [0, 1]: (1 + a)·img − a·blur(img), in one OpenCV pass."""
    import cv2

    if amount != 0.0:
        img = cv2.addWeighted(img, 1.0 + amount, cv2.GaussianBlur(img, (0, 0), sigma), -amount, 0.0)
    return np.clip(img, 0.0, 1.0, out=img)


def degrade(clean: np.ndarray, p: IspParams, rng: np.random.Generator) -> np.ndarray:
    """`v2.degrade` by the fast sampler: float32 in [0, 1] at the clean image's size."""
    scene = stages.resize_to(clean, *v2.sensor_shape(clean.shape, p.downscale))
    raw = stages.add_row_noise(shot_read_noise(raw_mosaic(scene, p), p, rng), p.row_sigma, rng)
    return finish(adc(raw), p, clean.shape)


def processed(demosaiced: np.ndarray, low: int, p: IspParams) -> np.ndarray:
    """`v2.process` from `demosaic_codes`' output: tone, chroma noise reduction, sharpening and clip."""
    out = chroma_denoise(to_toned(demosaiced, low, p), p.chroma_nr, v2.CHROMA_SIGMA)
    return sharpen_clip(out, p.sharpen, v2.SHARPEN_SIGMA)


def finish(codes: np.ndarray, p: IspParams, shape: tuple[int, ...]) -> np.ndarray:
    """ADC codes → the camera's output at `shape` (`processed`, then `v2.output`), in strips where possible.

    A strip is processed with `STRIP_HALO` extra sensor rows on each side (every filter's reach), so its rows
    are the bytes of the whole-image pass. Its temporaries (~6 MB) are recycled by the allocator, where the
    whole sensor's (28 MB each at 1536²) arrive as fresh pages on every call: this stage is ~1.2x faster.
    """
    rows = strip_rows(codes.shape, shape)
    scaled = scaled_codes(codes) if rows else None
    if scaled is None:
        demosaiced, low = demosaic_codes(codes)
        return v2.output(processed(demosaiced, low, p), shape, p)
    (padded, low), height, factor = scaled, codes.shape[0], codes.shape[0] // shape[0]
    out = np.empty((*shape[:2], 3), dtype=np.float32)
    for top in range(0, height, rows):
        bottom = min(top + rows, height)
        lo, hi = max(top - STRIP_HALO, 0), min(bottom + STRIP_HALO, height)
        strip = processed(demosaic_rows(padded, lo, hi), low, p)[top - lo:bottom - lo]
        out[top // factor:bottom // factor] = v2.output(strip, ((bottom - top) // factor, shape[1]), p)
    return out


def strip_rows(sensor: tuple[int, ...], shape: tuple[int, ...]) -> int | None:
    """Sensor rows per strip of `finish`, or None for one pass: strips need a sensor an exact multiple of the
    output (each strip resizes to whole output rows) and pay only on one larger than two strips."""
    factor = sensor[0] // shape[0]
    if factor < 1 or tuple(sensor[:2]) != (factor * shape[0], factor * shape[1]) \
            or sensor[0] * sensor[1] <= 2 * STRIP_PIXELS:
        return None
    step = 2 * factor  # whole Bayer cells and whole output rows
    return max(step, STRIP_PIXELS // sensor[1] // step * step)


def degrade_to_codes(clean: np.ndarray, p: IspParams, rng: np.random.Generator, bit_depth: int = 8,
                     sampler: str | None = None) -> np.ndarray:
    """Model v2's dark image at `bit_depth` by either sampler: this module's chain for FAST_SAMPLER, else v2's
    reference (None means the reference; an unknown name is refused there)."""
    if sampler == FAST_SAMPLER:
        return v2.encode(stages.quantize(degrade(clean, p, rng), bit_depth), p)
    return v2.degrade_to_codes(clean, p, rng, bit_depth, sampler)
