"""Integer probability tables: the only thing the entropy coder ever sees.

A table is a list of positive integer frequencies that sum to exactly ``2**PRECISION``.  Its last bin is the
*escape* bin: symbols outside the table's range are coded as "escape" followed by their exact value (see
:mod:`.coder`), so nothing is ever silently clipped.  Tables are built once (at ``update()`` time, on the
machine that exports a model), stored as integers in the model's state and shipped with its weights;
encoder and decoder therefore use identical integers on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

PRECISION = 24
TOTAL = 1 << PRECISION
MAX_TABLE_LEN = 1 << 16


def quantize_pmf(pmf: np.ndarray) -> np.ndarray:
    """Turn a probability vector (escape mass last) into integer frequencies >= 1 summing to ``TOTAL``.

    Largest-remainder rounding keeps the table close to the pmf in KL terms; the +1 floor guarantees every
    symbol stays codable whatever the model believed.
    """
    pmf = np.asarray(pmf, dtype=np.float64)
    n = pmf.shape[0]
    if not 2 <= n <= MAX_TABLE_LEN:
        raise ValueError(f"a table needs 2..{MAX_TABLE_LEN} bins, got {n}")
    if not np.all(np.isfinite(pmf)) or np.any(pmf < 0) or pmf.sum() <= 0:
        raise ValueError("pmf must be finite, non-negative and not all zero")
    scaled = pmf / pmf.sum() * (TOTAL - n)
    freqs = np.floor(scaled).astype(np.int64)
    remainder = (TOTAL - n) - int(freqs.sum())
    # Deterministic tie-break (stable sort) so the same pmf always yields the same table.
    freqs[np.argsort(-(scaled - freqs), kind="stable")[:remainder]] += 1
    return freqs + 1


@dataclass(frozen=True, eq=False)
class TableBank:
    """A set of tables, addressed by integer index.

    ``freqs[t, :lengths[t]]`` is table ``t``; its bin ``b`` codes symbol ``offsets[t] + b`` except the last
    bin, which is the escape bin.  Padding beyond ``lengths[t]`` is zero.
    """

    freqs: np.ndarray  # (tables, max_len) int64
    lengths: np.ndarray  # (tables,) int64, escape bin included
    offsets: np.ndarray  # (tables,) int64, symbol value of bin 0

    def __post_init__(self) -> None:
        t = self.freqs.shape[0]
        if self.freqs.ndim != 2 or self.lengths.shape != (t,) or self.offsets.shape != (t,) or t == 0:
            raise ValueError("TableBank needs freqs (T, L), lengths (T,), offsets (T,) with T >= 1")
        for i, n in enumerate(self.lengths):
            row = self.freqs[i]
            if n < 2 or n > row.shape[0] or row[:n].sum() != TOTAL or row[:n].min() < 1 or row[n:].any():
                raise ValueError(f"table {i} is not a valid {PRECISION}-bit frequency table")

    @classmethod
    def from_pmfs(cls, pmfs: list[np.ndarray], offsets: list[int] | np.ndarray) -> "TableBank":
        """Build from float pmfs (each with its escape mass as the last entry)."""
        tables = [quantize_pmf(p) for p in pmfs]
        width = max(len(t) for t in tables)
        freqs = np.zeros((len(tables), width), dtype=np.int64)
        for i, t in enumerate(tables):
            freqs[i, : len(t)] = t
        lengths = np.array([len(t) for t in tables], dtype=np.int64)
        return cls(freqs, lengths, np.asarray(offsets, dtype=np.int64).reshape(-1))

    @property
    def num_tables(self) -> int:
        return int(self.freqs.shape[0])

    @cached_property
    def models(self) -> list:
        """One constriction model per table, built from the integers alone.

        constriction's fast quantizer maps float weights ``w`` to frequencies ``floor(cum(w) * s) + i``; feeding
        it ``w = freq - 1`` (exact integers, so the sum and the scale ``s = 1`` are exact in float64) makes it
        reproduce our table exactly, with no rounding left to differ between machines.
        """
        import constriction  # imported here so building tables needs no coder

        return [constriction.stream.model.Categorical((self.freqs[t, :n] - 1).astype(np.float64), perfect=False)
                for t, n in enumerate(self.lengths)]

    def information_bits(self, symbols: np.ndarray, indexes: np.ndarray) -> float:
        """Ideal cost in bits, -sum(log2 p), of coding ``symbols`` with these tables (escape bins counted)."""
        bins, _ = self.to_bins(symbols, indexes)
        freq = self.freqs[indexes.reshape(-1), bins]
        return float(PRECISION * freq.size - np.log2(freq).sum())

    def to_bins(self, symbols: np.ndarray, indexes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map symbols to table bins; returns (bins, escaped mask)."""
        indexes = indexes.reshape(-1)
        bins = symbols.reshape(-1).astype(np.int64) - self.offsets[indexes]
        escape_bin = self.lengths[indexes] - 1
        escaped = (bins < 0) | (bins >= escape_bin)
        return np.where(escaped, escape_bin, bins), escaped
