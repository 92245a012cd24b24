"""The learned audio codec: :class:`~polycodec.models.audio.AudioModel` + categorical tables + the coder +
the container, chunk by chunk so that memory does not grow with duration.

    waveform (C, N) at rate R --downmix (mix) | keep channels (separate)--> StreamingResampler R -> 24 kHz
      --StreamEncoder (state carried across chunks)--> codes, 75 frames/s x stages
      --categorical tables, one per codebook--> one ANS stream per chunk of up to 10 s
      --> .pcdc: header (R, C, N, weights sha256) + PARAMS (stages, channel mode, chunk frames)
                 + DATA per chunk (frame count, ANS stream)

Decoding reverses each step chunk by chunk and restores R and C.  Channel modes: ``mix`` (default) codes the
mean of the channels once and decodes it to every channel; ``separate`` codes each channel (cost x C).  The
header records C and the PARAMS chunk the mode, so a decoder restores the original layout either way.  A
stream cut short fails with a clear error, or with ``partial=True`` decodes the chunks that are intact.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import Tensor

from ..bitstream import (BitstreamError, ChunkType, ContainerReader, ContainerWriter, FormatError, Header, LimitError, MediaInfo,
                         Modality, PayloadReader, PayloadWriter, TruncatedError)
from ..entropy import SymbolDecoder, SymbolEncoder
from ..media.resample import StreamingResampler
from ..models.audio import StreamDecoder, StreamEncoder
from .base import StreamCodec, register_codec, sha256_file

WEIGHTS = Path(__file__).parent / "weights" / "audio"
BITRATES = (1.5, 3.0, 6.0, 12.0)
CHUNK_SECONDS = 10  # frames per DATA chunk = CHUNK_SECONDS * frame rate
MAX_CHANNELS = 64
MAX_RATE = 768_000
MAX_SAMPLES = 1 << 40  # per channel: years of audio, but a bound a corrupt header cannot exceed
MODES = ("mix", "separate")


@dataclass(frozen=True)
class AudioStreamInfo:
    sample_rate: int
    channels: int
    samples: int  # per channel, at sample_rate
    kbps: float  # nominal (raw-code) bitrate the stream was coded at
    mode: str


def load_audio_model(folder: Path):
    from ..training.export import WEIGHTS as WEIGHTS_FILE, load_exported

    return load_exported(folder), sha256_file(str(Path(folder) / WEIGHTS_FILE))


@register_codec("audio", Modality.AUDIO, "streaming neural codec (spectral frames, RVQ, entropy-coded codes), "
                "1.5 / 3 / 6 / 12 kbps at 24 kHz", sweep=tuple({"bitrate": b} for b in BITRATES))
class AudioCodec(StreamCodec):
    name = "audio"
    modality = Modality.AUDIO
    version = 1

    def __init__(self, bitrate: float | None = None, weights: str | Path = WEIGHTS, channel_mode: str = "mix") -> None:
        """``bitrate`` in kbps (raw code rate; the entropy-coded file is smaller): 1.5, 3, 6 or 12 for the shipped
        weights, default 6 (or the highest rate a user-trained model serves).  Decoding reads it from the stream."""
        self.model, self._hash = load_audio_model(Path(weights))
        if bitrate is None:
            served = self.model.config.bitrates
            bitrate = 6.0 if 6.0 in served else max(served)
        self.stages = self.model.stages_for(float(bitrate))  # refuses rates the model does not serve
        if channel_mode not in MODES:
            raise ValueError(f"channel_mode must be one of {', '.join(MODES)}, got {channel_mode!r}")
        self.bitrate, self.channel_mode = float(bitrate), channel_mode
        self.rate = self.model.config.sample_rate
        self.chunk_frames = int(CHUNK_SECONDS * self.model.frame_rate)

    @property
    def weights_hash(self) -> bytes:
        return self._hash

    # -- encoding ---------------------------------------------------------------------------------------
    def encode(self, media: Tensor, sample_rate: int) -> bytes:
        """Waveform (channels, samples) in [-1, 1] at any rate -> bytes of one .pcdc stream."""
        media = torch.as_tensor(media)
        if media.ndim != 2:
            raise ValueError(f"expected a waveform (channels, samples), got shape {tuple(media.shape)}")
        return self.encode_blocks([media], sample_rate, media.shape[0])

    def encode_blocks(self, blocks: Iterable[Tensor], sample_rate: int, channels: int,
                      progress: Callable[[int], None] | None = None) -> bytes:
        """Encode a waveform given as consecutive (channels, n) blocks (e.g. ``media.iter_audio_blocks``):
        memory stays bounded by one chunk whatever the duration.  ``progress(n)`` is called per block."""
        _check_layout(sample_rate, channels, ValueError)
        coded = 1 if self.channel_mode == "mix" else channels
        resampler = StreamingResampler(sample_rate, self.rate)
        encoder = StreamEncoder(self.model, self.stages, window=self.chunk_frames)  # a chunk per window
        chunks, held, samples = [], [], 0
        try:
            for block in blocks:
                block = _check_block(block, channels)
                samples += block.shape[-1]
                held.append(encoder.push(resampler.push(_to_coded(block, self.channel_mode))))
                chunks.extend(self._full_chunks(held))
                if progress is not None:
                    progress(block.shape[-1])
            if samples == 0:
                raise ValueError("the waveform holds no samples")
            tail = resampler.finish()
            held.append(encoder.push(tail) if tail.numel() else torch.zeros(coded, 0, 0, dtype=torch.long))
            held.append(encoder.finish())
        finally:
            encoder.close()
        chunks.extend(self._full_chunks(held, final=True))
        return self._container(sample_rate, channels, samples, chunks)

    def _full_chunks(self, held: list[Tensor], final: bool = False) -> Iterator[bytes]:
        """Turn held codes (B, T, Q) into DATA payloads of ``chunk_frames`` frames (and the remainder if final)."""
        held[:] = [h for h in held if h.numel()]
        if not held:
            return
        codes = torch.cat(held, dim=1)
        start = 0
        while codes.shape[1] - start >= self.chunk_frames or (final and start < codes.shape[1]):
            piece = codes[:, start: start + self.chunk_frames]
            start += piece.shape[1]
            yield self._chunk_payload(piece)
        held[:] = [codes[:, start:]]

    def _chunk_payload(self, codes: Tensor) -> bytes:
        encoder = SymbolEncoder()
        self.model.prior.write(encoder, codes, np.array(self.model.table_ids(self.stages)))
        return PayloadWriter().uint(codes.shape[1]).blob(encoder.finish()).to_bytes()

    def _container(self, sample_rate: int, channels: int, samples: int, chunks: list[bytes]) -> bytes:
        out = io.BytesIO()
        header = Header(self.modality, self.name, self.version, self.weights_hash,
                        MediaInfo(channels=channels, sample_rate=sample_rate, frame_count=samples, bit_depth=16))
        with ContainerWriter(out, header) as writer:
            params = PayloadWriter().uint(self.stages).uint(MODES.index(self.channel_mode)).uint(self.chunk_frames)
            writer.write_chunk(ChunkType.PARAMS, params.to_bytes())
            for payload in chunks:
                writer.write_chunk(ChunkType.DATA, payload)
        return out.getvalue()

    # -- decoding ---------------------------------------------------------------------------------------
    def decode(self, data: bytes, partial: bool = False) -> tuple[Tensor, int]:
        """Bytes of one stream -> (waveform (channels, samples), sample_rate), the original layout restored."""
        info, blocks = self.decode_blocks(data, partial=partial)
        pieces = list(blocks)
        return torch.cat(pieces, dim=-1) if pieces else torch.zeros(info.channels, 0), info.sample_rate

    def stream_info(self, data: bytes | io.BufferedIOBase) -> AudioStreamInfo:
        reader = ContainerReader(io.BytesIO(data) if isinstance(data, bytes) else data)
        return self._read_params(reader, iter(reader))[0]

    def decode_blocks(self, data: bytes, partial: bool = False) -> tuple[AudioStreamInfo, Iterator[Tensor]]:
        """(stream info, iterator of (channels, n) blocks at the original rate).  Memory stays bounded by one
        chunk.  A damaged or cut stream raises ``BitstreamError`` while iterating -- unless ``partial``, which
        ends the audio cleanly after the last intact chunk."""
        reader = ContainerReader(io.BytesIO(data))
        chunks = iter(reader)  # one pass over the chunks: the reader counts them against the end marker
        info, stages, chunk_frames = self._read_params(reader, chunks)
        return info, self._blocks(chunks, info, stages, chunk_frames, partial)

    def _read_params(self, reader: ContainerReader, chunks: Iterator) -> tuple[AudioStreamInfo, int, int]:
        self.check_header(reader.header)
        media = reader.header.media
        _check_layout(media.sample_rate, media.channels, LimitError)
        if not 1 <= media.frame_count <= MAX_SAMPLES:
            raise LimitError(f"stream claims {media.frame_count} samples per channel (1..{MAX_SAMPLES} allowed)")
        chunk = next(chunks, None)
        if chunk is None or chunk.type != ChunkType.PARAMS:
            raise FormatError("audio stream must start with a PARAMS chunk")
        params = PayloadReader(chunk.payload, "audio params")
        stages, mode, chunk_frames = (params.uint(self.model.config.num_quantizers), params.uint(len(MODES) - 1),
                                      params.uint(1 << 20))
        params.done()
        if stages < 1 or chunk_frames < 1:
            raise FormatError("audio params hold a zero stage or chunk count")
        per_stage = self.model.codebooks_per_stage * math.log2(self.model.codebook_size) * self.model.frame_rate
        info = AudioStreamInfo(media.sample_rate, media.channels, media.frame_count, stages * per_stage / 1000,
                               MODES[mode])
        return info, stages, chunk_frames

    def _blocks(self, chunks: Iterator, info: AudioStreamInfo, stages: int, chunk_frames: int,
                partial: bool) -> Iterator[Tensor]:
        coded = 1 if info.mode == "mix" else info.channels
        samples_24k = -(-info.samples * self.rate // info.sample_rate)
        frames_total = self.model.frames_for(samples_24k)
        tables = np.array(self.model.table_ids(stages))
        decoder, resampler = StreamDecoder(self.model), StreamingResampler(self.rate, info.sample_rate)
        frames = emitted = out = 0
        try:
            while True:
                try:
                    chunk = next(chunks, None)
                    if chunk is None:
                        break
                    codes = self._read_chunk(chunk, coded, stages, chunk_frames, tables, frames_total - frames)
                except BitstreamError as exc:
                    if not partial:
                        hint = f"{exc.args[0]}; {frames} of {frames_total} frames are intact (decode with " \
                               f"partial=True / --partial to keep them)"
                        raise type(exc)(hint) from exc
                    break
                frames += codes.shape[1]
                samples = decoder.push(codes)[:, : samples_24k - emitted]
                emitted += samples.shape[-1]
                block = resampler.push(samples)
                if block.numel():
                    out += block.shape[-1]
                    yield _from_coded(block, info.channels)
            if frames != frames_total and not partial:
                raise TruncatedError(f"stream ends after {frames} of {frames_total} frames "
                                     f"(decode with partial=True / --partial to keep the intact part)")
            # A cut stream ends where its last whole frame's audio ends.
            total = samples_24k if frames == frames_total else max(0, frames - 2) * self.model.config.hop
            last = decoder.finish(min(total, samples_24k))
            block = resampler.push(last[:, : max(0, total - emitted)])
            if block.numel():
                out += block.shape[-1]
                yield _from_coded(block, info.channels)
            tail = resampler.finish()
            if tail.numel():
                yield _from_coded(tail[:, : info.samples - out], info.channels)
        finally:
            decoder.close()

    def _read_chunk(self, chunk, coded: int, stages: int, chunk_frames: int, tables: np.ndarray,
                    frames_left: int) -> Tensor:
        if chunk.type != ChunkType.DATA:
            raise FormatError(f"unexpected chunk type {chunk.type} in an audio stream")
        payload = PayloadReader(chunk.payload, "audio chunk")
        count = payload.uint(chunk_frames)
        data = payload.blob(len(chunk.payload))
        payload.done()
        if not 1 <= count <= frames_left:
            raise FormatError(f"audio chunk holds {count} frames; the stream has {frames_left} left")
        decoder = SymbolDecoder(data)
        codes = self.model.prior.read(decoder, (coded, count, len(tables)), tables)
        decoder.finish()
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.model.codebook_size):
            raise FormatError("audio chunk decodes to code indices outside the codebooks")  # escapes in a forged stream
        return codes


def _check_layout(sample_rate: int, channels: int, error: type[Exception]) -> None:
    if not (isinstance(sample_rate, int) and 1 <= sample_rate <= MAX_RATE):
        raise error(f"sample rate must be an integer in 1..{MAX_RATE} Hz, got {sample_rate!r}")
    if not 1 <= channels <= MAX_CHANNELS:
        raise error(f"channel count must be in 1..{MAX_CHANNELS}, got {channels}")


def _check_block(block: Tensor, channels: int) -> Tensor:
    block = torch.as_tensor(block)
    if block.ndim != 2 or block.shape[0] != channels or not block.is_floating_point():
        raise ValueError(f"expected float blocks of shape ({channels}, n), got {block.dtype} {tuple(block.shape)}")
    if not torch.isfinite(block).all():
        raise ValueError("waveform holds NaN or infinite values")
    return block.detach().float().cpu()


def _to_coded(block: Tensor, mode: str) -> Tensor:
    return block.mean(dim=0, keepdim=True) if mode == "mix" else block


def _from_coded(block: Tensor, channels: int) -> Tensor:
    block = block.clamp(-1, 1)
    return block.expand(channels, -1).contiguous() if block.shape[0] == 1 else block
