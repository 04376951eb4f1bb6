"""Training losses by name: the paper's L1, or L1 plus a structural-similarity term (`--loss l1+ssim`).

SSIM's term rewards local contrast and structure that L1 alone trades for smoothness; its weight follows common
restoration practice (a small multiple of 1 − SSIM beside L1)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from transfer.errors import TransferError

SSIM_WEIGHT = 0.2


def l1(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error (the founding paper's loss)."""
    return F.l1_loss(output, target)


def l1_ssim(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 + SSIM_WEIGHT · (1 − SSIM), SSIM on the output clipped to the image range."""
    from pytorch_msssim import ssim

    return l1(output, target) + SSIM_WEIGHT * (1 - ssim(output.clamp(0, 1), target, data_range=1.0,
                                                        size_average=True))


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"l1": l1, "l1+ssim": l1_ssim}


def loss_function(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss called `name`; an unknown name is a TransferError listing the known ones."""
    if name not in LOSSES:
        raise TransferError(f"unknown --loss {name!r}, expected one of {', '.join(LOSSES)}")
    return LOSSES[name]
