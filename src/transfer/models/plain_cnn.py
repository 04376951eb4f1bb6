"""Seed 004's plain CNN: same-resolution 3x3 convolutions whose filters double at each block from ``width``
(32 in the course project), then a 3x3 convolution to RGB. Output not clipped (inference clips)."""
from __future__ import annotations

import torch
from torch import nn

from transfer.models.base import (ACTIVATIONS, DEFAULT_WIDTH, NORMS, BlockModel, activation_layer, check_choice,
                                  check_positive_int, check_srgb, norm_layer)
from transfer.models.registry import ModelOption, register


def conv_block(in_ch: int, out_ch: int, norm: str, activation: str) -> nn.Sequential:
    """3x3 same-padding convolution, optional batch norm, activation."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=norm == "none"), norm_layer(norm, out_ch),
                         activation_layer(activation))


@register("plain_cnn")
class PlainCNN(BlockModel):
    """Seed 004's CNN: `depth` same-resolution 3x3 conv blocks, filters width * 2^i, then a 3x3 conv to RGB."""

    dense = False  # DenseCNN: each block takes the concatenation of the input and all earlier outputs
    options = (ModelOption("depth", int, "convolution blocks before the RGB head (default 3)."),
               ModelOption("activation", str, "lrelu (LeakyReLU 0.2, default) or relu."))

    def __init__(self, width: int = DEFAULT_WIDTH, depth: int = 3, activation: str = "lrelu",
                 input_kind: str = "srgb", norm: str = "none") -> None:
        super().__init__()
        check_positive_int("width", width)
        check_positive_int("depth", depth)
        check_choice("activation", activation, ACTIVATIONS)
        check_choice("normalisation", norm, NORMS)
        check_srgb(input_kind, self.model_name)
        self.config = {"width": width, "depth": depth, "activation": activation, "input_kind": input_kind,
                       "norm": norm}
        self.block_names = tuple(f"block{i + 1}" for i in range(depth)) + ("head",)
        in_ch = 3
        for i in range(depth):
            setattr(self, f"block{i + 1}", conv_block(in_ch, width * 2**i, norm, activation))
            in_ch = in_ch + width * 2**i if self.dense else width * 2**i
        self.head = nn.Conv2d(in_ch, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Blocks in sequence, then the RGB head."""
        for _, block in self.blocks():
            x = block(x)
        return x
