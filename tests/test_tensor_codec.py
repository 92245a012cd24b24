"""The tensor codec end to end: error bound, streaming blocks, header checks, corrupt input."""

import pytest
import torch

import polycodec
from polycodec.bitstream import BitstreamError, ModelMismatchError, pack, unpack
from polycodec.codecs import tensor as tensor_module


@pytest.fixture(scope="module")
def codec():
    return polycodec.load("tensor", step=0.05)


@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4, 17)])
def test_round_trip_within_half_a_step(codec, shape):
    torch.manual_seed(0)
    x = torch.randn(shape) * 3 + 1
    y = codec.decode(codec.encode(x))
    assert y.shape == x.shape
    assert float((y - x).abs().max()) <= 0.025 + 1e-6


def test_rate_falls_as_step_grows(codec):
    x = torch.randn(256, 32)
    sizes = [len(codec.encode(x, step=s)) for s in (0.01, 0.05, 0.2)]
    assert sizes[0] > sizes[1] > sizes[2]


def test_multi_chunk_streaming(codec, monkeypatch):
    monkeypatch.setattr(tensor_module, "BLOCK_ELEMENTS", 64)
    x = torch.randn(50, 10)
    data = codec.encode(x)
    assert len(unpack(data)[1]) == 1 + 9  # params + ceil(50 / 6) blocks of 6 rows
    monkeypatch.undo()  # the decoder reads the block size from the stream, not from its own default
    assert float((codec.decode(data) - x).abs().max()) <= 0.025 + 1e-6


def test_bad_inputs_are_refused(codec):
    for bad in (torch.zeros(0), torch.tensor(1.0), torch.tensor([1.0, float("nan")]), torch.arange(4)):
        with pytest.raises(ValueError):
            codec.encode(bad)


def test_streams_from_other_codecs_or_weights_are_refused(codec):
    header, chunks = unpack(codec.encode(torch.randn(4, 4)))
    for change in ({"codec_version": 9}, {"weights_hash": bytes(32)}):
        forged = pack(header.__class__(**(vars(header) | change)), chunks)
        with pytest.raises(ModelMismatchError):
            codec.decode(forged)


def test_every_truncation_and_many_bit_flips_raise_bitstream_errors(codec):
    data = codec.encode(torch.randn(16, 8))
    for cut in range(len(data)):
        with pytest.raises(BitstreamError):
            codec.decode(data[:cut])
    for pos in range(0, len(data), 3):
        flipped = bytearray(data)
        flipped[pos] ^= 0x04
        with pytest.raises(BitstreamError):
            codec.decode(bytes(flipped))
