"""The CUDA path: NVRTC compiles the kernels here (no GPU needed); without a GPU the 'cuda' and
'gsplat' backends refuse with DeviceError; with one, 'cuda' equals the CPU backend."""

from __future__ import annotations

import numpy as np
import pytest
from _render_scenes import blob_scene, needs_cpu

from huma_rt._optional import has_cuda, has_module
from huma_rt.errors import DeviceError, InputError
from huma_rt.render import Renderer, rasterize

KERNELS = ("hr_project_kernel", "hr_count_kernel", "hr_scan_kernel", "hr_emit_kernel",
           "hr_sort_kernel", "hr_blend_kernel", "hr_composite_kernel")


@pytest.mark.skipif(not has_module("cupy"), reason="cupy (the 'cuda' extra) is not installed")
@pytest.mark.parametrize("arch", ["compute_75", "compute_90"])
def test_nvrtc_compiles_every_kernel(arch):
    from huma_rt.kernels.cupy_backend import KERNEL_NAMES, compile_ptx

    ptx = compile_ptx(arch)
    assert set(KERNEL_NAMES) == set(KERNELS)
    for name in KERNELS:
        assert f".entry {name}(" in ptx, f"{name} missing from the PTX"


@pytest.mark.skipif(has_cuda(), reason="checks the refusal on machines without a GPU")
@pytest.mark.parametrize("backend", ["cuda", "gsplat"])
def test_gpu_backends_refuse_without_gpu(scene, backend):
    g, cam = scene
    with pytest.raises(DeviceError, match="CUDA GPU"):
        rasterize(g, cam, backend=backend)


def test_unknown_backend_is_named(scene):
    g, cam = scene
    with pytest.raises(InputError, match=r"backend must be one of .*'tpu'"):
        rasterize(g, cam, backend="tpu")


@pytest.mark.gpu
@needs_cpu
@pytest.mark.parametrize("degree", [0, 3])
def test_cuda_equals_cpu(degree):
    g, cam = blob_scene(21, n=3000, width=200, height=152, degree=degree)
    bg = np.random.default_rng(1).uniform(0, 1, (cam.height, cam.width, 3)).astype(np.float32)
    want = rasterize(g, cam, background=bg, return_depth=True)
    r = Renderer(cam, backend="cuda")
    for _ in range(2):  # the second call reuses every buffer
        got = r.render(g, background=bg, return_depth=True)
    # __expf vs the CPU's polynomial exp: a few ulp per Gaussian
    np.testing.assert_allclose(got.rgb, want.rgb, atol=1e-4)
    np.testing.assert_allclose(got.alpha, want.alpha, atol=1e-4)
    np.testing.assert_allclose(got.depth, want.depth, rtol=1e-4, atol=1e-4)
