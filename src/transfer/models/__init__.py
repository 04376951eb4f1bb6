"""The networks, their registry and freezing helpers.

- `registry`: `@register("name")`, `create_model(name, **config)`, `list_models()`, each model's declared options.
- `base`: `BlockModel` (named blocks in data-flow order, `pad_multiple`, `scale`, `config`) and shared layers.
- `freeze`: parameter counts and "train the last N blocks" (`freeze_all_but_last`).
- one module per network: `sid_unet` (SID's U-Net, the founding paper's), `plain_cnn`, `dense_cnn` (seed 004),
  `estimate_enhance` (seed 002), `vgg16_residual` (seed 000), `global_local`
  (a global exposure/tone/colour branch plus a local U-Net). Importing this package registers them all.

All map an (N, 3, H, W) sRGB image in [0, 1] to (N, 3, H, W) (the SID U-Net also packed raw input); outputs are
not clipped (inference clips). Defaults are narrow so they train on a CPU.
"""
from __future__ import annotations

from transfer.models.base import (ACTIVATIONS, DEFAULT_WIDTH, INPUT_KINDS, LEAKY_SLOPE, NORMS, BlockModel,
                                  TrainingInputs, check_choice, check_positive_int)
from transfer.models.registry import (COMMON_OPTIONS, MODEL_REGISTRY, ModelOption, alpha_models,
                                      all_declared_options, check_model_name, create_model, declared_options,
                                      list_models, model_options, option_flag, register, registered_name,
                                      takes_alpha)
from transfer.models.sid_unet import BLOCK_NAMES, SIDUNet  # noqa: I001 - the networks register on import
from transfer.models.plain_cnn import PlainCNN
from transfer.models.dense_cnn import DenseCNN
from transfer.models.estimate_enhance import EstimateEnhance
from transfer.models.vgg16_residual import VGG16_GROUPS, VGG16Residual, load_vgg16_backbone
from transfer.models.global_local import GlobalLocal
from transfer.models.freeze import (block_parameter_counts, count_parameters, freeze_all_but_last, last_blocks,
                                    set_trainable_blocks, trainable_blocks)

__all__ = ["ACTIVATIONS", "BLOCK_NAMES", "COMMON_OPTIONS", "DEFAULT_WIDTH", "INPUT_KINDS", "LEAKY_SLOPE",
           "MODEL_REGISTRY", "NORMS", "VGG16_GROUPS", "BlockModel", "DenseCNN", "EstimateEnhance", "GlobalLocal", "ModelOption",
           "PlainCNN", "SIDUNet", "TrainingInputs", "VGG16Residual", "alpha_models", "all_declared_options",
           "block_parameter_counts", "check_choice", "check_model_name", "check_positive_int", "count_parameters",
           "create_model", "declared_options", "freeze_all_but_last", "last_blocks", "list_models",
           "load_vgg16_backbone", "model_options", "option_flag", "register", "registered_name",
           "set_trainable_blocks", "takes_alpha", "trainable_blocks"]
