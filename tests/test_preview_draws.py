"""`lowsim preview` shows several draws: those at the 10th, 50th and 90th percentile of darkness."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lowsim.imageio import read_image
from lowsim.params import ParamDistribution
from lowsim.preview import PERCENTILES, darkness_draws, preview
from lowsim.project import shipped_params


def test_draws_are_ranked_by_darkness_and_seeded(clean_dir: Path) -> None:
    dist = ParamDistribution.load(shipped_params("lol"))
    clean = read_image(clean_dir / "kodak24" / "kodim05.png")
    draws = darkness_draws(dist, clean, seed=3)
    assert [q for q, _, _ in draws] == list(PERCENTILES)
    levels = [level for _, level, _ in draws]
    assert levels[0] < levels[1] < levels[2]
    again = darkness_draws(dist, clean, seed=3)
    assert [p.to_dict() for _, _, p in again] == [p.to_dict() for _, _, p in draws]
    assert [p.to_dict() for _, _, p in darkness_draws(dist, clean, seed=4)] != [p.to_dict() for _, _, p in draws]


def test_preview_png_has_a_row_per_draw(clean_dir: Path, tmp_path: Path) -> None:
    for name, columns in (("lol", 7), ("lol-v1", 6)):
        out = preview(clean_dir / "kodak24" / "kodim05.png", shipped_params(name), tmp_path / f"{name}.png")
        image = read_image(out)
        height, width = image.shape[:2]
        # three rows of square panels: about columns / 3 as wide as high
        assert abs(width / height - columns / 3) < 0.5, (name, image.shape)
        assert np.asarray(image, dtype=float).std() > 20
