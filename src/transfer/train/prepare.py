"""What a run trains on and with: the training/validation pairs for its mode, the (fresh or pretrained) model,
and the fingerprint that an interrupted run and its resumption must share."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lowsim.params import file_sha256
from transfer import checkpoint as ckpt
from transfer.data import (PairItem, check_disjoint, items_sha256, load_manifest, load_pairs, select_fraction,
                           split_real_pairs)
from transfer.errors import TransferError
from transfer.models.adapters import attach_adapters
from transfer.onthefly import OnTheFlySources, SourceItem, resolve_sources
from transfer.models import (DEFAULT_WIDTH, BlockModel, create_model, freeze_all_but_last, registered_name,
                             trainable_blocks)
from transfer.train.config import TrainConfig, check_model_options


@dataclass
class RunData:
    """The resolved training and validation pairs (on the fly: source photos) and a description for config.json."""

    train: list[PairItem] | list[SourceItem]
    val: list[PairItem] | list[SourceItem]
    description: dict[str, Any]
    sources: OnTheFlySources | None = None  # pretraining on the fly: the photos and the parameter distribution


def resolve_data(config: TrainConfig) -> RunData:
    """Training/validation pairs for the mode: manifest splits, photos to degrade on the fly, or real pairs with
    --frac and a held-out set."""
    if config.mode == "pretrain" and config.params is not None:
        return _onthefly_data(config)
    if config.mode == "pretrain":
        manifest = Path(config.manifest)
        train, val = load_manifest(manifest, "train"), load_manifest(manifest, "val")
        if not train:
            raise TransferError("manifest has no ok rows in split 'train'", manifest)
        _check_manifest_input(train[0], config.input_kind or "srgb", manifest)
        desc = {"kind": "manifest", "path": str(manifest), "sha256": file_sha256(manifest)}
    else:
        train, val, desc = _real_pairs(config)
    val = sorted(val, key=lambda item: item.name)[: config.val_limit]
    desc.update(train_count=len(train), val_count=len(val), val_sha256=items_sha256(val))
    return RunData(train, val, desc)


def _onthefly_data(config: TrainConfig) -> RunData:
    """The --src photos by split and the --params distribution; the first --val-limit 'val' photos validate."""
    from lowsim.project import resolve_params

    sources = resolve_sources(Path(config.src), resolve_params(Path(config.params)), config.sampler)
    val = sources.val[: config.val_limit]
    names = hashlib.sha256("\n".join(item.name for item in val).encode("utf-8", "surrogateescape")).hexdigest()
    desc = dict(sources.description, train_count=len(sources.train), val_count=len(val), val_sha256=names)
    return RunData(sources.train, val, desc, sources)


def _check_manifest_input(item: PairItem, input_kind: str, manifest: Path) -> None:
    """Packed raw rows (lowsim generate --output raw) train --input raw models, sRGB rows the others."""
    if (item.levels is not None) != (input_kind == "raw"):
        holds = "packed raw dark frames" if item.levels is not None else "sRGB images"
        wanted = "raw" if item.levels is not None else "srgb"
        raise TransferError(f"the manifest holds {holds}; pretrain it with --input {wanted}", manifest)


def _real_pairs(config: TrainConfig) -> tuple[list[PairItem], list[PairItem], dict[str, Any]]:
    """Real pairs: --frac of the pool, validated on --val-pairs, the hash split's val part, or nothing."""
    pairs = load_pairs(config.pairs, config.layout)
    if config.val_pairs is not None:
        pool, val = pairs, load_pairs(config.val_pairs, config.layout)
        check_disjoint(pool, val)
    elif config.val_split:
        pool, val = split_real_pairs(pairs, "pool"), split_real_pairs(pairs, "val")
    else:
        pool, val = pairs, []
    if not pool:
        raise TransferError("no training pairs are left after holding out the validation split", config.pairs)
    train = select_fraction(pool, config.frac, config.seed)
    desc = {"kind": "pairs", "path": str(config.pairs), "layout": config.layout, "frac": config.frac,
            "pool_count": len(pool), "sha256": items_sha256(train),
            "val_source": "val_pairs" if config.val_pairs is not None else
            ("hash_split" if config.val_split else "none")}
    return train, val, desc


def build_model(config: TrainConfig, device: torch.device) -> tuple[BlockModel, dict[str, Any] | None]:
    """A fresh seeded model, or the pretrained checkpoint with all but the last blocks frozen (its architecture
    and options are the checkpoint's: an option given here must equal the checkpoint's value). Returns the model
    (on the CPU) and a description of the checkpoint it started from (None for a fresh one)."""
    if config.mode == "finetune":
        weights = ckpt.resolve_checkpoint(config.checkpoint)
        held = ckpt.read_meta(weights).get("model")
        if config.model in (None, held):  # another model name is refused by load_checkpoint's expectations
            check_model_options(str(held), config.model_options)
        expect = {"model": config.model, "width": config.width, "input_kind": config.input_kind,
                  "norm": config.norm, **config.model_options}
        model, meta = ckpt.load_checkpoint(weights, "cpu", expect=expect)
        init = {"path": str(weights), "sha256": file_sha256(weights), "step": meta.get("step"),
                "data_sha256": meta.get("data_sha256")}
        if config.method == "adapter":
            attach_adapters(model)
            model.frozen_blocks = frozenset(model.block_names)  # batch-norm statistics stay the pretrained ones
        elif config.method == "last-blocks" and config.trainable_blocks is not None:
            freeze_all_but_last(model, config.trainable_blocks)
        return model, init
    torch.manual_seed(config.seed)  # weight init is torch's only random draw
    norm = {} if config.norm is None else {"norm": config.norm}
    model = create_model(str(config.model), width=config.width or DEFAULT_WIDTH,
                         input_kind=config.input_kind or "srgb", **norm, **config.model_options)
    return model, None


def backbone_description(config: TrainConfig) -> dict[str, Any] | None:
    """The backbone weights file that initialised the model ({path, sha256}), None without one."""
    path = config.model_options.get("backbone_weights")
    if path is None:
        return None
    return {"path": str(path), "sha256": file_sha256(Path(path))}


def fingerprint(config: TrainConfig, model: BlockModel, data: RunData, init: dict | None, total: int,
                backbone: dict[str, Any] | None = None, augment: dict[str, Any] | None = None) -> dict:
    """What must not change between an interrupted run and its resumption."""
    prints = {"mode": config.mode, "model": registered_name(model), "model_config": model.config,
              "trained_blocks": trainable_blocks(model), "data_sha256": data.description["sha256"],
              "val_sha256": data.description["val_sha256"], "seed": config.seed, "total_steps": total,
              "patch": config.patch, "batch": config.batch, "lr": config.lr, "schedule": config.schedule,
              "init_sha256": None if init is None else init["sha256"]}
    if config.method == "adapter":  # only then, so that earlier runs keep resuming
        prints["method"] = config.method
    if config.loss != "l1":  # likewise
        prints["loss"] = config.loss
    if backbone is not None:  # only then, so that runs without one keep resuming
        prints["backbone_sha256"] = backbone["sha256"]
    if augment is not None:  # likewise
        prints["augment_sha256"] = augment["sha256"]
    return prints
