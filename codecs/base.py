"""The interface every codec shares, and the registry that finds codecs by name.

A codec turns media (a tensor) into the bytes of a complete ``.pcdc`` stream and back.  It composes the
project's parts -- a quantizer, an entropy model, the coder, the container -- and never re-implements them.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable

from torch import Tensor

from ..bitstream import Header, ModelMismatchError, Modality


class Codec(ABC):
    name: str
    modality: Modality
    version: int

    @property
    @abstractmethod
    def weights_hash(self) -> bytes:
        """sha256 of the weights (or tables) this codec codes with; written into every stream."""

    @abstractmethod
    def encode(self, media: Tensor, **options: Any) -> bytes:
        ...

    @abstractmethod
    def decode(self, data: bytes) -> Tensor:
        ...

    def check_header(self, header: Header) -> None:
        """Refuse streams this codec did not write, with a message that says which codec would read them."""
        if header.codec != self.name or header.modality != self.modality:
            raise ModelMismatchError(f"stream was written by codec {header.codec!r} ({header.modality.name.lower()}), "
                                     f"not {self.name!r}")
        if header.codec_version != self.version:
            raise ModelMismatchError(f"stream needs {self.name} version {header.codec_version}, "
                                     f"this is version {self.version}")
        if header.weights_hash != self.weights_hash:
            raise ModelMismatchError(f"stream was coded with other {self.name} weights "
                                     f"(sha256 {header.weights_hash.hex()[:16]}..., loaded {self.weights_hash.hex()[:16]}...)")


def sha256_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).digest()


@dataclass(frozen=True)
class CodecEntry:
    name: str
    modality: Modality
    summary: str
    factory: Callable[..., Codec]


_REGISTRY: dict[str, CodecEntry] = {}


def register_codec(name: str, modality: Modality, summary: str) -> Callable:
    """Class decorator: make a codec loadable by name with :func:`load`."""
    def wrap(factory: Callable[..., Codec]) -> Callable[..., Codec]:
        if name in _REGISTRY:
            raise ValueError(f"codec {name!r} is registered twice")
        _REGISTRY[name] = CodecEntry(name, modality, summary, factory)
        return factory
    return wrap


def available_codecs() -> list[CodecEntry]:
    return sorted(_REGISTRY.values(), key=lambda e: e.name)


def load(name: str, **options: Any) -> Codec:
    """Instantiate a registered codec with its shipped weights; nothing is downloaded."""
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise KeyError(f"unknown codec {name!r}; available: {known}")
    return _REGISTRY[name].factory(**options)
