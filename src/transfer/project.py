"""transfer's side of the project-folder convention (lowsim.project): the defaults of `transfer pretrain` and
`transfer finetune` when --manifest, --checkpoint or --pairs is left out, each printed when used."""
from __future__ import annotations

import json
from pathlib import Path

from lowsim.project import calibrated_pairs, describe_default, newest, newest_manifest, newest_params, note
from transfer.errors import TransferError

RUNS_DIR = "runs"
CONFIG_JSON = "config.json"


def default_run_dir(command: str) -> Path:
    """runs/<command>, printed."""
    return describe_default("--run-dir", Path(RUNS_DIR) / command, "runs/<command>")


def manifest_or_default(manifest: Path | None) -> Path:
    """--manifest, else the project's newest data/*/manifest.parquet."""
    if manifest is not None:
        return manifest
    return describe_default("--manifest", newest_manifest(), "the newest dataset's")


def _is_pretrain_run(run: Path) -> bool:
    """A run directory whose config.json says `pretrain` and that holds a checkpoint."""
    from transfer.checkpoint import existing_checkpoint_dir

    try:
        command = json.loads((run / CONFIG_JSON).read_text(encoding="utf-8")).get("command")
    except (OSError, ValueError, AttributeError):
        return False
    has_weights = any(existing_checkpoint_dir(run / name) is not None for name in ("best", "last"))
    return command == "pretrain" and has_weights


def newest_pretrain_run(root: Path | None = None) -> Path:
    """The most recently written pretrain run under runs/ (by its config.json)."""
    root = Path.cwd() if root is None else root
    configs = [run / CONFIG_JSON for run in (root / RUNS_DIR).glob("*") if _is_pretrain_run(run)]
    found = newest(configs)
    if found is None:
        raise TransferError("no pretrained run found in runs/; run `transfer pretrain` first (or pass --checkpoint)")
    return found.parent


def checkpoint_or_default(checkpoint: Path | None) -> Path:
    """--checkpoint, else the newest pretrain run."""
    if checkpoint is not None:
        return checkpoint
    return describe_default("--checkpoint", newest_pretrain_run(), "the newest pretrain run")


def pairs_or_default(pairs: Path | None, layout: str) -> tuple[Path, str]:
    """--pairs (and --layout), else the pairs folder the newest params file was calibrated on, and its layout."""
    if pairs is not None:
        return pairs, layout
    params = newest_params()
    if params is None:
        raise TransferError("no pairs given and no calibration in params/; run `lowsim calibrate --pairs DIR` "
                            "first (or pass --pairs)")
    found, calibrated_layout = calibrated_pairs(params)
    describe_default("--pairs", found, f"the pairs {params.name} was calibrated on")
    if layout == "auto" and calibrated_layout != "auto":
        note(f"--layout {calibrated_layout} (as calibrated)")
        layout = calibrated_layout
    return found, layout
