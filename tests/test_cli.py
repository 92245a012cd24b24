"""The command line, run as a user would: a subprocess on real files."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

CLI = [sys.executable, "-m", "polycodec"]


def run(*args, cwd):
    return subprocess.run([*CLI, *map(str, args)], cwd=cwd, capture_output=True, text=True)


def test_help_and_list(tmp_path):
    out = run("--help", cwd=tmp_path)
    assert out.returncode == 0 and "encode" in out.stdout and "info" in out.stdout
    out = run("list", "--json", cwd=tmp_path)
    entries = {e["name"]: e for e in json.loads(out.stdout)}
    assert entries["tensor"]["modality"] == "tensor" and entries["jpeg"]["modality"] == "image"


def test_encode_info_decode_and_safety(tmp_path):
    x = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert run("encode", "x.npy", "x.pcdc", "--step", "0.1", cwd=tmp_path).returncode == 0
    info = json.loads(run("info", "x.pcdc", cwd=tmp_path).stdout)
    assert info["codec"] == "tensor" and info["media"]["channels"] == 8 and info["chunks"] == 2
    assert run("decode", "x.pcdc", "y.npy", cwd=tmp_path).returncode == 0
    assert np.abs(np.load(tmp_path / "y.npy") - x).max() <= 0.05 + 1e-6
    # An existing output needs --force; an input is never overwritten, even with --force.
    again = run("decode", "x.pcdc", "y.npy", cwd=tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr
    before = (tmp_path / "x.npy").read_bytes()
    clobber = run("encode", "x.npy", "x.npy", "--force", cwd=tmp_path)
    assert clobber.returncode == 2 and (tmp_path / "x.npy").read_bytes() == before


def test_batch_mode_writes_one_output_per_input(tmp_path):
    for name in "abc":
        np.save(tmp_path / f"{name}.npy", np.ones((4, 4), dtype=np.float32))
    assert run("encode", "a.npy", "b.npy", "c.npy", "--out-dir", "out", cwd=tmp_path).returncode == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.pcdc", "b.pcdc", "c.pcdc"]


@pytest.mark.parametrize("content", [b"", b"garbage that is not a stream", b"\x89PCDC\r\n\x1a\x01"])
def test_bad_files_get_clear_errors_and_no_output(tmp_path, content):
    (tmp_path / "bad.pcdc").write_bytes(content)
    out = run("decode", "bad.pcdc", "out.npy", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.startswith("polycodec decode: error:")
    assert not (tmp_path / "out.npy").exists()
    assert not [p for p in Path(tmp_path).iterdir() if p.name.endswith(".part")]
