"""A global+local enhancer: a small global branch sets the image's exposure, tone and colour from a thumbnail, a
local branch restores noise and detail on top.

Most of a low-light image's error is global (exposure, tone, colour cast: on LOL a fixed curve already gets most of
the way), which a patch-wise U-Net learns poorly from a few pairs. Here the global branch reads a fixed-size
thumbnail of the whole input (any resolution) plus its log mean brightness per channel, and predicts per image a
gain, a gamma and a 3x3 colour matrix applied to every pixel:

    y   = M · (gain · x^(1/gamma))                  gain = curve_gain·e^δg, gamma = curve_gamma·e^δγ, M = I + Δ
    out = y + local(y)                               a two-level U-Net at half resolution (pixel-unshuffled)

The global head's last layer and the local branch's output layer start at zero, so an untrained model is exactly
the tone curve `curve_gain · x^(1/curve_gamma)` (set them to the calibrated or pool-fitted curve). "Fine-tune the
last N blocks" means the global head plus the last N local blocks (`finetune_blocks`). At inference the global
parameters come from the whole image and are shared by its tiles (`image_context`); in training each patch comes with
a pooled view of its whole image (`training_inputs`), so the global branch learns from the statistics it will read.
"""
from __future__ import annotations

from typing import Any, Collection, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from transfer.errors import TransferError
from transfer.models.base import (DEFAULT_WIDTH, LEAKY_SLOPE, NORMS, BlockModel, TrainingInputs, check_block_count,
                                  check_choice, check_positive_int, check_srgb, norm_layer)
from transfer.models.registry import ModelOption, register

THUMBNAIL = 64  # side of the global branch's view of the whole image
GLOBAL_OUTPUTS = 11  # log gain, log gamma, the 9 entries of the colour matrix's difference from identity
LOCAL_BLOCKS: tuple[str, ...] = ("local_in", "local_down", "local_bottom", "local_up1", "local_up2", "local_out")
EPS = 1e-4  # x^(1/gamma) at 0 has an infinite slope: keep the base above it


def _convs(in_ch: int, out_ch: int, norm: str, stride: int = 1) -> nn.Sequential:
    """Two 3x3 convolutions (the first with `stride`), each with optional batch norm and LeakyReLU(0.2)."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=norm == "none"), norm_layer(norm, out_ch),
        nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
        nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=norm == "none"), norm_layer(norm, out_ch),
        nn.LeakyReLU(LEAKY_SLOPE, inplace=True))


class _Up(nn.Module):
    """Bilinear 2x upsampling, concatenate the skip, two 3x3 convolutions."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, norm: str) -> None:
        super().__init__()
        self.convs = _convs(in_ch + skip_ch, out_ch, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Upsample to the skip's size, concatenate, convolve."""
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.convs(torch.cat([x, skip], dim=1))


def apply_curve(x: torch.Tensor, gain: torch.Tensor, gamma: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """M · (gain · x^(1/gamma)) per image: gain and gamma (N,), matrix (N, 3, 3)."""
    toned = gain.view(-1, 1, 1, 1) * x.clamp_min(EPS) ** (1.0 / gamma.view(-1, 1, 1, 1))
    return torch.einsum("nij,njhw->nihw", matrix, toned)


@register("global_local")
class GlobalLocal(BlockModel):
    """Global exposure/tone/colour from a thumbnail, then a local U-Net residual; starts as the tone curve."""

    options = (
        ModelOption("curve_gain", float, "gain of the tone curve an untrained model equals (default 1.5)."),
        ModelOption("curve_gamma", float, "gamma of that tone curve, k·x^(1/gamma) (default 3.0)."),
    )
    block_names = ("global_features", "global_head") + LOCAL_BLOCKS
    pad_multiple = 8  # pixel-unshuffle (2) and two poolings (4)

    def __init__(self, width: int = DEFAULT_WIDTH, curve_gain: float = 1.5, curve_gamma: float = 3.0,
                 input_kind: str = "srgb", norm: str = "none") -> None:
        super().__init__()
        check_positive_int("width", width)
        check_choice("normalisation", norm, NORMS)
        check_srgb(input_kind, self.model_name)
        for name, value in (("curve_gain", curve_gain), ("curve_gamma", curve_gamma)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise TransferError(f"model {name} must be a positive number, got {value!r}")
        self.config = {"width": width, "curve_gain": float(curve_gain), "curve_gamma": float(curve_gamma),
                       "input_kind": input_kind, "norm": norm}
        self.global_features = nn.Sequential(
            _convs(3, width, "none", stride=2), _convs(width, 2 * width, "none", stride=2),
            _convs(2 * width, 2 * width, "none", stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.global_head = nn.Sequential(nn.Linear(2 * width + 3, 4 * width), nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
                                         nn.Linear(4 * width, GLOBAL_OUTPUTS))
        self.local_in = _convs(12, width, norm)
        self.local_down = _convs(width, 2 * width, norm)
        self.local_bottom = _convs(2 * width, 4 * width, norm)
        self.local_up1 = _Up(4 * width, 2 * width, 2 * width, norm)
        self.local_up2 = _Up(2 * width, width, width, norm)
        self.local_out = nn.Conv2d(width, 12, 1)
        for layer in (self.global_head[-1], self.local_out):  # start as the tone curve exactly
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def finetune_blocks(self, n: int) -> list[str]:
        """The blocks "the last n" means here: the global head and the last n local blocks."""
        check_block_count(n, self.max_finetune_blocks)
        return ["global_head", *LOCAL_BLOCKS[-n:]]

    @property
    def max_finetune_blocks(self) -> int:
        """The local branch's block count."""
        return len(LOCAL_BLOCKS)

    def global_parameters(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-image gain (N,), gamma (N,) and colour matrix (N, 3, 3) from a thumbnail of the whole input."""
        thumb = F.adaptive_avg_pool2d(x, THUMBNAIL)
        log_mean = torch.log(thumb.mean(dim=(2, 3)).clamp_min(EPS))
        delta = self.global_head(torch.cat([self.global_features(thumb), log_mean], dim=1))
        gain = self.config["curve_gain"] * torch.exp(delta[:, 0])
        gamma = self.config["curve_gamma"] * torch.exp(delta[:, 1])
        matrix = torch.eye(3, dtype=x.dtype, device=x.device) + delta[:, 2:].reshape(-1, 3, 3)
        return gain, gamma, matrix

    def local_residual(self, y: torch.Tensor) -> torch.Tensor:
        """The local branch's correction of the globally enhanced image (half-resolution U-Net)."""
        d1 = self.local_in(F.pixel_unshuffle(y, 2))
        d2 = self.local_down(F.max_pool2d(d1, 2))
        u = self.local_bottom(F.max_pool2d(d2, 2))
        u = self.local_up2(self.local_up1(u, d2), d1)
        return F.pixel_shuffle(self.local_out(u), 2)

    def image_context(self, x: torch.Tensor) -> dict[str, Any]:
        """The global parameters of the whole image, for every tile of it."""
        return {"global_params": self.global_parameters(x)}

    def training_inputs(self, items: Sequence[Any], given: Collection[str]) -> TrainingInputs:
        """Each training patch comes with a thumbnail-sized view of its whole image, so the global branch learns
        from the whole-image statistics it reads at inference (`image_context`), not from the patch's."""
        return TrainingInputs("image_view", description={"global_branch_reads": "the whole image"},
                              view_size=THUMBNAIL)

    def forward(self, x: torch.Tensor,
                global_params: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
                image_view: torch.Tensor | None = None) -> torch.Tensor:
        """Global curve and colour per image (from `global_params` of the whole image x is a tile of, else from
        `image_view`, a pooled view of that whole image, else from x itself), then the local residual; output not
        clipped."""
        if global_params is None:
            global_params = self.global_parameters(x if image_view is None else image_view.to(x.dtype))
        y = apply_curve(x, *global_params)
        return y + self.local_residual(y.clamp(0.0, 1.0))
