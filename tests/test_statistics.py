"""lowsim.statistics on images with known properties, and on the real LOL lows."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from lowsim.imageio import read_image
from lowsim.statistics import (
    MASK_LEVELS,
    NOISE_BINS,
    STATISTICS,
    dark_statistics,
    highpass_gain,
    highpass_residual,
    noise_profile,
    pair_noise_profile,
)

SIZE = 192


def noisy_flat(level: float, sd: float, seed: int = 0, size: int = SIZE) -> np.ndarray:
    """Float (H, W, 3) in [0, 1]: a flat image at `level` 8-bit levels plus white noise of sd `sd` levels."""
    rng = np.random.default_rng(seed)
    return ((level + sd * rng.standard_normal((size, size, 3))) / 255.0).astype(np.float32)


def test_keys_are_the_report_order() -> None:
    assert tuple(dark_statistics(noisy_flat(40, 2))) == STATISTICS


def test_highpass_residual_shapes_and_identity() -> None:
    img = (noisy_flat(40, 3) * 255).round().astype(np.uint8)
    residual, blurred = highpass_residual(img)
    assert residual.shape == blurred.shape == img.shape
    assert residual.dtype == blurred.dtype == np.float32
    np.testing.assert_allclose(residual + blurred, img.astype(np.float32), atol=1e-4)


def test_white_noise_sd_is_known_sd_times_highpass_gain() -> None:
    gain = highpass_gain()
    assert 0.9 < gain < 1.0  # sigma 1.5 blur: sqrt(1 - 2*k0 + sum k^2) = 0.945
    for sd in (1.0, 3.0, 6.0):
        stats = dark_statistics(noisy_flat(60, sd, seed=int(sd)))
        assert stats["residual_sd"] == pytest.approx(sd * gain, rel=0.03)


def test_uint8_quantisation_adds_a_twelfth_of_a_level() -> None:
    img = np.clip(np.round(noisy_flat(60, 2.0) * 255), 0, 255).astype(np.uint8)
    expected = math.sqrt(2.0 ** 2 + 1 / 12) * highpass_gain()
    assert dark_statistics(img)["residual_sd"] == pytest.approx(expected, rel=0.03)


def test_uint16_is_scaled_to_8bit_levels() -> None:
    img8 = np.clip(np.round(noisy_flat(30, 3.0) * 255), 0, 255).astype(np.uint8)
    a, b = dark_statistics(img8), dark_statistics(img8.astype(np.uint16) * 257)
    for key in STATISTICS:
        assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key


def test_independent_channels_are_uncorrelated() -> None:
    assert abs(dark_statistics(noisy_flat(50, 3))["channel_corr"]) < 0.03


def test_replicated_channel_is_fully_correlated() -> None:
    grey = noisy_flat(50, 3)[:, :, :1]
    assert dark_statistics(np.repeat(grey, 3, axis=2))["channel_corr"] > 0.999


def test_spatial_correlation_rises_with_blurred_noise() -> None:
    white = noisy_flat(50, 3)
    # White noise: only the blur's own small negative correlation is left.
    assert -0.15 < dark_statistics(white)["spatial_corr"] < 0.0
    noise = white - 50 / 255
    smooth = 50 / 255 + cv2.GaussianBlur(noise, (0, 0), 0.8) * 3
    assert dark_statistics(smooth)["spatial_corr"] > 0.3


def test_colour_ratios_brightness_and_black_clip() -> None:
    img = np.empty((64, 64, 3), np.uint8)
    img[...] = (30, 20, 10)  # grey mean 20
    img[:16, :, :] = 0        # a quarter of the pixels, so a quarter of the channel values, at 0
    stats = dark_statistics(img)
    assert stats["red_ratio"] == pytest.approx(1.5)
    assert stats["blue_ratio"] == pytest.approx(0.5)
    assert stats["brightness"] == pytest.approx(0.75 * 20 / 255)
    assert stats["clipped_black"] == pytest.approx(0.25)


def test_too_dark_image_has_no_noise_statistics() -> None:
    img = np.ones((64, 64, 3), np.uint8)  # blurred value 1 < MASK_LEVELS[0] everywhere
    assert MASK_LEVELS[0] > 1
    stats = dark_statistics(img)
    assert math.isnan(stats["residual_sd"]) and math.isnan(stats["channel_corr"])
    assert stats["brightness"] == pytest.approx(1 / 255)


def test_rejects_a_grey_image() -> None:
    with pytest.raises(ValueError, match="RGB"):
        dark_statistics(np.zeros((8, 8), np.uint8))


def test_noise_profile_follows_signal_dependent_noise() -> None:
    # Left half at 10 levels with sd 1, right half at 50 levels with sd 4.
    left, right = noisy_flat(10, 1.0, seed=1), noisy_flat(50, 4.0, seed=2)
    img = np.concatenate([left, right], axis=1)
    sd, counts = noise_profile(img)
    assert len(sd) == len(counts) == len(NOISE_BINS) - 1
    bin_of = {level: int(np.digitize(level, NOISE_BINS) - 1) for level in (10, 50)}
    assert sd[bin_of[10]] == pytest.approx(1.0 * highpass_gain(), rel=0.1)
    assert sd[bin_of[50]] == pytest.approx(4.0 * highpass_gain(), rel=0.1)
    assert np.isnan(sd[0]) and counts[0] == 0  # nothing at 2-4 levels


def test_pair_noise_profile_recovers_the_noise_of_a_monotone_mapping() -> None:
    rng = np.random.default_rng(3)
    ramp = np.linspace(0, 255, 256, dtype=np.float32)
    bright = np.repeat(np.tile(ramp, (256, 1))[:, :, None], 3, axis=2)
    expected_dark = 40 * (bright / 255) ** 1.5 + 2
    dark = expected_dark + 2.0 * rng.standard_normal(bright.shape).astype(np.float32)
    sd, counts = pair_noise_profile(dark / 255, bright / 255)
    populated = counts > 2000
    assert populated.sum() >= 3
    np.testing.assert_allclose(sd[populated], 2.0, rtol=0.1)


def test_lol_low_medians_match_the_published_figures(lol_dev) -> None:
    """Every 10th real dark image (24 of 240): medians near brightness 0.053, sd 2.4, channel corr 0.62."""
    files = sorted((lol_dev / "low").glob("*.png"))[::10]
    measured = [dark_statistics(read_image(f)) for f in files]
    rows = np.array([[stats[k] for k in STATISTICS] for stats in measured])
    median = dict(zip(STATISTICS, np.nanmedian(rows, axis=0)))
    assert median["brightness"] == pytest.approx(0.053, abs=0.01)
    assert median["residual_sd"] == pytest.approx(2.4, abs=0.4)
    assert median["channel_corr"] == pytest.approx(0.62, abs=0.08)
    assert median["spatial_corr"] == pytest.approx(0.22, abs=0.08)  # published 0.25, see the report
    assert median["blue_ratio"] == pytest.approx(0.92, abs=0.05)
