"""Container round trips, strictness, forward compatibility, and a seeded fuzz over mutated streams."""

import io
import random
import struct
import time
import tracemalloc
import zlib

import pytest

from polycodec.bitstream import (
    MAGIC, BadMagicError, BitstreamError, ChecksumError, Chunk, ChunkType, ContainerReader, ContainerWriter,
    FormatError, Header, LimitError, MediaInfo, Modality, TruncatedError, UnsupportedVersionError, pack, unpack,
)
from polycodec.bitstream.container import encode_header

HEADER = Header(Modality.AUDIO, "audio-test", 3, bytes(range(32)),
                MediaInfo(channels=2, bit_depth=16, sample_rate=24000, frame_count=123456))
CHUNKS = [Chunk(ChunkType.PARAMS, b"params"), Chunk(ChunkType.DATA, bytes(range(256)) * 3),
          Chunk(ChunkType.DATA, b"")]


def stream() -> bytes:
    return pack(HEADER, CHUNKS)


def test_round_trip_keeps_header_and_chunks():
    header, chunks = unpack(stream())
    assert header == HEADER
    assert chunks == CHUNKS


def test_incremental_writer_and_reader():
    buffer = io.BytesIO()
    with ContainerWriter(buffer, HEADER) as writer:
        for i in range(5):
            writer.write_chunk(ChunkType.DATA, bytes([i]) * i)
    reader = ContainerReader(io.BytesIO(buffer.getvalue()))
    assert [c.payload for c in reader] == [bytes([i]) * i for i in range(5)]


def test_failed_write_leaves_a_stream_readers_reject():
    buffer = io.BytesIO()
    with pytest.raises(RuntimeError):
        with ContainerWriter(buffer, HEADER) as writer:
            writer.write_chunk(ChunkType.DATA, b"partial")
            raise RuntimeError("encoder crashed")
    with pytest.raises(TruncatedError):
        unpack(buffer.getvalue())


@pytest.mark.parametrize("cut", [0, 3, 8, 10, 20, 60, -9, -1])
def test_truncation_is_detected(cut):
    data = stream()
    with pytest.raises(TruncatedError):
        unpack(data[:cut])


def test_wrong_magic_and_major_version_and_trailing_garbage():
    data = stream()
    with pytest.raises(BadMagicError, match="magic"):
        unpack(b"RIFF" + data[4:])
    future = bytearray(data)
    future[len(MAGIC)] = 2
    with pytest.raises(UnsupportedVersionError, match="format version 2.0"):
        unpack(bytes(future))
    with pytest.raises(FormatError, match="trailing data"):
        unpack(data + b"\0")


def test_flipped_bit_fails_checksum():
    data = bytearray(stream())
    data[-40] ^= 0x10
    with pytest.raises(ChecksumError):
        unpack(bytes(data))


def _with_minor(data: bytes, minor: int, extra_header: bytes = b"", extra_chunk: bytes | None = None) -> bytes:
    """Rewrite a stream as a newer minor version might: extra header fields, an unknown chunk type."""
    body_start = len(MAGIC) + 2 + 4
    (length,) = struct.unpack_from("<I", data, len(MAGIC) + 2)
    body = data[body_start : body_start + length] + extra_header
    version = bytes([1, minor])
    head = MAGIC + version + struct.pack("<I", len(body)) + body
    head += struct.pack("<I", zlib.crc32(version + struct.pack("<I", len(body)) + body))
    rest = data[body_start + length + 4 :]
    if extra_chunk is not None:
        chunk_head = struct.pack("<BI", 0x40, len(extra_chunk))
        unknown = chunk_head + extra_chunk + struct.pack("<I", zlib.crc32(chunk_head + extra_chunk))
        # Insert before the end marker and bump its count.
        end = rest[-13:]
        count = struct.unpack_from("<I", end, 5)[0] + 1
        end_head = struct.pack("<BI", 0xFF, 4)
        payload = struct.pack("<I", count)
        rest = rest[:-13] + unknown + end_head + payload + struct.pack("<I", zlib.crc32(end_head + payload))
    return head + rest


def test_newer_minor_version_is_readable_and_unknown_chunks_skipped():
    newer = _with_minor(stream(), 7, extra_header=b"future fields", extra_chunk=b"future chunk")
    reader = ContainerReader(io.BytesIO(newer))
    assert reader.header.codec == HEADER.codec and reader.header.format_version == (1, 7)
    assert list(reader) == CHUNKS
    assert reader.skipped_types == [0x40]
    same_minor = _with_minor(stream(), 0, extra_chunk=b"x")
    with pytest.raises(FormatError, match="unknown chunk type"):
        unpack(same_minor)


def test_absurd_sizes_are_refused_before_allocation():
    absurd = Header(Modality.IMAGE, "img", 1, bytes(32), MediaInfo(width=1 << 20, height=1 << 20, channels=3))
    with pytest.raises(LimitError, match="image side"):
        unpack(encode_header(absurd) + b"")
    data = bytearray(stream())
    first_chunk = len(encode_header(HEADER))
    struct.pack_into("<I", data, first_chunk + 1, 0xFFFFFFF0)  # chunk length ~4 GiB
    tracemalloc.start()
    with pytest.raises(LimitError):
        unpack(bytes(data))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2 << 20


def test_empty_input_and_wrong_type():
    with pytest.raises(TruncatedError, match="empty"):
        unpack(b"")
    with pytest.raises(TypeError):
        unpack("not bytes")


def _mutate(rng: random.Random, data: bytes) -> bytes:
    data = bytearray(data)
    kind = rng.randrange(6)
    if kind == 0:  # truncate
        return bytes(data[: rng.randrange(len(data))])
    if kind == 1:  # flip bits
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == 2:  # overwrite a 32-bit field with an extreme value
        pos = rng.randrange(len(data) - 4)
        struct.pack_into("<I", data, pos, rng.choice([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, rng.getrandbits(32)]))
    elif kind == 3:  # insert or delete bytes
        pos = rng.randrange(len(data))
        if rng.random() < 0.5:
            data[pos:pos] = rng.randbytes(rng.randint(1, 16))
        else:
            del data[pos : pos + rng.randint(1, 16)]
    elif kind == 4:  # append garbage
        data += rng.randbytes(rng.randint(1, 32))
    else:  # random bytes behind a valid magic
        return MAGIC + rng.randbytes(rng.randint(0, 200))
    return bytes(data)


def test_fuzz_only_bitstream_errors_escape():
    rng = random.Random(1234)
    seeds = [stream(), pack(Header(Modality.IMAGE, "x", 0), []),
             pack(HEADER, [Chunk(ChunkType.DATA, rng.randbytes(2000))])]
    limit_bytes = 4 << 20  # bounded: no parse may allocate beyond input size plus one read piece
    tracemalloc.start()
    outcomes = {"error": 0, "parsed": 0}
    started = time.monotonic()
    for i in range(10_000):
        data = _mutate(rng, seeds[i % len(seeds)])
        try:
            unpack(data)
            outcomes["parsed"] += 1
        except BitstreamError:
            outcomes["error"] += 1
        assert tracemalloc.get_traced_memory()[1] < limit_bytes
        tracemalloc.reset_peak()
    tracemalloc.stop()
    assert time.monotonic() - started < 120, "a malformed stream made parsing hang"
    assert outcomes["error"] > 9000  # nearly every mutation must be caught
