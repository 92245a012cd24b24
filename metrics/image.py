"""Full-reference image quality: PSNR (RGB and luma), SSIM, MS-SSIM and weight-free perceptual indices.

Every metric here is computed on **8-bit-rounded** inputs (:func:`to_8bit`): a codec's output is judged as
the file a user would get after decoding, which holds 8-bit samples, not the decoder's float tensor.

Shapes: an image is a float tensor ``(C, H, W)`` or a batch ``(B, C, H, W)``, ``C`` in {1, 3} (grey or RGB),
values in [0, 1]. ``ref`` and ``dist`` must have the same shape. A batch gives the mean over its images.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim as _msssim_5_scales
from pytorch_msssim import ssim as _ssim_lib
from torch import Tensor

logger = logging.getLogger(__name__)

# Inputs may overshoot [0, 1] by less than half an 8-bit step: such values round to code 0 or 255 anyway,
# so clamping them changes nothing a decoded file could show. Anything further out is a caller's bug.
RANGE_TOLERANCE = 0.5 / 255

# BT.601 luma weights (ITU-R BT.601, Y' = 0.299 R' + 0.587 G' + 0.114 B'), applied to full-range RGB.
_LUMA = (0.299, 0.587, 0.114)

# SSIM's Gaussian window (Wang et al. 2004): 11 taps, sigma 1.5, constants K1 = 0.01, K2 = 0.03.
_WIN_SIZE, _WIN_SIGMA, _K1, _K2 = 11, 1.5, 0.01, 0.03
# MS-SSIM's per-scale exponents, finest to coarsest (Wang, Simoncelli, Bovik 2003, table in section 3.2).
_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


# -- input handling -------------------------------------------------------------------------------------------

def to_8bit(x: Tensor) -> Tensor:
    """``round(clamp(x, 0, 1) * 255) / 255`` as float32: the values an 8-bit file holds, back in [0, 1].

    All metrics in this module measure these rounded values, so a float output is scored like its decoded
    file. Shape is kept: ``(..., C, H, W)`` in, same shape out.
    """
    return torch.round(x.detach().float().clamp(0.0, 1.0) * 255.0) / 255.0


def _as_batch(x: Tensor, name: str) -> Tensor:
    """Validated ``(B, C, H, W)`` float32 view of one image or a batch; raises on anything else."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a float tensor with values in [0, 1], got dtype {x.dtype}")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"{name} must be (C, H, W) or (B, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[1] not in (1, 3):
        raise ValueError(f"{name} must have 1 (grey) or 3 (RGB) channels, got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}")
    x = x.detach()
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    lo, hi = float(x.min()), float(x.max())
    if lo < -RANGE_TOLERANCE or hi > 1.0 + RANGE_TOLERANCE:
        raise ValueError(f"{name} must hold values in [0, 1] (images as floats, not 0..255); "
                         f"got min {lo:.6g}, max {hi:.6g}")
    return x.float()


def _pair(ref: Tensor, dist: Tensor) -> tuple[Tensor, Tensor]:
    """Both inputs validated, batched to ``(B, C, H, W)`` and rounded to 8 bits."""
    if isinstance(ref, Tensor) and isinstance(dist, Tensor) and ref.shape != dist.shape:
        raise ValueError(f"ref and dist must have the same shape, got {tuple(ref.shape)} and {tuple(dist.shape)}")
    return to_8bit(_as_batch(ref, "ref")), to_8bit(_as_batch(dist, "dist"))


def _codes(x: Tensor) -> Tensor:
    """8-bit-rounded values in [0, 1] back to their integer codes 0..255, as float64.

    PSNR is computed on codes so that a difference of k codes is exactly k (not k/255 in float32).
    """
    return torch.round(x.double() * 255.0)


# -- PSNR -----------------------------------------------------------------------------------------------------

def _psnr_from_codes(ref: Tensor, dist: Tensor) -> Tensor:
    """Per-image PSNR in dB, ``10 log10(255^2 / MSE)``, for codes ``(B, C, H, W)``; ``inf`` where MSE = 0."""
    mse = (ref - dist).pow(2).flatten(1).mean(1)
    # 10*log10(255^2/0) = inf; torch gives +inf for x/0 with x > 0, which is the intended result.
    return 10.0 * torch.log10(255.0 ** 2 / mse)


def _luma(codes: Tensor) -> Tensor:
    """BT.601 luma of RGB codes ``(B, 3, H, W)`` -> ``(B, 1, H, W)``; grey ``(B, 1, H, W)`` is returned as is.

    Y is not re-rounded to an integer: this measures the RGB pixels, not a YUV file made from them.
    """
    if codes.shape[1] == 1:
        return codes
    w = codes.new_tensor(_LUMA).view(1, 3, 1, 1)
    return (codes * w).sum(1, keepdim=True)


def _psnr_per_image(ref: Tensor, dist: Tensor) -> Tensor:
    """RGB PSNR (dB) of each image of two rounded batches ``(B, C, H, W)`` -> ``(B,)`` float64."""
    return _psnr_from_codes(_codes(ref), _codes(dist))


def _psnr_y_per_image(ref: Tensor, dist: Tensor) -> Tensor:
    """Luma PSNR (dB) of each image of two rounded batches ``(B, C, H, W)`` -> ``(B,)`` float64."""
    return _psnr_from_codes(_luma(_codes(ref)), _luma(_codes(dist)))


def psnr(ref: Tensor, dist: Tensor) -> float:
    """Peak signal-to-noise ratio in dB over all channels: ``10 log10(255^2 / MSE)`` on 8-bit codes.

    ``ref``, ``dist``: ``(C, H, W)`` or ``(B, C, H, W)`` in [0, 1]. For a batch, the mean of per-image PSNRs
    (so one identical image in the batch makes the result ``inf``). Identical images give ``float('inf')``.
    """
    r, d = _pair(ref, dist)
    return float(_psnr_per_image(r, d).mean())


def psnr_y(ref: Tensor, dist: Tensor) -> float:
    """PSNR in dB of BT.601 luma, ``Y = 0.299 R + 0.587 G + 0.114 B`` on full-range 8-bit RGB codes.

    The usual codec-comparison figure (video coding reports Y-PSNR). Grey input (C = 1) is its own luma,
    so the result equals :func:`psnr`. Batches: mean of per-image values; identical images give ``inf``.
    """
    r, d = _pair(ref, dist)
    return float(_psnr_y_per_image(r, d).mean())


# -- SSIM and MS-SSIM -----------------------------------------------------------------------------------------

def _check_ssim_size(x: Tensor) -> None:
    h, w = x.shape[-2:]
    if min(h, w) < _WIN_SIZE:
        raise ValueError(f"SSIM and MS-SSIM need images of at least {_WIN_SIZE}x{_WIN_SIZE} px (the size of the "
                         f"{_WIN_SIZE}x{_WIN_SIZE} Gaussian window); got {h}x{w}")


def ms_ssim_scales(height: int, width: int) -> int:
    """Number of MS-SSIM scales (1..5) used for an image of this size.

    Each scale halves the image, and the coarsest one must still fit the 11-px window: scale count L needs
    ``min(height, width) > 10 * 2**(L - 1)``, i.e. more than 160 px for the standard 5 scales (the same
    bound pytorch_msssim asserts), 81..160 px -> 4, 41..80 -> 3, 21..40 -> 2, 11..20 -> 1 (plain SSIM).
    """
    side = min(height, width)
    if side < _WIN_SIZE:
        raise ValueError(f"MS-SSIM needs images of at least {_WIN_SIZE}x{_WIN_SIZE} px; got {height}x{width}")
    scales = 1
    while scales < len(_MS_SSIM_WEIGHTS) and side > (_WIN_SIZE - 1) * 2 ** scales:
        scales += 1
    return scales


def _gaussian_blur(x: Tensor) -> Tensor:
    """Separable 11-tap Gaussian (sigma 1.5), 'valid' borders, per channel: ``(B, C, H, W)`` -> smaller."""
    coords = torch.arange(_WIN_SIZE, dtype=torch.float32) - _WIN_SIZE // 2
    g = torch.exp(-coords ** 2 / (2 * _WIN_SIGMA ** 2))
    g = (g / g.sum()).to(x.device, x.dtype).view(1, 1, -1, 1).repeat(x.shape[1], 1, 1, 1)
    # Vertical pass first, then horizontal, as pytorch_msssim does: same float rounding, same scores.
    x = F.conv2d(x, g, groups=x.shape[1])
    return F.conv2d(x, g.transpose(-1, -2), groups=x.shape[1])


def _ssim_and_cs(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """SSIM and its contrast-structure term, each averaged over the map: ``(B, C, H, W)`` -> ``(B, C)`` twice.

    Same formula, window and constants as pytorch_msssim (data range 1), which exposes ``cs`` only privately.
    """
    c1, c2 = _K1 ** 2, _K2 ** 2
    mu_x, mu_y = _gaussian_blur(x), _gaussian_blur(y)
    var_x = _gaussian_blur(x * x) - mu_x ** 2
    var_y = _gaussian_blur(y * y) - mu_y ** 2
    cov = _gaussian_blur(x * y) - mu_x * mu_y
    cs = (2 * cov + c2) / (var_x + var_y + c2)
    lum = (2 * mu_x * mu_y + c1) / (mu_x ** 2 + mu_y ** 2 + c1)
    return (lum * cs).flatten(2).mean(-1), cs.flatten(2).mean(-1)


def _ms_ssim_few_scales(x: Tensor, y: Tensor, scales: int) -> Tensor:
    """MS-SSIM with the first ``scales`` weights renormalised to sum to 1: ``(B, C, H, W)`` -> ``(B,)``.

    Mirrors pytorch_msssim.ms_ssim step for step (ReLU on cs, 2x2 average pooling with odd sizes padded,
    product over scales, mean over channels); that function refuses images of 160 px or less.
    """
    weights = torch.tensor(_MS_SSIM_WEIGHTS[:scales], dtype=x.dtype, device=x.device)
    weights = weights / weights.sum()
    terms = []
    for i in range(scales):
        s, cs = _ssim_and_cs(x, y)
        if i < scales - 1:
            terms.append(torch.relu(cs))
            pad = [n % 2 for n in x.shape[2:]]
            x, y = F.avg_pool2d(x, 2, padding=pad), F.avg_pool2d(y, 2, padding=pad)
    terms.append(torch.relu(s))
    per_channel = torch.prod(torch.stack(terms) ** weights.view(-1, 1, 1), dim=0)  # (B, C)
    return per_channel.mean(1)


def _ssim_per_image(ref: Tensor, dist: Tensor) -> Tensor:
    """SSIM of each image of two rounded batches ``(B, C, H, W)`` -> ``(B,)`` (mean over channels)."""
    _check_ssim_size(ref)
    return _ssim_lib(ref, dist, data_range=1.0, size_average=False)


def _ms_ssim_per_image(ref: Tensor, dist: Tensor) -> Tensor:
    """MS-SSIM of each image of two rounded batches ``(B, C, H, W)`` -> ``(B,)``; see :func:`ms_ssim`."""
    scales = ms_ssim_scales(*ref.shape[-2:])
    if scales == len(_MS_SSIM_WEIGHTS):
        return _msssim_5_scales(ref, dist, data_range=1.0, size_average=False)
    return _ms_ssim_few_scales(ref, dist, scales)


def ssim(ref: Tensor, dist: Tensor) -> float:
    """Structural similarity (Wang, Bovik, Sheikh, Simoncelli, IEEE TIP 2004), in [-1, 1], 1 = identical.

    pytorch_msssim with an 11x11 Gaussian window (sigma 1.5), K = (0.01, 0.03), data range 1, averaged over
    channels and over the batch. Images must be at least 11x11 px, else ``ValueError``.
    """
    r, d = _pair(ref, dist)
    with torch.no_grad():
        return float(_ssim_per_image(r, d).mean())


def ms_ssim(ref: Tensor, dist: Tensor) -> float:
    """Multi-scale SSIM (Wang, Simoncelli, Bovik, Asilomar 2003), in [0, 1], 1 = identical.

    Images larger than 160 px on the smaller side use pytorch_msssim's standard 5 scales. Smaller images
    cannot be halved 4 times and still fit the 11-px window, so the coarsest scales are dropped and the
    remaining exponents renormalised to sum to 1 (see :func:`ms_ssim_scales`); down to 11..20 px this is
    a single scale, i.e. SSIM clipped at 0. Scores from different scale counts are not strictly comparable:
    compare codecs on images of the same size. Below 11x11 px: ``ValueError``.
    """
    r, d = _pair(ref, dist)
    with torch.no_grad():
        return float(_ms_ssim_per_image(r, d).mean())


# -- perceptual indices (piq) ---------------------------------------------------------------------------------

def _piq_metrics() -> dict:
    """Name -> callable(x, y) for the piq indices that use no learned weights (nothing to download).

    Imported lazily: piq pulls in torchvision and costs seconds to import.
    """
    import piq

    def as_rgb(x: Tensor) -> Tensor:
        # MDSI and VSI are defined on colour images; piq warns and copies a grey channel 3 times itself.
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x

    return {
        "haarpsi": lambda x, y: piq.haarpsi(x, y, data_range=1.0),
        "gmsd": lambda x, y: piq.gmsd(x, y, data_range=1.0),
        "mdsi": lambda x, y: piq.mdsi(as_rgb(x), as_rgb(y), data_range=1.0),
        "vsi": lambda x, y: piq.vsi(as_rgb(x), as_rgb(y), data_range=1.0),
        # FSIMc (with chroma) for RGB, plain FSIM for grey: piq's chromatic variant asserts on 1 channel.
        "fsim": lambda x, y: piq.fsim(x, y, data_range=1.0, chromatic=x.shape[1] == 3),
        "vif": lambda x, y: piq.vif_p(x, y, data_range=1.0),
    }


def perceptual_scores(ref: Tensor, dist: Tensor) -> dict[str, float]:
    """Full-reference perceptual indices from piq that need no downloaded weights, averaged over the batch.

    Keys and meaning (higher is better unless noted):

    - ``haarpsi``: Haar wavelet-based perceptual similarity (Reisenhofer et al., Signal Processing:
      Image Communication 2018), in [0, 1].
    - ``gmsd``: gradient magnitude similarity deviation (Xue et al., IEEE TIP 2014); a distance,
      **lower is better**, 0 = identical.
    - ``mdsi``: mean deviation similarity index (Nafchi et al., IEEE Access 2016); a distance,
      **lower is better**, 0 = identical. Grey input is copied to 3 channels.
    - ``vsi``: visual saliency-induced index (Zhang, Shen, Li, IEEE TIP 2014), in [0, 1]. Grey copied to RGB.
    - ``fsim``: feature similarity (Zhang et al., IEEE TIP 2011), FSIMc for RGB and FSIM for grey, in [0, 1].
    - ``vif``: pixel-domain visual information fidelity (Sheikh & Bovik, IEEE TIP 2006), 1 = identical
      (can exceed 1 for contrast-enhanced images); needs at least 41x41 px.

    A metric whose import or computation fails (piq missing, image too small for it) is left out of the
    dict and the reason logged at INFO level; this function does not raise for those.
    """
    r, d = _pair(ref, dist)
    try:
        metrics = _piq_metrics()
    except Exception as exc:  # noqa: BLE001 - an optional dependency: leave every piq metric out
        logger.info("perceptual metrics unavailable: cannot import piq (%s)", exc)
        return {}
    scores: dict[str, float] = {}
    with torch.no_grad():
        for name, fn in metrics.items():
            try:
                value = float(fn(r, d))
            except Exception as exc:  # noqa: BLE001 - piq raises ValueError / AssertionError on small inputs
                logger.info("perceptual metric %s left out: %s: %s", name, type(exc).__name__, exc)
                continue
            if math.isfinite(value):
                scores[name] = value
            else:
                logger.info("perceptual metric %s left out: non-finite value %r", name, value)
    return scores


def image_metrics(ref: Tensor, dist: Tensor, perceptual: bool = True) -> dict[str, float]:
    """All of the above in one dict: ``psnr``, ``psnr_y``, ``ssim``, ``ms_ssim`` and, when ``perceptual``,
    the keys of :func:`perceptual_scores` that could be computed.

    ``ref``, ``dist``: ``(C, H, W)`` or ``(B, C, H, W)`` in [0, 1], at least 11x11 px.
    """
    r, d = _pair(ref, dist)  # validate and round once; the rounded tensors pass through the rest unchanged
    with torch.no_grad():
        out = {
            "psnr": float(_psnr_per_image(r, d).mean()),
            "psnr_y": float(_psnr_y_per_image(r, d).mean()),
            "ssim": float(_ssim_per_image(r, d).mean()),
            "ms_ssim": float(_ms_ssim_per_image(r, d).mean()),
        }
    if perceptual:
        out.update(perceptual_scores(r, d))
    return out
