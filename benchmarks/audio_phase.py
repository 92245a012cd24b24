"""How the audio decoder's phase reconstruction should start, and how many Griffin-Lim rounds it needs.

    python benchmarks/audio_phase.py [--weights DIR] [--data data/eval] [--kbps 3 6] [--rounds 0 1 2 8]

The decoder predicts magnitude frames; :mod:`polycodec.models.phase` gives them a phase.  On the model's own
magnitudes for each test clip (entropy coding is lossless, so these are what a .pcdc decodes to), this prints,
per test set and bitrate:

- the previous decoder: every block starting from a stationary sinusoid's phase (2*pi*k*hop/n_fft per frame)
  and 8 rounds of fast Griffin-Lim;
- the current one: the phase integrated from the magnitudes' gradients (:mod:`polycodec.models.phase_gradient`),
  then each of ``--rounds`` Griffin-Lim rounds (the shipped config's count is marked);
- the published integration it stands in for: PGHI's heap over the whole clip (Průša et al. 2017: loudest
  coefficient first, coefficients under 1e-5 of the clip's peak left at random phase), as the start of the
  same block-wise reconstruction with the shipped number of rounds.  Not streaming, and slow: a reference;

with PESQ-WB, STOI and mel distance on speech, mel distance and ViSQOL on music, and the phase reconstruction's
own real-time factor (1 thread, all clips of the set).  Deterministic apart from the timings.  Build the clips
first with ``scripts/build_eval_data.py``; choose settings on the validation set instead of the test clips
(``scripts/build_validation_data.py``, then ``--data data/validation --sets speech music``).
"""

from __future__ import annotations

import argparse
import heapq
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

import polycodec
from audio_ceiling import mono_clips
from polycodec.metrics.audio import mel_distance, pesq_wb, stoi, visqol
from polycodec.models.phase import PhaseReconstructor
from polycodec.models.phase_gradient import phase_derivatives

SPEECH = {"speech": True, "speech-flite": True, "music": False}  # test set -> speech metrics?


def metric_titles(speech: bool) -> tuple[str, ...]:
    return ("PESQ-WB", "STOI", "mel") if speech else ("mel", "ViSQOL")


def metrics(x: Tensor, y: Tensor, rate: int, speech: bool) -> tuple[float, ...]:
    """The scores of :func:`metric_titles` for output y of reference x (1, samples)."""
    if speech:
        return pesq_wb(x, y, rate), stoi(x, y, rate), mel_distance(x, y, rate)
    return mel_distance(x, y, rate), visqol(x, y, rate)


class StationaryStart(PhaseReconstructor):
    """The decoder before the gradient-integrated start: each block's frames begin at the phase a stationary
    bin-centred sinusoid would have at that frame number."""

    def _initial_phase(self, mags: Tensor, fixed: Tensor) -> Tensor:
        frames = torch.arange(self.done, self.done + mags.shape[1], dtype=torch.float64).view(1, -1, 1)
        advance = 2 * math.pi * torch.arange(mags.shape[2], dtype=torch.float64) * self.hop / self.n_fft
        return torch.polar(mags, torch.remainder(frames * advance, 2 * math.pi).to(mags.dtype).expand_as(mags))


class GivenStart(PhaseReconstructor):
    """Each block starts from given phases (B, frames, bins) for the whole signal."""

    def __init__(self, phase: Tensor, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.phase = phase

    def _initial_phase(self, mags: Tensor, fixed: Tensor) -> Tensor:
        return torch.polar(mags, self.phase[:, self.done:self.done + mags.shape[1]])


def heap_phase(magnitudes: np.ndarray, n_fft: int, hop: int, tolerance: float = 1e-5) -> np.ndarray:
    """PGHI (Průša, Balazs & Søndergaard 2017) on (frames, bins): from the loudest coefficient not yet
    phased, integrate the phase derivatives to its neighbours, always continuing from the loudest coefficient
    reached so far (a heap); coefficients under ``tolerance`` times the peak get random phase."""
    frames, bins = magnitudes.shape
    along_time, along_frequency = (d.astype(np.float64) for d in phase_derivatives(
        np.log(np.maximum(magnitudes, tolerance * magnitudes.max())), n_fft, hop))
    done = magnitudes < tolerance * magnitudes.max()
    phase = np.where(done, np.random.default_rng(0).uniform(0, 2 * math.pi, magnitudes.shape), 0.0)
    for start in np.argsort(-magnitudes, axis=None):
        if done.flat[start]:
            continue
        done.flat[start] = True
        heap = [(-magnitudes.flat[start], *divmod(int(start), bins))]
        while heap:
            _, n, k = heapq.heappop(heap)
            for dn, dk in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                m, j = n + dn, k + dk
                if 0 <= m < frames and 0 <= j < bins and not done[m, j]:
                    slope = along_time if dn else along_frequency
                    phase[m, j] = phase[n, k] + (dn + dk) * (slope[n, k] + slope[m, j]) / 2
                    done[m, j] = True
                    heapq.heappush(heap, (-magnitudes[m, j], m, j))
    return phase


def reconstruct(reconstructor: PhaseReconstructor, magnitudes: Tensor, samples: int) -> Tensor:
    head = reconstructor.push(magnitudes)
    return torch.cat([head, reconstructor.finish(samples)], dim=-1)[:, :samples]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", help="exported audio model folder (default: the shipped weights)")
    parser.add_argument("--data", default="data/eval")
    parser.add_argument("--sets", nargs="+", default=list(SPEECH))
    parser.add_argument("--kbps", nargs="+", type=float, default=[3.0, 6.0])
    parser.add_argument("--rounds", nargs="+", type=int, default=[0, 1, 2, 8])
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = polycodec.load("audio", **({"weights": args.weights} if args.weights else {})).model.eval()
    c, rate = model.config, model.config.sample_rate
    n_fft, hop, shipped = c.n_fft, c.synthesis_hop, c.phase_iterations
    methods = {"stationary start, 8 rounds (before)": lambda mags: StationaryStart(n_fft, hop, 8)}
    for rounds in args.rounds:
        label = f"gradient start, {rounds} round{'' if rounds == 1 else 's'}"
        methods[label + (" (shipped)" if rounds == shipped else "")] = (
            lambda mags, rounds=rounds: PhaseReconstructor(n_fft, hop, rounds))
    methods[f"PGHI heap start, {shipped} round{'' if shipped == 1 else 's'}"] = lambda mags: GivenStart(
        torch.from_numpy(heap_phase(mags[0].double().numpy(), n_fft, hop)).float()[None], n_fft, hop, shipped)
    for name in args.sets:
        speech = SPEECH.get(name, True)
        clips = mono_clips(Path(args.data, name), rate)
        seconds = sum(x.shape[-1] for x in clips.values()) / rate
        titles = metric_titles(speech)
        print(f"\n{name} ({len(clips)} clips, {seconds:.0f} s), means; x real time: the phase reconstruction alone")
        print(f"| kbps | {'phase':<38} | " + " | ".join(f"{t:>7}" for t in titles) + " | x real time |")
        print(f"|------|{'-' * 40}|" + "|".join("-" * 9 for _ in titles) + "|-------------|")
        for kbps in args.kbps:
            stages = model.stages_for(kbps)
            magnitudes = {clip: model.predicted_magnitudes(model.encode(x, stages)) for clip, x in clips.items()}
            for label, make in methods.items():
                rows, busy = [], 0.0
                for clip, x in clips.items():
                    start = time.perf_counter()
                    y = reconstruct(make(magnitudes[clip]), magnitudes[clip], x.shape[-1])
                    busy += time.perf_counter() - start
                    rows.append(metrics(x, y, rate, speech))
                means = np.array(rows, dtype=float).mean(axis=0)
                cells = " | ".join(f"{v:7.3f}" for v in means)
                print(f"| {kbps:4g} | {label:<38} | {cells} | {seconds / busy:11.0f} |", flush=True)


if __name__ == "__main__":
    main()
