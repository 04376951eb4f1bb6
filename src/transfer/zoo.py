"""The other networks of the source documents, registered by name next to the SID U-Net.

All map an (N, 3, H, W) sRGB image in [0, 1] to (N, 3, H, W); outputs are not clipped (inference clips, as for
the SID model). Defaults are narrow so they train on a CPU; the papers' widths are given per model.

- ``plain_cnn`` and ``dense_cnn`` (seed 004): same-resolution 3x3 convolutions whose filters double at each
  block from ``width`` (32 in the course project), a 3x3 convolution to RGB at the end; in the dense CNN every
  block (and the head) sees the concatenation of the input and all previous block outputs.
- ``estimate_enhance`` (seed 002 §3.2): Estimate-Net predicts the difference map I^D from the dark image, the
  sum I' + alpha * I^D goes through Enhance-Net, which adds a correction (both residual networks of 7x3 / 3x7
  convolutions with batch norm before and after each). alpha is an input of `forward` (``takes_alpha``): in
  pretraining each patch carries its manifest row's ``illum_alpha``; real pairs have none, so training on them,
  validation and inference use ``alpha`` from the model config (default 1.0, the paper's Fig. 5 setting; a
  manifest pretraining without --alpha stores the rows' mean) unless `transfer enhance/evaluate --alpha` sets
  the restoration strength.
- ``vgg16_residual`` (seed 000 §IV): VGG-16's 13 convolutions with batch norm as the encoder (5 groups, 4
  max-poolings), a decoder that goes up with bilinear upsampling, 1x1 and 3x3 convolutions and additions of
  batch-normalised encoder features, two final convolutions and a sigmoid. ``width`` is the first group's
  channel count (64 in VGG-16; 16 is a quarter). ``backbone_weights`` loads a local torchvision-format VGG-16 or
  VGG-16-bn state dict (``features.<i>.weight`` ...) into the encoder.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from transfer.errors import TransferError
from transfer.models import (DEFAULT_WIDTH, LEAKY_SLOPE, MODEL_REGISTRY, NORMS, BlockModel, check_choice,
                             check_positive_int)

ACTIVATIONS: tuple[str, ...] = ("lrelu", "relu")
VGG16_GROUPS: tuple[int, ...] = (2, 2, 3, 3, 3)  # convolutions per group; 13 in all
VGG16_GROUP_WIDTHS: tuple[int, ...] = (1, 2, 4, 8, 8)  # x width (64 in VGG-16)


def _activation(name: str) -> nn.Module:
    """LeakyReLU(0.2) or ReLU (seed 004 compares both)."""
    return nn.LeakyReLU(LEAKY_SLOPE, inplace=True) if name == "lrelu" else nn.ReLU(inplace=True)


def _norm(norm: str, channels: int) -> nn.Module:
    """Batch norm, or nothing."""
    return nn.BatchNorm2d(channels) if norm == "batch" else nn.Identity()


def _check_srgb(input_kind: str, name: str) -> None:
    """These networks take sRGB images only (packed raw is the SID U-Net's)."""
    if input_kind != "srgb":
        raise TransferError(f"model {name} takes sRGB input only, got input kind {input_kind!r}")


def _conv_block(in_ch: int, out_ch: int, norm: str, activation: str) -> nn.Sequential:
    """3x3 same-padding convolution, optional batch norm, activation."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=norm == "none"), _norm(norm, out_ch),
                         _activation(activation))


class PlainCNN(BlockModel):
    """Seed 004's CNN: `depth` same-resolution 3x3 conv blocks, filters width * 2^i, then a 3x3 conv to RGB."""

    dense = False  # DenseCNN: each block takes the concatenation of the input and all earlier outputs
    model_name = "plain_cnn"

    def __init__(self, width: int = DEFAULT_WIDTH, depth: int = 3, activation: str = "lrelu",
                 input_kind: str = "srgb", norm: str = "none") -> None:
        super().__init__()
        check_positive_int("width", width)
        check_positive_int("depth", depth)
        check_choice("activation", activation, ACTIVATIONS)
        check_choice("normalisation", norm, NORMS)
        _check_srgb(input_kind, self.model_name)
        self.config = {"width": width, "depth": depth, "activation": activation, "input_kind": input_kind,
                       "norm": norm}
        self.block_names = tuple(f"block{i + 1}" for i in range(depth)) + ("head",)
        in_ch = 3
        for i in range(depth):
            setattr(self, f"block{i + 1}", _conv_block(in_ch, width * 2**i, norm, activation))
            in_ch = in_ch + width * 2**i if self.dense else width * 2**i
        self.head = nn.Conv2d(in_ch, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Blocks in sequence, then the RGB head."""
        for _, block in self.blocks():
            x = block(x)
        return x


class DenseCNN(PlainCNN):
    """Seed 004's dense CNN: like PlainCNN, but each block (and the head) takes the concatenation of the input
    and all previous block outputs."""

    dense = True
    model_name = "dense_cnn"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Each block sees everything before it; the head sees everything."""
        features = [x]
        for _, block in self.blocks()[:-1]:
            features.append(block(torch.cat(features, dim=1)))
        return self.head(torch.cat(features, dim=1))


class ResidualBlock(nn.Module):
    """Seed 002's residual block: x + [BN conv7x3 BN] ReLU [BN conv3x7 BN] (batch norm before and after each
    convolution; the 7x3 / 3x7 pair widens the receptive field to restore dark parts from their neighbours)."""

    def __init__(self, channels: int, norm: str) -> None:
        super().__init__()
        bias = norm == "none"
        self.body = nn.Sequential(
            _norm(norm, channels), nn.Conv2d(channels, channels, (7, 3), padding=(3, 1), bias=bias),
            _norm(norm, channels), nn.ReLU(inplace=True),
            _norm(norm, channels), nn.Conv2d(channels, channels, (3, 7), padding=(1, 3), bias=bias),
            _norm(norm, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Identity shortcut plus the residual."""
        return x + self.body(x)


class EstimateEnhance(BlockModel):
    """Seed 002: Estimate-Net (I^D from the dark image), weighted by alpha and added to the input, then
    Enhance-Net (a residual correction of that sum). Depths 3 and 2 as in the paper's §4.2."""

    takes_alpha = True

    def __init__(self, width: int = DEFAULT_WIDTH, estimate_depth: int = 3, enhance_depth: int = 2,
                 alpha: float = 1.0, input_kind: str = "srgb", norm: str = "batch") -> None:
        super().__init__()
        check_positive_int("width", width)
        check_positive_int("estimate_depth", estimate_depth)
        check_positive_int("enhance_depth", enhance_depth)
        check_choice("normalisation", norm, NORMS)
        _check_srgb(input_kind, "estimate_enhance")
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


class DecoderBlock(nn.Module):
    """Seed 000's residual decoder step: 1x1 conv to the skip's depth, bilinear upsampling to its size, 3x3
    conv, add the batch-normalised encoder feature, then 3x3 conv, batch norm, ReLU."""

    def __init__(self, in_ch: int, skip_ch: int, norm: str) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(in_ch, skip_ch, 1)
        self.smooth = nn.Conv2d(skip_ch, skip_ch, 3, padding=1)
        self.skip_norm = _norm(norm, skip_ch)
        self.fuse = nn.Sequential(nn.Conv2d(skip_ch, skip_ch, 3, padding=1, bias=norm == "none"),
                                  _norm(norm, skip_ch), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Go up one level and add the encoder's feature there."""
        up = F.interpolate(self.reduce(x), size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(self.smooth(up) + self.skip_norm(skip))


class VGG16Residual(BlockModel):
    """Seed 000: VGG-16 (13 convs + batch norm + ReLU, 5 groups) encoder, residual bilinear decoder, sigmoid."""

    pad_multiple = 16  # 4 max-poolings between the 5 groups

    def __init__(self, width: int = DEFAULT_WIDTH, input_kind: str = "srgb", norm: str = "batch",
                 backbone_weights: str | Path | None = None) -> None:
        super().__init__()
        check_positive_int("width", width)
        check_choice("normalisation", norm, NORMS)
        _check_srgb(input_kind, "vgg16_residual")
        # backbone_weights only initialises: a checkpoint holds all weights, so it is not part of the config
        self.config = {"width": width, "input_kind": input_kind, "norm": norm}
        chans = [width * m for m in VGG16_GROUP_WIDTHS]
        in_ch = 3
        for g, (n_convs, out_ch) in enumerate(zip(VGG16_GROUPS, chans)):
            layers: list[nn.Module] = []
            for _ in range(n_convs):  # torchvision's layout: conv (with bias), BN, ReLU
                layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), _norm(norm, out_ch), nn.ReLU(inplace=True)]
                in_ch = out_ch
            setattr(self, f"enc{g + 1}", nn.Sequential(*layers))
        self.dec4 = DecoderBlock(chans[4], chans[3], norm)
        self.dec3 = DecoderBlock(chans[3], chans[2], norm)
        self.dec2 = DecoderBlock(chans[2], chans[1], norm)
        self.dec1 = DecoderBlock(chans[1], chans[0], norm)
        self.head = nn.Sequential(nn.Conv2d(chans[0], chans[0], 3, padding=1, bias=norm == "none"),
                                  _norm(norm, chans[0]), nn.ReLU(inplace=True),
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
        targets = {"weight": conv.weight, "bias": conv.bias}
        bn_prefix = f"features.{index + 1}."
        if isinstance(norm, nn.BatchNorm2d) and f"{bn_prefix}running_mean" in state:
            targets.update({f"+{name}": tensor for name, tensor in
                            (("weight", norm.weight), ("bias", norm.bias), ("running_mean", norm.running_mean),
                             ("running_var", norm.running_var))})
        for name, target in targets.items():
            key = bn_prefix + name[1:] if name.startswith("+") else f"features.{index}.{name}"
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


MODEL_REGISTRY.update({"plain_cnn": PlainCNN, "dense_cnn": DenseCNN, "estimate_enhance": EstimateEnhance,
                       "vgg16_residual": VGG16Residual})
