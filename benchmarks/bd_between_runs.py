"""BD-rate (PSNR) of one codec's rows in a benchmark run against another codec's rows in a different run,
over the files both runs measured: e.g. the overfitted codec's medium run (hours of fitting) against the
learned codec's newer weights, without fitting again.

    python benchmarks/bd_between_runs.py report/bench-image-overfit-medium image-overfit \\
                                         report/bench-image image

Rates and PSNR are deterministic for given weights and settings, so rows of different runs compare; their
times do not, and are not used.  Prints both curves (mean over the common files) and the BD-rate.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rd import bd_against, rd_table
from polycodec.evaluation.runner import RESULTS_FILE
from polycodec.evaluation.store import ResultStore


def read_rows(run: Path) -> list[dict]:
    """The finished rows of a benchmark output folder (rows that recorded an error are left out)."""
    if not (run / RESULTS_FILE).is_file():
        raise SystemExit(f"{run} has no {RESULTS_FILE}")
    return [r for r in ResultStore(run / RESULTS_FILE).rows.values() if not r.get("error")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ours_run", type=Path, help="benchmark output folder holding results.jsonl")
    parser.add_argument("ours", help="codec name in that run, e.g. image-overfit")
    parser.add_argument("anchor_run", type=Path, help="the other run's folder")
    parser.add_argument("anchor", help="codec name in the other run, e.g. image")
    args = parser.parse_args()
    ours = [r for r in read_rows(args.ours_run) if r["codec"] == args.ours]
    anchor = [r for r in read_rows(args.anchor_run) if r["codec"] == args.anchor]
    files = sorted({r["file"] for r in ours} & {r["file"] for r in anchor})
    if not files:
        raise SystemExit(f"no file has rows of both {args.ours} ({args.ours_run}) and {args.anchor} ({args.anchor_run})")
    label = f"{args.anchor} ({args.anchor_run.name})"  # the two codecs may share a name
    rows = [r for r in ours if r["file"] in files] + [dict(r, codec=label) for r in anchor if r["file"] in files]
    print(f"files: {', '.join(files)}")
    bd_against(rd_table(rows), args.ours, [label])


if __name__ == "__main__":
    main()
