"""Seed 004's dense CNN: the plain CNN's blocks, but every block (and the head) sees the concatenation of the
input and all previous block outputs."""
from __future__ import annotations

import torch

from transfer.models.plain_cnn import PlainCNN
from transfer.models.registry import register


@register("dense_cnn")
class DenseCNN(PlainCNN):
    """Like PlainCNN, but each block (and the head) takes the concatenation of the input and all previous block
    outputs."""

    dense = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Each block sees everything before it; the head sees everything."""
        features = [x]
        for _, block in self.blocks()[:-1]:
            features.append(block(torch.cat(features, dim=1)))
        return self.head(torch.cat(features, dim=1))
