"""The state of a run, in one dataclass that saves and loads itself, so that a resumed run continues exactly.

`RunState.save(run_dir, meta)` writes `<run>/last` (weights as model.safetensors, the optimizer, scheduler, RNG
and progress as train_state.pt) and the metric rows (metrics.csv, val.csv); `RunState.load(run_dir)` restores
all of it, refusing a run whose fingerprint (its options and data) differs. The file formats and keys are those
of every earlier version, so older runs resume.
"""
from __future__ import annotations

import csv
import io
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lowsim.safe_io import atomic_write_text
from transfer import checkpoint as ckpt
from transfer.errors import TransferError
from transfer.models import BlockModel

LAST, BEST = "last", "best"
TRAIN_CSV, VAL_CSV = "metrics.csv", "val.csv"
TRAIN_COLUMNS = ("step", "epoch", "loss", "lr", "step_s", "data_s")
VAL_COLUMNS = ("step", "epoch", "val_psnr", "best_val_psnr")


@dataclass
class RunState:
    """The objects being trained and where the run stands: steps done, early-stopping state, metric rows."""

    model: BlockModel
    optimizer: torch.optim.Optimizer
    scheduler: Any  # torch.optim.lr_scheduler.LambdaLR
    fingerprint: dict[str, Any]
    step: int = 0
    best_psnr: float = -math.inf
    best_step: int | None = None
    bad_validations: int = 0
    train_rows: list[dict[str, Any]] = field(default_factory=list)
    val_rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def best_val_psnr(self) -> float | None:
        """The best validation PSNR so far (None before the first validation)."""
        return None if self.best_step is None else self.best_psnr

    def log_step(self, loss: float, epoch: float, step_s: float, data_s: float) -> None:
        """Record one optimizer step (self.step is already counted) as a row of metrics.csv."""
        self.train_rows.append({"step": self.step, "epoch": f"{epoch:.4f}", "loss": f"{loss:.6g}",
                                "lr": f"{self.optimizer.param_groups[0]['lr']:.6g}", "step_s": f"{step_s:.4f}",
                                "data_s": f"{data_s:.4f}"})

    def track(self, score: float, epoch: float) -> bool:
        """Record a validation PSNR as a row of val.csv; True when it is the best so far."""
        improved = score > self.best_psnr
        if improved:
            self.best_psnr, self.best_step, self.bad_validations = score, self.step, 0
        else:
            self.bad_validations += 1
        self.val_rows.append({"step": self.step, "epoch": f"{epoch:.4f}", "val_psnr": f"{score:.4f}",
                              "best_val_psnr": f"{self.best_psnr:.4f}"})
        return improved

    def train_state(self) -> dict[str, Any]:
        """The contents of train_state.pt."""
        return {"step": self.step, "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "rng": capture_rng(), "best_psnr": self.best_psnr, "best_step": self.best_step,
                "bad_validations": self.bad_validations, "fingerprint": json.dumps(self.fingerprint, sort_keys=True)}

    def save(self, run_dir: Path, meta: dict[str, Any]) -> None:
        """Write `<run_dir>/last` (weights described by `meta`, train_state.pt) and the metric CSVs."""
        ckpt.save_checkpoint(run_dir / LAST, self.model, meta, self.train_state())
        self.write_rows(run_dir)

    def write_rows(self, run_dir: Path) -> None:
        """metrics.csv and val.csv, written atomically."""
        _write_csv(run_dir / TRAIN_CSV, TRAIN_COLUMNS, self.train_rows)
        _write_csv(run_dir / VAL_CSV, VAL_COLUMNS, self.val_rows)

    def load(self, run_dir: Path) -> None:
        """Continue from `<run_dir>/last`: weights, optimizer, scheduler, RNG states, progress and the metric rows
        up to its step. The run must be the same one (equal fingerprints)."""
        found = ckpt.existing_checkpoint_dir(run_dir / LAST)
        state = ckpt.load_train_state(found)
        self._check_same_run(state, found / ckpt.STATE_FILE, run_dir)
        self._restore(state, found)
        self.train_rows = _read_csv_rows(run_dir / TRAIN_CSV, self.step)
        self.val_rows = _read_csv_rows(run_dir / VAL_CSV, self.step)

    def _check_same_run(self, state: dict[str, Any], path: Path, run_dir: Path) -> None:
        """Refuse to resume a run whose options or data differ from the saved one's (its fingerprint)."""
        try:
            saved = json.loads(state["fingerprint"])
        except ValueError:
            saved = None
        if not isinstance(saved, dict):
            raise TransferError("the training state's fingerprint is not a JSON object; the file is damaged", path)
        changed = sorted(k for k in set(saved) | set(self.fingerprint) if saved.get(k) != self.fingerprint.get(k))
        if changed:
            details = "; ".join(f"{k}: {saved.get(k)!r} -> {self.fingerprint.get(k)!r}" for k in changed)
            raise TransferError(f"cannot resume: the options differ from the interrupted run ({details})", run_dir)

    def _restore(self, state: dict[str, Any], found: Path) -> None:
        """Weights, optimizer, scheduler, RNG and progress from a `last` folder; a part that does not fit this run
        (damaged, or another model's) is refused naming the file."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        weights = found / ckpt.WEIGHTS_FILE
        try:
            self.model.load_state_dict(load_file(str(weights)))
        except (SafetensorError, OSError, RuntimeError, ValueError) as err:
            raise TransferError(f"cannot resume: the saved weights do not load into this run's model "
                                f"({_first_line(err)})", weights) from None
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            restore_rng(state["rng"])
            self.step, self.best_psnr = int(state["step"]), float(state["best_psnr"])
            self.best_step, self.bad_validations = state.get("best_step"), int(state["bad_validations"])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as err:
            raise TransferError(f"cannot resume: the training state does not fit this run ({type(err).__name__}: "
                                f"{_first_line(err)})", found / ckpt.STATE_FILE) from None


def has_saved_state(run_dir: Path) -> bool:
    """True when the run directory holds a `last` checkpoint (also one a crash left as `last.previous`); a `last`
    without weights is refused rather than silently replaced by a new run."""
    found = ckpt.existing_checkpoint_dir(run_dir / LAST)
    if found is None and (run_dir / LAST).exists():
        raise TransferError(f"holds no {ckpt.WEIGHTS_FILE}: the checkpoint is incomplete or damaged; restore it or "
                            "delete the run directory to start over", run_dir / LAST)
    return found is not None


def capture_rng() -> dict[str, Any]:
    """torch, numpy and python global RNG states (nothing here draws from them after init, but a resumed
    run must not differ from an uninterrupted one if a library does)."""
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
            "python": random.getstate()}


def restore_rng(state: dict[str, Any]) -> None:
    """Undo capture_rng."""
    torch.set_rng_state(state["torch"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _read_csv_rows(path: Path, up_to_step: int) -> list[dict[str, str]]:
    """Rows of an earlier metrics CSV up to a step (a resumed run rewrites everything after it)."""
    if not path.is_file():
        return []
    try:
        with open(path, newline="") as handle:
            return [row for row in csv.DictReader(handle) if int(row["step"]) <= up_to_step]
    except (KeyError, TypeError, ValueError, UnicodeDecodeError) as err:
        raise TransferError(f"cannot resume: the metric rows are damaged ({type(err).__name__}); restore the file "
                            "or delete the run directory to start over", path) from None


def _first_line(err: BaseException) -> str:
    """The first informative line of an exception's message (torch's load_state_dict heads its list of
    mismatches with a line ending in ':')."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):
        return lines[1]
    return lines[0] if lines else type(err).__name__


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    """Write rows atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())
