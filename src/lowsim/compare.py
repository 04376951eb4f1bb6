"""How far a synthetic dark set is from real dark images: per-statistic distances and a classifier test.

Both sets are measured the same way (`lowsim.statistics`): per-image degradation statistics, the
noise-vs-intensity profile, and features of 64x64 patches. Three kinds of distance come out:

- per statistic, the two-sample Kolmogorov-Smirnov statistic and the relative difference of medians
  (`distance` is the mean KS over the statistics: 0 = same distributions, 1 = disjoint);
- the median noise-vs-intensity profile of each set (and, when bright/clean images are given, the
  noise measured against them, which scene edges do not inflate);
- a classifier two-sample test: a logistic regression on degradation features of patches (never pixel
  content) tries to tell real from synthetic. Two feature sets (FEATURE_SETS): "residual", statistics of the
  high-pass residual x - GaussianBlur(x, 1.5) and colour ratios, which also see the scene's fine texture and
  colours (two synthetic sets with the same degradation on different photo collections are told apart,
  docs/realism.md "Content leakage of compare's features"); and "laplacian" (the default), noise statistics of
  Immerkaer's Laplacian-difference response away from edges, which cancels locally smooth shading. Patches
  are matched in brightness first, so it must use the degradation at equal brightness. Images, not patches,
  are split into cross-validation folds (and identical images share a fold), so every prediction is held out.
  Accuracy 0.5 = indistinguishable. Its 95% interval is Wilson's on the effective number of patches: the
  patches of one image are correlated, so the patch count is deflated by the between-image variance of the hits.
"""
from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from lowsim.errors import LowsimError
from lowsim.statistics import (FLAT_FRACTION, IMMERKAER_GAIN, NOISE_BINS, STATISTICS, binned_sd,
                               channel_correlation, degradation_mask, flattest, highpass_levels,
                               laplacian_channel_sigmas, laplacian_levels, laplacian_sigma, noise_colour_ratios,
                               pair_noise_profile, residual_statistics, structure_levels, to_levels)

REAL_SPLITS = ("all", "pool", "val")
PATCH_SIZE = 64
PATCHES_PER_IMAGE = 12          # candidate patches per image, before brightness matching
CROPS_PER_IMAGE = 2             # patches kept as pixels, for the report's side-by-side crops
PATCH_BINS = np.array([2.0, 6.0, 16.0, 48.0, 128.0])  # coarser than NOISE_BINS: a patch has few pixels
BRIGHTNESS_EDGES = np.geomspace(0.25, 256.0, 16)     # patch mean in 8-bit levels, for matching
MIN_MATCHED_PER_CLASS = 30      # fewer matched patches than this: use all patches, unmatched
MAX_FOLDS = 5
Z95 = 1.959963984540054
_BIN_NAMES = tuple(f"{lo:g}_{hi:g}" for lo, hi in zip(PATCH_BINS[:-1], PATCH_BINS[1:]))
FEATURES: tuple[str, ...] = ("log_brightness", "log_residual_sd", "channel_corr", "spatial_corr",
                             "blue_ratio", "red_ratio", "clipped_black", *(f"log_sd_{b}" for b in _BIN_NAMES))
# Chosen by content leakage and sensitivity between synthetic sets only (scripts/content_leakage.py), never
# by accuracy against real darks. Left out, because alone they told two photo collections apart under the
# same degradation: the colour ratios (scene colour), and every measure of the noise's spatial correlation
# tried (lag-1 correlation of the residual or of the Laplacian response, robust or not, in the flattest
# sub-blocks or not; a lag-2 / lag-1 step ratio): fine scene texture is spatially correlated too.
LAPLACIAN_FEATURES: tuple[str, ...] = ("log_brightness", "log_noise_sd",
                                       *(f"log_noise_sd_{b}" for b in _BIN_NAMES), "noise_channel_corr",
                                       "noise_red_green", "noise_blue_green", "clipped_black")
FEATURE_SETS: dict[str, tuple[str, ...]] = {"residual": FEATURES, "laplacian": LAPLACIAN_FEATURES}
DEFAULT_FEATURE_SET = "laplacian"
# Per-image statistics of the noise at the pixel scale (Immerkaer, the flattest half of the image): reported
# beside STATISTICS so a user sees what the laplacian features see, but not part of the distance (mean KS over
# STATISTICS), so that number means what it meant before.
PIXEL_NOISE_STATISTICS: tuple[str, ...] = ("noise_sd", "noise_red_green", "noise_blue_green")


# ---------------------------------------------------------------------------------------------- per image

@dataclass
class ImageMeasurement:
    """Everything compare needs from one dark image, so the image itself need not be kept."""

    statistics: dict[str, float]
    noise_profile: np.ndarray                  # residual sd per NOISE_BINS bin
    pair_profile: np.ndarray | None            # sd against the bright/clean image, when given
    patch_features: dict[str, np.ndarray]      # per FEATURE_SETS name: (n_patches, len(its features))
    patch_brightness: np.ndarray               # (n_patches,) mean in 8-bit levels
    crops: list[np.ndarray]                    # a few uint8 patches, for the report
    crop_brightness: list[float]
    content_id: str                            # hash of the pixels: identical images share a fold
    pixel_noise: dict[str, float] = field(default_factory=dict)  # PIXEL_NOISE_STATISTICS of the whole image


def _log(value: float, floor: float = 1e-3) -> float:
    """log of a positive statistic; NaN stays NaN (the classifier imputes it)."""
    return math.log(max(value, floor)) if math.isfinite(value) else math.nan


def patch_features(levels: np.ndarray, residual: np.ndarray, blurred: np.ndarray) -> np.ndarray:
    """FEATURES of one patch (parts cut from a whole-image high-pass, so no border effects)."""
    stats = residual_statistics(levels, residual, blurred)
    binned, _ = binned_sd(blurred, residual, PATCH_BINS)
    return np.array([_log(stats["brightness"] * 255.0, 0.25), _log(stats["residual_sd"]),
                     stats["channel_corr"], stats["spatial_corr"], stats["blue_ratio"], stats["red_ratio"],
                     stats["clipped_black"], *(_log(v) for v in binned)], dtype=np.float64)


def laplacian_patch_features(levels: np.ndarray, response: np.ndarray, blurred: np.ndarray,
                             structure: np.ndarray) -> np.ndarray:
    """LAPLACIAN_FEATURES of one patch (parts cut from whole-image filters, so no border effects)."""
    flat = flattest(structure, FLAT_FRACTION)
    mask = degradation_mask(blurred) & flat
    binned, _ = binned_sd(blurred[flat], response[flat], PATCH_BINS)
    return np.array([_log(float(levels.mean()), 0.25), _log(laplacian_sigma(response[mask])),
                     *(_log(v / IMMERKAER_GAIN) for v in binned), channel_correlation(response, mask),
                     *noise_colour_ratios(laplacian_channel_sigmas(response, mask)),
                     float((levels < 0.5).mean())], dtype=np.float64)


def pixel_noise_statistics(response: np.ndarray, blurred: np.ndarray, structure: np.ndarray) -> dict[str, float]:
    """PIXEL_NOISE_STATISTICS of a whole image: Immerkaer's sd pooled and as red/green, blue/green ratios."""
    mask = degradation_mask(blurred) & flattest(structure, FLAT_FRACTION)
    red_green, blue_green = noise_colour_ratios(laplacian_channel_sigmas(response, mask))
    return {"noise_sd": laplacian_sigma(response[mask]), "noise_red_green": red_green,
            "noise_blue_green": blue_green}


def feature_set_names(feature_set: str) -> tuple[str, ...]:
    """The feature names of a FEATURE_SETS entry, or LowsimError naming the known sets."""
    if feature_set not in FEATURE_SETS:
        raise LowsimError(f"unknown feature set {feature_set!r}, expected one of {', '.join(FEATURE_SETS)}")
    return FEATURE_SETS[feature_set]


def patch_corners(height: int, width: int, size: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Up to PATCHES_PER_IMAGE random corners of non-overlapping size x size patches on a grid."""
    rows, cols = max(height // size, 1), max(width // size, 1)
    # Centre the grid, so the unused margin is split between both sides.
    y0, x0 = (height - rows * size) // 2, (width - cols * size) // 2
    cells = rng.permutation(rows * cols)[:PATCHES_PER_IMAGE]
    return [(y0 + (c // cols) * size, x0 + (c % cols) * size) for c in sorted(cells)]


def measure_image(dark: np.ndarray, bright: np.ndarray | None = None, seed: int = 0) -> ImageMeasurement:
    """Statistics, noise profiles and patch features of one dark image (bright: its reference, if any)."""
    levels = to_levels(dark)
    residual, blurred = highpass_levels(levels)
    response, structure = laplacian_levels(levels), structure_levels(levels)
    size = min(PATCH_SIZE, levels.shape[0], levels.shape[1])
    rng = np.random.default_rng(seed)
    corners = patch_corners(levels.shape[0], levels.shape[1], size, rng)
    cut = [(slice(y, y + size), slice(x, x + size)) for y, x in corners]
    features = {"residual": np.array([patch_features(levels[s], residual[s], blurred[s]) for s in cut]),
                "laplacian": np.array([laplacian_patch_features(levels[s], response[s], blurred[s],
                                                                structure[s]) for s in cut])}
    brightness = np.array([float(levels[s].mean()) for s in cut])
    crops = [np.clip(np.round(levels[s]), 0, 255).astype(np.uint8) for s in cut[:CROPS_PER_IMAGE]]
    return ImageMeasurement(
        statistics=residual_statistics(levels, residual, blurred),
        noise_profile=binned_sd(blurred, residual, NOISE_BINS)[0],
        pair_profile=None if bright is None else pair_noise_profile(dark, bright)[0],
        patch_features=features, patch_brightness=brightness, crops=crops,
        crop_brightness=[float(b) for b in brightness[:CROPS_PER_IMAGE]],
        content_id=hashlib.sha1(np.ascontiguousarray(levels).tobytes()).hexdigest(),
        pixel_noise=pixel_noise_statistics(response, blurred, structure))


# ---------------------------------------------------------------------------------------------- results

@dataclass
class StatisticComparison:
    """One statistic over the images of both sets: medians, 10th-90th percentiles and distances."""

    name: str
    real_median: float
    real_p10: float
    real_p90: float
    synthetic_median: float
    synthetic_p10: float
    synthetic_p90: float
    ks: float                   # two-sample Kolmogorov-Smirnov statistic, 0..1
    ks_pvalue: float
    relative_median_diff: float  # (synthetic - real) / |real|


@dataclass
class ClassifierResult:
    """Held-out accuracy of telling real from synthetic patches, with its 95% Wilson interval."""

    accuracy: float
    ci_low: float
    ci_high: float
    n_patches: int
    n_effective: float          # patches deflated for within-image correlation; the CI uses this
    n_real_images: int
    n_synthetic_images: int
    n_folds: int
    brightness_matched: bool
    patch_size: int
    model: str = "logistic regression on standardised degradation features (median-imputed)"
    feature_set: str = DEFAULT_FEATURE_SET
    features: tuple[str, ...] = FEATURE_SETS[DEFAULT_FEATURE_SET]
    note: str = ""

    def to_json_dict(self) -> dict[str, Any]:
        """All fields, with NaN as null (strict JSON)."""
        return _json_safe(asdict(self))


@dataclass
class CompareResult:
    """Real vs synthetic dark images: per-statistic comparison, noise profiles and the classifier test."""

    n_real: int
    n_synthetic: int
    statistics: list[StatisticComparison]
    distance: float             # mean KS over the statistics
    classifier: ClassifierResult
    noise_bins: list[float]
    real_noise_profile: list[float]       # median over images of the residual sd per bin
    synthetic_noise_profile: list[float]
    real_pair_profile: list[float] | None = None       # sd against the bright / clean image
    synthetic_pair_profile: list[float] | None = None
    real_values: dict[str, list[float]] = field(default_factory=dict)       # per image, for histograms
    synthetic_values: dict[str, list[float]] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    pixel_noise: list[StatisticComparison] = field(default_factory=list)  # PIXEL_NOISE_STATISTICS, not in distance
    examples: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list, repr=False)

    def statistic(self, name: str) -> StatisticComparison:
        """The comparison of one statistic (STATISTICS or PIXEL_NOISE_STATISTICS) by name."""
        return next(s for s in [*self.statistics, *self.pixel_noise] if s.name == name)

    def to_json_dict(self) -> dict[str, Any]:
        """Everything but the example crops, with NaN as null (strict JSON)."""
        data = {k: v for k, v in asdict(self).items() if k != "examples"}
        data["classifier"]["features"] = list(self.classifier.features)
        data["statistics_order"] = list(STATISTICS)
        return _json_safe(data)


def _json_safe(value: Any) -> Any:
    """value with NaN/inf floats as None and numpy scalars/arrays as Python values."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


# ---------------------------------------------------------------------------------------------- distances

def _finite(values: Sequence[float]) -> np.ndarray:
    """The finite values as a float array."""
    arr = np.asarray(values, dtype=np.float64)
    return arr[np.isfinite(arr)]


def compare_statistic(name: str, real: Sequence[float], synthetic: Sequence[float]) -> StatisticComparison:
    """Medians, 10th-90th percentiles, KS and relative median difference of one statistic."""
    from scipy.stats import ks_2samp

    a, b = _finite(real), _finite(synthetic)
    if a.size == 0 or b.size == 0:
        return StatisticComparison(name, *([math.nan] * 9))
    pa, pb = np.percentile(a, [50, 10, 90]), np.percentile(b, [50, 10, 90])
    with warnings.catch_warnings():  # ties in tiny samples: scipy falls back to the asymptotic p-value
        warnings.simplefilter("ignore", RuntimeWarning)
        test = ks_2samp(a, b)
    scale = abs(pa[0])
    relative = (pb[0] - pa[0]) / scale if scale > 0 else (0.0 if pb[0] == pa[0] else math.inf)
    return StatisticComparison(name, *map(float, pa), *map(float, pb), float(test.statistic),
                               float(test.pvalue), float(relative))


def median_profile(profiles: Sequence[np.ndarray | None]) -> list[float] | None:
    """Per-bin median over images, ignoring NaN bins; None when no image has a profile."""
    stack = [p for p in profiles if p is not None]
    if not stack:
        return None
    arr = np.vstack(stack)
    counts = np.isfinite(arr).sum(axis=0)
    with np.errstate(all="ignore"):
        return [float(np.nanmedian(arr[:, i])) if counts[i] else math.nan for i in range(arr.shape[1])]


def wilson_interval(hits: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion hits/n (n may be fractional: an effective size)."""
    if n <= 0:
        return math.nan, math.nan
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def effective_size(correct: np.ndarray, groups: np.ndarray) -> float:
    """Patch count deflated by the between-image variance of the hit rate (cluster-robust)."""
    n = correct.size
    p = correct.mean()
    ids, index = np.unique(groups, return_inverse=True)
    m = ids.size
    if m < 2 or p in (0.0, 1.0):
        return float(n)
    hits = np.bincount(index, correct.astype(np.float64))
    sizes = np.bincount(index)
    variance = m / (m - 1) * float(((hits - p * sizes) ** 2).sum()) / n ** 2  # of the ratio estimator p
    if variance <= 0:
        return float(n)
    return float(min(n, max(1.0, p * (1 - p) / variance)))


# ---------------------------------------------------------------------------------------------- classifier

def match_brightness(brightness: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of patches kept so both classes have the same count in every brightness bin."""
    bins = np.digitize(brightness, BRIGHTNESS_EDGES)
    keep = []
    for b in np.unique(bins):
        members = [np.flatnonzero((bins == b) & (labels == c)) for c in (0, 1)]
        k = min(len(m) for m in members)
        keep += [rng.choice(m, size=k, replace=False) for m in members if k]
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


def _pool_patches(real: Sequence[ImageMeasurement], synthetic: Sequence[ImageMeasurement], feature_set: str
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(features, labels 1=synthetic, group per patch, brightness) of both sets' patches."""
    sets = [(0, m) for m in real] + [(1, m) for m in synthetic]
    ids = {cid: i for i, cid in enumerate(dict.fromkeys(m.content_id for _, m in sets))}
    features = np.vstack([m.patch_features[feature_set] for _, m in sets])
    labels = np.concatenate([np.full(len(m.patch_brightness), c) for c, m in sets])
    groups = np.concatenate([np.full(len(m.patch_brightness), ids[m.content_id]) for _, m in sets])
    brightness = np.concatenate([m.patch_brightness for _, m in sets])
    return features, labels, groups, brightness


def _held_out_predictions(features: np.ndarray, labels: np.ndarray, groups: np.ndarray, n_folds: int,
                          seed: int) -> np.ndarray:
    """Cross-validated class predictions, folds by image so no image is on both sides."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(),
                          LogisticRegression(C=1.0, max_iter=2000))
    folds = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return cross_val_predict(model, features, labels, groups=groups, cv=folds)


def classifier_test(real: Sequence[ImageMeasurement], synthetic: Sequence[ImageMeasurement],
                    seed: int = 0, feature_set: str = DEFAULT_FEATURE_SET) -> ClassifierResult:
    """Held-out accuracy of a real-vs-synthetic patch classifier, brightness-matched where possible.

    Any two measured sets can be given (two synthetic sets, for instance): "real" is just the label-0 side.
    """
    names = feature_set_names(feature_set)
    features, labels, groups, brightness = _pool_patches(real, synthetic, feature_set)
    size = max((m.crops[0].shape[0] for m in [*real, *synthetic] if m.crops), default=0)
    keep = match_brightness(brightness, labels, np.random.default_rng([seed, 2]))
    matched = min((labels[keep] == c).sum() for c in (0, 1)) >= MIN_MATCHED_PER_CLASS
    if matched:
        features, labels, groups = features[keep], labels[keep], groups[keep]
    images = [len(np.unique(groups[labels == c])) for c in (0, 1)]
    n_folds = min(MAX_FOLDS, *images)
    base = dict(n_patches=int(labels.size), n_real_images=len(real), n_synthetic_images=len(synthetic),
                n_folds=n_folds, brightness_matched=bool(matched), patch_size=int(size),
                feature_set=feature_set, features=names)
    if n_folds < 2:
        return ClassifierResult(math.nan, math.nan, math.nan, n_effective=math.nan, **base,
                                note="needs at least 2 distinct images on each side")
    correct = _held_out_predictions(features, labels, groups, n_folds, seed) == labels
    n_eff = effective_size(correct, groups)
    accuracy = float(correct.mean())
    low, high = wilson_interval(accuracy * n_eff, n_eff)
    note = "" if matched else "too few patches of matching brightness: unmatched patches used"
    return ClassifierResult(accuracy, low, high, n_effective=n_eff, **base, note=note)


# ---------------------------------------------------------------------------------------------- assembling

def matched_examples(real: Sequence[ImageMeasurement], synthetic: Sequence[ImageMeasurement],
                     n: int = 4) -> list[tuple[np.ndarray, np.ndarray]]:
    """Up to n (real crop, synthetic crop) pairs of similar mean brightness, spread over the range."""
    pool_r = [(b, c) for m in real for b, c in zip(m.crop_brightness, m.crops)]
    pool_s = [(b, c) for m in synthetic for b, c in zip(m.crop_brightness, m.crops)]
    if not pool_r or not pool_s:
        return []
    pool_r.sort(key=lambda t: t[0])
    # Real crops at evenly spaced brightness quantiles, each with the synthetic crop nearest in brightness.
    picks = sorted({int(round(q * (len(pool_r) - 1))) for q in np.linspace(0.2, 0.9, n)})
    synth_b = np.array([b for b, _ in pool_s])
    out = []
    for i in picks:
        j = int(np.argmin(np.abs(np.log(synth_b + 0.5) - math.log(pool_r[i][0] + 0.5))))
        out.append((pool_r[i][1], pool_s[j][1]))
    return out


def compare_measurements(real: Sequence[ImageMeasurement], synthetic: Sequence[ImageMeasurement],
                         seed: int = 0, inputs: dict[str, Any] | None = None,
                         feature_set: str = DEFAULT_FEATURE_SET) -> CompareResult:
    """CompareResult from measured images of both sets (feature_set: the classifier's FEATURE_SETS entry)."""
    if not real or not synthetic:
        raise LowsimError(f"nothing to compare: {len(real)} real and {len(synthetic)} synthetic images")
    real_values = {k: [m.statistics[k] for m in real] for k in STATISTICS}
    synthetic_values = {k: [m.statistics[k] for m in synthetic] for k in STATISTICS}
    stats = [compare_statistic(k, real_values[k], synthetic_values[k]) for k in STATISTICS]
    ks = [s.ks for s in stats if math.isfinite(s.ks)]
    for k in PIXEL_NOISE_STATISTICS:
        real_values[k] = [m.pixel_noise.get(k, math.nan) for m in real]
        synthetic_values[k] = [m.pixel_noise.get(k, math.nan) for m in synthetic]
    return CompareResult(
        n_real=len(real), n_synthetic=len(synthetic), statistics=stats,
        distance=float(np.mean(ks)) if ks else math.nan,
        classifier=classifier_test(real, synthetic, seed, feature_set),
        noise_bins=[float(b) for b in NOISE_BINS],
        real_noise_profile=median_profile([m.noise_profile for m in real]),
        synthetic_noise_profile=median_profile([m.noise_profile for m in synthetic]),
        real_pair_profile=median_profile([m.pair_profile for m in real]),
        synthetic_pair_profile=median_profile([m.pair_profile for m in synthetic]),
        real_values=real_values, synthetic_values=synthetic_values, inputs=dict(inputs or {}),
        pixel_noise=[compare_statistic(k, real_values[k], synthetic_values[k]) for k in PIXEL_NOISE_STATISTICS],
        examples=matched_examples(real, synthetic))


def compare_images(real: list[np.ndarray], synthetic: list[np.ndarray], seed: int = 0,
                   feature_set: str = DEFAULT_FEATURE_SET) -> CompareResult:
    """compare on in-memory dark images (uint8/uint16, or float in [0, 1]), (H, W, 3) RGB each."""
    measured_real = [measure_image(img, seed=seed * 100003 + i) for i, img in enumerate(real)]
    measured_synthetic = [measure_image(img, seed=seed * 100003 + i) for i, img in enumerate(synthetic)]
    return compare_measurements(measured_real, measured_synthetic, seed=seed, feature_set=feature_set)


# ---------------------------------------------------------------------------------------------- from disk

def select_real_pairs(pairs: Sequence[Any], split: str) -> list[Any]:
    """The pairs of a real split: all, pool (as calibrate selects them), or val (the rest)."""
    from lowsim.calibrate import select_split

    if split not in REAL_SPLITS:
        raise LowsimError(f"unknown real split {split!r}, expected one of {', '.join(REAL_SPLITS)}")
    if split == "val":
        # REAL_PAIR_FRACTIONS has just pool and val, so val is whatever select_split leaves out of pool.
        pool = {p.name for p in select_split(pairs, "pool")}
        return [p for p in pairs if p.name not in pool]
    return select_split(pairs, split)


def capped(items: Sequence[Any], max_images: int, rng: np.random.Generator) -> list[Any]:
    """At most max_images of items, a seeded choice kept in the original order."""
    if max_images <= 0:
        raise LowsimError(f"--max-images must be positive, got {max_images}")
    if len(items) <= max_images:
        return list(items)
    return [items[i] for i in sorted(rng.choice(len(items), size=max_images, replace=False))]


def synthetic_files(manifest: str | Path, split: str | None) -> list[tuple[Path, Path]]:
    """(dark, clean) paths of a manifest's ok rows, optionally of one split."""
    from lowsim.manifest import dataset_dir, read_manifest
    from lowsim.safe_io import resolve_inside

    rows, meta = read_manifest(manifest)
    root = dataset_dir(manifest, meta)
    rows = rows[rows["status"] == "ok"]
    if split is not None:
        if "split" not in rows:
            raise LowsimError("the manifest has no split column", manifest)
        rows = rows[rows["split"] == split]
    if rows.empty:
        which = f" in split {split!r}" if split is not None else ""
        raise LowsimError(f"no ok samples{which} in the manifest", manifest)
    # names that leave the dataset folder (absolute, '..', a symlink out) are refused, not read
    return [(resolve_inside(root, str(d), "dark_file_name"), resolve_inside(root, str(c), "clean_file_name"))
            for d, c in zip(rows["dark_file_name"], rows["clean_file_name"])]


def _measure_all(items: Sequence[Any], read: Callable[[Any], tuple[np.ndarray, np.ndarray]], seed: int,
                 on_image: Callable[[], None] | None) -> list[ImageMeasurement]:
    """measure_image of every item, read one at a time so only one image is held in memory."""
    out = []
    for i, item in enumerate(items):
        dark, bright = read(item)
        out.append(measure_image(dark, bright, seed=seed * 100003 + i))
        if on_image is not None:
            on_image()
    return out


def _read_synthetic(paths: tuple[Path, Path]) -> tuple[np.ndarray, np.ndarray]:
    """(dark, clean) images of one synthetic sample."""
    from lowsim.imageio import read_image

    return read_image(paths[0]), read_image(paths[1])


def measure_manifest(manifest: str | Path, *, split: str | None = None, max_images: int = 200, seed: int = 0,
                     on_image: Callable[[], None] | None = None) -> list[ImageMeasurement]:
    """measure_image of a generated dataset's dark images (at most max_images, a seeded choice)."""
    files = capped(synthetic_files(manifest, split), max_images, np.random.default_rng(seed))
    return _measure_all(files, _read_synthetic, seed, on_image)


def measure_inputs(real_root: str | Path, manifest: str | Path, *, real_split: str = "val",
                   synthetic_split: str | None = None, max_images: int = 200, seed: int = 0,
                   on_start: Callable[[int], None] | None = None, on_image: Callable[[], None] | None = None
                   ) -> tuple[list[ImageMeasurement], list[ImageMeasurement], dict[str, Any]]:
    """(real, synthetic, inputs): the measured images compare compares, so several feature sets can share them."""
    from lowsim.pairs import find_pairs, read_pair

    pairs = select_real_pairs(find_pairs(real_root), real_split)
    if not pairs:
        raise LowsimError(f"no real pairs in split {real_split!r}", real_root)
    files = synthetic_files(manifest, synthetic_split)
    rng = np.random.default_rng(seed)
    pairs, files = capped(pairs, max_images, rng), capped(files, max_images, rng)
    if on_start is not None:
        on_start(len(pairs) + len(files))
    real = _measure_all(pairs, read_pair, seed, on_image)
    synthetic = _measure_all(files, _read_synthetic, seed + 1, on_image)
    inputs = {"real_root": str(real_root), "manifest": str(manifest), "real_split": real_split,
              "synthetic_split": synthetic_split, "max_images": max_images, "seed": seed}
    return real, synthetic, inputs


def compare(real_root: str | Path, manifest: str | Path, *, real_split: str = "val",
            synthetic_split: str | None = None, max_images: int = 200, seed: int = 0,
            feature_set: str = DEFAULT_FEATURE_SET, on_start: Callable[[int], None] | None = None,
            on_image: Callable[[], None] | None = None) -> CompareResult:
    """Compare the dark images of a real pairs folder (one split) with a generated dataset's."""
    feature_set_names(feature_set)  # an unknown name fails before any image is read
    real, synthetic, inputs = measure_inputs(real_root, manifest, real_split=real_split,
                                             synthetic_split=synthetic_split, max_images=max_images, seed=seed,
                                             on_start=on_start, on_image=on_image)
    return compare_measurements(real, synthetic, seed=seed, inputs={**inputs, "feature_set": feature_set},
                                feature_set=feature_set)
