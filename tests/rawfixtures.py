"""Test helpers that make camera-raw inputs: Bayer DNGs (via pidng) and fake SID folder trees.

No real camera raw file is available, so tests write uncompressed 16-bit Bayer DNGs with pidng; rawpy
(LibRaw) identifies a raw file by its content, so DNG bytes saved under a ``.ARW`` name decode the same.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lowsim.params import atomic_write_bytes

SID_BLACK = 512
SID_WHITE = 16383
def dng_bytes(bayer: np.ndarray, black: int = SID_BLACK, white: int = SID_WHITE,
              pattern: str = "RGGB", as_shot_neutral: Sequence[float] = (1.0, 1.0, 1.0)) -> bytes:
    """Encode a (H, W) uint16 Bayer mosaic as an uncompressed 16-bit DNG and return its bytes (lowsim.raw.dng)."""
    from lowsim.raw.dng import dng_bytes as encode

    return encode(bayer, black=black, white=white, pattern=pattern, as_shot_neutral=tuple(as_shot_neutral))


def write_bayer_dng(path: str | Path, bayer: np.ndarray, black: int = SID_BLACK,
                    white: int = SID_WHITE, pattern: str = "RGGB") -> Path:
    """Write a (H, W) uint16 Bayer mosaic as a DNG at ``path`` (any extension) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, dng_bytes(bayer, black=black, white=white, pattern=pattern))
    return path


def random_bayer(rng: np.random.Generator, height: int = 64, width: int = 96,
                 black: int = SID_BLACK, white: int = SID_WHITE, scale: float = 1.0) -> np.ndarray:
    """A smooth random (H, W) uint16 Bayer mosaic between black and black + scale * (white - black)."""
    base = rng.uniform(0.05, 0.95, size=(height // 2, width // 2))
    mosaic = np.repeat(np.repeat(base, 2, axis=0), 2, axis=1)
    mosaic = mosaic * rng.uniform(0.7, 1.0, size=(height, width))
    values = black + scale * mosaic * (white - black)
    return np.clip(np.round(values), 0, white).astype(np.uint16)


def _format_seconds(seconds: float) -> str:
    """SID's exposure spelling: '10s', '0.04s', '0.033s', '0.1s'."""
    return f"{seconds:g}s"


def make_sid_tree(root: str | Path, n_scenes: int = 2,
                  short_exposures: Sequence[float] = (0.04, 0.033),
                  long_exposure: float = 10.0, camera: str = "Sony", ext: str = ".ARW",
                  height: int = 32, width: int = 48, seed: int = 0,
                  test_scenes: int = 1) -> dict[str, list[tuple[str, str]]]:
    """Write a SID-shaped tree (``<camera>/short``, ``<camera>/long``) of small DNG-content raws.

    Scene ids start at 00001; each scene has one short per entry in ``short_exposures`` (numbered
    _00, _01, ...) and one long. The last ``test_scenes`` scenes go to ``<camera>_test_list.txt``,
    the rest to ``<camera>_train_list.txt``. Returns {"train": [(short, long), ...], "test": [...]}
    with paths relative to ``root`` as written in the list files.
    """
    root = Path(root)
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    lists: dict[str, list[tuple[str, str]]] = {"train": [], "test": []}
    for scene_index in range(n_scenes):
        scene = f"{scene_index + 1:05d}"
        long_rel = f"./{camera}/long/{scene}_00_{_format_seconds(long_exposure)}{ext}"
        bright = random_bayer(rng, height, width)
        write_bayer_dng(root / long_rel, bright)
        split = "test" if scene_index >= n_scenes - test_scenes else "train"
        for shot, exposure in enumerate(short_exposures):
            short_rel = f"./{camera}/short/{scene}_{shot:02d}_{_format_seconds(exposure)}{ext}"
            dark = random_bayer(rng, height, width, scale=exposure / long_exposure * 20)
            write_bayer_dng(root / short_rel, dark)
            lists[split].append((short_rel, long_rel))
    for split, rows in lists.items():
        text = "".join(f"{s} {l} ISO200 F8\n" for s, l in rows)
        (root / f"{camera}_{split}_list.txt").write_text(text)
    return lists
