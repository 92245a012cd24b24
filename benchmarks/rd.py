"""Rate-distortion tables the image benchmarks share: one row per codec and setting, then BD-rates."""

from __future__ import annotations

from polycodec.evaluation.report import aggregate
from polycodec.metrics.bd import bd_rate


def rd_table(rows: list[dict]) -> dict[str, list[dict]]:
    """Print mean bpp, PSNR, MS-SSIM and times per codec and setting; returns the curves."""
    curves = aggregate(rows, "image")
    width = max(len(p["setting"]) for points in curves.values() for p in points) + 2
    print(f"\n{'codec':<14}{'setting':<{width}}{'files':>6}{'bpp':>8}{'PSNR':>8}{'MS-SSIM':>9}{'enc s':>9}{'dec s':>8}")
    for codec, points in sorted(curves.items()):
        for p in points:
            print(f"{codec:<14}{p['setting']:<{width}}{p['files']:>6}{p['bpp']:>8.3f}{p['psnr']:>8.2f}"
                  f"{p['ms_ssim']:>9.4f}{p['encode_s']:>9.2f}{p['decode_s']:>8.3f}")
    return curves


def bd_against(curves: dict[str, list[dict]], ours: str, anchors: list[str]) -> None:
    """Print the BD-rate (PSNR) of codec ``ours`` against each anchor present in ``curves``."""
    if ours not in curves:
        return
    points = ([p["bpp"] for p in curves[ours]], [p["psnr"] for p in curves[ours]])
    print(f"\nBD-rate (PSNR) of {ours} against:")
    for anchor in anchors:
        if anchor in curves:
            try:
                value = f"{bd_rate([p['bpp'] for p in curves[anchor]], [p['psnr'] for p in curves[anchor]], *points):+.1f} %"
            except ValueError as exc:
                value = f"undefined ({exc})"
            print(f"  {anchor:<6} {value}")
