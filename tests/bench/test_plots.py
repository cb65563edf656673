"""Plots drawn from sample result JSON in the shapes the scenario modules write."""

from __future__ import annotations

import json

from huma_rt.bench.plots import curves, draw_all, full_vs_dynamic, load_results

PNG = b"\x89PNG\r\n\x1a\n"


def _write(folder, scenario, rows):
    (folder / f"{scenario}.json").write_text(json.dumps({"scenario": scenario, "machine": {}, "results": rows}))


def _sample(folder):
    raster = [{"backend": b, "gaussians": n, "resolution": 512, "p50_ms": n / s}
              for b, s in (("cpu", 5000.0), ("gsplat-torch", 50.0)) for n in (10_000, 50_000, 200_000)]
    raster += [{"backend": "cpu", "gaussians": 50_000, "resolution": r, "p50_ms": r * 10 / 512} for r in (256, 512, 1024)]
    raster += [{"backend": "cpu", "mode": "full frame", "gaussians": 50_000, "p50_ms": 12.0},
               {"backend": "cpu", "mode": "dynamic region (mouth)", "gaussians": 50_000, "p50_ms": 3.0}]
    _write(folder, "raster", raster)
    # bench/raster.py's shape: "size" as a "WxH" string, the dynamic case named in backend/scenario
    _write(folder, "raster2", [{"scenario": "resolution", "backend": "cpu", "gaussians": 50_000, "size": f"{r}x{r}",
                                "p50_ms": r / 64} for r in (256, 512)]
           + [{"scenario": "dynamic", "backend": "cpu FrameRenderer (mouth box)", "gaussians": 20_000, "size": "256x256", "p50_ms": 2.0},
              {"scenario": "dynamic", "backend": "cpu full frame", "gaussians": 20_000, "size": "256x256", "p50_ms": 4.0}])
    _write(folder, "speech", [{"scenario": "full_chain", "milestone": "vad_end", "p50_ms": 270.0}])
    _write(folder, "triton", [{"part": "sessions", "backend": "onnxruntime", "sessions": s, "gaussians": 10_000,
                               "fps_total": 90.0, "frame_p50_ms": 10.0 * s} for s in (1, 4, 8)])
    _write(folder, "runtime", [{"scenario": "preload (fresh process)", "bundle_to_first_frame_ms": 900.0}]
           + [{"scenario": f"sessions={k}", "frames": 75 * k, "frame_p50_ms": 20.0 * k, "render_p50_ms": 15.0 * k}
              for k in (1, 4)])
    _write(folder, "engines", [{"model": "deformer", "size": n, "ort_p50_ms": 1.0, "torch_fp32_p50_ms": 2.0}
                               for n in (10_000, 50_000)])  # "size" is N there, not a resolution
    (folder / "summary.json").write_text("{}")
    (folder / "broken.json").write_text("{not json")


def test_curves_group_series_by_backend_and_other_axes(tmp_path):
    _sample(tmp_path)
    results = load_results(tmp_path)
    assert set(results) == {"raster", "raster2", "speech", "triton", "runtime", "engines"}
    by_count = curves(results, "gaussians")
    assert by_count["raster / cpu / resolution=512"] == [(10_000, 2.0), (50_000, 10.0), (200_000, 40.0)]
    assert by_count["raster / gsplat-torch / resolution=512"][-1] == (200_000, 4000.0)
    by_res = curves(results, "resolution")
    assert by_res == {"raster / cpu / gaussians=50000": [(256, 5.0), (512, 10.0), (1024, 20.0)],
                      "raster2 / cpu / gaussians=50000": [(256, 4.0), (512, 8.0)]}
    by_sessions = curves(results, "sessions")
    assert by_sessions["triton / onnxruntime / gaussians=10000"] == [(1, 10.0), (4, 40.0), (8, 80.0)]
    assert by_sessions["runtime"] == [(1, 20.0), (4, 80.0)]
    bars = dict(full_vs_dynamic(results))
    assert bars == {"raster / full frame / 50000 / cpu": 12.0, "raster / dynamic region (mouth) / 50000 / cpu": 3.0,
                    "raster2 / dynamic / 20000 / cpu FrameRenderer (mouth box)": 2.0,
                    "raster2 / cpu full frame / 20000 / cpu full frame": 4.0}


def test_draw_all_writes_every_plot_it_has_data_for(tmp_path):
    _sample(tmp_path)
    paths = draw_all(tmp_path)
    names = sorted(p.name for p in paths)
    assert names == ["full_vs_dynamic.png", "scaling_gaussians.png", "scaling_resolution.png", "scaling_sessions.png"]
    for p in paths:
        data = p.read_bytes()
        assert data[:8] == PNG and len(data) > 5000


def test_missing_scenarios_are_tolerated(tmp_path):
    assert draw_all(tmp_path) == []
    _write(tmp_path, "engines", [{"model": "encoder", "ort_p50_ms": 1.0}])
    assert draw_all(tmp_path) == []
