"""Block-by-block resampling that equals resampling the whole signal at once.

    blocks (channels, n_i) at rate a --StreamingResampler(a, b)--> blocks at rate b, concatenating to
    torchaudio.functional.resample(whole, a, b)  (up to float rounding)

torchaudio's resampler is a windowed-sinc polyphase filter: with the rates reduced by their gcd to a' -> b',
every group of a' input samples yields b' output samples, and each output depends only on inputs within the
filter's width.  So cutting the input at multiples of a' and giving each piece ``context`` real samples on
both sides (zeros before the start and after the end, as the one-shot call pads) reproduces the one-shot
output piece by piece, with a look-ahead of ``context`` input samples and memory independent of length.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

_FILTER_WIDTH, _ROLLOFF = 6, 0.99  # torchaudio.functional.resample's defaults, which this must match
_BLOCK = 1 << 15  # input samples resampled per call (rounded to a multiple of a')


class StreamingResampler:
    def __init__(self, orig_rate: int, new_rate: int) -> None:
        if orig_rate <= 0 or new_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {orig_rate} -> {new_rate}")
        self.orig_rate, self.new_rate = int(orig_rate), int(new_rate)
        g = math.gcd(self.orig_rate, self.new_rate)
        self.a, self.b = self.orig_rate // g, self.new_rate // g
        width = math.ceil(_FILTER_WIDTH * self.a / (min(self.a, self.b) * _ROLLOFF))
        self.context = self.a * math.ceil((width + self.a + 1) / self.a)
        self.block = self.a * max(1, _BLOCK // self.a)
        self.left: Tensor | None = None  # the `context` input samples before `pending`
        self.pending: Tensor | None = None  # input not yet turned into output
        self.samples_in = self.samples_out = 0

    @property
    def identity(self) -> bool:
        return self.a == self.b

    def push(self, x: Tensor) -> Tensor:
        """x (channels, n) -> the output samples it completes (possibly none)."""
        self.samples_in += x.shape[-1]
        if self.identity:
            self.samples_out += x.shape[-1]
            return x
        self.pending = x if self.pending is None else torch.cat([self.pending, x], dim=-1)
        if self.left is None:
            self.left = x.new_zeros(x.shape[0], self.context)
        pieces = []
        while self.pending.shape[-1] >= self.block + self.context:
            pieces.append(self._run(self.pending[:, : self.block + self.context], self.block))
            self.samples_out += pieces[-1].shape[-1]
            self.left = self.pending[:, self.block - self.context: self.block]
            self.pending = self.pending[:, self.block:]
        return self._join(pieces, x)

    def finish(self) -> Tensor:
        """The remaining output, up to the one-shot length ceil(samples_in * b / a)."""
        if self.identity or self.pending is None:
            return torch.zeros(0, 0)
        total = -(-self.samples_in * self.b // self.a)
        rest = self.pending.shape[-1]
        padded = F.pad(self.pending, (0, self.a * math.ceil(rest / self.a) - rest + self.context))
        out = self._run(padded, padded.shape[-1] - self.context)[:, : total - self.samples_out]
        self.samples_out += out.shape[-1]
        self.pending = None
        return out

    def _run(self, ahead: Tensor, keep: int) -> Tensor:
        """Resample left + ahead; return the outputs of the first ``keep`` samples of ``ahead``."""
        import torchaudio.functional as AF  # imported late: it takes seconds, and 24 kHz input never needs it

        window = torch.cat([self.left, ahead], dim=-1)
        out = AF.resample(window, self.orig_rate, self.new_rate, lowpass_filter_width=_FILTER_WIDTH,
                          rolloff=_ROLLOFF)
        start = self.context // self.a * self.b
        return out[:, start: start + keep // self.a * self.b]

    @staticmethod
    def _join(pieces: list[Tensor], like: Tensor) -> Tensor:
        return torch.cat(pieces, dim=-1) if pieces else like.new_zeros(like.shape[0], 0)
