"""Which torch device a command runs on (`--device auto|cpu|cuda`)."""
from __future__ import annotations

import torch

from transfer.errors import TransferError

DEVICES = ("auto", "cpu", "cuda")


def pick_device(name: str) -> torch.device:
    """CUDA when present (or asked for), else CPU."""
    if name == "cuda" and not torch.cuda.is_available():
        raise TransferError("--device cuda was asked for but no CUDA device is available")
    return torch.device("cuda" if name != "cpu" and torch.cuda.is_available() else "cpu")
