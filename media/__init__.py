"""Media files <-> tensors in the layouts codecs take (see ``codecs/base.py``):

    image  read_image(path)        -> float32 (C, H, W) in [0, 1], C in {1, 3}
    audio  read_audio(path)        -> float32 (channels, samples) in [-1, 1], sample_rate
    video  read_video(path)        -> float32 (T, 3, H, W) in [0, 1], fps

with writers for each (``write_image``, ``write_audio``, ``write_video``) and streaming readers for long
media (``iter_audio_blocks``, ``iter_video_frames``).  Every reader refuses empty, corrupt or out-of-policy
files with a ``ValueError`` that names the file; each module's docstring states its policy.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..bitstream import Modality
from .audio import (AUDIO_FORMATS, AUDIO_READ_ONLY, AudioInfo, audio_bytes, audio_info, iter_audio_blocks,
                    read_audio, write_audio)
from .image import IMAGE_FORMATS, decode_image_bytes, image_bytes, read_image, write_image
from .video import VIDEO_SUFFIXES, VideoInfo, iter_video_frames, read_video, video_info, write_video

_SUFFIXES: dict[Modality, tuple[str, ...]] = {
    Modality.IMAGE: tuple(IMAGE_FORMATS),
    Modality.AUDIO: tuple(AUDIO_FORMATS) + AUDIO_READ_ONLY,
    Modality.VIDEO: VIDEO_SUFFIXES,
}


def modality_of(path: str | os.PathLike) -> Modality:
    """The modality a media file holds, judged by its extension (``.ogg`` is audio, ``.webm`` video)."""
    suffix = Path(path).suffix.lower()
    for modality, suffixes in _SUFFIXES.items():
        if suffix in suffixes:
            return modality
    known = "; ".join(f"{m.name.lower()}: {' '.join(s)}" for m, s in _SUFFIXES.items())
    raise ValueError(f"{path}: unknown media extension {suffix!r} (known -- {known})")


__all__ = [
    "AudioInfo", "VideoInfo", "audio_bytes", "audio_info", "decode_image_bytes", "image_bytes",
    "iter_audio_blocks", "iter_video_frames", "modality_of", "read_audio", "read_image", "read_video",
    "video_info", "write_audio", "write_image", "write_video",
]
