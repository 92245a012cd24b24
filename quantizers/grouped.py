"""Grouped residual quantization (HiFi-Codec, Yang et al. 2023): split the channels into G groups and give
each its own residual quantizer; few codebooks per group reach what plain RVQ needs many for.

    x (..., G*d) --split--> G x (..., d) --residual quantizer per group--> concat --> (..., G*d)
    indices (..., G * n): group-major, the n stage indices of group 0 first.
"""

from __future__ import annotations

from typing import Callable

import torch
from einops import rearrange
from torch import Tensor, nn

from .base import QuantizerOutput
from .residual import ResidualQuantizer, ResidualVQ


class GroupedResidualQuantizer(nn.Module):
    def __init__(self, dim: int, groups: int, make_residual: Callable[[int], ResidualQuantizer]) -> None:
        super().__init__()
        if dim % groups:
            raise ValueError(f"dim {dim} is not divisible into {groups} groups")
        self.groups = groups
        self.residuals = nn.ModuleList(make_residual(dim // groups) for _ in range(groups))

    def forward(self, x: Tensor, num_stages: int | None = None) -> QuantizerOutput:
        if num_stages is None and self.training:
            # Draw one dropout depth for all groups, so every group codes at the same bitrate.
            first = self.residuals[0]
            num_stages = first._stages_this_step(None)
        parts = rearrange(x, "... (g d) -> g ... d", g=self.groups)
        outs = [rq(part, num_stages) for rq, part in zip(self.residuals, parts)]
        quantized = torch.cat([o.quantized for o in outs], dim=-1)
        indices = torch.cat([o.indices for o in outs], dim=-1)
        return QuantizerOutput(quantized, indices, sum(o.loss for o in outs), sum(o.bits for o in outs))

    @property
    def searchable(self) -> bool:
        return all(rq.searchable for rq in self.residuals)

    def search(self, x: Tensor, num_stages: int, beam: int) -> Tensor:
        """Each group's :meth:`ResidualQuantizer.search`; indices group-major, as ``forward``'s."""
        parts = rearrange(x, "... (g d) -> g ... d", g=self.groups)
        return torch.cat([rq.search(part, num_stages, beam) for rq, part in zip(self.residuals, parts)], dim=-1)

    def from_indices(self, indices: Tensor) -> Tensor:
        per_group = rearrange(indices, "... (g n) -> g ... n", g=self.groups)
        return torch.cat([rq.from_indices(i) for rq, i in zip(self.residuals, per_group)], dim=-1)


def GroupedResidualVQ(dim: int, groups: int, codebook_size: int, num_quantizers: int, dropout: bool = True,
                      **vq_kwargs) -> GroupedResidualQuantizer:
    return GroupedResidualQuantizer(
        dim, groups, lambda d: ResidualVQ(d, codebook_size, num_quantizers, dropout=dropout, **vq_kwargs))
