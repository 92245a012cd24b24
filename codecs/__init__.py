"""Codecs: registered by name, loaded with their shipped weights, all speaking ``encode`` / ``decode``.

(This package is ``polycodec.codecs``; the standard library's ``codecs`` module is unaffected.)
"""

from .base import Codec, CodecEntry, StreamCodec, available_codecs, codec_entry, load, register_codec
from .tensor import TensorCodec
from .image import ImageCodec
from .audio import AudioCodec
from .overfit import OverfitImageCodec
from . import classical  # noqa: F401  registers jpeg, webp, avif, jpeg2000, opus, mp3, aac, x264, x265, av1, vp9

__all__ = ["AudioCodec", "Codec", "CodecEntry", "ImageCodec", "OverfitImageCodec", "StreamCodec", "TensorCodec", "available_codecs", "codec_entry", "load",
           "register_codec"]
