"""The formats scenario reads back what it wrote, and times a git revision's reader beside ours."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from huma_rt.bench import formats


def test_ply_rows_for_current_and_a_base_revision(tmp_path):
    repo = Path(formats.__file__).resolve().parents[1]
    if subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True).returncode:
        pytest.skip("not a git checkout")
    rows = formats.bench_ply(tmp_path, 300, 1, "HEAD")
    assert [r["reader"] for r in rows] == ["current", "base HEAD"]
    assert all(r["gaussians"] == 300 and r["n"] == 1 and r["p50_ms"] > 0 for r in rows)


def test_audio_rows(tmp_path):
    pytest.importorskip("av")
    rows = formats.bench_audio(tmp_path, 1.0, 1)
    assert {r["reader"] for r in rows} == {"read_audio (decode)", "load_audio (decode + mono + 16 kHz)"}
