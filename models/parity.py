"""A context MLP's first layer as small convolutions over a plane's four parity sub-grids (fitting path).

The overfitted codec's context reads, for each latent, a fixed pattern of decoded neighbours (``offsets``)
plus the 3x3 around its parent one level coarser.  Gathering those inputs into a (latents, 21) matrix, as
the exact decoding path does, moves about 20 floats per latent through memory, forward and backward.  While
fitting every latent is known, so the first (linear) layer can instead be computed as convolutions:

    plane (P, H, W) -> parity sub-grids (P, 4, H/2, W/2), index 2 * (row parity) + column parity
    for the sub-grid a pass codes, each offset (dy, dx) reads one sub-grid at a fixed shift:
        source parity = ((r + dy) % 2, (s + dx) % 2),  shift = ((r + dy) // 2, (s + dx) // 2)
    -> one kernel over all four sub-grids (4, kh, kw) spanning the shifts, zero where no offset lands
    parent (i // 2, j // 2) of every position of a sub-grid at (a, b) is (a, b) of the coarser plane
    -> one 3x3 convolution of the coarser plane serves all four sub-grids

The sum is the first layer's pre-activation at every position of the sub-grid, as the gather would give
it up to float summation order (``tests/test_overfit_codec.py`` checks the two agree).  Odd sizes are
padded with zeros to even, which is what the gather reads beyond a plane's edge; the padded positions are
not latents and their scores are dropped by the caller.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

def parity_subgrids(planes: Tensor) -> Tensor:
    """(P, H, W) -> (P, 4, ceil(H/2), ceil(W/2)); sub-grid 2r + s holds positions (2a + r, 2b + s)."""
    height, width = planes.shape[-2:]
    padded = F.pad(planes, (0, width % 2, 0, height % 2))
    return rearrange(padded, "p (h r) (w s) -> p (r s) h w", r=2, s=2)


@lru_cache(maxsize=256)
def valid_positions(height: int, width: int, parity: tuple[int, int]) -> Tensor:
    """(ceil(H/2) * ceil(W/2),) bool: which positions of a parity sub-grid lie inside the H x W plane."""
    r, s = parity
    rows = torch.arange(-(-height // 2)) * 2 + r < height
    cols = torch.arange(-(-width // 2)) * 2 + s < width
    return (rows[:, None] & cols[None, :]).reshape(-1)


def spatial_preactivation(subgrids: Tensor, weight: Tensor, offsets: tuple[tuple[int, int], ...],
                          parity: tuple[int, int]) -> Tensor:
    """Sum over ``offsets`` of weight[:, k] * plane[position + offsets[k]] at every position of one sub-grid.

    subgrids (P, 4, h, w), weight (hidden, len(offsets)) -> (P, hidden, h, w).  Differentiable in both.
    One convolution reads all four sub-grids through a kernel that is zero where no offset lands: in isolation
    (a 'other' piece at 768x512, forward and backward) about 1.5x faster than one single-channel convolution
    per source sub-grid, although it multiplies by those zeros: calls, not arithmetic, cost the time here.
    """
    (top, left, kh, kw), cells = kernel_layout(offsets, parity)
    index = torch.tensor(cells, device=weight.device)
    kernel = weight.new_zeros(weight.shape[0], 4 * kh * kw).index_copy(1, index, weight)
    # Negative padding crops: the output keeps the sub-grid's size, output (a, b) reading (a + sy, b + sx).
    shifted = F.pad(subgrids, (-left, left + kw - 1, -top, top + kh - 1))
    return F.conv2d(shifted, kernel.reshape(-1, 4, kh, kw))


@lru_cache(maxsize=16)
def kernel_layout(offsets: tuple[tuple[int, int], ...], parity: tuple[int, int]
                  ) -> tuple[tuple[int, int, int, int], tuple[int, ...]]:
    """((top shift, left shift, kernel height, kernel width), each offset's flat cell in a (4, height, width)
    kernel over the sub-grids, in the order of ``offsets``): the box spans every offset's shift, whatever its
    source sub-grid.  Fixed per pass, so worked out once."""
    r, s = parity
    # Offset (dy, dx) of a position of parity (r, s) lands on sub-grid 2 * row parity + column parity, shifted.
    taps = [(2 * ((r + dy) % 2) + (s + dx) % 2, (r + dy) // 2, (s + dx) // 2) for dy, dx in offsets]
    top, bottom = min(t[1] for t in taps), max(t[1] for t in taps)
    left, right = min(t[2] for t in taps), max(t[2] for t in taps)
    kh, kw = bottom - top + 1, right - left + 1
    cells = tuple(source * kh * kw + (sy - top) * kw + (sx - left) for source, sy, sx in taps)
    return (top, left, kh, kw), cells


def coarse_preactivation(coarser: Tensor, weight: Tensor) -> Tensor:
    """Coarser planes (P, h, w), weight (hidden, 9) on the 3x3 around each parent -> (P, hidden, h, w)."""
    return F.conv2d(coarser[:, None], weight.reshape(-1, 1, 3, 3), padding=1)


__all__ = ["coarse_preactivation", "kernel_layout", "parity_subgrids", "spatial_preactivation",
           "valid_positions"]
