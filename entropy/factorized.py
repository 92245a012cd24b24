"""Factorized prior for side latents (Balle et al. 2018, "Variational image compression with a scale
hyperprior", appendix 6.1): one learned, non-parametric density per channel, shared over positions.

    y (B, C, ...) --noise/round--> y_hat --per-channel density c(.)--> likelihood = c(y+1/2) - c(y-1/2)

The density is the derivative of a monotone cumulative built from small per-channel matrices with
softplus-positive weights.  ``quantiles`` learn where each channel's tails are (``aux_loss``); ``update``
tabulates every channel between them into one integer table per channel.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import LIKELIHOOD_BOUND, EntropyModel, channel_indexes, quantize, to_int32
from .tables import TableBank

_MAX_HALF_RANGE = 4096  # refuse tables wider than this: a sign of an untrained or diverged model


class FactorizedPrior(EntropyModel):
    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0,
                 tail_mass: float = 1e-9) -> None:
        super().__init__()
        self.channels, self.tail_mass = channels, tail_mass
        widths = (1,) + tuple(filters) + (1,)
        scale = init_scale ** (1 / (len(widths) - 1))
        self.matrices, self.biases, self.factors = nn.ParameterList(), nn.ParameterList(), nn.ParameterList()
        for i in range(len(widths) - 1):
            init = float(np.log(np.expm1(1 / scale / widths[i + 1])))
            self.matrices.append(nn.Parameter(torch.full((channels, widths[i + 1], widths[i]), init)))
            self.biases.append(nn.Parameter(torch.empty(channels, widths[i + 1], 1).uniform_(-0.5, 0.5)))
            if i < len(widths) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, widths[i + 1], 1)))
        target = float(np.log(2 / tail_mass - 1))
        self.quantiles = nn.Parameter(torch.tensor([-init_scale, 0.0, init_scale]).repeat(channels, 1, 1))
        self.register_buffer("quantile_targets", torch.tensor([-target, 0.0, target]), persistent=False)

    def _logits_cumulative(self, x: Tensor, channel: int | None = None, detach: bool = False,
                           dtype: torch.dtype | None = None) -> Tensor:
        """x: (C, 1, N) -> logit of the cumulative (C, 1, N); one channel's if ``channel`` is given."""
        pick = slice(None) if channel is None else slice(channel, channel + 1)

        def param(p: Tensor) -> Tensor:
            p = p[pick]
            p = p.detach() if detach else p
            return p if dtype is None else p.to(dtype)

        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases)):
            x = torch.matmul(F.softplus(param(matrix)), x) + param(bias)
            if i < len(self.factors):
                x = x + torch.tanh(param(self.factors[i])) * torch.tanh(x)
        return x

    def _likelihood(self, values: Tensor, **kwargs) -> Tensor:
        lower = self._logits_cumulative(values - 0.5, **kwargs)
        upper = self._logits_cumulative(values + 0.5, **kwargs)
        # Evaluate on the side of the median where the sigmoids are not saturated, for precision.
        sign = -torch.sign(lower + upper).detach()
        return torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))

    def forward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """y: (B, C, ...) -> (y_hat, likelihoods), both shaped like y."""
        y_hat = quantize(y, self.training)
        by_channel = y_hat.transpose(0, 1)
        likelihood = self._likelihood(by_channel.reshape(self.channels, 1, -1))
        likelihood = likelihood.reshape(by_channel.shape).transpose(0, 1)
        return y_hat, likelihood.clamp_min(LIKELIHOOD_BOUND)

    def aux_loss(self) -> Tensor:
        """Pulls ``quantiles`` (only) to the tail-mass points and the median of each channel's density."""
        logits = self._logits_cumulative(self.quantiles, detach=True)
        return torch.abs(logits - self.quantile_targets.view(1, 1, 3)).sum()

    @torch.no_grad()
    def update(self) -> None:
        q = self.quantiles.detach().double().cpu()
        lows, highs = torch.floor(q[:, 0, 0]).long(), torch.ceil(q[:, 0, 2]).long()
        if (highs - lows).max() > 2 * _MAX_HALF_RANGE:
            raise RuntimeError("factorized prior tails are implausibly wide; train longer or check aux_loss")
        pmfs = []
        for c in range(self.channels):
            values = torch.arange(int(lows[c]), int(highs[c]) + 1, dtype=torch.float64)
            values = values.view(1, 1, -1).to(self.quantiles.device)
            pmf = self._likelihood(values, channel=c, dtype=torch.float64).reshape(-1).cpu().numpy()
            pmfs.append(np.append(pmf, max(1.0 - pmf.sum(), self.tail_mass)))
        self._set_bank(TableBank.from_pmfs(pmfs, lows.numpy()))

    def symbols_and_indexes(self, y: Tensor) -> tuple[np.ndarray, np.ndarray]:
        return to_int32(y), channel_indexes(tuple(y.shape))

    def table_indexes(self, shape: tuple[int, ...]) -> np.ndarray:
        if len(shape) < 2 or shape[1] != self.channels:
            raise ValueError(f"shape {shape} does not have {self.channels} channels in dim 1")
        return channel_indexes(shape)

    def reconstruct(self, symbols: np.ndarray, shape: tuple[int, ...]) -> Tensor:
        return torch.from_numpy(symbols.astype(np.float32)).reshape(shape).to(self.quantiles.device)
