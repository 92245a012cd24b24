"""The foundation's demo: synthetic latents through quantizer -> entropy model -> coder -> container.

    make demo      (or: .venv/bin/python scripts/demo.py)

1. Hyperprior-style latents: scalar quantization, Gaussian-conditional tables chosen by scale, ANS.
2. Audio-codec-style codes: residual FSQ indices, categorical prior fitted to them, against raw packing.
3. The tensor codec end to end: a feature tensor to a .pcdc file in demo-out/, its header, and back.
4. The learned image codec with the shipped weights on the bundled photo (samples/lake.png): bpp, PSNR
   and times at three quality levels, next to JPEG at a similar size.
5. The streaming audio codec with the shipped weights on the bundled speech (16 kHz mono) and music
   (44.1 kHz stereo) clips: kbps from the real file size, mel distance, SI-SDR, PESQ-WB (speech) and the
   real-time factor at each bitrate, next to Opus at 6 kbps.
6. The overfitted image codec (fast preset) on a 256x192 crop of the bundled photo: it fits a tiny model
   to the image, so encoding takes seconds; bpp, PSNR and times next to AVIF and JPEG at a similar size.
Parts 1-2 print the real bytes against the ideal information content.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch

import polycodec
from polycodec.bitstream import ContainerReader
from polycodec.bitstream.files import write_atomic
from polycodec.entropy import CategoricalPrior, GaussianConditional
from polycodec.media import read_audio, read_image, write_audio, write_image
from polycodec.metrics.audio import mel_distance, pesq_wb, si_sdr
from polycodec.metrics.image import psnr
from polycodec.quantizers import ResidualFSQ, ScalarQuantizer

OUT = Path("demo-out")


def row(label: str, elements: int, data: bytes, ideal_bits: float, extra: str = "") -> None:
    bits = 8 * len(data)
    print(f"  {label:<34}{elements:>9} symbols {len(data):>9} bytes  {bits / elements:6.3f} bits/sym  "
          f"ideal {ideal_bits / 8:>10.1f} bytes  overhead {bits / ideal_bits - 1:+.3%} {extra}")


def hyperprior_latents() -> None:
    print("1. Hyperprior-style latents (B=1, C=192, 32x48): scalar quantizer + Gaussian conditional")
    scales = torch.exp(torch.empty(1, 192, 32, 48).uniform_(math.log(0.2), math.log(12)))
    y = torch.randn_like(scales) * scales
    quantizer, model = ScalarQuantizer().eval(), GaussianConditional().eval()
    model.update()
    q = quantizer(y)
    with torch.no_grad():
        _, likelihoods = model(y, scales)
    data = model.compress(y, scales)
    decoded = model.decompress(data, y.shape, scales)
    assert torch.equal(decoded, q.quantized), "decode mismatch"
    row("gaussian conditional", y.numel(), data, float(-torch.log2(likelihoods.double()).sum()), "(exact round trip)")


def fsq_codes() -> None:
    print("2. Audio-codec-style codes: residual FSQ (4 stages, levels 8-5-5-5 = 1000 codes)")
    rfsq = ResidualFSQ(dim=4, levels=[8, 5, 5, 5], num_quantizers=4).eval()
    features = torch.tanh(torch.randn(1, 750, 4))  # 10 s of 4-dim latents at 75 frames/s
    with torch.no_grad():
        out = rfsq(features)
    indices = out.indices[0]  # (frames, stages)
    prior = CategoricalPrior(1000, num_codebooks=4)
    prior.fit_counts(indices)
    prior.update()
    data = prior.compress(indices)
    assert torch.equal(prior.decompress(data, tuple(indices.shape)), indices)
    raw_bits = indices.numel() * math.log2(1000)
    ideal = prior.bank.information_bits(*prior.symbols_and_indexes(indices))
    row("categorical prior (fitted)", indices.numel(), data, ideal,
        f"raw packing {raw_bits / 8:.0f} bytes, saved {1 - 8 * len(data) / raw_bits:.1%}")
    with torch.no_grad():
        mse = [float(((rfsq(features, num_stages=k).quantized - features) ** 2).mean()) for k in range(1, 5)]
    print("  reconstruction MSE by stages used: " + ", ".join(f"{k}: {m:.4f}" for k, m in enumerate(mse, 1)))


def tensor_codec() -> None:
    print("3. Tensor codec end to end: a 512x256 feature tensor, step 0.02 -> demo-out/features.pcdc")
    codec = polycodec.load("tensor", step=0.02)
    features = torch.distributions.Laplace(torch.randn(256) * 0.5, torch.rand(256) * 0.4 + 0.02).sample((512,))
    start = time.perf_counter()
    data = codec.encode(features)
    encoded = time.perf_counter()
    restored = codec.decode(data)
    decoded = time.perf_counter()
    path = write_atomic(OUT / "features.pcdc", data, force=True)
    with open(path, "rb") as f:
        header = ContainerReader(f).header
    print(f"  {features.numel()} floats ({features.numel() * 4} bytes as float32) -> {len(data)} bytes "
          f"({8 * len(data) / features.numel():.2f} bits/value), max error {float((restored - features).abs().max()):.4f} "
          f"(bound {0.02 / 2}), encode {1e3 * (encoded - start):.0f} ms, decode {1e3 * (decoded - encoded):.0f} ms")
    print(f"  header: codec {header.codec} v{header.codec_version}, weights sha256 {header.weights_hash.hex()[:16]}..., "
          f"{header.media.frame_count}x{header.media.channels}")
    print(f"  inspect it with: .venv/bin/polycodec info {path}")


def image_codec() -> None:
    image = read_image(Path(__file__).parent.parent / "samples" / "lake.png")
    pixels = image.shape[-1] * image.shape[-2]
    print(f"4. Learned image codec, shipped weights, samples/lake.png ({image.shape[-1]}x{image.shape[-2]})")
    for quality in (1, 3, 6):
        codec = polycodec.load("image", quality=quality)
        start = time.perf_counter()
        data = codec.encode(image)
        encoded = time.perf_counter()
        decoded = codec.decode(data)
        done = time.perf_counter()
        write_atomic(OUT / f"lake-q{quality}.pcdc", data, force=True)
        write_image(decoded, OUT / f"lake-q{quality}.png")
        bpp = 8 * len(data) / pixels
        jpeg = min((polycodec.load("jpeg", quality=q) for q in range(5, 96, 5)),
                   key=lambda c: abs(8 * len(c.encode(image)) / pixels - bpp))
        jpeg_psnr = psnr(image, jpeg.decode(jpeg.encode(image)))
        print(f"  quality {quality}: {len(data):>6} bytes  {bpp:.3f} bpp  PSNR {psnr(image, decoded):5.2f} dB  "
              f"encode {1e3 * (encoded - start):4.0f} ms  decode {1e3 * (done - encoded):4.0f} ms   "
              f"(JPEG q{jpeg.quality} at a similar size: {jpeg_psnr:5.2f} dB)")
    print(f"  decoded images and streams: {OUT}/lake-q*.png, {OUT}/lake-q*.pcdc")


def audio_codec() -> None:
    samples = Path(__file__).parent.parent / "samples"
    print("5. Streaming audio codec, shipped weights")
    for name, speech in (("speech.flac", True), ("music.flac", False)):
        waveform, rate = read_audio(samples / name)
        seconds = waveform.shape[1] / rate
        print(f"  samples/{name}: {seconds:.1f} s, {rate} Hz, {waveform.shape[0]} channel(s)")
        for kbps in (1.5, 3, 6, 12):
            codec = polycodec.load("audio", bitrate=kbps)
            start = time.perf_counter()
            data = codec.encode(waveform, rate)
            encoded = time.perf_counter()
            decoded, decoded_rate = codec.decode(data)
            done = time.perf_counter()
            assert decoded.shape == waveform.shape and decoded_rate == rate
            stem = f"{Path(name).stem}-{kbps:g}k"
            write_atomic(OUT / f"{stem}.pcdc", data, force=True)
            write_audio(decoded, rate, OUT / f"{stem}.wav")
            print(f"    {kbps:>4g} kbps: {len(data):>6} bytes = {8 * len(data) / seconds / 1000:5.2f} kbps  "
                  + _audio_scores(waveform, decoded, rate, speech)
                  + f"  encode {seconds / (encoded - start):5.0f}x  decode {seconds / (done - encoded):5.0f}x real time")
        opus = polycodec.load("opus", bitrate=6)
        data = opus.encode(waveform, rate)
        decoded, _ = opus.decode(data)
        print(f"    Opus 6 kbps: {len(data):>5} bytes = {8 * len(data) / seconds / 1000:5.2f} kbps  "
              + _audio_scores(waveform, decoded, rate, speech))
    print(f"  decoded audio and streams: {OUT}/speech-*.wav, {OUT}/music-*.wav and their .pcdc files")


def _audio_scores(ref: torch.Tensor, est: torch.Tensor, rate: int, speech: bool) -> str:
    text = f"mel {mel_distance(ref, est, rate):.3f}  SI-SDR {si_sdr(ref, est):6.2f} dB"
    score = pesq_wb(ref, est, rate) if speech else None
    return text + (f"  PESQ-WB {score:.2f}" if score is not None else "")


def overfit_codec() -> None:
    image = read_image(Path(__file__).parent.parent / "samples" / "lake.png")[:, 64:256, 122:378]
    pixels = image.shape[-1] * image.shape[-2]
    print(f"6. Overfitted image codec, fast preset, a {image.shape[-1]}x{image.shape[-2]} crop of samples/lake.png")
    codec = polycodec.load("image-overfit", quality=3, preset="fast")
    start = time.perf_counter()
    data = codec.encode(image)
    encoded = time.perf_counter()
    decoded = codec.decode(data)
    done = time.perf_counter()
    write_atomic(OUT / "lake-crop-overfit.pcdc", data, force=True)
    write_image(decoded, OUT / "lake-crop-overfit.png")
    bpp = 8 * len(data) / pixels
    print(f"  quality 3: {len(data):>6} bytes  {bpp:.3f} bpp  PSNR {psnr(image, decoded):5.2f} dB  "
          f"encode (fit) {encoded - start:5.1f} s  decode {1e3 * (done - encoded):4.0f} ms")
    for name in ("avif", "jpeg"):
        other = min((polycodec.load(name, quality=q) for q in range(5, 96, 5)),
                    key=lambda c: abs(8 * len(c.encode(image)) / pixels - bpp))
        other_data = other.encode(image)
        print(f"  {name.upper()} q{other.quality} at a similar size: {8 * len(other_data) / pixels:.3f} bpp  "
              f"PSNR {psnr(image, other.decode(other_data)):5.2f} dB")
    print(f"  decoded image and stream: {OUT}/lake-crop-overfit.png, {OUT}/lake-crop-overfit.pcdc")


if __name__ == "__main__":
    torch.manual_seed(0)
    print(f"polycodec {polycodec.__version__} foundation demo ({os.cpu_count()} cores)\n")
    hyperprior_latents()
    fsq_codes()
    tensor_codec()
    image_codec()
    print()
    audio_codec()
    print()
    overfit_codec()
