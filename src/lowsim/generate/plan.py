"""The sampling plan: which source, crop, flips and random streams each sample index gets, and the run spec.

Everything here is a pure function of the run's inputs (seed, sources, size, ...) and an index, so it does
not depend on the backend, the worker count or the order in which samples are made.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from lowsim.degradation.registry import get_model
from lowsim.params import V1_MODEL
from lowsim.errors import LowsimError
from lowsim.imageio import list_images
from lowsim.splits import DEFAULT_FRACTIONS

KEY_DIGITS = 8
CLEAN_DIR = "clean"
DARK_DIR = "dark"
METADATA_FILE = "metadata.parquet"
JOURNAL_DIR = ".lowsim-journal"
MANIFESTS_DIR = "manifests"
# spawn_key (ORDER_STREAM, cycle) seeds the shuffle of a cycle; it cannot collide with a sample's (i,)
# or its children (i, 0..2), since no run has 2^62 samples.
ORDER_STREAM = 1 << 62
STREAMS = ("geometry", "params", "noise")
# scikit-image's bundled colour photographs (the default --src), used when present on disk.
SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
                  "motorcycle_right.png", "hubble_deep_field.jpg", "retina.jpg", "ihc.png")
# Sources smaller than this on either side are refused (error rows): a 1x1, 3x3 or 2x500 photo would only
# be upscaled into flat crops. 32 px is the smallest side at which a crop still has texture to degrade.
MIN_SOURCE_SIDE = 32
KEY_FILE = re.compile(r"^(\d{%d,})\.(?:png|npy)$" % KEY_DIGITS)  # .npy: packed raw dark frames


# ================================================================================== inputs


def default_params_path() -> Path:
    """The shipped calibration on LOL (model v2), package data of lowsim."""
    from lowsim.project import shipped_params

    return shipped_params("lol")


def skimage_photo_dir() -> Path:
    """scikit-image's sample-data folder (its colour photos are the default sources)."""
    import skimage.data

    return Path(skimage.data.__file__).resolve().parent


def find_sources(src: Path | None) -> tuple[Path, list[str]]:
    """(root, sorted relative posix paths) of the source photos; None means scikit-image's photos."""
    if src is None:
        root = skimage_photo_dir()
        names = [n for n in SKIMAGE_PHOTOS if (root / n).is_file()]
        if not names:
            raise LowsimError("none of scikit-image's sample photos are on disk; pass --src", root)
        return root, names
    src = Path(src)
    if not src.exists():
        raise LowsimError("source folder not found", src)
    if not src.is_dir():
        raise LowsimError("--src must be a folder of images", src)
    root = src.resolve()
    return root, [p.relative_to(root).as_posix() for p in list_images(root)]


def parse_fractions(text: str | Mapping[str, float] | None) -> dict[str, float]:
    """'train=0.9,val=0.05,test=0.05' -> dict; every name non-empty, every value >= 0, sum > 0."""
    if text is None:
        return dict(DEFAULT_FRACTIONS)
    if isinstance(text, Mapping):
        items = [(str(k), v) for k, v in text.items()]
    else:
        items = []
        for part in str(text).split(","):
            name, sep, value = part.partition("=")
            if not sep or not name.strip():
                raise LowsimError(f"split fractions must look like train=0.9,val=0.05,test=0.05; got {text!r}")
            items.append((name.strip(), value.strip()))
    fractions: dict[str, float] = {}
    for name, value in items:
        try:
            fraction = float(value)
        except ValueError:
            raise LowsimError(f"split fraction for {name!r} is not a number: {value!r}") from None
        if not math.isfinite(fraction) or fraction < 0:
            raise LowsimError(f"split fraction for {name!r} must be a finite number >= 0, got {value!r}")
        if name in fractions:
            raise LowsimError(f"split {name!r} is given twice")
        fractions[name] = fraction
    if sum(fractions.values()) <= 0:
        raise LowsimError(f"split fractions must not all be zero, got {text!r}")
    return fractions


# ================================================================================== sampling plan


def sample_key(index: int) -> str:
    """The key (and file stem) of sample `index`."""
    return f"{index:0{KEY_DIGITS}d}"


def sample_streams(seed: int, index: int) -> dict[str, np.random.Generator]:
    """Independent generators for the geometry, params and noise draws of sample `index`."""
    return streams_of(np.random.SeedSequence(seed, spawn_key=(index,)))


def streams_of(seed_sequence: np.random.SeedSequence) -> dict[str, np.random.Generator]:
    """The geometry, params and noise generators of one sample, children of its own SeedSequence (a fresh one:
    spawning advances it). generate's sample i has SeedSequence(seed, spawn_key=(i,)); others (transfer's
    on-the-fly pretraining) derive theirs from their own keys."""
    children = seed_sequence.spawn(len(STREAMS))
    return {name: np.random.default_rng(child) for name, child in zip(STREAMS, children)}


def cycle_order(seed: int, cycle: int, n_sources: int) -> np.ndarray:
    """The seeded shuffle of source indices used by cycle `cycle`."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(ORDER_STREAM, cycle)))
    return rng.permutation(n_sources)


def source_index(seed: int, index: int, n_sources: int) -> int:
    """Which source sample `index` degrades."""
    return int(cycle_order(seed, index // n_sources, n_sources)[index % n_sources])


@dataclass(frozen=True)
class Geometry:
    """How a sample's pixels come from its source: resize, crop box, flips, transpose (in that order)."""

    resize_height: int
    resize_width: int
    crop_y: int
    crop_x: int
    height: int
    width: int
    flip_v: bool = False
    flip_h: bool = False
    transpose: bool = False

    def fields(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Geometry":
        return cls(**{f.name: (bool(row[f.name]) if f.type == "bool" else int(row[f.name]))
                      for f in dataclasses.fields(cls)})


def draw_geometry(rng: np.random.Generator, src_height: int, src_width: int, size: int | None) -> Geometry:
    """Crop of size x size (after upscaling a smaller source so its short side is `size`) and flips.

    With size None the whole source is used as it is, and nothing is drawn.
    """
    if size is None:
        return Geometry(src_height, src_width, 0, 0, src_height, src_width)
    scale = max(1.0, size / min(src_height, src_width))
    rh = max(size, int(round(src_height * scale))) if scale > 1 else src_height
    rw = max(size, int(round(src_width * scale))) if scale > 1 else src_width
    crop_y = int(rng.integers(0, rh - size + 1))
    crop_x = int(rng.integers(0, rw - size + 1))
    flip_v, flip_h, transpose = (bool(b) for b in rng.integers(0, 2, size=3))
    return Geometry(rh, rw, crop_y, crop_x, size, size, flip_v, flip_h, transpose)


def apply_geometry(img: np.ndarray, g: Geometry) -> np.ndarray:
    """The sample's pixels: resize (bicubic, only ever up) to (rh, rw), crop, flip, transpose; contiguous."""
    import cv2

    if img.shape[:2] != (g.resize_height, g.resize_width):  # only sources smaller than the crop
        img = cv2.resize(img, (g.resize_width, g.resize_height), interpolation=cv2.INTER_CUBIC)
    out = img[g.crop_y:g.crop_y + g.height, g.crop_x:g.crop_x + g.width]
    if g.flip_v:
        out = out[::-1]
    if g.flip_h:
        out = out[:, ::-1]
    if g.transpose:
        out = out.transpose(1, 0, 2)
    return np.ascontiguousarray(out)


def to_bit_depth(img: np.ndarray, bit_depth: int) -> np.ndarray:
    """uint8/uint16 image at the output depth, by exact integer rescaling (x257, or rounded /257)."""
    if bit_depth == 8:
        if img.dtype == np.uint8:
            return img
        return ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if img.dtype == np.uint16:
        return img
    return img.astype(np.uint16) * np.uint16(257)


# ================================================================================== the run


@dataclass(frozen=True)
class RunSpec:
    """Everything that decides the samples (the run signature), plus where they go."""

    src_root: str
    sources: tuple[str, ...]
    params_path: str
    params_sha256: str
    seed: int
    size: int | None
    bit_depth: int
    fractions: tuple[tuple[str, float], ...]
    out: str
    model: str = V1_MODEL
    param_sampler: str = "normal"  # how parameters are drawn from the distribution (normal | empirical)
    recipe: str | None = None  # lowsim generate --recipe (None: the API without one; recorded per row)

    def signature(self) -> dict[str, Any]:
        """What must match for a resume (not n, workers, or the paths of params and manifest)."""
        # surrogateescape: names that are not UTF-8 hash as their bytes (UTF-8 names as before)
        listing = hashlib.sha256("\n".join(self.sources).encode("utf-8", "surrogateescape")).hexdigest()
        out = {"src_root": self.src_root, "n_sources": len(self.sources), "sources_sha256": listing,
               "params_sha256": self.params_sha256, "seed": self.seed, "size": self.size,
               "bit_depth": self.bit_depth, "split_fractions": dict(self.fractions),
               "model": self.model, "samplers": list(get_model(self.model).samplers)}
        if self.model != V1_MODEL or self.param_sampler != "normal":  # v1 run records stay as they were
            out["param_sampler"] = self.param_sampler
        if self.recipe not in (None, "calibrated"):  # earlier run records stay as they were
            out["recipe"] = self.recipe
        return out
