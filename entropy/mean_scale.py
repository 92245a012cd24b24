"""Laplace tables addressed by an integer (scale code, mean code) pair, for context models that predict a
mean and a scale per symbol from integer arithmetic (the overfitted image codec's context model).

    log-scale code S (integer, units of 1/256 nat)  -> scale bucket t = clamp((S - S0) // DS, 0, T - 1)
    mean code M      (integer, units of 1/256)       -> quarter q = (M + 32) // 64,  k = q // 4,  f = q % 4
    symbol = y - k, coded with table (t, f): Laplace centred on f / 4 with the scale at the middle of bucket t

Everything that picks a table is integer arithmetic on integers, so the choice cannot depend on the machine.
The tables themselves are computed once in float64 (:meth:`MeanScaleLaplace.update`) and shipped as integers
(``scripts/export_tables.py``); decoders never recompute them.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .base import LIKELIHOOD_BOUND, EntropyModel
from .tables import TableBank

FRACTIONS = 4  # mean resolution: quarter steps
SCALE_CODE_MIN = -824  # round(256 * ln 0.04): the narrowest table's bucket starts at scale 0.04
SCALE_CODE_STEP = 28  # 28/256 nat: an 11.6 % scale step, costing well under 1 % in rate against exact scales
NUM_SCALES = 64  # up to about 40
CODE_ONE = 256  # the context model's fixed-point unit


def scale_of_bucket(t: int | Tensor) -> float | Tensor:
    """The scale a bucket's table is built with: the geometric middle of the bucket."""
    code = SCALE_CODE_MIN + (t + 0.5) * SCALE_CODE_STEP
    return math.exp(code / CODE_ONE) if isinstance(code, float) else torch.exp(code / CODE_ONE)


def _laplace_cdf(x: np.ndarray) -> np.ndarray:
    return np.where(x < 0, 0.5 * np.exp(np.minimum(x, 0)), 1 - 0.5 * np.exp(-np.maximum(x, 0)))


def laplace_bin_likelihood(y_hat: Tensor, means: Tensor, scales: Tensor) -> Tensor:
    """P(y_hat - 1/2 < Y < y_hat + 1/2) for Y ~ Laplace(means, scales), floored at LIKELIHOOD_BOUND; differentiable.

    A plain function of tensors (no module state) so that a fitting loop may compile it with its callers.
    """
    d = torch.abs(y_hat - means)  # symmetric in d; both branches stay precise far into the tails
    far = torch.exp(-(d + 0.5) / scales)
    near = torch.exp(-(d - 0.5).abs() / scales)
    prob = torch.where(d < 0.5, 1 - 0.5 * (near + far), 0.5 * (near - far))
    return prob.clamp_min(LIKELIHOOD_BOUND)


class MeanScaleLaplace(EntropyModel):
    """Discretised Laplace(mean, scale) with integer-addressed tables (see the module docstring).

    ``forward`` is the training-time likelihood of already quantized (or noisy) values under continuous
    means and scales; ``symbols_and_indexes`` / ``table_indexes`` / ``reconstruct`` take the integer codes.
    """

    def __init__(self, tail_mass: float = 1e-7) -> None:
        super().__init__()
        self.tail_mass = tail_mass
        self.min_scale = float(scale_of_bucket(0.0))
        self.max_scale = float(scale_of_bucket(NUM_SCALES - 1.0))

    def forward(self, y_hat: Tensor, means: Tensor, scales: Tensor) -> Tensor:
        """Likelihood of each value's unit bin; scales are clamped to the tabulated range."""
        return laplace_bin_likelihood(y_hat, means, scales.clamp(self.min_scale, self.max_scale))

    @torch.no_grad()
    def update(self) -> None:
        pmfs, offsets = [], []
        for t in range(NUM_SCALES):
            scale = scale_of_bucket(float(t))
            half = max(2, math.ceil(scale * -math.log(self.tail_mass)))
            for f in range(FRACTIONS):
                centre = f / FRACTIONS
                values = np.arange(-half, half + 2, dtype=np.float64)  # room for the centre's shift
                pmf = _laplace_cdf((values + 0.5 - centre) / scale) - _laplace_cdf((values - 0.5 - centre) / scale)
                pmfs.append(np.append(pmf, max(1.0 - pmf.sum(), self.tail_mass)))
                offsets.append(-half)
        self._set_bank(TableBank.from_pmfs(pmfs, offsets))

    @staticmethod
    def split_codes(mean_codes: Tensor, scale_codes: Tensor) -> tuple[Tensor, Tensor]:
        """Integer codes -> (integer part of the mean, table index); both exact int64 tensors."""
        mean_codes, scale_codes = mean_codes.to(torch.int64), scale_codes.to(torch.int64)
        quarter = torch.div(mean_codes + CODE_ONE // (2 * FRACTIONS), CODE_ONE // FRACTIONS, rounding_mode="floor")
        whole = torch.div(quarter, FRACTIONS, rounding_mode="floor")
        bucket = torch.div(scale_codes - SCALE_CODE_MIN, SCALE_CODE_STEP, rounding_mode="floor")
        return whole, bucket.clamp(0, NUM_SCALES - 1) * FRACTIONS + (quarter - whole * FRACTIONS)

    def symbols_and_indexes(self, y: Tensor, mean_codes: Tensor, scale_codes: Tensor):
        whole, index = self.split_codes(mean_codes, scale_codes)
        symbols = torch.round(y.detach()).to(torch.int64) - whole
        return symbols.reshape(-1).numpy().astype(np.int32), index.reshape(-1).numpy()

    def table_indexes(self, shape: tuple[int, ...], mean_codes: Tensor, scale_codes: Tensor) -> np.ndarray:
        if tuple(mean_codes.shape) != shape or tuple(scale_codes.shape) != shape:
            raise ValueError(f"codes have shapes {tuple(mean_codes.shape)} / {tuple(scale_codes.shape)}, expected {shape}")
        return self.split_codes(mean_codes, scale_codes)[1].reshape(-1).numpy()

    def reconstruct(self, symbols: np.ndarray, shape: tuple[int, ...], mean_codes: Tensor,
                    scale_codes: Tensor) -> Tensor:
        whole, _ = self.split_codes(mean_codes, scale_codes)
        return (torch.from_numpy(symbols.astype(np.int64)).reshape(shape) + whole).to(torch.float32)
