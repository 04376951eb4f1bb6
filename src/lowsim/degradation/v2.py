"""Model v2: an ISP-structured degradation. The clean photo is taken back to the camera's raw mosaic, darkened
and made noisy there, and processed forward again as a camera would:

    linear  = srgb_to_linear(clean)                       inverse tone curve
    scene   = illumination(linear; α, g) · exposure · [cast_r, 1, cast_b]
    raw     = mosaic(scene_to_camera(p) · scene)          inverse colour matrix and white balance, Bayer RGGB
    raw     = row(read(shot(raw; K); σ_read); σ_row)      raw-domain noise
    codes   = digitize(raw; 14 bits, pedestal)            the ADC
    rgb     = from_camera(demosaic(linear(codes)); p)      bilinear demosaic, white balance, colour matrix
    out     = chroma_nr(tone(max(rgb − black_level, 0); γ_tone); strength)
    out     = sharpen(out; amount)                         unsharp mask
    out     = resize(out; 1 / downscale)                   the camera's image, made smaller
    dark    = quantize(black_point(out; out_black))        its darkest values crushed to 0 (0 = off)
    dark    = jpeg(dark; jpeg_quality)                     the camera's JPEG of its 8-bit image (0 = off)

Channel- and space-correlated noise that peaks in the mid-tones then comes from the processing, as in a
real camera: demosaicing spreads each site's noise over its neighbours, the colour matrix mixes channels,
chroma noise reduction correlates them, sharpening decorrelates neighbours, and the tone curve shapes the
level. The white-balance gains (wb_red, wb_blue; green = 1) are parameters, as an auto-white-balance camera
sets them per shot: the inverse gains on the way in and the gains on the way out cancel in the mean colour,
but the gains amplify the raw R and B noise, which sets the noise's colour. The other camera constants (colour
matrix, ADC) are fixed parts of the model's definition (changing them is a new version).
Every draw comes from the one `rng`, in a fixed order: shot, read, row.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from lowsim.degradation import stages
from lowsim.errors import LowsimError
from lowsim.params import V2_MODEL, IspParams

MODEL_NAME = V2_MODEL
SAMPLER = "isp-reference/v2"  # this module's chain literally; rows written with it regenerate with it
FAST_SAMPLER = "isp-fast/v2"  # lowsim.degradation.v2_fast: the same model, cheaper noise draws; new rows' default
SAMPLERS = (SAMPLER, FAST_SAMPLER)
# A typical daylight camera: camera RGB → linear sRGB (rows sum to 1, so grey stays grey) and the white
# balance gains that the ISP applies before it (the parameters' defaults, IspParams.wb_red and wb_blue).
CAMERA_TO_SRGB = np.array([[1.80, -0.62, -0.18],
                           [-0.25, 1.62, -0.37],
                           [0.03, -0.55, 1.52]])
SRGB_TO_CAMERA = np.linalg.inv(CAMERA_TO_SRGB)
WHITE_BALANCE = np.array([2.0, 1.0, 1.6])


def scene_to_camera_of(white_balance: np.ndarray) -> np.ndarray:
    """Linear sRGB → camera RGB: the inverse colour matrix, then the inverse white balance."""
    return np.diag(1.0 / white_balance) @ SRGB_TO_CAMERA


def camera_to_scene_of(white_balance: np.ndarray) -> np.ndarray:
    """Camera RGB → linear sRGB: the white balance, then the colour matrix."""
    return CAMERA_TO_SRGB @ np.diag(white_balance)


def scene_to_camera(p: IspParams) -> np.ndarray:
    """The scene → camera matrix of a draw (its white balance)."""
    return scene_to_camera_of(p.white_balance)


def camera_to_scene(p: IspParams) -> np.ndarray:
    """The camera → scene matrix of a draw (its white balance)."""
    return camera_to_scene_of(p.white_balance)


# The default camera's matrices (the raw model, lowsim.raw.synthesize, uses this camera)
SCENE_TO_CAMERA = scene_to_camera_of(WHITE_BALANCE)
CAMERA_TO_SCENE = camera_to_scene_of(WHITE_BALANCE)
SENSOR_BITS = 14
PEDESTAL = 512  # black code of the ADC (SID's Sony A7S2 uses 512 at 14 bits): room for negative noise
QUANTIZATION_SD = 1.0 / ((1 << SENSOR_BITS) - 1) / np.sqrt(12.0)  # of the ADC's rounding, full scale 1
CHROMA_SIGMA = 3.0  # sensor pixels: the chroma noise-reduction blur
SHARPEN_SIGMA = 0.7  # sensor pixels: the radius of the camera's unsharp mask


def scene_light(clean: np.ndarray, p: IspParams) -> np.ndarray:
    """Linear light of the dark scene: illumination map, exposure and colour cast on the linearised photo.

    An 8-bit photo has 256 levels per channel: the same chain runs on those once and is looked up.
    """
    if clean.dtype == np.uint8:
        table = _scene_light(np.repeat((np.arange(256, dtype=np.float32) / np.float32(255))[:, None], 3, 1), p)
        return np.take_along_axis(table, clean.reshape(-1, 3).astype(np.intp), axis=0).reshape(clean.shape)
    return _scene_light(stages.to_float(clean), p)


def _scene_light(x: np.ndarray, p: IspParams) -> np.ndarray:
    """scene_light on float values in [0, 1]."""
    x = stages.apply_illumination(stages.srgb_to_linear(x), p.illum_alpha, p.illum_gamma)
    return stages.apply_channel_gains(x, p.exposure * p.cast)


def from_camera(cam: np.ndarray, p: IspParams | None = None) -> np.ndarray:
    """Camera RGB → linear sRGB: white balance (p's, the default camera's without p), then the colour matrix."""
    return stages.apply_colour_matrix(cam, CAMERA_TO_SCENE if p is None else camera_to_scene(p))


def sensor(raw: np.ndarray, p: IspParams, rng: np.random.Generator) -> np.ndarray:
    """The raw mosaic as the ADC reads it: shot, read and row noise, then digitized (uint16 codes)."""
    raw = stages.add_gain_shot_noise(raw, p.shot_gain, rng)
    raw = stages.add_read_noise(raw, p.read_sigma, rng)
    raw = stages.add_row_noise(raw, p.row_sigma, rng)
    return stages.digitize(raw, SENSOR_BITS, PEDESTAL)


def sensor_surrogate(raw: np.ndarray, p: IspParams, normals: np.ndarray) -> np.ndarray:
    """A smooth stand-in for `sensor` (for the calibrator): Gaussian shot noise, the ADC's rounding as
    Gaussian noise of the same variance; linear out. `normals`: (3, H, W) standard normals."""
    raw = stages.add_gaussian_shot_noise(raw, p.shot_gain, normals[0])
    read = np.float32(np.hypot(p.read_sigma, QUANTIZATION_SD))
    raw = raw + read * normals[1] + np.float32(p.row_sigma) * normals[2][:, :1]
    return np.maximum(raw, np.float32(-PEDESTAL / ((1 << SENSOR_BITS) - 1)))  # the ADC's floor


def process(raw: np.ndarray, p: IspParams) -> np.ndarray:
    """The camera's processing of the linear raw mosaic: demosaic, colour, black level, tone, chroma NR,
    sharpening."""
    rgb = from_camera(stages.demosaic(raw), p)
    out = stages.apply_gamma(stages.subtract_black_level(rgb, p.black_level), p.tone_gamma)
    out = stages.chroma_denoise(out, p.chroma_nr, CHROMA_SIGMA)
    return np.clip(stages.sharpen(out, p.sharpen, SHARPEN_SIGMA), 0.0, 1.0)


def raw_mosaic(clean: np.ndarray, p: IspParams) -> np.ndarray:
    """The noiseless raw mosaic of the dark scene (linear, full scale 1): inverse colour matrix and white
    balance (clipped at 0), computed for the one channel each site keeps."""
    return np.maximum(stages.mosaic(scene_light(clean, p), matrix=scene_to_camera(p)), 0.0)


def sensor_shape(shape: tuple[int, ...], downscale: float) -> tuple[int, int]:
    """(rows, columns) of the sensor behind an image of this shape: `downscale` times more, even (Bayer)."""
    scale = max(downscale, 1.0)
    return (max(2, int(round(shape[0] * scale / 2)) * 2), max(2, int(round(shape[1] * scale / 2)) * 2))


def degrade(clean: np.ndarray, p: IspParams, rng: np.random.Generator) -> np.ndarray:
    """The whole chain on a uint8/uint16/float image; returns float32 in [0, 1] (not yet quantized).

    The scene is sampled at the sensor's resolution and the processed image resized back to the clean
    image's (`downscale`): resizing averages the demosaiced noise, as in a camera's smaller JPEG.
    """
    scene = stages.resize_to(clean, *sensor_shape(clean.shape, p.downscale))
    codes = sensor(raw_mosaic(scene, p), p, rng)
    out = process(stages.codes_to_linear(codes, SENSOR_BITS, PEDESTAL), p)
    return output(out, clean.shape, p)


def output(out: np.ndarray, shape: tuple[int, ...], p: IspParams) -> np.ndarray:
    """The processed image made the camera's output: resized to `shape`, clipped, its black point applied."""
    return stages.apply_black_point(np.clip(stages.resize_to(out, *shape[:2]), 0.0, 1.0), p.out_black)


def encode(codes: np.ndarray, p: IspParams) -> np.ndarray:
    """The camera's encoding of its quantized image: JPEG at `p.jpeg_quality` (off at 0: the codes themselves).

    JPEG is 8-bit: 16-bit codes with the stage on are refused (LowsimError), not silently made 8-bit.
    """
    if p.jpeg_quality == stages.JPEG_OFF:
        return codes
    if codes.dtype != np.uint8:
        raise LowsimError(f"jpeg_quality {p.jpeg_quality:g} makes 8-bit JPEG output, but {codes.dtype} codes "
                          "were asked for (--bit-depth 16); use --bit-depth 8 or a params file with "
                          "jpeg_quality 0 (off)")
    return stages.jpeg_compress(codes, int(p.jpeg_quality))


def simulate_smooth(clean: np.ndarray, p: IspParams, normals: np.ndarray) -> np.ndarray:
    """The chain with `sensor_surrogate`: smooth in every parameter, for fitting with fixed normals of the
    sensor's shape (`sensor_shape`)."""
    scene = stages.resize_to(clean, *sensor_shape(clean.shape, p.downscale))
    out = process(sensor_surrogate(raw_mosaic(scene, p), p, normals), p)
    return stages.apply_black_point(stages.resize_to(out, *clean.shape[:2]), p.out_black)


def simulate_codes(clean: np.ndarray, p: IspParams, normals: np.ndarray) -> np.ndarray:
    """`simulate_smooth` as the camera stores it: quantized to 8 bits and encoded (JPEG when it is on)."""
    return encode(stages.quantize(simulate_smooth(clean, p, normals), 8), p)


def choose_sampler(dtype: np.dtype, p: IspParams, bit_depth: int = 8) -> str:
    """The sampler new rows use: the fast one, for every source type and depth."""
    return FAST_SAMPLER


def degrade_to_codes(clean: np.ndarray, p: IspParams, rng: np.random.Generator, bit_depth: int = 8,
                     sampler: str | None = None) -> np.ndarray:
    """The whole chain including quantization: the dark image at `bit_depth`, by the reference sampler (None
    means it too); the registry's entry point, `v2_fast.degrade_to_codes`, also takes FAST_SAMPLER."""
    if sampler not in (None, SAMPLER):
        raise ValueError(f"unknown sampler {sampler!r} for {MODEL_NAME}, expected one of {SAMPLERS}")
    return encode(stages.quantize(degrade(clean, p, rng), bit_depth), p)


def expected_dark(clean: np.ndarray, p: IspParams) -> np.ndarray:
    """The noiseless forward model (what the calibrator fits), pixelwise: tone(max(scene − bl, 0)).

    Without the output black point: the calibrator sets it with the noise, and takes its effect on the mean
    out with the noise's clipping bias (`calibrate_v2.noise_bias`)."""
    return expected_dark_of(stages.to_float(clean), p)


def expected_dark_of(x: np.ndarray, p: IspParams) -> np.ndarray:
    """expected_dark of float values in [0, 1], in their own precision (float64 for the calibrator)."""
    return stages.apply_gamma(stages.subtract_black_level(_scene_light(x, p), p.black_level), p.tone_gamma)


def degrade_stages(clean: np.ndarray, p: IspParams, rng: np.random.Generator) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (label, sRGB-viewable image) after each step (for `lowsim preview`), at the clean image's size.

    The same draws as `degrade` (same rng use); the last panel equals `degrade`'s output, or with the JPEG
    stage on, `degrade_to_codes`' 8-bit output.
    """
    height, width = clean.shape[:2]

    def shown(img: np.ndarray) -> np.ndarray:
        return np.clip(stages.resize_to(img, height, width), 0.0, 1.0)

    yield "original", stages.to_float(clean)
    light = scene_light(stages.resize_to(clean, *sensor_shape(clean.shape, p.downscale)), p)
    yield "+ illumination, exposure, cast", shown(stages.apply_gamma(light, 2.2))
    codes = sensor(np.maximum(stages.mosaic(light, matrix=scene_to_camera(p)), 0.0), p, rng)
    noisy = from_camera(stages.demosaic(stages.codes_to_linear(codes, SENSOR_BITS, PEDESTAL)), p)
    yield "+ raw noise, demosaic", shown(stages.apply_gamma(noisy, 2.2))
    toned = stages.apply_gamma(stages.subtract_black_level(noisy, p.black_level), p.tone_gamma)
    yield "+ black level, tone", shown(toned)
    denoised = stages.chroma_denoise(toned, p.chroma_nr, CHROMA_SIGMA)
    yield "+ chroma NR", shown(denoised)
    sharpened = np.clip(stages.sharpen(denoised, p.sharpen, SHARPEN_SIGMA), 0.0, 1.0)
    label = f"+ sharpening, resize 1/{p.downscale:g}" + (", black point" if p.out_black else "")
    out = stages.apply_black_point(shown(sharpened), p.out_black)
    yield label, out
    if p.jpeg_quality != stages.JPEG_OFF:
        yield f"+ JPEG q{p.jpeg_quality:g}", stages.to_float(encode(stages.quantize(out, 8), p))
