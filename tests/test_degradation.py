"""The stage functions (lowsim.degradation.stages) and model v2's chain (lowsim.degradation.v2)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from lowsim.degradation import stages, v2
from lowsim.degradation.registry import check_params_model, get_model
from lowsim.errors import LowsimError
from lowsim.params import IspParams
from lowsim.statistics import dark_statistics

PHOTO = np.ascontiguousarray(data.astronaut()[100:292, 150:342])  # 192 x 192 uint8 RGB
BASE = IspParams(exposure=0.01, cast_r=1.1, cast_b=0.9, shot_gain=1e-4, read_sigma=2e-4, black_level=1e-5,
                 chroma_nr=0.0, tone_gamma=2.4)


def with_(**changes: float) -> IspParams:
    return IspParams(**{**BASE.to_dict(), **changes})


def test_srgb_to_linear_matches_the_standard_curve():
    x = np.array([0.0, 0.04045, 0.5, 1.0], dtype=np.float32)
    np.testing.assert_allclose(stages.srgb_to_linear(x), [0.0, 0.04045 / 12.92, 0.21404, 1.0], rtol=1e-4)


def test_mosaic_then_demosaic_returns_a_flat_colour_and_matches_opencv_inside():
    flat = np.ones((8, 8, 3), np.float32) * np.array([0.2, 0.5, 0.7], np.float32)
    np.testing.assert_allclose(stages.demosaic(stages.mosaic(flat)), flat, atol=1e-6)
    codes = np.random.default_rng(0).integers(0, 4000, (32, 32)).astype(np.uint16)
    ours = stages.demosaic(codes.astype(np.float32))
    theirs = cv2.cvtColor(codes, cv2.COLOR_BayerRGGB2RGB).astype(np.float32)
    assert np.abs(ours - theirs)[2:-2, 2:-2].max() <= 0.5  # OpenCV rounds to integers


def test_digitize_adds_the_pedestal_rounds_and_clips():
    raw = np.array([[-1.0, 0.0, 0.5, 2.0]], np.float32)
    codes = stages.digitize(raw, bits=12, pedestal=256)
    assert codes.dtype == np.uint16 and codes.tolist() == [[0, 256, 2304, 4095 + 256]]
    np.testing.assert_allclose(stages.codes_to_linear(codes, 12, 256)[0, 1:3], [0.0, 0.5], atol=1e-3)


def test_chroma_denoise_correlates_channel_noise():
    noise = np.random.default_rng(1).normal(0.2, 0.02, (128, 128, 3)).astype(np.float32)
    before = np.corrcoef(noise.reshape(-1, 3).T)[0, 1]
    after = stages.chroma_denoise(noise, 0.95, 2.0)
    assert abs(before) < 0.05 and np.corrcoef(after.reshape(-1, 3).T)[0, 1] > 0.8
    assert stages.chroma_denoise(noise, 0.0, 2.0) is noise


def test_v2_is_reproducible_from_its_generator_and_only_from_it():
    one = v2.degrade_to_codes(PHOTO, BASE, np.random.default_rng(7))
    two = v2.degrade_to_codes(PHOTO, BASE, np.random.default_rng(7))
    other = v2.degrade_to_codes(PHOTO, BASE, np.random.default_rng(8))
    assert one.dtype == np.uint8 and one.shape == PHOTO.shape
    np.testing.assert_array_equal(one, two)
    assert np.any(one != other)
    assert v2.degrade_to_codes(PHOTO, BASE, np.random.default_rng(7), bit_depth=16).dtype == np.uint16


def test_v2_without_noise_is_its_expected_dark():
    quiet = with_(shot_gain=1e-9, read_sigma=1e-9)
    dark = v2.degrade(PHOTO, quiet, np.random.default_rng(0)).astype(np.float64)
    expected = v2.expected_dark(PHOTO, quiet).astype(np.float64)
    inside = np.s_[2:-2, 2:-2]  # demosaicing smooths edges of the scene a little: compare the mean level
    assert abs(dark[inside].mean() - expected[inside].mean()) * 255 < 0.5


def test_v2_exposure_darkens_and_chroma_nr_correlates_the_noise():
    bright = dark_statistics(v2.degrade_to_codes(PHOTO, with_(exposure=0.04), np.random.default_rng(0)))
    dim = dark_statistics(v2.degrade_to_codes(PHOTO, with_(exposure=0.01), np.random.default_rng(0)))
    assert dim["brightness"] < bright["brightness"]
    raw_noise = dark_statistics(v2.degrade_to_codes(PHOTO, with_(chroma_nr=0.0), np.random.default_rng(0)))
    camera = dark_statistics(v2.degrade_to_codes(PHOTO, with_(chroma_nr=0.95), np.random.default_rng(0)))
    assert camera["channel_corr"] > raw_noise["channel_corr"] + 0.3


def test_smooth_surrogate_has_the_same_noise_level_as_the_sensor():
    p = with_(shot_gain=3e-4, read_sigma=5e-4)
    real = dark_statistics(v2.degrade_to_codes(PHOTO, p, np.random.default_rng(0)))
    normals = np.random.default_rng(0).standard_normal((3, *PHOTO.shape[:2]), dtype=np.float32)
    smooth = dark_statistics(v2.simulate_smooth(PHOTO, p, normals))
    assert smooth["residual_sd"] == pytest.approx(real["residual_sd"], rel=0.1)


def test_registry_knows_both_models_and_refuses_a_mismatch():
    assert get_model("v2").name == "lowsim.degrade/v2" and get_model("lowsim.degrade/v1").schema_version == 1
    with pytest.raises(LowsimError, match="unknown degradation model"):
        get_model("v3")
    with pytest.raises(LowsimError, match=r"lowsim.degrade/v1 \(schema 1\).*lowsim.degrade/v2 \(schema 2\)"):
        check_params_model("lowsim.degrade/v1", "v2")


@pytest.mark.parametrize("white_balance", [{}, {"wb_red": 3.0, "wb_blue": 1.2}])
def test_preview_stages_end_in_what_degrade_makes(white_balance: dict):
    p = with_(downscale=2.0, sharpen=1.0, chroma_nr=0.5, **white_balance)
    panels = list(v2.degrade_stages(PHOTO, p, np.random.default_rng(4)))
    assert all(img.shape == PHOTO.shape for _, img in panels)
    np.testing.assert_allclose(panels[-1][1], v2.degrade(PHOTO, p, np.random.default_rng(4)), atol=1e-6)


def test_black_point_crushes_the_darkest_values_and_keeps_white():
    x = np.array([0.0, 0.001, 0.002, 0.5, 1.0], np.float32)
    np.testing.assert_allclose(stages.apply_black_point(x, 0.002), [0.0, 0.0, 0.0, 0.498 / 0.998, 1.0], atol=1e-7)
    assert stages.apply_black_point(x, 0.002).dtype == np.float32
    assert stages.apply_black_point(x, 0.0) is x  # off: the same array, so older rows' bytes are kept


def test_v2_output_black_point_adds_clipped_blacks_in_both_samplers():
    from lowsim.degradation import v2_fast

    for sampler in (v2.SAMPLER, v2.FAST_SAMPLER):
        def clipped(p: IspParams) -> float:
            codes = v2_fast.degrade_to_codes(PHOTO, p, np.random.default_rng(3), sampler=sampler)
            return dark_statistics(codes)["clipped_black"]

        resized = dict(downscale=2.0, exposure=0.03)  # the resize averages most of the sensor's zeros away
        assert clipped(with_(out_black=2.0 / 255, **resized)) > clipped(with_(**resized)) + 0.03


def block_edge_ratio(codes: np.ndarray) -> float:
    """Mean squared step between columns across 8-px block edges over the same inside blocks: ~1 without JPEG."""
    steps = np.diff(codes.astype(np.float64), axis=1) ** 2
    at_edge = (np.arange(steps.shape[1]) % 8) == 7
    return float(steps[:, at_edge].mean() / steps[:, ~at_edge].mean())


def test_jpeg_stage_is_the_identity_off_and_makes_blocks_on():
    noisy = np.clip(np.random.default_rng(0).normal(20, 4, (64, 96, 3)), 0, 255).astype(np.uint8)
    assert stages.jpeg_compress(noisy, 0) is noisy  # off: the same array, so older rows' bytes are kept
    compressed = stages.jpeg_compress(noisy, 40)
    assert compressed.dtype == np.uint8 and compressed.shape == noisy.shape
    assert block_edge_ratio(noisy) < 1.1 and block_edge_ratio(compressed) > 1.5
    # red stays red: OpenCV's BGR order is undone on the way in and out
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 200
    assert np.abs(stages.jpeg_compress(red, 95).astype(int) - red).max() <= 3
    with pytest.raises(ValueError, match="8-bit RGB"):
        stages.jpeg_compress(noisy.astype(np.uint16), 40)


@pytest.mark.parametrize("sampler", [v2.SAMPLER, v2.FAST_SAMPLER])
def test_v2_jpeg_is_the_last_stage_of_both_samplers_and_of_the_preview(sampler: str):
    from lowsim.degradation import v2_fast

    def codes(p: IspParams, bit_depth: int = 8) -> np.ndarray:
        return v2_fast.degrade_to_codes(PHOTO, p, np.random.default_rng(6), bit_depth=bit_depth, sampler=sampler)

    p = with_(exposure=0.04, shot_gain=4e-4, jpeg_quality=40)
    off = codes(with_(exposure=0.04, shot_gain=4e-4))
    np.testing.assert_array_equal(codes(p), stages.jpeg_compress(off, 40))  # same draws, then the camera's JPEG
    assert block_edge_ratio(codes(p)) > 1.3 * block_edge_ratio(off)
    with pytest.raises(LowsimError, match="jpeg_quality 40 makes 8-bit JPEG output, but uint16"):
        codes(p, bit_depth=16)
    if sampler == v2.SAMPLER:
        panels = list(v2.degrade_stages(PHOTO, p, np.random.default_rng(6)))
        assert panels[-1][0] == "+ JPEG q40"
        np.testing.assert_array_equal(stages.quantize(panels[-1][1]), codes(p))


@pytest.mark.parametrize("sampler", [v2.SAMPLER, v2.FAST_SAMPLER])
def test_white_balance_gains_keep_the_mean_colour_and_amplify_red_and_blue_noise(sampler: str):
    """The inverse gains on the way in and the gains on the way out cancel in a flat patch's mean colour, but
    the raw R and B noise is amplified with the signal: their output noise sd rises with their gain."""
    from lowsim.degradation import v2_fast

    flat = np.ones((128, 128, 3), np.uint8) * np.array([170, 150, 130], np.uint8)
    gains = ((1.2, 1.0), (2.0, 1.6), (3.0, 2.4), (4.0, 3.6))  # the default, (2.0, 1.6), second

    def dark(wb_red: float, wb_blue: float) -> np.ndarray:
        p = with_(exposure=0.05, wb_red=wb_red, wb_blue=wb_blue)
        return v2_fast.degrade(flat, p, np.random.default_rng(5)) if sampler == v2.FAST_SAMPLER \
            else v2.degrade(flat, p, np.random.default_rng(5))

    darks = [dark(*g).reshape(-1, 3).astype(np.float64) * 255 for g in gains]
    means, sds = np.array([d.mean(axis=0) for d in darks]), np.array([d.std(axis=0) for d in darks])
    assert means[1].min() > 20  # far above black: no clipping that would move the mean
    # within 1 %: more noise through the concave tone curve lowers the mean a little (0.4 % here, Jensen); a
    # missing inverse gain would move it by the gains' ratios (1.5x and more)
    np.testing.assert_allclose(means, np.broadcast_to(means[1], means.shape), rtol=0.01)
    assert np.all(np.diff(sds[:, 0]) > 0.05) and np.all(np.diff(sds[:, 2]) > 0.05)  # red, blue: rising
    assert sds[-1, 0] > 1.5 * sds[0, 0] and sds[-1, 2] > 1.5 * sds[0, 2]
    assert sds[:, 1].max() < 1.25 * sds[:, 1].min()  # green moves only through the colour matrix's mixing
