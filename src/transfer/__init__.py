"""transfer: learn low-light enhancement from lowsim data, fine-tune on real pairs.

Library entry points (the `transfer` command line is a thin layer over them):

- `transfer.load_enhancer(run_dir_or_file).enhance(image)`: a trained model on a numpy array (uint8, uint16 or
  float) or torch tensor of any size, returned in the input's dtype (transfer.enhancer); bit-identical to
  `transfer enhance`.
- `transfer.create_model(name, ...)`: a registered network (transfer.models).
- `transfer.models`: the networks, one module each, registered by name (`create_model("sid_unet", width=16,
  input_kind="srgb"|"raw")`, `list_models()`: sid_unet, plain_cnn, dense_cnn, estimate_enhance, vgg16_residual),
  their named blocks, `freeze_all_but_last(model, n)`, `count_parameters`; `@register` adds one.
- `transfer.train`: `run_training(TrainConfig(mode="pretrain"|"finetune"|"scratch", ...)) -> dict`.
- `transfer.evaluate`: `evaluate_checkpoint(checkpoint, pairs, ...) -> dict` (PSNR/SSIM per image and means).
- `transfer.infer`: `predict(model, image)` at any size (padded, tiled when large, clipped to [0, 1]).
- `transfer.enhance`: `enhance_files(checkpoint, images_or_folders, out_dir, ratio=None)`.
- `transfer.checkpoint`: `load_checkpoint(path)` for run directories, checkpoint folders or .safetensors files.
- `transfer.experiment`: the founding paper's Table 1 and the model-zoo rows (`transfer experiment`).
"""
from __future__ import annotations

import importlib
from typing import Any

from lowsim import __version__  # one distribution, one version (cheap: lowsim imports nothing heavy)

__all__ = ["Enhancer", "__version__", "create_model", "load_enhancer"]
_LAZY = {"Enhancer": "transfer.enhancer", "load_enhancer": "transfer.enhancer", "create_model": "transfer.models"}


def __getattr__(name: str) -> Any:
    """The entry points above, imported on first use (torch is imported only then)."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'transfer' has no attribute {name!r}")
