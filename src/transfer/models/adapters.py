"""Few-shot adapters (LED's recipe): every convolution of a frozen network gets a per-channel scale (and bias, where it has one) and a
zero-initialised parallel 1x1 branch; only those train. Folded back into plain convolutions when saved, so the
saved model has the original architecture, size and speed.

    adapted(x) = scale ⊙ (W * x + b + W₁ * x) + shift     →     W' = scale ⊙ (W + pad(W₁)),  b' = scale ⊙ b + shift

At the start scale = 1, shift = 0 and W₁ = 0: the adapted network is the pretrained one exactly.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from transfer.errors import TransferError


class AdaptedConv2d(nn.Module):
    """A frozen Conv2d plus a trainable per-channel scale/shift and a zero-initialised parallel 1x1 branch."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv
        for param in conv.parameters():
            param.requires_grad_(False)
        out_ch = conv.out_channels
        self.scale = nn.Parameter(torch.ones(out_ch))
        # a convolution without a bias (one followed by batch norm) gets no shift, so the fold keeps it bias-free
        self.shift = nn.Parameter(torch.zeros(out_ch)) if conv.bias is not None else None
        self.branch = nn.Parameter(torch.zeros(out_ch, conv.in_channels, 1, 1))
        # the 1x1 branch reads each output's centre input pixel: padding p - (k-1)/2 aligns it
        self.branch_padding = tuple(p - (k - 1) // 2 for k, p in zip(conv.kernel_size, _padding(conv)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen convolution plus the branch, scaled and shifted per output channel."""
        # the 1x1 branch as a matrix product on the strided input: torch 2.13's CPU backward of a 1x1 strided
        # convolution crashes when input and weight memory formats differ (channels_last training)
        pad_h, pad_w = self.branch_padding
        stride_h, stride_w = self.conv.stride
        sampled = F.pad(x, (pad_w, pad_w, pad_h, pad_h))[..., ::stride_h, ::stride_w]
        parallel = torch.einsum("nchw,oc->nohw", sampled, self.branch[:, :, 0, 0])
        scaled = (self.conv(x) + parallel) * self.scale.view(1, -1, 1, 1)
        return scaled if self.shift is None else scaled + self.shift.view(1, -1, 1, 1)

    def folded(self) -> nn.Conv2d:
        """One plain Conv2d computing the same function."""
        conv = copy.deepcopy(self.conv)
        kh, kw = conv.kernel_size
        centre = F.pad(self.branch.detach(), ((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2))
        scale = self.scale.detach()
        weight = (conv.weight.detach() + centre) * scale.view(-1, 1, 1, 1)
        conv.weight = nn.Parameter(weight.contiguous())
        if conv.bias is not None:
            conv.bias = nn.Parameter(conv.bias.detach() * scale + self.shift.detach())
        return conv


def _padding(conv: nn.Conv2d) -> tuple[int, int]:
    """A convolution's numeric padding."""
    if isinstance(conv.padding, str):
        return tuple((k - 1) // 2 for k in conv.kernel_size) if conv.padding == "same" else (0, 0)
    return tuple(conv.padding)


def can_adapt(conv: nn.Conv2d) -> bool:
    """Foldable: ungrouped, odd kernels, unit dilation, zero padding mode, and at least "same" padding (so a
    centred 1x1 branch sees the same output grid)."""
    return (conv.groups == 1 and all(k % 2 == 1 for k in conv.kernel_size) and conv.dilation == (1, 1)
            and conv.padding_mode == "zeros" and all(p >= (k - 1) // 2 for k, p in zip(conv.kernel_size,
                                                                                      _padding(conv))))


def attach_adapters(model: nn.Module) -> int:
    """Freeze every parameter and wrap every foldable Conv2d in an AdaptedConv2d (in place); returns how many."""
    for param in model.parameters():
        param.requires_grad_(False)
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Conv2d) and can_adapt(child):
                setattr(parent, name, AdaptedConv2d(child))
                count += 1
    if count == 0:
        raise TransferError(f"{type(model).__name__} has no convolution an adapter can be folded into")
    return count


def has_adapters(model: nn.Module) -> bool:
    """True when the model holds AdaptedConv2d layers."""
    return any(isinstance(m, AdaptedConv2d) for m in model.modules())


def exported(model: nn.Module) -> nn.Module:
    """What a checkpoint saves: the model with its adapters folded, or the model itself without adapters."""
    return folded_copy(model) if has_adapters(model) else model


def folded_copy(model: nn.Module) -> nn.Module:
    """A copy of the model with every adapter folded into its convolution (the original architecture)."""
    plain = copy.deepcopy(model)
    for parent in list(plain.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, AdaptedConv2d):
                setattr(parent, name, child.folded())
    for param in plain.parameters():
        param.requires_grad_(True)
    return plain
