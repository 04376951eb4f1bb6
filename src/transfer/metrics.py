"""Image quality metrics on float images in [0, 1]: PSNR (data range 1) and SSIM with Wang et al.'s settings."""
from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

# Wang et al. 2004: an 11x11 Gaussian window of sigma 1.5 and population (not sample) covariance.
SSIM_SETTINGS = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 1.0}


def _as_pair(prediction: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both images as float64 clipped to [0, 1], after checking their shapes agree."""
    if prediction.shape != target.shape:
        raise ValueError(f"shapes differ: {prediction.shape} vs {target.shape}")
    return (np.clip(prediction.astype(np.float64), 0, 1), np.clip(target.astype(np.float64), 0, 1))


def psnr(prediction: np.ndarray, target: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB for data range 1 (inf for identical images)."""
    prediction, target = _as_pair(prediction, target)
    if np.array_equal(prediction, target):
        return float("inf")
    return float(peak_signal_noise_ratio(target, prediction, data_range=1.0))


def psnr_gt_mean(prediction: np.ndarray, target: np.ndarray) -> float:
    """PSNR after scaling the prediction so its mean equals the target's (the "GT-mean" diagnostic of
    low-light enhancement papers): what is left when the overall exposure is taken as known."""
    prediction, target = _as_pair(prediction, target)
    mean = float(prediction.mean())
    scaled = np.clip(prediction * (float(target.mean()) / mean), 0.0, 1.0) if mean > 0 else prediction
    return psnr(scaled.astype(prediction.dtype, copy=False), target)


def ssim(prediction: np.ndarray, target: np.ndarray) -> float:
    """Structural similarity of (H, W, 3) images: Gaussian window sigma 1.5, data range 1, channel mean."""
    prediction, target = _as_pair(prediction, target)
    return float(structural_similarity(target, prediction, channel_axis=-1, **SSIM_SETTINGS))
