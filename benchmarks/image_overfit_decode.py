"""Decode time of the overfitted codec's two anchor layouts on one image, alternating, as a table.

    python benchmarks/image_overfit_decode.py [--image data/eval/images/building.jpg] [--rounds 3]
                                              [--steps 30] [--quality 3] [--threads 2]

Fits the top-left 768x512 of the image twice (a short fit: decode time depends on the image size and the
model shape, not on how well it fits), once with the anchors in two passes (stream version 5's layout at
qualities 1 to 3) and once in one, then decodes the two streams in turn, best of 3 per round, so both see
the same host.  Prints each round's times and the ratio.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch

import polycodec
from polycodec.media import read_image
from polycodec.models.overfit import OverfitConfig
from polycodec.training.overfit import PRESETS
from timing import best_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", default="data/eval/images/building.jpg")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--quality", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    image = read_image(args.image)[:, :512, :768]
    preset = replace(PRESETS["fast"], split_anchors_min_lambda=0.0)  # the config decides at every quality
    streams = {}
    for name, split in (("split", True), ("whole", False)):
        codec = polycodec.load("image-overfit", quality=args.quality, preset=preset, steps=args.steps,
                               config=OverfitConfig(split_anchors=split))
        streams[name] = (codec, codec.encode(image))
    print(f"{image.shape[2]}x{image.shape[1]}, {args.threads} threads, best of 3 per round")
    print("round   split s   whole s   split / whole")
    for round_ in range(1, args.rounds + 1):
        seconds = {name: best_of(lambda c=codec, d=data: c.decode(d)) for name, (codec, data) in streams.items()}
        ratio = seconds["split"] / seconds["whole"]
        print(f"{round_:>5} {seconds['split']:9.3f} {seconds['whole']:9.3f} {ratio:15.2f}", flush=True)


if __name__ == "__main__":
    main()
