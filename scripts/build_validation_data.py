"""Build the audio validation set under data/validation/ from Debian packages (see data/README.md).

    .venv/bin/python scripts/build_validation_data.py [--out data/validation]

The place to choose a decoder setting (the phase reconstruction's rounds, say) without looking at the test
clips: voices that neither training nor evaluation uses, reading sentences that neither uses either.

- ``festival``: five voices no other set installs (American English, Finnish, Italian and Czech male diphone
  voices, and a Czech child's voice; the Hindi one crashes on English text), and ``espeak-ng`` voices of six
  other languages in female variants;
- four sentences each, from licence texts in ``/usr/share/common-licenses`` that the training set does not
  read, less every sentence the training texts hold;
- music: 10 s from 30 s into each of the seven tracks of ``xmoto-data`` (a game's music, GPL; training and
  evaluation take theirs from ``sonic-pi-samples`` and ``wesnoth-1.16-music``).

Written as 24 kHz mono 16-bit FLAC to ``speech/`` and ``music/``, so ``benchmarks/audio_phase.py --data
data/validation`` scores it.  The script fails on any overlap with training or evaluation.  Needs apt-get (root).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_audio_data import (ESPEAK_FEMALE_VOICES, ESPEAK_VOICES, FESTIVAL_VOICES, FLITE_EVAL_VOICE,  # noqa: E402
                              FLITE_VOICES, TEXTS, all_sentences, install_festival, sentences, synthesise,
                              to_training_flac)
from build_eval_data import SENTENCES, VOICES, debian_files, install_command  # noqa: E402

FESTIVAL = {  # festival voice -> the Debian package that ships it
    "ked_diphone": "festvox-kdlpc16k",
    "hy_fi_mv_diphone": "festvox-suopuhe-mv",
    "pc_diphone": "festvox-itapc16k",
    "czech_ph": "festvox-czech-ph",
    "czech_krb": "festvox-czech-krb",
}
ESPEAK = ["de+f3", "fr-fr+f2", "es+f4", "nl+f1", "pl+f5", "sv+f2"]
VALIDATION_TEXTS = ["GPL-2", "LGPL-3", "BSD", "MPL-1.1", "CC0-1.0"]
SENTENCES_PER_VOICE = 4
MUSIC_PACKAGE, MUSIC_START, MUSIC_SECONDS = "xmoto-data", 30.0, 10.0


def jobs() -> list[tuple[str, str, str]]:
    """(engine, voice, text) of every validation clip, in file order: each voice its own sentences."""
    voices = [("festival", v) for v in FESTIVAL] + [("espeak", v) for v in ESPEAK]
    texts = sentences(SENTENCES_PER_VOICE * len(voices), seed=1, texts=VALIDATION_TEXTS,
                      exclude=all_sentences(TEXTS))
    return [(*voices[i // SENTENCES_PER_VOICE], text) for i, text in enumerate(texts)]


def check_disjoint(planned: list[tuple[str, str, str]]) -> None:
    """Fail unless no voice (variants aside) and no sentence of ``planned`` is one training or evaluation uses."""
    used = {*FLITE_VOICES, *ESPEAK_VOICES, *ESPEAK_FEMALE_VOICES, *FESTIVAL_VOICES, *VOICES, FLITE_EVAL_VOICE}
    clash = {voice.split("+")[0] for _, voice, _ in planned} & {voice.split("+")[0] for voice in used}
    if clash:
        raise SystemExit(f"validation voices overlap training or evaluation: {', '.join(sorted(clash))}")
    if {text for *_, text in planned} & (all_sentences(TEXTS) | set(SENTENCES)):
        raise SystemExit("a validation sentence is one that training or evaluation reads")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="data/validation", help="output folder (default: data/validation)")
    out = Path(parser.parse_args().out)
    planned = jobs()
    check_disjoint(planned)
    install_command("espeak-ng")
    install_festival(FESTIVAL.values())
    seconds = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for i, (engine, voice, text) in enumerate(planned):
            name = f"{engine}-{voice.replace('+', '-')}-{i % SENTENCES_PER_VOICE}.flac"
            seconds += to_training_flac(*synthesise(engine, voice, text, Path(tmp)), out / "speech" / name)
        music = build_music(out, Path(tmp))
    print(f"{out}: speech {seconds / 60:.1f} min in {len(planned)} clips, music {music / 60:.1f} min "
          "(24 kHz mono FLAC)")
    return 0


def build_music(out: Path, work: Path) -> float:
    seconds = 0.0
    for path in sorted(debian_files(MUSIC_PACKAGE, work).rglob("*.ogg")):
        with sf.SoundFile(path) as f:
            f.seek(int(MUSIC_START * f.samplerate))
            data = f.read(int(MUSIC_SECONDS * f.samplerate), dtype="float32", always_2d=True)
            seconds += to_training_flac(data, f.samplerate, out / "music" / f"xmoto-{path.stem}.flac")
    return seconds


if __name__ == "__main__":
    sys.exit(main())
