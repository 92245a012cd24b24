"""Classical codecs behind the :class:`~polycodec.codecs.Codec` interface, writing their native files.

    image  jpeg, webp, avif, jpeg2000        (Pillow)
    audio  opus (Ogg), mp3, aac (M4A)        (FFmpeg through PyAV)
    video  x264, x265 (MP4), av1 (MP4), vp9 (WebM)

They are the baselines of rate-distortion evaluations: ``encode`` returns the bytes of a complete file, so a
measured rate includes every header and container byte a real file carries.  Each registry entry's
``sweep`` spans the codec's useful rates, low to high.  Encoders run single-threaded by default so that
timings compare like with like.

A codec whose encoder this installation lacks (a Pillow plugin or FFmpeg library not built in) is not
registered; :data:`UNAVAILABLE` says which and why.
"""

from __future__ import annotations

from typing import Callable

import av
from PIL import features

from ...bitstream import Modality
from ..base import Codec, register_codec

UNAVAILABLE: dict[str, str] = {}  # codec name -> why it is not registered here


def ffmpeg_encoder_missing(encoder: str) -> str | None:
    """None if PyAV's FFmpeg has ``encoder``, else the reason it cannot be used."""
    try:
        av.codec.Codec(encoder, "w")
    except Exception as e:  # PyAV raises UnknownCodecError (older) or an FFmpeg lookup error (newer)
        return f"FFmpeg in PyAV {av.__version__} has no {encoder!r} encoder ({e})"
    return None


def pillow_plugin_missing(feature: str) -> str | None:
    """None if Pillow was built with ``feature`` (its ``PIL.features`` name), else the reason."""
    return None if features.check(feature) else f"Pillow was built without {feature}"


def register_if_available(missing: str | None, name: str, modality: Modality, summary: str,
                          sweep: tuple[dict, ...]) -> Callable[[type[Codec]], type[Codec]]:
    """:func:`register_codec`, unless ``missing`` gives a reason the codec cannot run here."""
    def wrap(cls: type[Codec]) -> type[Codec]:
        if missing is not None:
            UNAVAILABLE[name] = missing
            return cls
        return register_codec(name, modality, summary, sweep=sweep)(cls)
    return wrap


# The codec modules use the helpers above, so they are imported after them.
from .audio import AacCodec, Mp3Codec, OpusCodec  # noqa: E402
from .image import AvifCodec, Jpeg2000Codec, JpegCodec, WebpCodec  # noqa: E402
from .video import Av1Codec, Vp9Codec, X264Codec, X265Codec  # noqa: E402

__all__ = ["AacCodec", "Av1Codec", "AvifCodec", "Jpeg2000Codec", "JpegCodec", "Mp3Codec", "OpusCodec",
           "UNAVAILABLE", "Vp9Codec", "WebpCodec", "X264Codec", "X265Codec"]
