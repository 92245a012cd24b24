"""The one exception family that reading a ``.pcdc`` stream may raise.

Every malformed input -- wrong magic, unknown major version, truncation, flipped bits, absurd sizes, trailing
garbage -- surfaces as a :class:`BitstreamError` subclass whose message says what is wrong and at which byte.
"""

from __future__ import annotations


class BitstreamError(ValueError):
    """Base class: the bytes are not a valid polycodec stream."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        self.offset = offset
        where = f" (at byte {offset})" if offset is not None else ""
        super().__init__(f"{message}{where}")


class BadMagicError(BitstreamError):
    """The stream does not start with the polycodec magic bytes."""


class UnsupportedVersionError(BitstreamError):
    """The stream was written with a major format version this reader does not know."""


class TruncatedError(BitstreamError):
    """The stream ends before its end marker."""


class ChecksumError(BitstreamError):
    """A CRC-32 does not match: the bytes were altered."""


class LimitError(BitstreamError):
    """A declared size or dimension exceeds the reader's limits."""


class FormatError(BitstreamError):
    """A field holds a value the format does not allow (bad enum, bad name, trailing data, ...)."""


class ModelMismatchError(BitstreamError):
    """The stream was written by a codec (name, version or weights) other than the one asked to decode it."""
