"""Audio codec benchmark: polycodec's streaming codec against Opus (libopus through PyAV) on speech and music
clips never used in training, plus speed against EnCodec's 24 kHz architecture and memory on long files.

    python benchmarks/audio.py [--weights DIR] [--out report/bench-audio] [--long-minutes 5 20 60]

Prints, all measured in this one run:
- per test set (data/eval/speech: espeak-ng; data/eval/speech-flite: flite slt; data/eval/music: sonic-pi),
  codec and setting: bitrate from the real file size (header included), mel and MR-STFT distance, SI-SDR,
  PESQ-WB and STOI (speech), ViSQOL (music; audio mode on speech), encode / decode seconds;
- the targets of issue 4, each as polycodec's value beside Opus's;
- bits saved by entropy coding the codes over raw packing, per bitrate;
- real-time factors on 2 threads for polycodec (all bitrates) and EnCodec 24 kHz (random weights: speed only,
  its own 6 kbps setting) on the same 30 s clip, best of 3;
- peak resident memory of ``polycodec encode`` and ``decode`` (separate processes) on synthetic files of the
  given durations, to show it does not grow with duration.
Build the test sets first with ``scripts/build_eval_data.py``.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

import polycodec
from polycodec.bitstream import ChunkType, unpack
from polycodec.evaluation import EvalConfig, run_evaluation
from polycodec.evaluation.report import aggregate
from polycodec.media import read_audio
from timing import best_of

SETS = {"speech": True, "speech-flite": True, "music": False}  # folder under data/eval -> speech metrics?
BITRATES = (1.5, 3.0, 6.0, 12.0)
PARTS = ("rd", "entropy", "speed", "memory")
COLUMNS = [("kbps", "kbps", 7, 2), ("mel_distance", "mel", 7, 3), ("stft_distance", "stft", 7, 3),
           ("si_sdr", "SI-SDR", 8, 2), ("pesq_wb", "PESQ", 6, 2), ("stoi", "STOI", 6, 3),
           ("visqol", "ViSQOL", 7, 2), ("visqol_audio_mode", "ViSQOLa", 8, 2), ("encode_s", "enc s", 7, 3),
           ("decode_s", "dec s", 7, 3)]


def rd_tables(data: Path, out: Path, weights: str | None, workers: int) -> dict[str, dict]:
    options = {"audio": {"weights": weights}} if weights else {}
    results = {}
    for name, speech in SETS.items():
        folder = data / name
        if not folder.is_dir():
            print(f"\n(skipping {folder}: not built; run scripts/build_eval_data.py)")
            continue
        config = EvalConfig(folder, out / name, ["audio", "opus"], perception=False, speech=speech,
                            workers=workers, codec_options=options)
        curves = aggregate(run_evaluation(config), "audio")
        results[name] = curves
        print(f"\n== {name} ({len(list(folder.glob('*.wav')) + list(folder.glob('*.flac')))} clips) ==")
        print(f"{'codec':<7}{'setting':<18}" + "".join(f"{title:>{w}}" for _, title, w, _ in COLUMNS))
        for codec, points in sorted(curves.items()):
            for p in points:
                cells = "".join(f"{p.get(key, math.nan):>{w}.{d}f}" for key, _, w, d in COLUMNS)
                print(f"{codec:<7}{p['setting']:<18}{cells}")
    return results


def _point(curves: dict, codec: str, kbps: float) -> dict | None:
    for p in curves.get(codec, []):
        if f'"bitrate": {kbps:g}' in p["setting"] or f'"bitrate": {kbps}' in p["setting"]:
            return p
    return None


def targets(results: dict[str, dict]) -> None:
    """Issue 4's targets: polycodec at 6 kbps vs Opus 6 kbps, and polycodec at 3 kbps vs Opus 6 kbps."""
    print("\ntargets (polycodec vs Opus at 6 kbps; higher is better except distances):")
    print(f"  {'set':<14}{'metric':<10}{'ours 6k':>9}{'ours 3k':>9}{'opus 6k':>9}   6k beats opus?  3k >= opus 6k?")
    for name, curves in results.items():
        metrics = ["pesq_wb", "stoi", "mel_distance"] if SETS[name] else ["mel_distance", "visqol"]
        ours6, ours3, opus6 = _point(curves, "audio", 6), _point(curves, "audio", 3), _point(curves, "opus", 6)
        if not (ours6 and ours3 and opus6):
            continue
        for m in metrics:
            lower = m.endswith("distance")
            better = (lambda a, b: a < b) if lower else (lambda a, b: a > b)
            a, b, o = ours6.get(m, math.nan), ours3.get(m, math.nan), opus6.get(m, math.nan)
            print(f"  {name:<14}{m:<10}{a:>9.3f}{b:>9.3f}{o:>9.3f}   {'yes' if better(a, o) else 'no':<15}"
                  f"{'yes' if better(b, o) or b == o else 'no'}")


def entropy_savings(data: Path, weights: str | None) -> None:
    """Bits of the coded codes against raw fixed-length packing (stages x log2 K bits per frame)."""
    files = [p for name in SETS for p in sorted((data / name).glob("*")) if p.suffix in (".wav", ".flac")]
    if not files:
        return
    print(f"\nentropy coding of the codes ({len(files)} clips): DATA payload vs raw packing")
    for kbps in BITRATES:
        codec = polycodec.load("audio", bitrate=kbps, **({"weights": weights} if weights else {}))
        raw = coded = 0.0
        for path in files:
            waveform, rate = read_audio(path)
            stream = codec.encode(waveform, rate)
            chunks = unpack(stream)[1]
            coded += 8 * sum(len(c.payload) for c in chunks if c.type == ChunkType.DATA)
            samples = -(-waveform.shape[1] * codec.rate // rate)
            raw += codec.model.frames_for(samples) * kbps * 1000 / codec.model.frame_rate
        print(f"  {kbps:>5g} kbps: raw {raw / 8 / 1024:8.1f} KiB  coded {coded / 8 / 1024:8.1f} KiB  "
              f"saved {1 - coded / raw:6.1%}")


def speed(data: Path, weights: str | None, seconds: float = 30.0) -> None:
    clips = [read_audio(p) for p in sorted((data / "music").glob("*.flac"))]
    import torchaudio.functional as AF

    pieces = [AF.resample(w.mean(0, keepdim=True), r, 24000) for w, r in clips]
    clip = torch.cat(pieces, dim=-1).repeat(1, math.ceil(seconds * 24000 / sum(p.shape[-1] for p in pieces)))
    clip = clip[:, : int(seconds * 24000)]
    print(f"\nspeed on a {seconds:g} s 24 kHz mono clip, {torch.get_num_threads()} threads, best of 3 "
          f"(real-time factor = audio seconds per second of compute):")
    for kbps in BITRATES:
        codec = polycodec.load("audio", bitrate=kbps, **({"weights": weights} if weights else {}))
        stream = codec.encode(clip, 24000)
        enc, dec = best_of(lambda: codec.encode(clip, 24000)), best_of(lambda: codec.decode(stream))
        print(f"  polycodec audio {kbps:>4g} kbps   encode {seconds / enc:7.1f}x   decode {seconds / dec:7.1f}x")
    try:
        from encodec import EncodecModel
    except ImportError:
        print("  (encodec not installed: pip install --no-deps encodec==0.1.1)")
        return
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = EncodecModel.encodec_model_24khz(pretrained=False).eval()
        model.set_target_bandwidth(6.0)
        x = clip.unsqueeze(0)
        with torch.no_grad():
            frames = model.encode(x)
            enc = best_of(lambda: model.encode(x))
            dec = best_of(lambda: model.decode(frames))
    print(f"  EnCodec 24 kHz (random weights)   encode {seconds / enc:7.1f}x   decode {seconds / dec:7.1f}x")


# Peak memory is read from /proc/self/status (VmHWM, this process image only): getrusage's ru_maxrss would
# include the high-water mark of the (large) benchmark process it was forked from, which exec does not reset.
MEMORY_CHILD = """
import re, sys, time
from polycodec.cli.main import main
start = time.perf_counter()
code = main(sys.argv[1:])
peak_kib = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
print(peak_kib / 1024, time.perf_counter() - start, code)
"""


def write_long_file(path: Path, minutes: float, rate: int = 24000) -> None:
    """A synthetic, non-repeating speech-like signal, written block by block (never whole in memory)."""
    rng = np.random.default_rng(0)
    block = rate * 10
    with sf.SoundFile(path, "w", rate, 1, subtype="PCM_16") as f:
        phase = 0.0
        for start in range(0, int(minutes * 60 * rate), block):
            t = (start + np.arange(block)) / rate
            f0 = 120 + 60 * np.sin(2 * np.pi * 0.31 * t) + 20 * np.sin(2 * np.pi * 1.7 * t)
            ph = phase + 2 * np.pi * np.cumsum(f0) / rate
            phase = ph[-1]
            x = sum(np.sin(k * ph) / k for k in range(1, 10)) * (0.5 + 0.5 * np.sin(2 * np.pi * 2.3 * t)) ** 2
            f.write((0.2 * x + 0.01 * rng.standard_normal(block)).astype(np.float32))


def memory(minutes_list: list[float], weights: str | None) -> None:
    print("\npeak resident memory (separate processes; synthetic 24 kHz mono 16-bit WAV), 6 kbps:")
    print(f"  {'minutes':>8}{'encode MB':>11}{'enc x RT':>10}{'decode MB':>11}{'dec x RT':>10}")
    codec_args = ["--codec", weights] if weights else []
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in minutes_list:
            wav, pcdc, out = Path(tmp) / "long.wav", Path(tmp) / "long.pcdc", Path(tmp) / "back.wav"
            write_long_file(wav, minutes)
            rows = []
            for args in (["encode", str(wav), str(pcdc), "--bitrate", "6", "--force", *codec_args],
                         ["decode", str(pcdc), str(out), "--force", *codec_args]):
                done = subprocess.run([sys.executable, "-c", MEMORY_CHILD, *args], capture_output=True, text=True,
                                      check=True)
                rss, seconds, _ = done.stdout.strip().splitlines()[-1].split()
                rows.append((float(rss), minutes * 60 / float(seconds)))
            print(f"  {minutes:>8g}{rows[0][0]:>11.0f}{rows[0][1]:>10.1f}{rows[1][0]:>11.0f}{rows[1][1]:>10.1f}")
            for p in (wav, pcdc, out):
                p.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/eval")
    parser.add_argument("--weights", help="exported audio model folder (default: the shipped weights)")
    parser.add_argument("--out", default="report/bench-audio")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--long-minutes", type=float, nargs="*", default=[5, 20, 60],
                        help="durations of the memory test files (default: 5 20 60; none: skip)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                        help="what to run (default: all): rd (rate-distortion and targets), entropy, speed, memory")
    args = parser.parse_args()
    weights = str(Path(args.weights).resolve()) if args.weights else None
    data = Path(args.data)
    if "rd" in args.parts:
        targets(rd_tables(data, Path(args.out), weights, args.workers))
    if "entropy" in args.parts:
        entropy_savings(data, weights)
    if "speed" in args.parts:
        speed(data, weights)
    if "memory" in args.parts and args.long_minutes:
        memory(args.long_minutes, weights)


if __name__ == "__main__":
    main()
