"""Reading and writing images: ordinary photos, camera raw files and packed Bayer mosaics.

Conventions (every reader returns them, whatever the file held):

- ``read_image`` returns an (H, W, 3) RGB array, ``uint8`` or ``uint16`` as stored (8-bit files stay 8-bit,
  16-bit PNG/TIFF stay 16-bit; camera raw decodes to 16-bit).
- Grayscale is replicated to three channels. An alpha channel is dropped and the colour kept as stored (not
  composited on black: the stored colour is the scene; alpha is a compositing hint we have no use for).
- EXIF orientation is ignored (pixels as stored), so a photo and its degraded copy always share a layout.
- Camera raw (NEF, CR2, ARW, DNG, RAF) is identified by content and decoded by rawpy/LibRaw with fixed settings,
  the ones the Learning-to-See-in-the-Dark code (and the founding paper, which reuses it) used for its ground
  truth: camera white balance, no auto-brightening, 16 bits per sample, sRGB primaries with LibRaw's default
  BT.709-style gamma (2.222, 4.5), full size AHD demosaicing. See ``RAW_POSTPROCESS``.
- A truncated JPEG (no end-of-image marker, and Pillow refuses it) is an error, not a silently grey bottom.
- ``read_bayer_packed`` gives SID's network input: the 2x2 Bayer cells packed into 4 channels in the order
  R, G, B, G (SID's ``pack_raw``), black-subtracted and scaled by the file's own black/white levels.

Every problem with a user's file raises ``LowsimError`` naming the file.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from lowsim.errors import LowsimError, ResourceLimitError
from lowsim.safe_io import atomic_write_bytes

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})
RAW_EXTENSIONS: frozenset[str] = frozenset({".nef", ".cr2", ".arw", ".dng", ".raf"})
ALL_EXTENSIONS: frozenset[str] = IMAGE_EXTENSIONS | RAW_EXTENSIONS
JPEG_MAGIC = b"\xff\xd8\xff"

# zlib level 1. Measured on 512x512 8-bit RGB (Kodak and LOL-low resized, 2-core machine, median ms):
# level 0 writes in 8-9 ms but files are 770 KiB; level 1: 17-18 ms write, 7-9 ms read, 310-425 KiB;
# level 3: 25 ms for 2-5 % smaller; level 6: 67-87 ms; level 9: 150-426 ms for 4-13 % smaller.
DEFAULT_PNG_COMPRESSION = 1

# Decompression-bomb guard: images with more pixels than this are refused from their header, before any
# decoding. 100 MP covers every current camera up to medium format (~1.2 GB once converted to float32);
# a 416 KB PNG can claim 20,000 x 20,000 pixels. Set per command with --max-pixels (or LOWSIM_MAX_PIXELS).
DEFAULT_MAX_PIXELS = 100_000_000
MAX_PIXELS_ENV = "LOWSIM_MAX_PIXELS"

# Fixed rawpy.postprocess settings (SID's: use_camera_wb, no_auto_bright, output_bps=16), made explicit.
RAW_POSTPROCESS: dict[str, object] = {
    "use_camera_wb": True,
    "no_auto_bright": True,
    "output_bps": 16,
    "half_size": False,
    "output_color_name": "sRGB",
}


def is_raw(path: str | Path) -> bool:
    """True when the file name has a camera-raw extension."""
    return Path(path).suffix.lower() in RAW_EXTENSIONS


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, or a LowsimError saying why they cannot be read."""
    if not path.exists():
        raise LowsimError("file not found", path)
    if path.is_dir():
        raise LowsimError("is a directory, expected an image file", path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise LowsimError(f"cannot read ({err.strerror or err})", path) from None
    if not data:
        raise LowsimError("file is empty, expected an image", path)
    return data


def _jpeg_is_truncated(data: bytes) -> bool:
    """True when a JPEG lacks its end-of-image marker and Pillow cannot decode it to the end."""
    # Entropy-coded data never contains FFD9, so a complete file ends with it (modulo padding bytes).
    if data.rstrip(b"\x00\r\n \t").endswith(b"\xff\xd9"):
        return False
    try:  # Some cameras append trailers after EOI: let Pillow (a matplotlib dependency) decide.
        import io

        from PIL import Image, ImageFile

        if ImageFile.LOAD_TRUNCATED_IMAGES:  # someone relaxed Pillow globally: it cannot judge for us
            return True
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except ImportError:
        return True
    except Exception:  # noqa: BLE001 - any decoder failure means the file is damaged
        return True
    return False


def _to_rgb(img: np.ndarray, path: Path) -> np.ndarray:
    """OpenCV's BGR / BGRA / gray array -> contiguous (H, W, 3) RGB of the same dtype."""
    if img.dtype not in (np.uint8, np.uint16):
        raise LowsimError(f"unsupported sample type {img.dtype}, expected 8- or 16-bit integers", path)
    if img.ndim == 2:
        return np.ascontiguousarray(np.repeat(img[:, :, None], 3, axis=2))
    channels = img.shape[2]
    if channels == 1:
        return np.ascontiguousarray(np.repeat(img, 3, axis=2))
    if channels == 2:  # gray + alpha
        return np.ascontiguousarray(np.repeat(img[:, :, :1], 3, axis=2))
    if channels in (3, 4):
        return np.ascontiguousarray(img[:, :, 2::-1])  # BGR(A) -> RGB, alpha dropped
    raise LowsimError(f"unsupported image with {channels} channels, expected 1 to 4", path)


def set_max_pixels(limit: int | None) -> None:
    """Set the decoded-pixel cap for this process and the worker processes it starts (None: the default)."""
    if limit is None:
        return
    if limit <= 0:
        raise LowsimError(f"--max-pixels must be a positive number of pixels, got {limit}")
    os.environ[MAX_PIXELS_ENV] = str(int(limit))


def max_pixels() -> int:
    """The decoded-pixel cap in force: $LOWSIM_MAX_PIXELS, else DEFAULT_MAX_PIXELS."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(text)
    except ValueError:
        raise LowsimError(f"{MAX_PIXELS_ENV} must be a positive integer, got {text!r}") from None
    if value <= 0:
        raise LowsimError(f"{MAX_PIXELS_ENV} must be a positive integer, got {text!r}")
    return value


def check_pixel_count(width: int, height: int, path: Path) -> None:
    """Refuse an image whose stated size exceeds the decoded-pixel cap (before it is decoded)."""
    limit = max_pixels()
    if width * height > limit:
        raise ResourceLimitError(f"image is {width}x{height} = {width * height:,} pixels, over the limit of "
                                 f"{limit:,} (a decompression bomb?); raise it with --max-pixels if it is "
                                 "genuine", path)


def _header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the image header alone (Pillow decodes nothing on open), or None if unknown."""
    import io
    import warnings

    from PIL import Image

    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # we apply our own cap; Pillow's would refuse before telling the size
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                return int(im.size[0]), int(im.size[1])
    except Exception:  # noqa: BLE001 - Pillow cannot parse it: OpenCV decides below
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _decode_image(data: bytes, path: Path) -> np.ndarray:
    """Decode PNG/JPEG/TIFF/BMP bytes with OpenCV into (H, W, 3) RGB uint8/uint16."""
    size = _header_size(data)
    if size is not None:
        check_pixel_count(*size, path)
    if data[:3] == JPEG_MAGIC and _jpeg_is_truncated(data):  # by content: misnamed files too
        raise LowsimError("truncated or corrupt JPEG (no end-of-image marker)", path)
    try:
        img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        img = None
    if img is None or img.size == 0:
        raise LowsimError("not a readable image (corrupt or unsupported format)", path)
    return _to_rgb(img, path)


def _libraw_message(err: Exception) -> str:
    """LibRaw's error text without the bytes repr (b'...')."""
    text = err.args[0] if err.args else ""
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _open_raw(path: Path):  # -> rawpy.RawPy
    """Open a camera raw file with rawpy, or raise a LowsimError naming the file."""
    import rawpy

    if not path.exists():
        raise LowsimError("file not found", path)
    try:
        return rawpy.imread(str(path))
    except (rawpy.LibRawError, OSError, ValueError) as err:
        raise LowsimError(f"rawpy cannot read this camera raw file ({_libraw_message(err)})",
                          path) from None


def read_raw_rgb(path: str | Path) -> np.ndarray:
    """Decode a camera raw file to (H, W, 3) uint16 sRGB with the fixed RAW_POSTPROCESS settings."""
    import rawpy

    path = Path(path)
    settings = dict(RAW_POSTPROCESS)
    colour = getattr(rawpy.ColorSpace, str(settings.pop("output_color_name")))
    with _open_raw(path) as raw:
        check_pixel_count(int(raw.sizes.width), int(raw.sizes.height), path)
        try:
            rgb = raw.postprocess(output_color=colour, **settings)
        except (rawpy.LibRawError, ValueError) as err:
            raise LowsimError(f"rawpy cannot decode this camera raw file ({_libraw_message(err)})",
                              path) from None
    return np.ascontiguousarray(rgb, dtype=np.uint16)


def read_image(path: str | Path) -> np.ndarray:
    """Read any supported image or camera raw file as (H, W, 3) RGB uint8 or uint16."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in RAW_EXTENSIONS:
        return read_raw_rgb(path)
    if suffix not in IMAGE_EXTENSIONS:
        raise LowsimError(f"unsupported file type {suffix or '(no extension)'!r}, expected one of "
                          f"{', '.join(sorted(ALL_EXTENSIONS))}", path)
    return _decode_image(_read_bytes(path), path)


def read_image_float(path: str | Path) -> np.ndarray:
    """read_image scaled to float32 in [0, 1] (divided by 255 or 65535 per the stored depth)."""
    from lowsim.degrade import to_float

    return to_float(read_image(path))


def _bayer_channel_offsets(pattern: np.ndarray, color_desc: str, path: Path) -> list[tuple[int, int]]:
    """Row/column offsets in the 2x2 cell of R, G, B, G (SID's channel order) from rawpy's raw_pattern."""
    if pattern is None or pattern.shape != (2, 2):
        shape = None if pattern is None else pattern.shape
        raise LowsimError(f"not a 2x2 Bayer sensor (colour filter pattern {shape}), cannot pack to 4 "
                          "channels", path)
    letters = {(r, c): color_desc[int(pattern[r, c])] for r in range(2) for c in range(2)}
    reds = [pos for pos, ch in letters.items() if ch == "R"]
    blues = [pos for pos, ch in letters.items() if ch == "B"]
    greens = [pos for pos, ch in letters.items() if ch == "G"]  # raster order: first G is SID's G1
    if len(reds) != 1 or len(blues) != 1 or len(greens) != 2:
        raise LowsimError(f"unsupported colour filter {''.join(letters.values())}, expected a Bayer "
                          "RGGB-family pattern", path)
    return [reds[0], greens[0], blues[0], greens[1]]


def read_bayer_packed(path: str | Path) -> np.ndarray:
    """Read a Bayer raw file as (H/2, W/2, 4) float32 R,G,B,G, (raw - black)/(white - black) in [0, 1]."""
    path = Path(path)
    with _open_raw(path) as raw:
        try:
            mosaic = np.asarray(raw.raw_image_visible, dtype=np.float32)
            pattern = None if raw.raw_pattern is None else np.asarray(raw.raw_pattern)
            color_desc = raw.color_desc.decode("ascii", "replace")
            blacks = np.asarray(raw.black_level_per_channel, dtype=np.float32)
            white = float(raw.white_level)
        except Exception as err:  # noqa: BLE001 - LibRaw raises many types for damaged files
            raise LowsimError(f"rawpy cannot read the Bayer data ({_libraw_message(err)})",
                              path) from None
    offsets = _bayer_channel_offsets(pattern, color_desc, path)
    height, width = (mosaic.shape[0] // 2) * 2, (mosaic.shape[1] // 2) * 2
    planes = []
    for row, col in offsets:
        black = float(blacks[int(pattern[row, col])])
        if white <= black:
            raise LowsimError(f"white level {white:g} is not above black level {black:g}", path)
        plane = mosaic[row:height:2, col:width:2]
        planes.append((plane - black) / (white - black))
    return np.clip(np.stack(planes, axis=-1), 0.0, 1.0).astype(np.float32, copy=False)


def write_png(path: str | Path, img: np.ndarray, compression: int = DEFAULT_PNG_COMPRESSION) -> Path:
    """Write an (H, W, 3) uint8/uint16 RGB array as PNG atomically (temp file + rename); return the path."""
    path = Path(path)
    if img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"write_png needs uint8 or uint16, got {img.dtype}")
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"write_png needs an (H, W, 3) RGB array, got shape {img.shape}")
    if not 0 <= compression <= 9:
        raise ValueError(f"PNG compression must be 0..9, got {compression}")
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(img[:, :, ::-1]),
                               [cv2.IMWRITE_PNG_COMPRESSION, int(compression)])
    if not ok:
        raise LowsimError("OpenCV could not encode the PNG", path)
    # No fsync: the rename already guarantees readers never see a partial file, and per-file fsync would
    # dominate write time; a resume re-checks every file's sha256 anyway.
    atomic_write_bytes(path, encoded.tobytes(), fsync=False)
    return path


def _is_listable(path: Path, root: Path) -> bool:
    """A supported image whose path below root has no hidden part (skips .tmp files and .git)."""
    if path.suffix.lower() not in ALL_EXTENSIONS or not path.is_file():
        return False
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def list_images(root: str | Path) -> list[Path]:
    """All supported images and raw files under root (recursive, hidden entries skipped), sorted by path."""
    root = Path(root)
    if not root.exists():
        raise LowsimError("image folder not found", root)
    if root.is_file():
        if root.suffix.lower() not in ALL_EXTENSIONS:
            raise LowsimError(f"not a supported image (extension {root.suffix or 'none'})", root)
        return [root]
    found = sorted((p for p in root.rglob("*") if _is_listable(p, root)),
                   key=lambda p: p.relative_to(root).as_posix())
    if not found:
        raise LowsimError(f"no images found (looked recursively for "
                          f"{', '.join(sorted(ALL_EXTENSIONS))})", root)
    return found
