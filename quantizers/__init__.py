"""Quantizers. All take channel-last tensors (..., dim) (scalar: any shape) and return a QuantizerOutput;
all that emit indices can rebuild the quantized tensor from them with ``from_indices``."""

from .base import QuantizerOutput, empirical_bits, round_ste
from .fsq import FSQ
from .grouped import GroupedResidualQuantizer, GroupedResidualVQ
from .kmeans import kmeans
from .residual import ResidualFSQ, ResidualQuantizer, ResidualVQ
from .scalar import ScalarQuantizer
from .vq import VectorQuantizer

__all__ = [
    "FSQ", "GroupedResidualQuantizer", "GroupedResidualVQ", "QuantizerOutput", "ResidualFSQ",
    "ResidualQuantizer", "ResidualVQ", "ScalarQuantizer", "VectorQuantizer", "empirical_bits", "kmeans",
    "round_ste",
]
