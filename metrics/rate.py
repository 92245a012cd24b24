"""Rate from likelihoods (what a model promises) and from real byte counts (what a file costs)."""

from __future__ import annotations

from torch import Tensor

from ..entropy.base import rate_bits


def information_bits(likelihoods: Tensor) -> float:
    """Ideal code length, -sum(log2 p), in bits, as a float (for reports; train with ``rate_bits``)."""
    return float(rate_bits(likelihoods.double()))


def bits_per_element(num_bytes: int, elements: int) -> float:
    """Real rate of a stream: 8 * bytes / elements (pixels, samples, tensor entries)."""
    if elements <= 0:
        raise ValueError("elements must be positive")
    return 8.0 * num_bytes / elements
