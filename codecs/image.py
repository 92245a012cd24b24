"""The learned image codec: :class:`~polycodec.models.image.ImageModel` + the shared coder + the container.

    image (C, H, W) in [0, 1] --pad to x64 (edge replicate)--> model.compress (one ANS stream)
      --> .pcdc: header (size, channels, weights sha256) + PARAMS (quality, z grid) + DATA (symbols)

Grayscale images are coded as three equal channels and decoded back to one.  RGBA and 16-bit inputs are
refused by :func:`polycodec.media.read_image` before they get here.  Weights: the shipped ones
(``codecs/weights/image/``, loaded by ``polycodec.load("image", quality=q)``) or any folder written by
``polycodec export`` (``polycodec.load("image", weights="path/to/exported")``).
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..bitstream import (ChunkType, ContainerReader, ContainerWriter, FormatError, Header, LimitError, MediaInfo,
                         Modality, PayloadReader, PayloadWriter)
from ..entropy import SymbolDecoder, SymbolEncoder
from ..models.image import PAD
from .base import StreamCodec, register_codec, sha256_file

WEIGHTS = Path(__file__).parent / "weights" / "image"
MAX_SIDE = 1 << 14  # 16384 px
MAX_PIXELS = 1 << 23  # 8.4 Mpx: the synthesis transform's activations stay under ~3 GB; tiling is future work


def _check_size(height: int, width: int, error: type[Exception] = ValueError) -> None:
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE and height * width <= MAX_PIXELS):
        raise error(f"image of {width}x{height} px is outside this codec's limits "
                    f"(sides 1..{MAX_SIDE}, at most {MAX_PIXELS} pixels)")


def check_image(image: Tensor) -> Tensor:
    """Validate a float (C, H, W) image for coding; returns it on the CPU, clamped and on the 8-bit grid."""
    if image.ndim != 3 or image.shape[0] not in (1, 3) or not image.is_floating_point():
        raise ValueError(f"expected a float image (C, H, W) with C in {{1, 3}}, got {image.dtype} {tuple(image.shape)}")
    _check_size(image.shape[1], image.shape[2])
    if not torch.isfinite(image).all():
        raise ValueError("image holds NaN or infinite values")
    return torch.round(image.detach().float().cpu().clamp(0, 1) * 255) / 255


def write_image_stream(codec: StreamCodec, width: int, height: int, channels: int, params: bytes,
                       payload: bytes) -> bytes:
    """The layout both image codecs share: header (size, channels), one PARAMS and one DATA chunk."""
    out = io.BytesIO()
    header = Header(codec.modality, codec.name, codec.version, codec.weights_hash,
                    MediaInfo(width=width, height=height, channels=channels, bit_depth=8))
    with ContainerWriter(out, header) as writer:
        writer.write_chunk(ChunkType.PARAMS, params)
        writer.write_chunk(ChunkType.DATA, payload)
    return out.getvalue()


def read_image_stream(codec: StreamCodec, data: bytes) -> tuple[Header, bytes, bytes]:
    """Check a stream written by :func:`write_image_stream` for ``codec``: (header, PARAMS, DATA payloads)."""
    reader = ContainerReader(io.BytesIO(data))
    codec.check_header(reader.header)
    media = reader.header.media
    _check_size(media.height, media.width, LimitError)
    if media.channels not in (1, 3):
        raise FormatError(f"{codec.name} streams hold 1 or 3 channels, not {media.channels}")
    chunks = list(reader)
    if [c.type for c in chunks] != [ChunkType.PARAMS, ChunkType.DATA]:
        raise FormatError(f"{codec.name} stream must hold one PARAMS and one DATA chunk")
    return reader.header, chunks[0].payload, chunks[1].payload


def load_image_model(folder: Path):
    """An exported model folder (``polycodec export``) -> (model in eval mode, sha256 of its weights)."""
    from ..training.export import WEIGHTS as WEIGHTS_FILE, load_exported

    return load_exported(folder), sha256_file(str(Path(folder) / WEIGHTS_FILE))


@register_codec("image", Modality.IMAGE, "learned transform coding, hyperprior + channel/checkerboard context, "
                "quality 1-6", sweep=tuple({"quality": q} for q in range(1, 7)))
class ImageCodec(StreamCodec):
    name = "image"
    modality = Modality.IMAGE
    version = 1

    def __init__(self, quality: int = 3, weights: str | Path = WEIGHTS) -> None:
        self.model, self._hash = load_image_model(Path(weights))
        qualities = self.model.num_qualities
        if not (isinstance(quality, int) and 1 <= quality <= qualities):
            raise ValueError(f"quality must be an integer in 1..{qualities}, got {quality!r}")
        self.quality = quality

    @property
    def weights_hash(self) -> bytes:
        return self._hash

    def encode(self, media: Tensor) -> bytes | list[bytes]:
        """(C, H, W) -> bytes of one .pcdc stream; (B, C, H, W) -> one stream per image."""
        if media.ndim == 4:
            return [self.encode(image) for image in media]
        image = check_image(media)
        channels, height, width = image.shape
        x = image.expand(3, -1, -1).unsqueeze(0)
        padded = F.pad(x, (0, -width % PAD, 0, -height % PAD), mode="replicate")
        encoder = SymbolEncoder()
        with torch.no_grad():
            z_h, z_w = self.model.compress(padded, self.quality - 1, encoder)
        params = PayloadWriter().uint(self.quality).uint(z_h).uint(z_w).to_bytes()
        return write_image_stream(self, width, height, channels, params, encoder.finish())

    def decode(self, data: bytes | list[bytes]) -> Tensor | list[Tensor]:
        """Bytes of one stream -> (C, H, W) in [0, 1] on the 8-bit grid; a list of streams -> a list."""
        if isinstance(data, list):
            return [self.decode(d) for d in data]
        header, params_payload, payload = read_image_stream(self, data)
        media = header.media
        params = PayloadReader(params_payload, "image params")
        quality, z_h, z_w = params.uint(self.model.num_qualities), params.uint(MAX_SIDE), params.uint(MAX_SIDE)
        params.done()
        if quality < 1 or (z_h, z_w) != (-(-media.height // PAD), -(-media.width // PAD)):
            raise FormatError("image params disagree with the header's image size")
        decoder = SymbolDecoder(payload)
        with torch.no_grad():
            x_hat = self.model.decompress(decoder, quality - 1, (z_h, z_w))
        decoder.finish()
        image = x_hat[0, :, : media.height, : media.width].clamp(0, 1)
        if media.channels == 1:
            image = image.mean(dim=0, keepdim=True)
        return torch.round(image * 255) / 255
