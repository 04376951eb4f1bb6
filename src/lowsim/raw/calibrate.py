"""`lowsim calibrate --method raw`: photon-transfer calibration over raw pairs, and the fitted raw distribution.

Each pair is read (`lowsim.raw.read`), checked (same camera, size, colour filter, black and white level; an
exposure ratio above 1), calibrated (`lowsim.raw.photon_transfer`) and becomes one row of the per-pair table.
A pair that cannot be used becomes a row with its reason and the rest go on; when no usable pair is left the
run stops with one line naming a pair and its problem. Large frames are calibrated on their central
MAX_SIDE × MAX_SIDE crop (plenty of pixels; bounded memory).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lowsim.errors import LowsimError
from lowsim.params import ParamDistribution
from lowsim.safe_io import atomic_write_bytes
from lowsim.raw.distribution import fit_raw_distribution
from lowsim.raw.photon_transfer import photon_transfer
from lowsim.raw.read import RawFrame, check_compatible, exposure_ratio, read_raw_frame

MAX_SIDE = 2048
RAW_SUFFIXES = frozenset({".nef", ".cr2", ".cr3", ".arw", ".dng", ".raf", ".kdc", ".orf", ".rw2", ".pef", ".srw"})


@dataclass
class RawCalibrationResult:
    """What a raw calibration run produced and where it wrote it."""

    distribution: ParamDistribution
    rows: list[dict[str, Any]]
    params_path: Path
    table_path: Path
    seconds: float


def is_raw_file(path: str | Path) -> bool:
    """True for a camera-raw file name (any format rawpy reads that lowsim knows by extension)."""
    return Path(path).suffix.lower() in RAW_SUFFIXES


def central_crop(frame: RawFrame, side: int = MAX_SIDE) -> RawFrame:
    """The frame's central crop of at most side × side (even offsets keep the colour-filter phase)."""
    height, width = frame.mosaic.shape
    top, left = max(0, (height - side) // 4 * 2), max(0, (width - side) // 4 * 2)
    mosaic = frame.mosaic[top:top + min(side, height), left:left + min(side, width)]
    return RawFrame(frame.path, mosaic, frame.pattern, frame.black, frame.white, frame.exposure, frame.camera)


def calibrate_raw_pair(name: str, dark: Path, bright: Path, ratio: float | None) -> dict[str, Any]:
    """One pair's row: its photon-transfer results, or excluded=True with the reason (never raises for bad input)."""
    row: dict[str, Any] = {"name": name, "dark": str(dark), "bright": str(bright), "excluded": False, "reason": ""}
    try:
        short, long = read_raw_frame(dark), read_raw_frame(bright)
        check_compatible(short, long)
        stated = exposure_ratio(short, long, ratio)
        result = photon_transfer(central_crop(short), central_crop(long), stated)
    except LowsimError as err:
        return {**row, "excluded": True, "reason": str(err)}
    row.update(camera=short.camera or "", pattern=short.pattern, adc_black=float(np.mean(short.black)),
               adc_white=short.white, system_gain=result.system_gain, read_noise=result.read_noise,
               row_noise=result.row_noise, read_shape=result.read_shape, exposure_ratio=stated,
               bright_level=result.bright_level, measured_ratio=result.measured_ratio,
               linearity_error=result.linearity_error, ptc_chi2=result.ptc_chi2,
               saturated_fraction=result.saturated_fraction,
               **{f"black_offset_{c}": v for c, v in result.black_offsets.items()},
               **{f"site_gain_{i}": g for i, g in enumerate(result.per_site_gain)})
    if result.problem:
        row.update(excluded=True, reason=f"{dark}: {result.problem}")
    return row


def csv_ratios(pairs: list, csv_path: str | Path) -> dict[str, float | None]:
    """Each CSV pair's stated ratio: its ratio column, else bright_exposure / dark_exposure (seconds), else None."""
    import pandas as pd

    from lowsim.pairs import _single_csv

    path = Path(csv_path) if Path(csv_path).is_file() else _single_csv(Path(csv_path))
    table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    table.columns = [str(c).strip().lower() for c in table.columns]
    out: dict[str, float | None] = {p.name: p.ratio for p in pairs}
    if not {"dark_exposure", "bright_exposure"} <= set(table.columns):
        return out
    names = table["name"].str.strip() if "name" in table.columns else table["dark"].map(lambda d: Path(d.strip()).stem)
    for name, dark, bright in zip(names, table["dark_exposure"], table["bright_exposure"]):
        if out.get(name) is None and dark.strip() and bright.strip():
            try:
                out[name] = float(bright) / float(dark) if float(dark) > 0 else float("nan")
            except ValueError:
                out[name] = float("nan")  # the pair's row says why (exposure_ratio); the others go on
    return out


def calibrate_all(jobs: list[tuple], workers: int,
                  on_done: Callable[[dict[str, Any]], None] | None) -> list[dict[str, Any]]:
    """calibrate_raw_pair over every job in `workers` processes; rows in job order, so workers change nothing."""
    if workers <= 1 or len(jobs) <= 1:
        rows = []
        for job in jobs:
            rows.append(calibrate_raw_pair(*job))
            if on_done:
                on_done(rows[-1])
        return rows
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn")) as pool:
        rows = []
        for row in pool.map(calibrate_raw_pair, *zip(*jobs)):
            rows.append(row)
            if on_done:
                on_done(row)
    return rows


def camera_constants(rows: list[dict[str, Any]]) -> dict[str, float]:
    """adc_black and adc_white shared by the usable pairs; one camera per distribution."""
    levels = {(r["adc_black"], r["adc_white"], r["pattern"]) for r in rows}
    if len(levels) > 1:
        raise LowsimError(f"the pairs come from sensors with different black/white levels or colour filters "
                          f"({sorted(levels)}); calibrate one camera at a time")
    black, white, _ = levels.pop()
    return {"adc_black": black, "adc_white": white}


def write_table(rows: list[dict[str, Any]], path: Path) -> Path:
    """The per-pair table as Parquet, atomically."""
    import io

    import pandas as pd

    buffer = io.BytesIO()
    pd.DataFrame(rows).to_parquet(buffer, index=False)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def no_usable_pair(rows: list[dict[str, Any]], root: Path) -> LowsimError:
    """The one-line error when every pair was refused: how many, and the first pair's reason."""
    first = rows[0]["reason"] if rows else "no pairs"
    return LowsimError(f"no usable raw pair ({len(rows)} refused); first: {first}", root if not rows else None)


def run_raw_calibration(pairs_root: str | Path, out: str | Path, *, layout: str = "auto", source: str = "",
                        workers: int = 1, on_start: Callable[[int], None] | None = None,
                        on_done: Callable[[dict[str, Any]], None] | None = None) -> RawCalibrationResult:
    """Find raw pairs, calibrate each, fit the raw distribution; write the params JSON and NAME.pairs.parquet."""
    from lowsim.pairs import detect_layout, find_pairs
    from lowsim.project import pairs_dir_entry

    started = time.perf_counter()
    chosen = detect_layout(pairs_root) if layout == "auto" else layout
    pairs = find_pairs(pairs_root, layout=chosen)
    if on_start:
        on_start(len(pairs))
    stated = csv_ratios(pairs, pairs_root) if chosen == "csv" else {}
    # a CSV's ratio or exposure columns are the user's word; SID names only round the exposure times
    jobs = [(pair.name, pair.dark, pair.bright, stated.get(pair.name)) for pair in pairs]
    rows = calibrate_all(jobs, workers, on_done)
    usable = [r for r in rows if not r["excluded"]]
    if len(usable) < 2:
        raise no_usable_pair([r for r in rows if r["excluded"]], Path(pairs_root)) if not usable else \
            LowsimError(f"only 1 of {len(rows)} raw pairs is usable; need at least 2 to fit a distribution "
                        "(the others: " + "; ".join(r["reason"] for r in rows if r["excluded"])[:300] + ")")
    out = Path(out)
    table = out.with_name(out.stem + ".pairs.parquet")
    info = {"pairs_found": len(pairs), "layout": chosen, "pairs_table": table.name,
            "pairs_dir": pairs_dir_entry(Path(pairs_root), out),
            "camera": usable[0]["camera"], "pattern": usable[0]["pattern"]}
    dist = fit_raw_distribution(usable, camera_constants(usable), method="raw", source=source,
                                excluded=[{"name": r["name"], "reason": r["reason"]} for r in rows if r["excluded"]],
                                info=info)
    write_table(rows, table)
    dist.save(out)
    return RawCalibrationResult(dist, rows, out, table, time.perf_counter() - started)
