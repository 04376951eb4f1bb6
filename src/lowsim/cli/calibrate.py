"""`lowsim calibrate`: fit the degradation model on real dark/bright pairs."""
from __future__ import annotations

import math
import os
import shlex
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import typer

from lowsim.cli import app, interruptible
from lowsim.errors import LowsimError
from lowsim.project import default_params_out, describe_default


def _command_line(pairs: Path, layout: str, method: str, out: Path, report: Path | None, split: str,
                  seed: int, fit_jpeg: bool = False, downscale: float | None = None) -> str:
    """The command as run (without --workers, which cannot change the result)."""
    args = ["lowsim", "calibrate", "--pairs", str(pairs), "--layout", layout, "--method", method,
            "--split", split, "--seed", str(seed), "--out", str(out)]
    if report is not None:
        args += ["--report", str(report)]
    if downscale is not None:  # it changes every v2 fit: the command must carry it to be re-run
        args += ["--downscale", f"{downscale:g}"]
    if fit_jpeg:
        args += ["--fit-jpeg"]
    return shlex.join(args)


def _print_summary(result: Any) -> None:
    """Fit quality of both methods, excluded pairs, fitted means and timing, as rich tables."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    used = [r for r in result.rows if not r["excluded"]]
    quality = Table(title=f"fit quality of expected_dark vs dark over {len(used)} included pairs")
    for column in ("method", "RMSE mean (levels)", "RMSE median", "R² mean", "R² median", "R² 8x8 blocks"):
        quality.add_column(column)
    for prefix, label in (("paper", "paper (seed 001 §3.1)"), ("paper01", "paper, gamma on [0,1]"),
                          ("joint", "joint fit"), ("joint_noisy", "joint, mean under its noise")):
        s = result.summary

        def cell(key: str) -> str:
            value = s.get(f"{prefix}_{key}", math.nan)
            return "—" if not math.isfinite(value) else f"{value:.3f}"

        quality.add_row(label, cell("rmse_dn_mean"), cell("rmse_dn_median"), cell("r2_mean"),
                        cell("r2_median"), cell("r2_blocks_mean"))
    console.print(quality)
    excluded = [r for r in result.rows if r["excluded"]]
    if excluded:
        table = Table(title=f"{len(excluded)} excluded pairs")
        table.add_column("pair")
        table.add_column("reason")
        for r in excluded:
            table.add_row(r["name"], r["reason"])
        console.print(table)
    means = Table(title=f"fitted distribution ({result.distribution.method}), natural-unit means")
    means.add_column("parameter")
    means.add_column("mean")
    means.add_column("")
    for name, value in result.distribution.natural_mean().items():
        means.add_row(name, f"{value:.4g}", "fixed" if name in result.distribution.fixed else "")
    console.print(means)
    console.print(f"{len(result.rows)} of {result.n_found} pairs calibrated in {result.seconds:.1f} s; "
                  f"wrote {result.params_path}, {result.table_path}"
                  + (f", {result.report_path}" if result.report_path else ""))


def _print_jpeg_summary(summary: dict[str, Any]) -> None:
    """What --fit-jpeg chose: pairs per quality (0 = off), the median cost change, the quality written."""
    chosen = summary.get("pairs_per_quality", {})
    counts = ", ".join(f"{'off' if q == '0' else 'q' + q}: {n}" for q, n in chosen.items())
    change = summary.get("median_cost_change")
    print(f"JPEG quality per pair ({counts}); median residual-match cost change against off "
          f"{'n/a' if change is None else f'{100 * change:+.0f} %'}; params file: jpeg_quality "
          f"{summary.get('run_quality', 0):g}")


# Help texts of the longer options, kept here so the command's signature stays readable.
METHOD_HELP = ("auto (raw for camera-raw pairs, else isp), raw (photon transfer on raw pairs: the raw noise model), "
               "isp (model v2: tone and colour fit, noise and processing by matching residual statistics), joint "
               "(v1: the whole sRGB model + noise) or paper (v1: seed 001's estimators).")
OUT_HELP = ("Params JSON to write [params/<pairs name>.json]; it records the pairs folder, `transfer finetune`'s "
            "default --pairs.")
DOWNSCALE_HELP = ("isp: how much the camera's images were resized (sensor pixels per image pixel along a side, "
                  ">= 1) [default: chosen from the dark images' noise].")
FIT_JPEG_HELP = ("isp: also choose each pair's JPEG quality (off, 95, 85, 75, 60, 40) by the noise fit's residual "
                 "match; the params file fixes the pairs' median.")
MAX_PIXELS_HELP = ("Refuse images with more decoded pixels than this, from their header (decompression bombs) "
                   "[default: 100000000].")


def _params_out(pairs: Path, out: Path | None) -> Path:
    """--out, by default params/<pairs folder name>.json (the default is printed); it must name a .json file."""
    if out is None:
        out = describe_default("--out", default_params_out(pairs), "params/<pairs folder name>.json")
    if out.suffix.lower() != ".json":
        raise LowsimError("--out must name a .json file", out)
    return out


def _check_fit_options(method: str, split: str, downscale: float | None) -> None:
    """Refuse an unknown --method or --split, and a --downscale below 1 or without --method isp."""
    from lowsim.calibrate import METHODS, SPLITS

    if method not in METHODS:
        raise LowsimError(f"unknown --method {method!r}, expected one of {', '.join(METHODS)}")
    if split not in SPLITS:
        raise LowsimError(f"unknown --split {split!r}, expected one of {', '.join(SPLITS)}")
    if downscale is not None and (not downscale >= 1.0 or method != "isp"):
        raise LowsimError(f"--downscale must be >= 1 and goes with --method isp; got {downscale} with {method}")


def _report_target(out: Path, report: Path | None) -> Path:
    """--report (default: beside --out), once both targets are known to be writable."""
    from lowsim.safe_io import check_write_target

    if report is None:
        report = out.with_suffix(".png")
    for target in (out, report):  # before minutes of fitting: refuse a target we would not write to
        check_write_target(target)
    return report


@contextmanager
def _calibration_progress() -> Iterator[tuple[Callable[[int], None], Callable[[dict[str, Any]], None]]]:
    """A progress bar over pairs as (on_start, on_done) callbacks of run_calibration, stopped on leaving."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    # The bar starts once the pairs are found, so a bad --pairs gives its one-line error alone.
    progress = Progress(TextColumn("calibrating"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.description}"), TimeElapsedColumn(), TimeRemainingColumn())
    task = progress.add_task("", total=None)

    def on_start(total: int) -> None:
        progress.update(task, total=total)
        progress.start()

    def on_done(row: dict[str, Any]) -> None:
        progress.update(task, advance=1, description=f"pair {row['name']}")

    try:
        yield on_start, on_done
    finally:
        if progress.live.is_started:
            progress.stop()


@app.command()
@interruptible("no params file was written; run the same command again")
def calibrate(
    pairs: Path = typer.Option(..., "--pairs", help="Folder (or CSV) of real dark/bright pairs."),
    layout: str = typer.Option("auto", "--layout", help="auto, sid, lol or csv."),
    method: str = typer.Option("auto", "--method", help=METHOD_HELP),
    out: Optional[Path] = typer.Option(None, "--out", help=OUT_HELP),
    report: Optional[Path] = typer.Option(None, "--report", help="Report PNG [beside --out, same stem]."),
    split: str = typer.Option("all", "--split",
                              help="all, or pool: only pairs that assign_split puts in the pool (not val)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the pixel subsampling and noise simulation."),
    workers: int = typer.Option(0, "--workers", help="Processes over pairs; 0 = one per CPU core."),
    downscale: Optional[float] = typer.Option(None, "--downscale", help=DOWNSCALE_HELP),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", help=MAX_PIXELS_HELP),
    fit_jpeg: bool = typer.Option(False, "--fit-jpeg", help=FIT_JPEG_HELP),
) -> None:
    """Calibrate the degradation model on real pairs: params JSON + per-pair Parquet + report PNG."""
    from lowsim.calibrate import run_calibration
    from lowsim.imageio import set_max_pixels
    from lowsim.raw.cli import calibrate_raw_command, resolve_method

    set_max_pixels(max_pixels)
    if workers < 0:
        raise LowsimError(f"--workers must be >= 0, got {workers}")
    method = resolve_method(pairs, layout, method)
    if fit_jpeg and method != "isp":
        raise LowsimError(f"--fit-jpeg goes with --method isp (model v2); got --method {method}")
    out = _params_out(pairs, out)
    n_workers = workers or os.cpu_count() or 1
    if method == "raw":
        calibrate_raw_command(pairs, layout, out, _command_line(pairs, layout, method, out, None, split, seed),
                              n_workers)
        return
    _check_fit_options(method, split, downscale)
    report = _report_target(out, report)
    source = _command_line(pairs, layout, method, out, report, split, seed, fit_jpeg, downscale)
    with _calibration_progress() as (on_start, on_done):
        result = run_calibration(pairs, out, layout=layout, method=method, report=report, split=split,
                                 seed=seed, workers=n_workers, source=source, on_start=on_start,
                                 on_done=on_done, downscale=downscale, fit_jpeg=fit_jpeg)
    _print_summary(result)
    if fit_jpeg:
        _print_jpeg_summary(result.distribution.info.get("fit_jpeg", {}))
