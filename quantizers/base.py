"""The one output type every quantizer returns, and helpers they share."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass
class QuantizerOutput:
    """``quantized``: same shape as the input, straight-through (or noisy) while training.
    ``indices``: integer codes, (..., Q) for Q codebooks / stages (scalar quantizers: same shape as input).
    ``loss``: auxiliary loss to add to the training objective (commitment), a scalar.
    ``bits``: estimated cost of ``indices`` in bits (zeroth-order empirical entropy, detached), a scalar.
    """

    quantized: Tensor
    indices: Tensor
    loss: Tensor
    bits: Tensor


def round_ste(x: Tensor) -> Tensor:
    """Round in the forward pass, identity gradient in the backward pass."""
    return x + (torch.round(x) - x).detach()


def empirical_bits(indices: Tensor) -> Tensor:
    """Bits to code ``indices`` (..., Q) at the empirical entropy of each column: what an adapted
    categorical table would approach, and a lower bound for any zeroth-order code."""
    flat = indices.detach().reshape(-1, indices.shape[-1] if indices.ndim > 1 else 1).long()
    total = torch.zeros((), dtype=torch.float64, device=indices.device)
    for column in flat.T:
        _, counts = torch.unique(column, return_counts=True)
        p = counts.double() / column.numel()
        total = total - (counts.double() * torch.log2(p)).sum()
    return total


def distributed_sum_(t: Tensor) -> Tensor:
    """All-reduce in place when running under torch.distributed (DDP), so codebook statistics agree."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t


def distributed_broadcast_(t: Tensor) -> Tensor:
    """Make every process hold rank 0's value (random codebook restarts must not diverge)."""
    if dist.is_available() and dist.is_initialized():
        dist.broadcast(t, src=0)
    return t
