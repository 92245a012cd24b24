"""``polycodec eval``: rate-distortion report over a folder of media."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..bitstream import Modality


def cmd_eval(args: argparse.Namespace) -> int:
    from ..evaluation import EvalConfig, run_evaluation, write_report

    config = EvalConfig(
        data_dir=Path(args.data_dir), out_dir=Path(args.out), codecs=[c.strip() for c in args.codecs.split(",") if c.strip()],
        modality=Modality[args.modality.upper()] if args.modality else None, anchor=args.anchor,
        workers=args.workers, perception=not args.no_perception, speech=args.speech, vmaf=not args.no_vmaf,
        max_files=args.max_files, max_frames=args.max_frames)
    rows = run_evaluation(config)
    modality = rows[0]["modality"] if rows else (args.modality or "image")
    tables = write_report(rows, modality, config.out_dir, config.anchor, config.notes)
    print(f"{len(rows)} measurements; report: {config.out_dir / 'report.html'} and report.md")
    for note in tables.notes:
        print(f"note: {note}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "eval", help="rate-distortion report: codecs x settings x files, with BD-rates and plots",
        description="Run each codec over its sweep of settings on every media file in DATA_DIR, measure rate "
                    "from real file sizes and quality with the modality's metrics, and write report.html, "
                    "report.md, results.csv and results.json into --out. Re-running with the same --out "
                    "resumes: finished measurements are kept.",
        epilog="Example: polycodec eval photos/ --codecs polycodec,webp,avif,jpeg --anchor jpeg --out report/")
    p.add_argument("data_dir", help="folder of images, audio or video files (searched recursively)")
    p.add_argument("--codecs", default="polycodec,jpeg,webp,avif",
                   help="comma-separated codec names from `polycodec list`; 'polycodec' = the project's own codecs "
                        "for the modality (default: polycodec,jpeg,webp,avif)")
    p.add_argument("--out", default="report", help="output folder (default: report/)")
    p.add_argument("--modality", choices=["image", "audio", "video"], help="default: inferred from the files")
    p.add_argument("--anchor", help="codec the BD-rates are measured against (default: first codec, by name)")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes (default 1: cleanest timings)")
    p.add_argument("--speech", action="store_true", help="audio is speech: add PESQ-WB, STOI and ASR agreement")
    p.add_argument("--no-perception", action="store_true", help="skip machine-perception metrics")
    p.add_argument("--no-vmaf", action="store_true", help="video: skip VMAF")
    p.add_argument("--max-files", type=int, help="use only the first N files")
    p.add_argument("--max-frames", type=int, help="video: use only the first N frames of each file")
    p.set_defaults(func=cmd_eval)
