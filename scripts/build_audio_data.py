"""Build the audio training set under data/train/audio/ from Debian packages (see data/README.md).

    .venv/bin/python scripts/build_audio_data.py [--out data/train/audio] [--music-seconds 90] [--set 2]

Everything is written as 24 kHz mono 16-bit FLAC (the audio codec's native format), in two folders that
training samples evenly: ``speech/`` and ``music/``.  Sources, all from the Debian archive:

- speech, ``flite`` (statistical-parametric and diphone voices kal, kal16, awb, rms), ``espeak-ng``
  (formant voices other than the evaluation's en-us / en-gb, each also with a female variant) and
  ``festival`` (four female voices packaged for it in Debian: a Catalan HTS voice and Italian, Finnish and
  Czech concatenative ones), all reading sentences of the licence texts in
  ``/usr/share/common-licenses`` -- any text will do, it only has to be varied; a voice of another language
  reads it with that language's rules, which still teaches the codec that voice;
- music, ``sonic-pi-samples`` (CC0; every clip except the evaluation's ``build_eval_data.MUSIC``) and
  ``wesnoth-1.16-music`` (GPL orchestral tracks, the first ``--music-seconds`` of each).

Held out for evaluation, never written here: the evaluation sentences and voices of ``build_eval_data``
(espeak-ng en-us / en-gb), flite's ``slt`` voice, and the six evaluation music clips.  The script checks
this and fails on any overlap.  Needs apt-get (root) for ``flite`` and the data packages.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_eval_data import MUSIC, SENTENCES, VOICES, debian_files, install_command, run  # noqa: E402

RATE = 24000
FLITE_VOICES = ["kal", "kal16", "awb", "rms"]  # slt is the held-out evaluation voice
FLITE_EVAL_VOICE = "slt"
ESPEAK_VOICES = ["en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd"]
# Female variants of the same voices: the first training set was all male and the codec failed on slt.
ESPEAK_FEMALE_VOICES = [f"{voice}+f{i % 5 + 1}" for i, voice in enumerate(ESPEAK_VOICES)]
FESTIVAL_VOICES = {  # festival voice -> the Debian package that ships it
    "upc_ca_ona_hts": "festvox-ca-ona-hts",
    "lp_diphone": "festvox-italp16k",
    "suo_fi_lj_diphone": "festvox-suopuhe-lj",
    "czech_dita": "festvox-czech-dita",
}
TEXTS = ["GPL-3", "LGPL-2.1", "Apache-2.0", "MPL-2.0", "Artistic", "GFDL-1.3"]
SENTENCES_PER_VOICE = 60


def sentences(limit: int, seed: int, texts: list[str] = TEXTS, exclude: set[str] = frozenset()) -> list[str]:
    """Plain-prose sentences of 6..30 words from the licence texts ``texts`` (none of the evaluation's, nor
    any in ``exclude``), shuffled reproducibly."""
    found = sorted(all_sentences(texts) - set(SENTENCES) - set(exclude))
    rng = np.random.default_rng(seed)
    return [found[i] for i in rng.permutation(len(found))[:limit]]


def all_sentences(texts: list[str]) -> set[str]:
    """Every plain-prose sentence of 6..30 words in the licence texts ``texts``."""
    text = " ".join(Path("/usr/share/common-licenses", name).read_text(errors="ignore") for name in texts)
    text = re.sub(r"\s+", " ", re.sub(r"[^A-Za-z0-9,.;:'\- ]", " ", text))
    return {s.strip() + "." for s in re.split(r"[.;:]", text) if 6 <= len(s.split()) <= 30}


def to_training_flac(waveform: np.ndarray, rate: int, target: Path) -> float:
    """float (samples, channels) at ``rate`` -> 24 kHz mono FLAC; returns seconds written."""
    mono = torch.from_numpy(np.ascontiguousarray(waveform.mean(axis=1), dtype=np.float32))
    if rate != RATE:
        mono = AF.resample(mono, rate, RATE)
    peak = float(mono.abs().max()) if mono.numel() else 0.0
    if peak < 1e-3:
        return 0.0  # silence teaches nothing
    if peak > 1.0:
        mono = mono / peak
    target.parent.mkdir(parents=True, exist_ok=True)
    sf.write(target, mono.numpy(), RATE, subtype="PCM_16")
    return mono.numel() / RATE


def speech_jobs(version: int) -> list[tuple[str, str, str]]:
    """(engine, voice, text) of every training clip of set ``version``, in file order.

    Set 1 (stages 1 and 2 of the shipped weights) had the ten male voices only, and ran out of sentences after
    453 clips; set 2 lets voices share sentences so every voice has ``SENTENCES_PER_VOICE`` clips, and adds
    the female voices after them, so set 1's clips are a subset of set 2's, file for file.
    """
    voices = [("flite", v) for v in FLITE_VOICES] + [("espeak", v) for v in ESPEAK_VOICES]
    if version >= 2:
        voices += [("festival", v) for v in FESTIVAL_VOICES] + [("espeak", v) for v in ESPEAK_FEMALE_VOICES]
    texts = sentences(SENTENCES_PER_VOICE * len(voices), seed=0)
    clips = len(voices) * SENTENCES_PER_VOICE
    if version == 1:
        clips = min(clips, len(texts))
    return [(*voices[i // SENTENCES_PER_VOICE], texts[i % len(texts)]) for i in range(clips)]


def build_speech(out: Path, work: Path, version: int) -> float:
    install_command("flite")
    install_command("espeak-ng")
    install_festival(FESTIVAL_VOICES.values())
    jobs = speech_jobs(version)
    assert not {voice.split("+")[0] for _, voice, _ in jobs} & {*VOICES, FLITE_EVAL_VOICE}  # eval voices held out
    seconds = 0.0
    for i, (engine, voice, text) in enumerate(jobs):
        name = f"{engine}-{voice.replace('+', '-')}-{i % SENTENCES_PER_VOICE:03d}.flac"
        seconds += to_training_flac(*synthesise(engine, voice, text, work), out / "speech" / name)
    return seconds


def install_festival(voice_packages: Iterable[str]) -> None:
    """apt-get install festival with these voice packages unless every one is installed already."""
    voice_packages = list(voice_packages)
    if not all(Path("/usr/share/doc", package).exists() for package in voice_packages):
        run("apt-get", "install", "-y", "-qq", "festival", *voice_packages)


def synthesise(engine: str, voice: str, text: str, work: Path) -> tuple[np.ndarray, int]:
    """``text`` read by ``voice`` of ``engine`` (flite, festival or espeak) -> float (samples, channels) and its
    rate."""
    raw = work / "tts.wav"
    if engine == "flite":
        run("flite", "-voice", voice, "-t", text, "-o", str(raw))
    elif engine == "festival":
        (work / "tts.txt").write_text(text)
        run("text2wave", "-eval", f"(voice_{voice})", "-o", str(raw), str(work / "tts.txt"))
    else:
        run("espeak-ng", "-v", voice, "-w", str(raw), text)
    return sf.read(raw, dtype="float32", always_2d=True)


def build_music(out: Path, work: Path, music_seconds: float) -> float:
    seconds = 0.0
    sonic = debian_files("sonic-pi-samples", work) / "usr/share/sonic-pi/samples"
    for path in sorted(sonic.glob("*.flac")):
        if path.stem in MUSIC:
            continue
        data, rate = sf.read(path, dtype="float32", always_2d=True)
        seconds += to_training_flac(data, rate, out / "music" / f"sonicpi-{path.stem}.flac")
    wesnoth = debian_files("wesnoth-1.16-music", work)
    for path in sorted(wesnoth.rglob("*.ogg")):
        with sf.SoundFile(path) as f:
            data = f.read(int(music_seconds * f.samplerate), dtype="float32", always_2d=True)
            seconds += to_training_flac(data, f.samplerate, out / "music" / f"wesnoth-{path.stem}.flac")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="data/train/audio", help="output folder (default: data/train/audio)")
    parser.add_argument("--music-seconds", type=float, default=90.0,
                        help="seconds taken from the start of each wesnoth track (default 90)")
    parser.add_argument("--set", type=int, choices=(1, 2), default=2,
                        help="which training set: 2 (default; stage 3 of the shipped weights) or 1, the male-voice "
                             "set that stages 1 and 2 trained on")
    args = parser.parse_args()
    out = Path(args.out)
    with tempfile.TemporaryDirectory() as tmp:
        speech = build_speech(out, Path(tmp), args.set)
        music = build_music(out, Path(tmp), args.music_seconds)
    print(f"{out}: speech {speech / 60:.1f} min, music {music / 60:.1f} min (24 kHz mono FLAC)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
