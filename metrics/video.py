"""Full-reference video quality: per-frame PSNR / luma PSNR / MS-SSIM, and VMAF through ffmpeg's libvmaf.

Shapes: a video is a float tensor ``(T, 3, H, W)`` (frames, RGB, height, width) with values in [0, 1]; the
frame rate is a float in frames per second. Like the image metrics, everything is computed on 8-bit-rounded
frames (:func:`polycodec.metrics.image.to_8bit`), i.e. on what a decoded 8-bit file would show.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .image import _as_batch, _ms_ssim_per_image, _psnr_per_image, _psnr_y_per_image, to_8bit

logger = logging.getLogger(__name__)

# Frames per MS-SSIM call: bounds memory on long or large videos (the filters hold several copies).
_CHUNK = 16

# Smallest frame side passed to libvmaf. Its VIF feature filters the first scale with 17 taps, and the
# bundled libvmaf crashes (SIGSEGV) on frames of 16 px or less; 32 keeps a margin above the 17 px that
# happened to work when this was written.
VMAF_MIN_SIDE = 32


def _video_pair(ref: Tensor, dist: Tensor) -> tuple[Tensor, Tensor]:
    """Validated, 8-bit-rounded ``(T, 3, H, W)`` float32 pair; raises ``ValueError`` on bad shape or range."""
    if isinstance(ref, Tensor) and isinstance(dist, Tensor) and ref.shape != dist.shape:
        raise ValueError(f"ref and dist must have the same shape, got {tuple(ref.shape)} and {tuple(dist.shape)}")
    for name, v in (("ref", ref), ("dist", dist)):
        if isinstance(v, Tensor) and (v.dim() != 4 or v.shape[1] != 3):
            raise ValueError(f"{name} must be a video (T, 3, H, W), got shape {tuple(v.shape)}")
    return to_8bit(_as_batch(ref, "ref")), to_8bit(_as_batch(dist, "dist"))


def _mean_finite(values: list[float]) -> float:
    """Mean of the finite values; ``inf`` when every value is ``inf`` (all frames identical)."""
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.inf


def video_metrics(ref: Tensor, dist: Tensor) -> dict:
    """Frame-wise metrics of a decoded video against its source.

    ``ref``, ``dist``: ``(T, 3, H, W)`` in [0, 1], frames at least 11x11 px. Returns

    - ``psnr_per_frame``: list of T RGB PSNRs in dB (``inf`` for a frame identical to its reference);
    - ``psnr``: mean of the per-frame PSNRs over the frames that are not identical (an identical frame would
      make the mean ``inf`` and hide every other frame's error), ``inf`` if all frames are identical;
    - ``psnr_y``: the same for BT.601 luma PSNR (see :func:`polycodec.metrics.image.psnr_y`);
    - ``ms_ssim``: mean per-frame MS-SSIM (fewer scales for frames of 160 px or less, see
      :func:`polycodec.metrics.image.ms_ssim`).

    Averaging per-frame PSNR (rather than PSNR of the whole-sequence MSE) is the convention of video
    coding reports (e.g. the JVET common test conditions).
    """
    r, d = _video_pair(ref, dist)
    with torch.no_grad():
        per_frame = [float(v) for v in _psnr_per_image(r, d)]
        per_frame_y = [float(v) for v in _psnr_y_per_image(r, d)]
        ms = torch.cat([_ms_ssim_per_image(r[i:i + _CHUNK], d[i:i + _CHUNK]) for i in range(0, len(r), _CHUNK)])
    return {
        "psnr_per_frame": per_frame,
        "psnr": _mean_finite(per_frame),
        "psnr_y": _mean_finite(per_frame_y),
        "ms_ssim": float(ms.mean()),
    }


# -- VMAF -----------------------------------------------------------------------------------------------------

def _ffmpeg_exe() -> tuple[str | None, str]:
    """Path of imageio-ffmpeg's ffmpeg binary, or ``(None, why not)``."""
    try:
        import imageio_ffmpeg
    except ImportError as exc:
        return None, f"imageio-ffmpeg is not installed ({exc})"
    try:
        return imageio_ffmpeg.get_ffmpeg_exe(), ""
    except RuntimeError as exc:  # raised when no binary is bundled for this platform
        return None, f"imageio-ffmpeg has no ffmpeg binary here ({exc})"


@functools.lru_cache(maxsize=8)
def _libvmaf_missing(exe: str) -> str:
    """Empty string if ``exe -filters`` lists libvmaf, else why not (cached per binary: it spawns ffmpeg)."""
    try:
        out = subprocess.run([exe, "-hide_banner", "-nostdin", "-filters"], capture_output=True, text=True,
                             timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run {exe} -filters ({exc})"
    if not any(line.split()[1:2] == ["libvmaf"] for line in out.stdout.splitlines()):
        return f"{exe} was built without libvmaf (not in its -filters list)"
    return ""


def _write_rgb24(video: Tensor, path: Path) -> None:
    """8-bit-rounded ``(T, 3, H, W)`` in [0, 1] -> raw interleaved RGB bytes, frame after frame."""
    codes = torch.round(video.cpu() * 255.0).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    path.write_bytes(codes.numpy().tobytes())


def _pooled_vmaf(log: dict) -> float:
    """Mean VMAF from libvmaf's JSON log (``pooled_metrics.vmaf.mean``, or the mean of per-frame scores)."""
    pooled = log.get("pooled_metrics", {}).get("vmaf", {})
    if "mean" in pooled:
        return float(pooled["mean"])
    frames = [f["metrics"]["vmaf"] for f in log.get("frames", [])]
    if not frames:
        raise RuntimeError("libvmaf log has neither pooled_metrics.vmaf nor per-frame vmaf scores")
    return float(np.mean(frames))


def vmaf(ref: Tensor, dist: Tensor, fps: float, *, timeout_s: float = 600.0) -> float | None:
    """VMAF (Netflix's Video Multi-method Assessment Fusion; Li et al., Netflix Tech Blog 2016), mean-pooled
    over frames, 0..100, higher is better, computed by libvmaf inside imageio-ffmpeg's ffmpeg.

    ``ref``, ``dist``: ``(T, 3, H, W)`` in [0, 1], H and W at least ``VMAF_MIN_SIDE`` (32) px; ``fps``: frames
    per second (stamped on both inputs so ffmpeg pairs frame i with frame i). Both videos are rounded to 8 bits,
    written as raw RGB into a temporary directory and converted by ffmpeg to 8-bit YUV 4:4:4 with BT.601
    limited-range coefficients (VMAF's features read luma only, so 4:4:4 loses nothing and allows odd sizes).
    The model is libvmaf's built-in default, ``vmaf_v0.6.1`` (trained for 1080p viewing); no model file is
    read or downloaded. Scores on very small frames are valid numbers but far from the model's training
    conditions: use them to rank codecs, not as absolute quality.

    Returns ``None`` (with a ``RuntimeWarning`` saying why) when ffmpeg or its libvmaf filter is not
    available. Raises ``TimeoutError`` if ffmpeg runs longer than ``timeout_s`` and ``RuntimeError`` if it
    fails, since those are failures, not a missing optional tool.
    """
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    r, d = _video_pair(ref, dist)
    t, _, h, w = r.shape
    if min(h, w) < VMAF_MIN_SIDE:
        raise ValueError(f"VMAF needs frames of at least {VMAF_MIN_SIDE}x{VMAF_MIN_SIDE} px (libvmaf crashes on "
                         f"tiny frames); got {h}x{w}")
    exe, why = _ffmpeg_exe()
    if exe is not None:
        why = _libvmaf_missing(exe)
    if exe is None or why:
        message = f"VMAF not computed: {why}"
        logger.warning(message)
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        return None

    raw = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-video_size", f"{w}x{h}", "-framerate", f"{float(fps):.6f}"]
    to_yuv = "scale=out_color_matrix=bt601:out_range=tv,format=yuv444p"
    # libvmaf's first input is the distorted video, the second the reference.
    graph = (f"[0:v]{to_yuv}[dist];[1:v]{to_yuv}[ref];"
             f"[dist][ref]libvmaf=log_fmt=json:log_path=vmaf.json:n_threads={min(os.cpu_count() or 1, 8)}")
    with tempfile.TemporaryDirectory(prefix="polycodec-vmaf-") as tmp:
        work = Path(tmp)
        _write_rgb24(d, work / "dist.rgb")
        _write_rgb24(r, work / "ref.rgb")
        cmd = [exe, "-hide_banner", "-nostdin", "-loglevel", "error", *raw, "-i", "dist.rgb", *raw, "-i", "ref.rgb",
               "-lavfi", graph, "-f", "null", "-"]
        # Relative file names with cwd = the temp dir: no filter-graph escaping of the path (':' or '\').
        # stderr goes to a file, not a pipe, so a killed ffmpeg cannot leave run() waiting on the pipe.
        with open(work / "stderr.txt", "w+b") as err:
            try:
                proc = subprocess.run(cmd, cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=err, timeout=timeout_s, check=False)
            except subprocess.TimeoutExpired as exc:
                raise TimeoutError(f"ffmpeg libvmaf took longer than {timeout_s} s on {t} frames of {h}x{w}") from exc
            err.seek(0)
            stderr = err.read().decode(errors="replace")
        log_path = work / "vmaf.json"
        if proc.returncode != 0 or not log_path.exists():
            status = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
            raise RuntimeError(f"ffmpeg libvmaf failed ({status}) on {t} frames of {h}x{w}: "
                               f"{stderr[-2000:].strip() or '(no message)'}")
        log = json.loads(log_path.read_text())
    n_scored = len(log.get("frames", []))
    if n_scored and n_scored != t:
        raise RuntimeError(f"libvmaf scored {n_scored} frames, expected {t}")
    return _pooled_vmaf(log)
