"""Every registered classical codec: round trips keep the layout, rates grow with the knob, quality and
time alignment are sensible, and bad bytes raise instead of decoding garbage or hanging."""

import math

import numpy as np
import pytest
import torch

import polycodec
from polycodec.bitstream import Modality
from polycodec.codecs import available_codecs
from polycodec.codecs.classical import UNAVAILABLE
from polycodec.codecs.classical.audio import opus_input_rate

CLASSICAL = [e for e in available_codecs() if e.factory.__module__.startswith("polycodec.codecs.classical")]
IMAGE = [e for e in CLASSICAL if e.modality == Modality.IMAGE]
AUDIO = [e for e in CLASSICAL if e.modality == Modality.AUDIO]
VIDEO = [e for e in CLASSICAL if e.modality == Modality.VIDEO]
EXPECTED = {"jpeg", "webp", "avif", "jpeg2000", "opus", "mp3", "aac", "x264", "x265", "av1", "vp9"}


def ids(entries):
    return [e.name for e in entries]


def mid(entry) -> dict:
    return entry.sweep[len(entry.sweep) // 2]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return -10 * math.log10(float(((a - b) ** 2).mean()))


def corrupt_inputs(data: bytes) -> list[bytes]:
    """No bytes, random bytes of the same length, and the first hundred bytes only."""
    return [b"", np.random.default_rng(0).bytes(len(data)), data[:100]]


def test_every_classical_codec_is_registered_or_explained():
    assert {e.name for e in CLASSICAL} | set(UNAVAILABLE) == EXPECTED
    assert all(len(e.sweep) >= 6 for e in CLASSICAL)


# --- images ------------------------------------------------------------------------------------------

def smooth_image(height: int = 96, width: int = 128) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    image = torch.stack([0.5 + 0.4 * torch.sin(6 * xx + 4 * yy), 0.5 + 0.4 * torch.cos(4 * xx - 6 * yy),
                         0.3 + 0.5 * xx * yy])
    return (image + 0.03 * torch.sin(40 * xx) * torch.cos(30 * yy)).clamp(0, 1)


@pytest.mark.parametrize("entry", IMAGE, ids=ids(IMAGE))
def test_image_round_trip_keeps_layout(entry):
    codec = polycodec.load(entry.name, **entry.sweep[-1])
    for image in (smooth_image(48, 64), smooth_image(47, 63).mean(0, keepdim=True)):  # odd sizes too
        restored = codec.decode(codec.encode(image))
        assert restored.shape == image.shape and restored.dtype == torch.float32
        assert psnr(restored, image) > 30


@pytest.mark.parametrize("entry", IMAGE, ids=ids(IMAGE))
def test_image_rate_grows_over_the_sweep_and_mid_quality_is_sensible(entry):
    image = smooth_image()
    sizes = []
    for options in entry.sweep:
        codec = polycodec.load(entry.name, **options)
        data = codec.encode(image)
        sizes.append(len(data))
        if options == mid(entry):
            assert psnr(codec.decode(data), image) > 25
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1], sizes


@pytest.mark.parametrize("entry", IMAGE, ids=ids(IMAGE))
def test_image_corrupt_bytes_raise(entry):
    codec = polycodec.load(entry.name)
    for bad in corrupt_inputs(codec.encode(smooth_image(48, 64))):
        with pytest.raises(ValueError):
            codec.decode(bad)


# --- audio ------------------------------------------------------------------------------------------

def audio_signal(rate: int, channels: int, seconds: float = 1.0) -> torch.Tensor:
    """Tone, chirp and smoothed noise: broadband enough for a sharp cross-correlation peak."""
    n = int(rate * seconds)
    t = np.arange(n) / rate
    noise = np.convolve(np.random.default_rng(0).standard_normal(n), np.ones(5) / 5, "same")
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * (200 + 1500 * t) * t) + 0.15 * noise
    return torch.tensor(np.stack([x * (1.0 - 0.3 * c) for c in range(channels)]), dtype=torch.float32)


def best_lag(x: torch.Tensor, y: torch.Tensor, max_lag: int = 100) -> int:
    """The shift of y against x (positive: y late) that maximises their cross-correlation."""
    a, b = x.double().numpy().ravel(), y.double().numpy().ravel()
    size = 1 << (len(a) + len(b)).bit_length()
    corr = np.fft.irfft(np.conj(np.fft.rfft(a, size)) * np.fft.rfft(b, size), size)
    lags = np.r_[corr[-max_lag:], corr[: max_lag + 1]]
    return int(np.argmax(lags)) - max_lag


@pytest.mark.parametrize("entry", AUDIO, ids=ids(AUDIO))
@pytest.mark.parametrize("rate,channels", [(44100, 2), (16000, 1), (48000, 1)])
def test_audio_round_trip_keeps_rate_channels_and_length(entry, rate, channels):
    waveform = audio_signal(rate, channels, seconds=0.5)
    codec = polycodec.load(entry.name, **mid(entry))
    restored, restored_rate = codec.decode(codec.encode(waveform, rate))
    assert restored_rate == rate and restored.shape == waveform.shape and restored.dtype == torch.float32
    assert float(restored.abs().max()) <= 1


@pytest.mark.parametrize("entry", AUDIO, ids=ids(AUDIO))
@pytest.mark.parametrize("rate,channels", [(44100, 1), (48000, 2)])
def test_audio_is_time_aligned_with_its_input(entry, rate, channels):
    waveform = audio_signal(rate, channels)
    codec = polycodec.load(entry.name, **mid(entry))
    restored, _ = codec.decode(codec.encode(waveform, rate))
    for channel in range(channels):
        assert abs(best_lag(waveform[channel], restored[channel])) <= 2


@pytest.mark.parametrize("entry", AUDIO, ids=ids(AUDIO))
def test_audio_rate_grows_and_a_sine_survives_mid_bitrate(entry):
    rate = 44100
    sine = (0.5 * torch.sin(2 * torch.pi * 440 * torch.arange(rate) / rate))[None]
    sizes = [len(polycodec.load(entry.name, **options).encode(sine, rate)) for options in entry.sweep]
    assert sizes[0] < sizes[-1], sizes
    codec = polycodec.load(entry.name, **mid(entry))
    restored, _ = codec.decode(codec.encode(sine, rate))
    assert float(torch.nn.functional.cosine_similarity(restored, sine, dim=1)) > 0.9


def test_opus_keeps_the_input_rate_in_its_header():
    codec = polycodec.load("opus")
    assert opus_input_rate(codec.encode(audio_signal(44100, 1, 0.1), 44100)) == 44100  # resampled to 48 kHz
    assert opus_input_rate(codec.encode(audio_signal(16000, 1, 0.1), 16000)) == 16000  # coded as is


@pytest.mark.parametrize("entry", AUDIO, ids=ids(AUDIO))
def test_audio_corrupt_bytes_raise(entry):
    codec = polycodec.load(entry.name)
    for bad in corrupt_inputs(codec.encode(audio_signal(16000, 1, 0.5), 16000)):
        with pytest.raises(ValueError):
            codec.decode(bad)


@pytest.mark.parametrize("entry", AUDIO, ids=ids(AUDIO))
def test_audio_bad_inputs_are_refused(entry):
    codec = polycodec.load(entry.name)
    for bad in (torch.zeros(3, 100), torch.zeros(100), torch.zeros(1, 0)):
        with pytest.raises(ValueError):
            codec.encode(bad, 16000)
    if entry.name != "opus":  # Opus resamples any rate; MP3 and AAC code their own rates only
        with pytest.raises(ValueError, match="Hz"):
            codec.encode(torch.zeros(1, 100), 12345)


# --- video ------------------------------------------------------------------------------------------

def moving_frames(count: int = 10, height: int = 48, width: int = 64) -> torch.Tensor:
    t = torch.arange(count)[:, None, None]
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return torch.stack([0.5 + 0.4 * torch.sin((xx + 2 * t) / 9.0 + yy / 13.0),
                        0.5 + 0.4 * torch.cos((yy - t) / 7.0 - xx / 17.0),
                        0.4 + 0.3 * torch.sin((xx + yy + 3 * t) / 11.0)], dim=1).float()


@pytest.mark.parametrize("entry", VIDEO, ids=ids(VIDEO))
def test_video_round_trip_rate_and_quality(entry):
    frames = moving_frames()
    sizes = []
    for options in (entry.sweep[0], mid(entry), entry.sweep[-1]):
        codec = polycodec.load(entry.name, **options)
        data = codec.encode(frames, 30000 / 1001)
        sizes.append(len(data))
        restored, fps = codec.decode(data)
        assert restored.shape == frames.shape and restored.dtype == torch.float32
        assert abs(fps - 30000 / 1001) < 1e-9
        if options == mid(entry):
            assert psnr(restored, frames) > 25
    assert sizes[0] < sizes[-1], sizes


@pytest.mark.parametrize("entry", VIDEO, ids=ids(VIDEO))
def test_video_odd_sizes_and_corrupt_bytes_raise(entry):
    codec = polycodec.load(entry.name)
    with pytest.raises(ValueError, match="even"):
        codec.encode(moving_frames(2, 47, 64), 25)
    for bad in corrupt_inputs(codec.encode(moving_frames(3), 25)):
        with pytest.raises(ValueError):
            codec.decode(bad)
