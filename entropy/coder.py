"""Entropy coding of integer symbols with integer tables, on constriction's ANS coder.

One small interface: a :class:`SymbolEncoder` collects *segments* -- an array of symbols, the
:class:`~.tables.TableBank` that models them and, per symbol, the index of its table -- and writes them
all into one ANS stream (one stream per chunk keeps the constant per-stream cost at one or two 32-bit
words).  A :class:`SymbolDecoder` reads the segments back in the same order, given the same banks and
indexes.  ``encode_symbols`` / ``decode_symbols`` are the one-segment shortcuts.

Speed: symbols are grouped by table (a stable sort of the indexes) and each group is coded in one
vectorised call with a fixed model, which decodes several times faster than per-symbol parametric models.

Escapes: a symbol outside its table's range is coded as the escape bin, and its value follows in the same
stream as an Elias-gamma style code (bit length, then the bits) on uniform models, so any int32 survives.
"""

from __future__ import annotations

import constriction
import numpy as np

from ..bitstream.errors import BitstreamError
from .tables import TableBank

_Uniform = constriction.stream.model.Uniform
_AnsCoder = constriction.stream.stack.AnsCoder
_MAX_ESCAPE_BITS = 34  # bit length of 2 * |excess| + sign + 1 for any int32 excess
_PIECE = 16  # escape bits are sent in pieces of at most this many bits


class EntropyDecodeError(BitstreamError):
    """The entropy-coded payload is inconsistent with the tables used to read it."""


def _check(symbols: np.ndarray, indexes: np.ndarray, bank: TableBank) -> tuple[np.ndarray, np.ndarray]:
    indexes = np.asarray(indexes).reshape(-1)
    if indexes.size and (indexes.min() < 0 or indexes.max() >= bank.num_tables):
        raise ValueError(f"table indexes must lie in [0, {bank.num_tables})")
    if symbols is not None:
        symbols = np.asarray(symbols).reshape(-1)
        if symbols.shape != indexes.shape:
            raise ValueError(f"{symbols.size} symbols but {indexes.size} indexes")
        if symbols.size and (symbols.min() < np.iinfo(np.int32).min or symbols.max() > np.iinfo(np.int32).max):
            raise ValueError("symbols must fit in int32")
    return symbols, indexes.astype(np.int64, copy=False)


def _groups(indexes: np.ndarray, num_tables: int) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Stable order that groups equal indexes, and (table, start, stop) spans in that order."""
    small = indexes.astype(np.uint16 if num_tables <= 1 << 16 else np.int64)
    order = np.argsort(small, kind="stable")
    counts = np.bincount(indexes, minlength=num_tables)
    stops = np.cumsum(counts)
    spans = [(int(t), int(stops[t] - counts[t]), int(stops[t])) for t in np.flatnonzero(counts)]
    return order, spans


def _escape_ops(excess: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(values, sizes) pairs that code signed non-zero ``excess`` values on uniform models, in decode order."""
    value = 2 * (np.abs(excess) - 1) + (excess < 0) + 1  # >= 1
    nbits = np.floor(np.log2(value.astype(np.float64))).astype(np.int64) + 1
    nbits += (value >> nbits) > 0  # guard float log2 rounding near powers of two
    nbits -= (value >> (nbits - 1)) == 0
    rest = value - (np.int64(1) << (nbits - 1))  # the bits below the leading one
    ops = [((nbits - 1), np.full(value.shape, _MAX_ESCAPE_BITS))]
    for lo in range(0, _MAX_ESCAPE_BITS, _PIECE):
        width = np.clip(nbits - 1 - lo, 0, _PIECE)
        sel = width > 0
        if not sel.any():
            break
        ops.append(((rest[sel] >> lo) & ((1 << _PIECE) - 1), np.int64(1) << width[sel]))
    return ops


class SymbolEncoder:
    """Collects segments, then :meth:`finish` writes them into one ANS stream (decoded in insertion order)."""

    def __init__(self) -> None:
        self._ops: list[tuple[np.ndarray, object, np.ndarray | None]] = []

    def add(self, bank: TableBank, symbols: np.ndarray, indexes: np.ndarray) -> None:
        symbols, indexes = _check(symbols, indexes, bank)
        if not symbols.size:
            return
        bins, escaped = bank.to_bins(symbols, indexes)
        order, spans = _groups(indexes, bank.num_tables)
        grouped = bins[order].astype(np.int32)
        for table, start, stop in spans:
            self._ops.append((grouped[start:stop], bank.models[table], None))
        if escaped.any():
            flat = symbols.astype(np.int64)[escaped]
            base = bank.offsets[indexes[escaped]]
            top = base + bank.lengths[indexes[escaped]] - 2
            excess = np.where(flat < base, flat - base, flat - top)  # signed, never 0
            for values, sizes in _escape_ops(excess):
                self._ops.append((values.astype(np.int32), _Uniform(), sizes.astype(np.int32)))

    def finish(self) -> bytes:
        coder = _AnsCoder()
        # A stack codes last-in first-out: push in reverse so the decoder pops in insertion order.
        for symbols, model, params in reversed(self._ops):
            if params is None:
                coder.encode_reverse(symbols, model)
            else:
                coder.encode_reverse(symbols, model, params)
        return coder.get_compressed().astype("<u4").tobytes()


class SymbolDecoder:
    """Reads segments back from the bytes of :meth:`SymbolEncoder.finish`, then :meth:`finish` checks the end."""

    def __init__(self, data: bytes) -> None:
        if len(data) % 4:
            raise EntropyDecodeError(f"entropy payload length {len(data)} is not a multiple of 4")
        self._coder = _AnsCoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))

    def _decode(self, model, count: int, params: np.ndarray | None = None) -> np.ndarray:
        try:
            out = self._coder.decode(model, count) if params is None else self._coder.decode(model, params)
        except Exception as exc:  # constriction reports exhausted or invalid data as a generic error
            raise EntropyDecodeError(f"entropy payload is corrupt: {exc}") from None
        return np.asarray(out, dtype=np.int64)

    def read(self, bank: TableBank, indexes: np.ndarray) -> np.ndarray:
        _, indexes = _check(None, indexes, bank)
        bins = np.empty(indexes.size, dtype=np.int64)
        if not indexes.size:
            return bins.astype(np.int32)
        order, spans = _groups(indexes, bank.num_tables)
        for table, start, stop in spans:
            bins[order[start:stop]] = self._decode(bank.models[table], stop - start)
        escaped = bins == bank.lengths[indexes] - 1
        symbols = bins + bank.offsets[indexes]
        if escaped.any():
            symbols[escaped] = self._read_escapes(bank, indexes[escaped])
        return symbols.astype(np.int32)

    def _read_escapes(self, bank: TableBank, indexes: np.ndarray) -> np.ndarray:
        count = indexes.size
        nbits = self._decode(_Uniform(), count, np.full(count, _MAX_ESCAPE_BITS, dtype=np.int32)) + 1
        rest = np.zeros(count, dtype=np.int64)
        for lo in range(0, _MAX_ESCAPE_BITS, _PIECE):
            width = np.clip(nbits - 1 - lo, 0, _PIECE)
            sel = width > 0
            if not sel.any():
                break
            rest[sel] |= self._decode(_Uniform(), int(sel.sum()), (np.int64(1) << width[sel]).astype(np.int32)) << lo
        value = (np.int64(1) << (nbits - 1)) + rest
        magnitude, negative = (value - 1) // 2 + 1, (value - 1) % 2 == 1
        base = bank.offsets[indexes]
        top = base + bank.lengths[indexes] - 2
        symbols = np.where(negative, base - magnitude, top + magnitude)
        if symbols.min() < np.iinfo(np.int32).min or symbols.max() > np.iinfo(np.int32).max:
            raise EntropyDecodeError("escaped symbol outside the int32 range")
        return symbols

    def finish(self) -> None:
        if not self._coder.is_empty():
            raise EntropyDecodeError("entropy payload has data left after the last symbol")


def encode_symbols(bank: TableBank, symbols: np.ndarray, indexes: np.ndarray) -> bytes:
    encoder = SymbolEncoder()
    encoder.add(bank, symbols, indexes)
    return encoder.finish()


def decode_symbols(bank: TableBank, data: bytes, indexes: np.ndarray) -> np.ndarray:
    decoder = SymbolDecoder(data)
    symbols = decoder.read(bank, indexes)
    decoder.finish()
    return symbols
