"""Parameter counts and freezing by named block: "train the last N blocks" (the founding paper's fine-tuning)."""
from __future__ import annotations

from typing import Iterable

from torch import nn

from transfer.errors import TransferError
from transfer.models.base import BlockModel, check_block_count
from transfer.models.sid_unet import BLOCK_NAMES


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def block_parameter_counts(model: BlockModel) -> dict[str, int]:
    """Parameters per named block, in data-flow order."""
    return {name: sum(p.numel() for p in block.parameters()) for name, block in model.blocks()}


def last_blocks(n: int, model: BlockModel | None = None) -> list[str]:
    """Names of the blocks "the last n" trains: the model's own answer (`BlockModel.finetune_blocks`), or without
    a model the SID U-Net's last n (n=2 gives the paper's blue blocks, up4 and head)."""
    if model is not None:
        return model.finetune_blocks(n)
    check_block_count(n, len(BLOCK_NAMES))
    return list(BLOCK_NAMES[-n:])


def set_trainable_blocks(model: BlockModel, names: Iterable[str]) -> list[str]:
    """Train only the named blocks: others get requires_grad=False and stay in eval mode (their normalisation
    statistics never move). Returns the trained names in data-flow order."""
    wanted = list(names)
    all_names = tuple(model.block_names)
    unknown = sorted(set(wanted) - set(all_names))
    if unknown:
        raise TransferError(f"unknown block(s) {', '.join(unknown)}; blocks: {', '.join(all_names)}")
    for name, block in model.blocks():
        for param in block.parameters():
            param.requires_grad_(name in wanted)
    model.frozen_blocks = frozenset(all_names) - set(wanted)
    model.train(model.training)  # re-apply eval mode to the newly frozen blocks
    return [name for name in all_names if name in wanted]


def freeze_all_but_last(model: BlockModel, n: int) -> list[str]:
    """Freeze every block except the last n (parameters and normalisation statistics); return trained names."""
    return set_trainable_blocks(model, last_blocks(n, model))


def trainable_blocks(model: BlockModel) -> list[str]:
    """Names of blocks with at least one trainable parameter."""
    return [name for name, block in model.blocks() if any(p.requires_grad for p in block.parameters())]
