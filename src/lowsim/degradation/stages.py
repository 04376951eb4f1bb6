"""The physical steps of every degradation model, one small pure function each.

Each stage takes a float32 image (or a raw mosaic) and its own parameters and returns a new array; the
stages that draw noise take the `numpy.random.Generator` to draw from and draw a fixed number of values
in a fixed order, so a model built from them is reproducible from one seed. `lowsim.degrade` (v1) and
`lowsim.degradation.v2` are chains of these functions; `calibrate`, `preview` and the benchmarks call the
same chains.
"""
from __future__ import annotations

import numpy as np

from lowsim.sampling import poisson

# ------------------------------------------------------------------------------------- tone and colour


def srgb_to_linear(img: np.ndarray) -> np.ndarray:
    """Inverse sRGB transfer curve: stored sRGB values in [0, 1] to linear light."""
    img = np.clip(img, 0.0, 1.0)
    low = img / np.float32(12.92)
    high = np.power((img + np.float32(0.055)) / np.float32(1.055), np.float32(2.4), dtype=img.dtype)
    return np.where(img <= 0.04045, low, high).astype(img.dtype, copy=False)


def apply_illumination(img: np.ndarray, alpha: float, gamma: float) -> np.ndarray:
    """Seed 002's illumination map: I·max(α·I^g + 1 − α, 0)."""
    if alpha == 0.0:
        return img
    light = alpha * np.power(img, gamma, dtype=img.dtype) + (1.0 - alpha)
    return img * np.maximum(light, 0.0)


def subtract_black_level(img: np.ndarray, black_level: float) -> np.ndarray:
    """BL: max(B − bl, 0)."""
    return np.maximum(img - black_level, 0.0)


def apply_channel_gains(img: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """CD: multiply each colour channel by its gain."""
    return img * np.asarray(gains, dtype=img.dtype)


def apply_colour_matrix(img: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Mix the colour channels: out[..., i] = Σ_j matrix[i, j] · img[..., j] (float32, OpenCV)."""
    import cv2

    return cv2.transform(np.ascontiguousarray(img, dtype=np.float32), np.asarray(matrix, dtype=np.float32))


def apply_gamma(img: np.ndarray, gamma: float) -> np.ndarray:
    """GC: clip to [0, 1], then x^(1/γ)."""
    return np.power(np.clip(img, 0.0, 1.0), 1.0 / gamma, dtype=img.dtype)


def smoothstep(img: np.ndarray) -> np.ndarray:
    """Unprocessing's global tone curve (Brooks et al. 2019): 3x² − 2x³ on values clipped to [0, 1]."""
    x = np.clip(img, 0.0, 1.0)
    return (3.0 * x ** 2 - 2.0 * x ** 3).astype(img.dtype, copy=False)


def inverse_smoothstep(img: np.ndarray) -> np.ndarray:
    """Inverse of `smoothstep`: 0.5 − sin(asin(1 − 2y) / 3)."""
    y = np.clip(img, 0.0, 1.0)
    return (0.5 - np.sin(np.arcsin(1.0 - 2.0 * y) / 3.0)).astype(img.dtype, copy=False)


def invert_gains_safely(img: np.ndarray, gains: np.ndarray, inflection: float = 0.9) -> np.ndarray:
    """Divide each channel by its gain, sparing the highlights (Brooks et al.'s safe_invert_gains): near white
    the inverse gain is blended towards 1, so a clipped highlight is not made coloured."""
    inverse = (1.0 / np.asarray(gains, dtype=np.float64)).astype(img.dtype)
    grey = np.mean(img, axis=-1, keepdims=True)
    mask = (np.maximum(grey - inflection, 0.0) / (1.0 - inflection)) ** 2
    return img * np.maximum(mask + (1.0 - mask) * inverse, inverse)


# ------------------------------------------------------------------------------------- sensor

BAYER_OFFSETS = {"RGGB": ((0, 0, 0), (0, 1, 1), (1, 0, 1), (1, 1, 2))}  # (row, col, channel) per 2x2 site


def mosaic(img: np.ndarray, pattern: str = "RGGB", matrix: np.ndarray | None = None) -> np.ndarray:
    """Sample an (H, W, 3) image through a Bayer colour filter: an (H, W) mosaic.

    With `matrix`, the channels are first mixed by it (as apply_colour_matrix), computing only the one
    mixed channel each site keeps.
    """
    out = np.empty(img.shape[:2], dtype=img.dtype)
    for row, col, channel in BAYER_OFFSETS[pattern]:
        site = img[row::2, col::2]
        if matrix is None:
            out[row::2, col::2] = site[..., channel]
        else:
            weights = np.asarray(matrix, dtype=img.dtype)[channel]
            out[row::2, col::2] = site[..., 0] * weights[0] + site[..., 1] * weights[1] + site[..., 2] * weights[2]
    return out


def add_shot_noise(img: np.ndarray, photon_scale: float, rng: np.random.Generator) -> np.ndarray:
    """Shot noise: Poisson(x·scale)/scale, so the variance is x/scale."""
    return (poisson(img * photon_scale, rng) / photon_scale).astype(img.dtype, copy=False)


def add_gain_shot_noise(raw: np.ndarray, system_gain: float, rng: np.random.Generator) -> np.ndarray:
    """Shot noise through a system gain K: K·Poisson(x/K), so the variance is K·x."""
    return add_shot_noise(np.maximum(raw, 0.0), 1.0 / system_gain, rng)


def add_gaussian_shot_noise(raw: np.ndarray, system_gain: float, normals: np.ndarray) -> np.ndarray:
    """Shot noise's Gaussian approximation x + sqrt(K·x)·z with given standard normals z (smooth in K)."""
    return raw + np.sqrt(np.float32(system_gain) * np.maximum(raw, 0.0)) * normals


def add_read_noise(img: np.ndarray, read_sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Read noise: additive zero-mean Gaussian of standard deviation read_sigma."""
    if read_sigma == 0.0:
        return img
    return img + read_sigma * rng.standard_normal(img.shape, dtype=np.float32).astype(img.dtype, copy=False)


def add_row_noise(raw: np.ndarray, row_sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Row (banding) noise: one Gaussian offset per sensor row."""
    if row_sigma == 0.0:
        return raw
    offsets = row_sigma * rng.standard_normal((raw.shape[0], 1), dtype=np.float32)
    return raw + offsets.astype(raw.dtype, copy=False)


def tukey_lambda_sd(shape: float) -> float:
    """Standard deviation of the standard Tukey-lambda distribution of this shape (finite for shape > -0.5)."""
    from scipy import special

    if abs(shape) < 1e-6:
        return float(np.pi / np.sqrt(3.0))  # the logistic distribution
    var = 2.0 / shape ** 2 * (1.0 / (1.0 + 2.0 * shape)
                              - np.exp(2.0 * special.gammaln(shape + 1.0) - special.gammaln(2.0 * shape + 2.0)))
    return float(np.sqrt(var))


def add_tukey_read_noise(raw: np.ndarray, read_sd: float, shape: float, rng: np.random.Generator) -> np.ndarray:
    """Read noise of ELD's Tukey-lambda form: sd `read_sd`, shape λ (0.14 ≈ Gaussian), one uniform per pixel."""
    if read_sd == 0.0:
        return raw
    u = rng.random(raw.shape, dtype=np.float64)
    if abs(shape) < 1e-6:
        standard = np.log(u) - np.log1p(-u)
    else:
        standard = (np.power(u, shape) - np.power(1.0 - u, shape)) / shape
    return raw + (standard * (read_sd / tukey_lambda_sd(shape))).astype(raw.dtype, copy=False)


def add_site_offsets(raw: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Add a constant to each site of the 2x2 colour-filter cell; `offsets` is (2, 2), raster order."""
    out = raw.copy()
    for row in range(2):
        for col in range(2):
            out[row::2, col::2] += np.asarray(offsets, dtype=raw.dtype)[row, col]
    return out


def digitize_dn(signal: np.ndarray, black: float, white: float) -> np.ndarray:
    """A raw ADC in digital numbers: signal above black (DN) + black, rounded, clipped to [0, white]; uint16."""
    return np.clip(np.rint(signal + np.float32(black)), 0, white).astype(np.uint16)


def digitize(raw: np.ndarray, bits: int, pedestal: int) -> np.ndarray:
    """The ADC: full scale 1 → 2^bits − 1 codes above a pedestal (black) code, rounded, clipped; uint16."""
    white = (1 << bits) - 1
    codes = np.rint(raw * np.float32(white) + np.float32(pedestal))
    return np.clip(codes, 0, white + pedestal).astype(np.uint16)


_GREEN_KERNEL = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]], dtype=np.float32) / 4
_RED_BLUE_KERNEL = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float32) / 4


def demosaic(raw: np.ndarray, pattern: str = "RGGB") -> np.ndarray:
    """Bilinear demosaicing of a float Bayer mosaic (OpenCV filtering): an (H, W, 3) image.

    Float in and out (not OpenCV's integer Bayer conversion), so the calibrator can run the same stage
    on a smooth, unrounded mosaic; the result equals OpenCV's bilinear COLOR_BayerRGGB2RGB inside.
    """
    import cv2

    if pattern not in BAYER_OFFSETS:
        raise ValueError(f"unsupported Bayer pattern {pattern!r}")
    out = np.empty((*raw.shape, 3), dtype=np.float32)
    for channel, kernel in ((0, _RED_BLUE_KERNEL), (1, _GREEN_KERNEL), (2, _RED_BLUE_KERNEL)):
        sites = np.zeros(raw.shape, dtype=np.float32)
        for row, col, c in BAYER_OFFSETS[pattern]:
            if c == channel:
                sites[row::2, col::2] = raw[row::2, col::2]
        out[..., channel] = cv2.filter2D(sites, -1, kernel, borderType=cv2.BORDER_REFLECT_101)
    return out


def codes_to_linear(codes: np.ndarray, bits: int, pedestal: int) -> np.ndarray:
    """Undo the ADC: subtract the pedestal and scale to full scale 1 (float32; may be negative)."""
    white = np.float32((1 << bits) - 1)
    return (codes.astype(np.float32) - np.float32(pedestal)) / white


# ------------------------------------------------------------------------------------- processing


def chroma_denoise(img: np.ndarray, strength: float, sigma: float) -> np.ndarray:
    """Camera chroma noise reduction: blend Cr/Cb towards their Gaussian blur by `strength`."""
    import cv2

    if strength == 0.0:
        return img
    ycc = cv2.cvtColor(np.ascontiguousarray(img, dtype=np.float32), cv2.COLOR_RGB2YCrCb)
    for channel in (1, 2):
        plane = np.ascontiguousarray(ycc[..., channel])
        ycc[..., channel] = plane + np.float32(strength) * (cv2.GaussianBlur(plane, (0, 0), sigma) - plane)
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)


def sharpen(img: np.ndarray, amount: float, sigma: float) -> np.ndarray:
    """Camera sharpening: unsharp mask, img + amount·(img − GaussianBlur(img, sigma))."""
    import cv2

    if amount == 0.0:
        return img
    img = np.ascontiguousarray(img, dtype=np.float32)
    return img + np.float32(amount) * (img - cv2.GaussianBlur(img, (0, 0), sigma))


def resize_to(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize as a camera's output is made smaller (area averaging) or a scene sampled finer (bilinear)."""
    import cv2

    if img.shape[:2] == (height, width):
        return img
    smaller = height * width < img.shape[0] * img.shape[1]
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA if smaller else cv2.INTER_LINEAR)


def apply_black_point(img: np.ndarray, black: float) -> np.ndarray:
    """Output black point: (x − b)/(1 − b), clipped at 0, so values below b become black (white stays white)."""
    if black == 0.0:
        return img
    return np.maximum((img - np.float32(black)) / np.float32(1.0 - black), 0.0).astype(img.dtype, copy=False)


def quantize(img: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """Round [0, 1] floats to unsigned integers of the given bit depth (8 or 16)."""
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    top = (1 << bit_depth) - 1
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    return np.rint(np.clip(img, 0.0, 1.0) * top).astype(dtype)


JPEG_OFF = 0  # the quality that means "no JPEG stage" (1-100 are libjpeg's qualities)


def jpeg_compress(codes: np.ndarray, quality: int) -> np.ndarray:
    """A camera's JPEG: 8-bit RGB codes through OpenCV's JPEG encoder at `quality` and back (identity at 0).

    Baseline JPEG with libjpeg's standard luma and chroma tables scaled by `quality` (jpeg_set_quality) and
    4:2:0 chroma subsampling, set explicitly so the bytes do not depend on OpenCV's default; decoded by the
    libjpeg OpenCV bundles. OpenCV works in BGR, so the channels are reversed on the way in and out.
    """
    import cv2

    if quality == JPEG_OFF:
        return codes
    if codes.dtype != np.uint8 or codes.ndim != 3 or codes.shape[2] != 3:
        raise ValueError(f"JPEG needs 8-bit RGB codes (H, W, 3) uint8, got {codes.dtype} {codes.shape}")
    flags = [cv2.IMWRITE_JPEG_QUALITY, int(quality),
             cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420]
    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(codes[..., ::-1]), flags)
    if not ok:
        raise ValueError(f"OpenCV could not JPEG-encode a {codes.shape} image at quality {quality}")
    return np.ascontiguousarray(cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1])


def to_float(img: np.ndarray) -> np.ndarray:
    """uint8/uint16 → float32 in [0, 1]; float input is passed through as float32."""
    if img.dtype == np.uint8:
        return img.astype(np.float32) / np.float32(255)
    if img.dtype == np.uint16:
        return img.astype(np.float32) / np.float32(65535)
    return img.astype(np.float32, copy=False)


# ------------------------------------------------------------------------------------- exposure metering
METER_PIXELS = 1 << 18  # a meter reads a thumbnail: larger images are read on a strided grid
_LINEAR_LEVELS = srgb_to_linear(np.arange(256, dtype=np.float64) / 255.0)  # the 8-bit levels, linearised once


def metered_light(img: np.ndarray) -> float:
    """Mean linear light of a photo over its pixels and channels: what an averaging exposure meter reads."""
    step = max(1, int(np.sqrt(img.shape[0] * img.shape[1] / METER_PIXELS)))
    view = img[::step, ::step]
    if view.dtype == np.uint8:  # 256 levels: a histogram against the linearised levels
        return float(np.bincount(view.ravel(), minlength=256) @ _LINEAR_LEVELS / view.size)
    return float(srgb_to_linear(to_float(view).astype(np.float64)).mean())
