"""Media files <-> tensors for the CLI. Tensor files: ``.npy`` (loaded without pickle) and ``.safetensors``
(exactly one tensor); images through :mod:`polycodec.media` (PNG, JPEG, WebP, BMP, TIFF, ... in; format
of the output by its extension). Audio and video join here with their codecs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save

from ..bitstream import Modality
from ..media import IMAGE_FORMATS, image_bytes, read_image

TENSOR_SUFFIXES = (".npy", ".safetensors")


def read_media(path: Path, modality: Modality) -> torch.Tensor:
    suffix = path.suffix.lower()
    if modality == Modality.IMAGE:
        return read_image(path)
    if modality != Modality.TENSOR or suffix not in TENSOR_SUFFIXES:
        raise ValueError(f"{path}: unsupported input for a {modality.name.lower()} codec "
                         f"(tensor files: {', '.join(TENSOR_SUFFIXES)})")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty")
    if suffix == ".npy":
        return torch.from_numpy(np.load(path, allow_pickle=False))
    tensors = load_file(str(path))
    if len(tensors) != 1:
        raise ValueError(f"{path} holds {len(tensors)} tensors; the tensor codec codes exactly one per stream")
    return next(iter(tensors.values()))


def media_bytes(media: torch.Tensor, path: Path) -> bytes:
    """Serialise decoded media in the format named by ``path``'s extension."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_FORMATS:
        if media.ndim != 3 or media.shape[0] not in (1, 3):
            raise ValueError(f"{path}: the stream holds a {tuple(media.shape)} tensor, not an image")
        return image_bytes(media, IMAGE_FORMATS[suffix])
    if suffix == ".npy":
        buffer = io.BytesIO()
        np.save(buffer, media.numpy(), allow_pickle=False)
        return buffer.getvalue()
    if suffix == ".safetensors":
        return save({"tensor": media.contiguous()})
    raise ValueError(f"{path}: cannot write decoded media as {suffix!r} "
                     f"(tensors: {', '.join(TENSOR_SUFFIXES)}; images: {', '.join(IMAGE_FORMATS)})")
