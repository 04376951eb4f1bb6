"""Seed 002 §3.2: Estimate-Net predicts the difference map I^D from the dark image, the sum I' + alpha * I^D goes
through Enhance-Net, which adds a correction (both residual networks of 7x3 / 3x7 convolutions with batch norm
before and after each).

alpha is an input of `forward` (``takes_alpha``): pretrained on a manifest, each patch carries its row's
``illum_alpha`` (and without an explicit alpha option their mean becomes the configured strength); real pairs have
none, so training on them, validation and inference use ``alpha`` from the model config (default 1.0, the paper's
Fig. 5 setting) unless `transfer enhance/evaluate --alpha` sets the restoration strength.
"""
from __future__ import annotations

from typing import Any, Collection, Sequence

import numpy as np
import torch
from torch import nn

from transfer.data import ALPHA_COLUMN
from transfer.errors import TransferError
from transfer.models.base import (DEFAULT_WIDTH, NORMS, BlockModel, TrainingInputs, check_choice,
                                  check_positive_int, check_srgb, norm_layer)
from transfer.models.registry import ModelOption, register


class ResidualBlock(nn.Module):
    """Seed 002's residual block: x + [BN conv7x3 BN] ReLU [BN conv3x7 BN] (batch norm before and after each
    convolution; the 7x3 / 3x7 pair widens the receptive field to restore dark parts from their neighbours)."""

    def __init__(self, channels: int, norm: str) -> None:
        super().__init__()
        bias = norm == "none"
        self.body = nn.Sequential(
            norm_layer(norm, channels), nn.Conv2d(channels, channels, (7, 3), padding=(3, 1), bias=bias),
            norm_layer(norm, channels), nn.ReLU(inplace=True),
            norm_layer(norm, channels), nn.Conv2d(channels, channels, (3, 7), padding=(1, 3), bias=bias),
            norm_layer(norm, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Identity shortcut plus the residual."""
        return x + self.body(x)


@register("estimate_enhance")
class EstimateEnhance(BlockModel):
    """Seed 002: Estimate-Net (I^D from the dark image), weighted by alpha and added to the input, then
    Enhance-Net (a residual correction of that sum). Depths 3 and 2 as in the paper's §4.2."""

    takes_alpha = True
    options = (
        ModelOption("estimate_depth", int, "residual blocks of Estimate-Net (default 3)."),
        ModelOption("enhance_depth", int, "residual blocks of Enhance-Net (default 2)."),
        ModelOption("alpha", float, "the restoration strength stored in the model, used when training on real "
                                    "pairs, in validation and by enhance/evaluate without --alpha (default 1.0; "
                                    "pretraining takes each manifest row's illum_alpha and, without this flag, "
                                    "stores their mean)."))

    def __init__(self, width: int = DEFAULT_WIDTH, estimate_depth: int = 3, enhance_depth: int = 2,
                 alpha: float = 1.0, input_kind: str = "srgb", norm: str = "batch") -> None:
        super().__init__()
        check_positive_int("width", width)
        check_positive_int("estimate_depth", estimate_depth)
        check_positive_int("enhance_depth", enhance_depth)
        check_choice("normalisation", norm, NORMS)
        check_srgb(input_kind, self.model_name)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
            raise TransferError(f"model alpha must be a positive number, got {alpha!r}")
        self.config = {"width": width, "estimate_depth": estimate_depth, "enhance_depth": enhance_depth,
                       "alpha": float(alpha), "input_kind": input_kind, "norm": norm}
        self.alpha = float(alpha)
        names: list[str] = []
        for net, depth in (("estimate", estimate_depth), ("enhance", enhance_depth)):
            setattr(self, f"{net}_head", nn.Conv2d(3, width, 3, padding=1))
            names.append(f"{net}_head")
            for i in range(depth):
                setattr(self, f"{net}_res{i + 1}", ResidualBlock(width, norm))
                names.append(f"{net}_res{i + 1}")
            setattr(self, f"{net}_tail", nn.Conv2d(width, 3, 3, padding=1))
            names.append(f"{net}_tail")
        self.block_names = tuple(names)

    def set_alpha(self, alpha: float) -> None:
        """Change the configured restoration strength (kept in `config`, so checkpoints store it)."""
        self.alpha = self.config["alpha"] = float(alpha)

    def _subnet(self, net: str, x: torch.Tensor) -> torch.Tensor:
        """Run Estimate-Net or Enhance-Net: head, residual blocks, tail to 3 channels."""
        for name, block in self.blocks():
            if name.startswith(net + "_"):
                x = block(x)
        return x

    def difference_map(self, x: torch.Tensor) -> torch.Tensor:
        """Estimate-Net's I^D for a dark image."""
        return self._subnet("estimate", x)

    def forward(self, x: torch.Tensor, alpha: float | torch.Tensor | None = None) -> torch.Tensor:
        """Enhance(x + alpha * I^D) + that sum; alpha: a number or one value per image (default: config's)."""
        if alpha is None:
            alpha = self.alpha
        if isinstance(alpha, torch.Tensor):
            alpha = alpha.to(x.dtype).reshape(-1, 1, 1, 1)
        combined = x + alpha * self.difference_map(x)
        return combined + self._subnet("enhance", combined)

    def training_inputs(self, items: Sequence[Any], given: Collection[str]) -> TrainingInputs:
        """Pairs with an illum_alpha (a manifest): each patch's own as its strength (a row without one: the
        configured alpha), and unless `alpha` was given, their mean becomes the configured strength used later
        (validation, evaluate, enhance), as the network never saw one far from the rows'. Pairs without (real
        pairs): the configured alpha."""
        if all(item.alpha is None for item in items):
            return TrainingInputs(description={"source": "model config", "value": self.alpha},
                                  notes=(f"alpha: the model's configured {self.alpha:g} (the pairs carry no "
                                         f"{ALPHA_COLUMN})",))
        alphas = [self.alpha if item.alpha is None else float(item.alpha) for item in items]
        if "alpha" not in given:
            self.set_alpha(float(np.mean(alphas)))
        described = {"source": f"manifest {ALPHA_COLUMN}", "min": min(alphas), "mean": float(np.mean(alphas)),
                     "max": max(alphas)}
        notes = [f"alpha: each patch's manifest {ALPHA_COLUMN} (min {described['min']:g}, mean "
                 f"{described['mean']:g}, max {described['max']:g}); validation uses the configured {self.alpha:g}"]
        if max(alphas) == 0:
            notes.append(f"warning: every training row has {ALPHA_COLUMN} 0, so alpha * I^D is 0 and "
                         "Estimate-Net gets no gradient; only Enhance-Net learns")
        return TrainingInputs("alpha", alphas, described, tuple(notes))
