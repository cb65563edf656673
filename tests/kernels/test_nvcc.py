"""Every kernels/*.cu compiles with nvcc for sm_75/80/86/89/90 without an error or a warning."""

from __future__ import annotations

import pytest
from huma_rt.bench.ptxas_report import NVCC, compile_cu, kernel_sources, parse_ptxas

pytestmark = pytest.mark.skipif(not NVCC.exists(), reason=f"nvcc not at {NVCC}")

SOURCES = kernel_sources()


def test_there_are_kernels():
    assert any(s.name == "raster.cu" for s in SOURCES), SOURCES


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.name)
def test_compiles_without_warnings(source):
    res = compile_cu(source)
    assert res.returncode == 0, f"nvcc failed ({' '.join(res.command)}):\n{res.output}"
    # -Werror all-warnings covers the front end; ptxas/host-compiler text is checked by hand.
    bad = [ln for ln in res.output.splitlines() if "warning" in ln.lower() or "error" in ln.lower()]
    assert not bad, "\n".join(bad)
    rows = parse_ptxas(res.output)
    archs = {r["arch"] for r in rows}
    assert archs == {"sm_75", "sm_80", "sm_86", "sm_89", "sm_90"}, archs
    assert all(r["registers"] for r in rows), rows


def test_a_warning_fails(tmp_path):
    # The check can fail: a set-but-unused variable is a warning that nvcc must turn into an error.
    src = tmp_path / "warn.cu"
    src.write_text("extern \"C\" __global__ void k(float *x) { int unused = 1; x[0] = 1.f; }\n")
    res = compile_cu(src, ("75",))
    assert res.returncode != 0 and "unused" in res.output
