"""The backward kernels through CuPy: NVRTC compiles them here; on a GPU the CUDA backward
equals the CPU backend's (the same check as the emulated one, on the real device)."""

from __future__ import annotations

import numpy as np
import pytest
from huma_rt.kernels import cpu_backend_available
from test_cpu_reference import make_scene

from huma_rt._optional import has_module


@pytest.mark.skipif(not has_module("cupy"), reason="cupy (the 'cuda' extra) is not installed")
def test_nvrtc_compiles_the_backward_kernels():
    from huma_rt.kernels.cupy_backend import TRAIN_KERNEL_NAMES, compile_ptx

    ptx = compile_ptx("compute_75")
    for name in TRAIN_KERNEL_NAMES:
        assert f".entry {name}(" in ptx, f"{name} missing from the PTX"


@pytest.mark.gpu
@pytest.mark.skipif(not cpu_backend_available(), reason="CPU extension not built")
def test_cuda_backward_equals_cpu():
    from huma_rt.train.raster_cpu import CpuRasterizer
    from huma_rt.train.raster_device import DeviceRasterizer

    g, cam = make_scene(61, 2000, 160, 120, degree=3, dense=True)
    arrays = [g.means, g.quats, g.log_scales, g.opacity_logits, g.sh]
    rng = np.random.default_rng(61)
    v_rgb = rng.normal(size=(cam.height, cam.width, 3)).astype(np.float32)
    v_T = rng.normal(size=(cam.height, cam.width)).astype(np.float32)
    res = []
    for eng in (CpuRasterizer(cam, g.count), DeviceRasterizer(cam, g.count, "cupy")):
        rgb, T, saved = eng.forward(*arrays, "exp")
        res.append((rgb, T, eng.backward(saved, *arrays, "exp", v_rgb, v_T)))
    (rgb0, T0, g0), (rgb1, T1, g1) = res
    np.testing.assert_allclose(rgb1, rgb0, atol=1e-5)
    np.testing.assert_allclose(T1, T0, atol=1e-5)
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        a, b = getattr(g1, name), getattr(g0, name)
        assert np.abs(a - b).max() <= 1e-3 * np.abs(b).max(), name
