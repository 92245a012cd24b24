"""``polycodec encode`` / ``decode``: files in, files out, atomically, never over an input."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

from tqdm import tqdm

from ..bitstream import FILE_EXTENSION, ContainerReader, Modality
from ..bitstream.files import write_atomic
from ..codecs import load
from ..media import audio_info, iter_audio_blocks, modality_of, read_audio
from ..media.audio import write_audio_blocks
from ..training.overfit import PRESETS
from . import media_files

AUDIO_BLOCK = 1 << 16  # samples read (and resampled, coded) per step: memory does not grow with duration


def _pairs(inputs: list[str], out_dir: str | None, suffix_for) -> list[tuple[Path, Path]]:
    """(input, output) pairs from either ``IN OUT`` or ``IN... --out-dir D``."""
    if out_dir is not None:
        return [(Path(i), Path(out_dir) / (Path(i).stem + suffix_for(Path(i)))) for i in inputs]
    if len(inputs) != 2:
        raise ValueError("give IN OUT, or several inputs with --out-dir DIR")
    return [(Path(inputs[0]), Path(inputs[1]))]


def _run(pairs: list[tuple[Path, Path]], job, force: bool, what: str) -> int:
    for src, dst in tqdm(pairs, desc=what, unit="file", disable=len(pairs) < 2):
        if not src.is_file():
            raise FileNotFoundError(f"input {src} does not exist")
        protect = tuple(p for p, _ in pairs)
        data = job(src, dst, protect)
        if data is not None:  # streaming jobs write their output themselves, just as atomically
            write_atomic(dst, data, force=force, protect=protect)
        if len(pairs) == 1:
            print(f"{src} -> {dst} ({dst.stat().st_size} bytes)")
    return 0


def _codec(name: str, **options):
    """A registered codec by name, or a codec from a folder written by ``polycodec export`` (its config.json
    says which model, hence which codec: image or audio)."""
    folder = Path(name)
    if folder.is_dir():
        from ..training.export import CONFIG

        kind = json.loads((folder / CONFIG).read_text()).get("model") if (folder / CONFIG).is_file() else None
        if kind not in ("image", "audio"):
            raise ValueError(f"{folder} is not a folder written by `polycodec export` (no image/audio config.json)")
        return load(kind, weights=name, **options)
    return load(name, **options)


def _default_codec(path: str) -> str:
    """The project's codec for a file's kind: tensor files -> tensor, images -> image, audio -> audio."""
    if Path(path).suffix.lower() in media_files.TENSOR_SUFFIXES:
        return "tensor"
    modality = modality_of(path)
    if modality == Modality.VIDEO:
        raise ValueError(f"{path}: polycodec has no video codec yet")
    return modality.name.lower()


def _encode_audio(codec, src: Path) -> bytes:
    """Stream an audio file through a chunked codec, with a progress bar over its duration."""
    info = audio_info(src)
    with tqdm(total=info.samples, unit="sample", unit_scale=True, desc=src.name, leave=False,
              disable=info.samples is None or info.samples < 60 * info.sample_rate) as bar:
        return codec.encode_blocks(iter_audio_blocks(src, AUDIO_BLOCK), info.sample_rate, info.channels,
                                   progress=bar.update)


def _encode_fitted(codec, src: Path) -> bytes:
    """Encode with a codec that optimises a model per input, showing the fit's step, bpp and PSNR."""
    with tqdm(desc=src.name, unit="step", leave=False) as bar:
        def progress(step: int, steps: int, bpp: float, psnr: float) -> None:
            if step == 1 or step < bar.n:  # a new fit (--target-bpp fits several times)
                bar.reset(total=steps)
            if step % 10 == 0 or step == steps:
                bar.set_postfix(bpp=f"{bpp:.3f}", psnr=f"{psnr:.2f}", refresh=False)
            bar.update(step - bar.n)

        codec.progress = progress
        return codec.encode(media_files.read_media(src, codec.modality))


def cmd_encode(args: argparse.Namespace) -> int:
    options = {k: v for k, v in (("step", args.step), ("quality", args.quality), ("bitrate", args.bitrate),
                                 ("channel_mode", args.channel_mode), ("preset", args.preset),
                                 ("target_bpp", args.target_bpp)) if v is not None}
    codec = _codec(args.codec or _default_codec(args.inputs[0]), **options)

    def job(src: Path, dst: Path, protect) -> bytes:
        if getattr(codec, "fits_per_input", False):
            return _encode_fitted(codec, src)
        if hasattr(codec, "encode_blocks"):
            return _encode_audio(codec, src)
        if codec.modality == Modality.AUDIO:
            return codec.encode(*read_audio(src))
        return codec.encode(media_files.read_media(src, codec.modality))

    return _run(_pairs(args.inputs, args.out_dir, lambda p: FILE_EXTENSION), job, args.force, "encode")


def cmd_decode(args: argparse.Namespace) -> int:
    def job(src: Path, dst: Path, protect) -> bytes | None:
        data = src.read_bytes()
        header = ContainerReader(io.BytesIO(data)).header
        codec = _codec(args.codec or header.codec)
        if hasattr(codec, "decode_blocks"):
            info, blocks = codec.decode_blocks(data, partial=args.partial)
            write_audio_blocks(blocks, info.sample_rate, info.channels, dst, force=args.force, protect=protect)
            return None
        if args.partial:
            raise ValueError(f"--partial applies to chunked (audio) streams, not to {header.codec!r}")
        media = codec.decode(data)
        return media_files.media_bytes(media, dst)

    return _run(_pairs(args.inputs, args.out_dir, lambda p: args.ext or _decoded_suffix(p)), job, args.force, "decode")


def _decoded_suffix(path: Path) -> str:
    """Default output extension in batch mode, by what the stream holds."""
    with open(path, "rb") as f:
        modality = ContainerReader(f).header.modality
    return {Modality.TENSOR: ".npy", Modality.IMAGE: ".png", Modality.AUDIO: ".wav"}.get(modality, ".bin")


def add_parsers(sub) -> None:
    p = sub.add_parser("encode", help="compress media files into .pcdc streams",
                       description="Compress IN into OUT, or each of several INs into --out-dir/NAME.pcdc.")
    p.add_argument("inputs", nargs="+", metavar="IN [OUT]", help="input file(s), then the output if single")
    p.add_argument("--codec", help="codec name from `polycodec list`, or a folder from `polycodec export` "
                                   "(default: image for image files, audio for audio files, tensor for .npy / "
                                   ".safetensors)")
    p.add_argument("--quality", type=int, help="image and overfit codecs: quality level 1 (smallest) .. 6 (best); "
                                               "default 3")
    p.add_argument("--bitrate", type=float, help="audio codec: 1.5, 3, 6 (default) or 12 kbps before entropy "
                                                 "coding (the file is smaller)")
    p.add_argument("--channel-mode", choices=("mix", "separate"),
                   help="audio codec: code the channels' mean once (mix, default) or each channel (separate, "
                        "costs x channels); either way decoding restores the channel count and sample rate")
    p.add_argument("--preset", choices=tuple(PRESETS),
                   help="overfit codec: fitting budget per image, " + "; ".join(
                       f"{name}: {preset.describe()}" for name, preset in PRESETS.items())
                   + " (default fast; a full-size step of a 768x512 image takes about 0.3 s on 2 cores, a "
                     "half-size one about a third of that)")
    p.add_argument("--target-bpp", type=float, help="overfit codec: search the quality for this rate "
                                                    "(bits per pixel); fits up to 4 times")
    p.add_argument("--step", type=float, help="tensor codec: quantization step; max error is step/2")
    p.add_argument("--out-dir", help="write NAME.pcdc for each input into this folder")
    p.add_argument("--force", action="store_true", help="replace existing outputs (inputs are never replaced)")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help="restore media files from .pcdc streams",
                       description="Decode IN.pcdc into OUT (format by extension), or several into --out-dir.")
    p.add_argument("inputs", nargs="+", metavar="IN [OUT]", help="input .pcdc file(s), then the output if single")
    p.add_argument("--codec", help="decode with this codec or exported folder instead of the one the header "
                                   "names (needed for streams coded with your own trained weights)")
    p.add_argument("--out-dir", help="write NAME.EXT for each input into this folder")
    p.add_argument("--ext", help="output extension with --out-dir (default: .png for images, .wav for audio, "
                                 ".npy for tensors)")
    p.add_argument("--partial", action="store_true",
                   help="audio: decode the intact chunks of a damaged or cut stream instead of failing")
    p.add_argument("--force", action="store_true", help="replace existing outputs (inputs are never replaced)")
    p.set_defaults(func=cmd_decode)
