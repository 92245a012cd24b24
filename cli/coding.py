"""``polycodec encode`` / ``decode``: files in, files out, atomically, never over an input."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from tqdm import tqdm

from ..bitstream import FILE_EXTENSION, ContainerReader, Modality
from ..bitstream.files import write_atomic
from ..codecs import load
from ..media import modality_of
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


def _codec(name: str, **options):
    """A registered codec by name, or an image codec from a folder written by ``polycodec export``."""
    if Path(name).is_dir():
        return load("image", weights=name, **options)
    return load(name, **options)


def _default_codec(path: str) -> str:
    """The project's codec for a file's kind: tensor files -> tensor, images -> image."""
    if Path(path).suffix.lower() in media_files.TENSOR_SUFFIXES:
        return "tensor"
    modality = modality_of(path)
    if modality != Modality.IMAGE:
        raise ValueError(f"{path}: polycodec has no {modality.name.lower()} codec yet")
    return "image"


def cmd_encode(args: argparse.Namespace) -> int:
    options = {k: v for k, v in (("step", args.step), ("quality", args.quality)) if v is not None}
    codec = _codec(args.codec or _default_codec(args.inputs[0]), **options)

    def job(src: Path, dst: Path) -> bytes:
        return codec.encode(media_files.read_media(src, codec.modality))

    return _run(_pairs(args.inputs, args.out_dir, lambda p: FILE_EXTENSION), job, args.force, "encode")


def cmd_decode(args: argparse.Namespace) -> int:
    def job(src: Path, dst: Path) -> bytes:
        data = src.read_bytes()
        header = ContainerReader(io.BytesIO(data)).header
        media = _codec(args.codec or header.codec).decode(data)
        return media_files.media_bytes(media, dst)

    return _run(_pairs(args.inputs, args.out_dir, lambda p: args.ext or _decoded_suffix(p)), job, args.force, "decode")


def _decoded_suffix(path: Path) -> str:
    """Default output extension in batch mode, by what the stream holds."""
    with open(path, "rb") as f:
        modality = ContainerReader(f).header.modality
    return {Modality.TENSOR: ".npy", Modality.IMAGE: ".png"}.get(modality, ".bin")


def add_parsers(sub) -> None:
    p = sub.add_parser("encode", help="compress media files into .pcdc streams",
                       description="Compress IN into OUT, or each of several INs into --out-dir/NAME.pcdc.")
    p.add_argument("inputs", nargs="+", metavar="IN [OUT]", help="input file(s), then the output if single")
    p.add_argument("--codec", help="codec name from `polycodec list`, or a folder from `polycodec export` "
                                   "(default: image for image files, tensor for .npy / .safetensors)")
    p.add_argument("--quality", type=int, help="image codec: quality level 1 (smallest) .. 6 (best); default 3")
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
    p.add_argument("--ext", help="output extension with --out-dir (default: .png for images, .npy for tensors)")
    p.add_argument("--force", action="store_true", help="replace existing outputs (inputs are never replaced)")
    p.set_defaults(func=cmd_decode)
