"""The raster scenario's plan: quick mode measures every case at fewer points, never fewer cases.

Runs the real scenario on scaled-down head scenes (1/50 of the Gaussians, 1/8 of the pixels)
so both modes take a second or two; the plan, not the numbers, is under test.
"""

from __future__ import annotations

import json

import pytest
from huma_rt.bench import raster

FAMILIES = {"head", "stage", "count", "res", "region", "reference"}


@pytest.fixture
def tiny_scenes(monkeypatch):
    scene, camera = raster.head_scene, raster.head_camera
    monkeypatch.setattr(raster, "head_scene", lambda n, **kw: scene(n // 50, **kw))
    monkeypatch.setattr(raster, "head_camera", lambda size: camera(size // 8))


def _rows(tmp_path, quick: bool) -> list[dict]:
    raster.run(quick, tmp_path)
    return json.loads((tmp_path / "raster.json").read_text())["results"]


def test_quick_keeps_every_case_at_the_curves_end_points(tiny_scenes, tmp_path):
    quick, full = _rows(tmp_path / "quick", True), _rows(tmp_path / "full", False)
    for rows in (quick, full):
        assert {r["case"] for r in rows} == FAMILIES
        assert [r["mode"] for r in rows if r["case"] == "stage"] == ["project", "bin+sort", "blend", "composite"]
        ref = next(r for r in rows if r["case"] == "reference")
        assert ref["reference_p50_ms"] > 0 and ref["ratio"] > 0
    counts = {m: [r["gaussians"] for r in rows if r["case"] == "count"] for m, rows in (("q", quick), ("f", full))}
    sizes = {m: [r["size"] for r in rows if r["case"] == "res"] for m, rows in (("q", quick), ("f", full))}
    assert counts["f"] == list(raster.COUNTS) and counts["q"] == [raster.COUNTS[0], raster.COUNTS[-1]]
    assert len(sizes["f"]) == len(raster.RESOLUTIONS) and sizes["q"] == [sizes["f"][0], sizes["f"][-1]]
    for rows, p in ((quick, raster.plan(True)), (full, raster.plan(False))):
        head = next(r for r in rows if r["case"] == "head")
        assert head["n"] == p.head_repeat > p.repeat  # the target's case: the longest series
        assert all(r["n"] == p.repeat for r in rows if r["case"] not in ("head", "reference"))
    assert next(r for r in full if r["case"] == "reference")["n"] == raster.plan(False).head_repeat


def test_quick_plan_compares_the_reference_on_a_smaller_frame_and_says_so(tiny_scenes, tmp_path):
    q, f = raster.plan(True), raster.plan(False)
    assert q.repeat < f.repeat and q.reference_repeat < f.reference_repeat
    assert f.reference_size == raster.HEAD_SIZE and q.reference_size in raster.RESOLUTIONS
    assert q.reference_size < f.reference_size
    ref = next(r for r in _rows(tmp_path, True) if r["case"] == "reference")
    assert ref["reference_n"] == q.reference_repeat and "quick mode: compared at" in ref["note"]
