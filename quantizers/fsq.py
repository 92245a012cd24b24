"""Finite scalar quantization (Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made Simple").

    x (..., dim) --project_in--> z (..., D) with D = len(levels)
      --bound: tanh, so dimension d takes one of levels[d] values after rounding--> round (straight-through)
      --> codes in [-1, 1]^D --project_out--> (..., dim)
    index = sum_d digit_d * prod(levels[:d])    (mixed radix; the codebook is implicit)

No codebook to learn, so no dead codes; usage is high by construction.

``bound="clamp"`` replaces tanh by a clamp, so values already inside the code range are quantized without
distortion (codes ~= z): residual FSQ uses it after its first stage, whose residuals are known to be small.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from .base import QuantizerOutput, empirical_bits, round_ste


class FSQ(nn.Module):
    def __init__(self, levels: Sequence[int], dim: int | None = None, bound: str = "tanh") -> None:
        super().__init__()
        if len(levels) == 0 or min(levels) < 2:
            raise ValueError("levels must be a non-empty list of integers >= 2")
        if bound not in ("tanh", "clamp"):
            raise ValueError(f"bound must be 'tanh' or 'clamp', got {bound!r}")
        self.bound_kind = bound
        self.levels_list = list(levels)
        self.code_dim = len(levels)
        self.dim = dim or self.code_dim
        self.codebook_size = math.prod(levels)
        basis = [math.prod(levels[:d]) for d in range(len(levels))]
        self.register_buffer("levels", torch.tensor(levels, dtype=torch.long), persistent=False)
        self.register_buffer("basis", torch.tensor(basis, dtype=torch.long), persistent=False)
        self.register_buffer("half_width", torch.tensor([l // 2 for l in levels], dtype=torch.float32),
                             persistent=False)
        same = self.dim == self.code_dim
        self.project_in = nn.Identity() if same else nn.Linear(self.dim, self.code_dim)
        self.project_out = nn.Identity() if same else nn.Linear(self.code_dim, self.dim)

    def bound(self, z: Tensor, eps: float = 1e-3) -> Tensor:
        """Squash each dimension into the range whose rounding gives exactly ``levels[d]`` values."""
        if self.bound_kind == "clamp":
            low = -self.half_width
            return torch.minimum(torch.maximum(z * self.half_width, low), low + self.levels - 1)
        half_l = (self.levels.to(z.dtype) - 1) * (1 + eps) / 2
        offset = torch.where(self.levels % 2 == 0, 0.5, 0.0).to(z.dtype)
        shift = torch.atanh(offset / half_l)
        return torch.tanh(z + shift) * half_l - offset

    def quantize_codes(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """z (..., D) in code space -> (codes in [-1, 1], indices (...,))."""
        digits = round_ste(self.bound(z))  # integers in [-half_width, levels - 1 - half_width]
        codes = digits / self.half_width
        index = ((digits.detach() + self.half_width).long() * self.basis).sum(-1)
        return codes, index

    def codes_from_indices(self, indices: Tensor) -> Tensor:
        digits = (indices.unsqueeze(-1) // self.basis) % self.levels
        return (digits.float() - self.half_width) / self.half_width

    def forward(self, x: Tensor) -> QuantizerOutput:
        codes, index = self.quantize_codes(self.project_in(x))
        indices = index.unsqueeze(-1)
        return QuantizerOutput(self.project_out(codes), indices, x.new_zeros(()), empirical_bits(indices))

    def from_indices(self, indices: Tensor) -> Tensor:
        """indices (..., 1) -> quantized (..., dim)."""
        return self.project_out(self.codes_from_indices(indices[..., 0]))
