"""The SID U-Net (Chen et al. 2018) with named blocks, the model registry and freezing helpers.

Every registered model is a `BlockModel`: it names its blocks in data-flow order (`block_names`), says how
inputs must be padded (`pad_multiple`) and how much larger its output is (`scale`), and keeps its constructor
options in `config` so a checkpoint can rebuild it. The other networks of the source documents live in
`transfer.zoo` and register themselves here.

Input kinds (seed 001 §3.2, seed 003):

- ``srgb``: an (N, 3, H, W) image in [0, 1]; space-to-depth 2x2 gives 12 channels at half resolution, the U-Net
  maps them to 12 channels, and depth-to-space (pixel shuffle) gives RGB at the input resolution.
- ``raw``: SID's packed Bayer input, (N, 4, H/2, W/2) already multiplied by the exposure ratio; the U-Net output
  is pixel-shuffled to RGB at full sensor resolution (N, 3, H, W).

Blocks are named in data-flow order (``BLOCK_NAMES``), so "the last N blocks" is well defined; the founding
paper's blue, fine-tuned blocks are the last two: ``up4`` and ``head``.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from transfer.errors import TransferError

BLOCK_NAMES: tuple[str, ...] = ("down1", "down2", "down3", "down4", "bottleneck",
                                "up1", "up2", "up3", "up4", "head")
INPUT_KINDS: tuple[str, ...] = ("srgb", "raw")
NORMS: tuple[str, ...] = ("none", "batch")
# Base width 16 by default: a quarter of SID's 7.8M parameters (width 32), which trains at ~100 patches/s
# on two CPU cores (benchmarks/bench_train.py) while keeping SID's depth, skips and receptive field.
DEFAULT_WIDTH = 16
LEAKY_SLOPE = 0.2  # SID's lrelu: max(0.2 x, x)


def _conv_pair(in_ch: int, out_ch: int, norm: str) -> nn.Sequential:
    """Two 3x3 convolutions, each followed by (optional batch norm and) LeakyReLU(0.2)."""
    layers: list[nn.Module] = []
    for cin in (in_ch, out_ch):
        layers.append(nn.Conv2d(cin, out_ch, kernel_size=3, padding=1, bias=norm == "none"))
        if norm == "batch":
            layers.append(nn.BatchNorm2d(out_ch))
        layers.append(nn.LeakyReLU(LEAKY_SLOPE, inplace=True))
    return nn.Sequential(*layers)


class UpBlock(nn.Module):
    """SID's upsample_and_concat: a 2x2 stride-2 transposed conv, concatenate the skip, two 3x3 convs."""

    def __init__(self, in_ch: int, out_ch: int, norm: str) -> None:
        super().__init__()
        self.upsample = nn.ConvTranspose2d(in_ch, out_ch, kernel_size=2, stride=2)
        self.convs = _conv_pair(2 * out_ch, out_ch, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Upsample x to the skip's resolution, concatenate, convolve."""
        return self.convs(torch.cat([self.upsample(x), skip], dim=1))


def check_positive_int(name: str, value: Any) -> None:
    """A model size option must be a positive integer (bool is not one)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise TransferError(f"model {name} must be a positive integer, got {value!r}")


def check_choice(what: str, value: Any, choices: Iterable[str]) -> None:
    """A model option must be one of a fixed set."""
    choices = tuple(choices)
    if value not in choices:
        raise TransferError(f"unknown {what} {value!r}, expected one of {', '.join(choices)}")


class BlockModel(nn.Module):
    """A network split into named blocks in data-flow order, so "train the last N blocks" is well defined."""

    block_names: tuple[str, ...] = ()
    input_kind: str = "srgb"
    scale: int = 1  # output pixels per input pixel along each axis
    pad_multiple: int = 1  # input height and width must be multiples of this
    takes_alpha: bool = False  # forward(x, alpha=...) takes a restoration strength (estimate_enhance)

    def __init__(self) -> None:
        super().__init__()
        self.config: dict[str, Any] = {}
        self.frozen_blocks: frozenset[str] = frozenset()

    def blocks(self) -> list[tuple[str, nn.Module]]:
        """(name, module) of every block in data-flow order."""
        return [(name, getattr(self, name)) for name in self.block_names]

    def train(self, mode: bool = True) -> "BlockModel":
        """Like nn.Module.train, but frozen blocks stay in eval mode so their BN statistics never move."""
        super().train(mode)
        for name in self.frozen_blocks:
            getattr(self, name).eval()
        return self


class SIDUNet(BlockModel):
    """SID's U-Net: 4 down blocks, a bottleneck, 4 up blocks and a 1x1 head followed by pixel shuffle."""

    block_names = BLOCK_NAMES

    def __init__(self, width: int = DEFAULT_WIDTH, input_kind: str = "srgb", norm: str = "none") -> None:
        super().__init__()
        check_positive_int("width", width)
        check_choice("input kind", input_kind, INPUT_KINDS)
        check_choice("normalisation", norm, NORMS)
        self.config = {"width": width, "input_kind": input_kind, "norm": norm}
        self.input_kind = input_kind
        in_ch = 12 if input_kind == "srgb" else 4
        chans = [width * 2**i for i in range(5)]
        self.down1 = _conv_pair(in_ch, chans[0], norm)
        self.down2 = _conv_pair(chans[0], chans[1], norm)
        self.down3 = _conv_pair(chans[1], chans[2], norm)
        self.down4 = _conv_pair(chans[2], chans[3], norm)
        self.bottleneck = _conv_pair(chans[3], chans[4], norm)
        self.up1 = UpBlock(chans[4], chans[3], norm)
        self.up2 = UpBlock(chans[3], chans[2], norm)
        self.up3 = UpBlock(chans[2], chans[1], norm)
        self.up4 = UpBlock(chans[1], chans[0], norm)
        self.head = nn.Conv2d(chans[0], 12, kernel_size=1)

    @property
    def scale(self) -> int:  # type: ignore[override]
        """Output pixels per input pixel along each axis (2 for packed raw, 1 for sRGB)."""
        return 2 if self.input_kind == "raw" else 1

    @property
    def pad_multiple(self) -> int:  # type: ignore[override]
        """Input sizes must be multiples of this: 4 poolings (16), times 2 for sRGB's space-to-depth."""
        return 32 if self.input_kind == "srgb" else 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map an (N, C, H, W) input whose H, W are multiples of pad_multiple to (N, 3, H*scale, W*scale)."""
        if self.input_kind == "srgb":
            x = F.pixel_unshuffle(x, 2)
        d1 = self.down1(x)
        d2 = self.down2(F.max_pool2d(d1, 2))
        d3 = self.down3(F.max_pool2d(d2, 2))
        d4 = self.down4(F.max_pool2d(d3, 2))
        u = self.bottleneck(F.max_pool2d(d4, 2))
        u = self.up1(u, d4)
        u = self.up2(u, d3)
        u = self.up3(u, d2)
        u = self.up4(u, d1)
        return F.pixel_shuffle(self.head(u), 2)


MODEL_REGISTRY: dict[str, Callable[..., BlockModel]] = {"sid_unet": SIDUNet}


def list_models() -> list[str]:
    """Names accepted by create_model, sorted."""
    return sorted(MODEL_REGISTRY)


def check_model_name(name: str) -> None:
    """An unknown model name is a TransferError listing the registered ones."""
    if name not in MODEL_REGISTRY:
        raise TransferError(f"unknown model {name!r}; known models: {', '.join(list_models())}")


def model_options(name: str) -> list[str]:
    """The keyword options a registered model's constructor accepts."""
    check_model_name(name)
    return [p for p in inspect.signature(MODEL_REGISTRY[name]).parameters if p != "self"]


def registered_name(model: nn.Module) -> str:
    """The registry name of a model (or of the model inside a DistributedDataParallel wrapper)."""
    model = getattr(model, "module", model)
    for name, factory in MODEL_REGISTRY.items():
        if type(model) is factory:
            return name
    raise TransferError(f"{type(model).__name__} is not a registered model; known models: "
                        f"{', '.join(list_models())}")


def takes_alpha(model: nn.Module) -> bool:
    """True when the model's forward takes an `alpha` (also through a DistributedDataParallel wrapper)."""
    return bool(getattr(getattr(model, "module", model), "takes_alpha", False))


def alpha_models() -> list[str]:
    """Names of the registered models whose forward takes an alpha."""
    return [name for name in list_models() if getattr(MODEL_REGISTRY[name], "takes_alpha", False)]


def create_model(name: str, **config: Any) -> BlockModel:
    """Build a registered model by name; an unknown name or option is a TransferError listing what exists."""
    check_model_name(name)
    unknown = sorted(set(config) - set(model_options(name)))
    if unknown:
        raise TransferError(f"bad option for model {name!r}: {', '.join(unknown)}; options: "
                            f"{', '.join(model_options(name))}")
    return MODEL_REGISTRY[name](**config)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def block_parameter_counts(model: BlockModel) -> dict[str, int]:
    """Parameters per named block, in data-flow order."""
    return {name: sum(p.numel() for p in block.parameters()) for name, block in model.blocks()}


def last_blocks(n: int, model: BlockModel | None = None) -> list[str]:
    """Names of the model's last n blocks in data-flow order (default the SID U-Net's: n=2 gives the paper's
    blue blocks, up4 and head)."""
    names = BLOCK_NAMES if model is None else tuple(model.block_names)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= len(names):
        raise TransferError(f"the number of trainable blocks must be 1..{len(names)}, got {n!r}")
    return list(names[-n:])


def set_trainable_blocks(model: BlockModel, names: Iterable[str]) -> list[str]:
    """Train only the named blocks: others get requires_grad=False and stay in eval mode. Returns the names."""
    wanted = list(names)
    all_names = tuple(model.block_names)
    unknown = sorted(set(wanted) - set(all_names))
    if unknown:
        raise TransferError(f"unknown block(s) {', '.join(unknown)}; blocks: {', '.join(all_names)}")
    for name, block in model.blocks():
        for param in block.parameters():
            param.requires_grad_(name in wanted)
    model.frozen_blocks = frozenset(all_names) - set(wanted)
    model.train(model.training)  # re-apply eval mode to the newly frozen blocks
    return [name for name in all_names if name in wanted]


def freeze_all_but_last(model: BlockModel, n: int) -> list[str]:
    """Freeze every block except the last n (parameters and normalisation statistics); return trained names."""
    return set_trainable_blocks(model, last_blocks(n, model))


def trainable_blocks(model: BlockModel) -> list[str]:
    """Names of blocks with at least one trainable parameter."""
    return [name for name, block in model.blocks() if any(p.requires_grad for p in block.parameters())]


import transfer.zoo  # noqa: E402,F401  the source documents' other networks register themselves
