"""A streaming spectral-frame audio codec model: causal ConvNeXt stacks at the frame rate around a residual
quantizer, an STFT front end, a magnitude-spectrogram decoder and phase reconstruction run block by block
(codec setting of SoundStream / EnCodec; frame-rate ConvNeXt decoder as in Vocos, Siuzdak 2023; streaming
phase reconstruction as in RTISI-LA, Zhu et al. 2007, started from phase-gradient integration, Průša et al.
2017).

    waveform (B, N) at 24 kHz
      --frame: window 2*hop, stride hop, sqrt-Hann; frame t covers samples [(t-1)*hop, (t+1)*hop)-->
      rfft -> compressed magnitudes |X|^0.3: (B, T, hop+1)
      --encoder: Linear -> ConvNeXt blocks (causal depthwise conv over frames) -> Linear--> (B, T, latent)
      --residual quantizer (RVQ with dropout | residual FSQ | grouped RVQ)--> codes (B, T, Q)
      --decoder: Linear -> ConvNeXt blocks -> Linear--> log |STFT| of hop/synthesis_hop frames per code frame
      --phase reconstruction (models/phase.py)--> waveform (B, N)

The decoder's output for code frame t is the spectrogram (n_fft 1024, hop 160) frames centred on samples
(t-1)*hop and (t-1)*hop + 160: one code frame late, so everything those 1024-sample windows see has been
encoded.  The decoder predicts magnitudes only, trained with log-spectral and mel losses; phase comes from
the magnitudes, which on two CPU cores trains far faster than learning phase (no adversarial training).

Why frames: every network layer runs at 75 Hz instead of 24 kHz, so encode and decode cost a few million
multiply-adds per frame and run far faster than real time on two CPU cores.

Streaming: every layer is causal over frames (frame t sees frames <= t), and the framing keeps one hop of
samples as state.  Inside ``with model.streaming():`` the same modules keep that state across calls, so
:class:`StreamEncoder` / :class:`StreamDecoder` process a file chunk by chunk and give the same output as the
one-shot :meth:`AudioModel.encode` / :meth:`AudioModel.decode` (up to float rounding).  Decoder latency: one
code frame plus the phase reconstruction's block and look-ahead (72 spectrogram frames, 0.48 s).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..entropy import CategoricalPrior
from ..quantizers import GroupedResidualQuantizer, ResidualFSQ, ResidualVQ
from .phase import PhaseReconstructor, magnitude_spectrogram

COMPRESS = 0.3  # spectral magnitude exponent of the frame representation


@dataclass(frozen=True)
class AudioModelConfig:
    sample_rate: int = 24000
    hop: int = 320  # samples per frame: 75 frames per second at 24 kHz
    channels: int = 256  # width of the encoder and decoder
    encoder_blocks: int = 4
    decoder_blocks: int = 6
    kernel: int = 7  # causal depthwise convolution over frames
    expansion: int = 3  # pointwise MLP width, as a multiple of channels
    latent: int = 128
    quantizer: str = "rvq"  # rvq | rfsq | grvq
    codebook_size: int = 1024  # rvq / grvq; rfsq uses prod(fsq_levels)
    codebook_dim: int | None = None  # rvq / grvq: codeword size; None = the latent's (no projection)
    # rvq / grvq: "euclidean" (nearest codeword) or "cosine" (nearest direction, unit codewords).  Cosine
    # codewords carry no magnitude, so the residual never shrinks and stages after the first few add almost
    # nothing (benchmarks/audio_ceiling.py measured 1.5 and 12 kbps alike); it stays for exports made with it.
    codebook_lookup: str = "euclidean"
    # What the encoder sees of each frame: "magnitude" (|X|^0.3) or "complex" (|X|^0.3 e^{i angle X}, real and
    # imaginary parts).  Complex input starves the encoder: a phase that turns from frame to frame scrambles
    # any linear mix of bins, so it kept only coarse band energies (a linear fit from three frames' magnitudes
    # predicts the target spectrum better than the trained complex-input network did).  Kept for old exports.
    frame_features: str = "magnitude"
    num_quantizers: int = 16  # stages (per group for grvq)
    groups: int = 2  # grvq only
    fsq_levels: tuple[int, ...] = (8, 5, 5, 5)  # rfsq only: 1000 codes per stage
    bitrates: tuple[float, ...] = (1.5, 3.0, 6.0, 12.0)  # kbps the model is trained for (before entropy coding)
    n_fft: int = 1024  # synthesis spectrogram
    synthesis_hop: int = 160  # must divide hop
    # Griffin-Lim rounds per block when decoding, after the gradient-integrated first phase.  Zero keeps the
    # most PESQ-WB / STOI on the held-out voice but loses on mel distance and music; more than one cost speed
    # and PESQ-WB (benchmarks/audio_phase.py).
    phase_iterations: int = 1
    # Encoder search (rvq / grvq, euclidean): a beam of beam_budget // stages partial sums (at least 1, greedy)
    # picks the codes, so the search costs about the same at every bitrate.  It changes only which codes the
    # encoder picks; the decoder and old streams are unaffected (benchmarks/audio_search.py).
    beam_budget: int = 0


class StreamingModule(nn.Module):
    """A module that can keep state between calls while ``streaming`` is on (see :meth:`AudioModel.streaming`)."""

    def __init__(self) -> None:
        super().__init__()
        self.streaming = False
        self.state: Tensor | None = None

    def reset(self) -> None:
        self.state = None


class CausalDepthwiseConv(StreamingModule):
    """(B, C, T) -> (B, C, T); output t sees inputs t-kernel+1 .. t.  State: the last kernel-1 inputs."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        self.context = kernel - 1
        self.conv = nn.Conv1d(channels, channels, kernel, groups=channels)

    def forward(self, x: Tensor) -> Tensor:
        if not self.streaming:
            return self.conv(F.pad(x, (self.context, 0)))
        past = self.state if self.state is not None else x.new_zeros(x.shape[0], x.shape[1], self.context)
        x = torch.cat([past, x], dim=-1)
        self.state = x[..., x.shape[-1] - self.context:].detach()
        return self.conv(x)


class ConvNeXtBlock(nn.Module):
    """Causal ConvNeXt block (Liu et al. 2022, 1-D as in Vocos): depthwise conv, LayerNorm, pointwise MLP, scaled
    residual.  x (B, T, C) -> (B, T, C)."""

    def __init__(self, channels: int, kernel: int, expansion: int) -> None:
        super().__init__()
        self.mix = CausalDepthwiseConv(channels, kernel)
        self.norm = nn.LayerNorm(channels)
        self.up = nn.Linear(channels, expansion * channels)
        self.down = nn.Linear(expansion * channels, channels)
        self.scale = nn.Parameter(torch.full((channels,), 0.1))

    def forward(self, x: Tensor) -> Tensor:
        y = rearrange(self.mix(rearrange(x, "b t c -> b c t")), "b c t -> b t c")
        return x + self.scale * self.down(F.gelu(self.up(self.norm(y))))


class FrameStack(nn.Module):
    """Linear -> ConvNeXt blocks -> LayerNorm -> Linear, all per frame except the causal convolutions."""

    def __init__(self, dim_in: int, channels: int, dim_out: int, blocks: int, kernel: int, expansion: int) -> None:
        super().__init__()
        self.proj_in = nn.Linear(dim_in, channels)
        self.blocks = nn.Sequential(*(ConvNeXtBlock(channels, kernel, expansion) for _ in range(blocks)))
        self.norm = nn.LayerNorm(channels)
        self.proj_out = nn.Linear(channels, dim_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj_out(self.norm(self.blocks(self.proj_in(x))))


class Framer(StreamingModule):
    """Waveform (B, n*hop) -> compressed magnitude spectra (B, n, hop+1), or compressed complex spectra
    (B, n, 2*(hop+1)) with ``features="complex"``.  State: the last hop samples."""

    def __init__(self, hop: int, features: str = "magnitude") -> None:
        super().__init__()
        if features not in ("magnitude", "complex"):
            raise ValueError(f"frame_features must be magnitude or complex, got {features!r}")
        self.hop, self.features = hop, features
        self.size = (hop + 1) * (1 if features == "magnitude" else 2)  # features per frame
        self.register_buffer("window", torch.hann_window(2 * hop, periodic=True).sqrt(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] % self.hop:
            raise ValueError(f"framing needs a multiple of {self.hop} samples, got {x.shape[-1]}")
        past = self.state if self.streaming and self.state is not None else x.new_zeros(x.shape[0], self.hop)
        x = torch.cat([past, x], dim=-1)
        if self.streaming:
            self.state = x[:, -self.hop:].detach()
        frames = x.unfold(-1, 2 * self.hop, self.hop) * self.window  # (B, n, 2*hop)
        spectrum = torch.fft.rfft(frames, dim=-1)
        magnitude = spectrum.abs().clamp_min(1e-8)
        if self.features == "magnitude":
            return magnitude.pow(COMPRESS)
        compressed = spectrum * magnitude.pow(COMPRESS - 1)
        return torch.cat([compressed.real, compressed.imag], dim=-1)


class AudioModel(nn.Module):
    """See the module docstring.  ``forward`` trains; ``encode`` / ``decode`` (and the streaming classes) code."""

    def __init__(self, config: AudioModelConfig = AudioModelConfig()) -> None:
        super().__init__()
        self.config = c = config
        if c.hop % c.synthesis_hop:
            raise ValueError(f"synthesis_hop {c.synthesis_hop} must divide hop {c.hop}")
        self.framer = Framer(c.hop, c.frame_features)
        self.encoder = FrameStack(self.framer.size, c.channels, c.latent, c.encoder_blocks, c.kernel, c.expansion)
        self.quantizer = self._build_quantizer(c)
        self.decoder = FrameStack(c.latent, c.channels, self.spectra_per_frame * self.bins, c.decoder_blocks,
                                  c.kernel, c.expansion)
        # One categorical table per codebook (stage x group), fitted to code counts gathered while training.
        tables = c.num_quantizers * self.codebooks_per_stage
        self.prior = CategoricalPrior(self.codebook_size, tables)
        self.register_buffer("code_counts", torch.zeros(tables, self.codebook_size))
        for kbps in c.bitrates:
            self.stages_for(kbps)  # every served bitrate must map onto whole stages
        if c.beam_budget and not self.quantizer.searchable:
            raise ValueError("beam_budget needs an rvq or grvq quantizer with euclidean lookup and no codebook_dim")

    @staticmethod
    def _build_quantizer(c: AudioModelConfig) -> nn.Module:
        if c.codebook_lookup not in ("euclidean", "cosine"):
            raise ValueError(f"codebook_lookup must be euclidean or cosine, got {c.codebook_lookup!r}")
        vq = dict(codebook_dim=c.codebook_dim, cosine=c.codebook_lookup == "cosine", kmeans_init=True)
        if c.quantizer == "rvq":
            return ResidualVQ(c.latent, c.codebook_size, c.num_quantizers, dropout=False, **vq)
        if c.quantizer == "rfsq":
            return ResidualFSQ(c.latent, list(c.fsq_levels), c.num_quantizers, dropout=False)
        if c.quantizer == "grvq":
            return GroupedResidualQuantizer(
                c.latent, c.groups, lambda d: ResidualVQ(d, c.codebook_size, c.num_quantizers, dropout=False, **vq))
        raise ValueError(f"quantizer must be rvq, rfsq or grvq, got {c.quantizer!r}")

    # -- rates ---------------------------------------------------------------------------------------------
    @property
    def frame_rate(self) -> float:
        return self.config.sample_rate / self.config.hop

    @property
    def bins(self) -> int:
        return self.config.n_fft // 2 + 1

    @property
    def spectra_per_frame(self) -> int:
        return self.config.hop // self.config.synthesis_hop

    MAX_LOG_MAGNITUDE = math.log(1e3)  # a wild output must not overflow the waveform

    def log_magnitudes(self, quantized: Tensor) -> Tensor:
        """Quantized latents (B, T, latent) -> log |STFT| (B, T * spectra_per_frame, bins), in decoder order
        (the first spectra_per_frame frames predict frames before the signal's start)."""
        out = self.decoder(quantized)
        return rearrange(out, "b t (s f) -> b (t s) f", s=self.spectra_per_frame)

    def target_magnitudes(self, x: Tensor) -> Tensor:
        """The spectrogram the decoder learns to predict: (B, N // synthesis_hop + 1, bins) for x (B, N)."""
        return magnitude_spectrogram(x, self.config.n_fft, self.config.synthesis_hop)

    def phase_reconstructor(self, iterations: int | None = None) -> PhaseReconstructor:
        """The decoder's phase reconstruction (``iterations``: its Griffin-Lim rounds, the config's by default)."""
        c = self.config
        return PhaseReconstructor(c.n_fft, c.synthesis_hop, c.phase_iterations if iterations is None else iterations)

    @property
    def codebook_size(self) -> int:
        return math.prod(self.config.fsq_levels) if self.config.quantizer == "rfsq" else self.config.codebook_size

    @property
    def codebooks_per_stage(self) -> int:
        return self.config.groups if self.config.quantizer == "grvq" else 1

    def stages_for(self, kbps: float) -> int:
        """Residual stages that make ``kbps`` at raw (fixed-length) code cost: 1.5 kbps = 2 stages of 1024 codes."""
        per_stage = self.codebooks_per_stage * math.log2(self.codebook_size) * self.frame_rate / 1000
        stages = round(kbps / per_stage)
        if not 1 <= stages <= self.config.num_quantizers or abs(stages * per_stage - kbps) > 0.02 * kbps:
            served = ", ".join(f"{s * per_stage:g}" for s in range(1, self.config.num_quantizers + 1))
            raise ValueError(f"{kbps} kbps is not a whole number of stages; this model serves {served} kbps")
        return stages

    def config_dict(self) -> dict:
        out = asdict(self.config)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    # -- training --------------------------------------------------------------------------------------------
    def forward(self, x: Tensor, num_stages: int | None = None) -> dict[str, Tensor]:
        """x (B, N) with N a multiple of hop -> predicted log-magnitudes aligned with
        :meth:`target_magnitudes` (x), commitment loss, codes.

        Quantizer dropout: training runs pick ``num_stages`` among the served bitrates' stage counts (under DDP
        every rank must pick the same, see :mod:`polycodec.training.audio`); the default is all stages."""
        num_stages = num_stages or self.config.num_quantizers
        latent = self.encoder(self.framer(F.pad(x, (0, 2 * self.config.hop))))  # + the two closing frames
        out = self.quantizer(latent, num_stages)
        frames = x.shape[-1] // self.config.synthesis_hop + 1
        log_magnitude = self.log_magnitudes(out.quantized)[:, self.spectra_per_frame: self.spectra_per_frame + frames]
        if self.training:
            self._count(out.indices, num_stages)
        return {"log_magnitude": log_magnitude, "loss": out.loss, "codes": out.indices}

    COUNT_DECAY = 0.995  # code statistics follow the codebooks as they move: about the last 200 steps count

    def table_ids(self, num_stages: int) -> list[int]:
        """Table of each code column for ``num_stages`` stages; grvq columns are group-major."""
        n, groups = self.config.num_quantizers, self.codebooks_per_stage
        return [g * n + i for g in range(groups) for i in range(num_stages)]

    @torch.no_grad()
    def _count(self, codes: Tensor, num_stages: int) -> None:
        flat = codes.reshape(-1, codes.shape[-1])
        counts = torch.stack([torch.bincount(col, minlength=self.codebook_size) for col in flat.T]).float()
        ids = torch.tensor(self.table_ids(num_stages), device=codes.device)
        self.code_counts[ids] = self.code_counts[ids] * self.COUNT_DECAY + counts

    @torch.no_grad()
    def refit_counts(self, waveforms: Iterator[Tensor]) -> int:
        """Replace the training-time code counts by exact counts of this model's codes on ``waveforms``
        ((channels, samples) at the model's rate; all stages).  Training gathers counts while the codebooks still
        move; a pass of the final model gives tables that match the codes it will really emit.  Returns frames."""
        self.code_counts.zero_()
        frames, stages = 0, self.config.num_quantizers
        for waveform in waveforms:
            codes = self.encode(waveform, stages)
            flat = codes.reshape(-1, codes.shape[-1])
            ids = torch.tensor(self.table_ids(stages))
            self.code_counts[ids] += torch.stack([torch.bincount(c, minlength=self.codebook_size) for c in flat.T]).float()
            frames += flat.shape[0]
        return frames

    def update(self) -> None:
        """Build the integer code tables from the gathered counts (call before coding; export does)."""
        self.prior.fit_histogram(self.code_counts)
        self.prior.update()

    @property
    def served_stages(self) -> list[int]:
        return [self.stages_for(k) for k in self.config.bitrates]

    # -- coding (one shot) ---------------------------------------------------------------------------------
    def frames_for(self, samples: int) -> int:
        """Frames that code ``samples``: one per hop started, plus two whose spectrogram frames close the end."""
        return -(-samples // self.config.hop) + 2

    @torch.no_grad()
    def encode(self, x: Tensor, num_stages: int) -> Tensor:
        """x (B, N) -> codes (B, frames_for(N), num_stages * codebooks_per_stage), int64."""
        return self.codes(self.latents(x), num_stages)

    @torch.no_grad()
    def latents(self, x: Tensor) -> Tensor:
        """x (B, N) -> the encoder's latents (B, frames_for(N), latent), before quantization."""
        hop = self.config.hop
        return self.encoder(self.framer(F.pad(x, (0, self.frames_for(x.shape[-1]) * hop - x.shape[-1]))))

    def beam_width(self, num_stages: int) -> int:
        """Paths the encoder's search keeps at ``num_stages`` stages (1: greedy)."""
        return max(1, self.config.beam_budget // num_stages)

    @torch.no_grad()
    def codes(self, latent: Tensor, num_stages: int) -> Tensor:
        """Latents (B, T, latent) -> codes (B, T, num_stages * codebooks_per_stage) by the configured search."""
        beam = self.beam_width(num_stages)
        if beam == 1:
            return self.quantizer(latent, num_stages).indices
        return self.quantizer.search(latent, num_stages, beam)

    @torch.no_grad()
    def decode(self, codes: Tensor, samples: int) -> Tensor:
        """codes (B, T, Q) -> waveform (B, samples)."""
        return self.reconstruct(self.predicted_magnitudes(codes), samples)

    @torch.no_grad()
    def predicted_magnitudes(self, codes: Tensor) -> Tensor:
        """codes (B, T, Q) -> the magnitudes the decoder predicts, aligned with :meth:`target_magnitudes`
        (B, >= frames, bins)."""
        return self.decoder_magnitudes(codes)[:, self.spectra_per_frame:]

    def decoder_magnitudes(self, codes: Tensor) -> Tensor:
        """codes (B, T, Q) -> |STFT| (B, T * spectra_per_frame, bins) in decoder order, as :meth:`log_magnitudes`."""
        return self.log_magnitudes(self.quantizer.from_indices(codes)).clamp_max(self.MAX_LOG_MAGNITUDE).exp()

    def reconstruct(self, magnitudes: Tensor, samples: int, iterations: int | None = None) -> Tensor:
        """Magnitudes (B, frames, bins) -> waveform (B, samples) by the decoder's phase reconstruction."""
        reconstructor = self.phase_reconstructor(iterations)
        head = reconstructor.push(magnitudes)
        return torch.cat([head, reconstructor.finish(samples)], dim=-1)[:, :samples]

    @contextmanager
    def streaming(self) -> Iterator[None]:
        """Keep state across calls (one stream at a time per model); cleared on exit."""
        modules = [m for m in self.modules() if isinstance(m, StreamingModule)]
        for m in modules:
            m.streaming = True
            m.reset()
        try:
            yield
        finally:
            for m in modules:
                m.streaming = False
                m.reset()


class _Stream:
    """Holds a model in streaming mode from creation until :meth:`close` (one stream per model at a time)."""

    def __init__(self, model: AudioModel) -> None:
        self.model = model
        self._context = model.streaming()
        self._context.__enter__()
        self._open = True

    def close(self) -> None:
        """End the stream (also after an error, without finishing it); idempotent."""
        if self._open:
            self._open = False
            self._context.__exit__(None, None, None)


class StreamEncoder(_Stream):
    """Chunk-by-chunk :meth:`AudioModel.encode`: ``push`` blocks of samples (B, n), get codes of the frames they
    complete; ``finish`` codes the rest.

    The input is coded in windows of ``window`` frames however it was cut into blocks, so the codes do not depend
    on the cut: the nearest-codeword search runs on float latents, and a convolution over a differently sized
    piece rounds differently, which can flip a near tie.  With the same windows, the same samples give the same
    codes.  Concatenated, the codes equal the one-shot encode's up to such ties (the one-shot encode is one
    window)."""

    def __init__(self, model: AudioModel, num_stages: int, window: int) -> None:
        super().__init__(model)
        self.num_stages = num_stages
        self.hop = model.config.hop
        self.window = window * self.hop  # samples
        self.pending = torch.zeros(1, 0)
        self.samples = 0

    def push(self, x: Tensor) -> Tensor:
        self.samples += x.shape[-1]
        self.pending = x if self.pending.numel() == 0 else torch.cat([self.pending, x], dim=-1)
        codes = [self._code(self.pending[:, :0])]  # no codes, of the right shape, if no window is complete
        while self.pending.shape[-1] >= self.window:
            codes.append(self._code(self.pending[:, :self.window]))
            self.pending = self.pending[:, self.window:]
        return torch.cat(codes, dim=1)

    def finish(self) -> Tensor:
        """Codes of the remaining samples, zero-padded, plus the closing frames; ends the stream."""
        try:
            coded = (self.samples - self.pending.shape[-1]) // self.hop  # whole windows so far
            frames = self.model.frames_for(self.samples) - coded
            return self._code(F.pad(self.pending, (0, frames * self.hop - self.pending.shape[-1])))
        finally:
            self.close()

    @torch.no_grad()
    def _code(self, x: Tensor) -> Tensor:
        if x.shape[-1] == 0:
            return torch.zeros(x.shape[0], 0, self.num_stages * self.model.codebooks_per_stage, dtype=torch.long)
        m = self.model
        return m.codes(m.encoder(m.framer(x)), self.num_stages)


class StreamDecoder(_Stream):
    """Chunk-by-chunk :meth:`AudioModel.decode`: ``push`` codes (B, T, Q), get the samples that became final;
    ``finish(samples)`` returns the rest, up to ``samples`` in all."""

    def __init__(self, model: AudioModel) -> None:
        super().__init__(model)
        self.to_drop = model.spectra_per_frame  # decoder order starts before the signal
        self.reconstructor = model.phase_reconstructor()
        self.emitted = 0

    @torch.no_grad()
    def push(self, codes: Tensor) -> Tensor:
        magnitudes = self.model.decoder_magnitudes(codes)
        drop = min(self.to_drop, magnitudes.shape[1])
        self.to_drop -= drop
        out = self.reconstructor.push(magnitudes[:, drop:])
        self.emitted += out.shape[-1]
        return out

    def finish(self, samples: int) -> Tensor:
        """The remaining samples (ends the stream)."""
        try:
            return self.reconstructor.finish(samples)
        finally:
            self.close()
