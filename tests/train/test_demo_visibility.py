"""The demo bundle leaves out the head's Gaussians no frame shows (train/demo_visibility.py ->
huma_rt/data/demo/visible.npz -> export/demo/bundle.py), and draws as the whole head does.

The shipped list is checked against a fresh weighing of the shipped checkpoint and head.py (a
stale list would silently pack another avatar's rows); the bundle with it against a bundle of
the whole head, both drawn by the real runtime on the same speech.
"""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
from huma_rt.kernels import cpu_backend_available

pytestmark = pytest.mark.skipif(not cpu_backend_available(), reason="CPU extension not built")

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from huma_rt.export.checkpoint import DEMO_CHECKPOINT_DIR, is_checkpoint  # noqa: E402
from huma_rt.export.demo.bundle import VISIBLE_NPZ, build_bundle, ensure_bundle, visible_rows  # noqa: E402
from huma_rt.export.demo.head import HeadSpec, build_head  # noqa: E402
from huma_rt.train.demo_visibility import BELOW, demo_weights, write_visible  # noqa: E402

from huma_rt.bundle import open_bundle  # noqa: E402
from huma_rt.runtime import Avatar  # noqa: E402

pytestmark = [pytestmark, pytest.mark.skipif(not is_checkpoint(DEMO_CHECKPOINT_DIR), reason="no shipped demo weights")]


@pytest.fixture(scope="module")
def weighed():
    torch.set_num_threads(2)
    return demo_weights()


def test_the_shipped_list_is_the_shipped_heads(weighed):
    weights, head = weighed
    rows = visible_rows(DEMO_CHECKPOINT_DIR, head)
    assert rows is not None, f"{VISIBLE_NPZ} does not match head.py: python -m huma_rt.train.demo_visibility"
    kept = np.zeros(head.count, bool)
    kept[rows] = True
    # the same decision for every row, but for a float's worth near the threshold (the backward
    # pass sums over threads in an order that may differ from run to run)
    near = np.abs(weights - BELOW) < 1e-3 * BELOW
    assert np.array_equal(kept[~near], weights[~near] >= BELOW)
    assert 0.5 * head.count < kept.sum() < head.count  # most of the head shows; the back does not
    for rid in np.unique(head.region[head.region != 0]):  # every moving part keeps its Gaussians
        assert kept[head.region == rid].any(), rid


def test_a_list_for_another_head_is_ignored_with_a_warning(tmp_path, caplog):
    head = build_head(HeadSpec(seed=0, density=0.1))
    assert visible_rows(tmp_path, head) is None  # no list: every row
    shutil.copy(DEMO_CHECKPOINT_DIR / VISIBLE_NPZ, tmp_path / VISIBLE_NPZ)
    with caplog.at_level(logging.WARNING):
        assert visible_rows(tmp_path, head) is None
    assert "computed for another demo head" in caplog.text and "demo_visibility" in caplog.text


def test_write_visible_round_trips(tmp_path, weighed):
    for name in ("model.safetensors", "encoder.json", "deformer.json", "demo.json"):
        shutil.copy(DEMO_CHECKPOINT_DIR / name, tmp_path / name)
    write_visible(tmp_path, below=0.5)
    weights, head = weighed
    rows = visible_rows(tmp_path, head)
    near = np.abs(weights - 0.5) < 1e-3
    kept = np.zeros(head.count, bool)
    kept[rows] = True
    assert np.array_equal(kept[~near], weights[~near] >= 0.5)


@pytest.mark.slow
def test_the_demo_bundle_draws_as_the_whole_head(tmp_path):
    from huma_rt.speech.say import speak

    whole_ckpt = tmp_path / "ckpt"
    whole_ckpt.mkdir()
    for name in ("model.safetensors", "encoder.json", "deformer.json", "demo.json"):
        shutil.copy(DEMO_CHECKPOINT_DIR / name, whole_ckpt / name)
    whole = build_bundle(tmp_path / "whole.bundle", whole_ckpt)
    shipped = ensure_bundle()[0]
    n_whole, n_shipped = open_bundle(whole).gaussians().count, open_bundle(shipped).gaussians().count
    assert n_shipped < 0.7 * n_whole
    audio, _ = speak("Hello there, how are you today?", tts="piper")
    frames = []
    for path in (whole, shipped):
        avatar = Avatar.load(path, device="cpu")
        try:
            frames.append(np.stack([f.rgb.copy() for f in avatar.render(audio, 16000)]))
        finally:
            avatar.close()
    diff = np.abs(frames[0].astype(np.int16) - frames[1])
    mse = (diff.astype(np.float64) ** 2).mean(axis=(1, 2, 3))
    psnr = 10 * np.log10(255.0**2 / np.maximum(mse, 1e-12))
    assert psnr.min() > 60.0 and diff.max() <= 8, (psnr.min(), diff.max())
