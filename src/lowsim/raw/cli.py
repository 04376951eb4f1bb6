"""The raw branch of `lowsim calibrate`: choosing the raw method for raw pairs, running it, printing its summary."""
from __future__ import annotations

from pathlib import Path

from lowsim.raw.calibrate import RawCalibrationResult, is_raw_file, run_raw_calibration


def resolve_method(pairs: Path, layout: str, method: str) -> str:
    """'auto' becomes 'raw' when every pair is two camera-raw files, else 'isp'; other methods stay as given."""
    if method != "auto":
        return method
    from lowsim.pairs import find_pairs

    found = find_pairs(pairs, layout=layout)
    return "raw" if all(is_raw_file(p.dark) and is_raw_file(p.bright) for p in found) else "isp"


def print_raw_summary(result: RawCalibrationResult) -> None:
    """Per-pair K, read and row noise, the refused pairs with reasons, and the fitted relation, as rich tables."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="raw pairs (photon transfer; DN above black)")
    for column in ("pair", "ratio", "K (DN/e-)", "read noise", "row noise", "Tukey λ", "linearity", "status"):
        table.add_column(column)
    for r in result.rows:
        def cell(key: str, fmt: str = ".3g") -> str:
            value = r.get(key)
            return "—" if value is None or value != value else format(value, fmt)

        status = "refused" if r["excluded"] else "ok"
        table.add_row(r["name"], cell("exposure_ratio"), cell("system_gain"), cell("read_noise"), cell("row_noise"),
                      cell("read_shape", ".2f"), cell("linearity_error", ".1%"), status)
    console.print(table)
    for r in result.rows:
        if r["excluded"]:
            console.print(f"refused {r['name']}: {r['reason']}", soft_wrap=True)
    relation = result.distribution.info["read_noise_vs_gain"]
    console.print(f"read noise vs K: log σ = {relation['slope']:.3f}·log K + {relation['bias']:.3f} "
                  f"(± {relation['sigma']:.3f}); wrote {result.params_path}, {result.table_path} "
                  f"in {result.seconds:.1f} s")


def calibrate_raw_command(pairs: Path, layout: str, out: Path, source: str, workers: int = 1) -> None:
    """Run the raw calibration and print its summary (LowsimError for a run with no usable pair)."""
    print_raw_summary(run_raw_calibration(pairs, out, layout=layout, source=source, workers=workers))
