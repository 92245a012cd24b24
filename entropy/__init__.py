"""Entropy models (torch modules for training, integer tables for coding) and the coder they share."""

from .base import EntropyModel, rate_bits
from .categorical import CategoricalPrior
from .coder import EntropyDecodeError, SymbolDecoder, SymbolEncoder, decode_symbols, encode_symbols
from .factorized import FactorizedPrior
from .gaussian import GaussianConditional, log_scale_table
from .tables import PRECISION, TableBank, quantize_pmf

__all__ = [
    "CategoricalPrior", "EntropyDecodeError", "EntropyModel", "FactorizedPrior", "GaussianConditional",
    "PRECISION", "SymbolDecoder", "SymbolEncoder", "TableBank", "decode_symbols", "encode_symbols",
    "log_scale_table", "quantize_pmf", "rate_bits",
]
