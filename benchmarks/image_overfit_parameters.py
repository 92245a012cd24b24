"""The overfitted codec's network parameters in the stream: one grid per network against one grid per tensor
(stream version 3 and later), on the same fits.  (Version 2 had one grid per network, but one for both context MLPs.)

    python benchmarks/image_overfit_parameters.py [--images baboon.jpg,butterfly.jpg] [--qualities 1,3]
                                                  [--steps 600] [--size 0] [--threads 1]

Fits each image once per quality, then quantizes the fitted networks both ways
(:func:`polycodec.codecs.overfit.quantize_networks` with ``per_tensor`` off and on) and writes a real stream
of each.  Prints the networks' coded bits, the latents' bits, the stream's bpp and PSNR, the RD loss
(MSE + lambda * bpp of the stream) and the grid search's time.  The latents and float networks are the same
in both rows of a point, so every difference comes from how the networks are quantized.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from image_overfit_settings import bpp, centre_crop  # a sibling script: run this file from anywhere

from polycodec.codecs.overfit import (LAMBDAS, OverfitImageCodec, context_ints, latent_segments, parameter_bits,
                                      quantize_networks, synthesis_ints)
from polycodec.media import read_image
from polycodec.metrics.image import psnr
from polycodec.models.overfit import OverfitImageModel
from polycodec.training.overfit import Preset, fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/eval/images")
    parser.add_argument("--images", default="baboon.jpg,butterfly.jpg")
    parser.add_argument("--qualities", default="1,3")
    parser.add_argument("--steps", type=int, default=600, help="fitting steps (600: the fast preset)")
    parser.add_argument("--size", type=int, default=0, help="centre crop side; 0: the whole image")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 to run two copies side by side)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    codec = OverfitImageCodec()
    print(f"{args.steps} fitting steps; bits of the networks (context + synthesis) and of the latents")
    print("image           q  grids       context  synthesis    latents     bpp    PSNR    stream RD  search s")
    for name in args.images.split(","):
        image = centre_crop(read_image(Path(args.data) / name), args.size)
        for quality in map(int, args.qualities.split(",")):
            lam = LAMBDAS[quality - 1]
            fitted = fit(image, lam, Preset(steps=args.steps))
            for per_tensor in (False, True):
                model = OverfitImageModel(fitted.config, fitted.height, fitted.width, fitted.channels)
                model.load_state_dict(fitted.state_dict())
                model.entropy.load_state_dict(codec.entropy.state_dict())
                start = time.perf_counter()
                _, synthesis = quantize_networks(model, image, lam, per_tensor=per_tensor)
                seconds = time.perf_counter() - start
                data = codec._write(model, synthesis)
                decoded = codec.decode(data)
                rate, quality_db = bpp(data, image), psnr(image, decoded)
                latent_bits = sum(model.entropy.bank.information_bits(s, i)
                                  for s, i in latent_segments(model, model.quantized_latents("round")))
                print(f"{name:15s} {quality:2d}  {'per tensor' if per_tensor else 'per network'} "
                      f"{parameter_bits(model, context_ints(model)):8.0f} "
                      f"{parameter_bits(model, synthesis_ints(model, synthesis)):10.0f} {latent_bits:10.0f} "
                      f"{rate:7.4f} {quality_db:7.2f} {10 ** (-quality_db / 10) + lam * rate:12.6f} {seconds:9.1f}",
                      flush=True)


if __name__ == "__main__":
    main()
