"""Learned categorical prior for discrete code indices (VQ / FSQ codes), one distribution per codebook.

    indices (..., Q) in [0, K) --softmax(logits[q])--> likelihoods (..., Q)

Train the logits with the rate term, or fit them to observed code counts with :meth:`fit_counts`; either
way ``update`` writes one integer table per codebook, so codes cost about their entropy instead of the
``log2 K`` bits of raw packing.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from .base import LIKELIHOOD_BOUND, EntropyModel
from .tables import TableBank

_ESCAPE_MASS = 1e-9  # indices never exceed K-1; the escape bin exists only because every table has one


class CategoricalPrior(EntropyModel):
    def __init__(self, codebook_size: int, num_codebooks: int = 1) -> None:
        super().__init__()
        if codebook_size < 2:
            raise ValueError("codebook_size must be at least 2")
        self.codebook_size, self.num_codebooks = codebook_size, num_codebooks
        self.logits = nn.Parameter(torch.zeros(num_codebooks, codebook_size))

    def _check(self, indices: Tensor, tables: np.ndarray | None = None) -> np.ndarray:
        """Table number of each column of ``indices`` (..., C): ``tables`` (C,) if given, else column q -> table q."""
        if tables is None:
            if indices.shape[-1] != self.num_codebooks:
                raise ValueError(f"indices must end in a dimension of {self.num_codebooks} codebooks, "
                                 f"got {tuple(indices.shape)}")
            return np.arange(self.num_codebooks)
        tables = np.asarray(tables, dtype=np.int64).reshape(-1)
        if tables.size != indices.shape[-1] or tables.min() < 0 or tables.max() >= self.num_codebooks:
            raise ValueError(f"tables must name one of {self.num_codebooks} tables per column of {tuple(indices.shape)}")
        return tables

    def forward(self, indices: Tensor, tables: np.ndarray | None = None) -> tuple[Tensor, Tensor]:
        """indices (..., C) -> (indices, likelihoods (..., C)); column c uses table ``tables[c]`` (default c)."""
        tables = torch.from_numpy(self._check(indices, tables)).to(self.logits.device)
        log_probs = torch.log_softmax(self.logits, dim=-1)[tables]  # (C, K)
        flat = indices.reshape(-1, indices.shape[-1]).long()
        picked = log_probs.T.gather(0, flat).reshape(indices.shape)
        return indices, picked.exp().clamp_min(LIKELIHOOD_BOUND)

    @torch.no_grad()
    def fit_counts(self, indices: Tensor, prior: float = 0.5) -> None:
        """Set the logits to the smoothed empirical distribution of ``indices`` (..., Q)."""
        self._check(indices)
        flat = indices.reshape(-1, self.num_codebooks).long().cpu()
        self.fit_histogram(torch.stack([torch.bincount(flat[:, q], minlength=self.codebook_size)
                                        for q in range(self.num_codebooks)]), prior)

    @torch.no_grad()
    def fit_histogram(self, counts: Tensor, prior: float = 0.5) -> None:
        """Set the logits from code counts (Q, K) (any non-negative weights), plus ``prior`` per code."""
        if tuple(counts.shape) != (self.num_codebooks, self.codebook_size) or bool((counts < 0).any()):
            raise ValueError(f"counts must be non-negative, shaped ({self.num_codebooks}, {self.codebook_size})")
        smoothed = counts.detach().double().cpu() + prior
        self.logits.copy_(torch.log(smoothed / smoothed.sum(dim=-1, keepdim=True)).to(self.logits))

    @torch.no_grad()
    def update(self) -> None:
        probs = torch.softmax(self.logits.detach().double().cpu(), dim=-1).numpy()
        pmfs = [np.append(p, _ESCAPE_MASS) for p in probs]
        self._set_bank(TableBank.from_pmfs(pmfs, np.zeros(self.num_codebooks, dtype=np.int64)))

    def symbols_and_indexes(self, indices: Tensor, tables: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        self._check(indices, tables)
        symbols = indices.detach().cpu().numpy().astype(np.int64).reshape(-1)
        if symbols.size and (symbols.min() < 0 or symbols.max() >= self.codebook_size):
            raise ValueError(f"code indices must lie in [0, {self.codebook_size})")
        return symbols.astype(np.int32), self.table_indexes(tuple(indices.shape), tables)

    def table_indexes(self, shape: tuple[int, ...], tables: np.ndarray | None = None) -> np.ndarray:
        columns = self._check(torch.empty(shape[-1:]), tables) if tables is not None else None
        if columns is None:
            if shape[-1] != self.num_codebooks:
                raise ValueError(f"shape {shape} must end in {self.num_codebooks} codebooks")
            columns = np.arange(self.num_codebooks)
        return np.broadcast_to(columns, shape).reshape(-1)

    def reconstruct(self, symbols: np.ndarray, shape: tuple[int, ...], tables: np.ndarray | None = None) -> Tensor:
        return torch.from_numpy(symbols.astype(np.int64)).reshape(shape).to(self.logits.device)
