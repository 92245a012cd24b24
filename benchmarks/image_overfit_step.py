"""Seconds per fitting step of the overfitted image codec, with the context's rate compiled and not, in turns.

    python benchmarks/image_overfit_step.py [--image data/eval/images/building.jpg] [--size 768x512]
                                            [--threads 2] [--steps 15] [--rounds 3] [--variants eager,compiled]

Fits the top-left crop of one photo at quality 3 for ``--steps`` steps per variant and round, the variants
alternating so that a busy host slows them alike; prints wall and CPU seconds per step and the one-off cost
of the first fit of each variant (for ``compiled`` that includes compiling: 4 to 7 s more than ``eager`` on
this project's 2-core machine).  To time another checkout's fitting with the same script, put that checkout
first on PYTHONPATH and ask for ``--variants eager`` (a checkout without the compiled rate knows no other).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

import polycodec
from polycodec.codecs.overfit import LAMBDAS
from polycodec.media import read_image
from polycodec.training.overfit import Preset, fit

COMPILE_THRESHOLD = {"eager": math.inf, "compiled": 0.0}  # Preset.compile_min_pixel_steps of each variant


def preset(steps: int, variant: str) -> Preset:
    if "compile_min_pixel_steps" not in Preset.__dataclass_fields__:  # a checkout from before the compiled rate
        if variant != "eager":
            raise SystemExit(f"this checkout ({polycodec.__file__}) has no compiled rate")
        return Preset(steps=steps)
    return Preset(steps=steps, compile_min_pixel_steps=COMPILE_THRESHOLD[variant])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", default="data/eval/images/building.jpg")
    parser.add_argument("--size", default="768x512", help="width x height of the top-left crop")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default="eager,compiled")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.split("x"))
    image = read_image(args.image)[:, :height, :width]
    lam = LAMBDAS[2]
    variants = args.variants.split(",")
    print(f"{polycodec.__file__}: {image.shape[2]}x{image.shape[1]} crop of {args.image}, quality 3, "
          f"{args.threads} threads, {args.steps} steps a round")
    first = {}
    for variant in variants:  # the first fit pays for compiling and for the allocator's first requests
        start = time.perf_counter()
        fit(image, lam, preset(2, variant))
        first[variant] = time.perf_counter() - start
    print(f"{'round':>5} " + " ".join(f"{v + ' wall s':>16} {v + ' cpu s':>16}" for v in variants))
    totals = {v: [] for v in variants}
    for round_ in range(1, args.rounds + 1):
        cells = []
        for variant in variants:
            wall, cpu = time.perf_counter(), time.process_time()
            fit(image, lam, preset(args.steps, variant))
            wall, cpu = (time.perf_counter() - wall) / args.steps, (time.process_time() - cpu) / args.steps
            totals[variant].append(wall)
            cells.append(f"{wall:16.3f} {cpu:16.3f}")
        print(f"{round_:>5} " + " ".join(cells))
    for variant in variants:
        print(f"{variant}: median {statistics.median(totals[variant]):.3f} s per step; "
              f"first 2-step fit {first[variant]:.1f} s")


if __name__ == "__main__":
    main()
