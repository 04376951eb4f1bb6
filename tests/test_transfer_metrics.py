"""PSNR with data range 1 and SSIM with Wang et al.'s settings (Gaussian sigma 1.5, population covariance)."""
from __future__ import annotations

import math

import numpy as np
from skimage.metrics import structural_similarity

from transfer.metrics import psnr, ssim


def test_psnr_matches_its_definition() -> None:
    rng = np.random.default_rng(0)
    target = rng.random((20, 30, 3))
    prediction = np.clip(target + rng.normal(0, 0.05, target.shape), 0, 1)
    mse = np.mean((prediction - target) ** 2)
    assert math.isclose(psnr(prediction, target), 10 * math.log10(1 / mse), rel_tol=1e-9)
    assert psnr(target, target) == math.inf


def test_ssim_uses_wang_settings() -> None:
    rng = np.random.default_rng(1)
    target = rng.random((48, 64, 3))
    noisy = np.clip(target + rng.normal(0, 0.1, target.shape), 0, 1)
    wang = structural_similarity(target, noisy, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=1, channel_axis=-1)
    default_window = structural_similarity(target, noisy, data_range=1, channel_axis=-1)
    assert math.isclose(ssim(noisy, target), wang, rel_tol=1e-12)
    assert not math.isclose(wang, default_window, rel_tol=1e-3)  # the settings matter
    assert ssim(target, target) == 1.0
    assert ssim(np.clip(target + rng.normal(0, 0.3, target.shape), 0, 1), target) < ssim(noisy, target)
