"""`transfer.load_enhancer(run_dir_or_file).enhance(image)`: a trained model as one call on an array.

The image may be a numpy array (H, W, 3) of uint8, uint16 or float in [0, 1], or a torch tensor (3, H, W) or
(1, 3, H, W) of any float dtype in [0, 1]; any size (padded to the network's multiple, tiled when larger than
`tile`). The result has the input's type, dtype and layout. For integer arrays it is bit-identical to what
`transfer enhance` writes for a file holding the same pixels: both run `Enhancer.enhance`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from transfer.checkpoint import load_checkpoint
from transfer.device import pick_device
from transfer.errors import TransferError
from transfer.infer import DEFAULT_TILE, alpha_kwargs, predict

PEAKS = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}


class Enhancer:
    """A loaded checkpoint and its inference settings."""

    def __init__(self, model: torch.nn.Module, meta: dict[str, Any], tile: int = DEFAULT_TILE,
                 alpha: float | None = None) -> None:
        alpha_kwargs(model, alpha)  # a model without an alpha input refuses one before any image
        self.model, self.meta, self.tile, self.alpha = model, meta, tile, alpha

    @property
    def input_kind(self) -> str:
        return str(self.meta.get("input_kind", "srgb"))

    def enhance_float(self, x: np.ndarray) -> np.ndarray:
        """(H, W, C) float32 network input -> (H', W', 3) float32 output in [0, 1]."""
        return predict(self.model, x, tile=self.tile, alpha=self.alpha)

    def enhance(self, image: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Enhance one image; the result has the input's type and dtype (see the module docstring)."""
        if isinstance(image, torch.Tensor):
            return self._enhance_tensor(image)
        image = np.asarray(image)
        self._check_array(image)
        if image.dtype in PEAKS:
            peak = PEAKS[image.dtype]
            # the same float conversion as training (transfer.data.dark_to_float) and `transfer enhance`
            x = image.astype(np.float32) * np.float32(1 / peak)
            return np.round(self.enhance_float(x) * peak).astype(image.dtype)
        return self.enhance_float(image.astype(np.float32)).astype(image.dtype)

    def _check_array(self, image: np.ndarray) -> None:
        channels = 4 if self.input_kind == "raw" else 3
        if image.ndim != 3 or image.shape[2] != channels:
            what = "packed Bayer (H, W, 4)" if channels == 4 else "(H, W, 3) RGB"
            raise TransferError(f"this checkpoint takes {what} images; got shape {tuple(image.shape)}")
        if image.dtype not in PEAKS and not np.issubdtype(image.dtype, np.floating):
            raise TransferError(f"expected a uint8, uint16 or float image, got {image.dtype}")
        if channels == 4 and image.dtype in PEAKS:
            raise TransferError("packed raw input must be float (already amplified by the exposure ratio)")

    def _enhance_tensor(self, image: torch.Tensor) -> torch.Tensor:
        """(C, H, W) or (1, C, H, W) float tensor in [0, 1] -> the same layout, dtype and device."""
        batched = image.dim() == 4
        if not (image.dim() == 3 or (batched and image.shape[0] == 1)) or not image.is_floating_point():
            raise TransferError(f"expected a float tensor (C, H, W) or (1, C, H, W), got {image.dtype} "
                                f"{tuple(image.shape)}")
        chw = image[0] if batched else image
        out = self.enhance(chw.detach().permute(1, 2, 0).float().cpu().numpy())
        result = torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1).to(image.device, image.dtype)
        return result[None] if batched else result


def load_enhancer(checkpoint: str | Path, *, device: str = "auto", tile: int = DEFAULT_TILE,
                  alpha: float | None = None) -> Enhancer:
    """Load a run directory (its best/, else last/), a checkpoint folder or a .safetensors file."""
    model, meta = load_checkpoint(checkpoint, pick_device(device))
    return Enhancer(model, meta, tile=tile, alpha=alpha)
