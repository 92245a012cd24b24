"""Image codec benchmark: polycodec's learned codec against JPEG, WebP and AVIF on the project's photo
test set, plus CompressAI's reference architectures' speed on the same image.

    python benchmarks/image.py [--data data/eval/images] [--weights DIR] [--out report/bench-image]

Prints, per codec and setting, mean bpp (real file size, header included), PSNR (RGB, 8-bit), MS-SSIM and
encode / decode seconds; BD-rates (PSNR) of polycodec against each classical codec; the learned codec's
real size against its own estimate (-sum log2 p); and encode / decode time of one 768x512 image for
polycodec and CompressAI's bmshj2018-hyperprior and mbt2018-mean (random weights: speed only), all
measured in the same run, single process, best of 3.  Build the test set first with
``scripts/build_eval_data.py``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
import torch.nn.functional as F

import polycodec
from rd import bd_against, rd_table
from timing import best_of
from polycodec.evaluation import EvalConfig, run_evaluation
from polycodec.media import read_image
from polycodec.models.image import PAD

CLASSICAL = ["jpeg", "webp", "avif"]


def rate_estimate(codec, images: list[Path]) -> None:
    """Real coded size against the model's own estimate, at every quality."""
    print(f"\n{'quality':<9}{'estimate bits':>15}{'payload bits':>14}{'file bits':>11}{'payload/est':>13}")
    model = codec.model
    for quality in range(1, model.num_qualities + 1):
        codec.quality = quality
        estimate = payload = total = 0.0
        for path in images:
            x = read_image(path).expand(3, -1, -1)
            padded = F.pad(x.unsqueeze(0), (0, -x.shape[-1] % PAD, 0, -x.shape[-2] % PAD), mode="replicate")
            with torch.no_grad():
                out = model(padded, torch.tensor([quality - 1]))
            estimate += sum(float(-torch.log2(l.double()).sum()) for l in out["likelihoods"].values())
            data = codec.encode(x)
            total += 8 * len(data)
            payload += 8 * len(polycodec.bitstream.unpack(data)[1][1].payload)
        print(f"{quality:<9}{estimate:>15.0f}{payload:>14.0f}{total:>11.0f}{payload / estimate - 1:>12.2%}")


def speed(codec, image: torch.Tensor) -> None:
    from compressai.zoo import bmshj2018_hyperprior, mbt2018_mean

    x = image.expand(3, -1, -1)[:, :512, :768].unsqueeze(0)
    print(f"\nspeed on one {x.shape[-1]}x{x.shape[-2]} image, {torch.get_num_threads()} threads (best of 3):")
    data = codec.encode(x[0])
    rows = [("polycodec image", best_of(lambda: codec.encode(x[0])), best_of(lambda: codec.decode(data)))]
    for name, build in (("compressai bmshj2018-hyperprior", bmshj2018_hyperprior), ("compressai mbt2018-mean", mbt2018_mean)):
        net = build(quality=4, pretrained=False).eval()
        net.update()
        with torch.no_grad():
            out = net.compress(x)
            rows.append((name, best_of(lambda: net.compress(x)),
                         best_of(lambda: net.decompress(out["strings"], out["shape"]))))
    for name, enc, dec in rows:
        print(f"  {name:<34} encode {enc:6.3f} s  decode {dec:6.3f} s  ({enc / rows[0][1]:.2f}x / {dec / rows[0][2]:.2f}x ours)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/eval/images")
    parser.add_argument("--weights", help="exported model folder (default: the shipped weights)")
    parser.add_argument("--out", default="report/bench-image")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    options = {"image": {"weights": str(Path(args.weights).resolve())}} if args.weights else {}
    config = EvalConfig(Path(args.data), Path(args.out), ["image", *CLASSICAL], perception=False,
                        workers=args.workers, codec_options=options)
    rows = run_evaluation(config)
    curves = rd_table(rows)
    bd_against(curves, "image", CLASSICAL)
    codec = polycodec.load("image", **({"weights": args.weights} if args.weights else {}))
    images = sorted(p for p in Path(args.data).iterdir() if p.suffix.lower() in (".png", ".jpg"))
    rate_estimate(codec, images)
    large = [img for img in map(read_image, images) if img.shape[-2] >= 512 and img.shape[-1] >= 768]
    speed(codec, large[0] if large else F.pad(read_image(images[0]), (0, 768, 0, 512), mode="replicate"))


if __name__ == "__main__":
    main()
