"""Residual quantization: stage q quantizes what stages 0..q-1 left over (Juang & Gray 1982; in neural
codecs SoundStream, EnCodec, DAC), with quantizer dropout so one model serves many bitrates.

    r_0 = x;  q_i = stage_i(r_i * gain_i) / gain_i;  r_{i+1} = r_i - q_i;  x_hat = sum_i q_i

``gain_i`` rescales the shrinking residual into the range a stage expects: 1 for VQ; for FSQ the inverse
of the residual range, so that after the first (tanh-bounded) stage each clamp-bounded stage sees a
residual of at most half its predecessor's step, scaled to fill its own code range.  With ``dropout``, training uses a random number
of leading stages per step, so decoding with the first k stages is a working lower bitrate.

Choosing each stage's nearest codeword in turn (``forward``) is greedy: the best first codeword can leave a
residual the later stages fit worse than a runner-up's.  ``search`` keeps the ``beam`` best partial sums at
every stage instead (beam search over the stages, as in Babenko & Lempitsky's additive quantization encoders)
and returns the best complete one; it only changes which codes an encoder picks, never how they decode.
"""

from __future__ import annotations

import math
import random
from typing import Sequence

import torch
from einops import rearrange
from torch import Tensor, nn

from .base import QuantizerOutput
from .fsq import FSQ
from .kmeans import squared_distances
from .vq import VectorQuantizer


SEARCH_CHUNK = 1 << 24  # distances held at once by ``search``: (vectors, beam, codebook) floats, ~64 MB


class ResidualQuantizer(nn.Module):
    def __init__(self, stages: Sequence[nn.Module], gains: Sequence[Tensor | float] | None = None,
                 dropout: bool = False, min_stages: int = 1, dim: int | None = None,
                 code_dim: int | None = None) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        gains = gains if gains is not None else [1.0] * len(stages)
        self.register_buffer("gains", torch.stack([torch.as_tensor(g, dtype=torch.float32).expand(code_dim or 1)
                                                   for g in gains]), persistent=False)
        self.dropout, self.min_stages = dropout, min_stages
        same = dim is None or code_dim is None or dim == code_dim
        self.project_in = nn.Identity() if same else nn.Linear(dim, code_dim)
        self.project_out = nn.Identity() if same else nn.Linear(code_dim, dim)

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def _stages_this_step(self, num_stages: int | None) -> int:
        if num_stages is not None:
            if not 1 <= num_stages <= self.num_stages:
                raise ValueError(f"num_stages must be in 1..{self.num_stages}")
            return num_stages
        if self.training and self.dropout:
            return random.randint(self.min_stages, self.num_stages)
        return self.num_stages

    def forward(self, x: Tensor, num_stages: int | None = None) -> QuantizerOutput:
        """x (..., dim) -> quantized (..., dim), indices (..., n) for the n stages used."""
        residual = self.project_in(x)
        total = torch.zeros_like(residual)
        indices, loss, bits = [], x.new_zeros(()), torch.zeros((), dtype=torch.float64, device=x.device)
        for stage, gain in zip(self.stages[: self._stages_this_step(num_stages)], self.gains):
            out = stage(residual * gain)
            q = out.quantized / gain
            total = total + q
            residual = residual - q  # q is straight-through, so gradients reach x only through stage 0
            indices.append(out.indices)
            loss, bits = loss + out.loss, bits + out.bits
        return QuantizerOutput(self.project_out(total), torch.cat(indices, dim=-1), loss, bits)

    @property
    def searchable(self) -> bool:
        """Whether :meth:`search` applies: euclidean VQ stages and no projections (distances in code space are
        then distances in the input's)."""
        return isinstance(self.project_in, nn.Identity) and all(
            isinstance(s, VectorQuantizer) and not s.cosine and isinstance(s.project_in, nn.Identity)
            for s in self.stages)

    @torch.no_grad()
    def search(self, x: Tensor, num_stages: int, beam: int) -> Tensor:
        """x (..., dim) -> indices (..., num_stages) of the least squared error that a beam of ``beam`` partial
        sums finds (``beam=1``: the greedy codes of ``forward``).  Needs :attr:`searchable`."""
        if not self.searchable:
            raise ValueError("beam search needs euclidean VQ stages without projections")
        flat = rearrange(x, "... d -> (...) d").to(self.stages[0].codebook.dtype)
        rows = max(1, SEARCH_CHUNK // (beam * self.stages[0].codebook_size))
        codes = torch.cat([self._beam(chunk, num_stages, beam) for chunk in flat.split(rows)])
        return codes.reshape(x.shape[:-1] + (num_stages,))

    def _beam(self, x: Tensor, num_stages: int, beam: int) -> Tensor:
        """x (n, dim) -> indices (n, num_stages)."""
        residuals = rearrange(x, "n d -> n 1 d")  # (n, paths, dim): what each kept path leaves
        paths = x.new_zeros(x.shape[0], 1, 0, dtype=torch.long)  # (n, paths, stages so far)
        for i, stage in enumerate(self.stages[:num_stages]):
            codebook = stage.codebook
            errors = squared_distances(rearrange(residuals, "n p d -> (n p) d"), codebook)
            errors = rearrange(errors, "(n p) k -> n (p k)", p=residuals.shape[1])
            keep = 1 if i == num_stages - 1 else beam
            best = errors.topk(min(keep, errors.shape[1]), dim=-1, largest=False).indices  # (n, kept), best first
            parent, code = best.div(codebook.shape[0], rounding_mode="floor"), best.remainder(codebook.shape[0])
            residuals = _take(residuals, parent) - codebook[code]
            paths = torch.cat([_take(paths, parent), code.unsqueeze(-1)], dim=-1)
        return paths[:, 0]

    def from_indices(self, indices: Tensor) -> Tensor:
        """indices (..., n) for the first n stages -> quantized (..., dim)."""
        total = 0
        for i, (stage, gain) in enumerate(zip(self.stages[: indices.shape[-1]], self.gains)):
            total = total + stage.from_indices(indices[..., i : i + 1]) / gain
        return self.project_out(total)


def _take(per_path: Tensor, parent: Tensor) -> Tensor:
    """per_path (n, paths, k), parent (n, kept) -> (n, kept, k): each kept path's row."""
    return per_path.gather(1, parent.unsqueeze(-1).expand(-1, -1, per_path.shape[-1]))


def ResidualVQ(dim: int, codebook_size: int, num_quantizers: int, dropout: bool = True,
               **vq_kwargs) -> ResidualQuantizer:
    """Residual VQ with quantizer dropout: ``num_quantizers`` EMA codebooks of ``codebook_size``."""
    stages = [VectorQuantizer(dim, codebook_size, **vq_kwargs) for _ in range(num_quantizers)]
    return ResidualQuantizer(stages, dropout=dropout)


def ResidualFSQ(dim: int, levels: Sequence[int], num_quantizers: int, dropout: bool = True) -> ResidualQuantizer:
    """Residual FSQ: one projection to ``len(levels)`` dims, then FSQ stages on a shrinking residual."""
    # A stage's step is 1 / (levels // 2) in code units, so its residual is within +-1 / (2 * (levels // 2));
    # the gain maps that back onto the largest symmetric range inside [-1, (levels - 1 - levels // 2) / (levels // 2)].
    half = torch.tensor([l // 2 for l in levels], dtype=torch.float32)
    top = (torch.tensor(levels, dtype=torch.float32) - 1 - half) / half
    gain = 2 * half * top.clamp_max(1.0)
    gain = torch.where(gain > 0, gain, torch.ones_like(gain))
    gains = [gain**i for i in range(num_quantizers)]
    stages = [FSQ(levels, bound="tanh" if i == 0 else "clamp") for i in range(num_quantizers)]
    return ResidualQuantizer(stages, gains, dropout=dropout, dim=dim, code_dim=len(levels))


def bits_per_step(codebook_size: int, num_stages: int) -> float:
    """Raw (fixed-length) bits per quantized vector."""
    return num_stages * math.log2(codebook_size)
