"""Conditional Gaussian / Laplace model for hyperprior-driven latents (Balle et al. 2018; means as in
Minnen et al. 2018, "Joint autoregressive and hierarchical priors").

    y, (scales, means) from a hyper-decoder or context model
      -> symbols = round(y - means), y_hat = symbols + means
      -> likelihood = P(|y - mean| within the bin) under N(0, scale) or Laplace(0, scale)

Coding never evaluates a distribution: ``update`` tabulates one integer table per entry of ``scale_table``
(log-spaced, stored in the state), and each symbol is coded with the table whose scale is the first one at
or above its predicted scale.  The scales that pick a table must be computed identically by encoder and
decoder -- that is the job of the model that predicts them (see ``docs/determinism.md``).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import torch
from torch import Tensor

from .base import LIKELIHOOD_BOUND, EntropyModel, quantize, to_int32
from .tables import TableBank

FAMILIES = ("gaussian", "laplace")


def log_scale_table(min_scale: float = 0.11, max_scale: float = 64.0, levels: int = 128) -> Tensor:
    """Log-spaced scales; 128 levels over 0.11..64 cost about 0.02 % in rate against exact scales."""
    return torch.exp(torch.linspace(math.log(min_scale), math.log(max_scale), levels, dtype=torch.float64))


def _cdf(family: str, x: Tensor) -> Tensor:
    if family == "gaussian":
        return 0.5 * torch.erfc(-x / math.sqrt(2.0))
    return torch.where(x < 0, 0.5 * torch.exp(x), 1 - 0.5 * torch.exp(-x))


class GaussianConditional(EntropyModel):
    def __init__(self, scale_table: Tensor | None = None, family: str = "gaussian", tail_mass: float = 1e-9,
                 scale_bound: float = 0.11) -> None:
        super().__init__()
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
        self.family, self.tail_mass, self.scale_bound = family, tail_mass, scale_bound
        table = log_scale_table() if scale_table is None else torch.as_tensor(scale_table, dtype=torch.float64)
        if table.ndim != 1 or len(table) < 1 or not bool((table[1:] > table[:-1]).all()):
            raise ValueError("scale_table must be a strictly increasing 1-D sequence")
        self.register_buffer("scale_table", table.float())

    def _likelihood(self, values: Tensor, scales: Tensor) -> Tensor:
        # Symmetric: evaluate at -|v| where the cdf is small and precise.
        values = torch.abs(values)
        scales = scales.clamp_min(self.scale_bound)
        return _cdf(self.family, (0.5 - values) / scales) - _cdf(self.family, (-0.5 - values) / scales)

    def forward(self, y: Tensor, scales: Tensor, means: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """y, scales, means (same shape) -> (y_hat, likelihoods)."""
        y_hat = quantize(y, self.training, means)
        centred = y_hat if means is None else y_hat - means
        return y_hat, self._likelihood(centred, scales).clamp_min(LIKELIHOOD_BOUND)

    def _tail(self, scale: float) -> int:
        """Half-width of the table for one scale: beyond it lies at most ``tail_mass``."""
        if self.family == "gaussian":
            k = NormalDist().inv_cdf(1 - self.tail_mass / 2)
        else:
            k = -math.log(self.tail_mass)
        return max(1, math.ceil(scale * k))

    @torch.no_grad()
    def update(self) -> None:
        pmfs, offsets = [], []
        for scale in self.scale_table.double().cpu().tolist():
            half = self._tail(scale)
            values = torch.arange(-half, half + 1, dtype=torch.float64)
            pmf = self._likelihood(values, torch.tensor(scale, dtype=torch.float64)).numpy()
            pmfs.append(np.append(pmf, max(1.0 - pmf.sum(), self.tail_mass)))
            offsets.append(-half)
        self._set_bank(TableBank.from_pmfs(pmfs, offsets))

    def scale_indexes(self, scales: Tensor) -> np.ndarray:
        """Index of the first table scale >= each scale (the last table for larger ones)."""
        index = torch.bucketize(scales.detach().float().reshape(-1).cpu(), self.scale_table.float().cpu())
        return index.clamp_max(len(self.scale_table) - 1).numpy().astype(np.int64)

    def symbols_and_indexes(self, y: Tensor, scales: Tensor, means: Tensor | None = None):
        centred = y if means is None else y - means
        return to_int32(centred), self.scale_indexes(scales)

    def table_indexes(self, shape: tuple[int, ...], scales: Tensor, means: Tensor | None = None) -> np.ndarray:
        if tuple(scales.shape) != shape:
            raise ValueError(f"scales have shape {tuple(scales.shape)}, expected {shape}")
        return self.scale_indexes(scales)

    def reconstruct(self, symbols: np.ndarray, shape: tuple[int, ...], scales: Tensor,
                    means: Tensor | None = None) -> Tensor:
        y_hat = torch.from_numpy(symbols.astype(np.float32)).reshape(shape).to(scales.device)
        return y_hat if means is None else y_hat + means
