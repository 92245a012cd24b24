"""The overfitted codec's straight-through phase: how its loss moves, and what its length does to the stream.

    python benchmarks/image_overfit_rounding.py [--image baboon.jpg] [--size 256] [--quality 3]
                                                [--steps 2000] [--fractions 0.2,0.05] [--threads 1]

For each share of the steps spent with rounded latents (``Preset.rounding_fraction``), fits a centre crop
of one evaluation photo and prints the loss (MSE + lambda * bpp, the fit's own estimate for the rounded
latents) at the first, lowest and last straight-through step, then the real stream's bpp, PSNR and RD loss
(networks quantized and coded, header included).  The fit ends on the lowest straight-through loss
(``training/overfit.py``), so 'last / lowest' above 1 is what a fit that kept its last step would have lost.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from image_overfit_settings import bpp, centre_crop  # a sibling script: run this file from anywhere

import polycodec
from polycodec.codecs.overfit import LAMBDAS
from polycodec.media import read_image
from polycodec.metrics.image import psnr
from polycodec.training.overfit import Preset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/eval/images")
    parser.add_argument("--image", default="baboon.jpg")
    parser.add_argument("--size", type=int, default=256, help="centre crop side; 0: the whole image")
    parser.add_argument("--quality", type=int, default=3, choices=range(1, len(LAMBDAS) + 1))
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--fractions", default="0.2,0.05", help="comma-separated straight-through shares")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 to run two copies side by side)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    image = centre_crop(read_image(Path(args.data) / args.image), args.size)
    lam = LAMBDAS[args.quality - 1]
    print(f"{args.image}, {image.shape[2]}x{image.shape[1]}, quality {args.quality}, {args.steps} steps")
    print("fraction  first ST   lowest ST (step)   last ST  last/lowest    bpp    PSNR   stream RD   fit s")
    for fraction in map(float, args.fractions.split(",")):
        losses: list[tuple[int, float]] = []  # (step, loss) of every step
        preset = Preset(steps=args.steps, rounding_fraction=fraction)
        codec = polycodec.load("image-overfit", quality=args.quality, preset=preset,
                               progress=lambda step, _, rate, db: losses.append((step, 10 ** (-db / 10) + lam * rate)))
        start = time.perf_counter()
        data = codec.encode(image)
        seconds = time.perf_counter() - start
        decoded = codec.decode(data)
        rate, quality_db = bpp(data, image), psnr(image, decoded)
        rounded = losses[preset.noise_steps:]
        if not rounded:
            print(f"{fraction:8.2f}  (no straight-through step)")
            continue
        low_step, low = min(rounded, key=lambda t: t[1])
        stream_loss = 10 ** (-quality_db / 10) + lam * rate
        print(f"{fraction:8.2f} {rounded[0][1]:9.6f} {low:10.6f} ({low_step:5d}) {rounded[-1][1]:9.6f} "
              f"{rounded[-1][1] / low:11.4f} {rate:6.3f} {quality_db:7.2f} {stream_loss:11.6f} {seconds:7.0f}",
              flush=True)


if __name__ == "__main__":
    main()
