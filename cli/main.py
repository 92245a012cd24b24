"""``polycodec`` command line: a thin layer over the library.

    polycodec list                          codecs available offline
    polycodec info FILE.pcdc                the stream header as JSON
    polycodec encode IN... [OUT] [options]  media -> .pcdc
    polycodec decode IN... [OUT] [options]  .pcdc -> media
    polycodec eval DATA_DIR [options]       rate-distortion report against classical codecs
    polycodec train --config FILE [options] rate-distortion training (Lightning)
    polycodec export CHECKPOINT OUT_DIR     trained checkpoint -> shippable weights folder
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import __version__
from ..bitstream import BitstreamError, ContainerReader, Limits
from ..codecs import available_codecs
from . import coding, evaluate
from ..training import cli as training_cli


def cmd_list(args: argparse.Namespace) -> int:
    entries = available_codecs()
    if args.json:
        print(json.dumps([{"name": e.name, "modality": e.modality.name.lower(), "summary": e.summary}
                          for e in entries], indent=2))
    else:
        for e in entries:
            print(f"{e.name:<12} {e.modality.name.lower():<8} {e.summary}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    path = Path(args.file)
    with open(path, "rb") as f:
        reader = ContainerReader(f, Limits())
        chunks = [{"type": c.type, "bytes": len(c.payload)} for c in reader]
    info = reader.header.to_json() | {"file_bytes": path.stat().st_size, "chunks": len(chunks)}
    if args.chunks:
        info["chunk_list"] = chunks
    print(json.dumps(info, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="polycodec",
        description="Neural codecs for images, audio and video, writing versioned .pcdc streams.",
        epilog="Examples:\n  polycodec list\n  polycodec encode photo.png photo.pcdc --quality 4\n"
               "  polycodec decode photo.pcdc restored.png\n"
               "  polycodec encode feats.npy feats.pcdc --codec tensor --step 0.01\n"
               "  polycodec info feats.pcdc\n  polycodec decode feats.pcdc restored.npy\n"
               "See docs/cli.md for every option.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"polycodec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="list the codecs available offline")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="print the header of a .pcdc file as JSON")
    p.add_argument("file", help="a .pcdc file")
    p.add_argument("--chunks", action="store_true", help="also list every chunk's type and size")
    p.set_defaults(func=cmd_info)

    coding.add_parsers(sub)
    evaluate.add_parser(sub)
    training_cli.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (BitstreamError, FileExistsError, FileNotFoundError, ValueError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"polycodec {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
