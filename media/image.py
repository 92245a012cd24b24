"""Image files <-> float tensors (C, H, W) in [0, 1], C in {1, 3}, through Pillow.

Reading policy (one policy for every format, so that a data set decodes the same way everywhere):

- 8-bit only.  16-bit and 32-bit images (PNG/TIFF ``I;16``, ``I``, ``F`` modes and 16-bit RGB, which Pillow
  would otherwise truncate to 8 bits silently) raise ``ValueError``: convert them explicitly first.
- Transparency is never guessed away.  An alpha channel (RGBA, LA, or a palette / tRNS transparency entry)
  is dropped only when every pixel is fully opaque; otherwise ``ValueError`` ("has transparency; flatten it
  first") -- flattening onto black or white would silently change the pixels a codec is scored on.
- Other modes become RGB (palette, CMYK, YCbCr, ...) or L (1-bit, L).
- The EXIF orientation is applied, so the tensor is upright as a viewer shows it.
- Multi-frame files (animated WebP/AVIF, multi-page TIFF) give their first frame.
- Sizes are checked from the header before any pixel is decoded: more than ``MAX_PIXELS`` pixels or a side
  over ``MAX_SIDE`` raises ``ValueError``.  Pillow's own decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``)
  may refuse a smaller image first; that refusal is a ``ValueError`` too.
- An empty, truncated or unreadable file raises ``ValueError`` naming the file.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

from ..bitstream.files import write_atomic

MAX_PIXELS = 1 << 28
MAX_SIDE = 65535

# Extension -> Pillow format name.  Reading accepts anything Pillow identifies; these are the names
# ``write_image`` understands and ``modality_of`` calls images.
IMAGE_FORMATS = {
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF",
    ".tiff": "TIFF", ".avif": "AVIF", ".jp2": "JPEG2000", ".j2k": "JPEG2000",
}

# Written files are inputs to later measurements, so lossy formats default to their best settings; pass
# options to ``image_bytes`` / ``write_image`` to override.
_DEFAULT_SAVE_OPTIONS: dict[str, dict[str, Any]] = {
    "JPEG": {"quality": 95, "subsampling": 0},
    "WEBP": {"lossless": True},
    "AVIF": {"quality": 100, "subsampling": "4:4:4"},
}

_HIGH_DEPTH_MODES = {"I", "F", "I;16", "I;16L", "I;16B", "I;16N", "I;16S", "I;32", "I;32S"}
_RAW_BASES_WITH_DEPTH = {"L", "LA", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "I", "F"}


def read_image(path: str | os.PathLike) -> Tensor:
    """Read an image file as float32 ``(C, H, W)`` in [0, 1], ``C`` in {1, 3} (policy: module docstring)."""
    path = Path(path)
    if path.stat().st_size == 0:  # stat first: a missing file stays FileNotFoundError
        raise ValueError(f"{path} is empty")
    with open(path, "rb") as f:
        return _decode(f, str(path))


def decode_image_bytes(data: bytes, name: str = "image data") -> Tensor:
    """Like :func:`read_image`, from the bytes of a file in memory; ``name`` appears in error messages."""
    if not data:
        raise ValueError(f"{name} is empty")
    return _decode(io.BytesIO(data), name)


def _decode(f: BinaryIO, name: str) -> Tensor:
    try:
        with Image.open(f) as im:
            _check_header(im, name)
            im = ImageOps.exif_transpose(im)  # decodes the pixels; everything before this read the header only
            im = _to_l_or_rgb(im, name)
            pixels = np.array(im, dtype=np.uint8)  # a copy: torch wants writable memory
    except Image.DecompressionBombError as e:
        raise ValueError(f"{name}: {e}") from e
    except Image.UnidentifiedImageError as e:  # its message names a file object, not the file
        raise ValueError(f"{name} is not an image file Pillow can identify") from e
    except (OSError, SyntaxError, EOFError) as e:  # Pillow's ways of saying "not an image" or "truncated"
        raise ValueError(f"{name} is not a readable image ({e})") from e
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))).float().div_(255)


def _check_header(im: Image.Image, name: str) -> None:
    width, height = im.size
    if width == 0 or height == 0:
        raise ValueError(f"{name} has no pixels ({width}x{height})")
    if max(width, height) > MAX_SIDE or width * height > MAX_PIXELS:
        raise ValueError(f"{name} is {width}x{height}: over the limit of {MAX_SIDE} per side and "
                         f"{MAX_PIXELS} pixels")
    if im.mode in _HIGH_DEPTH_MODES or _raw_depth_over_8(im):
        raise ValueError(f"{name} has more than 8 bits per channel (mode {im.mode}); only 8-bit images are "
                         f"read -- convert it to 8 bits first")


def _raw_depth_over_8(im: Image.Image) -> bool:
    """True for files whose samples are stored with 16 or 32 bits although Pillow reports an 8-bit mode."""
    for tile in getattr(im, "tile", None) or ():
        args = tile[3] if len(tile) > 3 else None
        rawmode = args if isinstance(args, str) else args[0] if isinstance(args, tuple) and args else None
        if isinstance(rawmode, str):
            # "RGB;16B" is 16 bits per sample; "BGR;16" (a 5-6-5 BMP) has a base we do not list and passes.
            base, _, rest = rawmode.partition(";")
            if base in _RAW_BASES_WITH_DEPTH and rest[:2] in ("16", "32"):
                return True
    return False


def _to_l_or_rgb(im: Image.Image, name: str) -> Image.Image:
    if im.mode in ("P", "PA", "L", "RGB") and "transparency" in im.info:
        im = im.convert("LA" if im.mode == "L" else "RGBA")
    if im.mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        low, _ = im.getchannel("A").getextrema()
        if low != 255:
            raise ValueError(f"{name} has transparency; flatten it first")
        return im.convert("L" if im.mode in ("LA", "La") else "RGB")
    if im.mode in ("1", "L"):
        return im.convert("L")
    return im.convert("RGB")


def to_pil(image: Tensor) -> Image.Image:
    """Float ``(C, H, W)`` in [0, 1], ``C`` in {1, 3} -> an 8-bit Pillow image (L or RGB); values are
    rounded to the nearest of the 256 levels and clipped to [0, 1]."""
    x = torch.as_tensor(image).detach().cpu()
    if x.ndim != 3 or x.shape[0] not in (1, 3) or x.shape[1] == 0 or x.shape[2] == 0:
        raise ValueError(f"need an image tensor (C, H, W) with C in {{1, 3}}, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"need a float image in [0, 1], got {x.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError("image holds NaN or infinite values")
    pixels = (x.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(pixels[:, :, 0], "L") if x.shape[0] == 1 else Image.fromarray(pixels, "RGB")


def image_bytes(image: Tensor, format: str = "PNG", **options: Any) -> bytes:
    """Encode float ``(C, H, W)`` in [0, 1] as the bytes of an image file in Pillow ``format``.

    ``options`` go to Pillow's ``save``; without them, lossy formats use high-quality defaults (JPEG quality
    95 without chroma subsampling, lossless WebP, AVIF quality 100 at 4:4:4).
    """
    format = format.upper()
    im = to_pil(image)
    buffer = io.BytesIO()
    im.save(buffer, format=format, **(_DEFAULT_SAVE_OPTIONS.get(format, {}) | options))
    return buffer.getvalue()


def write_image(image: Tensor, path: str | os.PathLike, **options: Any) -> Path:
    """Write float ``(C, H, W)`` in [0, 1] to ``path``, in the format its extension names (see
    :func:`image_bytes`).  The file appears atomically; an existing one is replaced."""
    path = Path(path)
    format = IMAGE_FORMATS.get(path.suffix.lower())
    if format is None:
        raise ValueError(f"{path}: cannot write images as {path.suffix!r} (known: {', '.join(IMAGE_FORMATS)})")
    return write_atomic(path, image_bytes(image, format, **options), force=True)
