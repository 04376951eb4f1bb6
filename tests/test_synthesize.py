"""lowsim.generate.synthesize: the one step from source pixels and a sample's streams to its clean and dark
images, shared by `lowsim generate` and transfer's on-the-fly pretraining."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from lowsim import generate as G
from lowsim.imageio import read_image
from lowsim.manifest import read_manifest
from lowsim.project import shipped_params


def write_photos(root: Path, count: int = 3) -> Path:
    """A few small textured sources (one smaller than the crop, so it is upscaled)."""
    rng = np.random.default_rng(7)
    root.mkdir(parents=True, exist_ok=True)
    for i, (h, w) in enumerate([(60, 80), (48, 40), (28, 36)][:count]):
        cv2.imwrite(str(root / f"s{i}.png"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return root


def test_streams_of_a_samples_seed_sequence_are_generates_streams() -> None:
    mine = G.streams_of(np.random.SeedSequence(5, spawn_key=(3,)))
    theirs = G.sample_streams(5, 3)
    assert all(mine[k].integers(0, 2**62) == theirs[k].integers(0, 2**62) for k in G.STREAMS)


@pytest.mark.parametrize("shipped", ["lol", "lol-v1"])
def test_synthesize_makes_exactly_what_generate_wrote(tmp_path: Path, shipped: str) -> None:
    params = shipped_params(shipped)
    result = G.generate(src=write_photos(tmp_path / "src"), n=4, params=params, out=tmp_path / "out", size=32,
                        seed=3, split_fractions={"train": 1.0}, progress=False)
    frame, _ = read_manifest(result.manifest)
    dist = G.load_distribution(params, None, None)
    for row in frame[frame["status"] == "ok"].to_dict("records"):
        made = G.synthesize(read_image(tmp_path / "src" / row["source_path"]), dist,
                            G.sample_streams(3, int(row["index"])), 32)
        assert np.array_equal(made.clean, read_image(result.out / row["clean_file_name"]))
        assert np.array_equal(made.dark, read_image(result.out / row["dark_file_name"]))
        assert made.geometry == G.Geometry.from_row(row) and made.sampler == row["sampler"]
        assert all(np.isclose(value, row[name]) for name, value in made.params.to_dict().items()
                   if isinstance(value, float))
