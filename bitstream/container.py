"""The ``.pcdc`` container: a versioned header, then CRC-framed chunks, then an end marker.

All integers are little-endian. ``docs/bitstream.md`` is the full specification; this is its summary::

    stream   := preamble header chunk* end
    preamble := magic[8] = 89 50 43 44 43 0D 0A 1A   ("\\x89PCDC\\r\\n\\x1a")
                major:u8 minor:u8                     format version
    header   := length:u32 body[length] crc:u32       crc32 of (major, minor, length, body)
    body     := modality:u8 name_len:u8 name[name_len] codec_version:u32 weights_sha256[32]
                width:u32 height:u32 channels:u32 bit_depth:u8 sample_rate:u32
                frame_rate_num:u32 frame_rate_den:u32 frame_count:u64
                (a newer minor version may append fields; older readers ignore them)
    chunk    := type:u8 length:u32 payload[length] crc:u32   crc32 of (type, length, payload)
    end      := type 0xFF, length 4, payload chunk_count:u32, crc:u32
    nothing may follow the end marker.

Chunks let audio and video be written and read incrementally: :class:`ContainerWriter` appends them to any
binary stream, :class:`ContainerReader` yields them one at a time.  Reading is strict and bounded: every
length is checked against :class:`Limits` before it is read, and reads happen in bounded pieces, so a lying
length field never allocates more than the bytes actually present plus one piece.
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from dataclasses import dataclass, field
from enum import IntEnum
from typing import BinaryIO, Iterator

from .errors import (
    BadMagicError,
    BitstreamError,
    ChecksumError,
    FormatError,
    LimitError,
    TruncatedError,
    UnsupportedVersionError,
)

MAGIC = b"\x89PCDC\r\n\x1a"
FORMAT_MAJOR = 1
FORMAT_MINOR = 0
FILE_EXTENSION = ".pcdc"

_CODEC_NAME = re.compile(rb"[a-z0-9][a-z0-9._-]{0,63}")
_MEDIA = struct.Struct("<IIIBIIIQ")
_CHUNK_HEAD = struct.Struct("<BI")
_U32 = struct.Struct("<I")
_READ_PIECE = 1 << 20  # bytes read per step, so a lying length allocates at most this much extra


class Modality(IntEnum):
    TENSOR = 0
    IMAGE = 1
    AUDIO = 2
    VIDEO = 3


class ChunkType(IntEnum):
    """Chunk types known to this version. 0 is reserved so that zeroed bytes never parse as a chunk."""

    PARAMS = 1  # codec-specific parameters (shapes, quantized side information)
    DATA = 2  # entropy-coded payload; audio and video write one per segment or frame
    END = 0xFF


_PAYLOAD_TYPES = frozenset({ChunkType.PARAMS, ChunkType.DATA})


@dataclass(frozen=True)
class Limits:
    """Upper bounds a reader enforces before allocating; raise them explicitly for unusual media."""

    max_header_bytes: int = 4096
    max_chunk_bytes: int = 1 << 28
    max_chunks: int = 1 << 24
    max_side: int = 1 << 16  # width and height, pixels
    max_pixels: int = 1 << 28
    max_channels: int = 1 << 12
    max_sample_rate: int = 1_000_000
    max_frame_count: int = 1 << 40


@dataclass(frozen=True)
class MediaInfo:
    """What was coded: 0 means 'does not apply' (an image has no sample rate)."""

    width: int = 0
    height: int = 0
    channels: int = 0
    bit_depth: int = 0
    sample_rate: int = 0
    frame_rate_num: int = 0
    frame_rate_den: int = 0
    frame_count: int = 0  # video frames, or audio samples per channel


@dataclass(frozen=True)
class Header:
    modality: Modality
    codec: str
    codec_version: int
    weights_hash: bytes = bytes(32)  # sha256 of the weights that coded the stream
    media: MediaInfo = field(default_factory=MediaInfo)
    format_version: tuple[int, int] = (FORMAT_MAJOR, FORMAT_MINOR)

    def to_json(self) -> dict:
        return {
            "format_version": f"{self.format_version[0]}.{self.format_version[1]}",
            "modality": self.modality.name.lower(),
            "codec": self.codec,
            "codec_version": self.codec_version,
            "weights_sha256": self.weights_hash.hex(),
            "media": {k: v for k, v in vars(self.media).items()},
        }


@dataclass(frozen=True)
class Chunk:
    type: int
    payload: bytes


def _crc(*parts: bytes) -> int:
    crc = 0
    for part in parts:
        crc = zlib.crc32(part, crc)
    return crc


def encode_header(header: Header) -> bytes:
    name = header.codec.encode("ascii")
    if not _CODEC_NAME.fullmatch(name):
        raise ValueError(f"codec name {header.codec!r} must match [a-z0-9][a-z0-9._-]{{0,63}}")
    if len(header.weights_hash) != 32:
        raise ValueError("weights_hash must be 32 bytes (sha256)")
    m = header.media
    body = (
        struct.pack("<BB", int(header.modality), len(name))
        + name
        + _U32.pack(header.codec_version)
        + header.weights_hash
        + _MEDIA.pack(m.width, m.height, m.channels, m.bit_depth, m.sample_rate,
                      m.frame_rate_num, m.frame_rate_den, m.frame_count)
    )
    version = bytes([FORMAT_MAJOR, FORMAT_MINOR])
    length = _U32.pack(len(body))
    return MAGIC + version + length + body + _U32.pack(_crc(version, length, body))


def _check_media(m: MediaInfo, limits: Limits, at: int) -> None:
    checks = [
        (m.width <= limits.max_side and m.height <= limits.max_side, f"image side {m.width}x{m.height}"),
        (m.width * m.height <= limits.max_pixels, f"pixel count {m.width * m.height}"),
        (m.channels <= limits.max_channels, f"channel count {m.channels}"),
        (m.sample_rate <= limits.max_sample_rate, f"sample rate {m.sample_rate}"),
        (m.frame_count <= limits.max_frame_count, f"frame count {m.frame_count}"),
    ]
    for ok, what in checks:
        if not ok:
            raise LimitError(f"{what} exceeds the reader's limit", at)
    if m.bit_depth > 32:
        raise FormatError(f"bit depth {m.bit_depth} is not in 0..32", at)
    if m.frame_rate_num and not m.frame_rate_den:
        raise FormatError("frame rate has a zero denominator", at)


def decode_header_body(body: bytes, minor: int, at: int, limits: Limits) -> Header:
    """Parse a header body; ``at`` is its byte offset in the stream, for messages."""
    if len(body) < 2:
        raise FormatError("header body too short", at)
    modality_code, name_len = body[0], body[1]
    try:
        modality = Modality(modality_code)
    except ValueError:
        raise FormatError(f"unknown modality code {modality_code}", at) from None
    fixed_end = 2 + name_len + 4 + 32 + _MEDIA.size
    if len(body) < fixed_end:
        raise FormatError(f"header body has {len(body)} bytes, needs {fixed_end}", at)
    name = body[2 : 2 + name_len]
    if not _CODEC_NAME.fullmatch(name):
        raise FormatError(f"codec name {name!r} is not a valid name", at + 2)
    pos = 2 + name_len
    (codec_version,) = _U32.unpack_from(body, pos)
    weights_hash = bytes(body[pos + 4 : pos + 36])
    media = MediaInfo(*_MEDIA.unpack_from(body, pos + 36))
    _check_media(media, limits, at + pos + 36)
    if len(body) > fixed_end and minor <= FORMAT_MINOR:
        raise FormatError(f"header has {len(body) - fixed_end} unexpected trailing bytes", at + fixed_end)
    return Header(modality, name.decode("ascii"), codec_version, weights_hash, media, (FORMAT_MAJOR, minor))


class ContainerWriter:
    """Write a stream incrementally: header now, chunks as they come, end marker on :meth:`close`.

    Used as a context manager the end marker is written only when the block succeeds, so a failed
    encode leaves a stream that every reader rejects as truncated.
    """

    def __init__(self, stream: BinaryIO, header: Header) -> None:
        self._stream = stream
        self._count = 0
        self._closed = False
        stream.write(encode_header(header))

    def write_chunk(self, type: int, payload: bytes) -> None:
        if self._closed:
            raise ValueError("write_chunk on a closed ContainerWriter")
        if not 1 <= type < ChunkType.END:
            raise ValueError(f"chunk type must be in 1..254, got {type}")
        if len(payload) > Limits.max_chunk_bytes:
            raise ValueError(f"chunk of {len(payload)} bytes exceeds the format limit; split it")
        self._write(type, bytes(payload))
        self._count += 1

    def _write(self, type: int, payload: bytes) -> None:
        head = _CHUNK_HEAD.pack(type, len(payload))
        self._stream.write(head + payload + _U32.pack(_crc(head, payload)))

    def close(self) -> None:
        if not self._closed:
            self._write(ChunkType.END, _U32.pack(self._count))
            self._closed = True

    def __enter__(self) -> "ContainerWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()


class ContainerReader:
    """Read a stream incrementally: :attr:`header` on construction, then iterate for chunks.

    Iteration ends at the end marker after checking the chunk count and that nothing follows it.
    Chunk types unknown to this reader are skipped when the stream declares a newer minor version
    (listed in :attr:`skipped_types`) and rejected otherwise.
    """

    def __init__(self, stream: BinaryIO, limits: Limits = Limits()) -> None:
        self._stream = stream
        self._limits = limits
        self._pos = 0
        self.skipped_types: list[int] = []
        self.header = self._read_header()

    def _read(self, n: int, what: str) -> bytes:
        start = self._pos
        parts = bytearray()
        while len(parts) < n:
            piece = self._stream.read(min(n - len(parts), _READ_PIECE))
            if not piece:
                raise TruncatedError(f"stream ends inside {what}: {len(parts)} of {n} bytes present", start)
            parts += piece
        self._pos += n
        return bytes(parts)

    def _read_header(self) -> Header:
        magic = self._read_prefix(len(MAGIC))
        if magic != MAGIC:
            raise BadMagicError(f"not a polycodec stream: magic is {magic[:8]!r}, expected {MAGIC!r}", 0)
        version = self._read(2, "format version")
        major, minor = version[0], version[1]
        if major != FORMAT_MAJOR:
            raise UnsupportedVersionError(
                f"format version {major}.{minor} is not readable by this reader (major {FORMAT_MAJOR}); "
                "use a polycodec release that supports it", len(MAGIC))
        length_bytes = self._read(4, "header length")
        (length,) = _U32.unpack(length_bytes)
        if length > self._limits.max_header_bytes:
            raise LimitError(f"header length {length} exceeds {self._limits.max_header_bytes}", self._pos - 4)
        at = self._pos
        body = self._read(length, "header")
        (crc,) = _U32.unpack(self._read(4, "header checksum"))
        if crc != _crc(version, length_bytes, body):
            raise ChecksumError("header checksum mismatch", at)
        return decode_header_body(body, minor, at, self._limits)

    def _read_prefix(self, n: int) -> bytes:
        data = self._stream.read(n)
        if len(data) < n:
            if MAGIC.startswith(data) and data:
                raise TruncatedError(f"stream is only {len(data)} bytes long", 0)
            if not data:
                raise TruncatedError("stream is empty", 0)
            raise BadMagicError(f"not a polycodec stream: starts with {data!r}", 0)
        self._pos += n
        return data

    def __iter__(self) -> Iterator[Chunk]:
        count = 0
        while True:
            at = self._pos
            head = self._read(_CHUNK_HEAD.size, "chunk header")
            type, length = _CHUNK_HEAD.unpack(head)
            if length > self._limits.max_chunk_bytes:
                raise LimitError(f"chunk length {length} exceeds {self._limits.max_chunk_bytes}", at + 1)
            payload = self._read(length, f"chunk {count} payload")
            (crc,) = _U32.unpack(self._read(4, "chunk checksum"))
            if crc != _crc(head, payload):
                raise ChecksumError(f"chunk {count} (type {type}) checksum mismatch", at)
            if type == ChunkType.END:
                self._finish(payload, count, at)
                return
            count += 1
            if count > self._limits.max_chunks:
                raise LimitError(f"more than {self._limits.max_chunks} chunks", at)
            if type in _PAYLOAD_TYPES:
                yield Chunk(type, payload)
            elif type != 0 and self.header.format_version[1] > FORMAT_MINOR:
                self.skipped_types.append(type)
            else:
                raise FormatError(f"unknown chunk type {type}", at)

    def _finish(self, payload: bytes, count: int, at: int) -> None:
        if len(payload) != 4:
            raise FormatError(f"end marker payload has {len(payload)} bytes, expected 4", at)
        (declared,) = _U32.unpack(payload)
        if declared != count:
            raise FormatError(f"end marker declares {declared} chunks but {count} were read", at)
        if self._stream.read(1):
            raise FormatError("trailing data after the end marker", self._pos)


def pack(header: Header, chunks: list[Chunk]) -> bytes:
    """Whole stream in memory: the convenience form of :class:`ContainerWriter`."""
    buffer = io.BytesIO()
    with ContainerWriter(buffer, header) as writer:
        for chunk in chunks:
            writer.write_chunk(chunk.type, chunk.payload)
    return buffer.getvalue()


def unpack(data: bytes, limits: Limits = Limits()) -> tuple[Header, list[Chunk]]:
    """Parse a whole in-memory stream; raises :class:`BitstreamError` on any defect."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"unpack expects bytes, got {type(data).__name__}")
    reader = ContainerReader(io.BytesIO(data), limits)
    return reader.header, list(reader)


__all__ = [
    "BitstreamError", "Chunk", "ChunkType", "ContainerReader", "ContainerWriter", "FILE_EXTENSION",
    "FORMAT_MAJOR", "FORMAT_MINOR", "Header", "Limits", "MAGIC", "MediaInfo", "Modality", "pack", "unpack",
]
