"""Full-reference audio metrics: what a decoded waveform lost compared with the original.

Conventions: waveforms are float tensors of shape (channels, samples) or (samples,) in [-1, 1], and both
share one integer ``sample_rate``. Codecs may pad the decoded signal up to a whole number of frames, so
every metric trims both signals to the shorter length first; a length gap too large to be padding (more
than 4096 samples and more than 1 % of the longer signal) is refused, because it almost always means the
two were sampled at different rates or the decode was cut short.

Signal metrics (SI-SDR, mel and multi-resolution STFT distances) are computed here with torch; they raise
ValueError on unusable input (empty, NaN, channel-count mismatch, too short for the largest STFT window),
never return None. Perceptual models (PESQ, STOI, ViSQOL) come from optional packages: each returns
``None`` and logs why when its package is missing or the input is outside what the model accepts, and
:func:`availability` says up front which of them can run.
"""

from __future__ import annotations

import functools
import importlib
import logging
import math
import warnings

import numpy as np
import torch
from torch import Tensor

logger = logging.getLogger(__name__)

MEL_WINDOWS: tuple[int, ...] = (512, 1024, 2048)
MEL_BANDS = 80
# (n_fft, hop, window) per resolution: power-of-two windows with 75 % overlap (the paper itself used
# FFT 1024 / 2048 / 512 with windows 600 / 1200 / 240 at 24 kHz); fixed so reports stay comparable.
STFT_RESOLUTIONS: tuple[tuple[int, int, int], ...] = ((512, 128, 512), (1024, 256, 1024), (2048, 512, 2048))
PESQ_RATE = 16_000
VISQOL_RATE = 48_000
# Identical signals have zero residual; the cap keeps SI-SDR finite (and JSON-friendly) in that case.
SI_SDR_CAP_DB = 150.0
# Largest length gap still taken for codec padding: 4096 samples (several frames of any common codec),
# or 1 % of the longer signal if that is more. In samples, not seconds, so si_sdr (no rate) agrees.
_MAX_PAD_SAMPLES = 4096
_MAX_PAD_FRACTION = 0.01
_OPTIONAL = {"pesq_wb": "pesq", "stoi": "pystoi", "visqol": "visqol"}


# --------------------------------------------------------------------------------------------- input


def _as_channels(x: Tensor, name: str) -> Tensor:
    """(samples,) or (channels, samples) -> float64 (channels, samples); refuses empty or non-finite input."""
    x = torch.as_tensor(x)
    if x.dim() == 1:
        x = x.unsqueeze(0)
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape (channels, samples) or (samples,), got {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)})")
    x = x.detach().to("cpu", torch.float64)
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite samples")
    return x


def _check_rate(sample_rate: int) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    return int(sample_rate)


def _pair(ref: Tensor, est: Tensor) -> tuple[Tensor, Tensor]:
    """Validate a reference / estimate pair and trim both to the shorter length.

    Returns float64 tensors of the same shape (channels, samples). Padding added by a codec is tolerated;
    a gap longer than max(4096 samples, 1 % of the longer signal) raises, as it points to a rate mismatch.
    """
    ref, est = _as_channels(ref, "ref"), _as_channels(est, "est")
    if ref.shape[0] != est.shape[0]:
        raise ValueError(f"channel counts differ: ref has {ref.shape[0]}, est has {est.shape[0]}")
    n_ref, n_est = ref.shape[1], est.shape[1]
    longer, shorter = max(n_ref, n_est), min(n_ref, n_est)
    if longer - shorter > max(_MAX_PAD_SAMPLES, _MAX_PAD_FRACTION * longer):
        raise ValueError(
            f"lengths differ too much to be codec padding (ref {n_ref}, est {n_est} samples, ratio "
            f"{longer / shorter:.3f}); check both use the same sample rate and the decode is complete"
        )
    return ref[:, :shorter], est[:, :shorter]


def _mono(x: Tensor) -> Tensor:
    """(channels, samples) -> (samples,) by averaging channels, the usual downmix for speech models."""
    return x.mean(dim=0)


def _resample(x: Tensor, rate: int, target: int) -> Tensor:
    """Band-limited resampling (torchaudio's windowed sinc) along the last axis."""
    if rate == target:
        return x
    import torchaudio.functional as AF

    return AF.resample(x, rate, target)


# ------------------------------------------------------------------------------------ signal metrics


def si_sdr(ref: Tensor, est: Tensor) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al., "SDR - half-baked or well done?",
    ICASSP 2019), averaged over channels.

    Both signals are made zero-mean, the reference is scaled by the least-squares gain
    ``alpha = <est, ref> / <ref, ref>``, and SI-SDR = 10 log10(|alpha ref|^2 / |est - alpha ref|^2).
    Rescaling ``est`` does not change the result. Shapes: (channels, samples) or (samples,), trimmed to
    the shorter length. Identical signals give ``SI_SDR_CAP_DB`` (150 dB). Channels whose reference is
    silent have no defined SI-SDR and are left out of the mean; if all are silent this raises ValueError.
    """
    ref, est = _pair(ref, est)
    ref = ref - ref.mean(dim=1, keepdim=True)
    est = est - est.mean(dim=1, keepdim=True)
    ref_energy = (ref * ref).sum(dim=1)
    values = []
    for c in range(ref.shape[0]):
        if ref_energy[c] <= 0:
            logger.warning("si_sdr: reference channel %d is silent; left out of the mean", c)
            continue
        target = ((est[c] * ref[c]).sum() / ref_energy[c]) * ref[c]
        target_energy = float((target * target).sum())
        if target_energy == 0:
            values.append(-SI_SDR_CAP_DB)  # est is orthogonal to ref: nothing of the reference survives
            continue
        residual = est[c] - target
        # Floor relative to the target so identical inputs give the cap instead of inf.
        residual_energy = max(float((residual * residual).sum()), target_energy * 10 ** (-SI_SDR_CAP_DB / 10))
        values.append(10 * math.log10(target_energy / residual_energy))
    if not values:
        raise ValueError("si_sdr is undefined: every reference channel is silent")
    return float(np.mean(values))


@functools.lru_cache(maxsize=16)
def _mel_transform(sample_rate: int, window: int):
    import torchaudio

    with warnings.catch_warnings():
        # At low rates some of the 80 narrow low-frequency bands get no FFT bin; those rows are zero for
        # both signals, so they add nothing to the distance and the warning is noise.
        warnings.simplefilter("ignore", UserWarning)
        return torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=window, win_length=window, hop_length=window // 4,
            n_mels=MEL_BANDS, power=1.0, norm="slaney", mel_scale="slaney", center=True,
        ).to(torch.float64)


def mel_distance(ref: Tensor, est: Tensor, sample_rate: int) -> float:
    """L1 distance between log10 mel magnitude spectrograms, as in the DAC (Kumar et al., 2023) and
    EnCodec (Défossez et al., 2022) evaluations; lower is better, 0 for identical signals.

    Choice here: Hann windows of 512, 1024 and 2048 samples (hop = window / 4), 80 Slaney mel bands from
    0 Hz to Nyquist, magnitudes (not power) clamped at 1e-5 before log10; the mean absolute difference is
    averaged over resolutions. Shapes: (channels, samples) or (samples,), trimmed to the shorter length;
    more than 1024 samples are needed (ValueError otherwise). Not scale-invariant: a louder decode is a
    worse decode here.
    """
    sample_rate = _check_rate(sample_rate)
    ref, est = _pair(ref, est)
    _check_long_enough(ref, max(MEL_WINDOWS), "mel_distance")
    total = 0.0
    for window in MEL_WINDOWS:
        mel = _mel_transform(sample_rate, window)
        log_ref = torch.log10(mel(ref).clamp_min(1e-5))  # (channels, mels, frames)
        log_est = torch.log10(mel(est).clamp_min(1e-5))
        total += float((log_ref - log_est).abs().mean())
    return total / len(MEL_WINDOWS)


def _check_long_enough(x: Tensor, window: int, metric: str) -> None:
    # A centred STFT reflect-pads by window / 2, which needs at least that many samples.
    if x.shape[1] <= window // 2:
        raise ValueError(f"{metric} needs more than {window // 2} samples, got {x.shape[1]}")


def _magnitude(x: Tensor, n_fft: int, hop: int, window: int) -> Tensor:
    """(channels, samples) -> |STFT| of shape (channels, n_fft // 2 + 1, frames), Hann window."""
    spec = torch.stft(x, n_fft=n_fft, hop_length=hop, win_length=window,
                      window=torch.hann_window(window, dtype=x.dtype), center=True, return_complex=True)
    return spec.abs()


def stft_distance(ref: Tensor, est: Tensor, sample_rate: int) -> float:
    """Multi-resolution STFT distance (Yamamoto et al., "Parallel WaveGAN", ICASSP 2020); lower is better.

    Per resolution (n_fft, hop, window) in ``STFT_RESOLUTIONS``: spectral convergence
    ||M_ref - M_est||_F / ||M_ref||_F plus the mean absolute difference of log magnitudes (clamped at 1e-7);
    the sum is averaged over resolutions. 0 for identical signals. ``sample_rate`` is validated but
    unused: the resolutions are in samples, as in the paper, and the API matches the other distances. Shapes: (channels, samples) or
    (samples,), trimmed to the shorter length; more than 1024 samples are needed (ValueError otherwise).
    """
    sample_rate = _check_rate(sample_rate)
    ref, est = _pair(ref, est)
    _check_long_enough(ref, max(n_fft for n_fft, _, _ in STFT_RESOLUTIONS), "stft_distance")
    total = 0.0
    for n_fft, hop, window in STFT_RESOLUTIONS:
        mag_ref, mag_est = _magnitude(ref, n_fft, hop, window), _magnitude(est, n_fft, hop, window)
        convergence = torch.linalg.norm(mag_ref - mag_est) / torch.linalg.norm(mag_ref).clamp_min(1e-12)
        log_l1 = (torch.log(mag_ref.clamp_min(1e-7)) - torch.log(mag_est.clamp_min(1e-7))).abs().mean()
        total += float(convergence + log_l1)
    return total / len(STFT_RESOLUTIONS)


# ------------------------------------------------------------------------------ perceptual models


def availability() -> dict[str, str | None]:
    """Which optional perceptual metrics can run: name -> None if usable, else a one-line reason."""
    out: dict[str, str | None] = {}
    for metric, package in _OPTIONAL.items():
        # Import rather than look up the spec: a package whose compiled part is broken must count as missing.
        try:
            importlib.import_module(package)
            out[metric] = None
        except ImportError as exc:
            out[metric] = f"python package '{package}' cannot be imported ({exc})"
    return out


def _unavailable(metric: str) -> str | None:
    reason = availability()[metric]
    if reason is not None:
        logger.warning("%s skipped: %s", metric, reason)
    return reason


def pesq_wb(ref: Tensor, est: Tensor, sample_rate: int) -> float | None:
    """Wide-band PESQ MOS-LQO (ITU-T P.862.2), roughly 1.0 (bad) to 4.64 (transparent), for speech.

    Both signals are downmixed to mono, trimmed to the shorter length and resampled to 16 kHz. Returns
    None (with a logged reason) if the ``pesq`` package is missing, the clip is shorter than the 0.25 s
    PESQ needs, or PESQ finds no speech in the reference (silence).
    """
    sample_rate = _check_rate(sample_rate)
    ref, est = _pair(ref, est)
    if _unavailable("pesq_wb"):
        return None
    from pesq import PesqError, pesq

    ref16 = _resample(_mono(ref), sample_rate, PESQ_RATE).numpy()
    est16 = _resample(_mono(est), sample_rate, PESQ_RATE).numpy()
    if not np.any(ref16) and not np.any(est16):
        logger.warning("pesq_wb skipped: both signals are silent")
        return None
    try:
        return float(pesq(PESQ_RATE, ref16, est16, "wb"))
    except PesqError as exc:  # too short, no utterances: the model has nothing to score
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        logger.warning("pesq_wb skipped: %s", reason)
        return None


def stoi(ref: Tensor, est: Tensor, sample_rate: int) -> float | None:
    """Short-time objective intelligibility (Taal et al., IEEE TASLP 2011), 0 to 1, higher is better.

    Mono downmix, trimmed to the shorter length, then pystoi resamples to its native 10 kHz itself and
    drops silent frames. Returns None (logged) if pystoi is missing, the reference is silent, or fewer
    than 30 speech frames (~384 ms) remain, where pystoi would otherwise return a meaningless 1e-5.
    """
    sample_rate = _check_rate(sample_rate)
    ref, est = _pair(ref, est)
    if _unavailable("stoi"):
        return None
    from pystoi import stoi as _stoi

    ref_m, est_m = _mono(ref).numpy(), _mono(est).numpy()
    if not np.any(ref_m):
        logger.warning("stoi skipped: the reference is silent")
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(_stoi(ref_m, est_m, sample_rate, extended=False))
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        logger.warning("stoi skipped: fewer than 30 non-silent frames at 10 kHz (clip too short)")
        return None
    return value


@functools.lru_cache(maxsize=1)
def _visqol_api():
    from visqol import VisqolApi

    api = VisqolApi()
    api.create(mode="audio")  # SVR model shipped in the wheel; no download
    return api


def visqol(ref: Tensor, est: Tensor, sample_rate: int) -> float | None:
    """ViSQOL v3 MOS-LQO in audio mode (Chinen et al., QoMEX 2020), 1 to ~4.75, via visqol-python.

    Audio mode is the music / general-audio model: 48 kHz, 32 gammatone bands to 15 kHz, SVR mapping.
    Signals are downmixed to mono, trimmed to the shorter length and resampled to 48 kHz. Speech mode
    is not used because its default (lattice) mapper needs ai-edge-litert and its polynomial fallback
    over-predicts degraded speech by 1-2 MOS points. Returns None (logged) if the package is missing or
    ViSQOL rejects the input (e.g. too short for its 0.5 s patches). Takes ~0.7 s per second of audio.
    """
    sample_rate = _check_rate(sample_rate)
    ref, est = _pair(ref, est)
    if _unavailable("visqol"):
        return None
    ref48 = _resample(_mono(ref), sample_rate, VISQOL_RATE).numpy()
    est48 = _resample(_mono(est), sample_rate, VISQOL_RATE).numpy()
    try:
        result = _visqol_api().measure_from_arrays(ref48, est48, VISQOL_RATE)
    except Exception as exc:  # noqa: BLE001 - a third-party model; any failure means "no score"
        logger.warning("visqol skipped: %s: %s", type(exc).__name__, exc)
        return None
    score = float(result.moslqo)
    if not math.isfinite(score):
        logger.warning("visqol skipped: non-finite score (silent input?)")
        return None
    return score


def audio_metrics(ref: Tensor, est: Tensor, sample_rate: int, speech: bool,
                  *, est_sample_rate: int | None = None) -> dict[str, float | None]:
    """All audio metrics for one decoded clip against its original.

    Keys: ``si_sdr``, ``mel_distance``, ``stft_distance`` always; for speech also ``pesq_wb`` and ``stoi``
    and ``visqol_audio_mode`` (ViSQOL's music model applied to speech: useful for comparing codecs with
    each other, not comparable to published speech-mode ViSQOL numbers); for non-speech ``visqol``.
    Optional metrics are None when they cannot run (see :func:`availability`).

    Shapes: (channels, samples) or (samples,) sharing ``sample_rate``; trimmed to the shorter length.
    Pass ``est_sample_rate`` when the decoder reports its own rate: a mismatch raises ValueError
    (resample first) instead of comparing spectra on different frequency axes.
    """
    sample_rate = _check_rate(sample_rate)
    if est_sample_rate is not None and _check_rate(est_sample_rate) != sample_rate:
        raise ValueError(f"sample rates differ: ref {sample_rate} Hz, est {est_sample_rate} Hz; resample first")
    ref, est = _pair(ref, est)
    out: dict[str, float | None] = {
        "si_sdr": si_sdr(ref, est),
        "mel_distance": mel_distance(ref, est, sample_rate),
        "stft_distance": stft_distance(ref, est, sample_rate),
    }
    if speech:
        out["pesq_wb"] = pesq_wb(ref, est, sample_rate)
        out["stoi"] = stoi(ref, est, sample_rate)
        out["visqol_audio_mode"] = visqol(ref, est, sample_rate)
    else:
        out["visqol"] = visqol(ref, est, sample_rate)
    return out
