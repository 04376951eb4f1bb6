"""Tests for lowsim.imageio: photo formats, camera raw via DNG, packing, atomic PNG writes, errors."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from lowsim.errors import LowsimError
from lowsim.imageio import _bayer_channel_offsets, list_images, read_bayer_packed, read_image, read_image_float, write_png
from rawfixtures import SID_BLACK, SID_WHITE, random_bayer, write_bayer_dng


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(20240601))


def colour_ramp(height: int = 48, width: int = 64) -> np.ndarray:
    """An RGB uint8 image whose three channels differ strongly, so a channel swap is visible."""
    y, x = np.mgrid[0:height, 0:width]
    red = (x * 255 // (width - 1)).astype(np.uint8)
    green = (y * 255 // (height - 1)).astype(np.uint8)
    blue = np.full((height, width), 40, np.uint8)
    return np.dstack([red, green, blue])


def write_rgb_cv2(path: Path, rgb: np.ndarray) -> Path:
    """Write an RGB array with OpenCV (which expects BGR)."""
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))
    return path


# ---------------------------------------------------------------------------------------------- formats

def test_png_rgb_order_and_values(tmp_path: Path) -> None:
    rgb = colour_ramp()
    Image.fromarray(rgb, "RGB").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    np.testing.assert_array_equal(out, rgb)


def test_grayscale_png_is_replicated(tmp_path: Path) -> None:
    gray = colour_ramp()[:, :, 0]
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == gray.shape + (3,)
    for channel in range(3):
        np.testing.assert_array_equal(out[:, :, channel], gray)


def test_rgba_png_drops_alpha_keeps_colour(tmp_path: Path) -> None:
    rgb = colour_ramp()
    alpha = np.zeros(rgb.shape[:2], np.uint8)  # fully transparent: compositing would give black
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), rgb)


def test_gray_alpha_png(tmp_path: Path) -> None:
    gray = colour_ramp()[:, :, 1]
    Image.fromarray(np.dstack([gray, np.full_like(gray, 128)]), "LA").save(tmp_path / "la.png")
    out = read_image(tmp_path / "la.png")
    np.testing.assert_array_equal(out, np.repeat(gray[:, :, None], 3, axis=2))


def test_16bit_png_rgb_and_gray(tmp_path: Path, rng: np.random.Generator) -> None:
    rgb16 = rng.integers(0, 65536, size=(20, 30, 3), dtype=np.uint16)
    write_rgb_cv2(tmp_path / "c.png", rgb16)
    out = read_image(tmp_path / "c.png")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, rgb16)
    gray16 = rgb16[:, :, 0]
    assert cv2.imwrite(str(tmp_path / "g.png"), gray16)
    np.testing.assert_array_equal(read_image(tmp_path / "g.png"), np.dstack([gray16] * 3))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_tiff(tmp_path: Path, rng: np.random.Generator, dtype: type) -> None:
    top = np.iinfo(dtype).max
    rgb = rng.integers(0, top + 1, size=(16, 24, 3), dtype=dtype)
    write_rgb_cv2(tmp_path / "a.tif", rgb)
    out = read_image(tmp_path / "a.tif")
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, rgb)


def test_bmp_rgb_and_grayscale(tmp_path: Path) -> None:
    rgb = colour_ramp()
    Image.fromarray(rgb, "RGB").save(tmp_path / "a.bmp")
    np.testing.assert_array_equal(read_image(tmp_path / "a.bmp"), rgb)
    Image.fromarray(rgb[:, :, 1], "L").save(tmp_path / "g.bmp")  # palette BMP
    np.testing.assert_array_equal(read_image(tmp_path / "g.bmp"), np.dstack([rgb[:, :, 1]] * 3))


def test_jpeg_close_to_source(tmp_path: Path) -> None:
    rgb = colour_ramp()
    Image.fromarray(rgb, "RGB").save(tmp_path / "a.jpg", quality=95)
    out = read_image(tmp_path / "a.jpg")
    assert out.shape == rgb.shape and out.dtype == np.uint8
    # Lossy, but a channel swap or wrong decode would be off by ~100 on average.
    assert np.abs(out.astype(int) - rgb).mean() < 4


def test_jpeg_with_trailer_after_end_marker_is_accepted(tmp_path: Path) -> None:
    rgb = colour_ramp()
    Image.fromarray(rgb, "RGB").save(tmp_path / "a.jpg", quality=95)
    data = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "b.jpg").write_bytes(data + b"CAMERA-TRAILER" * 4)
    np.testing.assert_array_equal(read_image(tmp_path / "b.jpg"), read_image(tmp_path / "a.jpg"))


def test_read_image_float_scales_by_depth(tmp_path: Path) -> None:
    img8 = np.full((4, 4, 3), 255, np.uint8)
    img16 = np.full((4, 4, 3), 65535, np.uint16)
    write_png(tmp_path / "a.png", img8)
    write_png(tmp_path / "b.png", img16)
    for name in ("a.png", "b.png"):
        out = read_image_float(tmp_path / name)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, 1.0)


# ---------------------------------------------------------------------------------------------- write_png

@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_write_png_roundtrip_leaves_no_temp_files(tmp_path: Path, rng: np.random.Generator,
                                                  dtype: type) -> None:
    img = rng.integers(0, np.iinfo(dtype).max + 1, size=(24, 40, 3), dtype=dtype)
    target = tmp_path / "sub" / "x.png"
    assert write_png(target, img) == target
    np.testing.assert_array_equal(read_image(target), img)
    write_png(target, img[::-1].copy(), compression=9)  # overwrite in place
    np.testing.assert_array_equal(read_image(target), img[::-1])
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.png"]


def test_write_png_rejects_bad_arrays(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint8 or uint16"):
        write_png(tmp_path / "a.png", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="RGB"):
        write_png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    assert not list(tmp_path.iterdir())


def test_write_png_unwritable_is_lowsim_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(LowsimError, match="cannot write"):
        write_png(blocker / "a.png", np.zeros((4, 4, 3), np.uint8))


# ---------------------------------------------------------------------------------------------- list_images

def test_list_images_recursive_sorted_filtered(tmp_path: Path) -> None:
    img = np.zeros((4, 4, 3), np.uint8)
    for rel in ("b.png", "a/z.JPG", "a/c.tif", "d.bmp", "raw/x.ARW", ".hidden/h.png", "a/.tmp.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    write_png(tmp_path / "e.png", img)
    found = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert found == ["a/c.tif", "a/z.JPG", "b.png", "d.bmp", "e.png", "raw/x.ARW"]
    assert list_images(tmp_path / "e.png") == [tmp_path / "e.png"]


def test_list_images_real_clean_folder(clean_dir: Path) -> None:
    files = list_images(clean_dir)
    suffixes = {p.suffix.lower() for p in files}
    assert {".png", ".tif", ".bmp", ".jpg"} <= suffixes
    assert files == sorted(files, key=lambda p: p.relative_to(clean_dir).as_posix())


def test_every_real_clean_image_reads_as_rgb(clean_dir: Path) -> None:
    for path in list_images(clean_dir):
        img = read_image(path)
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype in (np.uint8, np.uint16), path


def test_list_images_missing_and_empty(tmp_path: Path) -> None:
    with pytest.raises(LowsimError, match="not found") as err:
        list_images(tmp_path / "nope")
    assert "nope" in str(err.value)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(LowsimError, match="no images found"):
        list_images(tmp_path / "empty")


# ---------------------------------------------------------------------------------------------- bad input

def _png_bytes(tmp_path: Path) -> bytes:
    write_png(tmp_path / "good.png", colour_ramp())
    return (tmp_path / "good.png").read_bytes()


def test_corrupt_png(tmp_path: Path) -> None:
    data = bytearray(_png_bytes(tmp_path))
    data[len(data) // 2] ^= 0xFF  # flip bits inside the compressed stream
    (tmp_path / "bad.png").write_bytes(bytes(data))
    with pytest.raises(LowsimError, match="not a readable image") as err:
        read_image(tmp_path / "bad.png")
    assert "bad.png" in str(err.value)


def test_truncated_png(tmp_path: Path) -> None:
    data = _png_bytes(tmp_path)
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(LowsimError, match="cut.png"):
        read_image(tmp_path / "cut.png")


def test_truncated_jpeg(tmp_path: Path) -> None:
    Image.fromarray(colour_ramp(96, 128), "RGB").save(tmp_path / "a.jpg", quality=95)
    data = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) * 2 // 3])
    # OpenCV alone decodes this with a grey bottom and no error; we must refuse it.
    with pytest.raises(LowsimError, match="truncated") as err:
        read_image(tmp_path / "cut.jpg")
    assert "cut.jpg" in str(err.value)


def test_non_image_file_with_image_extension(tmp_path: Path) -> None:
    (tmp_path / "text.png").write_text("hello, I am not a picture")
    with pytest.raises(LowsimError, match="not a readable image"):
        read_image(tmp_path / "text.png")


def test_unsupported_extension_empty_and_missing(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(LowsimError, match="unsupported file type '.txt'"):
        read_image(tmp_path / "notes.txt")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(LowsimError, match="empty"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(LowsimError, match="not found"):
        read_image(tmp_path / "missing.png")


def test_float_tiff_is_refused(tmp_path: Path) -> None:
    assert cv2.imwrite(str(tmp_path / "f.tif"), np.full((4, 4, 3), 0.5, np.float32))
    with pytest.raises(LowsimError, match="8- or 16-bit"):
        read_image(tmp_path / "f.tif")


def test_unreadable_raw(tmp_path: Path) -> None:
    (tmp_path / "junk.ARW").write_bytes(b"definitely not sensor data " * 200)
    for reader in (read_image, read_bayer_packed):
        with pytest.raises(LowsimError, match="rawpy cannot read") as err:
            reader(tmp_path / "junk.ARW")
        assert "junk.ARW" in str(err.value) and "b'" not in str(err.value)


# ---------------------------------------------------------------------------------------------- camera raw

def expected_packed(bayer: np.ndarray, offsets: list[tuple[int, int]]) -> np.ndarray:
    """Reference packing: (raw - black) / (white - black), clipped, channels at the given offsets."""
    scaled = np.clip((bayer.astype(np.float64) - SID_BLACK) / (SID_WHITE - SID_BLACK), 0, 1)
    return np.stack([scaled[r::2, c::2] for r, c in offsets], axis=-1)


@pytest.mark.parametrize(("pattern", "offsets"), [
    ("RGGB", [(0, 0), (0, 1), (1, 1), (1, 0)]),  # SID's pack_raw order R, G, B, G
    ("BGGR", [(1, 1), (0, 1), (0, 0), (1, 0)]),
    ("GRBG", [(0, 1), (0, 0), (1, 0), (1, 1)]),
])
def test_read_bayer_packed_recovers_written_values(tmp_path: Path, rng: np.random.Generator,
                                                   pattern: str, offsets: list[tuple[int, int]]) -> None:
    bayer = random_bayer(rng, 40, 56)
    bayer[0, 0], bayer[0, 2] = 100, SID_WHITE  # below black -> 0, at white -> 1
    path = write_bayer_dng(tmp_path / "x.dng", bayer, pattern=pattern)
    packed = read_bayer_packed(path)
    assert packed.shape == (20, 28, 4) and packed.dtype == np.float32
    np.testing.assert_allclose(packed, expected_packed(bayer, offsets), atol=1e-6)
    assert packed.min() == 0.0 and packed.max() == 1.0


def test_dng_bytes_under_arw_name_read_the_same(tmp_path: Path, rng: np.random.Generator) -> None:
    bayer = random_bayer(rng, 32, 48)
    dng = write_bayer_dng(tmp_path / "a.dng", bayer)
    arw = write_bayer_dng(tmp_path / "a.ARW", bayer)
    np.testing.assert_array_equal(read_bayer_packed(dng), read_bayer_packed(arw))
    np.testing.assert_array_equal(read_image(dng), read_image(arw))


def test_read_image_decodes_dng_to_16bit_rgb_without_auto_brightening(tmp_path: Path) -> None:
    flat = np.full((32, 48), SID_BLACK + 1500, np.uint16)
    dim = read_image(write_bayer_dng(tmp_path / "dim.dng", flat))
    bright = read_image(write_bayer_dng(tmp_path / "bright.dng", (flat - SID_BLACK) * 2 + SID_BLACK))
    assert dim.shape == (32, 48, 3) and dim.dtype == np.uint16
    # Auto-brightening would stretch both flat frames to the same level; fixed settings keep the 2x.
    assert bright.mean() > 1.2 * dim.mean()
    assert 0 < dim.mean() < 65535
    # Camera white balance (neutral AsShotNeutral here) keeps a grey mosaic grey.
    channel_means = dim.reshape(-1, 3).mean(axis=0)
    assert channel_means.max() - channel_means.min() < 0.02 * channel_means.mean()


def test_non_bayer_sensor_cannot_be_packed() -> None:
    xtrans = np.array([[1, 1, 0, 1, 1, 2], [1, 1, 2, 1, 1, 0], [2, 0, 1, 0, 2, 1],
                       [1, 1, 2, 1, 1, 0], [1, 1, 0, 1, 1, 2], [0, 2, 1, 2, 0, 1]])
    with pytest.raises(LowsimError, match=r"x.RAF: not a 2x2 Bayer sensor \(colour filter pattern \(6, 6\)\)"):
        _bayer_channel_offsets(xtrans, "RGBG", Path("x.RAF"))
    with pytest.raises(LowsimError, match="unsupported colour filter RGGG"):
        _bayer_channel_offsets(np.array([[0, 1], [1, 1]]), "RGBG", Path("x.dng"))
