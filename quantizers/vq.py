"""Vector quantization with an EMA codebook (van den Oord et al. 2017; EMA updates as in VQ-VAE-2 and
SoundStream), k-means initialisation, dead-code restart, and optional cosine / low-dimensional lookup.

    x (..., dim) --project_in--> z (..., codebook_dim) [--l2 normalise if cosine]
      --nearest codeword--> q = codebook[index] --straight-through--> project_out --> (..., dim)
    loss = commitment_weight * ||z - sg(q)||^2 ;  codebook follows EMA of its assigned vectors

Dead codes: a codeword whose EMA usage falls below ``dead_threshold`` is moved onto a random vector of the
current batch, and its EMA statistics are reset to describe exactly that vector, so it does not
immediately decay back.  Under DDP the statistics are all-reduced and restarts broadcast from rank 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .base import QuantizerOutput, distributed_broadcast_, distributed_sum_, empirical_bits
from .kmeans import kmeans, squared_distances


class VectorQuantizer(nn.Module):
    def __init__(self, dim: int, codebook_size: int, codebook_dim: int | None = None, decay: float = 0.99,
                 commitment_weight: float = 1.0, kmeans_init: bool = True, kmeans_iters: int = 10,
                 dead_threshold: float = 1.0, cosine: bool = False, eps: float = 1e-5) -> None:
        super().__init__()
        self.dim, self.codebook_size = dim, codebook_size
        self.codebook_dim = codebook_dim or dim
        self.decay, self.eps, self.cosine = decay, eps, cosine
        self.commitment_weight, self.kmeans_iters, self.dead_threshold = commitment_weight, kmeans_iters, dead_threshold
        same = self.codebook_dim == dim
        self.project_in = nn.Identity() if same else nn.Linear(dim, self.codebook_dim)
        self.project_out = nn.Identity() if same else nn.Linear(self.codebook_dim, dim)
        init = torch.randn(codebook_size, self.codebook_dim)
        self.register_buffer("codebook", F.normalize(init, dim=-1) if cosine else init)
        # Each codeword starts as the mean of one pseudo-vector (as after _initialise): embed_sum / cluster_size
        # must equal the codebook, or the first EMA step divides embed_sum by a near-zero count and flings
        # every used codeword past its data.
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        self.register_buffer("embed_sum", self.codebook.clone())
        self.register_buffer("initialised", torch.tensor(not kmeans_init))

    def _lookup(self, flat: Tensor) -> Tensor:
        if self.cosine:
            return (flat @ self.codebook.T).argmax(-1)
        return squared_distances(flat, self.codebook).argmin(-1)

    @torch.no_grad()
    def _initialise(self, flat: Tensor) -> None:
        centroids = kmeans(flat.float(), self.codebook_size, self.kmeans_iters)
        if self.cosine:
            centroids = F.normalize(centroids, dim=-1)
        self.codebook.copy_(distributed_broadcast_(centroids))
        self.embed_sum.copy_(self.codebook)
        self.cluster_size.fill_(1.0)
        self.initialised.fill_(True)

    @torch.no_grad()
    def _ema_update(self, flat: Tensor, index: Tensor) -> None:
        counts = distributed_sum_(torch.bincount(index, minlength=self.codebook_size).to(flat.dtype))
        sums = distributed_sum_(torch.zeros_like(self.embed_sum).index_add_(0, index, flat))
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.codebook_size * self.eps) * n  # Laplace
        codebook = self.embed_sum / smoothed.unsqueeze(-1)
        self.codebook.copy_(F.normalize(codebook, dim=-1) if self.cosine else codebook)
        self._restart_dead(flat)

    @torch.no_grad()
    def _restart_dead(self, flat: Tensor) -> None:
        dead = self.cluster_size < self.dead_threshold
        num_dead = int(dead.sum())
        if num_dead == 0:
            return
        pick = torch.randint(flat.shape[0], (num_dead,), device=flat.device)
        fresh = distributed_broadcast_(flat[pick].clone())
        self.codebook[dead] = fresh
        self.cluster_size[dead] = self.dead_threshold  # statistics now describe the new vector
        self.embed_sum[dead] = fresh * self.dead_threshold

    def forward(self, x: Tensor) -> QuantizerOutput:
        z = self.project_in(x)
        # Distances and EMA statistics in the codebook's precision, whatever autocast gives us.
        flat = rearrange(z, "... d -> (...) d").to(self.codebook.dtype)
        if self.cosine:
            flat = F.normalize(flat, dim=-1)
        if self.training and not bool(self.initialised):
            self._initialise(flat.detach())
        index = self._lookup(flat.detach())
        q = self.codebook[index]
        if self.training:
            self._ema_update(flat.detach(), index)
        loss = self.commitment_weight * F.mse_loss(flat, q.detach()) if self.training else x.new_zeros(())
        # Straight-through written so the forward value is exactly the codeword (flat - flat.detach() is 0):
        # flat + (q - flat).detach() is off by rounding, and from_indices would not rebuild it bit for bit.
        q = q + (flat - flat.detach())
        quantized = self.project_out(q.reshape(z.shape).to(z.dtype))
        indices = index.reshape(z.shape[:-1] + (1,))
        return QuantizerOutput(quantized, indices, loss, empirical_bits(indices))

    def from_indices(self, indices: Tensor) -> Tensor:
        """indices (..., 1) -> quantized (..., dim)."""
        return self.project_out(self.codebook[indices[..., 0]])

    def usage(self, indices: Tensor) -> float:
        """Fraction of codewords that ``indices`` use."""
        return torch.unique(indices).numel() / self.codebook_size
