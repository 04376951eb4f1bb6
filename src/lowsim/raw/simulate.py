"""Known truth for the raw calibrator: raw pairs with chosen noise, written as Bayer DNGs in SID layout.

A camera's noise comes from ELD's released parameters (../shared/data/noise-params/eld/<camera>.json): at a
chosen system gain K, the read and row noise are ELD's log-linear relations without their random part
(log σ = slope·log K + bias), the Tukey shape and the black offsets their means over ELD's ISO table. Each
scene is a smooth synthetic chart (a ramp from black to 85% of full scale, so every intensity is covered)
taken once long and once short (long / ratio); both frames get the camera's noise. Files are
`<root>/<camera>/{short,long}/<scene>_00_<seconds>s.dng` with the exposure time in the DNG's ExposureTime tag.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lowsim.errors import LowsimError
from lowsim.params import RawParams
from lowsim.raw.dng import write_dng
from lowsim.raw.noise import PATTERN, noisy_codes

LONG_SECONDS = 30.0
SID_BLACK, SID_WHITE = 512, 16383
CHART_COLOURS = {"R": 0.55, "G": 1.0, "B": 0.75}  # relative site response of the chart's grey


@dataclass(frozen=True)
class SimulatedPair:
    """One simulated pair and the truth it was made with."""

    scene: str
    short: Path
    long: Path
    truth: RawParams


def eld_profile(path: str | Path) -> dict:
    """A camera's ELD parameter file (its first profile) as a dict; LowsimError if unreadable."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        profile = data.get("Profile-1") or next(v for k, v in data.items() if k.startswith("Profile"))
    except (OSError, ValueError, StopIteration) as err:
        raise LowsimError(f"not an ELD camera parameter file ({err})", path) from None
    return {**data, "profile": profile}


def eld_truth(eld: dict, gain: float, ratio: float, black: int = SID_BLACK, white: int = SID_WHITE) -> RawParams:
    """The camera's noise at system gain `gain` by ELD's relations (their central values), for a pair at `ratio`."""
    def scale(name: str) -> float:
        line = eld["profile"][name]
        return float(np.exp(line["slope"] * np.log(gain) + line["bias"]))

    offsets = np.mean(np.asarray(eld["color_bias"], dtype=np.float64), axis=0)  # ELD order R, G1, B, G2
    return RawParams(system_gain=gain, read_noise=scale("g_scale"), row_noise=scale("R_scale"),
                     read_shape=float(np.mean(eld["G_shape"])), black_offset_r=offsets[0],
                     black_offset_g1=offsets[1], black_offset_b=offsets[2], black_offset_g2=offsets[3],
                     exposure_ratio=ratio, bright_level=0.4, adc_black=black, adc_white=white)


def chart_signal(height: int, width: int, full_scale: float) -> np.ndarray:
    """The long exposure's noiseless signal (DN above black): a squared ramp with texture, per-site colour response."""
    x = np.linspace(0.0, 1.0, width)[None, :] ** 2
    y = 0.9 + 0.1 * np.cos(np.linspace(0.0, 6.0 * np.pi, height))[:, None]
    grey = 0.85 * full_scale * x * y
    response = np.empty((height, width))
    for (row, col), letter in zip(((0, 0), (0, 1), (1, 0), (1, 1)), PATTERN):
        response[row::2, col::2] = CHART_COLOURS[letter]
    return (grey * response).astype(np.float32)


def simulate_pair(root: Path, camera: str, scene: str, truth: RawParams, size: int,
                  seed_sequence: np.random.SeedSequence) -> SimulatedPair:
    """Write one long/short DNG pair of the chart with `truth`'s noise; each frame's noise from its own stream."""
    long_rng, short_rng = (np.random.default_rng(s) for s in seed_sequence.spawn(2))
    signal = chart_signal(size, size, truth.adc_white - truth.adc_black)
    short_seconds = LONG_SECONDS / truth.exposure_ratio
    paths = []
    for kind, seconds, frame_signal, rng in (("long", LONG_SECONDS, signal, long_rng),
                                            ("short", short_seconds, signal / np.float32(truth.exposure_ratio),
                                             short_rng)):
        path = root / camera / kind / f"{scene}_00_{seconds:.6g}s.dng"
        write_dng(path, noisy_codes(frame_signal, truth, rng), black=int(truth.adc_black),
                  white=int(truth.adc_white), exposure=seconds, camera=camera)
        paths.append(path)
    return SimulatedPair(scene, paths[1], paths[0], truth)


def simulate_camera(root: str | Path, eld_file: str | Path, gains: list[float], ratio: float, size: int = 256,
                    seed: int = 0, camera: str = "Sony") -> list[SimulatedPair]:
    """One pair per gain in `gains`, scenes 00001, 00002, … under `root/camera` (SID layout)."""
    eld = eld_profile(eld_file)
    streams = np.random.SeedSequence(seed).spawn(len(gains))
    return [simulate_pair(Path(root), camera, f"{i + 1:05d}", eld_truth(eld, gain, ratio), size, stream)
            for i, (gain, stream) in enumerate(zip(gains, streams))]
