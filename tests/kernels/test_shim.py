"""The CUDA emulation shim: real shared memory, real barriers, grid-stride loops, atomics, misuse.

The self-test kernels (kernels/emulation/selftest/) are ordinary CUDA; they are compiled by g++
under cuda_shim.h and launched through ctypes, exactly as the rasterizer's emulated backend is.
"""

from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from huma_rt.kernels.emulation.build import build_emulated

from huma_rt.errors import BackendError, InputError

SELFTEST = Path(__file__).resolve().parents[2] / "kernels" / "emulation" / "selftest"
P = np.ctypeslib.ndpointer


@pytest.fixture(scope="module")
def lib_path(tmp_path_factory) -> Path:
    return build_emulated([SELFTEST / "selftest_host.cpp"], tmp_path_factory.mktemp("emu"),
                          name="selftest")


@pytest.fixture(scope="module")
def lib(lib_path):
    return ctypes.CDLL(str(lib_path))


def _ptr(a: np.ndarray):
    return a.ctypes.data_as(ctypes.c_void_p)


def test_block_reduction_with_many_barriers(lib):
    rng = np.random.default_rng()
    n = 256 * 37 + 19  # a partial last block
    x = rng.uniform(-1, 1, n).astype(np.float32)
    blocks = (n + 255) // 256
    partial = np.full(blocks, np.nan, np.float32)
    total = np.zeros(1, np.float32)
    lib.st_run_block_reduce(_ptr(x), ctypes.c_int(n), _ptr(partial), _ptr(total))
    padded = np.zeros(blocks * 256, np.float64)
    padded[:n] = x
    expect = padded.reshape(blocks, 256).sum(axis=1)
    np.testing.assert_allclose(partial, expect, rtol=0, atol=1e-4)
    np.testing.assert_allclose(total[0], x.astype(np.float64).sum(), rtol=0, atol=1e-3)


def test_result_depends_on_the_barrier(lib):
    blocks = 8
    x = np.random.default_rng().integers(1, 1 << 30, blocks * 256).astype(np.int32)
    good = np.full_like(x, -7)
    lib.st_run_reverse(_ptr(x), _ptr(good), ctypes.c_int(blocks), ctypes.c_int(1))
    np.testing.assert_array_equal(good, x.reshape(blocks, 256)[:, ::-1].ravel())
    # Without the barrier, early threads read slots later threads have not written yet.
    bad = np.full_like(x, -7)
    lib.st_run_reverse(_ptr(x), _ptr(bad), ctypes.c_int(blocks), ctypes.c_int(0))
    assert not np.array_equal(bad, good)


@pytest.mark.parametrize("blocks,threads", [(3, 64), (1, 1), (5, 96)])
def test_grid_stride_loop(lib, blocks, threads):
    rng = np.random.default_rng()
    n = 10007
    x = rng.standard_normal(n).astype(np.float32)
    y = rng.standard_normal(n).astype(np.float32)
    expect = np.float32(2.5) * x + y
    lib.st_run_saxpy(ctypes.c_int(n), ctypes.c_float(2.5), _ptr(x), _ptr(y), ctypes.c_int(blocks),
                     ctypes.c_int(threads))
    np.testing.assert_array_equal(y, expect)


def test_atomics_across_blocks(lib):
    rng = np.random.default_rng()
    n, nbins = 5000, 17
    vals = rng.integers(0, 1_000_000, n).astype(np.int32)
    hist = np.zeros(nbins, np.int32)
    vmax = np.array([-1], np.int32)
    vmin = np.array([np.iinfo(np.int32).max], np.int32)
    claim = np.full(nbins, -1, np.int32)
    sum64 = np.zeros(1, np.uint64)
    lib.st_run_atomics(_ptr(vals), ctypes.c_int(n), _ptr(hist), ctypes.c_int(nbins), _ptr(vmax),
                       _ptr(vmin), _ptr(claim), _ptr(sum64))
    np.testing.assert_array_equal(hist, np.bincount(vals % nbins, minlength=nbins))
    assert vmax[0] == vals.max() and vmin[0] == vals.min()
    assert int(sum64[0]) == int(vals.astype(np.int64).sum())
    for b in range(nbins):  # each slot claimed exactly once, by a value of that bin
        assert claim[b] >= 0 and vals[claim[b]] % nbins == b


def test_vote_barriers_and_3d_indices(lib):
    grid, block = (3, 2, 2), (4, 8, 2)
    nb, nt = int(np.prod(grid)), int(np.prod(block))
    flags = (np.random.default_rng().random(nb * nt) < 0.3).astype(np.int32)
    flags[:nt] = 1  # one block all true, one all false: covers _and and _or edges
    flags[nt:2 * nt] = 0
    counts = np.full(3 * nb, -1, np.int32)
    ids = np.full(nb * nt, -1, np.int32)
    lib.st_run_vote_and_index(_ptr(flags), _ptr(counts), _ptr(ids), *grid, *block)
    f = flags.reshape(nb, nt)
    np.testing.assert_array_equal(counts[0::3], f.sum(1))
    np.testing.assert_array_equal(counts[1::3], f.any(1))
    np.testing.assert_array_equal(counts[2::3], f.all(1))
    expect = (np.arange(nb)[:, None] * 100000 + np.arange(nt)[None, :]).ravel()
    np.testing.assert_array_equal(ids, expect)


def _run_misuse(lib_path: Path, fn: str) -> subprocess.CompletedProcess:
    # The shim aborts the process on misuse (as a GPU would be undefined): run it in a child.
    code = (f"import ctypes, numpy as np; lib = ctypes.CDLL({str(lib_path)!r}); "
            f"out = np.zeros(64, np.int32); lib.{fn}(out.ctypes.data_as(ctypes.c_void_p))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_thread_exit_while_others_wait_aborts(lib_path):
    proc = _run_misuse(lib_path, "st_run_exit_before_barrier")
    assert proc.returncode != 0
    assert "barrier misuse" in proc.stderr and "exited while 63 wait" in proc.stderr


def test_divergent_barrier_sites_abort(lib_path):
    proc = _run_misuse(lib_path, "st_run_divergent_barrier")
    assert proc.returncode != 0
    assert "barrier misuse" in proc.stderr and "selftest.cu" in proc.stderr


def test_build_is_cached_and_errors_are_clear(lib_path, tmp_path):
    again = build_emulated([SELFTEST / "selftest_host.cpp"], lib_path.parent.parent, name="selftest")
    assert again == lib_path
    with pytest.raises(InputError, match="does not exist"):
        build_emulated([tmp_path / "missing.cu"], tmp_path)
    bad = tmp_path / "bad.cu"
    bad.write_text("__global__ void k(int *p) { p[threadIdx.x] = undeclared; }\n")
    with pytest.raises(BackendError, match="undeclared"):
        build_emulated([bad], tmp_path)
