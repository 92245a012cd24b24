"""Turn result rows into report.md / report.html (RD plots, BD-rate table, per-file table) plus
results.csv / results.json."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..bitstream.files import write_atomic


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    higher_is_better: bool = True


# Per modality: the rate axis and the quality metrics worth a BD-rate and a plot (those present are used).
RATE = {"image": ("bpp", "bits per pixel"), "audio": ("kbps", "kbit/s"), "video": ("bpp", "bits per pixel")}
METRICS = {
    "image": [Metric("psnr", "PSNR RGB (dB)"), Metric("ms_ssim", "MS-SSIM"), Metric("psnr_y", "PSNR Y (dB)"),
              Metric("haarpsi", "HaarPSI"), Metric("top1_agreement", "classifier top-1 agreement"),
              Metric("deep_feature_distance", "deep-feature distance", False),
              Metric("faces_f1", "face detection F1"), Metric("people_f1", "people detection F1")],
    "audio": [Metric("mel_distance", "mel distance", False), Metric("stft_distance", "MR-STFT distance", False),
              Metric("si_sdr", "SI-SDR (dB)"), Metric("pesq_wb", "PESQ-WB"), Metric("stoi", "STOI"),
              Metric("visqol", "ViSQOL MOS-LQO"), Metric("visqol_audio_mode", "ViSQOL (audio mode, on speech)"),
              Metric("wer_vs_original", "ASR WER vs original", False)],
    "video": [Metric("psnr", "PSNR RGB (dB)"), Metric("ms_ssim", "MS-SSIM"), Metric("vmaf", "VMAF")],
}


def _mean(values: list) -> float:
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def aggregate(rows: list[dict], modality: str) -> dict[str, list[dict]]:
    """codec -> RD points (mean over files of rate, metrics and times), sorted by rate."""
    rate_key = RATE[modality][0]
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        if not row.get("error"):
            groups.setdefault((row["codec"], row["setting"]), []).append(row)
    curves: dict[str, list[dict]] = {}
    keys = [rate_key, "encode_s", "decode_s", "bytes"] + [m.key for m in METRICS[modality]]
    for (codec, setting), group in groups.items():
        point = {"setting": setting, "files": len(group)}
        point.update({k: _mean([r.get(k) for r in group]) for k in keys})
        curves.setdefault(codec, []).append(point)
    for points in curves.values():
        points.sort(key=lambda p: p[rate_key])
    return curves


def present_metrics(curves: dict[str, list[dict]], modality: str) -> list[Metric]:
    return [m for m in METRICS[modality]
            if any(math.isfinite(p.get(m.key, math.nan)) for pts in curves.values() for p in pts)]


def bd_rates(curves: dict[str, list[dict]], modality: str, anchor: str) -> list[dict]:
    """BD-rate (%) of every codec against ``anchor`` on each metric; None where the curves do not overlap."""
    from ..metrics.bd import bd_rate

    rate_key = RATE[modality][0]
    table = []
    for codec in sorted(c for c in curves if c != anchor):
        entry = {"codec": codec}
        for metric in present_metrics(curves, modality):
            try:
                entry[metric.key] = bd_rate(*_curve(curves[anchor], rate_key, metric),
                                            *_curve(curves[codec], rate_key, metric))
            except (ValueError, ZeroDivisionError):
                entry[metric.key] = None
        table.append(entry)
    return table


def _curve(points: list[dict], rate_key: str, metric: Metric) -> tuple[list[float], list[float]]:
    """(rates, qualities) with lower-is-better metrics negated, so quality rises with rate.

    Only the points that improve on every cheaper point are kept (the efficient frontier): settings a codec
    caps (MP3 at low sample rates) or that buy nothing would otherwise make the curve non-monotone and
    the BD-rate undefined.
    """
    sign = 1 if metric.higher_is_better else -1
    pts = sorted((p[rate_key], sign * p[metric.key]) for p in points
                 if math.isfinite(p[rate_key]) and math.isfinite(p.get(metric.key, math.nan)))
    frontier: list[tuple[float, float]] = []
    for rate, quality in pts:
        if not frontier or (rate > frontier[-1][0] and quality > frontier[-1][1]):
            frontier.append((rate, quality))
    return [r for r, _ in frontier], [q for _, q in frontier]


def plot_png(curves: dict[str, list[dict]], modality: str, metric: Metric) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rate_key, rate_label = RATE[modality]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for codec, points in sorted(curves.items()):
        pts = [(p[rate_key], p[metric.key]) for p in points if math.isfinite(p.get(metric.key, math.nan))]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=codec)
    ax.set_xlabel(rate_label)
    ax.set_ylabel(metric.label)
    ax.set_title(f"{metric.label} vs rate")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def environment() -> dict[str, str]:
    import os

    import av
    import numpy
    import PIL
    import torch

    from .. import __version__

    return {"polycodec": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "pillow": PIL.__version__, "pyav": av.__version__,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def _fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


@dataclass
class Tables:
    """The report's content, independent of its format."""

    title: str
    info: dict[str, str]
    notes: list[str]
    bd_header: list[str]
    bd_rows: list[list[str]]
    summary_header: list[str]
    summary_rows: list[list[str]]
    file_header: list[str]
    file_rows: list[list[str]]
    plots: list[tuple[str, str, bytes]]  # (title, file name, png)


def build_tables(rows: list[dict], modality: str, anchor: str | None, notes: list[str]) -> Tables:
    curves = aggregate(rows, modality)
    metrics = present_metrics(curves, modality)
    rate_key = RATE[modality][0]
    errors = [r for r in rows if r.get("error")]
    notes = list(notes)
    if errors:
        notes.append(f"{len(errors)} measurements failed (first: {errors[0]['codec']} on {errors[0]['file']}: "
                     f"{errors[0]['error']}); they are excluded from the means.")
    if anchor is None or anchor not in curves:
        anchor = sorted(curves)[0] if curves else None
    bd = bd_rates(curves, modality, anchor) if anchor else []
    bd_header = ["codec"] + [f"BD-rate {m.label}" for m in metrics]
    bd_rows = [[e["codec"]] + [("–" if e.get(m.key) is None else f"{e[m.key]:+.1f} %") for m in metrics] for e in bd]
    summary_header = ["codec", "setting", "files", rate_key] + [m.key for m in metrics] + ["encode s", "decode s"]
    summary_rows = [[codec, p["setting"], str(p["files"]), _fmt(p[rate_key])] + [_fmt(p.get(m.key)) for m in metrics]
                    + [_fmt(p["encode_s"], 3), _fmt(p["decode_s"], 3)]
                    for codec in sorted(curves) for p in curves[codec]]
    file_header = ["file", "codec", "setting", "bytes", rate_key] + [m.key for m in metrics[:3]]
    file_rows = [[r["file"], r["codec"], r["setting"], str(r.get("bytes", "–")), _fmt(r.get(rate_key))]
                 + [_fmt(r.get(m.key)) for m in metrics[:3]]
                 for r in sorted(rows, key=lambda r: (r["file"], r["codec"], r.get(rate_key) or 0))]
    plots = [(m.label, f"rd_{m.key}.png", plot_png(curves, modality, m)) for m in metrics]
    title = f"polycodec rate-distortion report: {modality}"
    info = environment() | {"anchor for BD-rates": anchor or "–", "files": str(len({r['file'] for r in rows}))}
    return Tables(title, info, notes, bd_header, bd_rows, summary_header, summary_rows, file_header, file_rows, plots)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows])


def render_markdown(t: Tables) -> str:
    parts = [f"# {t.title}", "", "\n".join(f"- **{k}**: {v}" for k, v in t.info.items()), ""]
    if t.notes:
        parts += ["## Notes", "", "\n".join(f"- {n}" for n in t.notes), ""]
    parts += ["## BD-rate against the anchor", "",
              "Negative: fewer bits than the anchor for the same quality (mean RD curves, piecewise cubic "
              "interpolation in log rate, over each curve's efficient points: a setting that buys no quality over "
              "a cheaper one is left out). – where the curves do not overlap, so no BD-rate is defined.", "", _md_table(t.bd_header, t.bd_rows), ""]
    parts += ["## Rate-distortion curves", ""] + [f"![{title}](plots/{name})" for title, name, _ in t.plots] + [""]
    parts += ["## Mean over files, per codec and setting", "", _md_table(t.summary_header, t.summary_rows), ""]
    parts += ["## Per file", "", _md_table(t.file_header, t.file_rows), ""]
    return "\n".join(parts)


def _html_table(header: list[str], rows: list[list[str]], css: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.plots img{width:48%;margin:.5%}
.notes li{color:#8a4b00}"""

# Marks the page once every plot has decoded, so a headless browser test can tell a broken image.
_LOADED_SCRIPT = """<script>window.addEventListener('load',()=>{const i=[...document.images];
document.body.dataset.plotsLoaded=i.filter(x=>x.complete&&x.naturalWidth>0).length+'/'+i.length;});</script>"""


def render_html(t: Tables) -> str:
    info = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in t.info.items())
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in t.notes)
    plots = "".join(f'<img alt="{html.escape(title)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
                    for title, _, png in t.plots)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(t.title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(t.title)}</h1><ul>{info}</ul>"
            + (f"<h2>Notes</h2><ul class='notes'>{notes}</ul>" if notes else "")
            + "<h2>BD-rate against the anchor</h2><p>Negative: fewer bits than the anchor for the same quality (mean RD curves, piecewise cubic "
            "interpolation in log rate, over each curve's efficient points). – where the curves do not overlap.</p>"
            + _html_table(t.bd_header, t.bd_rows, "bd")
            + f"<h2>Rate-distortion curves</h2><div class='plots'>{plots}</div>"
            + "<h2>Mean over files, per codec and setting</h2>" + _html_table(t.summary_header, t.summary_rows, "summary")
            + "<details><summary><h2 style='display:inline'>Per file</h2></summary>"
            + _html_table(t.file_header, t.file_rows, "files") + "</details>"
            + _LOADED_SCRIPT + "</body></html>")


def write_report(rows: list[dict], modality: str, out_dir: Path, anchor: str | None = None,
                 notes: list[str] | None = None) -> Tables:
    """Write report.md, report.html, plots/*.png, results.csv and results.json into ``out_dir``."""
    tables = build_tables(rows, modality, anchor, notes or [])
    for _, name, png in tables.plots:
        write_atomic(out_dir / "plots" / name, png, force=True)
    write_atomic(out_dir / "report.md", render_markdown(tables).encode(), force=True)
    write_atomic(out_dir / "report.html", render_html(tables).encode(), force=True)
    write_atomic(out_dir / "results.json", json.dumps(rows, indent=1, allow_nan=True).encode(), force=True)
    columns = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("file", "codec", "setting"), k))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(out_dir / "results.csv", buffer.getvalue().encode(), force=True)
    return tables
