"""The CPU backend's baseline x86-64 forms (what a CPU without AVX2 + FMA runs: target_clones'
"default" and the blend without FMA) are never picked on the AVX2 machines the tests run on, so
this builds the library with -DHR_BASELINE_ISA, which compiles those forms only, and renders
with it. Its projection has no fused operation, so it equals the AVX2 build bit for bit; its
blend's exp rounds without FMA, so images agree within float rounding."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from huma_rt.kernels import cpu as kcpu
from huma_rt.kernels import cpu_backend_available
from huma_rt.kernels.build_ext import cpu_library_command
from test_oracle_raster import random_scene

from huma_rt.render import rasterize
from huma_rt.render._cpu import CpuStages

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.skipif(not cpu_backend_available(), reason="CPU extension not built"),
    pytest.mark.skipif(shutil.which("g++") is None, reason="building the library needs g++"),
]


@pytest.fixture(scope="module")
def baseline_library(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("baseline") / "raster_cpu_baseline.so"
    subprocess.run(cpu_library_command(ROOT, out, ("HR_BASELINE_ISA",)), check=True,
                   capture_output=True)
    # no 256-bit register outside the AVX2 blend it builds but never calls
    asm = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(out)], check=True,
                         capture_output=True, text=True).stdout
    functions = asm.split("\n\n")
    project = [f for f in functions if "hr_cpu_project_impl" in f.splitlines()[0]]
    assert project and not any("ymm" in f for f in project)
    return out


@pytest.fixture
def use_library(monkeypatch):
    def use(path: Path | None):
        if path is not None:
            monkeypatch.setattr(kcpu, "library_path", lambda: path)
        else:
            monkeypatch.undo()
        kcpu.load_library.cache_clear()
    yield use
    monkeypatch.undo()
    kcpu.load_library.cache_clear()


@pytest.mark.parametrize("seed,n,degree,dense", [(71, 2003, 3, False), (72, 1501, 1, True)])
def test_baseline_build_renders_like_the_avx2_build(baseline_library, use_library, seed, n,
                                                    degree, dense):
    g, cam = random_scene(seed, n, 120, 88, degree, dense=dense)
    bg = np.array([0.3, 0.2, 0.1], np.float32)
    outs = []
    for path in (None, baseline_library):
        use_library(path)
        stages = CpuStages(cam, n)
        stages.project(g.means, g.quats, g.log_scales, g.opacity_logits, g.sh,
                       g.scale_activation)
        image = rasterize(g, cam, background=bg, return_depth=True,
                          out=np.full((cam.height, cam.width, 3), np.nan, np.float32))
        outs.append((stages.proj.copy(), stages.colors.copy(), image))
    (proj, colors, avx2), (proj_b, colors_b, base) = outs
    assert proj.tobytes() == proj_b.tobytes() and colors.tobytes() == colors_b.tobytes()
    assert avx2.alpha.max() > 0.5
    np.testing.assert_allclose(base.rgb, avx2.rgb, atol=2e-6)
    np.testing.assert_allclose(base.alpha, avx2.alpha, atol=2e-6)
    np.testing.assert_allclose(base.depth, avx2.depth, rtol=1e-5, atol=2e-6)
