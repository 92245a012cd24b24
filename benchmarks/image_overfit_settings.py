"""How the overfitted codec's fitting settings were chosen: each variant's PSNR gap to AVIF at equal rate.

    python benchmarks/image_overfit_settings.py [--images fruits.jpg,home.jpg] [--size 256 | --size 0]
                                                [--qualities 2,4] [--variants noise,soft,...] [--threads 2]
                                                [--steps 600]

Fits every variant to a centre crop of each image (cheap enough to compare many settings on two CPU cores;
``--size 0`` fits the whole image)
and prints, per point, the real bpp of the stream, its PSNR, and the gap in dB to AVIF's curve on the same
crop (Pillow, speed 4, qualities 5..90, interpolated in log-rate): positive means better than AVIF.  The
default images are evaluation photos outside the 4 that ``benchmarks/image_overfit.py --max-files 4``
reports, so the settings were not tuned on the reported files.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

import polycodec
from polycodec.media import read_image
from polycodec.metrics.bd import bd_rate
from polycodec.metrics.image import psnr
from polycodec.models.overfit import OverfitConfig
from polycodec.training.overfit import Preset

STEPS = 600  # the fast preset's budget
VARIANTS = {  # name -> Preset overrides (and OverfitConfig overrides under "config")
    "noise": dict(soft_rounding=None),
    # The shipped default: soft rounding 0.3 -> 0.1, synthesis 16 wide, context 16 wide, the pyramid start
    # from quality 4 up with its learning-rate warm-up.
    "soft": dict(),
    "soft-0.5": dict(soft_rounding=(0.5, 0.1)),
    "soft-0.03": dict(soft_rounding=(0.3, 0.03)),
    "uniform-noise": dict(pyramid_noise=None),  # uniform noise from the pyramid start too (before 2026-12-07)
    "rate-on-tables": dict(rate_on_tables=True),  # the fit scores the rate on the coded tables' means and scales
    "latent-lr-0.1": dict(latent_learning_rate=0.1),
    "rounding-0.1": dict(rounding_fraction=0.1),
    "rounding-0.4": dict(rounding_fraction=0.4),
    "noise-2000": dict(soft_rounding=None, steps=2000),
    "soft-2000": dict(steps=2000),
    "pyramid": dict(pyramid_start_max_lambda=math.inf),  # at every quality
    "no-warmup": dict(pyramid_warmup_fraction=0.0),  # the pyramid start without its learning-rate warm-up
    "zero-start": dict(pyramid_start_max_lambda=0.0),  # at none (every fit until the pyramid start came in)
    "steps-800": dict(steps=800),
    # A half-size fit first: a half-size step costs about 0.35 to 0.45 of a full-size one, so with 400
    # full-size steps after it this takes about the time of "steps-800".
    "half-800+400": dict(half_size_steps=800, steps=400),
    "synthesis-16-context-8": dict(config=dict(synthesis_width=16, context_hidden=8)),
    "synthesis-32-context-8": dict(config=dict(synthesis_width=32, context_hidden=8)),
    "synthesis-32-context-16": dict(config=dict(synthesis_width=32, context_hidden=16)),
    "chroma-full": dict(config=dict(chroma_from_level=0)),  # chroma planes at full resolution too
    "whole-anchors": dict(config=dict(split_anchors=False)),  # the anchors in one pass (stream versions 2 to 4)
    "split-anchors": dict(split_anchors_min_lambda=0.0),  # the anchors in two passes at every quality
}


def centre_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    _, height, width = image.shape
    if size <= 0:
        return image
    top, left = max(0, (height - size) // 2), max(0, (width - size) // 2)
    return image[:, top:top + size, left:left + size].contiguous()


def bpp(data: bytes, image: torch.Tensor) -> float:
    return 8 * len(data) / (image.shape[1] * image.shape[2])


def avif_curve(image: torch.Tensor) -> tuple[list[float], list[float]]:
    """(log bpp, PSNR) of AVIF at qualities 5..90, sorted by rate."""
    points = []  # (log bpp, PSNR)
    for quality in range(5, 95, 5):
        codec = polycodec.load("avif", quality=quality)
        data = codec.encode(image)
        points.append((math.log(bpp(data, image)), psnr(image, codec.decode(data))))
    points.sort()
    return [p[0] for p in points], [p[1] for p in points]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/eval/images")
    parser.add_argument("--images", default="fruits.jpg,home.jpg")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--qualities", default="2,4")
    parser.add_argument("--variants", default="noise,soft", help=f"comma-separated, from: {', '.join(VARIANTS)}")
    parser.add_argument("--steps", type=int, default=STEPS, help="step budget of the variants that set none")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 to run two copies side by side)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("image       variant          quality    bpp    PSNR  AVIF at bpp   gap dB   fit s")
    for name in args.images.split(","):
        image = centre_crop(read_image(Path(args.data) / name), args.size)
        log_rates, psnrs = avif_curve(image)
        for variant in args.variants.split(","):
            overrides = dict(VARIANTS[variant])
            config = OverfitConfig(**overrides.pop("config", {}))
            preset = Preset(**{"steps": args.steps, **overrides})
            points = []  # (bpp, PSNR) of this variant's qualities
            for quality in map(int, args.qualities.split(",")):
                codec = polycodec.load("image-overfit", quality=quality, preset=preset, config=config)
                start = time.perf_counter()
                data = codec.encode(image)
                seconds = time.perf_counter() - start
                rate, quality_db = bpp(data, image), psnr(image, codec.decode(data))
                anchor = float(np.interp(math.log(rate), log_rates, psnrs))
                print(f"{name:<11} {variant:<16} {quality:>7} {rate:6.3f} {quality_db:7.2f} {anchor:12.2f} "
                      f"{quality_db - anchor:+8.2f} {seconds:7.0f}", flush=True)
                points.append((rate, quality_db))
            if len(points) >= 2:
                try:
                    value = f"{bd_rate(np.exp(log_rates), psnrs, *zip(*points)):+.1f} %"
                except ValueError as exc:
                    value = f"undefined ({exc})"
                print(f"{name:<11} {variant:<16} BD-rate (PSNR) against AVIF: {value}", flush=True)


if __name__ == "__main__":
    main()
