"""Classical video codecs through PyAV (FFmpeg): x264 and x265 in MP4, AV1 (SVT-AV1) in MP4, VP9 in WebM.

    encode(frames float32 (T, 3, H, W) in [0, 1], fps) -> bytes of a .mp4 / .webm file
    decode(bytes) -> (frames float32 (T, 3, H, W), fps)

Frames go to 8-bit 4:2:0 YUV (BT.601, limited range, tagged in the stream).  Width and height must be
even: 4:2:0 has one chroma sample per 2x2 block, and padding an odd size would need a crop the formats can
carry but these encoder wrappers do not write, so the size decode reports would not be the input's.  Odd
sizes therefore raise ``ValueError`` -- crop (or pad) before encoding, and score the same frames.

Encoders run with one thread by default (``threads`` sets it) so that timings are comparable across codecs
and machines; decode is single-threaded for the same reason.  The rate knob is ``crf`` (constant quality:
lower is better and bigger).
"""

from __future__ import annotations

import io
import os

from torch import Tensor

from ...bitstream import Modality
from ...media.video import av_encode_video, check_frames, read_video
from ..base import Codec
from . import ffmpeg_encoder_missing, register_if_available


class AvVideoCodec(Codec):
    """An FFmpeg video encoder writing a container file; subclasses give the encoder, container, options."""

    modality = Modality.VIDEO
    encoder: str
    container_format: str
    crf_range: tuple[int, int]
    bit_rate: int | None = None

    def __init__(self, crf: int, threads: int = 1) -> None:
        low, high = self.crf_range
        if not (isinstance(crf, int) and low <= crf <= high):
            raise ValueError(f"{self.name} crf must be an integer in [{low}, {high}], got {crf!r}")
        if threads < 0:
            raise ValueError("threads must be >= 0 (0: the encoder's own choice)")
        self.crf = crf
        self.threads = threads

    def codec_options(self) -> dict[str, str]:
        raise NotImplementedError

    def encode(self, media: Tensor, fps: float) -> bytes:
        frames = check_frames(media)
        height, width = frames.shape[2], frames.shape[3]
        if height % 2 or width % 2:
            raise ValueError(f"{self.name} codes 4:2:0 video, which needs an even width and height; got "
                             f"{width}x{height} -- crop or pad the frames first")
        return av_encode_video(frames, fps, container_format=self.container_format, codec=self.encoder,
                               pix_fmt="yuv420p", codec_options=self.codec_options(), bit_rate=self.bit_rate,
                               threads=self.threads)

    def decode(self, data: bytes) -> tuple[Tensor, float]:
        if not data:
            raise ValueError(f"{self.name} data is empty")
        buffer = io.BytesIO(data)
        buffer.name = f"{self.name} data"
        return read_video(buffer, threads=1)


@register_if_available(ffmpeg_encoder_missing("libx264"), "x264", Modality.VIDEO,
                       "H.264 (x264) in MP4, crf 0-51, preset medium, 4:2:0",
                       sweep=tuple({"crf": c} for c in (45, 39, 33, 28, 23, 18)))
class X264Codec(AvVideoCodec):
    name = "x264"
    encoder = "libx264"
    container_format = "mp4"
    crf_range = (0, 51)

    def __init__(self, crf: int = 23, preset: str = "medium", threads: int = 1) -> None:
        super().__init__(crf, threads)
        self.preset = preset

    def codec_options(self) -> dict[str, str]:
        return {"crf": str(self.crf), "preset": self.preset}


@register_if_available(ffmpeg_encoder_missing("libx265"), "x265", Modality.VIDEO,
                       "HEVC (x265) in MP4, crf 0-51, preset medium, 4:2:0",
                       sweep=tuple({"crf": c} for c in (45, 39, 33, 28, 23, 18)))
class X265Codec(AvVideoCodec):
    name = "x265"
    encoder = "libx265"
    container_format = "mp4"
    crf_range = (0, 51)

    def __init__(self, crf: int = 28, preset: str = "medium", threads: int = 1) -> None:
        super().__init__(crf, threads)
        self.preset = preset

    def codec_options(self) -> dict[str, str]:
        # x265 ignores FFmpeg's thread count: its own pool and frame threads are set here instead.
        threading = ("pools=none:frame-threads=1" if self.threads == 1 else
                     f"pools={self.threads}" if self.threads else "")
        params = ":".join(p for p in ("log-level=error", threading) if p)
        return {"crf": str(self.crf), "preset": self.preset, "x265-params": params}


@register_if_available(ffmpeg_encoder_missing("libsvtav1"), "av1", Modality.VIDEO,
                       "AV1 (SVT-AV1) in MP4, crf 1-63, preset 8, 4:2:0",
                       sweep=tuple({"crf": c} for c in (60, 52, 44, 36, 28, 20)))
class Av1Codec(AvVideoCodec):
    name = "av1"
    encoder = "libsvtav1"
    container_format = "mp4"
    crf_range = (1, 63)

    def __init__(self, crf: int = 35, preset: int = 8, threads: int = 1) -> None:
        super().__init__(crf, threads)
        if preset not in range(-1, 14):
            raise ValueError(f"av1 preset must be -1..13, got {preset!r}")
        self.preset = preset

    def codec_options(self) -> dict[str, str]:
        # SVT-AV1 logs its whole configuration and harmless warnings to stderr; keep errors only
        # unless the caller asked for something else.
        os.environ.setdefault("SVT_LOG", "1")
        options = {"crf": str(self.crf), "preset": str(self.preset)}
        if self.threads:  # "lp" (level of parallelism) is SVT-AV1's thread knob; FFmpeg's is not passed on
            options["svtav1-params"] = f"lp={self.threads}"
        return options


@register_if_available(ffmpeg_encoder_missing("libvpx-vp9"), "vp9", Modality.VIDEO,
                       "VP9 (libvpx) in WebM, constant quality crf 0-63, realtime deadline, cpu-used 8",
                       sweep=tuple({"crf": c} for c in (60, 52, 44, 36, 28, 20)))
class Vp9Codec(AvVideoCodec):
    """Constant-quality mode (crf with a zero target bitrate) at libvpx's fastest settings: a speed
    reference, not VP9's best rate-distortion (``deadline="good"``, ``cpu_used=1`` gets closer to that)."""

    name = "vp9"
    encoder = "libvpx-vp9"
    container_format = "webm"
    crf_range = (0, 63)
    bit_rate = 0  # with crf: constant quality, no bitrate target

    def __init__(self, crf: int = 32, deadline: str = "realtime", cpu_used: int = 8, threads: int = 1) -> None:
        super().__init__(crf, threads)
        if deadline not in ("best", "good", "realtime"):
            raise ValueError(f"vp9 deadline must be best, good or realtime, got {deadline!r}")
        self.deadline = deadline
        self.cpu_used = cpu_used

    def codec_options(self) -> dict[str, str]:
        return {"crf": str(self.crf), "deadline": self.deadline, "cpu-used": str(self.cpu_used), "row-mt": "0"}
