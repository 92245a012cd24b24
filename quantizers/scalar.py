"""Uniform scalar quantization: the quantizer of transform codecs (Balle et al. 2017).

    training:  x + u * step, u ~ U(-1/2, 1/2)      (noise proxy), or round with straight-through ("ste")
    inference: round(x / step) * step,  indices = round(x / step)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import QuantizerOutput, empirical_bits, round_ste

MODES = ("noise", "ste")


class ScalarQuantizer(nn.Module):
    def __init__(self, step: float = 1.0, mode: str = "noise") -> None:
        super().__init__()
        if step <= 0 or mode not in MODES:
            raise ValueError(f"need step > 0 and mode in {MODES}")
        self.step, self.mode = step, mode

    def forward(self, x: Tensor) -> QuantizerOutput:
        scaled = x / self.step
        indices = torch.round(scaled.detach()).long()
        if self.training and self.mode == "noise":
            quantized = (scaled + torch.empty_like(scaled).uniform_(-0.5, 0.5)) * self.step
        elif self.training:
            quantized = round_ste(scaled) * self.step
        else:
            quantized = indices.to(x.dtype) * self.step
        return QuantizerOutput(quantized, indices, x.new_zeros(()), empirical_bits(indices.reshape(-1, 1)))

    def from_indices(self, indices: Tensor) -> Tensor:
        return indices.float() * self.step
