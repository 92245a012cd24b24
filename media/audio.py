"""Audio files <-> float tensors (channels, samples), through soundfile (libsndfile) with PyAV as fallback.

soundfile reads WAV, FLAC, OGG/Vorbis, OGG/Opus, MP3, AIFF, ... exactly and can read in blocks; formats it
does not know (M4A/AAC, WebM, MP3 files libsndfile refuses) are decoded with PyAV (FFmpeg), which applies
the container's gapless information: the encoder delay that Ogg (pre-skip), MP3 (LAME tag) and MP4 (edit
list) declare is removed, and MP4 output is trimmed to its declared duration because FFmpeg skips the
edit list's start but not its end.

Samples come back as float32 in [-1, 1] (integer formats are scaled by their full range), at the file's
own rate -- for Opus files that is always 48 kHz, the only rate Opus decodes at (the ``opus`` codec alone
resamples back to the rate its OpusHead records).  Empty, sample-less and unreadable files raise
``ValueError`` naming the file.
"""

from __future__ import annotations

import io
import itertools
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator

import av
import numpy as np
import soundfile as sf
import torch
from torch import Tensor

from ..bitstream.files import atomic_output, write_atomic

# Extension -> (soundfile format, subtype or None for libsndfile's default).  ``write_audio`` writes these;
# ``modality_of`` also calls AUDIO_READ_ONLY audio, which only PyAV reads.
AUDIO_FORMATS: dict[str, tuple[str, str | None]] = {
    ".wav": ("WAV", None), ".flac": ("FLAC", None), ".ogg": ("OGG", "VORBIS"), ".opus": ("OGG", "OPUS"),
    ".mp3": ("MP3", "MPEG_LAYER_III"), ".aiff": ("AIFF", None), ".aif": ("AIFF", None),
}
AUDIO_READ_ONLY = (".m4a", ".aac")

_MP4_FAMILY = "mov,mp4,m4a,3gp,3g2,mj2"  # FFmpeg's name for the demuxer that reads MP4 / M4A
_LAYOUTS = {1: "mono", 2: "stereo"}


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    samples: int | None  # None when only decoding the whole file would tell


def read_audio(path: str | os.PathLike) -> tuple[Tensor, int]:
    """Read an audio file: float32 ``(channels, samples)`` in [-1, 1] and its sample rate."""
    path = _existing(path)
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
        waveform = np.ascontiguousarray(data.T)
    except (sf.SoundFileError, RuntimeError, TypeError):  # libsndfile does not know this file: try FFmpeg
        waveform, rate = av_decode_audio(str(path))
    if waveform.shape[1] == 0:
        raise ValueError(f"{path} holds no audio samples")
    return torch.from_numpy(waveform), int(rate)


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Sample rate, channel count and (when the header says) length, without decoding the samples."""
    path = _existing(path)
    try:
        info = sf.info(str(path))
        return AudioInfo(int(info.samplerate), int(info.channels), int(info.frames))
    except (sf.SoundFileError, RuntimeError, TypeError):
        with _av_errors(path), _open(str(path)) as container:
            stream = _audio_stream(container, str(path))
            return AudioInfo(int(stream.rate), int(stream.codec_context.channels), None)


def iter_audio_blocks(path: str | os.PathLike, block_samples: int) -> Iterator[Tensor]:
    """Yield float32 ``(channels, n)`` blocks of ``block_samples`` (the last one shorter) without loading
    the whole file; concatenated along samples they equal :func:`read_audio`'s waveform."""
    if block_samples < 1:
        raise ValueError("block_samples must be at least 1")
    path = _existing(path)
    try:
        handle = sf.SoundFile(str(path))
    except (sf.SoundFileError, RuntimeError, TypeError):
        handle = None
    if handle is not None:
        with handle:
            for block in handle.blocks(block_samples, dtype="float32", always_2d=True):
                yield torch.from_numpy(np.ascontiguousarray(block.T))
        return
    yield from _av_blocks(path, block_samples)


def _av_blocks(path: Path, block_samples: int) -> Iterator[Tensor]:
    pending: list[np.ndarray] = []
    held = 0
    for chunk in _av_chunks(str(path)):
        pending.append(chunk)
        held += chunk.shape[1]
        while held >= block_samples:
            joined = np.concatenate(pending, axis=1)
            yield torch.from_numpy(np.ascontiguousarray(joined[:, :block_samples]))
            pending, held = [joined[:, block_samples:]], joined.shape[1] - block_samples
    if held:
        yield torch.from_numpy(np.ascontiguousarray(np.concatenate(pending, axis=1)))


def audio_bytes(waveform: Tensor, sample_rate: int, format: str = "WAV", subtype: str | None = None) -> bytes:
    """Encode float ``(channels, samples)`` as the bytes of a soundfile ``format`` file (WAV, FLAC, OGG,
    MP3, AIFF; ``subtype`` as soundfile names it, default libsndfile's: 16-bit PCM for WAV and FLAC,
    Vorbis for OGG).  Samples are clipped to [-1, 1] first: integer formats would wrap around otherwise."""
    samples = _check_waveform(waveform)
    buffer = io.BytesIO()
    buffer.name = f"audio.{format.lower()}"  # soundfile wants a name on file-likes for some formats
    sf.write(buffer, np.clip(samples, -1, 1).T, int(sample_rate), format=format, subtype=subtype)
    return buffer.getvalue()


def write_audio(waveform: Tensor, sample_rate: int, path: str | os.PathLike, subtype: str | None = None) -> Path:
    """Write float ``(channels, samples)`` to ``path`` in the format its extension names (see
    :func:`audio_bytes`).  The file appears atomically; an existing one is replaced."""
    path = Path(path)
    if path.suffix.lower() not in AUDIO_FORMATS:
        raise ValueError(f"{path}: cannot write audio as {path.suffix!r} (known: {', '.join(AUDIO_FORMATS)})")
    format, default_subtype = AUDIO_FORMATS[path.suffix.lower()]
    return write_atomic(path, audio_bytes(waveform, sample_rate, format, subtype or default_subtype), force=True)


def write_audio_blocks(blocks: Iterable[Tensor], sample_rate: int, channels: int, path: str | os.PathLike,
                       force: bool = False, protect: tuple[str | os.PathLike, ...] = ()) -> Path:
    """Stream float ``(channels, n)`` blocks into an audio file (format by extension, as :func:`write_audio`)
    without holding the whole waveform; the file appears atomically, only once every block is written."""
    path = Path(path)
    if path.suffix.lower() not in AUDIO_FORMATS:
        raise ValueError(f"{path}: cannot write audio as {path.suffix!r} (known: {', '.join(AUDIO_FORMATS)})")
    format, subtype = AUDIO_FORMATS[path.suffix.lower()]
    with atomic_output(path, force, protect) as out:
        with sf.SoundFile(out, "w", int(sample_rate), int(channels), subtype=subtype, format=format) as f:
            for block in blocks:
                f.write(np.clip(_check_waveform(block), -1, 1).T)
    return path


# --- PyAV (FFmpeg) plumbing, shared with the classical audio codecs ------------------------------------

def av_encode_audio(waveform: np.ndarray, sample_rate: int, *, container_format: str, codec: str,
                    bit_rate: int | None = None, sample_format: str | None = None,
                    codec_options: dict[str, str] | None = None,
                    container_options: dict[str, str] | None = None) -> bytes:
    """Encode float32 ``(channels, samples)``, 1 or 2 channels, with FFmpeg encoder ``codec`` into an
    in-memory ``container_format`` file.  Containers and encoders are asked to be bit-exact, so they leave
    out their version strings and the same input always gives the same bytes."""
    channels = waveform.shape[0]
    if channels not in _LAYOUTS:
        raise ValueError(f"{codec}: 1 or 2 channels supported, got {channels}")
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container_format,
                 options={"fflags": "+bitexact"} | (container_options or {})) as container:
        stream = container.add_stream(codec, rate=int(sample_rate), layout=_LAYOUTS[channels])
        context = stream.codec_context
        context.flags |= av.codec.context.Flags.bitexact
        context.thread_count = 1
        if bit_rate is not None:
            context.bit_rate = int(bit_rate)
        if sample_format is not None:
            context.format = sample_format
        if codec_options:
            stream.options = dict(codec_options)
        step = int(sample_rate)  # one second per frame; PyAV re-cuts frames to the encoder's frame size
        for start in range(0, waveform.shape[1], step):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(waveform[:, start:start + step],
                                                                    dtype=np.float32),
                                               format="fltp", layout=_LAYOUTS[channels])
            frame.sample_rate = int(sample_rate)
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def av_decode_audio(source: str | BinaryIO) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of a file (path or binary file object) with FFmpeg: float32
    ``(channels, samples)`` and the sample rate, gapless information applied (see the module docstring).
    Unreadable data raises ``ValueError``."""
    name = _name(source)
    with _av_errors(name), _open(source) as container:
        stream = _audio_stream(container, name)
        chunks = list(_decode_chunks(container, stream))
        rate = int(stream.rate)
    if not chunks:
        raise ValueError(f"{name}: no audio could be decoded")
    return np.ascontiguousarray(np.concatenate(chunks, axis=1)), rate


def _av_chunks(source: str | BinaryIO) -> Iterator[np.ndarray]:
    """Decoded float32 ``(channels, n)`` pieces of the first audio stream, in order."""
    name = _name(source)
    with _av_errors(name), _open(source) as container:
        yield from _decode_chunks(container, _audio_stream(container, name))


def _decode_chunks(container: Any, stream: Any) -> Iterator[np.ndarray]:
    stream.codec_context.thread_count = 1
    remaining = _declared_samples(container, stream)  # None: no end trim to apply
    # Planar float whatever the decoder emits, so to_ndarray is (channels, n) for every codec.
    resampler = av.AudioResampler(format="fltp")
    frames = (converted for frame in container.decode(stream) for converted in resampler.resample(frame))
    for converted in itertools.chain(frames, resampler.resample(None)):
        chunk = converted.to_ndarray()
        if remaining is not None:
            chunk, remaining = chunk[:, :remaining], max(0, remaining - chunk.shape[1])
        if chunk.shape[1]:
            yield chunk


def _declared_samples(container: Any, stream: Any) -> int | None:
    """The MP4 edit list's length in samples: FFmpeg applies the list's start (the encoder delay) but not
    its end, so decoding would otherwise keep the encoder's padding of the last frame."""
    if container.format.name != _MP4_FAMILY or not stream.duration or not stream.time_base:
        return None
    return int(round(stream.duration * stream.time_base * stream.rate)) or None


def _open(source: str | BinaryIO) -> Any:
    if not isinstance(source, str):
        source.seek(0)
    return av.open(source)


def _audio_stream(container: Any, name: str) -> Any:
    if not container.streams.audio:
        raise ValueError(f"{name} has no audio stream")
    return container.streams.audio[0]


def _name(source: str | BinaryIO) -> str:
    return source if isinstance(source, str) else getattr(source, "name", "audio data")


@contextmanager
def _av_errors(name: str | os.PathLike) -> Iterator[None]:
    """FFmpeg's errors about a file become ``ValueError`` naming it."""
    try:
        yield
    except av.error.FFmpegError as e:
        raise ValueError(f"{name} is not readable audio ({e})") from e


def _existing(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.stat().st_size == 0:  # stat first: a missing file stays FileNotFoundError
        raise ValueError(f"{path} is empty")
    return path


def _check_waveform(waveform: Tensor) -> np.ndarray:
    x = torch.as_tensor(waveform).detach().cpu()
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"need a waveform (channels, samples), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"need a float waveform in [-1, 1], got {x.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError("waveform holds NaN or infinite values")
    return x.float().numpy()
