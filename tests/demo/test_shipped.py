"""The committed demo weights: they load, drive the head's articulation, and lip-sync held-out
sentences spoken by held-out voices (a cheap slice of export/demo/evaluate.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from huma_rt.export.checkpoint import DEMO_CHECKPOINT_DIR, is_checkpoint  # noqa: E402
from huma_rt.export.demo.codes import params_to_codes  # noqa: E402
from huma_rt.export.demo.corpus import HELD_OUT_SENTENCES, HELD_OUT_VOICES  # noqa: E402
from huma_rt.export.demo.data import make_utterance  # noqa: E402
from huma_rt.export.demo.evaluate import DemoModel, motion_energy, pearson  # noqa: E402

pytestmark = pytest.mark.skipif(not is_checkpoint(DEMO_CHECKPOINT_DIR), reason="no shipped demo weights")


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(2)
    return DemoModel.load(DEMO_CHECKPOINT_DIR)


def test_shipped_files_are_small_and_described():
    total = sum(p.stat().st_size for p in DEMO_CHECKPOINT_DIR.iterdir() if p.is_file())
    assert total < 5_000_000
    meta = json.loads((DEMO_CHECKPOINT_DIR / "demo.json").read_text())
    assert meta["params"] == ["jaw", "round", "spread", "closure", "blink"]
    assert np.asarray(meta["code_embedding"]).shape == (32, 5)


def test_deformer_reproduces_the_articulation(model):
    rng = np.random.default_rng(5)
    p = rng.uniform(0, 1, (4, 5)).astype(np.float32)
    codes = torch.from_numpy(params_to_codes(p, model.emb))
    with torch.no_grad():
        dmu, dquat, dscale = model.deformer(model.feat, codes)
    t_dmu, t_dquat, _ = model.art.deform(p)
    err = np.abs(dmu.numpy() - t_dmu)
    assert err.mean() < 0.15 * np.abs(t_dmu).mean()  # within 15 % of the motion on average
    assert np.percentile(err, 99) < 0.01  # ~3 px at 512x512
    with torch.no_grad():
        rest = model.deformer(model.feat, torch.from_numpy(params_to_codes(np.zeros((1, 5)), model.emb)))
    assert float(rest[0].abs().max()) < 0.01


def test_lip_sync_on_held_out_voices(model):
    pred, true, e_speech, e_silent = [], [], [], []
    for text, voice in zip(HELD_OUT_SENTENCES[:2], HELD_OUT_VOICES[:2], strict=True):
        u = make_utterance(text, voice, rate=170, pitch=45, lead_s=0.6, tail_s=0.6)
        codes = model.codes(u.audio)
        assert codes.shape == (u.targets.shape[0], 32)
        pred.append(model.params(u.audio)[:, 0])
        true.append(u.targets[:, 0])
        energy = motion_energy(model.mouth_dmu(codes))
        near = np.convolve(u.speech.astype(float), np.ones(7), "same") > 0
        e_speech.append(energy[u.speech])
        e_silent.append(energy[~near])
    assert pearson(np.concatenate(pred), np.concatenate(true)) > 0.8
    assert np.concatenate(e_silent).mean() < 0.05 * np.concatenate(e_speech).mean()
