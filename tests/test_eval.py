"""`polycodec eval` end to end on tiny synthetic folders, resuming, and the HTML report in a real browser."""

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from polycodec.media import write_image, write_video

CLI = [sys.executable, "-m", "polycodec"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def smooth_image(h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    phase = torch.rand(3, 1, 1, generator=g) * 6
    return (0.5 + 0.4 * torch.sin(6 * xx + 4 * yy + phase)).clamp(0, 1)


def eval_cli(*args, cwd):
    return subprocess.run([*CLI, "eval", *map(str, args)], cwd=cwd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def image_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    (root / "data").mkdir()
    for i in range(2):
        write_image(smooth_image(96, 128, i), root / "data" / f"img{i}.png")
    (root / "data" / "notes.txt").write_text("not media")
    out = eval_cli("data", "--codecs", "polycodec,jpeg,webp", "--anchor", "jpeg", "--out", "report", cwd=root)
    assert out.returncode == 0, out.stderr
    return root, out


def test_image_report_files_and_contents(image_report):
    root, out = image_report
    report = root / "report"
    for name in ("report.md", "report.html", "results.csv", "results.json", "results.jsonl", "plots/rd_psnr.png"):
        assert (report / name).is_file(), name
    rows = json.loads((report / "results.json").read_text())
    assert {r["codec"] for r in rows} == {"image", "jpeg", "webp"}  # "polycodec" = the learned image codec
    assert not [r for r in rows if r.get("error")]
    assert all(r["bpp"] > 0 and r["psnr"] > 20 and 0 < r["ms_ssim"] <= 1 for r in rows)
    assert "top1_agreement" in rows[0] and "faces_f1" in rows[0]  # machine perception ran offline
    md = (report / "report.md").read_text()
    assert re.search(r"\| webp \| [+-]\d+\.\d %", md)  # a BD-rate against the jpeg anchor


def test_rerun_resumes_without_recomputing(image_report):
    root, _ = image_report
    before = (root / "report" / "results.jsonl").read_text().count("\n")
    out = eval_cli("data", "--codecs", "jpeg,webp", "--anchor", "jpeg", "--out", "report", cwd=root)
    assert out.returncode == 0 and "resumed" in out.stdout
    assert (root / "report" / "results.jsonl").read_text().count("\n") == before
    other = eval_cli("data", "--codecs", "jpeg", "--no-perception", "--out", "report", cwd=root)
    assert other.returncode == 2 and "other options (perception)" in other.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (make test installs it)")
def test_html_report_renders_in_headless_chromium(image_report, tmp_path):
    root, _ = image_report
    page = (root / "report" / "report.html").resolve().as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
             "--virtual-time-budget=5000"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120).stdout
    loaded = re.search(r'data-plots-loaded="(\d+)/(\d+)"', dom)
    assert loaded and loaded.group(1) == loaded.group(2) and int(loaded.group(1)) >= 2  # every plot decoded
    assert dom.count("<table") >= 3 and "BD-rate" in dom
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *flags, "--window-size=1100,1400", f"--screenshot={shot}", page],
                   capture_output=True, timeout=120)
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one


def test_audio_and_video_reports(tmp_path):
    (tmp_path / "audio").mkdir()
    t = np.arange(24000) / 24000
    sf.write(tmp_path / "audio" / "tone.wav", (0.3 * np.sin(2 * np.pi * 440 * t * (1 + t))).astype(np.float32), 24000)
    out = eval_cli("audio", "--codecs", "polycodec,opus", "--out", "ra", "--no-perception", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = json.loads((tmp_path / "ra" / "results.json").read_text())
    assert rows and all(r["kbps"] > 0 and math.isfinite(r["mel_distance"]) for r in rows)
    assert {r["codec"] for r in rows} == {"audio", "opus"}  # "polycodec" stands for the project's audio codec

    (tmp_path / "video").mkdir()
    frames = torch.stack([smooth_image(48, 64, i) for i in range(6)])
    write_video(frames, 12.0, tmp_path / "video" / "clip.mkv")
    out = eval_cli("video", "--codecs", "polycodec,x264", "--out", "rv", "--max-frames", "6", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "no video codec yet" in (tmp_path / "rv" / "report.md").read_text()  # says plainly what did not run
    rows = json.loads((tmp_path / "rv" / "results.json").read_text())
    assert rows and all(r["bpp"] > 0 and r["psnr"] > 20 for r in rows)


def test_mixed_or_empty_folders_give_clear_errors(tmp_path):
    (tmp_path / "mixed").mkdir()
    write_image(smooth_image(16, 16, 0), tmp_path / "mixed" / "a.png")
    sf.write(tmp_path / "mixed" / "b.wav", np.zeros(100, dtype=np.float32), 8000)
    out = eval_cli("mixed", "--codecs", "jpeg", cwd=tmp_path)
    assert out.returncode == 2 and "--modality" in out.stderr
    (tmp_path / "empty").mkdir()
    out = eval_cli("empty", "--codecs", "jpeg", cwd=tmp_path)
    assert out.returncode == 2 and "no media" in out.stderr
