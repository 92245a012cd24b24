"""Codecs: registered by name, loaded with their shipped weights, all speaking ``encode`` / ``decode``.

(This package is ``polycodec.codecs``; the standard library's ``codecs`` module is unaffected.)
"""

from .base import Codec, CodecEntry, StreamCodec, available_codecs, codec_entry, load, register_codec
from .tensor import TensorCodec

__all__ = ["Codec", "CodecEntry", "StreamCodec", "TensorCodec", "available_codecs", "codec_entry", "load",
           "register_codec"]
