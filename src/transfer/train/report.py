"""What a run shows people: progress (a rich bar on a terminal, periodic lines otherwise, nothing when quiet) and
the curves.png of its training loss and validation PSNR."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from rich.console import Console

from lowsim.errors import printable
from lowsim.safe_io import atomic_write_bytes


class Reporter:
    """Progress for people: a rich bar on a terminal, periodic lines otherwise, nothing when quiet."""

    def __init__(self, enabled: bool) -> None:
        self.console = Console(soft_wrap=True)
        self.enabled = enabled
        self.bar = None
        self.log_every = 1

    def start(self, total: int, start: int, log_every: int | None) -> None:
        """Show a bar (terminal) or plan a line every `log_every` steps (default: 20 lines per run)."""
        self.log_every = log_every or max(1, total // 20)
        if self.enabled and self.console.is_terminal:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.bar = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                console=self.console)
            self.task = self.bar.add_task("train", total=total, completed=start, info="")
            self.bar.start()

    def print(self, message: str) -> None:
        """A line of information."""
        if self.enabled:
            self.console.print(printable(message), highlight=False, markup=False)

    def step(self, step: int, total: int, info: str) -> None:
        """Advance to `step`."""
        if self.bar is not None:
            self.bar.update(self.task, completed=step, info=info)
        elif self.enabled and (step % self.log_every == 0 or step == total):
            self.print(f"step {step}/{total} {info}")

    def close(self) -> None:
        """Stop the bar."""
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def plot_curves(path: Path, train_rows: list[dict], val_rows: list[dict]) -> None:
    """A PNG with the training loss and the validation PSNR against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_psnr) = plt.subplots(1, 2, figsize=(10, 3.6))
    if train_rows:
        steps = np.array([float(r["step"]) for r in train_rows])
        losses = np.array([float(r["loss"]) for r in train_rows])
        ax_loss.plot(steps, losses, lw=0.6, alpha=0.4, label="per step")
        window = max(1, len(losses) // 50)
        if window > 1:
            smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
            ax_loss.plot(steps[window - 1:], smooth, lw=1.5, label=f"mean of {window}")
        ax_loss.set_yscale("log")
        ax_loss.legend()
    ax_loss.set(xlabel="step", ylabel="L1 loss", title="training loss")
    if val_rows:
        ax_psnr.plot([float(r["step"]) for r in val_rows], [float(r["val_psnr"]) for r in val_rows], "o-")
    ax_psnr.set(xlabel="step", ylabel="PSNR (dB)", title="validation PSNR (full images)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
