"""Machine-perception metrics on shipped data: EfficientNet-Lite0 on Grace Hopper's portrait (matplotlib's
sample image), face / person detection, word error rate by hand, and PocketSphinx determinism."""

import functools
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from polycodec.metrics import perception as P

ACADEMIC_GOWN, MILITARY_UNIFORM = 400, 652  # ImageNet-1k class indices


def needs(metric: str) -> None:
    reason = P.availability()[metric]
    if reason is not None:
        pytest.skip(reason)


@functools.lru_cache(maxsize=1)
def grace_hopper() -> torch.Tensor:
    """(3, 600, 512) RGB in [0, 1]: a portrait (one frontal face, no full-body person)."""
    matplotlib = pytest.importorskip("matplotlib")
    from PIL import Image

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not path.is_file():
        pytest.skip(f"sample image not shipped with this matplotlib: {path}")
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)


def blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    from torchvision.transforms.functional import gaussian_blur

    return gaussian_blur(image, kernel_size=int(6 * sigma) | 1, sigma=sigma)


# ------------------------------------------------------------------------------------ availability


def test_availability_reports_every_metric_with_a_reason_or_none():
    report = P.availability()
    assert set(report) == {"classifier", "faces", "people", "asr"}
    assert all(value is None or (isinstance(value, str) and value) for value in report.values())


def test_a_missing_package_is_reported_and_refused(monkeypatch):
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)  # makes the import fail as if uninstalled
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)
    report = P.availability()
    assert "pocketsphinx" in report["asr"] and "efficientnet_lite_pytorch" in report["classifier"]
    P._recogniser.cache_clear()  # a decoder built by an earlier test would otherwise be reused
    with pytest.raises(P.PerceptionUnavailable, match="pocketsphinx"):
        P.transcribe(torch.zeros(1, 1600), 16_000)


# -------------------------------------------------------------------------------------- classifier


def test_classifier_sees_a_gowned_officer_and_is_deterministic():
    needs("classifier")
    image = grace_hopper()
    logits = P.classifier_logits(image)
    assert logits.shape == (1, 1000) and logits.dtype == torch.float32
    top5 = set(logits[0].topk(5).indices.tolist())
    assert {ACADEMIC_GOWN, MILITARY_UNIFORM} <= top5  # wrong weights or preprocessing would lose these
    assert torch.equal(logits, P.classifier_logits(image.unsqueeze(0)))
    assert P.load_classifier() is P.load_classifier() and not P.load_classifier().training


def test_classifier_agreement_counts_changed_predictions_and_accuracy():
    needs("classifier")
    image = grace_hopper()
    same = P.classifier_agreement(image, image)
    assert same == {"top1_agreement": 1.0, "top5_overlap": 1.0}
    grey = torch.full_like(image, 0.5)
    ref, dist = torch.stack([image, image]), torch.stack([image, grey])
    top1 = int(P.classifier_logits(image).argmax())
    result = P.classifier_agreement(ref, dist, labels=torch.tensor([top1, top1]))
    assert result["top1_agreement"] == 0.5
    assert result["accuracy_ref"] == 1.0 and result["accuracy_dist"] == 0.5
    assert result["accuracy_drop"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="labels"):
        P.classifier_agreement(ref, dist, labels=torch.tensor([top1]))


def test_blur_moves_top5_and_deep_feature_distance_grows_with_it():
    needs("classifier")
    image = grace_hopper()
    half = torch.nn.functional.interpolate(image[None], scale_factor=0.5, mode="area")  # (1, 3, 300, 256)
    assert P.deep_feature_distance(half, half) == 0.0
    distances = [P.deep_feature_distance(half, blur(half, sigma)) for sigma in (1.0, 2.0, 4.0)]
    assert 0.01 < distances[0] < distances[1] < distances[2], distances
    assert P.classifier_agreement(image, blur(image, 8.0))["top5_overlap"] < 1.0


def test_deep_feature_distance_checks_shapes():
    needs("classifier")
    image = grace_hopper()
    with pytest.raises(ValueError, match="differ"):
        P.deep_feature_distance(image, image[:, :300])
    with pytest.raises(ValueError, match="32"):
        P.deep_feature_distance(image[:, :16, :16], image[:, :16, :16])
    grey = image.mean(dim=0, keepdim=True)[:, :128, :128]  # one channel is accepted (replicated to RGB)
    assert P.deep_feature_distance(grey, blur(grey, 2.0)) > 0


# --------------------------------------------------------------------------------------- detection


def test_detection_finds_the_face_and_notices_when_it_is_gone():
    needs("faces")
    needs("people")
    image = grace_hopper()
    same = P.detection_agreement(image, image)
    assert same["faces_ref"] >= 1 and same["faces_f1"] == 1.0
    assert same["people_ref"] == same["people_dist"] and same["people_f1"] == 1.0
    gone = P.detection_agreement(image, torch.full_like(image, 0.5))
    assert gone["faces_dist"] == 0 and gone["faces_f1"] == 0.0


def test_match_f1_by_hand():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], dtype=float)
    assert P.match_f1(a, a) == 1.0
    assert P.match_f1(a, a[:1] + 1) == pytest.approx(2 * 1 / 3)  # IoU 81/119 >= 0.5: one match of 2 + 1
    assert P.match_f1(a[:1], a[:1] + 5) == 0.0  # IoU 25/175 < 0.5
    assert P.match_f1(np.zeros((0, 4)), np.zeros((0, 4))) == 1.0
    assert P.match_f1(a, np.zeros((0, 4))) == 0.0


# --------------------------------------------------------------------------------------------- ASR


@pytest.mark.parametrize("reference, hypothesis, expected", [
    ("the cat sat", "the cat sat", 0.0),
    ("The cat, sat.", "the cat sat", 0.0),  # case and punctuation do not count
    ("the cat sat", "the hat sat", 1 / 3),  # substitution
    ("the cat sat", "the cat sat down", 1 / 3),  # insertion
    ("the cat sat", "the sat", 1 / 3),  # deletion
    ("the cat sat", "", 1.0),
    ("", "", 0.0),
    ("", "hello there", 2.0),  # empty reference: inserted words over a denominator of 1
    ("a b c d", "b c d e", 0.5),  # deletion + insertion beats four substitutions
    ("one two", "three four five six", 2.0),
])
def test_word_error_rate_by_hand(reference, hypothesis, expected):
    assert P.word_error_rate(reference, hypothesis) == pytest.approx(expected)


def vowels(rate: int = 16_000, seconds: float = 3.0) -> torch.Tensor:
    """(1, samples) vowel-like signal: harmonics of a gliding pitch through formants that change every
    250 ms syllable, with a syllable envelope and a pause every fourth syllable. PocketSphinx hears a
    word or two in it, which is all the determinism test needs."""
    t = torch.arange(int(rate * seconds), dtype=torch.float64) / rate
    f0 = 120 + 30 * torch.sin(2 * math.pi * 0.7 * t) + 15 * torch.sin(2 * math.pi * 2.3 * t)
    phase = 2 * math.pi * torch.cumsum(f0, 0) / rate
    formants = torch.tensor([[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240], [530, 1840, 2480],
                             [660, 1720, 2410]], dtype=torch.float64)
    syllable = (t // 0.25).long()
    x = torch.zeros_like(t)
    for h in range(1, 40):
        fh = h * f0
        gain = sum(torch.exp(-0.5 * ((fh - formants[syllable % 5, k]) / (80 + 40 * k)) ** 2) / (k + 1)
                   for k in range(3))
        x += gain * (fh < 0.475 * rate) * torch.sin(h * phase) / math.sqrt(h)
    x = x * torch.sin(math.pi * (t % 0.25) / 0.25) ** 2 * (syllable % 4 != 3)
    return (0.5 * x / x.abs().max()).float().unsqueeze(0)


def test_transcription_is_deterministic_whatever_was_decoded_before():
    needs("asr")
    speech = vowels()
    noise = 0.09 * torch.randn(1, 4_000, generator=torch.Generator().manual_seed(0))
    first = P.transcribe(speech, 16_000)
    assert isinstance(first, str) and first  # this signal does make PocketSphinx hear something
    P.transcribe(noise, 16_000)
    # Without resetting the decoder, the noise's cepstral mean and pre-emphasis state leaked into the
    # next utterance and changed these words.
    assert P.transcribe(speech, 16_000) == first


def test_asr_agreement_keys_on_silence():
    needs("asr")
    silence = torch.zeros(1, 8_000)
    result = P.asr_agreement(silence, silence, 16_000, transcript="hello world")
    assert result == {"wer_vs_original": 0.0, "hypothesis_ref": "", "hypothesis_dist": "",
                      "wer_ref": 1.0, "wer_dist": 1.0}
    assert set(P.asr_agreement(silence, silence, 16_000)) == {"wer_vs_original", "hypothesis_ref", "hypothesis_dist"}


def test_transcribe_resamples_and_downmixes():
    needs("asr")
    stereo_48k = torch.cat([vowels(48_000, 1.0)] * 2)
    assert isinstance(P.transcribe(stereo_48k, 48_000), str)
    with pytest.raises(ValueError):
        P.transcribe(torch.zeros(0), 16_000)


def synthesise(text: str, directory: Path) -> tuple[torch.Tensor, int] | None:
    """Real synthetic speech from espeak-ng or flite when either is installed, else None."""
    import soundfile

    path = directory / "speech.wav"
    if shutil.which("espeak-ng"):
        command = ["espeak-ng", "-v", "en-us", "-s", "140", "-w", str(path), text]
    elif shutil.which("flite"):
        command = ["flite", "-t", text, "-o", str(path)]
    else:
        return None
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    return torch.from_numpy(data.T.copy()), rate


def test_asr_on_real_synthetic_speech(tmp_path):
    needs("asr")
    text = "the weather is nice today and we go to the park"
    speech = synthesise(text, tmp_path)
    if speech is None:
        pytest.skip("no text-to-speech engine (espeak-ng or flite) installed to make real test speech")
    wave, rate = speech
    result = P.asr_agreement(wave, wave.clone(), rate, transcript=text)
    assert result["wer_vs_original"] == 0.0
    # Synthetic voices are hard for PocketSphinx; it must still hear some of the words.
    assert set(result["hypothesis_ref"].split()) & set(text.split())
    noisy = wave + 0.1 * wave.abs().max() * torch.randn(wave.shape, generator=torch.Generator().manual_seed(0))
    assert P.asr_agreement(wave, noisy, rate)["wer_vs_original"] > 0


def test_people_detector_answers_images_smaller_than_its_window():
    from polycodec.metrics.perception import detect_people

    assert detect_people(torch.rand(3, 96, 128)).shape == (0, 4)  # OpenCV itself segfaults here
