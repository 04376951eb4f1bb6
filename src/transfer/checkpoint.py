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
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from lowsim.safe_io import atomic_write_bytes, atomic_write_text
from transfer.errors import TransferError, TransferRuntimeError
from transfer.models import BlockModel, create_model, list_models

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
    """Write weights, checkpoint.json (and train_state.pt) to a fresh folder, then swap it in atomically; a
    failure (disk full, Ctrl-C) removes the partial folder and leaves the previous checkpoint as it was."""
    directory = Path(directory)
    partial = directory.with_name(directory.name + ".partial")
    previous = directory.with_name(directory.name + ".previous")
    for path in (directory, partial, previous):
        if path.is_symlink():  # swapping folders would move the link, not write where it points
            raise TransferError("is a symbolic link; checkpoints are written only as real folders", path)
    meta = {"format": FORMAT_VERSION, **meta}
    try:
        _write_folder(partial, model, meta, train_state)
    except BaseException as err:
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(err, (OSError, SafetensorError)):
            raise TransferRuntimeError(f"cannot write the checkpoint ({getattr(err, 'strerror', None) or err})",
                                  partial) from None
        raise
    if directory.exists():
        shutil.rmtree(previous, ignore_errors=True)
        os.replace(directory, previous)
    os.replace(partial, directory)
    shutil.rmtree(previous, ignore_errors=True)
    return directory


def _write_folder(folder: Path, model: torch.nn.Module, meta: dict[str, Any],
                  train_state: dict[str, Any] | None) -> None:
    """A fresh checkpoint folder: weights (described by meta), checkpoint.json and train_state.pt."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in _unwrap(model).state_dict().items()}
    save_file(tensors, str(folder / WEIGHTS_FILE), metadata={META_KEY: json.dumps(meta)})
    atomic_write_text(folder / META_FILE, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    if train_state is not None:
        buffer = io.BytesIO()
        torch.save(train_state, buffer)
        atomic_write_bytes(folder / STATE_FILE, buffer.getvalue())


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
    try:
        meta = json.loads(metadata[META_KEY])
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise TransferError("the checkpoint description in the safetensors metadata is not a JSON object; the "
                            "file is damaged or was not written by transfer", weights)
    if meta.get("format") != FORMAT_VERSION:
        raise TransferError(f"checkpoint format {meta.get('format')!r} is not supported (expected "
                            f"{FORMAT_VERSION})", weights)
    if meta.get("model") not in list_models():
        raise TransferError(f"the checkpoint holds unknown model {meta.get('model')!r}; known models: "
                            f"{', '.join(list_models())}", weights)
    return meta


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu", prefer: str = "best",
                    expect: dict[str, Any] | None = None) -> tuple[BlockModel, dict[str, Any]]:
    """Build the checkpoint's model and load its weights; `expect` ({"model", "width", ...}) must agree."""
    weights = resolve_checkpoint(path, prefer)
    meta = read_meta(weights)
    config = meta.get("model_config", {})
    if not isinstance(config, dict):
        raise TransferError("the checkpoint's model_config is not a JSON object; the file is damaged", weights)
    config = dict(config)
    for key, wanted in (expect or {}).items():
        have = meta.get("model") if key == "model" else config.get(key)
        if wanted is not None and have != wanted:
            raise TransferError(f"checkpoint is {key} {have!r} but {key} {wanted!r} was asked for; "
                                f"it holds {meta.get('model')} with {_describe(config)}", weights)
    model = _create_described_model(meta, config, weights)
    try:
        state = load_file(str(weights))
        model.load_state_dict(state, strict=True)
    except (RuntimeError, SafetensorError) as err:
        first = str(err).strip().splitlines()
        detail = next((line.strip() for line in first[1:] if line.strip()), first[0] if first else "")
        raise TransferError(f"weights do not fit {meta['model']} with {_describe(config)} ({detail})",
                            weights) from None
    return model.to(device), meta


def _create_described_model(meta: dict[str, Any], config: dict[str, Any], weights: Path) -> BlockModel:
    """The (untrained) model a checkpoint describes; a description no registered model fits is refused."""
    try:
        return create_model(str(meta.get("model")), **config)
    except TransferError as err:
        raise TransferError(f"the checkpoint describes a model this version cannot build ({err})", weights) \
            from None
    except (TypeError, ValueError) as err:
        raise TransferError(f"the checkpoint's model description does not fit {meta.get('model')} ({err})",
                            weights) from None


def _describe(config: dict[str, Any]) -> str:
    """'width 16, input srgb, norm none' for messages."""
    return ", ".join(f"{k.replace('input_kind', 'input')} {v}" for k, v in sorted(config.items()))


def load_train_state(checkpoint_dir: str | Path) -> dict[str, Any]:
    """The optimizer/scheduler/RNG state saved with a `last` checkpoint. Read with weights_only=True, so
    nothing in the file is ever executed; a damaged or foreign file is refused in one line."""
    path = Path(checkpoint_dir) / STATE_FILE
    if not path.is_file():
        raise TransferError("checkpoint has no training state to resume from", path)
    try:
        with warnings.catch_warnings():  # torch warns about a foreign pickle's protocol before refusing it
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure to parse means a damaged or foreign file
        # torch's own message is not passed on: it advises weights_only=False, i.e. running the file's code
        raise TransferError(f"cannot read the training state ({type(err).__name__}): the file is truncated, "
                            "damaged or not written by transfer; delete the run directory to start over",
                            path) from None
    missing = [key for key, kind in TRAIN_STATE_KEYS.items() if not isinstance(_get(state, key), kind)]
    if missing:
        raise TransferError(f"not a transfer training state (missing or mistyped: {', '.join(missing)}); "
                            "delete the run directory to start over", path)
    return state


TRAIN_STATE_KEYS: dict[str, type | tuple[type, ...]] = {
    "step": int, "optimizer": dict, "scheduler": dict, "rng": dict, "best_psnr": (int, float),
    "bad_validations": int, "fingerprint": str}


def _get(state: object, key: str) -> object:
    """state[key] when state is a dict holding it, else None."""
    return state.get(key) if isinstance(state, dict) else None
