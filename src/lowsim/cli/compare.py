"""`lowsim compare`: how far a synthetic dark set is from real dark images."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

import typer

from lowsim.cli import app, interruptible
from lowsim.errors import LowsimError


def _check_outputs(report: Path | None, json_path: Path | None) -> None:
    """Refuse bad output names before any image is read."""
    from lowsim.compare_report import REPORT_SUFFIXES
    from lowsim.safe_io import check_write_target

    if report is not None and report.suffix.lower() not in REPORT_SUFFIXES:
        raise LowsimError(f"unsupported report type {report.suffix or '(no suffix)'!r}, expected .png or .html",
                          report)
    if json_path is not None and json_path.suffix.lower() != ".json":
        raise LowsimError("--json must name a .json file", json_path)
    for target in (report, json_path):  # before any image is read: refuse targets we would not write to
        if target is not None:
            check_write_target(target)


def _number(value: float, digits: str = ".4g") -> str:
    """A table cell: the number, or a dash when it is NaN."""
    return format(value, digits) if math.isfinite(value) else "—"


def _print_table(result: Any) -> None:
    """Per-statistic medians and distances, then the headline numbers."""
    from rich.console import Console
    from rich.table import Table

    from lowsim.compare_report import summary_lines

    table = Table(title=f"{result.n_real} real vs {result.n_synthetic} synthetic dark images")
    for column in ("statistic", "real median", "synthetic median", "rel diff", "KS"):
        table.add_column(column, justify="left" if column == "statistic" else "right")
    for group in (result.statistics, result.pixel_noise):  # the second: pixel-scale noise, not in the distance
        for s in group:
            table.add_row(s.name, _number(s.real_median), _number(s.synthetic_median),
                          _number(s.relative_median_diff, "+.1%"), _number(s.ks, ".2f"))
        table.add_section()
    console = Console()
    console.print(table)
    for line in summary_lines(result):
        console.print(line, highlight=False)


@app.command()
@interruptible("nothing was written; run the same command again")
def compare(
    real: Path = typer.Option(..., "--real", help="Folder (or CSV) of real dark/bright pairs."),
    synthetic: Path = typer.Option(..., "--synthetic", help="Manifest Parquet of a generated dataset."),
    real_split: str = typer.Option("val", "--real-split", help="val, pool or all real pairs."),
    synthetic_split: Optional[str] = typer.Option(None, "--synthetic-split",
                                                  help="Only this split of the manifest (default: all)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Report file, .png or .html."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the full result as JSON."),
    max_images: int = typer.Option(200, "--max-images", help="At most this many images per side (seeded)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the image choice, patches and classifier folds."),
    features: str = typer.Option("laplacian", "--features",
                                 help="Classifier features: laplacian (noise statistics that scene texture and "
                                      "colour barely move) or residual (the high-pass residual's statistics "
                                      "and colour ratios, as before; they also tell photo collections apart)."),
) -> None:
    """Compare synthetic dark images with real ones: statistics, noise profile, classifier test."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from lowsim.compare import FEATURE_SETS, REAL_SPLITS, compare as run
    from lowsim.compare_report import write_compare_report
    from lowsim.safe_io import atomic_write_text

    if real_split not in REAL_SPLITS:
        raise LowsimError(f"unknown --real-split {real_split!r}, expected one of {', '.join(REAL_SPLITS)}")
    if max_images <= 0:
        raise LowsimError(f"--max-images must be positive, got {max_images}")
    if features not in FEATURE_SETS:
        raise LowsimError(f"unknown --features {features!r}, expected one of {', '.join(FEATURE_SETS)}")
    _check_outputs(report, json_path)
    progress = Progress(TextColumn("measuring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=Console(stderr=True), transient=True)
    task = progress.add_task("", total=None)

    def on_start(total: int) -> None:
        """Show the bar only once the inputs are found, so a bad path gives its one line alone."""
        progress.update(task, total=total)
        progress.start()

    try:
        result = run(real, synthetic, real_split=real_split, synthetic_split=synthetic_split,
                     max_images=max_images, seed=seed, feature_set=features, on_start=on_start,
                     on_image=lambda: progress.advance(task))
    finally:
        if progress.live.is_started:
            progress.stop()
    _print_table(result)
    if report is not None:
        typer.echo(f"wrote {write_compare_report(result, report)}")
    if json_path is not None:
        atomic_write_text(json_path, json.dumps(result.to_json_dict(), indent=2, allow_nan=False) + "\n")
        typer.echo(f"wrote {json_path}")
