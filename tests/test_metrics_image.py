"""Image metrics against hand-computed values: PSNR of constant offsets, BT.601 luma PSNR, SSIM / MS-SSIM
on identical and noisier images (including images too small for 5 MS-SSIM scales), piq's weight-free
perceptual indices with the network blocked, and the input checks."""

import math
import socket
import urllib.request

import pytest
import pytorch_msssim
import torch

from polycodec.metrics.image import (
    RANGE_TOLERANCE, _ms_ssim_few_scales, image_metrics, ms_ssim, ms_ssim_scales, perceptual_scores, psnr,
    psnr_y, ssim, to_8bit,
)


def smooth_image(h: int, w: int, channels: int = 3, lo: float = 0.1, hi: float = 0.9) -> torch.Tensor:
    """Deterministic natural-ish test image (channels, h, w) in [lo, hi]: sinusoids and a gradient per channel."""
    y = torch.linspace(0, 1, h).view(h, 1)
    x = torch.linspace(0, 1, w).view(1, w)
    planes = []
    for c in range(channels):
        p = (0.5 + 0.25 * torch.sin(2 * math.pi * (3 + c) * x + 1.3 * c) * torch.cos(2 * math.pi * (2 + c) * y)
             + 0.25 * (x * (1 - c / 3) + y * c / 3) - 0.125)
        planes.append(p)
    img = torch.stack(planes)
    img = (img - img.min()) / (img.max() - img.min())
    return lo + (hi - lo) * img


def noisy(img: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (img + sigma * torch.randn(img.shape, generator=g)).clamp(0, 1)


# -- 8-bit rounding and PSNR ----------------------------------------------------------------------------------

def test_to_8bit_rounds_clamps_and_keeps_shape():
    x = torch.tensor([[[-0.01, 0.0, 0.4 / 255, 0.6 / 255, 1.0, 1.02]]], dtype=torch.float64)
    out = to_8bit(x)
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert torch.equal(out * 255, torch.tensor([[[0.0, 0.0, 0.0, 1.0, 255.0, 255.0]]]))


@pytest.mark.parametrize("k", [1, 2, 5, 16])
def test_psnr_of_a_constant_offset_is_exactly_20_log10_255_over_k(k):
    ref = to_8bit(smooth_image(32, 40))                    # codes between ~25 and ~230: ref + k stays in range
    # Float jitter below half an 8-bit step must not matter: metrics score the 8-bit-rounded images.
    jitter = (torch.rand(ref.shape, generator=torch.Generator().manual_seed(k)) - 0.5) * 0.9 / 255
    dist = ref + k / 255 + jitter
    assert psnr(ref, dist) == pytest.approx(20 * math.log10(255 / k), abs=1e-9)
    assert psnr_y(ref, dist) == pytest.approx(20 * math.log10(255 / k), abs=1e-9)  # Y weights sum to 1


def test_psnr_identical_is_inf_and_batch_is_mean_of_per_image_psnr():
    ref = to_8bit(smooth_image(24, 24))
    assert psnr(ref, ref) == math.inf
    batch_ref = torch.stack([ref, ref])
    batch_dist = torch.stack([ref + 1 / 255, ref + 4 / 255])
    expected = (20 * math.log10(255 / 1) + 20 * math.log10(255 / 4)) / 2   # not PSNR of the pooled MSE
    assert psnr(batch_ref, batch_dist) == pytest.approx(expected, abs=1e-9)
    assert psnr(batch_ref, torch.stack([ref, ref + 4 / 255])) == math.inf  # one identical image


def test_psnr_of_an_offset_on_green_only_matches_hand_computation():
    ref = to_8bit(smooth_image(32, 32))
    dist = ref.clone()
    dist[1] += 10 / 255
    # RGB: MSE = 10^2 / 3 codes^2. Luma: Y moves by 0.587 * 10 = 5.87 codes everywhere.
    assert psnr(ref, dist) == pytest.approx(20 * math.log10(255 / 10) + 10 * math.log10(3), abs=1e-9)
    assert psnr_y(ref, dist) == pytest.approx(20 * math.log10(255 / 5.87), abs=1e-9)


def test_psnr_y_matches_a_manual_bt601_computation():
    ref = smooth_image(40, 30)
    dist = noisy(ref, 0.05)
    r = torch.round(ref.double() * 255)
    d = torch.round(dist.double() * 255)
    w = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64).view(3, 1, 1)
    mse = (((r - d) * w).sum(0) ** 2).mean()
    assert psnr_y(ref, dist) == pytest.approx(10 * math.log10(255 ** 2 / float(mse)), abs=1e-9)
    assert psnr_y(ref, dist) != pytest.approx(psnr(ref, dist), abs=0.1)


def test_grey_psnr_y_equals_psnr():
    ref = smooth_image(32, 32, channels=1)
    dist = noisy(ref, 0.03)
    assert psnr_y(ref, dist) == psnr(ref, dist)


# -- SSIM / MS-SSIM -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [64, 192])   # 3 scales and the standard 5 scales
def test_ssim_and_ms_ssim_are_one_for_identical_and_fall_with_noise(size):
    ref = smooth_image(size, size)
    assert ssim(ref, ref) == pytest.approx(1.0, abs=1e-6)
    assert ms_ssim(ref, ref) == pytest.approx(1.0, abs=1e-6)
    dists = [noisy(ref, s) for s in (0.01, 0.03, 0.1)]
    ssims = [ssim(ref, d) for d in dists]
    ms_ssims = [ms_ssim(ref, d) for d in dists]
    assert 1.0 > ssims[0] > ssims[1] > ssims[2] > 0
    assert 1.0 > ms_ssims[0] > ms_ssims[1] > ms_ssims[2] > 0


@pytest.mark.parametrize("side, scales", [(11, 1), (16, 1), (20, 1), (21, 2), (40, 2), (41, 3), (80, 3),
                                          (81, 4), (160, 4), (161, 5), (512, 5)])
def test_ms_ssim_scale_count_follows_the_window_bound(side, scales):
    assert ms_ssim_scales(side, side) == scales
    assert ms_ssim_scales(side, 1000) == scales   # the smaller side decides


@pytest.mark.parametrize("h, w", [(11, 11), (16, 16), (17, 23), (33, 64), (48, 200), (100, 120)])
def test_ms_ssim_works_on_small_and_non_square_images(h, w):
    ref = smooth_image(h, w)
    value = ms_ssim(ref, noisy(ref, 0.05))
    assert 0.0 < value < 1.0
    assert ms_ssim(ref, ref) == pytest.approx(1.0, abs=1e-6)


def test_reduced_scale_ms_ssim_is_pytorch_msssim_at_five_scales():
    ref = to_8bit(smooth_image(176, 168)).unsqueeze(0)
    dist = to_8bit(noisy(ref, 0.04))
    ours = _ms_ssim_few_scales(ref, dist, 5)
    lib = pytorch_msssim.ms_ssim(ref, dist, data_range=1.0, size_average=False)
    # Not bit-equal only because the standard weights sum to 1.0001 and ours are renormalised to 1.
    assert torch.allclose(ours, lib, atol=1e-5)


def test_single_scale_ms_ssim_is_ssim():
    ref = smooth_image(18, 18)
    dist = noisy(ref, 0.05)
    assert ms_ssim(ref, dist) == pytest.approx(ssim(ref, dist), abs=1e-6)


def test_images_below_the_window_size_raise():
    ref = smooth_image(10, 64)
    with pytest.raises(ValueError, match="at least 11x11"):
        ms_ssim(ref, ref)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(ref, ref)


# -- perceptual indices (piq) ---------------------------------------------------------------------------------

ALL_PERCEPTUAL = {"haarpsi", "gmsd", "mdsi", "vsi", "fsim", "vif"}


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection or fetch a URL fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a metric tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def test_perceptual_scores_run_offline_and_rank_distortions(no_network):
    ref = smooth_image(64, 64)
    same = perceptual_scores(ref, ref)
    assert set(same) == ALL_PERCEPTUAL
    for name in ("haarpsi", "vsi", "fsim", "vif"):   # similarities: 1 when identical
        assert same[name] == pytest.approx(1.0, abs=1e-4), name
    for name in ("gmsd", "mdsi"):                      # distances: 0 when identical
        assert same[name] == pytest.approx(0.0, abs=1e-4), name
    light, heavy = perceptual_scores(ref, noisy(ref, 0.02)), perceptual_scores(ref, noisy(ref, 0.1))
    for name in ("haarpsi", "vsi", "fsim", "vif"):
        assert 1.0 > light[name] > heavy[name], name
    for name in ("gmsd", "mdsi"):
        assert 0.0 < light[name] < heavy[name], name


def test_perceptual_scores_leave_out_what_cannot_run():
    ref = smooth_image(32, 32)                         # VIF needs 41x41: left out, not raised
    scores = perceptual_scores(ref, noisy(ref, 0.05))
    assert "vif" not in scores
    assert {"haarpsi", "gmsd"} <= set(scores)
    assert 0.0 < scores["haarpsi"] < 1.0


def test_perceptual_scores_on_grey_images():
    ref = smooth_image(48, 48, channels=1)
    scores = perceptual_scores(ref, noisy(ref, 0.05))
    assert set(scores) == ALL_PERCEPTUAL               # FSIM without chroma; MDSI / VSI on copied channels
    assert all(math.isfinite(v) for v in scores.values())


# -- image_metrics and input checks ---------------------------------------------------------------------------

def test_image_metrics_collects_every_metric():
    ref = smooth_image(48, 56)
    dist = noisy(ref, 0.03)
    basic = image_metrics(ref, dist, perceptual=False)
    assert set(basic) == {"psnr", "psnr_y", "ssim", "ms_ssim"}
    assert basic["psnr"] == psnr(ref, dist) and basic["ms_ssim"] == ms_ssim(ref, dist)
    assert basic["psnr_y"] == psnr_y(ref, dist) and basic["ssim"] == ssim(ref, dist)
    full = image_metrics(ref.unsqueeze(0), dist.unsqueeze(0))
    assert set(full) == {"psnr", "psnr_y", "ssim", "ms_ssim"} | ALL_PERCEPTUAL
    assert full["psnr"] == pytest.approx(basic["psnr"], abs=1e-12)


def test_values_just_outside_the_range_are_clamped_but_far_outside_raise():
    ref = smooth_image(16, 16, lo=0.0, hi=1.0)
    assert psnr(ref, (ref * (1 + 0.9 * RANGE_TOLERANCE)) - 0.5 * RANGE_TOLERANCE) > 40
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        psnr(ref, ref * 255)                           # a 0..255 image passed by mistake
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ssim(ref - 0.01, ref)
    with pytest.raises(ValueError, match="NaN"):
        psnr(ref, torch.full_like(ref, float("nan")))


def test_bad_shapes_and_types_raise():
    ref = smooth_image(16, 16)
    with pytest.raises(ValueError, match="same shape"):
        psnr(ref, ref[:, :, :15])
    with pytest.raises(ValueError, match="channels"):
        psnr(ref[:2], ref[:2])
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        ms_ssim(ref[0], ref[0])
    with pytest.raises(TypeError, match="float"):
        psnr((ref * 255).to(torch.uint8), (ref * 255).to(torch.uint8))
    with pytest.raises(ValueError, match="same shape"):
        image_metrics(ref, ref.unsqueeze(0).repeat(2, 1, 1, 1))
