"""Lloyd's k-means, for initialising VQ codebooks from the first batch (as SoundStream does)."""

from __future__ import annotations

import torch
from torch import Tensor


def squared_distances(x: Tensor, centroids: Tensor) -> Tensor:
    """x (n, d), centroids (k, d) -> (n, k)."""
    return (x.pow(2).sum(-1, keepdim=True) - 2 * x @ centroids.T + centroids.pow(2).sum(-1)).clamp_min(0)


@torch.no_grad()
def kmeans(x: Tensor, k: int, iters: int = 10, generator: torch.Generator | None = None) -> Tensor:
    """x (n, d) -> centroids (k, d). Samples with replacement when n < k; empty clusters keep their centre."""
    n = x.shape[0]
    pick = torch.randperm(n, generator=generator)[:k] if n >= k else torch.randint(n, (k,), generator=generator)
    centroids = x[pick.to(x.device)].clone()
    for _ in range(iters):
        assign = squared_distances(x, centroids).argmin(-1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).unsqueeze(-1).to(x.dtype)
        centroids = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
    return centroids
