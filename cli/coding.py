"""``polycodec encode`` / ``decode``: files in, files out, atomically, never over an input."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from tqdm import tqdm

from ..bitstream import FILE_EXTENSION, ContainerReader
from ..bitstream.files import write_atomic
from ..codecs import load
from . import media_files


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
        write_atomic(dst, job(src, dst), force=force, protect=tuple(p for p, _ in pairs))
        if len(pairs) == 1:
            print(f"{src} -> {dst} ({dst.stat().st_size} bytes)")
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    options = {"step": args.step} if args.step is not None else {}
    codec = load(args.codec, **options)

    def job(src: Path, dst: Path) -> bytes:
        return codec.encode(media_files.read_media(src, codec.modality))

    return _run(_pairs(args.inputs, args.out_dir, lambda p: FILE_EXTENSION), job, args.force, "encode")


def cmd_decode(args: argparse.Namespace) -> int:
    def job(src: Path, dst: Path) -> bytes:
        data = src.read_bytes()
        header = ContainerReader(io.BytesIO(data)).header
        media = load(header.codec).decode(data)
        return media_files.media_bytes(media, dst)

    return _run(_pairs(args.inputs, args.out_dir, lambda p: args.ext), job, args.force, "decode")


def add_parsers(sub) -> None:
    p = sub.add_parser("encode", help="compress media files into .pcdc streams",
                       description="Compress IN into OUT, or each of several INs into --out-dir/NAME.pcdc.")
    p.add_argument("inputs", nargs="+", metavar="IN [OUT]", help="input file(s), then the output if single")
    p.add_argument("--codec", default="tensor", help="codec name from `polycodec list` (default: tensor)")
    p.add_argument("--step", type=float, help="tensor codec: quantization step; max error is step/2")
    p.add_argument("--out-dir", help="write NAME.pcdc for each input into this folder")
    p.add_argument("--force", action="store_true", help="replace existing outputs (inputs are never replaced)")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help="restore media files from .pcdc streams",
                       description="Decode IN.pcdc into OUT (format by extension), or several into --out-dir.")
    p.add_argument("inputs", nargs="+", metavar="IN [OUT]", help="input .pcdc file(s), then the output if single")
    p.add_argument("--out-dir", help="write NAME.EXT for each input into this folder")
    p.add_argument("--ext", default=".npy", help="output extension with --out-dir (default: .npy)")
    p.add_argument("--force", action="store_true", help="replace existing outputs (inputs are never replaced)")
    p.set_defaults(func=cmd_decode)
