"""What the audio encoder's beam search over the residual VQ stages buys, and what it costs.

    python benchmarks/audio_search.py [--weights DIR] [--data data/eval] [--budgets 0 16 32] [--kbps 1.5 3 6 12]

The encoder picks codes with a beam of ``beam_budget // stages`` partial sums (``AudioModelConfig.beam_budget``;
0 is the greedy nearest-codeword choice).  For each budget, on the test clips (24 kHz mono, never used in
training) this prints the latent's squared quantization error relative to greedy's, PESQ-WB / STOI / mel
distance on speech, mel distance / ViSQOL on music, and the encode real-time factor of a 30 s clip
(2 threads, best of 3; the whole encoder, search included).  The decoder is the shipped one throughout, so
the differences are the encoder's choice of codes alone.  Build the clips first with
``scripts/build_eval_data.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

import polycodec
from audio_ceiling import mono_clips
from audio_phase import SPEECH, metric_titles, metrics


def encode_speed(codec, clip: torch.Tensor, rate: int) -> float:
    """Real-time factor of ``codec.encode`` on ``clip`` (1, samples), best of 3 after a warm-up."""
    codec.encode(clip, rate)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        codec.encode(clip, rate)
        best = min(best, time.perf_counter() - start)
    return clip.shape[-1] / rate / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", help="exported audio model folder (default: the shipped weights)")
    parser.add_argument("--data", default="data/eval")
    parser.add_argument("--sets", nargs="*", default=list(SPEECH), help="test sets (none: the speed table only)")
    parser.add_argument("--kbps", nargs="+", type=float, default=[1.5, 3.0, 6.0, 12.0])
    parser.add_argument("--budgets", nargs="+", type=int, default=[0, 16, 32])
    args = parser.parse_args()
    torch.set_num_threads(2)
    weights = {"weights": args.weights} if args.weights else {}
    codec = polycodec.load("audio", **weights)
    model, rate = codec.model.eval(), codec.model.config.sample_rate
    shipped = model.config
    configs = {b: dataclasses.replace(shipped, beam_budget=b) for b in args.budgets}
    music = mono_clips(Path(args.data, "music"), rate)
    clip = torch.cat(list(music.values()), dim=-1).repeat(1, 8)[:, : 30 * rate]
    print(f"encoder beam search; shipped beam_budget {shipped.beam_budget}; error: the latent's squared "
          "quantization error / greedy's")
    print("\nencode speed, 30 s clip, 2 threads, best of 3 (x real time):")
    print("| kbps | " + " | ".join(f"budget {b:>3}" for b in args.budgets) + " |")
    print("|------|" + "|".join("-" * 12 for _ in args.budgets) + "|")
    for kbps in args.kbps:
        coder, speeds = polycodec.load("audio", bitrate=kbps, **weights), []
        for budget in args.budgets:
            coder.model.config = configs[budget]
            speeds.append(encode_speed(coder, clip, rate))
        print(f"| {kbps:4g} | " + " | ".join(f"{s:10.0f}x" for s in speeds) + " |", flush=True)
    for name in args.sets:
        speech = SPEECH.get(name, True)
        clips = music if name == "music" else mono_clips(Path(args.data, name), rate)
        titles = metric_titles(speech)
        print(f"\n{name} ({len(clips)} clips), means:")
        print("| kbps | budget | beam | error | " + " | ".join(f"{t:>7}" for t in titles) + " |")
        print("|------|--------|------|-------|" + "|".join("-" * 9 for _ in titles) + "|")
        with torch.no_grad():
            latents = {c: model.latents(x) for c, x in clips.items()}
            for kbps in args.kbps:
                stages = model.stages_for(kbps)
                greedy = sum(float((model.quantizer.from_indices(model.quantizer(z, stages).indices) - z).pow(2).sum())
                             for z in latents.values())
                for budget in args.budgets:
                    model.config = configs[budget]
                    rows, error = [], 0.0
                    for c, x in clips.items():
                        codes = model.codes(latents[c], stages)
                        error += float((model.quantizer.from_indices(codes) - latents[c]).pow(2).sum())
                        y = model.decode(codes, x.shape[-1])
                        rows.append(metrics(x, y, rate, speech))
                    cells = " | ".join(f"{v:7.3f}" for v in np.mean(rows, axis=0))
                    print(f"| {kbps:4g} | {budget:6d} | {model.beam_width(stages):4d} | {error / greedy:5.3f} "
                          f"| {cells} |", flush=True)
    model.config = shipped


if __name__ == "__main__":
    main()
