"""The runtime scenario refuses a GPU run on a machine without one before doing any work, so the
suite lists it as skipped (DeviceError) instead of failing in the fresh preload process."""

from __future__ import annotations

import pytest
from huma_rt.bench import runtime

from huma_rt._optional import has_cuda
from huma_rt.errors import DeviceError


@pytest.mark.skipif(has_cuda(), reason="checks the refusal on a machine without a GPU")
def test_cuda_without_a_gpu_is_a_device_error_before_any_work(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(DeviceError, match="needs a CUDA GPU"):
        runtime.run(True, out, device="cuda")
    assert not out.exists()


def test_quick_mode_shares_the_audio_out_among_sessions():
    assert [runtime.session_seconds(True, 3.0, k) for k in runtime.SESSIONS] == [3.0, 1.5, 1.0, 1.0]
    assert {runtime.session_seconds(False, 20.0, k) for k in runtime.SESSIONS} == {20.0}
    assert runtime.SESSIONS[0] == 1 and runtime.SESSIONS[-1] == 8
