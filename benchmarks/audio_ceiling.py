"""Where the audio codec's speech quality goes: the predicted magnitudes or the phase reconstruction?

    python benchmarks/audio_ceiling.py [--weights DIR] [--data data/eval] [--sets speech speech-flite]

The decoder predicts a magnitude spectrogram and rebuilds the phase block by block: a start integrated from
the magnitudes' gradients, then Griffin-Lim rounds (:mod:`polycodec.models.phase`).  This script separates
the two on the speech test clips by swapping each half for the truth, and prints PESQ-WB, STOI and mel
distance (the metrics of ``benchmarks/audio.py``) of:

- the clip's own magnitudes, phase by the decoder's reconstruction (its Griffin-Lim rounds) and with 4x as
  many rounds: the ceiling the phase reconstruction alone allows;
- the model's magnitudes at each served bitrate with the clip's own phase (inverse STFT): the ceiling the
  magnitudes alone allow;
- the model's magnitudes with the decoder's phase reconstruction: what the codec outputs (entropy coding is
  lossless, so this equals decoding a .pcdc).

Deterministic: rerunning gives the same table.  Build the clips first with ``scripts/build_eval_data.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torchaudio.functional as AF
from torch import Tensor

import polycodec
from polycodec.media import read_audio
from polycodec.metrics.audio import mel_distance, pesq_wb, stoi
from polycodec.models.phase import spectrogram


def mono_clips(folder: Path, rate: int) -> dict[str, Tensor]:
    """The WAV / FLAC clips of a test set folder, down-mixed and resampled: name -> (1, samples)."""
    paths = sorted(p for p in folder.iterdir() if p.suffix in (".wav", ".flac"))
    if not paths:
        raise SystemExit(f"no clips in {folder}: run scripts/build_eval_data.py first")
    clips = {}
    for path in paths:
        audio, clip_rate = read_audio(path)
        clips[path.name] = AF.resample(audio.mean(dim=0, keepdim=True), clip_rate, rate)
    return clips


def with_phase(model, magnitudes: Tensor, phase: Tensor, samples: int) -> Tensor:
    """Magnitudes and phases (B, frames, bins) -> waveform (B, samples) by the inverse STFT."""
    c = model.config
    spec = torch.polar(magnitudes, phase).transpose(1, 2)  # (B, bins, frames), as istft wants
    return torch.istft(spec, c.n_fft, c.synthesis_hop, window=torch.hann_window(c.n_fft), center=True,
                       length=samples)


def variants(model, x: Tensor, kbps_stages: list[tuple[float, int]]) -> dict[str, Tensor]:
    """Name -> waveform (1, samples) for one clip x (1, samples) at the model's rate."""
    c, samples = model.config, x.shape[-1]
    true = spectrogram(x, c.n_fft, c.synthesis_hop)
    out = {}
    for rounds in (c.phase_iterations, 4 * c.phase_iterations):
        label = f"true magnitudes, decoder's phase, {rounds} GL round{'s' * (rounds != 1)}"
        out[label] = model.reconstruct(true.abs(), samples, rounds)
    for kbps, stages in kbps_stages:
        predicted = model.predicted_magnitudes(model.encode(x, stages))
        out[f"{kbps:g} kbps magnitudes, true phase"] = with_phase(model, predicted[:, : true.shape[1]],
                                                                  true.angle(), samples)
        out[f"{kbps:g} kbps magnitudes, decoder's phase (the codec)"] = model.reconstruct(predicted, samples)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", help="exported audio model folder (default: the shipped weights)")
    parser.add_argument("--data", default="data/eval")
    parser.add_argument("--sets", nargs="+", default=["speech", "speech-flite"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    codec = polycodec.load("audio", **({"weights": args.weights} if args.weights else {}))
    model = codec.model.eval()
    rate = model.config.sample_rate
    kbps_stages = [(k, model.stages_for(k)) for k in model.config.bitrates]
    for name in args.sets:
        scores: dict[str, list[tuple]] = {}
        clips = mono_clips(Path(args.data, name), rate)
        for x in clips.values():
            for label, y in variants(model, x, kbps_stages).items():
                scores.setdefault(label, []).append((pesq_wb(x, y, rate), stoi(x, y, rate), mel_distance(x, y, rate)))
        print(f"\n{name} ({len(clips)} clips), means")
        print(f"| {'magnitudes / phase':<48} | PESQ-WB | STOI  | mel distance |")
        print(f"|{'-' * 50}|---------|-------|--------------|")
        for label, rows in scores.items():
            pesq, short_time, mel = np.array(rows, dtype=float).mean(axis=0)
            print(f"| {label:<48} | {pesq:7.2f} | {short_time:.3f} | {mel:12.3f} |")


if __name__ == "__main__":
    main()
