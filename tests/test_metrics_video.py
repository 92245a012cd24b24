"""Video metrics on a small synthetic clip: identical videos, hand-computed per-frame PSNR, monotone response
to noise (PSNR, MS-SSIM, real libvmaf), and VMAF's behaviour when ffmpeg lacks libvmaf, hangs or fails."""

import math
import os
import stat

import imageio_ffmpeg
import pytest
import torch

from polycodec.metrics import video
from polycodec.metrics.video import video_metrics, vmaf

T, H, W, FPS = 8, 64, 64, 25.0


def moving_pattern(frames: int = T, h: int = H, w: int = W) -> torch.Tensor:
    """Deterministic (frames, 3, h, w) clip in [0.1, 0.9]: drifting sinusoids, so VMAF's motion feature is live."""
    t = torch.arange(frames, dtype=torch.float32).view(frames, 1, 1)
    y = torch.arange(h, dtype=torch.float32).view(1, h, 1)
    x = torch.arange(w, dtype=torch.float32).view(1, 1, w)
    base = (0.5 + 0.2 * torch.sin(2 * math.pi * (x + 2 * t) / 17) * torch.cos(2 * math.pi * (y + t) / 11)
            + 0.2 * torch.sin(2 * math.pi * (0.7 * x + 0.3 * y) / 29))
    return torch.stack([base, 0.9 * torch.roll(base, 3, dims=2) + 0.05, 1 - base], dim=1).clamp(0.1, 0.9)


def noisy(v: torch.Tensor, sigma: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return (v + sigma * torch.randn(v.shape, generator=g)).clamp(0, 1)


REF = moving_pattern()
NOISE = (0.01, 0.03, 0.1)


def real_libvmaf_missing() -> str:
    exe, why = video._ffmpeg_exe()
    return why if exe is None else video._libvmaf_missing(exe)


needs_libvmaf = pytest.mark.skipif(bool(real_libvmaf_missing()), reason=real_libvmaf_missing() or "available")


# -- frame-wise metrics ---------------------------------------------------------------------------------------

def test_identical_videos():
    m = video_metrics(REF, REF.clone())
    assert m["psnr_per_frame"] == [math.inf] * T
    assert m["psnr"] == math.inf and m["psnr_y"] == math.inf
    assert m["ms_ssim"] == pytest.approx(1.0, abs=1e-6)


def test_per_frame_psnr_and_identical_frames_left_out_of_the_mean():
    ref = torch.round(REF * 255) / 255
    dist = ref.clone()
    dist[:3] += 2 / 255          # frames 0-2: every sample 2 codes off -> 20 log10(255 / 2) dB
    dist[3] += 5 / 255           # frame 3: 5 codes off; frames 4-7 identical (inf, excluded from the mean)
    m = video_metrics(ref, dist)
    per_frame = m["psnr_per_frame"]
    assert len(per_frame) == T
    assert per_frame[:3] == pytest.approx([20 * math.log10(255 / 2)] * 3, abs=1e-9)
    assert per_frame[3] == pytest.approx(20 * math.log10(255 / 5), abs=1e-9)
    assert per_frame[4:] == [math.inf] * 4
    expected = (3 * 20 * math.log10(255 / 2) + 20 * math.log10(255 / 5)) / 4
    assert m["psnr"] == pytest.approx(expected, abs=1e-9)
    assert m["psnr_y"] == pytest.approx(expected, abs=1e-9)   # a grey offset moves Y by the same 2 or 5 codes


def test_frame_metrics_fall_as_noise_grows():
    results = [video_metrics(REF, noisy(REF, s)) for s in NOISE]
    for key in ("psnr", "psnr_y", "ms_ssim"):
        values = [r[key] for r in results]
        assert values[0] > values[1] > values[2], (key, values)
    assert 0 < results[-1]["ms_ssim"] < results[0]["ms_ssim"] < 1
    assert all(math.isfinite(p) for p in results[0]["psnr_per_frame"])


def test_video_input_checks():
    with pytest.raises(ValueError, match="same shape"):
        video_metrics(REF, REF[:4])
    with pytest.raises(ValueError, match=r"\(T, 3, H, W\)"):
        video_metrics(REF[0], REF[0])
    with pytest.raises(ValueError, match=r"\(T, 3, H, W\)"):
        video_metrics(REF[:, :1], REF[:, :1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        video_metrics(REF, REF * 255)
    with pytest.raises(ValueError, match="fps"):
        vmaf(REF, REF, 0.0)
    with pytest.raises(ValueError, match="at least 32x32"):
        vmaf(REF[:, :, :16], REF[:, :, :16], FPS)


# -- VMAF with the real ffmpeg --------------------------------------------------------------------------------

@needs_libvmaf
def test_vmaf_of_identical_videos_is_high():
    score = vmaf(REF, REF.clone(), FPS)
    assert score is not None and 95.0 < score <= 100.0


@needs_libvmaf
def test_vmaf_falls_as_noise_grows():
    scores = [vmaf(REF, noisy(REF, s), FPS) for s in NOISE]
    assert scores[0] > scores[1] > scores[2], scores
    assert scores[2] < 90.0


# -- VMAF when ffmpeg cannot help (fake ffmpeg binaries) ------------------------------------------------------

def fake_ffmpeg(tmp_path, has_libvmaf: bool, body: str) -> str:
    """An executable shell script standing in for ffmpeg: ``-filters`` lists filters (libvmaf or not),
    any other call runs ``body``."""
    filters = " .. scale V->V Scale the input video size.\n"
    if has_libvmaf:
        filters += " .. libvmaf VV->V Calculate the VMAF between two video streams.\n"
    path = tmp_path / "ffmpeg"
    path.write_text(f"#!/bin/sh\ncase \"$*\" in *-filters*) printf '{filters}'; exit 0 ;; esac\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


posix_only = pytest.mark.skipif(os.name != "posix", reason="fake ffmpeg is a shell script")


@posix_only
def test_vmaf_returns_none_and_warns_without_libvmaf(tmp_path, monkeypatch):
    exe = fake_ffmpeg(tmp_path, False, "exit 0")
    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", lambda: exe)
    with pytest.warns(RuntimeWarning, match="without libvmaf"):
        assert vmaf(REF, REF, FPS) is None


def test_vmaf_returns_none_and_warns_without_ffmpeg(monkeypatch):
    monkeypatch.setattr(video, "_ffmpeg_exe", lambda: (None, "imageio-ffmpeg is not installed"))
    with pytest.warns(RuntimeWarning, match="not installed"):
        assert vmaf(REF, REF, FPS) is None


@posix_only
def test_vmaf_time_limit(tmp_path, monkeypatch):
    exe = fake_ffmpeg(tmp_path, True, "exec sleep 30")
    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", lambda: exe)
    with pytest.raises(TimeoutError, match="longer than 1"):
        vmaf(REF, REF, FPS, timeout_s=1)


@posix_only
def test_vmaf_reports_an_ffmpeg_failure(tmp_path, monkeypatch):
    exe = fake_ffmpeg(tmp_path, True, "echo 'libvmaf: model not found' >&2; exit 3")
    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", lambda: exe)
    with pytest.raises(RuntimeError, match="exit 3.*model not found"):
        vmaf(REF, REF, FPS)
