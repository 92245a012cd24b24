"""Streaming phase reconstruction: magnitude spectrogram frames in, waveform out, run block by block with
committed left context and a look-ahead (in the manner of RTISI-LA, Zhu et al. 2007).

    magnitudes (B, frames, n_fft/2+1), frame j centred on sample j*hop (Hann window, zero outside the signal)
      --per block of `block` frames: a first phase integrated from the magnitudes' gradients, continuing the
        last committed frame (:mod:`.phase_gradient`, after Průša et al. 2017), then `iterations` rounds of
        overlap-add -> re-analyse -> keep the phase, impose the magnitude (Griffin & Lim 1984, with the
        momentum of fast Griffin-Lim, Perraudin et al. 2013), the committed frames that overlap the block held
        fixed--> commit the block's frames
      --overlap-add of committed frames, divided by the summed squared window--> final samples

Every decision depends only on absolute frame numbers, never on how the frames were pushed, so feeding a
spectrogram in pieces gives exactly the output of feeding it whole.  Latency: block + look-ahead frames.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .phase_gradient import integrate_phase


def spectrogram(x: Tensor, n_fft: int, hop: int) -> Tensor:
    """x (B, N) -> complex STFT (B, N // hop + 1, n_fft/2+1), Hann window, frames centred on j*hop, zeros
    outside the signal."""
    window = torch.hann_window(n_fft, periodic=True, device=x.device, dtype=x.dtype)
    spec = torch.stft(x, n_fft, hop, window=window, center=True, pad_mode="constant", return_complex=True)
    return spec.transpose(1, 2)


def magnitude_spectrogram(x: Tensor, n_fft: int, hop: int) -> Tensor:
    """x (B, N) -> |STFT| (B, N // hop + 1, n_fft/2+1), as :func:`spectrogram`."""
    return spectrogram(x, n_fft, hop).abs()


class PhaseReconstructor:
    def __init__(self, n_fft: int, hop: int, iterations: int = 1, block: int = 64, lookahead: int = 8,
                 momentum: float = 0.99) -> None:
        self.n_fft, self.hop, self.iterations, self.momentum = n_fft, hop, iterations, momentum
        self.block, self.lookahead = block, lookahead
        self.context = math.ceil(n_fft / hop) - 1  # earlier frames that overlap a frame
        if lookahead < self.context:
            raise ValueError(f"lookahead must be at least {self.context} frames for n_fft {n_fft}, hop {hop}")
        self.window = torch.hann_window(n_fft, periodic=True)
        self.committed: Tensor | None = None  # last `context` committed complex frames (B, context, bins)
        self.pending: Tensor | None = None  # magnitudes not yet committed (B, n, bins)
        self.done = 0  # frames committed so far
        self.numerator: Tensor | None = None  # overlap-add of committed frames, from sample `emitted` on
        self.envelope: Tensor | None = None
        self.emitted = 0
        self._envelopes: dict[int, Tensor] = {}

    def push(self, magnitudes: Tensor) -> Tensor:
        """More frames (B, n, bins) -> the samples that became final (B, m), possibly none."""
        self.pending = magnitudes if self.pending is None else torch.cat([self.pending, magnitudes], dim=1)
        while self.pending.shape[1] >= self.block + self.lookahead:
            self._commit(self.block)
        return self._emit(final=False)

    def finish(self, samples: int) -> Tensor:
        """Commit every pending frame and return the rest of the output, ``samples`` samples in all."""
        while self.pending is not None and self.pending.shape[1]:
            self._commit(min(self.block, self.pending.shape[1]))
        out = self._emit(final=True)
        return out[:, : max(0, samples - (self.emitted - out.shape[-1]))]

    # -- internals ----------------------------------------------------------------------------------------
    def _commit(self, count: int) -> None:
        mags = self.pending[:, : count + self.lookahead]
        fixed = self.committed if self.committed is not None else mags.new_zeros(mags.shape[0], 0, mags.shape[2],
                                                                                  dtype=torch.complex64)
        frames = previous = estimate = self._initial_phase(mags, fixed)
        for i in range(self.iterations):
            if i:  # fast Griffin-Lim (Perraudin et al. 2013): extrapolate along the last step
                estimate = frames + self.momentum * (frames - previous)
                previous = frames
            y = self._overlap_add(torch.cat([fixed, estimate], dim=1))
            analysed = self._analyse(y[:, fixed.shape[1] * self.hop:])  # the new frames only
            parts = torch.view_as_real(analysed)
            power = parts[..., 0] * parts[..., 0] + parts[..., 1] * parts[..., 1]
            scale = mags * torch.rsqrt(power.clamp_min(1e-24))  # keep the phase, impose the magnitude
            frames = torch.view_as_complex(parts * scale.unsqueeze(-1))
        new = frames[:, :count]
        self._accumulate(new)
        self.committed = torch.cat([fixed, new], dim=1)[:, -self.context:]
        self.pending = self.pending[:, count:]
        self.done += count

    def _initial_phase(self, mags: Tensor, fixed: Tensor) -> Tensor:
        before = fixed[:, -1] if fixed.shape[1] else None
        return torch.polar(mags, integrate_phase(mags, before, self.done, self.n_fft, self.hop))

    def _overlap_add(self, frames: Tensor) -> Tensor:
        """Complex frames (B, M, bins) -> least-squares signal over their span (B, (M-1)*hop + n_fft)."""
        return self._synthesise(frames) / self._envelope(frames.shape[1]).clamp_min(1e-8)

    def _synthesise(self, frames: Tensor) -> Tensor:
        """Windowed inverse transforms of complex frames, overlap-added (the numerator of the least squares)."""
        return self._fold(torch.fft.irfft(frames, n=self.n_fft, dim=-1) * self.window)

    def _fold(self, pieces: Tensor) -> Tensor:
        """Overlap-add (B, M, n_fft) at stride hop -> (B, (M-1)*hop + n_fft), as `taps` shifted slice sums."""
        batch, count, _ = pieces.shape
        taps = math.ceil(self.n_fft / self.hop)
        padded = F.pad(pieces, (0, taps * self.hop - self.n_fft)).view(batch, count, taps, self.hop)
        out = pieces.new_zeros(batch, count + taps - 1, self.hop)
        for s in range(taps):
            out[:, s: s + count] += padded[:, :, s]
        return out.reshape(batch, -1)[:, : (count - 1) * self.hop + self.n_fft]

    def _envelope(self, count: int) -> Tensor:
        if count not in self._envelopes:
            self._envelopes[count] = self._fold(self.window.pow(2).expand(1, count, -1))[0]
        return self._envelopes[count]

    def _analyse(self, y: Tensor) -> Tensor:
        return torch.fft.rfft(y.unfold(-1, self.n_fft, self.hop) * self.window, dim=-1)

    def _accumulate(self, frames: Tensor) -> None:
        """Add committed frames (numbered done .. done+n-1) to the running overlap-add."""
        numerator, envelope = self._synthesise(frames), self._envelope(frames.shape[1])
        start = self.done * self.hop - self.n_fft // 2  # first sample of the first new frame
        if self.numerator is None:
            self.numerator = numerator.new_zeros(numerator.shape[0], 0)
            self.envelope = envelope.new_zeros(0)
        offset = start - self.emitted  # where the new frames begin in the running buffers (may be negative)
        if offset < 0:  # samples before 0 (the first frames' left halves) are never output
            numerator, envelope, offset = numerator[:, -offset:], envelope[-offset:], 0
        end = offset + numerator.shape[-1]
        grow = end - self.numerator.shape[-1]
        if grow > 0:
            self.numerator = F.pad(self.numerator, (0, grow))
            self.envelope = F.pad(self.envelope, (0, grow))
        self.numerator[:, offset:end] += numerator
        self.envelope[offset:end] += envelope

    def _emit(self, final: bool) -> Tensor:
        if self.numerator is None:
            return torch.zeros(self.pending.shape[0] if self.pending is not None else 1, 0)
        # Samples before the next frame's window are final; at the end, everything is.
        ready = self.numerator.shape[-1] if final else max(0, self.done * self.hop - self.n_fft // 2 - self.emitted)
        out = self.numerator[:, :ready] / self.envelope[:ready].clamp_min(1e-8)
        self.numerator, self.envelope = self.numerator[:, ready:], self.envelope[ready:]
        self.emitted += ready
        return out
