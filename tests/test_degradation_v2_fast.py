"""Model v2's fast sampler (lowsim.degradation.v2_fast): its deterministic stages equal the reference's, its
noise has the reference's statistics (and a wrong shot gain would be seen), and it reproduces from its seed;
the reference sampler's bytes are pinned."""
from __future__ import annotations

import dataclasses
import hashlib

import cv2
import numpy as np
import pytest

from lowsim.degradation import stages, v2, v2_fast
from lowsim.degradation.registry import get_model
from lowsim.params import IspParams

LEVELS = np.linspace(0, 255, 16).astype(np.uint8)
# 16 flat bands of 16 columns (black to white), 192 rows: one intensity bin per band
BANDS = np.ascontiguousarray(np.repeat(np.repeat(np.repeat(LEVELS[None, :, None], 16, 1), 3, 2), 192, 0))
NOISY = IspParams(exposure=0.5, shot_gain=2e-3, read_sigma=2e-4, black_level=1e-3, chroma_nr=0.6, sharpen=1.0,
                  tone_gamma=1.8, downscale=2.0)


def band_statistics(degrade, p: IspParams, seeds=range(3)) -> tuple[np.ndarray, np.ndarray]:
    """(mean, sd) of each band and channel (16, 3), band edges left out, averaged over the seeds."""
    means, sds = [], []
    for seed in seeds:
        out = degrade(BANDS, p, np.random.default_rng(seed)).astype(np.float64)
        bands = out[4:-4].reshape(out.shape[0] - 8, 16, 16, 3)[:, :, 4:-4]
        means.append(bands.mean(axis=(0, 2)))
        sds.append(bands.std(axis=(0, 2)))
    return np.mean(means, axis=0), np.mean(sds, axis=0)


def same_statistics(reference: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray]) -> bool:
    """Means within 1 level of 255, noise sd within 8 % per lit band and 2 % over all of them."""
    ratio = other[1][1:] / reference[1][1:]  # band 0 (black) holds read noise only: its mean is checked
    return bool(np.abs(other[0] - reference[0]).max() * 255 < 1.0 and np.abs(ratio - 1).max() < 0.08
                and abs(ratio.mean() - 1) < 0.02)


def test_fast_noise_has_the_reference_statistics_per_intensity_bin():
    raw = v2_fast.raw_mosaic(stages.resize_to(BANDS, 384, 512), NOISY)
    dark_share = (raw < v2_fast.POISSON_BELOW * NOISY.shot_gain).mean()
    assert 0.2 < dark_share < 0.9  # both draws are exercised: exact Poisson and the Gaussian
    reference = band_statistics(v2.degrade, NOISY)
    assert same_statistics(reference, band_statistics(v2_fast.degrade, NOISY))


def test_the_statistics_check_sees_a_wrong_shot_gain():
    reference = band_statistics(v2.degrade, NOISY)
    wrong = dataclasses.replace(NOISY, shot_gain=NOISY.shot_gain * 1.5)
    assert not same_statistics(reference, band_statistics(v2_fast.degrade, wrong))
    assert not same_statistics(reference, band_statistics(v2.degrade, wrong))


@pytest.mark.parametrize("lam", [0.0, 0.004, 0.7, 5.3, 37.9, 99.9])
def test_poisson_counts_have_poisson_moments(lam: float):
    counts = v2_fast.poisson_counts(np.full(200_000, lam), np.random.default_rng(3)).astype(np.float64)
    tolerance = 5 * np.sqrt(max(lam, 1e-3) / counts.size)
    assert counts.mean() == pytest.approx(lam, abs=tolerance)
    assert counts.var() == pytest.approx(lam, abs=5 * tolerance * np.sqrt(2 * lam + 1))
    if lam > 1:
        skew = ((counts - counts.mean()) ** 3).mean() / counts.var() ** 1.5
        assert skew == pytest.approx(1 / np.sqrt(lam), abs=0.05)


def test_table_normals_are_standard():
    z = v2_fast.table_normals(np.random.default_rng(0), (500, 400))
    assert z.dtype == np.float32 and z.shape == (500, 400)
    z = z.astype(np.float64)
    assert abs(z.mean()) < 0.01 and z.std() == pytest.approx(1.0, abs=0.01)
    assert ((z > 1.0).mean() == pytest.approx(0.1587, abs=0.005)) and np.abs(z).max() < 4.5


def test_fast_deterministic_stages_equal_the_reference():
    p = dataclasses.replace(NOISY, chroma_nr=0.8, sharpen=3.0)
    scene = stages.resize_to(BANDS, 96, 130)
    np.testing.assert_allclose(v2_fast.raw_mosaic(scene, p), v2.raw_mosaic(scene, p), atol=1e-7)
    codes = np.random.default_rng(1).integers(300, 9000, (96, 130)).astype(np.int32)
    demosaiced, low = v2_fast.demosaic_codes(codes)
    np.testing.assert_array_equal(demosaiced.astype(np.float32) / 4 + low, stages.demosaic(codes.astype(np.float32)))
    fast = v2_fast.sharpen_clip(v2_fast.chroma_denoise(v2_fast.to_toned(demosaiced, low, p), p.chroma_nr,
                                                       v2.CHROMA_SIGMA), p.sharpen, v2.SHARPEN_SIGMA)
    reference = v2.process(stages.codes_to_linear(codes.astype(np.uint16), v2.SENSOR_BITS, v2.PEDESTAL), p)
    np.testing.assert_allclose(fast, reference, atol=2e-5)


def test_demosaic_of_a_full_range_mosaic_takes_the_float_stage_and_is_still_exact():
    codes = np.random.default_rng(2).integers(0, 16895, (40, 64)).astype(np.int32)
    demosaiced, low = v2_fast.demosaic_codes(codes)
    assert demosaiced.dtype == np.float32 and low == 0
    np.testing.assert_array_equal(demosaiced / 4, stages.demosaic(codes.astype(np.float32)))


def test_fast_sampler_reproduces_from_its_seed_and_is_the_default():
    p = dataclasses.replace(NOISY, downscale=3.0, row_sigma=1e-4)
    one = v2_fast.degrade_to_codes(BANDS, p, np.random.default_rng(5), sampler=v2.FAST_SAMPLER)
    two = v2_fast.degrade_to_codes(BANDS, p, np.random.default_rng(5), sampler=v2.FAST_SAMPLER)
    other = v2_fast.degrade_to_codes(BANDS, p, np.random.default_rng(6), sampler=v2.FAST_SAMPLER)
    np.testing.assert_array_equal(one, two)
    assert one.shape == BANDS.shape and np.any(one != other)
    assert get_model("v2").choose_sampler(np.dtype(np.uint8), p, 8) == v2.FAST_SAMPLER
    assert v2.FAST_SAMPLER in get_model("v2").samplers and v2.SAMPLER in get_model("v2").samplers
    with pytest.raises(ValueError, match="unknown sampler"):
        v2_fast.degrade_to_codes(BANDS, p, np.random.default_rng(5), sampler="isp-other/v2")


# sha256 of the reference sampler's codes, as lowsim wrote them before the fast sampler existed (numpy 2.4.6,
# OpenCV 5.0.0): rows recorded with isp-reference/v2 must keep regenerating these bytes.
REFERENCE_DIGESTS = {8: "65b95112770332dd4d78507e8e9f862859cf27542c961b9ae10ef6de1cb9dd4d",
                     16: "e8ec32d0c6fe97a87f73516c565438067514f517dbb89fbe4458141263707552"}


@pytest.mark.skipif((np.__version__, cv2.__version__) != ("2.4.6", "5.0.0"),
                    reason="digests recorded with numpy 2.4.6 and OpenCV 5.0.0")
@pytest.mark.parametrize("bit_depth", [8, 16])
def test_reference_sampler_bytes_are_unchanged(bit_depth: int):
    y, x = np.mgrid[0:40, 0:56]
    photo = np.stack([x * 4, y * 6, (x + y) * 2], -1).astype(np.uint8)
    p = IspParams(exposure=0.05, shot_gain=2e-3, read_sigma=1e-3, black_level=1e-3, chroma_nr=0.6, sharpen=2.0,
                  tone_gamma=1.8, downscale=3.0, row_sigma=2e-4)
    for sampler in (None, v2.SAMPLER):
        codes = v2.degrade_to_codes(photo, p, np.random.default_rng(11), bit_depth=bit_depth, sampler=sampler)
        assert hashlib.sha256(codes.tobytes()).hexdigest() == REFERENCE_DIGESTS[bit_depth]


def _degrade_in(strip_pixels: int, monkeypatch, clean: np.ndarray, p: IspParams, seed: int, bit_depth: int = 8):
    monkeypatch.setattr(v2_fast, "STRIP_PIXELS", strip_pixels)
    return v2_fast.degrade_to_codes(clean, p, np.random.default_rng(seed), bit_depth, sampler=v2.FAST_SAMPLER)


@pytest.mark.parametrize("downscale, chroma_nr, sharpen", [(3.0, 0.8, 4.0), (2.0, 0.0, 1.0), (1.0, 0.5, 0.0)])
def test_strips_give_the_bytes_of_one_pass(monkeypatch, downscale: float, chroma_nr: float, sharpen: float):
    p = dataclasses.replace(NOISY, downscale=downscale, chroma_nr=chroma_nr, sharpen=sharpen, out_black=0.01)
    clean = stages.resize_to(BANDS, 66, 90)  # a sensor of exactly `downscale` times its rows and columns
    sensor = v2.sensor_shape(clean.shape, downscale)
    # strips of the smallest height, and ~2/5 of the sensor (two strips and a short last one)
    for strip_pixels in (1 << 9, int(sensor[0] * sensor[1] / 2.5)):
        monkeypatch.setattr(v2_fast, "STRIP_PIXELS", strip_pixels)
        rows = v2_fast.strip_rows(sensor, clean.shape)
        assert rows is not None and rows % (2 * int(downscale)) == 0 and rows < sensor[0]
        for bit_depth in (8, 16):
            stripped = _degrade_in(strip_pixels, monkeypatch, clean, p, 4, bit_depth)
            np.testing.assert_array_equal(stripped, _degrade_in(1 << 62, monkeypatch, clean, p, 4, bit_depth))


def test_strips_only_where_the_sensor_is_an_exact_multiple_and_large():
    assert v2_fast.strip_rows((1536, 1536), (512, 512)) % 6 == 0
    assert v2_fast.strip_rows((1444, 962), (481, 321)) is None  # rounded to even: not 3x, one pass
    assert v2_fast.strip_rows((96, 128), (32, 128 // 3)) is None
    assert v2_fast.strip_rows((600, 600), (200, 200)) is None  # below two strips' worth of pixels


def test_a_mosaic_too_wide_for_16_bits_takes_one_pass_with_the_same_bytes(monkeypatch):
    p = dataclasses.replace(NOISY, exposure=40.0, black_level=0.0, downscale=3.0)  # white beside black bands
    one = _degrade_in(1 << 62, monkeypatch, BANDS, p, 2)
    assert v2_fast.scaled_codes(np.array([[0, 16895]])) is None
    np.testing.assert_array_equal(_degrade_in(1 << 9, monkeypatch, BANDS, p, 2), one)


# sha256 of the fast sampler's codes, as lowsim wrote them before `finish` worked in strips (numpy 2.4.6, OpenCV
# 5.0.0): rows recorded with isp-fast/v2 must keep regenerating these bytes, in strips or in one pass.
# (tone gamma 0.8 also from before `tone_curve` kept its results off subnormal floats)
FAST_DIGESTS = {(8, 1.8): "edf10786188527fa9dfab5f6c0e4a140425cec58552095fba6bf1299ec8f23a9",
                (16, 1.8): "df3b6235bb685456afa7cf5b9777f864a4def26bf6322487dafccd5156c0f7ec",
                (8, 0.8): "a933cdf6a1e9cc76fb9a13a4e3d33e229abcd668baaa0f93b99848c63bf39261",
                (16, 0.8): "27bd07f47e0c31355ca54beabfa16c1d18de3ee38ba8e4d8dad3293aff387e08"}


@pytest.mark.skipif((np.__version__, cv2.__version__) != ("2.4.6", "5.0.0"),
                    reason="digests recorded with numpy 2.4.6 and OpenCV 5.0.0")
@pytest.mark.parametrize("bit_depth, tone_gamma", sorted(FAST_DIGESTS))
def test_fast_sampler_bytes_are_unchanged(monkeypatch, bit_depth: int, tone_gamma: float):
    y, x = np.mgrid[0:120, 0:150]
    photo = np.stack([x * 1.7, y * 2, (x + y)], -1).astype(np.uint8)
    p = IspParams(exposure=0.05, shot_gain=2e-3, read_sigma=1e-3, black_level=1e-3, chroma_nr=0.6, sharpen=2.0,
                  tone_gamma=tone_gamma, downscale=3.0, row_sigma=2e-4, out_black=0.01)
    for strip_pixels in (1 << 13, 1 << 62):
        codes = _degrade_in(strip_pixels, monkeypatch, photo, p, 11, bit_depth)
        assert hashlib.sha256(codes.tobytes()).hexdigest() == FAST_DIGESTS[bit_depth, tone_gamma]


@pytest.mark.parametrize("gamma", [0.5, 0.997, 1.003, 1.5, 5.0])
def test_tone_curve_is_the_reference_and_keeps_off_subnormal_floats(gamma: float):
    levels = np.concatenate([[0.0, -0.1, 1e-38, 1e-30, 1e-12, 2.0], np.geomspace(1e-9, 1.0, 200)]).astype(np.float32)
    fast = v2_fast.tone_curve(levels.copy(), gamma)
    # the clip floor and the reset of zeros move a value by < 1e-7, far below a 16-bit level (1.5e-5)
    np.testing.assert_allclose(fast, stages.apply_gamma(levels, gamma), rtol=2e-6, atol=1e-7)
    assert not np.any((fast > 0) & (fast < np.finfo(np.float32).tiny))  # numpy's slow path: a 3-100x slower power
