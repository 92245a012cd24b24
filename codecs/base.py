"""The interface every codec shares, and the registry that finds codecs by name.

A :class:`Codec` turns media into bytes and back.  polycodec's own codecs (:class:`StreamCodec`) write
complete ``.pcdc`` streams and compose the project's parts -- a quantizer, an entropy model, the coder, the
container -- never re-implementing them; classical codecs (JPEG, Opus, x264, ...) sit behind the same
interface and write their native files, so evaluations compare real file sizes like with like.

Media conventions, per modality:

    TENSOR  encode(x)                    any float tensor                 decode -> tensor
    IMAGE   encode(image)                float32 (C, H, W), C in {1, 3},  decode -> same layout
                                         values in [0, 1] (8-bit / 255)
    AUDIO   encode(waveform, sample_rate) float32 (channels, samples)     decode -> (waveform, sample_rate)
                                         in [-1, 1]
    VIDEO   encode(frames, fps)          float32 (T, 3, H, W) in [0, 1],  decode -> (frames, fps)
                                         fps a float

Rate knobs (quality, bitrate, step, crf) are constructor options: ``load("jpeg", quality=75)``.  Each
registry entry lists a default ``sweep`` of such options for rate-distortion evaluation.
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

    @abstractmethod
    def encode(self, media: Tensor, *args: Any, **options: Any) -> bytes:
        """Media (see the module docstring for each modality's layout) -> the bytes of one file."""

    @abstractmethod
    def decode(self, data: bytes) -> Any:
        """The bytes of one file -> media in the same layout ``encode`` takes."""


class StreamCodec(Codec):
    """A polycodec codec: writes ``.pcdc`` streams that name the codec, its version and its weights."""

    version: int  # the stream version this codec writes
    fits_per_input = False  # True when encoding optimises a model per input (minutes, not milliseconds)

    @property
    def readable_versions(self) -> tuple[int, ...]:
        """Stream versions this codec decodes: the one it writes, unless a codec keeps older ones readable."""
        return (self.version,)

    @property
    @abstractmethod
    def weights_hash(self) -> bytes:
        """sha256 of the weights (or tables) this codec codes with; written into every stream."""

    def check_header(self, header: Header) -> None:
        """Refuse streams this codec did not write, with a message that says which codec would read them."""
        if header.codec != self.name or header.modality != self.modality:
            raise ModelMismatchError(f"stream was written by codec {header.codec!r} ({header.modality.name.lower()}), "
                                     f"not {self.name!r}")
        if header.codec_version not in self.readable_versions:
            readable = ", ".join(map(str, self.readable_versions))
            raise ModelMismatchError(f"stream needs {self.name} version {header.codec_version}, "
                                     f"this is version {self.version} (decodes version {readable})")
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
    sweep: tuple[dict, ...] = ()  # constructor options spanning the codec's useful rates, low to high


_REGISTRY: dict[str, CodecEntry] = {}
_ALIASES: dict[str, str] = {}


def register_codec(name: str, modality: Modality, summary: str, sweep: tuple[dict, ...] = (),
                   aliases: tuple[str, ...] = ()) -> Callable:
    """Class decorator: make a codec loadable by name (or by one of its short aliases) with :func:`load`."""
    def wrap(factory: Callable[..., Codec]) -> Callable[..., Codec]:
        if name in _REGISTRY or name in _ALIASES or any(a in _REGISTRY or a in _ALIASES for a in aliases):
            raise ValueError(f"codec {name!r} (or an alias of it) is registered twice")
        _REGISTRY[name] = CodecEntry(name, modality, summary, factory, tuple(sweep))
        _ALIASES.update({alias: name for alias in aliases})
        return factory
    return wrap


def available_codecs() -> list[CodecEntry]:
    return sorted(_REGISTRY.values(), key=lambda e: e.name)


def codec_entry(name: str) -> CodecEntry:
    name = _ALIASES.get(name, name)
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise KeyError(f"unknown codec {name!r}; available: {known}")
    return _REGISTRY[name]


def load(name: str, **options: Any) -> Codec:
    """Instantiate a registered codec with its shipped weights; nothing is downloaded."""
    return codec_entry(name).factory(**options)
