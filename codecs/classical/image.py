"""Classical image codecs through Pillow: JPEG, WebP, AVIF, JPEG 2000.

    encode(image float32 (C, H, W) in [0, 1], C in {1, 3}) -> bytes of a .jpg / .webp / .avif / .jp2 file
    decode(bytes) -> float32 (C, H, W), the same C

The image is rounded to 8 bits first (as any image file stores it).  Grayscale stays grayscale: JPEG,
AVIF (4:0:0) and JPEG 2000 code one channel natively.  WebP has no grayscale mode, so a one-channel image
is coded as RGB (neutral chroma costs almost nothing) and marked with the EXIF tag PhotometricInterpretation
= 1 (BlackIsZero); decode returns one channel when it sees the mark.  The mark costs about 50 bytes per
grayscale file and nothing for colour images.
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image
from torch import Tensor

from ...bitstream import Modality
from ...media.image import decode_image_bytes, to_pil
from ..base import Codec
from . import pillow_plugin_missing, register_if_available

_PHOTOMETRIC_INTERPRETATION = 262  # EXIF / TIFF tag; value 1 = BlackIsZero, i.e. grayscale
_SUBSAMPLING = ("4:4:4", "4:2:2", "4:2:0")


class PillowImageCodec(Codec):
    """An image codec that is one Pillow ``save`` call; subclasses give the format and its options."""

    modality = Modality.IMAGE
    pillow_format: str
    codes_grayscale = True  # False: the format has no one-channel mode and L images are coded as RGB

    def save_options(self, channels: int) -> dict[str, Any]:
        raise NotImplementedError

    def encode(self, media: Tensor) -> bytes:
        image = to_pil(media)
        options = self.save_options(1 if image.mode == "L" else 3)
        if not self.codes_grayscale:
            image = image.convert("RGB")  # R = G = B: neutral chroma, which costs almost nothing
        buffer = io.BytesIO()
        image.save(buffer, format=self.pillow_format, **options)
        return buffer.getvalue()

    def decode(self, data: bytes) -> Tensor:
        return decode_image_bytes(data, f"{self.name} data")


def _check_quality(quality: int, low: int = 1) -> int:
    if not (isinstance(quality, int) and low <= quality <= 100):
        raise ValueError(f"quality must be an integer in [{low}, 100], got {quality!r}")
    return quality


def _check_subsampling(subsampling: str) -> str:
    if subsampling not in _SUBSAMPLING:
        raise ValueError(f"subsampling must be one of {', '.join(_SUBSAMPLING)}, got {subsampling!r}")
    return subsampling


@register_if_available(pillow_plugin_missing("jpg"), "jpeg", Modality.IMAGE,
                       "JPEG (libjpeg-turbo via Pillow), quality 1-100, 4:2:0, optimized Huffman tables",
                       sweep=tuple({"quality": q} for q in (5, 10, 20, 35, 50, 70, 85, 95)))
class JpegCodec(PillowImageCodec):
    name = "jpeg"
    pillow_format = "JPEG"

    def __init__(self, quality: int = 75, subsampling: str = "4:2:0") -> None:
        self.quality = _check_quality(quality)
        self.subsampling = _check_subsampling(subsampling)

    def save_options(self, channels: int) -> dict[str, Any]:
        return {"quality": self.quality, "subsampling": self.subsampling, "optimize": True}


@register_if_available(pillow_plugin_missing("webp"), "webp", Modality.IMAGE,
                       "WebP lossy (libwebp via Pillow), quality 0-100, method 6 (slowest, best)",
                       sweep=tuple({"quality": q} for q in (5, 15, 30, 50, 70, 85, 95)))
class WebpCodec(PillowImageCodec):
    name = "webp"
    pillow_format = "WEBP"
    codes_grayscale = False

    def __init__(self, quality: int = 75, method: int = 6) -> None:
        self.quality = _check_quality(quality, low=0)
        if method not in range(7):
            raise ValueError(f"method must be 0..6, got {method!r}")
        self.method = method

    def save_options(self, channels: int) -> dict[str, Any]:
        options: dict[str, Any] = {"quality": self.quality, "method": self.method}
        if channels == 1:
            exif = Image.Exif()
            exif[_PHOTOMETRIC_INTERPRETATION] = 1
            options["exif"] = exif.tobytes()
        return options

    def decode(self, data: bytes) -> Tensor:
        image = decode_image_bytes(data, "webp data")
        with Image.open(io.BytesIO(data)) as header:  # the EXIF block sits before the pixels: no decode
            grayscale = header.getexif().get(_PHOTOMETRIC_INTERPRETATION) == 1
        if grayscale and image.shape[0] == 3:
            # Luma as Pillow's convert("L") computes it; with neutral chroma R = G = B, so this is Y.
            image = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]).unsqueeze(0)
            image = (image * 255).round().clamp(0, 255) / 255
        return image


@register_if_available(pillow_plugin_missing("avif"), "avif", Modality.IMAGE,
                       "AVIF (libavif + libaom via Pillow), quality 0-100, speed 4, 4:2:0",
                       sweep=tuple({"quality": q} for q in (10, 25, 40, 55, 70, 85, 95)))
class AvifCodec(PillowImageCodec):
    name = "avif"
    pillow_format = "AVIF"

    def __init__(self, quality: int = 75, speed: int = 4, subsampling: str = "4:2:0") -> None:
        self.quality = _check_quality(quality, low=0)
        if speed not in range(11):
            raise ValueError(f"speed must be 0..10, got {speed!r}")
        self.speed = speed
        self.subsampling = _check_subsampling(subsampling)

    def save_options(self, channels: int) -> dict[str, Any]:
        # One thread: libavif would otherwise use every core and timings would depend on the machine.
        return {"quality": self.quality, "speed": self.speed, "max_threads": 1,
                "subsampling": "4:0:0" if channels == 1 else self.subsampling}


@register_if_available(pillow_plugin_missing("jpg_2000"), "jpeg2000", Modality.IMAGE,
                       "JPEG 2000 (OpenJPEG via Pillow, .jp2), 9/7 wavelet, rate set by compression ratio",
                       sweep=tuple({"ratio": r} for r in (300, 150, 80, 40, 20, 10, 5)))
class Jpeg2000Codec(PillowImageCodec):
    """``ratio`` is OpenJPEG's compression ratio against the raw 8-bit samples: 24 / ratio bits per pixel
    for RGB, 8 / ratio for grayscale (the JP2 boxes come on top)."""

    name = "jpeg2000"
    pillow_format = "JPEG2000"

    def __init__(self, ratio: float = 20) -> None:
        if not ratio >= 1:
            raise ValueError(f"ratio must be >= 1, got {ratio!r}")
        self.ratio = float(ratio)

    def save_options(self, channels: int) -> dict[str, Any]:
        return {"quality_mode": "rates", "quality_layers": [self.ratio], "irreversible": True}
