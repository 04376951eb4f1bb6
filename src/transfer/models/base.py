"""What every registered network is: a `BlockModel` with named blocks, plus the small layers and option checks
the networks share.

A `BlockModel` names its blocks in data-flow order (`block_names`), says how inputs must be padded
(`pad_multiple`) and how much larger its output is (`scale`), and keeps its constructor options in `config` so a
checkpoint can rebuild it. A model whose forward takes a per-sample input from the training pairs (estimate_enhance's
alpha) says so in `training_inputs`; the training loop itself knows no model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Collection, Iterable, Sequence

import torch
from torch import nn

from transfer.errors import TransferError

INPUT_KINDS: tuple[str, ...] = ("srgb", "raw")
NORMS: tuple[str, ...] = ("none", "batch")
ACTIVATIONS: tuple[str, ...] = ("lrelu", "relu")
# Base width 16 by default: a quarter of SID's 7.8M parameters (width 32), which trains at ~100 patches/s
# on two CPU cores (benchmarks/bench_train.py) while keeping SID's depth, skips and receptive field.
DEFAULT_WIDTH = 16
LEAKY_SLOPE = 0.2  # SID's lrelu: max(0.2 x, x)


def check_positive_int(name: str, value: Any) -> None:
    """A model size option must be a positive integer (bool is not one)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise TransferError(f"model {name} must be a positive integer, got {value!r}")


def check_choice(what: str, value: Any, choices: Iterable[str]) -> None:
    """A model option must be one of a fixed set."""
    choices = tuple(choices)
    if value not in choices:
        raise TransferError(f"unknown {what} {value!r}, expected one of {', '.join(choices)}")


def check_block_count(n: Any, largest: int) -> None:
    """A number of trainable blocks must be an integer in 1..largest."""
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= largest:
        raise TransferError(f"the number of trainable blocks must be 1..{largest}, got {n!r}")


def check_srgb(input_kind: str, name: str) -> None:
    """Networks that take sRGB images only (packed raw is the SID U-Net's) refuse any other input kind."""
    if input_kind != "srgb":
        raise TransferError(f"model {name} takes sRGB input only, got input kind {input_kind!r}")


def activation_layer(name: str) -> nn.Module:
    """LeakyReLU(0.2) or ReLU (seed 004 compares both)."""
    return nn.LeakyReLU(LEAKY_SLOPE, inplace=True) if name == "lrelu" else nn.ReLU(inplace=True)


def norm_layer(norm: str, channels: int) -> nn.Module:
    """Batch norm, or nothing."""
    return nn.BatchNorm2d(channels) if norm == "batch" else nn.Identity()


@dataclass(frozen=True)
class TrainingInputs:
    """Per-sample forward inputs a model takes from its training pairs (none for most models).

    `values` holds one number per training pair, or `view_size` asks for a whole-image view per patch (neither:
    batches carry no extra tensor and the model uses its configured value); the loop passes each batch's values as
    the forward keyword `keyword`. `description` goes
    to the run's config.json, `notes` to its log."""

    keyword: str | None = None
    values: list[float] | None = None
    description: dict[str, Any] | None = None
    notes: tuple[str, ...] = ()
    # Instead of `values`: a view of the whole dark image, this many pixels a side (adaptive average pooling, the
    # patch's flips applied), so a per-image decision is trained on what it sees at inference, not on the patch.
    view_size: int | None = None


class BlockModel(nn.Module):
    """A network split into named blocks in data-flow order, so "train the last N blocks" is well defined."""

    model_name: str = ""  # set by models.registry.register
    block_names: tuple[str, ...] = ()
    input_kind: str = "srgb"
    scale: int = 1  # output pixels per input pixel along each axis
    pad_multiple: int = 1  # input height and width must be multiples of this
    takes_alpha: bool = False  # forward(x, alpha=...) takes a restoration strength (estimate_enhance)

    def __init__(self) -> None:
        super().__init__()
        self.config: dict[str, Any] = {}
        self.frozen_blocks: frozenset[str] = frozenset()

    def finetune_blocks(self, n: int) -> list[str]:
        """The blocks "fine-tune the last n blocks" trains: the last n in data-flow order (a model may say
        otherwise, e.g. a global head that must always adapt)."""
        check_block_count(n, self.max_finetune_blocks)
        return list(self.block_names[-n:])

    @property
    def max_finetune_blocks(self) -> int:
        """The largest n "the last n blocks" accepts."""
        return len(self.block_names)

    def blocks(self) -> list[tuple[str, nn.Module]]:
        """(name, module) of every block in data-flow order."""
        return [(name, getattr(self, name)) for name in self.block_names]

    def train(self, mode: bool = True) -> "BlockModel":
        """Like nn.Module.train, but frozen blocks stay in eval mode so their BN statistics never move."""
        super().train(mode)
        for name in self.frozen_blocks:
            getattr(self, name).eval()
        return self

    def image_context(self, x: torch.Tensor) -> dict[str, Any]:
        """Forward keyword arguments computed once from the whole (unpadded) image, so that tiles and padding
        do not change what a model decides per image (global_local's exposure). The default: none."""
        return {}

    def training_inputs(self, items: Sequence[Any], given: Collection[str]) -> TrainingInputs:
        """The per-sample inputs to train with on `items` (transfer.data.PairItem); `given` names the model
        options set explicitly. The default: none."""
        return TrainingInputs()
