"""Tensor codec: lossy coding of any float tensor (features, embeddings, KV caches) with a guaranteed
maximum error of ``step / 2`` -- the CacheGen-style "feature codec" idea on the project's own parts.

    x (..., C) --per channel: mean m_c (on the step grid)--> symbols = round(x / step - m_c)
      --per channel: Laplace table chosen by mean |symbol| (index stored in the stream)-->
      SymbolEncoder over blocks of rows --> one DATA chunk per block --> .pcdc

The tables are the :class:`~polycodec.entropy.GaussianConditional` (Laplace family) state shipped in
``codecs/weights/tensor-laplace-v1.safetensors``; the decoder reads each channel's table index from the
stream, so no floating-point computation chooses a table at decode time.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import Tensor

from ..bitstream import (ChunkType, ContainerReader, ContainerWriter, FormatError, Header, LimitError,
                         MediaInfo, Modality, PayloadReader, PayloadWriter)
from ..entropy import GaussianConditional, decode_symbols, encode_symbols
from .base import StreamCodec, register_codec, sha256_file

WEIGHTS = Path(__file__).parent / "weights" / "tensor-laplace-v1.safetensors"
BLOCK_ELEMENTS = 1 << 20  # elements per DATA chunk: bounds memory when streaming large tensors
MAX_BLOCK_ELEMENTS = 1 << 22  # what a decoder accepts per chunk
MAX_ELEMENTS = 1 << 31
MAX_NDIM = 8


def build_tables() -> GaussianConditional:
    """The entropy model whose tables the codec ships (``scripts/export_tables.py`` writes them)."""
    model = GaussianConditional(family="laplace")
    model.update()
    return model


@register_codec("tensor", Modality.TENSOR, "any float tensor, max error step/2, per-channel Laplace tables",
                sweep=tuple({"step": s} for s in (0.2, 0.1, 0.05, 0.02, 0.01)))
class TensorCodec(StreamCodec):
    name = "tensor"
    modality = Modality.TENSOR
    version = 1

    def __init__(self, step: float = 0.01, weights: str | Path = WEIGHTS) -> None:
        if not step > 0:
            raise ValueError("step must be > 0")
        self.step = step
        self.entropy_model = GaussianConditional(family="laplace")
        self.entropy_model.load_state_dict(load_file(str(weights)))
        self._hash = sha256_file(str(weights))

    @property
    def weights_hash(self) -> bytes:
        return self._hash

    def encode(self, media: Tensor, step: float | None = None) -> bytes:
        step = float(step or self.step)
        x = torch.as_tensor(media).detach().cpu()
        if not x.is_floating_point() or x.ndim == 0 or x.ndim > MAX_NDIM or x.numel() == 0:
            raise ValueError(f"need a non-empty float tensor with 1..{MAX_NDIM} dims, got {x.dtype} {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("tensor holds NaN or infinite values")
        rows = x.double().reshape(-1, x.shape[-1]).numpy() / step
        if np.abs(rows).max() >= 2**30:
            raise ValueError(f"step {step} is too small for values of this magnitude")
        mean = np.round(rows.mean(axis=0)).astype(np.int64)
        symbols = np.round(rows - mean).astype(np.int32)
        spread = torch.from_numpy(np.abs(symbols).mean(axis=0).clip(min=1e-3))
        tables = self.entropy_model.scale_indexes(spread)

        params = PayloadWriter().uint(x.ndim)
        for d in x.shape:
            params.uint(d)
        rows_per_block = max(1, BLOCK_ELEMENTS // symbols.shape[1])
        params.f64(step).uint(rows_per_block)
        for m in mean:
            params.sint(int(m))
        params.u8_array(tables)

        out = io.BytesIO()
        header = Header(self.modality, self.name, self.version, self.weights_hash,
                        MediaInfo(channels=x.shape[-1], bit_depth=32, frame_count=rows.shape[0]))
        with ContainerWriter(out, header) as writer:
            writer.write_chunk(ChunkType.PARAMS, params.to_bytes())
            for start in range(0, symbols.shape[0], rows_per_block):
                block = symbols[start : start + rows_per_block]
                index = np.broadcast_to(tables, block.shape)
                writer.write_chunk(ChunkType.DATA, encode_symbols(self.entropy_model.bank, block, index))
        return out.getvalue()

    def decode(self, data: bytes) -> Tensor:
        reader = ContainerReader(io.BytesIO(data))
        self.check_header(reader.header)
        chunks = iter(reader)
        first = next(chunks, None)
        if first is None or first.type != ChunkType.PARAMS:
            raise FormatError("tensor stream must start with a PARAMS chunk")
        shape, step, rows_per_block, mean, tables = self._read_params(first.payload)
        channels = shape[-1]
        rows = math.prod(shape) // channels
        blocks, done = [], 0  # grow with the data actually present, not with the declared shape
        for chunk in chunks:
            if chunk.type != ChunkType.DATA or done >= rows:
                raise FormatError("unexpected chunk after the tensor's data")
            n = min(rows_per_block, rows - done)
            index = np.broadcast_to(tables, (n, channels))
            symbols = decode_symbols(self.entropy_model.bank, chunk.payload, index).reshape(n, channels)
            blocks.append(((symbols.astype(np.float64) + mean) * step).astype(np.float32))
            done += n
        if done != rows:
            raise FormatError(f"stream holds {done} of {rows} rows")
        return torch.from_numpy(np.concatenate(blocks)).reshape(shape)

    def _read_params(self, payload: bytes):
        p = PayloadReader(payload, "tensor params")
        ndim = p.uint(MAX_NDIM)
        if ndim == 0:
            raise FormatError("tensor params: zero dimensions")
        shape = tuple(p.uint(MAX_ELEMENTS) for _ in range(ndim))
        if 0 in shape or math.prod(shape) > MAX_ELEMENTS:
            raise LimitError(f"tensor shape {shape} is empty or exceeds {MAX_ELEMENTS} elements")
        step = p.f64()
        if not step > 0:
            raise FormatError(f"tensor params: step {step} is not positive")
        rows_per_block = p.uint(MAX_ELEMENTS)
        if not 0 < rows_per_block * shape[-1] <= MAX_BLOCK_ELEMENTS:
            raise LimitError(f"tensor params: {rows_per_block} rows per block of {shape[-1]} is out of range")
        mean = np.array([p.sint(2**31) for _ in range(shape[-1])], dtype=np.float64)
        tables = p.u8_array(shape[-1]).astype(np.int64)
        p.done()
        if tables.max() >= self.entropy_model.bank.num_tables:
            raise FormatError("tensor params: table index out of range")
        return shape, step, rows_per_block, mean, tables
