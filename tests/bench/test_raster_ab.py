"""The rasterizer A/B tool builds a git revision's CPU library and times it frame by frame
against the installed build on one scene (small here: the tool, not the numbers, is tested)."""

from __future__ import annotations

import shutil

import pytest
from huma_rt.bench import raster_ab
from huma_rt.kernels import cpu_backend_available
from huma_rt.kernels.cpu import library_path

from huma_rt.errors import InputError

pytestmark = [
    pytest.mark.skipif(not cpu_backend_available(), reason="CPU extension not built"),
    pytest.mark.skipif(shutil.which("g++") is None or shutil.which("git") is None
                       or not (raster_ab.REPO / ".git").exists(),
                       reason="building a revision needs g++, git and the checkout"),
]


def test_head_revision_against_the_installed_build(tmp_path):
    lib = raster_ab.build_revision("HEAD", tmp_path)
    rows = raster_ab.compare({"base HEAD": lib, "installed": library_path()}, 3,
                             gaussians=2000, size=96, warmup=1)
    assert [r["side"] for r in rows] == ["base HEAD", "installed"]
    assert all(r["n"] == 3 and r["p50_ms"] > 0 for r in rows)
    assert rows[1]["p50_ratio"] == pytest.approx(rows[1]["p50_ms"] / rows[0]["p50_ms"])
    # the same scene through the committed and the installed kernels
    assert rows[1]["max_abs_diff"] <= 2e-6


def test_a_revision_without_the_sources_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no kernels/raster_math.cuh"):
        raster_ab.build_revision("HEAD~1000000", tmp_path)
    with pytest.raises(InputError, match="frames must be >= 1"):
        raster_ab.compare({"x": library_path()}, 0)
