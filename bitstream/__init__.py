"""The versioned ``.pcdc`` container and its error family (see ``docs/bitstream.md``)."""

from .container import (
    FILE_EXTENSION, FORMAT_MAJOR, FORMAT_MINOR, MAGIC, Chunk, ChunkType, ContainerReader, ContainerWriter,
    Header, Limits, MediaInfo, Modality, pack, unpack,
)
from .errors import (
    BadMagicError, BitstreamError, ChecksumError, FormatError, LimitError, ModelMismatchError, TruncatedError,
    UnsupportedVersionError,
)
from .payload import PayloadReader, PayloadWriter

__all__ = [
    "BadMagicError", "BitstreamError", "ChecksumError", "Chunk", "ChunkType", "ContainerReader",
    "ContainerWriter", "FILE_EXTENSION", "FORMAT_MAJOR", "FORMAT_MINOR", "FormatError", "Header", "LimitError",
    "Limits", "MAGIC", "MediaInfo", "Modality", "ModelMismatchError", "PayloadReader", "PayloadWriter",
    "TruncatedError", "UnsupportedVersionError", "pack", "unpack",
]
