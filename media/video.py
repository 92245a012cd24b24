"""Video files <-> float tensors (T, 3, H, W) in [0, 1] plus a frame rate, through PyAV (FFmpeg).

Decoding gives 8-bit RGB whatever the file stores (higher bit depths are rounded to 8 bits).  The YUV ->
RGB matrix and range come from the stream's own tags; untagged streams are read as BT.601 limited range,
FFmpeg's default, which is also what the encoders here write (and tag).  The frame rate is the stream's
average rate, so a variable-frame-rate file reports its mean.  Unreadable data raises ``ValueError``.

Encoding (:func:`av_encode_video`, shared with the classical video codecs) converts RGB to the encoder's
pixel format with swscale, BT.601 limited range for YUV, and writes the file into memory.
"""

from __future__ import annotations

import io
import os
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import av
import numpy as np
import torch
from torch import Tensor

from ..bitstream.files import write_atomic

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v")
MAX_FRAME_PIXELS = 1 << 28  # the same header-checked bound the image reader uses
MAX_SIDE = 65535

# What write_video writes, by extension: (container, encoder, pixel format, encoder options).  Both are for
# test fixtures and decoded output, so they lose (almost) nothing: FFV1 codes RGB losslessly; x264 at
# crf 0 codes 4:4:4 YUV losslessly, leaving only the RGB <-> YUV rounding.
_WRITERS: dict[str, tuple[str, str, str, dict[str, str]]] = {
    ".mkv": ("matroska", "ffv1", "bgr0", {}),
    ".mp4": ("mp4", "libx264", "yuv444p", {"crf": "0", "preset": "veryfast"}),
}

_SWS_BT601 = "ITU601"
_AVCOL_SPC_SMPTE170M = 6  # BT.601 as a stream tag: what swscale's ITU601 conversion means
_AVCOL_RANGE_MPEG = 1  # limited ("TV") range


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    width: int
    height: int
    frames: int | None  # None when the container does not declare a frame count


def read_video(source: str | os.PathLike | BinaryIO, max_frames: int | None = None,
               threads: int = 0) -> tuple[Tensor, float]:
    """Decode a video's first video stream: float32 ``(T, 3, H, W)`` in [0, 1] and its frame rate.

    ``max_frames`` stops after that many frames (memory grows with ``T * H * W * 12`` bytes); ``threads``
    is the decoder's thread count, 0 for FFmpeg's choice.
    """
    if max_frames is not None and max_frames < 1:
        raise ValueError("max_frames must be at least 1")
    name = _name(source)
    frames = []
    with _av_errors(name), _open(source) as container:
        stream = _video_stream(container, name, threads)
        fps = _fps(stream, name)
        for frame in container.decode(stream):
            frames.append(_to_rgb(frame))
            if max_frames is not None and len(frames) >= max_frames:
                break
    if not frames:
        raise ValueError(f"{name}: no video frames could be decoded")
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float().div_(255), fps


def iter_video_frames(source: str | os.PathLike | BinaryIO, threads: int = 0) -> Iterator[Tensor]:
    """Yield the frames of a video one at a time, each float32 ``(3, H, W)`` in [0, 1] (the frame rate is
    in :func:`video_info`)."""
    name = _name(source)
    with _av_errors(name), _open(source) as container:
        stream = _video_stream(container, name, threads)
        for frame in container.decode(stream):
            yield torch.from_numpy(_to_rgb(frame)).permute(2, 0, 1).float().div_(255)


def video_info(source: str | os.PathLike | BinaryIO) -> VideoInfo:
    """Frame rate, size and (when declared) frame count, from the headers."""
    name = _name(source)
    with _av_errors(name), _open(source) as container:
        stream = _video_stream(container, name, 0)
        context = stream.codec_context
        return VideoInfo(_fps(stream, name), context.width, context.height, stream.frames or None)


def write_video(frames: Tensor, fps: float, path: str | os.PathLike) -> Path:
    """Write float ``(T, 3, H, W)`` in [0, 1] almost losslessly: ``.mkv`` as FFV1 RGB (exact 8-bit),
    ``.mp4`` as x264 crf 0 in 4:4:4 (exact but for the RGB <-> YUV rounding).  Atomic; replaces."""
    path = Path(path)
    writer = _WRITERS.get(path.suffix.lower())
    if writer is None:
        raise ValueError(f"{path}: cannot write video as {path.suffix!r} (known: {', '.join(_WRITERS)})")
    container_format, codec, pix_fmt, options = writer
    data = av_encode_video(frames, fps, container_format=container_format, codec=codec, pix_fmt=pix_fmt,
                           codec_options=options, threads=0)
    return write_atomic(path, data, force=True)


def av_encode_video(frames: Tensor, fps: float, *, container_format: str, codec: str, pix_fmt: str,
                    codec_options: dict[str, str] | None = None, bit_rate: int | None = None,
                    threads: int = 1) -> bytes:
    """Encode float ``(T, 3, H, W)`` in [0, 1] with FFmpeg encoder ``codec`` into an in-memory
    ``container_format`` file.  ``threads`` is the encoder's thread count (0: FFmpeg's choice)."""
    x = check_frames(frames)
    rate = frame_rate(fps)
    height, width = x.shape[2], x.shape[3]
    is_yuv = pix_fmt.startswith("yuv")
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container_format, options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(codec, rate=rate)
        context = stream.codec_context
        context.width, context.height, context.pix_fmt = width, height, pix_fmt
        context.thread_count = threads
        if is_yuv:  # tag what the conversion below does, so any player converts back the same way
            context.colorspace = _AVCOL_SPC_SMPTE170M
            context.color_range = _AVCOL_RANGE_MPEG
        if bit_rate is not None:
            context.bit_rate = bit_rate
        if codec_options:
            stream.options = dict(codec_options)
        for index in range(x.shape[0]):
            pixels = (x[index].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            if is_yuv:
                frame = frame.reformat(format=pix_fmt, dst_colorspace=_SWS_BT601, dst_color_range="MPEG")
            else:
                frame = frame.reformat(format=pix_fmt)
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def check_frames(frames: Tensor) -> Tensor:
    """Validate float ``(T, 3, H, W)`` video and return it as a float32 CPU tensor."""
    x = torch.as_tensor(frames).detach().cpu()
    if x.ndim != 4 or x.shape[1] != 3 or 0 in x.shape:
        raise ValueError(f"need video frames (T, 3, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"need float frames in [0, 1], got {x.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError("frames hold NaN or infinite values")
    return x.float()


def frame_rate(fps: float) -> Fraction:
    """A float frame rate as the fraction containers store; NTSC rates (29.97...) become 30000/1001."""
    if not (np.isfinite(fps) and 0 < fps <= 1000):
        raise ValueError(f"fps must be in (0, 1000], got {fps}")
    return Fraction(fps).limit_denominator(1001)


def _to_rgb(frame: Any) -> np.ndarray:
    # swscale takes the matrix from the frame's tag but not the range: pass full-range tags through.
    full_range = frame.color_range == 2
    return frame.to_ndarray(format="rgb24", src_color_range="JPEG" if full_range else None)


def _video_stream(container: Any, name: str, threads: int) -> Any:
    if not container.streams.video:
        raise ValueError(f"{name} has no video stream")
    stream = container.streams.video[0]
    width, height = stream.codec_context.width, stream.codec_context.height
    if max(width, height) > MAX_SIDE or width * height > MAX_FRAME_PIXELS:
        raise ValueError(f"{name}: frames of {width}x{height} are over the limit of {MAX_SIDE} per side and "
                         f"{MAX_FRAME_PIXELS} pixels")
    stream.codec_context.thread_count = threads
    return stream


def _fps(stream: Any, name: str) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate:
        raise ValueError(f"{name} declares no frame rate")
    return float(rate)


def _open(source: str | os.PathLike | BinaryIO) -> Any:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.stat().st_size == 0:  # stat first: a missing file stays FileNotFoundError
            raise ValueError(f"{path} is empty")
        return av.open(str(path))
    source.seek(0)
    return av.open(source)


def _name(source: str | os.PathLike | BinaryIO) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else getattr(source, "name", "video data")


@contextmanager
def _av_errors(name: str) -> Iterator[None]:
    """FFmpeg's errors about a file become ``ValueError`` naming it."""
    try:
        yield
    except av.error.FFmpegError as e:
        raise ValueError(f"{name} is not readable video ({e})") from e
