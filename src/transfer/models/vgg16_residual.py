"""Seed 000 §IV: VGG-16's 13 convolutions with batch norm as the encoder (5 groups, 4 max-poolings), a decoder
that goes up with bilinear upsampling, 1x1 and 3x3 convolutions and additions of batch-normalised encoder
features, two final convolutions and a sigmoid. ``width`` is the first group's channel count (64 in VGG-16; 16
is a quarter). ``backbone_weights`` loads a local torchvision-format VGG-16 or VGG-16-bn state dict
(``features.<i>.weight`` ...) into the encoder.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from transfer.errors import TransferError
from transfer.models.base import (DEFAULT_WIDTH, NORMS, BlockModel, check_choice, check_positive_int, check_srgb,
                                  norm_layer)
from transfer.models.registry import ModelOption, register

VGG16_GROUPS: tuple[int, ...] = (2, 2, 3, 3, 3)  # convolutions per group; 13 in all
VGG16_GROUP_WIDTHS: tuple[int, ...] = (1, 2, 4, 8, 8)  # x width (64 in VGG-16)


class DecoderBlock(nn.Module):
    """Seed 000's residual decoder step: 1x1 conv to the skip's depth, bilinear upsampling to its size, 3x3
    conv, add the batch-normalised encoder feature, then 3x3 conv, batch norm, ReLU."""

    def __init__(self, in_ch: int, skip_ch: int, norm: str) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(in_ch, skip_ch, 1)
        self.smooth = nn.Conv2d(skip_ch, skip_ch, 3, padding=1)
        self.skip_norm = norm_layer(norm, skip_ch)
        self.fuse = nn.Sequential(nn.Conv2d(skip_ch, skip_ch, 3, padding=1, bias=norm == "none"),
                                  norm_layer(norm, skip_ch), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Go up one level and add the encoder's feature there."""
        up = F.interpolate(self.reduce(x), size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(self.smooth(up) + self.skip_norm(skip))


@register("vgg16_residual")
class VGG16Residual(BlockModel):
    """Seed 000: VGG-16 (13 convs + batch norm + ReLU, 5 groups) encoder, residual bilinear decoder, sigmoid."""

    pad_multiple = 16  # 4 max-poolings between the 5 groups
    options = (ModelOption("backbone_weights", Path,
                           "initialise the encoder from a local torchvision-format VGG-16 or VGG-16-bn state dict "
                           "(.pth or .safetensors, features.* keys) of the model's width (64 for torchvision's); "
                           "default: train from scratch."),)

    def __init__(self, width: int = DEFAULT_WIDTH, input_kind: str = "srgb", norm: str = "batch",
                 backbone_weights: str | Path | None = None) -> None:
        super().__init__()
        check_positive_int("width", width)
        check_choice("normalisation", norm, NORMS)
        check_srgb(input_kind, self.model_name)
        # backbone_weights only initialises: a checkpoint holds all weights, so it is not part of the config
        self.config = {"width": width, "input_kind": input_kind, "norm": norm}
        chans = [width * m for m in VGG16_GROUP_WIDTHS]
        in_ch = 3
        for g, (n_convs, out_ch) in enumerate(zip(VGG16_GROUPS, chans)):
            layers: list[nn.Module] = []
            for _ in range(n_convs):  # torchvision's layout: conv (with bias), BN, ReLU
                layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), norm_layer(norm, out_ch), nn.ReLU(inplace=True)]
                in_ch = out_ch
            setattr(self, f"enc{g + 1}", nn.Sequential(*layers))
        self.dec4 = DecoderBlock(chans[4], chans[3], norm)
        self.dec3 = DecoderBlock(chans[3], chans[2], norm)
        self.dec2 = DecoderBlock(chans[2], chans[1], norm)
        self.dec1 = DecoderBlock(chans[1], chans[0], norm)
        self.head = nn.Sequential(nn.Conv2d(chans[0], chans[0], 3, padding=1, bias=norm == "none"),
                                  norm_layer(norm, chans[0]), nn.ReLU(inplace=True),
                                  nn.Conv2d(chans[0], 3, 3, padding=1), nn.Sigmoid())
        self.block_names = ("enc1", "enc2", "enc3", "enc4", "enc5", "dec4", "dec3", "dec2", "dec1", "head")
        if backbone_weights is not None:
            load_vgg16_backbone(self, backbone_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode with pooling between groups, decode adding encoder features, sigmoid to [0, 1]."""
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        e3 = self.enc3(F.max_pool2d(e2, 2))
        e4 = self.enc4(F.max_pool2d(e3, 2))
        e5 = self.enc5(F.max_pool2d(e4, 2))
        u = self.dec4(e5, e4)
        u = self.dec3(u, e3)
        u = self.dec2(u, e2)
        u = self.dec1(u, e1)
        return self.head(u)


def _encoder_layers(model: VGG16Residual) -> list[tuple[nn.Conv2d, nn.Module]]:
    """(conv, norm) pairs of the encoder in order: the 13 VGG-16 convolutions."""
    pairs = []
    for g in range(len(VGG16_GROUPS)):
        layers = list(getattr(model, f"enc{g + 1}"))
        pairs += [(layers[i], layers[i + 1]) for i in range(0, len(layers), 3)]
    return pairs


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors file or a torch.save'd dict (weights only, never pickled code)."""
    if not path.is_file():
        raise TransferError("backbone weights file not found", path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user mistake
        raise TransferError(f"not a readable weights file ({type(err).__name__}: {err})", path) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TransferError("expected a state dict (parameter name -> tensor)", path)
    return state


def _backbone_targets(state: dict[str, torch.Tensor], index: int, conv: nn.Conv2d,
                      norm: nn.Module) -> dict[str, torch.Tensor]:
    """State-dict key -> encoder tensor for the convolution at `features.<index>` (and its batch norm when both
    the file and the model have one)."""
    targets = {f"features.{index}.weight": conv.weight, f"features.{index}.bias": conv.bias}
    bn_prefix = f"features.{index + 1}."
    if isinstance(norm, nn.BatchNorm2d) and f"{bn_prefix}running_mean" in state:
        targets.update({bn_prefix + name: tensor for name, tensor in
                        (("weight", norm.weight), ("bias", norm.bias), ("running_mean", norm.running_mean),
                         ("running_var", norm.running_var))})
    return targets


def load_vgg16_backbone(model: VGG16Residual, path: str | Path) -> list[str]:
    """Copy a torchvision VGG-16(-bn) state dict's 13 `features.*` convolutions (and their batch norms, when
    both have them) into the encoder; returns the keys used. Any shape mismatch names the first layer."""
    path = Path(path)
    state = _read_state_dict(path)
    conv_indices = sorted(int(k.split(".")[1]) for k, v in state.items()
                          if k.startswith("features.") and k.endswith(".weight") and v.ndim == 4)
    layers = _encoder_layers(model)
    if len(conv_indices) != len(layers):
        raise TransferError(f"expected a VGG-16 state dict with {len(layers)} convolutions under features.*, "
                            f"found {len(conv_indices)}", path)
    copies: list[tuple[str, torch.Tensor, torch.Tensor]] = []
    for index, (conv, norm) in zip(conv_indices, layers):
        for key, target in _backbone_targets(state, index, conv, norm).items():
            if key not in state:
                raise TransferError(f"backbone weights lack {key}", path)
            if tuple(state[key].shape) != tuple(target.shape):
                raise TransferError(f"backbone layer {key} does not fit vgg16_residual width "
                                    f"{model.config['width']}: expected shape {tuple(target.shape)}, received "
                                    f"{tuple(state[key].shape)}", path)
            copies.append((key, target, state[key]))
    with torch.no_grad():  # copy only after every shape was checked, so a bad file changes nothing
        for _, target, value in copies:
            target.copy_(value.to(target.dtype))
    return [key for key, _, _ in copies]
