"""Checkpoints: weights as safetensors (the JSON description also in its metadata) plus checkpoint.json;
`last` checkpoints add train_state.pt (optimizer, scheduler and RNG states) so a run resumes exactly.

A checkpoint is a directory written under a temporary name and swapped in, so a crash never leaves a
half-written one: `<run>/last`, `<run>/best`. `--checkpoint` accepts a run directory (best, else last), a
checkpoint directory or a .safetensors file.
"""
from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from lowsim.params import atomic_write_bytes, atomic_write_text
from transfer.errors import TransferError
from transfer.models import BlockModel, create_model

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "checkpoint.json"
STATE_FILE = "train_state.pt"
META_KEY = "transfer_checkpoint"


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain model inside a DistributedDataParallel wrapper (or the model itself)."""
    return getattr(model, "module", model)


def save_checkpoint(directory: str | Path, model: torch.nn.Module, meta: dict[str, Any],
                    train_state: dict[str, Any] | None = None) -> Path:
    """Write weights, checkpoint.json (and train_state.pt) to a fresh folder, then swap it in atomically."""
    directory = Path(directory)
    partial = directory.with_name(directory.name + ".partial")
    previous = directory.with_name(directory.name + ".previous")
    meta = {"format": FORMAT_VERSION, **meta}
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in _unwrap(model).state_dict().items()}
    save_file(tensors, str(partial / WEIGHTS_FILE), metadata={META_KEY: json.dumps(meta)})
    atomic_write_text(partial / META_FILE, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    if train_state is not None:
        buffer = io.BytesIO()
        torch.save(train_state, buffer)
        atomic_write_bytes(partial / STATE_FILE, buffer.getvalue())
    if directory.exists():
        shutil.rmtree(previous, ignore_errors=True)
        os.replace(directory, previous)
    os.replace(partial, directory)
    shutil.rmtree(previous, ignore_errors=True)
    return directory


def existing_checkpoint_dir(path: Path) -> Path | None:
    """The checkpoint folder, or the `.previous` copy left by a crash in the middle of a swap."""
    if (path / WEIGHTS_FILE).is_file():
        return path
    previous = path.with_name(path.name + ".previous")
    return previous if (previous / WEIGHTS_FILE).is_file() else None


def resolve_checkpoint(path: str | Path, prefer: str = "best") -> Path:
    """The weights file for a run directory (`prefer`, then the other), a checkpoint folder or a file."""
    path = Path(path)
    if not path.exists() and not path.with_name(path.name + ".previous").exists():
        raise TransferError("checkpoint not found", path)
    if path.is_file():
        if path.suffix != ".safetensors":
            raise TransferError("not a checkpoint: expected a .safetensors file or a run directory", path)
        return path
    order = [prefer, "last" if prefer == "best" else "best"]
    for candidate in [path] + [path / name for name in order]:
        found = existing_checkpoint_dir(candidate)
        if found is not None:
            return found / WEIGHTS_FILE
    raise TransferError(f"no checkpoint here: expected {WEIGHTS_FILE}, or a run directory with best/ or "
                        "last/", path)


def read_meta(weights: str | Path) -> dict[str, Any]:
    """The JSON description stored in a safetensors file's metadata."""
    weights = Path(weights)
    try:
        with safe_open(str(weights), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise TransferError(f"not a readable safetensors checkpoint ({err})", weights) from None
    if META_KEY not in metadata:
        raise TransferError("safetensors file has no transfer checkpoint description; it was not written by "
                            "transfer", weights)
    meta = json.loads(metadata[META_KEY])
    if meta.get("format") != FORMAT_VERSION:
        raise TransferError(f"checkpoint format {meta.get('format')!r} is not supported (expected "
                            f"{FORMAT_VERSION})", weights)
    return meta


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu", prefer: str = "best",
                    expect: dict[str, Any] | None = None) -> tuple[BlockModel, dict[str, Any]]:
    """Build the checkpoint's model and load its weights; `expect` ({"model", "width", ...}) must agree."""
    weights = resolve_checkpoint(path, prefer)
    meta = read_meta(weights)
    config = dict(meta.get("model_config", {}))
    for key, wanted in (expect or {}).items():
        have = meta.get("model") if key == "model" else config.get(key)
        if wanted is not None and have != wanted:
            raise TransferError(f"checkpoint is {key} {have!r} but {key} {wanted!r} was asked for; "
                                f"it holds {meta.get('model')} with {_describe(config)}", weights)
    model = create_model(meta["model"], **config)
    try:
        state = load_file(str(weights))
        model.load_state_dict(state, strict=True)
    except (RuntimeError, SafetensorError) as err:
        first = str(err).strip().splitlines()
        detail = next((line.strip() for line in first[1:] if line.strip()), first[0] if first else "")
        raise TransferError(f"weights do not fit {meta['model']} with {_describe(config)} ({detail})",
                            weights) from None
    return model.to(device), meta


def _describe(config: dict[str, Any]) -> str:
    """'width 16, input srgb, norm none' for messages."""
    return ", ".join(f"{k.replace('input_kind', 'input')} {v}" for k, v in sorted(config.items()))


def load_train_state(checkpoint_dir: str | Path) -> dict[str, Any]:
    """The optimizer/scheduler/RNG state saved with a `last` checkpoint."""
    path = Path(checkpoint_dir) / STATE_FILE
    if not path.is_file():
        raise TransferError("checkpoint has no training state to resume from", path)
    return torch.load(path, map_location="cpu", weights_only=True)
