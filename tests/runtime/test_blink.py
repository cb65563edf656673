"""Blinks: the schedule, the bundle's blink code, and sessions drawing them: the tiny avatar
packed with a blink code (its networks are random: the code moves every Gaussian, so its mask
is all ones) and the demo avatar, whose blink mask holds the eyes only. The demo's blink on its
pixels (the eyes shut, the lips still) is checked in tests/serve/test_worker.py."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
from _runtime_avatar import pack_small, renderer_arg, small_source

from huma_rt.bundle import pack
from huma_rt.errors import FormatError, InputError
from huma_rt.runtime import Avatar
from huma_rt.runtime.blink import BlinkSchedule, blink_mask

CODE_DIM = 8  # the small configs' code_dim (tests/runtime/_runtime_avatar.py)


def test_schedule_spaces_blinks_and_shapes_each():
    s = BlinkSchedule(25, seed=7)
    w = np.array([s.weight(i) for i in range(25 * 600)])  # ten minutes
    assert w.min() == 0.0 and w.max() == 1.0
    onsets = np.flatnonzero((w[1:] > 0) & (w[:-1] == 0)) + 1
    gaps = np.diff(onsets) / 25
    assert len(onsets) == 150  # one per 4 s slot
    assert gaps.min() >= 1.5 and gaps.max() <= 8.0 - 1.5 + 0.05, (gaps.min(), gaps.max())
    assert 3.5 < gaps.mean() < 4.5 and gaps.std() > 0.5  # irregular, about every four seconds
    first = w[onsets[0] : onsets[0] + s.blink_frames]
    assert first.tolist() == [s.weight(onsets[0] + k) for k in range(s.blink_frames)]  # a function of the index
    assert np.all(first > 0) and np.argmax(first) in (2, 3) and first[0] < first[2]  # falls fast, rises slower
    other = np.array([BlinkSchedule(25, seed=8).weight(i) for i in range(w.size)])
    assert not np.array_equal(w, other), "the seed must move the blinks"
    for bad in (dict(fps=0), dict(fps=25.0), dict(fps=25, interval_s=0.5), dict(fps=25, gap_s=float("nan")),
                dict(fps=25, seed="x"), dict(fps=25, close_s=0.0, open_s=0.0)):  # fmt: skip
        with pytest.raises(InputError):
            BlinkSchedule(**bad)


def test_mask_keeps_the_blink_near_what_it_moves_most():
    rng = np.random.default_rng(0)
    eyes = rng.normal([0.0, 0.3, 0.0], 0.02, (50, 3))
    mouth = rng.normal([0.0, -0.3, 0.0], 0.02, (50, 3))
    means = np.concatenate([eyes, mouth])
    moved = np.concatenate([np.full(50, 1.0), np.full(50, 0.2)])  # the mouth moves a little too
    m = blink_mask(means, moved)
    assert m.dtype == np.float32 and np.all(m[:50] == 1.0) and np.all(m[50:] == 0.0)
    assert np.all(blink_mask(means, np.zeros(100)) == 0.0)


@pytest.fixture(scope="module")
def blink_code() -> np.ndarray:
    return np.random.default_rng(5).normal(0, 1.0, CODE_DIM).astype(np.float32)


@pytest.fixture(scope="module")
def blinking(export_dir, blink_code, tmp_path_factory):
    path = pack(small_source(export_dir, blink_code=blink_code), tmp_path_factory.mktemp("blink") / "b")
    return Avatar.load(path, device="cpu", renderer=renderer_arg(), threads=1)


def test_the_bundle_carries_the_blink_code(blinking, blink_code, export_dir, tmp_path):
    m = json.loads((blinking.bundle.path / "manifest.json").read_text())
    assert m["expressions"]["blink"] == [float(v) for v in blink_code]
    assert blinking.can_blink and np.array_equal(blinking.blink_code, blink_code)
    mask = blinking.blink_mask()
    assert mask.shape == (blinking.preload_report.dynamic,) and mask.max() == 1.0 and mask.min() >= 0.0
    for bad in (blink_code[:-1], np.full(CODE_DIM, np.nan, np.float32), np.arange(CODE_DIM)):
        with pytest.raises(InputError, match=f"blink_code must be {CODE_DIM} finite floats"):
            pack(small_source(export_dir, blink_code=bad), tmp_path / "bad")
    # a manifest whose code does not fit the deformer is refused at load
    text = (blinking.bundle.path / "manifest.json").read_text()
    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(blinking.bundle.path, broken)
    doc = json.loads(text)
    doc["expressions"]["blink"] = doc["expressions"]["blink"][:3]
    (broken / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(FormatError, match=rf"\$.expressions.blink has 3 values; the deformer's code_dim is {CODE_DIM}"):
        Avatar.load(broken, device="cpu", verify=False)
    # blink regions: only with a code, only regions that hold Gaussians
    with pytest.raises(InputError, match="blink_regions needs a blink_code"):
        pack(small_source(export_dir, blink_regions=[1]), tmp_path / "bad2")
    with pytest.raises(FormatError, match=r"blink_regions names region ids \[7\] that hold no Gaussian"):
        pack(small_source(export_dir, blink_code=blink_code, blink_regions=[1, 7]), tmp_path / "bad3")
    assert blinking.bundle.blink_regions is None  # not declared: the mask is measured at load


def _frames(avatar: Avatar, pcm: np.ndarray, weights) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rgb, posed means) of each frame, ``weights[t]`` set before frame t is drawn."""
    s = avatar.session(live=True)
    out = []
    try:
        for t, w in enumerate(weights):
            s.blink = w
            s.push_audio(pcm[t * 640 : (t + 1) * 640])
            for f in s.idle_frames(1):
                out.append((f.rgb.copy(), s._posed[0].copy()))
    finally:
        s.close()
    return out


@pytest.fixture(scope="module")
def lids(export_dir, blink_code, tmp_path_factory):
    """The tiny avatar with part of its moving cap as region 2, named the blink's region."""
    from _runtime_avatar import small_gaussians

    g = small_gaussians()
    g.region[(g.region == 1) & (g.means[:, 0] > 0)] = 2
    src = small_source(export_dir, gaussians=g, blink_code=blink_code, blink_regions=[2])
    return Avatar.load(pack(src, tmp_path_factory.mktemp("lids") / "b"), device="cpu", renderer=renderer_arg(), threads=1)


@pytest.fixture(scope="module")
def demo():
    pytest.importorskip("onnxruntime")
    from huma_rt.export.demo.bundle import ensure_bundle

    return Avatar.load(ensure_bundle()[0], device="cpu", threads=1)


@pytest.mark.parametrize("which", ["tiny", "lids", "demo"])
def test_a_blink_moves_only_the_masked_gaussians_and_zero_is_the_plain_frame(which, blinking, request):
    av = blinking if which == "tiny" else request.getfixturevalue(which)
    pcm = np.random.default_rng(1).normal(0, 0.1, 640 * 24).astype(np.float32)
    weights = [0.0] * 8 + [0.5, 1.0, 1.0, 0.5] + [0.0] * 12
    plain = _frames(av, pcm, [0.0] * len(weights))
    shut = _frames(av, pcm, weights)
    mask = av.blink_mask()
    if which != "tiny":  # the regions the bundle names: the demo's lids (4), the tiny one's region 2
        region = np.asarray(av.bundle.gaussians().region)
        dyn = region[region != 0]
        assert np.array_equal(mask, np.isin(dyn, av.bundle.blink_regions).astype(np.float32))
        assert av.bundle.blink_regions == ([4] if which == "demo" else [2]) and 0 < mask.sum() < mask.size
    for t, w in enumerate(weights):
        (rgb0, mu0), (rgb1, mu1) = plain[t], shut[t]
        if w == 0.0:
            assert np.array_equal(rgb0, rgb1) and np.array_equal(mu0, mu1), f"frame {t} without a blink changed"
        else:
            moved = np.linalg.norm(mu1 - mu0, axis=1)
            assert not (mask == 0).any() or moved[mask == 0].max() == 0.0, f"frame {t}: Gaussians outside the mask moved"
            assert moved[mask == 1].max() > 1e-4, f"frame {t}: the blink moved nothing"
            assert not np.array_equal(rgb0, rgb1)


def test_blink_refusals_and_reset(blinking, avatar):
    s = blinking.session(live=True)
    try:
        for bad in (-0.1, 1.5, float("nan"), "1", True, None):
            with pytest.raises(InputError, match="blink must be a number in"):
                s.blink = bad
        s.blink = np.float32(0.25)
        assert s.blink == 0.25
        s.reset()
        assert s.blink == 0.0
    finally:
        s.close()
    if avatar.can_blink:
        pytest.skip("this bundle has a blink code")
    plain = avatar.session(live=True)
    try:
        plain.blink = 0.0  # open eyes are always possible
        with pytest.raises(InputError, match=rf"avatar {avatar.name!r} cannot blink: its bundle has no "):
            plain.blink = 0.5
        assert avatar.blink_mask() is None
    finally:
        plain.close()


def test_blinking_allocates_nothing_on_the_hot_path(blinking):
    s = blinking.session(live=True)
    weights = [BlinkSchedule(25, interval_s=0.6, gap_s=0.1).weight(i) for i in range(200)]

    def run() -> None:
        for w in weights:
            s.blink = w
            for _ in s.idle_frames(1):
                pass

    run()  # warm-up
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        cur0, _ = tracemalloc.get_traced_memory()
        run()
        cur1, _ = tracemalloc.get_traced_memory()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
        s.close()
    assert sum(w > 0 for w in weights) > 40
    assert cur1 - cur0 < 8 * 1024, f"net growth {cur1 - cur0} B"
    flt = [tracemalloc.DomainFilter(True, np.lib.tracemalloc_domain)]
    new_np = after.filter_traces(flt).compare_to(before.filter_traces(flt), "lineno")
    assert not [st for st in new_np if st.count_diff > 0], new_np[:5]


def test_a_small_avatar_without_a_code_still_packs(export_dir, tmp_path):
    a = Avatar.load(pack_small(export_dir, tmp_path / "plain"), device="cpu", renderer=renderer_arg(), threads=1)
    assert not a.can_blink and "expressions" not in json.loads((tmp_path / "plain" / "manifest.json").read_text())


def test_one_shot_render_blinks_by_its_schedule_as_a_stream_does(blinking, avatar):
    pcm = np.random.default_rng(2).normal(0, 0.1, 16000 * 9).astype(np.float32)
    sched = BlinkSchedule(25, seed=3)
    plain = [f.rgb.copy() for f in blinking.render(pcm)]
    shut = [(f.index, f.rgb.copy()) for f in blinking.render(pcm, blinks=sched)]
    blinked = [i for i, _ in shut if sched.weight(i) > 0]
    assert len(blinked) >= 2 * sched.blink_frames  # two blinks in 9 s at least
    for i, rgb in shut:
        assert np.array_equal(rgb, plain[i]) == (sched.weight(i) == 0.0), f"frame {i}"
    # streamed in odd chunks with the same schedule: the same frames
    s = blinking.session()
    s.blinks = sched
    streamed = []
    for k in range(0, pcm.size, 7777):
        s.push_audio(pcm[k : k + 7777])
        streamed += [f.rgb.copy() for f in s.frames()]
    s.finish()
    streamed += [f.rgb.copy() for f in s.frames()]
    s.close()
    assert len(streamed) == len(shut) and all(np.array_equal(a, b) for a, (_, b) in zip(streamed, shut, strict=True))
    # the spare session the render used comes back without the schedule
    again = blinking.session()
    assert again.blinks is None and again.blink == 0.0
    again.close()
    with pytest.raises(InputError, match="blinks must be scheduled at the avatar's 25 fps; got 30"):
        blinking.render(pcm, blinks=BlinkSchedule(30))
    with pytest.raises(InputError, match="blinks must be a huma_rt.runtime.blink.BlinkSchedule or None; got float"):
        blinking.render(pcm, blinks=0.5)
    if not avatar.can_blink:
        with pytest.raises(InputError, match="cannot blink"):
            avatar.render(pcm, blinks=sched)
