"""The calibration report: one PNG with the per-parameter histograms (the paper's Figure 2), the fitted
correlation matrix, the per-pair fit quality of both methods and the noise fit."""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lowsim.params import ALL_SPECS, ParamDistribution, specs_of
from lowsim.safe_io import atomic_write_bytes


def _finite(values: Sequence[Any]) -> np.ndarray:
    """The finite numbers among values, as a float array."""
    arr = np.array([v for v in values if v is not None], dtype=np.float64)
    return arr[np.isfinite(arr)]


def _histogram(ax: Any, name: str, used: Sequence[dict[str, Any]], dist: ParamDistribution,
               drawn: np.ndarray) -> None:
    """Histogram of one parameter over the included pairs (log axis for wide log-type ranges), with the
    fitted distribution's samples of it drawn over it (scaled to the same count)."""
    values = _finite([r.get(name) for r in used])
    if name in dist.fixed:
        ax.text(0.5, 0.5, f"fixed at {dist.fixed[name]:g}", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(name)
        ax.set_yticks([])
        return
    log_axis = ALL_SPECS[name].transform == "log" and values.size and values.min() > 0 \
        and values.max() / values.min() > 20
    if values.size:
        bins = np.geomspace(values.min(), values.max(), 20) if log_axis else 20
        if not log_axis and np.ptp(values) == 0:
            bins = 5
        counts, edges, _ = ax.hist(values, bins=bins, color="#4477aa", edgecolor="white", label="pairs")
        inside = drawn[(drawn >= edges[0]) & (drawn <= edges[-1])]
        if inside.size:
            ax.hist(inside, bins=edges, weights=np.full(inside.size, values.size / drawn.size),
                    histtype="step", color="#cc3311", lw=1.2,
                    label=f"fitted normal ({inside.size / drawn.size:.0%} in range)")
        ax.legend(fontsize=6)
        if log_axis:
            ax.set_xscale("log")
            from matplotlib.ticker import NullFormatter  # matplotlib is imported lazily (see below)

            # A log axis always spans > 1 decade here, so the decades label it; labelled minor ticks overlapped.
            ax.xaxis.set_minor_formatter(NullFormatter())
        else:
            ax.locator_params(axis="x", nbins=4)  # small values in full ("0.0025") overlapped at the default count
    ax.axvline(dist.natural_mean()[name], color="#cc3311", lw=1.0, ls="--")
    ax.set_title(f"{name} (n={values.size})")
    ax.tick_params(labelsize=7)


def _correlation(ax: Any, dist: ParamDistribution) -> None:
    """The fitted correlation matrix (unconstrained space) with its values written in."""
    sd = np.sqrt(np.diag(dist.cov))
    corr = dist.cov / np.outer(sd, sd)
    image = ax.imshow(corr, vmin=-1, vmax=1, cmap="RdBu_r")
    k = len(dist.names)
    ax.set_xticks(range(k), dist.names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(k), dist.names, fontsize=7)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{corr[i, j]:.2f}", ha="center", va="center", fontsize=6,
                    color="white" if abs(corr[i, j]) > 0.6 else "black")
    ax.set_title(f"correlation (unconstrained space), shrinkage {dist.shrinkage:.2f}", fontsize=9)
    ax.figure.colorbar(image, ax=ax, fraction=0.046)


def _fit_quality(ax: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Per-pair RMSE of the noiseless prediction vs dark for each method present; excluded pairs marked."""
    main = "isp_rmse_dn" if any("isp_rmse_dn" in r for r in rows) else "joint_rmse_dn"
    order = np.argsort([r.get(main, math.nan) for r in rows])
    x = np.arange(len(rows))
    for key, label, colour in (("paper_rmse_dn", "paper", "#ee7733"), ("joint_rmse_dn", "joint", "#0077bb"),
                               ("isp_rmse_dn", "isp (v2)", "#009988")):
        if not any(key in r for r in rows):
            continue
        y = np.array([rows[i].get(key, math.nan) for i in order], dtype=np.float64)
        ax.scatter(x, y, s=6, color=colour, label=label)
    bad = [k for k, i in enumerate(order) if rows[i]["excluded"]]
    if bad:
        y = [rows[order[k]].get(main, math.nan) for k in bad]
        ax.scatter(bad, y, s=40, facecolors="none", edgecolors="red", label="excluded")
    ax.set_yscale("log")
    ax.set_xlabel(f"pair (sorted by {main.removesuffix('_rmse_dn')} RMSE)")
    ax.set_ylabel("RMSE (8-bit levels)")
    ax.set_title("fit quality per pair", fontsize=9)
    ax.legend(fontsize=7)


def _residual_match(ax: Any, used: Sequence[dict[str, Any]]) -> None:
    """v2: the real vs simulated residual statistics of every included pair (how well the noise fit matched)."""
    for stat, colour, label in (("channel_corr", "#0077bb", "channel corr"),
                                ("spatial_corr", "#ee7733", "spatial corr"),
                                ("pixel_corr", "#009988", "channel corr, pixel scale")):
        if not any(f"match_{stat}_real" in r for r in used):  # older calibration tables lack pixel_corr
            continue
        real = [r.get(f"match_{stat}_real", math.nan) for r in used]
        sim = [r.get(f"match_{stat}_sim", math.nan) for r in used]
        ax.scatter(real, sim, s=6, color=colour, label=label)
    ax.plot([-0.2, 1], [-0.2, 1], color="grey", lw=1)
    rms = [r.get("match_profile_rms_log", math.nan) for r in used]
    ax.set_xlabel("real dark image")
    ax.set_ylabel("simulated from the pair's fit")
    ax.set_title(f"residual match per pair\n(noise-level miss: median {np.nanmedian(rms):.2f} in log sd)",
                 fontsize=9)
    ax.legend(fontsize=7)


def _excluded_list(ax: Any, rows: Sequence[dict[str, Any]], limit: int = 14) -> None:
    """The excluded pairs and why (fits at a bound included), as text."""
    ax.axis("off")
    bad = [r for r in rows if r["excluded"]]
    lines = [f"{r['name']}: {str(r['reason'])[:90]}" for r in bad[:limit]]
    if len(bad) > limit:
        lines.append(f"... and {len(bad) - limit} more (see the per-pair table)")
    ax.text(0, 1, "\n".join(lines) or "no pair excluded", va="top", ha="left", fontsize=7, family="monospace",
            transform=ax.transAxes)
    ax.set_title(f"excluded pairs ({len(bad)})", fontsize=9, loc="left")


def _noise(ax: Any, used: Sequence[dict[str, Any]]) -> None:
    """Observed vs modelled residual spread per intensity bin, pooled over the included pairs."""
    if any("match_channel_corr_real" in r for r in used):
        _residual_match(ax, used)
        return
    observed, modelled = [], []
    for r in used:
        obs, mod = r.get("noise_bin_spread"), r.get("noise_model_spread")
        if obs is not None and mod is not None and len(obs) == len(mod):
            observed += list(obs)
            modelled += list(mod)
    if not observed:
        ax.text(0.5, 0.5, "no noise fit (paper method)", ha="center", va="center", transform=ax.transAxes)
        ax.set_title("noise fit", fontsize=9)
        return
    o, m = np.array(observed) * 255, np.array(modelled) * 255
    ax.scatter(o, m, s=4, alpha=0.5)
    top = float(max(o.max(), m.max()))
    ax.plot([0, top], [0, top], color="grey", lw=1)
    ax.set_xlabel("observed spread of neighbour differences (levels)")
    ax.set_ylabel("model spread (levels)")
    ax.set_title("noise fit, all bins of all pairs", fontsize=9)


def write_report(path: str | Path, rows: Sequence[dict[str, Any]], dist: ParamDistribution,
                 title: str = "") -> Path:
    """Render the calibration report PNG (Agg backend) and write it atomically."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    used = [r for r in rows if not r["excluded"]]
    names = list(specs_of(dist.model))
    n_rows = max(4, math.ceil(len(names) / 3))
    fig = plt.figure(figsize=(18, 3.75 * n_rows), dpi=90)
    grid = fig.add_gridspec(n_rows, 5)
    rng = np.random.default_rng(0)
    drawn = [dist.sample(rng) for _ in range(4000)]
    for k, name in enumerate(names):
        _histogram(fig.add_subplot(grid[k // 3, k % 3]), name, used, dist,
                   np.array([getattr(p, name) for p in drawn]))
    _correlation(fig.add_subplot(grid[0:2, 3:5]), dist)
    _fit_quality(fig.add_subplot(grid[2, 3]), rows)
    _noise(fig.add_subplot(grid[2, 4]), used)
    _excluded_list(fig.add_subplot(grid[3, 3:5]), rows)
    excluded = len(rows) - len(used)
    fig.suptitle(title or f"lowsim calibrate ({dist.method}): {len(used)} pairs used, {excluded} excluded",
                 fontsize=12)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.45 / fig.get_figheight()))  # room for the title: 0.45 inch
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path
