"""The classifier's feature sets (lowsim.compare.FEATURE_SETS): the laplacian features measure the noise, not
the scene. Real photo collections are compared by scripts/content_leakage.py; here, a fast stand-in."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from lowsim.compare import classifier_test, measure_image
from lowsim.statistics import flattest, laplacian_levels, laplacian_sigma, structure_levels

SIZE = 192              # scene crops, px: 9 patches each
N_SCENES = 40           # per set
LOL_LIKE_NOISE = dict(exposure=0.008, shot=2.5e-5, read=3.5e-4, channel_corr=0.6)  # ~13 levels mean, sd ~2.5


def photo_crops(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """n random SIZE crops (float RGB in [0, 1]) of scikit-image's bundled colour photographs."""
    from skimage import data

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.immunohistochemistry(),
              data.hubble_deep_field()]
    crops = []
    for i in range(n):
        photo = photos[i % len(photos)].astype(np.float32) / 255
        y, x = (int(rng.integers(0, photo.shape[k] - SIZE)) for k in (0, 1))
        crops.append(photo[y:y + SIZE, x:x + SIZE])
    return crops


def darkened(scene: np.ndarray, rng: np.random.Generator, exposure: float, shot: float, read: float,
             channel_corr: float) -> np.ndarray:
    """A dark uint8 image of scene: linear light x exposure, signal-dependent noise correlated across channels.

    The noise's channel correlation (0.6) is LOL's (docs/realism.md: 0.575); it is what a camera's chroma noise
    reduction leaves, and white noise in each channel would make the scene's grey texture stand out in it.
    """
    linear = scene.astype(np.float64) ** 2.2 * exposure
    shared = rng.standard_normal(linear.shape[:2] + (1,))
    z = np.sqrt(channel_corr) * shared + np.sqrt(1 - channel_corr) * rng.standard_normal(linear.shape)
    noisy = np.clip(linear + np.sqrt(shot * linear + read ** 2) * z, 0, 1)
    return np.clip(np.round(noisy ** (1 / 2.2) * 255), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def sharp_and_smooth() -> tuple[list, list]:
    """Measured dark images of sharp photo crops and of other crops blurred (sigma 2), same degradation."""
    rng = np.random.default_rng(0)
    sharp = photo_crops(N_SCENES, rng)
    smooth = [cv2.GaussianBlur(s, (0, 0), 2.0) for s in photo_crops(N_SCENES, rng)]
    measured_sharp = [measure_image(darkened(s, rng, **LOL_LIKE_NOISE), seed=i) for i, s in enumerate(sharp)]
    measured_smooth = [measure_image(darkened(s, rng, **LOL_LIKE_NOISE), seed=1000 + i)
                       for i, s in enumerate(smooth)]
    return measured_smooth, measured_sharp


def test_the_same_degradation_on_sharp_and_smooth_scenes_is_not_told_apart(sharp_and_smooth: tuple) -> None:
    smooth, sharp = sharp_and_smooth
    residual = classifier_test(smooth, sharp, seed=0, feature_set="residual")
    laplacian = classifier_test(smooth, sharp, seed=0, feature_set="laplacian")
    print(f"sharp vs smooth scenes: residual {residual.accuracy:.3f} [{residual.ci_low:.2f}, "
          f"{residual.ci_high:.2f}], laplacian {laplacian.accuracy:.3f} [{laplacian.ci_low:.2f}, {laplacian.ci_high:.2f}]")
    assert laplacian.brightness_matched
    # The residual features tell the scenes apart (so the scenes differ in a way a feature can see) ...
    assert residual.ci_low > 0.75
    # ... the laplacian features barely: under the 0.60 target, and less than half the residual's excess.
    assert laplacian.accuracy <= 0.60
    assert laplacian.accuracy - 0.5 < 0.5 * (residual.accuracy - 0.5)


def test_a_wrong_noise_level_on_the_same_scenes_is_detected(sharp_and_smooth: tuple) -> None:
    rng = np.random.default_rng(1)
    scenes = photo_crops(N_SCENES // 2, rng)
    noisier = {**LOL_LIKE_NOISE, "shot": 2 * LOL_LIKE_NOISE["shot"], "read": np.sqrt(2) * LOL_LIKE_NOISE["read"]}
    right = [measure_image(darkened(s, rng, **LOL_LIKE_NOISE), seed=i) for i, s in enumerate(scenes)]
    wrong = [measure_image(darkened(s, rng, **noisier), seed=i) for i, s in enumerate(scenes)]
    result = classifier_test(right, wrong, seed=0, feature_set="laplacian")
    print(f"noise variance x2: laplacian {result.accuracy:.3f} [{result.ci_low:.2f}, {result.ci_high:.2f}]")
    assert result.ci_low > 0.75


def test_laplacian_sigma_is_the_noise_sd_on_shading_and_straight_edges() -> None:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:128, 0:128].astype(np.float32)
    scene = 20 + 0.3 * x + 0.1 * y + 40 * (x > 64)  # ramps and a vertical edge: no response without noise
    clean = np.repeat(scene[:, :, None], 3, axis=2)
    assert np.abs(laplacian_levels(clean)[1:-1, 1:-1]).max() < 1e-3
    noisy = clean + 2.0 * rng.standard_normal(clean.shape).astype(np.float32)
    assert laplacian_sigma(laplacian_levels(noisy)) == pytest.approx(2.0, rel=0.03)


def test_flattest_keeps_the_pixels_away_from_edges() -> None:
    levels = np.zeros((64, 64, 3), np.float32)
    levels[:, 32:] = 50.0
    flat = flattest(structure_levels(levels), 0.5)
    assert 0.5 <= flat.mean() < 0.8  # ties at the quantile are all kept
    assert not flat[:, 30:35].any() and flat[:, :16].all() and flat[:, 48:].all()
