"""Overfitted image codec benchmark: rate-distortion against JPEG, WebP, AVIF and the learned autoencoder on
the project's photo test set; decoder complexity; decode and per-step fitting time on a 768x512 image.

    python benchmarks/image_overfit.py [--data data/eval/images] [--preset fast] [--qualities 1,2,3,4,5,6]
                                       [--max-files N | --files a.jpg,b.png] [--workers 2]
                                       [--out report/bench-image-overfit]

Every codec runs on the same files in the same run (one thread per worker), rates from real file sizes.
Fitting is slow on a CPU, so the run is resumable: results land in ``--out`` as they finish and a rerun
skips what is done.  Build the test set first with ``scripts/build_eval_data.py``.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import polycodec
from polycodec.evaluation import EvalConfig, run_evaluation
from polycodec.media import read_image
from polycodec.models.overfit import OverfitConfig, OverfitImageModel, downscale2x
from polycodec.training.overfit import PRESETS, Preset, fit
from rd import bd_against, rd_table
from timing import best_of

ANCHORS = ["avif", "webp", "jpeg", "image"]


def complexity_and_speed(image: torch.Tensor) -> None:
    """Decoder multiplications per pixel, decode time and fitting time per step, on one 768x512 image."""
    torch.set_num_threads(2)
    x = image[:, :512, :768]
    model = OverfitImageModel(OverfitConfig(), x.shape[1], x.shape[2], x.shape[0])
    print(f"\ndecoder: {model.multiplications_per_pixel():.0f} multiplications per pixel "
          f"(synthesis {model.synthesis.multiplications_per_pixel()}, context MLPs the rest; upsampling excluded)")
    per_step = {}
    # Full-size steps compiled as the presets' fits of this size are (Preset.compile_min_pixel_steps); a
    # half-size start is never compiled.  The first fit compiles and warms up the allocator, the second is timed.
    for name, image_at, config, threshold in (("full-size", x, OverfitConfig(), 0.0),
                                              ("half-size", downscale2x(x), model.half_resolution_config(), math.inf)):
        fit(image_at, 0.004, Preset(steps=2, compile_min_pixel_steps=threshold), config)
        start = time.perf_counter()
        fit(image_at, 0.004, Preset(steps=20, compile_min_pixel_steps=threshold), config)
        per_step[name] = (time.perf_counter() - start) / 20
    print(f"fitting on {x.shape[2]}x{x.shape[1]}, 2 threads: {per_step['full-size']:.3f} s per full-size step, "
          f"{per_step['half-size']:.3f} s per half-size step -> "
          + ", ".join(f"{name} ({p.describe()}) about "
                      f"{p.steps * per_step['full-size'] + p.half_size_steps * per_step['half-size']:.0f} s"
                      for name, p in PRESETS.items()))
    codec = polycodec.load("image-overfit", steps=30)
    data = codec.encode(x)
    print(f"decode of {x.shape[2]}x{x.shape[1]}, 2 threads, best of 3: {best_of(lambda: codec.decode(data)):.3f} s")


def chosen_files(data: Path, names: list[str], out: Path) -> Path:
    """A folder of links to ``names`` in ``data`` (under ``out``), for evaluating a chosen subset."""
    folder = out / "files"
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        if not (data / name).is_file():
            raise SystemExit(f"{data / name} does not exist")
        link = folder / name
        if not link.exists():
            link.symlink_to((data / name).resolve())
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/eval/images")
    parser.add_argument("--out", default="report/bench-image-overfit")
    parser.add_argument("--preset", default="fast", choices=sorted(PRESETS))
    parser.add_argument("--qualities", default="1,2,3,4,5,6", help="comma-separated quality levels to fit")
    parser.add_argument("--max-files", type=int, help="only the first N files (fitting costs minutes each)")
    parser.add_argument("--files", help="comma-separated names of files in --data: only these")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    sweep = [{"quality": int(q), "preset": args.preset} for q in args.qualities.split(",")]
    data = Path(args.data)
    if args.files is not None:
        data = chosen_files(data, args.files.split(","), Path(args.out))
    config = EvalConfig(data, Path(args.out), ["image-overfit", *ANCHORS], perception=False,
                        workers=args.workers, max_files=args.max_files, sweeps={"image-overfit": sweep})
    rows = run_evaluation(config)
    files = sorted({r["file"] for r in rows})
    print(f"\n{len(files)} files: {', '.join(files)}")
    curves = rd_table(rows)
    bd_against(curves, "image-overfit", ANCHORS)
    if not args.skip_speed:
        images = sorted(p for p in Path(args.data).iterdir() if p.suffix.lower() in (".png", ".jpg"))
        large = [img for img in map(read_image, images) if img.shape[-2] >= 512 and img.shape[-1] >= 768]
        complexity_and_speed(large[0] if large else F.pad(read_image(images[0]), (0, 768, 0, 512), mode="replicate"))


if __name__ == "__main__":
    main()
