"""The `lowsim compare` report: a PNG (one figure) or a self-contained HTML page (embedded PNGs, tables)."""
from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lowsim.compare import CompareResult, StatisticComparison
from lowsim.errors import LowsimError
from lowsim.safe_io import atomic_write_bytes

REPORT_SUFFIXES = (".png", ".html")
REAL_COLOUR, SYNTHETIC_COLOUR = "#4477aa", "#cc3311"
STATISTIC_UNITS = {"brightness": "mean on 0-1", "residual_sd": "8-bit levels", "channel_corr": "Pearson r",
                   "spatial_corr": "lag-1 r", "blue_ratio": "B / grey", "red_ratio": "R / grey",
                   "clipped_black": "fraction of values at 0"}


def _finite(values: Sequence[float]) -> np.ndarray:
    """The finite values as a float array."""
    arr = np.asarray(values, dtype=np.float64)
    return arr[np.isfinite(arr)]


def _histogram(ax: Any, stat: StatisticComparison, real: Sequence[float], synthetic: Sequence[float]) -> None:
    """Overlaid density histograms of one statistic, medians dashed, KS in the title."""
    a, b = _finite(real), _finite(synthetic)
    both = np.concatenate([a, b])
    if both.size == 0:
        ax.text(0.5, 0.5, "no finite values", ha="center", va="center", transform=ax.transAxes)
    else:
        low, high = np.percentile(both, [1, 99])
        edges = np.linspace(low, high, 25) if high > low else np.linspace(low - 0.5, low + 0.5, 6)
        for values, colour, label in ((a, REAL_COLOUR, "real"), (b, SYNTHETIC_COLOUR, "synthetic")):
            if values.size:
                ax.hist(np.clip(values, edges[0], edges[-1]), bins=edges, density=True, alpha=0.45,
                        color=colour, label=f"{label} (n={values.size})")
        for median, colour in ((stat.real_median, REAL_COLOUR), (stat.synthetic_median, SYNTHETIC_COLOUR)):
            if math.isfinite(median):
                ax.axvline(median, color=colour, ls="--", lw=1.2)
        ax.legend(fontsize=7)
    ax.set_title(f"{stat.name}  KS={stat.ks:.2f}", fontsize=10)
    ax.set_xlabel(STATISTIC_UNITS.get(stat.name, ""), fontsize=8)
    ax.set_yticks([])
    ax.tick_params(labelsize=7)


def _profile(ax: Any, result: CompareResult) -> None:
    """Median noise sd per intensity bin, real vs synthetic (and against the bright/clean images)."""
    edges = np.asarray(result.noise_bins)
    centres = np.sqrt(edges[:-1] * edges[1:])
    curves = ((result.real_noise_profile, REAL_COLOUR, "-", "real, high-pass"),
              (result.synthetic_noise_profile, SYNTHETIC_COLOUR, "-", "synthetic, high-pass"),
              (result.real_pair_profile, REAL_COLOUR, ":", "real vs bright"),
              (result.synthetic_pair_profile, SYNTHETIC_COLOUR, ":", "synthetic vs clean"))
    for values, colour, style, label in curves:
        if values is not None:
            ax.plot(centres, np.asarray(values, dtype=np.float64), style, marker="o", ms=3, color=colour,
                    label=label)
    ax.set_xscale("log")
    ax.set_xticks(centres, [f"{lo:g}-{hi:g}" for lo, hi in zip(edges[:-1], edges[1:])], fontsize=7)
    ax.minorticks_off()
    ax.set_xlabel("blurred intensity (8-bit levels)", fontsize=8)
    ax.set_ylabel("residual sd (levels)", fontsize=8)
    ax.set_title("noise vs intensity (median over images)", fontsize=10)
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=7)


def classifier_verdict(result: CompareResult) -> str:
    """What the accuracy interval says, in words."""
    c = result.classifier
    if not math.isfinite(c.accuracy):
        return "not run"
    if c.ci_low > 0.5:
        return "distinguishable"
    if c.ci_high < 0.5:
        # Below chance happens when near-duplicates sit in both sets: the model learns a twin's label.
        return "below chance: near-duplicate images in both sets?"
    return "not distinguishable at 95%"


def summary_lines(result: CompareResult) -> list[str]:
    """The headline numbers as short lines (figure panel and CLI)."""
    c = result.classifier
    lines = [f"real images: {result.n_real}   synthetic images: {result.n_synthetic}",
             f"distance (mean KS over {len(result.statistics)} statistics): {result.distance:.3f}",
             f"classifier accuracy: {c.accuracy:.3f}  95% CI [{c.ci_low:.3f}, {c.ci_high:.3f}]  "
             f"({classifier_verdict(result)})",
             f"  {c.n_patches} patches of {c.patch_size}px, n_eff {c.n_effective:.0f}, {c.n_folds}-fold by image, "
             f"brightness {'matched' if c.brightness_matched else 'NOT matched'}, {c.feature_set} features"]
    if c.note:
        lines.append(f"  note: {c.note}")
    return lines


def _summary(ax: Any, result: CompareResult) -> None:
    """Headline numbers and a per-statistic table, as text."""
    ax.axis("off")
    rows = [f"{'statistic':<17}{'real median':>12}{'synthetic':>11}{'rel diff':>10}{'KS':>7}"]
    for s in [*result.statistics, *result.pixel_noise]:
        rows.append(f"{s.name:<17}{s.real_median:>12.4g}{s.synthetic_median:>11.4g}"
                    f"{s.relative_median_diff:>+10.1%}{s.ks:>7.2f}")
    text = "\n".join(summary_lines(result) + [""] + rows)
    ax.text(0.0, 1.0, text, family="monospace", fontsize=8.5, va="top", ha="left", transform=ax.transAxes)
    ax.set_title("summary (0.5 accuracy = indistinguishable)", fontsize=10, loc="left")


def brightened(real: np.ndarray, synthetic: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Both crops times one gain (so they stay comparable) mapping their 99th percentile to 0.9."""
    p99 = float(np.percentile(np.concatenate([real.ravel(), synthetic.ravel()]), 99))
    gain = 0.9 * 255.0 / max(p99, 1.0)
    show = [np.clip(x.astype(np.float64) * gain / 255.0, 0.0, 1.0) for x in (real, synthetic)]
    return show[0], show[1], gain


def _crops(fig: Any, spec: Any, result: CompareResult) -> None:
    """Real (top) and synthetic (bottom) crops of matched brightness, each pair with one gain."""
    pairs = result.examples
    if not pairs:
        ax = fig.add_subplot(spec)
        ax.axis("off")
        ax.text(0.5, 0.5, "no crops", ha="center", va="center")
        return
    grid = spec.subgridspec(2, len(pairs), wspace=0.05, hspace=0.25)
    for i, (real, synthetic) in enumerate(pairs):
        shown_real, shown_synthetic, gain = brightened(real, synthetic)
        for row, (img, raw, label) in enumerate(((shown_real, real, "real"),
                                                 (shown_synthetic, synthetic, "synthetic"))):
            ax = fig.add_subplot(grid[row, i])
            ax.imshow(img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{label}, mean {raw.mean():.1f}, x{gain:.1f}", fontsize=7)


def _figure_png(fig: Any) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", pad_inches=0.2)
    plt.close(fig)
    return buffer.getvalue()


def statistics_figure(result: CompareResult, with_summary: bool = True) -> bytes:
    """PNG: one histogram per statistic, the noise profile, the summary and the matched crops."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = 4 if with_summary else 3
    fig = plt.figure(figsize=(17, 3.9 * rows))
    grid = fig.add_gridspec(rows, 4, hspace=0.4, wspace=0.2)
    cells = [grid[i // 4, i % 4] for i in range(7)] + [grid[2, i] for i in range(3)]  # row 3: pixel noise
    for cell, stat in zip(cells, [*result.statistics[:7], *result.pixel_noise[:3]]):
        _histogram(fig.add_subplot(cell), stat, result.real_values.get(stat.name, []),
                   result.synthetic_values.get(stat.name, []))
    _profile(fig.add_subplot(grid[1, 3]), result)
    if with_summary:
        _summary(fig.add_subplot(grid[3, :2]), result)
        _crops(fig, grid[3, 2:], result)
        fig.suptitle("real vs synthetic dark images", fontsize=13, y=0.92)  # the HTML page has its own
    return _figure_png(fig)


def crops_figure(result: CompareResult) -> bytes:
    """PNG of the matched-brightness crops alone (for the HTML page)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(2.2 * max(len(result.examples), 1), 4.6))
    _crops(fig, fig.add_gridspec(1, 1)[0, 0], result)
    return _figure_png(fig)


def _img_tag(png: bytes, alt: str) -> str:
    """An <img> with the PNG inlined as a data URL (no network, one file)."""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain HTML table with escaped cells."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _row(s: StatisticComparison) -> tuple[str, ...]:
    """One statistic as table cells: medians, 10th-90th percentiles, relative difference, KS and its p."""
    return (s.name, f"{s.real_median:.4g}", f"{s.real_p10:.4g} – {s.real_p90:.4g}", f"{s.synthetic_median:.4g}",
            f"{s.synthetic_p10:.4g} – {s.synthetic_p90:.4g}", f"{s.relative_median_diff:+.1%}", f"{s.ks:.3f}",
            f"{s.ks_pvalue:.2g}")


def html_page(result: CompareResult) -> str:
    """Self-contained HTML: summary, per-statistic table, the figures as embedded PNGs."""
    header = ("statistic", "real median", "real 10–90%", "synthetic median", "synthetic 10–90%", "relative diff",
              "KS", "KS p")
    table, noise_table = (_table(header, [_row(s) for s in group]) for group in (result.statistics,
                                                                                 result.pixel_noise))
    summary = "".join(f"<li>{html.escape(line.strip())}</li>" for line in summary_lines(result))
    style = ("body{font-family:sans-serif;margin:24px;color:#222;background:#fff}"
             "table{border-collapse:collapse;margin:12px 0}td,th{border:1px solid #bbb;padding:4px 8px;"
             "text-align:right}th{background:#eee}img{max-width:100%;display:block;margin:12px 0}")
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>lowsim compare</title>"
            f"<style>{style}</style></head><body><h1>Real vs synthetic dark images</h1><ul>{summary}</ul>"
            f"<h2>Statistics per image</h2>{table}"
            "<h2>Noise at the pixel scale (Immerkær's estimator, flattest half; not in the distance)</h2>"
            f"{noise_table}"
            f"{_img_tag(statistics_figure(result, with_summary=False), 'histograms and noise profile')}"
            "<h2>Crops at matched brightness (one gain per column)</h2>"
            f"{_img_tag(crops_figure(result), 'real and synthetic crops')}</body></html>")


def write_compare_report(result: CompareResult, path: str | Path) -> Path:
    """Write the report as .png or .html (by suffix), atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in REPORT_SUFFIXES:
        raise LowsimError(f"unsupported report type {suffix or '(no suffix)'!r}, expected .png or .html", path)
    data = statistics_figure(result) if suffix == ".png" else html_page(result).encode()
    atomic_write_bytes(path, data)
    return path
