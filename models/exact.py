"""Fixed-point layers whose inference is exact: the same integers on every machine, thread count and device.

Why: the networks that choose probability tables (hyper-synthesis, context models) must give the decoder
exactly what they gave the encoder, or the entropy decoder desynchronises (CompressAI #279, DCVC #118).
Following Balle, Johnston & Minnen, "Integer networks for data compression with latent-variable models"
(ICLR 2019), these layers compute on integers:

    activations a = A / 2^ACT_BITS,  weights w = W / 2^WEIGHT_BITS,  A, W integers (bounded)
    exact:  acc = sum(W * A) + B   -- every term and partial sum is an integer below 2^53, so float64
                                      arithmetic is exact in any summation order (im2col + GEMM, any BLAS)
            A' = floor((acc + 2^(WEIGHT_BITS-1)) / 2^WEIGHT_BITS), clamped       (round half up, exact)
    train:  the same with straight-through rounding in float32 (fake quantization), so the network learns
            under the arithmetic it will be run with.

Convolutions go through ``unfold`` + ``matmul`` explicitly rather than ``conv2d``: a convolution backend is
free to pick Winograd or FFT algorithms, whose rounding would break exactness; a matrix product is not.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ACT_BITS = 8  # activations on a 1/256 grid
WEIGHT_BITS = 8  # weights on a 1/256 grid
ACT_LIMIT = 2.0**15 / 2**ACT_BITS  # |activation| < 128: keeps every sum far below 2^53
WEIGHT_LIMIT = 8.0


def round_ste(x: Tensor) -> Tensor:
    return x + (torch.floor(x + 0.5) - x).detach()


def to_grid(x: Tensor, bits: int = ACT_BITS, limit: float = ACT_LIMIT) -> Tensor:
    """Clamp and round onto the 2^-bits grid (straight-through in training, exact in inference)."""
    scale = 2.0**bits
    return round_ste(x.clamp(-limit, limit) * scale) / scale


class ExactConv2d(nn.Module):
    """A convolution ('same' padding, stride 1) on the fixed-point grid, optionally followed by ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, relu: bool = False,
                 mask: Tensor | None = None) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size, self.relu = in_channels, out_channels, kernel_size, relu
        weight = torch.empty(out_channels, in_channels, kernel_size, kernel_size)
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("mask", torch.ones(1, 1, kernel_size, kernel_size) if mask is None else mask.view(
            1, 1, kernel_size, kernel_size).float(), persistent=False)

    def quantized_weight(self) -> Tensor:
        return to_grid(self.weight * self.mask, WEIGHT_BITS, WEIGHT_LIMIT)

    def forward(self, x: Tensor) -> Tensor:
        """x on the activation grid (B, C, H, W) -> (B, C', H, W) on the activation grid.

        Training (or any pass that needs gradients) runs the fake-quantized float32 path; inference under
        ``torch.no_grad()`` runs the exact one.  Inputs beyond the activation range are clamped in both, which
        bounds every sum of the exact path far below 2^53.
        """
        x = x.clamp(-ACT_LIMIT, ACT_LIMIT)
        if self.training or torch.is_grad_enabled():
            y = F.conv2d(x, self.quantized_weight(), to_grid(self.bias), padding=self.kernel_size // 2)
            y = to_grid(y)
        else:
            y = self._exact(x)
        return F.relu(y) if self.relu else y

    @torch.no_grad()
    def _exact(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        a = torch.round(x.double() * 2.0**ACT_BITS)  # integers (x is on the grid already)
        weight = torch.round(self.quantized_weight().double() * 2.0**WEIGHT_BITS).reshape(self.out_channels, -1)
        bias = torch.round(to_grid(self.bias).double() * 2.0**ACT_BITS) * 2.0**WEIGHT_BITS
        columns = F.unfold(a, self.kernel_size, padding=self.kernel_size // 2)  # (B, C*k*k, H*W)
        acc = torch.matmul(weight, columns) + bias.view(1, -1, 1)  # exact integers in float64
        out = torch.floor((acc + 2.0 ** (WEIGHT_BITS - 1)) / 2.0**WEIGHT_BITS)  # division by 2^k: exact
        limit = ACT_LIMIT * 2.0**ACT_BITS
        out = out.clamp(-limit, limit) / 2.0**ACT_BITS
        return out.reshape(b, self.out_channels, h, w).to(x.dtype)


class ExactUpsample2x(nn.Module):
    """x2 upsampling as an exact 3x3 convolution to 4C channels followed by pixel shuffle."""

    def __init__(self, in_channels: int, out_channels: int, relu: bool = True) -> None:
        super().__init__()
        self.conv = ExactConv2d(in_channels, out_channels * 4, 3, relu=relu)

    def forward(self, x: Tensor) -> Tensor:
        return F.pixel_shuffle(self.conv(x), 2)


def checkerboard_mask(kernel_size: int = 5) -> Tensor:
    """Spatial context mask for the second checkerboard pass: only positions of the first pass (anchors,
    the other colour of the board, which are all decoded by then) are visible."""
    yy, xx = torch.meshgrid(torch.arange(kernel_size), torch.arange(kernel_size), indexing="ij")
    return ((yy + xx) % 2 == 1).float()
