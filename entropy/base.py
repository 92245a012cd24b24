"""What every entropy model shares: integer tables in its state, and coding through the one coder.

Subclasses supply the probability model (a differentiable ``forward`` for training and an ``update`` that
tabulates it) and three small mappings between tensors and (symbol, table index) arrays; this base class
turns those into ``compress`` / ``decompress`` and into segments of a shared :class:`SymbolEncoder`
stream, so no model re-implements coding.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .coder import SymbolDecoder, SymbolEncoder, decode_symbols, encode_symbols
from .tables import TableBank

LIKELIHOOD_BOUND = 1e-9
_TABLE_BUFFERS = ("table_freqs", "table_lengths", "table_offsets")


def rate_bits(likelihoods: Tensor) -> Tensor:
    """Ideal code length in bits of symbols with these likelihoods."""
    return -torch.log2(likelihoods).sum()


class EntropyModel(nn.Module):
    """Base class. After :meth:`update`, the tables live in buffers and travel with ``state_dict``."""

    def __init__(self) -> None:
        super().__init__()
        for name in _TABLE_BUFFERS:
            self.register_buffer(name, torch.zeros(0, dtype=torch.int32 if name != "table_offsets" else torch.int64))
        self._bank: TableBank | None = None

    # -- subclass contract -------------------------------------------------------------------------------
    def update(self) -> None:
        """Rebuild the integer tables from the current parameters (call after training, before coding)."""
        raise NotImplementedError

    def symbols_and_indexes(self, y: Tensor, *cond: Any) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def table_indexes(self, shape: tuple[int, ...], *cond: Any) -> np.ndarray:
        raise NotImplementedError

    def reconstruct(self, symbols: np.ndarray, shape: tuple[int, ...], *cond: Any) -> Tensor:
        raise NotImplementedError

    # -- tables ------------------------------------------------------------------------------------------
    def _set_bank(self, bank: TableBank) -> None:
        device = self.table_freqs.device
        self.table_freqs = torch.from_numpy(bank.freqs.astype(np.int32)).to(device)
        self.table_lengths = torch.from_numpy(bank.lengths.astype(np.int32)).to(device)
        self.table_offsets = torch.from_numpy(bank.offsets.astype(np.int64)).to(device)
        self._bank = bank

    @property
    def bank(self) -> TableBank:
        if self._bank is None:
            if self.table_freqs.numel() == 0:
                raise RuntimeError(f"{type(self).__name__} has no tables yet: call update() after training")
            self._bank = TableBank(self.table_freqs.cpu().numpy().astype(np.int64),
                                   self.table_lengths.cpu().numpy().astype(np.int64),
                                   self.table_offsets.cpu().numpy())
        return self._bank

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # Table sizes depend on the trained parameters, so adopt the stored shapes before loading.
        for name in _TABLE_BUFFERS:
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        self._bank = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- coding ------------------------------------------------------------------------------------------
    def write(self, encoder: SymbolEncoder, y: Tensor, *cond: Any) -> None:
        """Append ``y`` to a shared stream as one segment."""
        encoder.add(self.bank, *self.symbols_and_indexes(y, *cond))

    def read(self, decoder: SymbolDecoder, shape: tuple[int, ...], *cond: Any) -> Tensor:
        """Read back the segment :meth:`write` appended."""
        symbols = decoder.read(self.bank, self.table_indexes(tuple(shape), *cond))
        return self.reconstruct(symbols, tuple(shape), *cond)

    @torch.no_grad()
    def compress(self, y: Tensor, *cond: Any) -> bytes:
        return encode_symbols(self.bank, *self.symbols_and_indexes(y, *cond))

    @torch.no_grad()
    def decompress(self, data: bytes, shape: tuple[int, ...], *cond: Any) -> Tensor:
        symbols = decode_symbols(self.bank, data, self.table_indexes(tuple(shape), *cond))
        return self.reconstruct(symbols, tuple(shape), *cond)


def quantize(y: Tensor, training: bool, offset: Tensor | None = None) -> Tensor:
    """Additive uniform noise while training (a differentiable proxy), rounding otherwise."""
    if training:
        return y + torch.empty_like(y).uniform_(-0.5, 0.5)
    if offset is None:
        return torch.round(y)
    return torch.round(y - offset) + offset


def channel_indexes(shape: tuple[int, ...]) -> np.ndarray:
    """Per-element channel number for a (batch, channels, ...) tensor, flattened in C order."""
    channels = np.arange(shape[1], dtype=np.int64).reshape((1, shape[1]) + (1,) * (len(shape) - 2))
    return np.broadcast_to(channels, shape).reshape(-1)


def to_int32(t: Tensor) -> np.ndarray:
    """Rounded tensor as int32, refusing values no table could ever address."""
    values = torch.round(t.detach()).to(torch.float64).cpu().numpy().reshape(-1)
    if values.size and (not np.all(np.isfinite(values)) or np.abs(values).max() >= 2**31 - 1):
        raise ValueError("latent holds non-finite or out-of-int32 values; cannot code it")
    return values.astype(np.int32)
