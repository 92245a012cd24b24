"""Audio metrics: known values (SI-SDR at a set SNR), invariances, ordering with noise, input checks,
and the optional perceptual models (PESQ, STOI, ViSQOL) on a synthetic speech-like signal."""

import functools
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from polycodec.metrics import audio
from polycodec.metrics.audio import audio_metrics, mel_distance, pesq_wb, si_sdr, stft_distance, stoi, visqol

RATE = 16_000


@functools.lru_cache(maxsize=None)
def speech_like(rate: int = RATE, seconds: float = 3.0, seed: int = 0) -> torch.Tensor:
    """(1, samples) vowel-like test signal: a glottal-ish harmonic series with a wandering pitch, shaped by
    formants that change every 250 ms syllable, a raised-sine syllable envelope and a pause every fourth
    syllable (PESQ and STOI both look for speech activity)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t) + 15 * np.sin(2 * np.pi * 2.3 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    formants = np.array([[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240], [530, 1840, 2480]])
    syllable = (t // 0.25).astype(int)
    x = np.zeros_like(t)
    for h in range(1, 40):
        fh = h * f0
        gain = sum(np.exp(-0.5 * ((fh - formants[syllable % 4, k]) / (80 + 40 * k)) ** 2) / (k + 1) for k in range(3))
        x += gain * (fh < 0.45 * rate) * np.sin(h * phase) / math.sqrt(h)
    x *= np.sin(np.pi * (t % 0.25) / 0.25) ** 2 * (syllable % 4 != 3)
    return torch.from_numpy(0.5 * x / np.abs(x).max()).float().unsqueeze(0)


def music_like(rate: int = 48_000, seconds: float = 2.0) -> torch.Tensor:
    """(2, samples) stereo chord with decaying notes: a stand-in for music at 48 kHz."""
    t = torch.arange(int(rate * seconds)) / rate
    chord = sum(torch.sin(2 * math.pi * f * t) * torch.exp(-((t * 2) % 1.0) * 3) for f in (220.0, 277.2, 329.6, 440.0))
    return torch.stack([0.2 * chord, 0.15 * chord.roll(100)])


def with_noise(x: torch.Tensor, snr_db: float, seed: int = 1) -> torch.Tensor:
    """x plus white noise scaled to exactly ``snr_db`` (signal power over noise power, per the whole clip)."""
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    noise = noise * (x.pow(2).mean() / noise.pow(2).mean() / 10 ** (snr_db / 10)).sqrt()
    return x + noise


# ----------------------------------------------------------------------------------------- SI-SDR


def test_si_sdr_identical_is_huge_and_noisy_matches_the_snr():
    x = speech_like()
    assert si_sdr(x, x) > 60
    for snr in (0.0, 10.0, 25.0):
        assert si_sdr(x, with_noise(x, snr)) == pytest.approx(snr, abs=0.5)


def test_si_sdr_ignores_scale_and_offset_of_the_estimate():
    x = speech_like()
    y = with_noise(x, 12.0)
    assert si_sdr(x, 0.3 * y) == pytest.approx(si_sdr(x, y), abs=1e-6)
    assert si_sdr(x, y + 0.05) == pytest.approx(si_sdr(x, y), abs=1e-6)  # zero-mean first


def test_si_sdr_averages_channels_and_skips_silent_reference_channels():
    x = speech_like()
    stereo_ref = torch.cat([x, x])
    stereo_est = torch.cat([with_noise(x, 5.0), with_noise(x, 15.0, seed=2)])
    assert si_sdr(stereo_ref, stereo_est) == pytest.approx(10.0, abs=0.5)
    half_silent = torch.cat([x, torch.zeros_like(x)])
    assert si_sdr(half_silent, torch.cat([with_noise(x, 5.0), x])) == pytest.approx(5.0, abs=0.5)
    with pytest.raises(ValueError, match="silent"):
        si_sdr(torch.zeros(1, 1000), torch.randn(1, 1000))


# --------------------------------------------------------------------------------- spectral distances


@pytest.mark.parametrize("distance", [mel_distance, stft_distance])
def test_spectral_distances_are_zero_for_identical_and_grow_with_noise(distance):
    x = speech_like()
    assert distance(x, x, RATE) == pytest.approx(0.0, abs=1e-9)
    values = [distance(x, with_noise(x, snr), RATE) for snr in (40.0, 20.0, 5.0)]
    assert 0 < values[0] < values[1] < values[2]


@pytest.mark.parametrize("distance", [mel_distance, stft_distance])
def test_spectral_distances_treat_a_gain_change_as_an_error(distance):
    x = speech_like()
    assert distance(x, 0.5 * x, RATE) > 0.1


# ---------------------------------------------------------------------------------------- input checks


def test_codec_padding_is_trimmed_but_a_rate_mismatch_is_refused():
    x = speech_like()
    y = with_noise(x, 15.0)
    padded = torch.cat([y, torch.zeros(1, 320)], dim=1)  # one 20 ms frame of padding
    assert si_sdr(x, padded) == pytest.approx(si_sdr(x, y))
    assert mel_distance(x, padded, RATE) == pytest.approx(mel_distance(x, y, RATE))
    short = x[:, :8000]  # on a 0.5 s clip a 512-sample pad is 6 %, still padding
    assert si_sdr(short, torch.cat([short, torch.zeros(1, 512)], dim=1)) > 60
    assert si_sdr(torch.cat([short, torch.zeros(1, 512)], dim=1), short) > 60  # either side may be longer
    decimated = y[:, ::3]  # what a 48 kHz vs 16 kHz mix-up looks like
    with pytest.raises(ValueError, match="sample rate"):
        mel_distance(x, decimated, RATE)
    with pytest.raises(ValueError, match="sample rates differ"):
        audio_metrics(x, y, RATE, speech=True, est_sample_rate=48_000)


@pytest.mark.parametrize("bad", [torch.zeros(1, 0), torch.zeros(0, 100), torch.zeros(2, 3, 4)])
def test_empty_or_misshapen_input_is_refused(bad):
    with pytest.raises(ValueError):
        si_sdr(bad, bad)


def test_channel_count_and_rate_arguments_are_checked():
    x = speech_like()
    with pytest.raises(ValueError, match="channel"):
        si_sdr(torch.cat([x, x]), x)
    for rate in (0, -16000, 16000.0):
        with pytest.raises(ValueError, match="sample_rate"):
            stft_distance(x, x, rate)
    with pytest.raises(ValueError, match="NaN"):
        si_sdr(x, torch.full_like(x, float("nan")))
    with pytest.raises(ValueError, match="samples"):  # shorter than the largest window's padding
        mel_distance(x[:, :1000], x[:, :1000], RATE)


# ----------------------------------------------------------------------------------- perceptual models


def needs(metric: str) -> None:
    reason = audio.availability()[metric]
    if reason is not None:
        pytest.skip(reason)


def test_availability_names_every_optional_metric():
    report = audio.availability()
    assert set(report) == {"pesq_wb", "stoi", "visqol"}
    assert all(value is None or isinstance(value, str) for value in report.values())


@pytest.mark.parametrize("metric, module", [("pesq_wb", "pesq"), ("stoi", "pystoi"), ("visqol", "visqol")])
def test_a_missing_package_gives_none_and_a_reason(monkeypatch, caplog, metric, module):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail as if uninstalled
    assert module in audio.availability()[metric]
    x = speech_like()
    assert getattr(audio, metric)(x, x, RATE) is None
    assert f"{metric} skipped" in caplog.text


def test_pesq_and_stoi_rank_identical_above_noisy():
    needs("pesq_wb")
    needs("stoi")
    x = speech_like()
    assert pesq_wb(x, x, RATE) > 4.4
    assert stoi(x, x, RATE) > 0.99
    noisy = with_noise(x, 5.0)
    assert pesq_wb(x, noisy, RATE) < 3.0
    assert stoi(x, noisy, RATE) < 0.95


def test_pesq_and_stoi_resample_from_other_rates():
    needs("pesq_wb")
    needs("stoi")
    x = speech_like(rate=24_000)
    assert pesq_wb(x, x, 24_000) > 4.4
    assert stoi(x, x, 24_000) > 0.99


def test_pesq_and_stoi_return_none_when_they_cannot_score():
    needs("pesq_wb")
    needs("stoi")
    short = speech_like()[:, : RATE // 10]  # 100 ms: below PESQ's 250 ms and STOI's 30 frames
    assert pesq_wb(short, short, RATE) is None
    assert stoi(short, short, RATE) is None
    silence = torch.zeros(1, RATE)
    assert pesq_wb(silence, silence, RATE) is None
    assert stoi(silence, silence, RATE) is None


def test_pesq_and_stoi_on_real_synthetic_speech(tmp_path):
    needs("pesq_wb")
    needs("stoi")
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed: no real synthetic speech (the vowel-like signal still runs)")
    import soundfile

    path = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), "the birch canoe slid on the smooth planks"],
                   check=True, capture_output=True, timeout=60)
    data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    x = torch.from_numpy(data.T.copy())
    assert pesq_wb(x, x, rate) > 4.4 and stoi(x, x, rate) > 0.99
    noisy = with_noise(x, 5.0)
    assert pesq_wb(x, noisy, rate) < 2.5 and stoi(x, noisy, rate) < 0.95


def test_visqol_audio_mode_ranks_identical_above_noisy():
    reason = audio.availability()["visqol"]
    x = speech_like()
    if reason is not None:
        assert visqol(x, x, RATE) is None
        return
    assert visqol(x, x, RATE) > 4.0
    assert visqol(x, with_noise(x, 10.0), RATE) < 3.5


def test_audio_metrics_keys_for_speech_and_music():
    x = speech_like()
    speech = audio_metrics(x, with_noise(x, 20.0), RATE, speech=True)
    assert set(speech) == {"si_sdr", "mel_distance", "stft_distance", "pesq_wb", "stoi", "visqol_audio_mode"}
    assert speech["si_sdr"] == pytest.approx(20.0, abs=0.5)
    m = music_like()
    music = audio_metrics(m, m, 48_000, speech=False)
    assert set(music) == {"si_sdr", "mel_distance", "stft_distance", "visqol"}
    assert music["si_sdr"] > 60 and music["mel_distance"] == pytest.approx(0.0, abs=1e-9)
    if audio.availability()["visqol"] is None:
        assert music["visqol"] > 4.0
