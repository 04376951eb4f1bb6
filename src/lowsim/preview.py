"""`lowsim preview`: the founding paper's Figure 3 strip, step by step, for one photo and several draws.

Of 41 seeded parameter draws, the ones at the 10th, 50th and 90th percentile of darkness (mean brightness of
the dark image) are shown, one row each: v1's chain with seed 002's illumination map (original,
+ illumination, + black level, + colour, + noise, + gamma: the pipeline `lowsim generate` runs), or v2's
stages and its dark image brightened. `preview_rows` also gives v1's paper-only row (seed 001).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from lowsim.degradation.registry import get_model
from lowsim.degradation.stages import to_float
from lowsim.degrade import degrade_stages
from lowsim.errors import LowsimError
from lowsim.imageio import read_image
from lowsim.params import V1_MODEL, DegradationParams, IspParams, ParamDistribution
from lowsim.safe_io import atomic_path

PREVIEW_MAX_SIDE = 384  # pixels per panel: enough to see noise, small enough for a README


def shrink(img: np.ndarray, max_side: int = PREVIEW_MAX_SIDE) -> np.ndarray:
    """Downscale (area averaging) so the longer side is at most max_side; never upscale."""
    import cv2

    scale = max_side / max(img.shape[:2])
    if scale >= 1:
        return img
    size = (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def preview_rows(clean: np.ndarray, p: DegradationParams | IspParams,
                 seed: int) -> list[list[tuple[str, np.ndarray]]]:
    """Rows of (label, float image in [0, 1]) panels; each row draws its noise from its own stream.

    v1: the paper's chain and the chain with the illumination map; v2: its stages, then the dark image
    brightened to its clean image's mean so the noise can be seen.
    """
    streams = np.random.SeedSequence(seed).spawn(2)
    if p.model != V1_MODEL:
        panels = [(label, np.clip(img, 0.0, 1.0))
                  for label, img in get_model(p.model).stages(clean, p, np.random.default_rng(streams[0]))]
        dark = panels[-1][1]
        gain = float(to_float(clean).mean() / max(dark.mean(), 1e-4))
        return [panels + [(f"dark x {gain:.0f}", np.clip(dark * gain, 0.0, 1.0))]]
    rows = []
    for illumination, stream in zip((False, True), streams):
        stages = degrade_stages(clean, p, np.random.default_rng(stream), illumination=illumination)
        rows.append([(label, np.clip(img, 0.0, 1.0)) for label, img in stages])
    return rows


def render_preview(rows: list[list[tuple[str, np.ndarray]]], p: DegradationParams, title: str,
                   out: Path, row_names: Sequence[str] | None = None) -> Path:
    """Lay the panels out with matplotlib (labels, parameter caption) and save a PNG atomically. `row_names`
    (one per row) label rows of different draws; `p` is then not captioned."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_cols = max(len(r) for r in rows)
    height, width = rows[0][0][1].shape[:2]
    panel = 2.6
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(panel * n_cols, panel * height / width * len(rows) + 1.0),
                             squeeze=False)
    several_draws = row_names is not None
    if row_names is None:
        row_names = (("paper's pipeline (seed 001)", "with illumination map (seed 002)") if p.model == V1_MODEL
                     else ("ISP-structured model v2",))
    for r, row in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(row):
                label, img = row[c]
                ax.imshow(img, vmin=0.0, vmax=1.0, interpolation="nearest")
                ax.set_title(label, fontsize=9)
    values = ", ".join(f"{k}={v:.3g}" for k, v in p.to_dict().items())
    fig.suptitle(title if several_draws else f"{title}\n{values}", fontsize=8)  # rows of several draws: no one p
    fig.tight_layout(rect=(0.025, 0.0, 1.0, 1.0))
    for r, name in enumerate(row_names[:len(rows)]):  # row labels in the left margin
        box = axes[r][0].get_position()
        fig.text(0.012, (box.y0 + box.y1) / 2, name, rotation=90, va="center", ha="center", fontsize=8)
    out = Path(out)
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
    return out


DRAWS = 41  # parameter draws ranked by darkness; the 10th, 50th and 90th percentile ones are shown
PERCENTILES = (10, 50, 90)


def darkness_draws(dist: ParamDistribution, clean: np.ndarray, seed: int,
                   n: int = DRAWS) -> list[tuple[int, float, DegradationParams | IspParams]]:
    """(percentile, mean brightness of the dark image, params) of the draws at PERCENTILES of brightness among n
    seeded draws, each measured on a small copy of the photo (its noise from the draw's own stream)."""
    model = get_model(dist.model)
    small = shrink(clean, 96)
    draws, levels = [], []
    for i, stream in enumerate(np.random.SeedSequence(seed).spawn(n)):
        params_rng, noise_rng = (np.random.default_rng(s) for s in stream.spawn(2))
        p = dist.sample_for_photo(params_rng, clean)[0]
        draws.append(p)
        levels.append(float(to_float(model.degrade_to_codes(small, p, noise_rng, 8)).mean()))
    order = np.argsort(levels, kind="stable")
    picks = [(q, int(order[round(q / 100 * (n - 1))])) for q in PERCENTILES]
    return [(q, levels[i], draws[i]) for q, i in picks]


def preview(src: Path, params: Path, out: Path, seed: int = 0) -> Path:
    """Read the photo, pick the draws at the 10th/50th/90th percentile of darkness, render each draw's stages
    (v1: the chain `generate` runs, with the illumination map) as one row, write the PNG; return its path."""
    if Path(out).suffix.lower() != ".png":
        raise LowsimError("--out must be a .png file", out)
    dist = ParamDistribution.load(params)
    if Path(src).is_dir():
        raise LowsimError("--src must be one image file, got a folder", src)
    clean = shrink(read_image(src))
    rows, names = [], []
    for q, level, p in darkness_draws(dist, clean, seed):
        rows.append(preview_rows(clean, p, seed)[-1])
        names.append(f"p{q} darkness (mean {level:.3f})")
    title = (f"{Path(src).name} — lowsim preview (seed {seed}): the draws at the {', '.join(map(str, PERCENTILES))}"
             f"th percentile of darkness among {DRAWS}")
    return render_preview(rows, p, title, out, row_names=names)
