"""The SID U-Net (Chen et al. 2018) with named blocks.

Input kinds (seed 001 §3.2, seed 003):

- ``srgb``: an (N, 3, H, W) image in [0, 1]; space-to-depth 2x2 gives 12 channels at half resolution, the U-Net
  maps them to 12 channels, and depth-to-space (pixel shuffle) gives RGB at the input resolution.
- ``raw``: SID's packed Bayer input, (N, 4, H/2, W/2) already multiplied by the exposure ratio; the U-Net output
  is pixel-shuffled to RGB at full sensor resolution (N, 3, H, W).

Blocks are named in data-flow order (``BLOCK_NAMES``), so "the last N blocks" is well defined; the founding
paper's blue, fine-tuned blocks are the last two: ``up4`` and ``head``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from transfer.models.base import (DEFAULT_WIDTH, INPUT_KINDS, LEAKY_SLOPE, NORMS, BlockModel, check_choice,
                                  check_positive_int)
from transfer.models.registry import register

BLOCK_NAMES: tuple[str, ...] = ("down1", "down2", "down3", "down4", "bottleneck",
                                "up1", "up2", "up3", "up4", "head")


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


@register("sid_unet")
class SIDUNet(BlockModel):
    """SID's U-Net: 4 down blocks, a bottleneck, 4 up blocks and a 1x1 head followed by pixel shuffle."""

    block_names = BLOCK_NAMES
    options = ()

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
