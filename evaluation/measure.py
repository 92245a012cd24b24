"""Measure one (file, codec, setting): encode, decode, time both, compute the modality's metrics.

Runs inside worker processes; codecs and decoded reference media are cached per process.
"""

from __future__ import annotations

import json
import math
import time
from functools import lru_cache
from pathlib import Path

import torch

from ..bitstream import Modality
from ..codecs import load
from ..media import read_audio, read_image, read_video
from ..metrics.rate import bits_per_element


@lru_cache(maxsize=16)
def _codec(name: str, setting: str):
    return load(name, **json.loads(setting))


@lru_cache(maxsize=4)
def _reference(path: str, modality: Modality, max_frames: int | None):
    if modality == Modality.IMAGE:
        return (read_image(Path(path)),)
    if modality == Modality.AUDIO:
        return read_audio(Path(path))
    return read_video(Path(path), max_frames=max_frames)


def _timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def measure(path: str, relname: str, modality: Modality, codec: str, setting: str, options: dict) -> dict:
    """One result row. Failures are recorded in the row (``error``) rather than raised."""
    row = {"file": relname, "modality": modality.name.lower(), "codec": codec, "setting": setting}
    try:
        torch.set_num_threads(1)  # comparable timings whatever the worker count
        media = _reference(path, modality, options.get("max_frames"))
        coder = _codec(codec, setting)
        data, row["encode_s"] = _timed(coder.encode, *media)
        decoded, row["decode_s"] = _timed(coder.decode, data)
        row["bytes"] = len(data)
        row.update(_rate(modality, media, len(data)))
        row.update(_METRICS[modality](media, decoded, options))
    except Exception as exc:  # a codec that fails on one file must not stop the evaluation
        row["error"] = f"{type(exc).__name__}: {exc}"
    return row


def _rate(modality: Modality, media, num_bytes: int) -> dict:
    if modality == Modality.IMAGE:
        image = media[0]
        return {"bpp": bits_per_element(num_bytes, image.shape[-1] * image.shape[-2])}
    if modality == Modality.AUDIO:
        waveform, rate = media
        return {"kbps": 8 * num_bytes / (waveform.shape[-1] / rate) / 1000}
    frames, fps = media
    return {"bpp": bits_per_element(num_bytes, frames.shape[0] * frames.shape[-1] * frames.shape[-2]),
            "bits_per_frame": bits_per_element(num_bytes, frames.shape[0]),
            "kbps": 8 * num_bytes / (frames.shape[0] / fps) / 1000}


def _image_metrics(media, decoded, options: dict) -> dict:
    from ..metrics.image import image_metrics

    ref = media[0]
    row = image_metrics(ref, decoded)
    if options.get("perception"):
        from ..metrics import perception

        available = perception.availability()
        if available.get("classifier") is None:
            row.update(perception.classifier_agreement(ref.unsqueeze(0), decoded.unsqueeze(0)))
            row["deep_feature_distance"] = perception.deep_feature_distance(ref, decoded)
        if available.get("faces") is None and available.get("people") is None:
            row.update(perception.detection_agreement(ref, decoded))
    return row


def _audio_metrics(media, decoded, options: dict) -> dict:
    from ..metrics.audio import audio_metrics

    (ref, rate), (est, est_rate) = media, decoded
    if est_rate != rate:
        raise ValueError(f"codec returned {est_rate} Hz for {rate} Hz input")
    speech = bool(options.get("speech"))
    row = audio_metrics(ref, est, rate, speech=speech)
    if speech and options.get("perception"):
        from ..metrics import perception

        if perception.availability().get("asr") is None:
            agreement = perception.asr_agreement(ref, est, rate)
            row.update({k: v for k, v in agreement.items() if isinstance(v, (int, float))})
    return row


def _video_metrics(media, decoded, options: dict) -> dict:
    from ..metrics.video import video_metrics, vmaf

    (ref, fps), (est, _) = media, decoded
    row = {k: v for k, v in video_metrics(ref, est).items() if not isinstance(v, list)}
    if options.get("vmaf", True):
        score = vmaf(ref, est, fps)
        row["vmaf"] = math.nan if score is None else score
    return row


_METRICS = {Modality.IMAGE: _image_metrics, Modality.AUDIO: _audio_metrics, Modality.VIDEO: _video_metrics}
