"""Fuzz the audio a caller hands the runtime: ``session.push_audio`` (a stream of pushes) and
``avatar.render`` with arbitrary arrays (every dtype kind, 0-d to 3-d, both stereo layouts,
NaN/Inf, huge and subnormal values, empty) and arbitrary sample rates (0, negative, huge, float,
bool, numpy scalars, strings), on the tiny test avatar (real networks, real CPU renderer).

The verdict: success or a HumaError, never another exception (numpy's overflow and invalid-value
warnings count as exceptions: accepted audio must not drive the features or networks to Inf or
NaN); and on success the frame count is ceil(duration * fps), duration being the samples per
channel over the sample rate.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from huma_rt.errors import HumaError
from huma_rt.runtime import Avatar

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
from _outcome import succeeds_or_huma_error  # noqa: E402
from _runtime_avatar import pack_small, renderer_arg, shared_export  # noqa: E402

_FLOATS = [np.float32, np.float64, np.float16, np.longdouble, np.dtype(">f4")]
_OTHERS = [np.int16, np.int32, np.uint8, np.bool_, np.object_, np.complex64, np.complex128, np.dtype("<U3")]
_SPECIAL = [np.nan, np.inf, -np.inf, 1e4, -3e4, 1e17, 3e17, 1e19, 3.4e38, 1e300, 1e-42, -0.0]
_RATES = st.one_of(
    st.just(16000),
    st.sampled_from([8000, 22050, 44100, 48000, 4000, 384000]),
    st.integers(4000, 48000),
    st.sampled_from([0, -16000, 3999, 384001, 10**12, 2**64, 16000.0, 22050.5, float("nan"), True, False, None,
                     "16000", np.int64(16000), np.int32(22050), np.uint16(8000), np.float32(16000)]),
    st.integers(-(2**70), 2**70),
)  # fmt: skip


@pytest.fixture(scope="module")
def avatar(tmp_path_factory) -> Avatar:
    root = tmp_path_factory.mktemp("fuzz-session")
    return Avatar.load(pack_small(shared_export(root), root / "tiny"), device="cpu", renderer=renderer_arg(),
                       threads=1)  # fmt: skip


@st.composite
def _audio(draw) -> np.ndarray:
    """An array of any dtype and layout; float contents are noise, silence, or noise with
    special values (NaN, Inf, huge, subnormal) at random places, at a random scale."""
    dtype = np.dtype(draw(st.one_of(st.just(np.float32), st.sampled_from(_FLOATS), st.sampled_from(_OTHERS))))
    n = draw(st.one_of(st.integers(0, 3), st.integers(0, 2600)))
    layout = draw(st.one_of(st.just("1d"), st.sampled_from(["0d", "S1", "S2", "2S", "1S", "SC", "CS", "3d", "strided",
                                                            "reversed", "matrix", "masked"])))
    c = draw(st.integers(0, 5))
    shape = {"1d": (n,), "0d": (), "S1": (n, 1), "S2": (n, 2), "2S": (2, n), "1S": (1, n), "SC": (n, c),
             "CS": (c, n), "3d": (2, max(n // 2, 0), c), "strided": (2 * n,), "reversed": (n,),
             "matrix": (n, 2) if c % 2 else (1, n), "masked": (n,)}[layout]  # fmt: skip
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([0.3, 0.3, 0.0, 1e-3, 1.0, 1.5, 300.0, 1e10, 1e20]))
    x = np.asarray(rng.standard_normal(shape) * scale)  # 0-d stays an array
    if x.size and draw(st.booleans()):
        for _ in range(draw(st.integers(1, 3))):
            x.flat[int(rng.integers(x.size))] = draw(st.sampled_from(_SPECIAL))
    with np.errstate(all="ignore"):
        if dtype.kind in "iub":
            arr = np.clip(np.nan_to_num(x * 1000), -100, 100).astype(dtype)
        elif dtype.kind == "O":
            arr = x.astype(object)
            if arr.size:
                arr.flat[0] = draw(st.sampled_from([None, "a", 1, 0.5, [0.1]]))
        elif dtype.kind == "U":
            arr = x.astype(dtype)
        else:
            arr = x.astype(dtype)
    if layout == "strided":
        arr = arr[::2]
    elif layout == "reversed":
        arr = arr[::-1]
    elif layout == "matrix" and arr.dtype.kind != "U":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            arr = np.asmatrix(arr)  # indexes as 2-D: arr[0] is still [1, S]
    elif layout == "masked":
        arr = np.ma.masked_array(arr, mask=rng.random(arr.shape) < 0.5)
    event(f"{dtype.str} {layout}")
    return arr


def _samples_per_channel(pcm: np.ndarray) -> int:
    """The documented layouts: [S], [S, C] with C <= 2, [C, S] with C <= 2 < S or C < S."""
    pcm = np.asarray(pcm)
    if pcm.ndim == 1:
        return pcm.shape[0]
    s, c = pcm.shape
    return s if c in (1, 2) else c


def _expected_frames(samples: int, rate, fps: int) -> int:
    return -(-samples * fps // int(rate))  # ceil(samples / rate * fps), exactly


def _frames(it) -> int:
    n = 0
    for f in it:
        assert f.index == n and f.rgb.dtype == np.uint8
        n += 1
    return n


@pytest.fixture(autouse=True)
def _numeric_warnings_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        yield


@given(pcm=_audio(), rate=_RATES)
def test_render_any_array(avatar, pcm, rate):
    got = succeeds_or_huma_error(lambda: _frames(avatar.render(pcm, rate)))
    event("error" if isinstance(got, HumaError) else "frames")
    if not isinstance(got, HumaError):
        assert got == _expected_frames(_samples_per_channel(pcm), rate, avatar.fps)


@given(pushes=st.lists(_audio(), min_size=1, max_size=4), rate=_RATES, live=st.booleans(),
       idle=st.integers(0, 3))  # fmt: skip
def test_session_any_pushes(avatar, pushes, rate, live, idle):
    """Pushes of one stream: each one succeeds or is refused (a refused push leaves the stream
    as it was); finish() then yields ceil(accepted duration * fps) frames in all."""
    s = avatar.session(live=live)
    try:
        accepted, emitted = 0, 0
        for pcm in pushes:
            out = succeeds_or_huma_error(lambda pcm=pcm: s.push_audio(pcm, rate))
            if not isinstance(out, HumaError):
                accepted += _samples_per_channel(pcm)
            emitted += _frames_from(s, emitted)
        if live and accepted:
            for _ in s.idle_frames(idle):
                emitted += 1
            accepted = None  # idle silence joined the stream: count by the session's clock below
        s.finish()
        emitted += _frames_from(s, emitted)
        event(f"{emitted} frames")
        if accepted is None:
            assert emitted == -(-s.pushed_samples // s.samples_per_frame)
        elif accepted:
            assert emitted == _expected_frames(accepted, rate, avatar.fps)
        else:
            assert emitted == 0
    finally:
        s.close()


def _frames_from(s, start: int) -> int:
    n = 0
    for f in s.frames():
        assert f.index == start + n
        n += 1
    return n
