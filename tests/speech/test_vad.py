"""VAD with the packaged silero model through sherpa-onnx, on real espeak-ng speech."""

from __future__ import annotations

import numpy as np
import pytest

from huma_rt.errors import FormatError, InputError
from huma_rt.speech.vad import (
    StreamingVad,
    VadConfig,
    check_silero_model,
    detect_segments,
    packaged_model,
)

pytest.importorskip("sherpa_onnx")
SR = 16000


def test_packaged_model_is_accepted():
    assert check_silero_model(packaged_model()).name == "silero_vad.onnx"


@pytest.mark.parametrize(
    "variant", ["silero_vad_half.onnx", "silero_vad_op18_ifless.onnx", "silero_vad_16k_sequence.onnx"]
)
def test_unsupported_variants_are_refused_before_sherpa(variant):
    # These variants make sherpa-onnx call exit(-1); reaching the assert means we refused first.
    path = packaged_model().parent / variant
    if not path.is_file():
        pytest.skip(f"{variant} not shipped by this silero-vad version")
    with pytest.raises(FormatError, match="sherpa-onnx needs the silero v5 signature"):
        StreamingVad(VadConfig(model=str(path)))


def test_not_onnx_and_missing(tmp_path):
    bad = tmp_path / "vad.onnx"
    bad.write_bytes(b"definitely not protobuf")
    with pytest.raises(FormatError, match="not a loadable ONNX model"):
        check_silero_model(bad)
    with pytest.raises(FormatError, match="does not exist"):
        check_silero_model(tmp_path / "nope.onnx")


def test_bad_config():
    with pytest.raises(InputError, match="threshold"):
        StreamingVad(VadConfig(threshold=1.5))


def test_two_utterances_found_with_times(question_pcm):
    gap = np.zeros(SR, np.float32)
    n = question_pcm.size
    clip = np.concatenate([gap, question_pcm, gap, question_pcm, gap])
    segs = detect_segments(clip, VadConfig(min_silence_s=0.3))
    assert len(segs) == 2
    # Ground truth: the audible part of espeak's clip (it carries its own quiet head and tail).
    loud = np.flatnonzero(np.abs(question_pcm) > 0.02)
    first, last = int(loud[0]), int(loud[-1])
    truth = [(SR + first, SR + last), (2 * SR + n + first, 2 * SR + n + last)]
    for seg, (start, end) in zip(segs, truth, strict=True):
        # silero decides per 32 ms window and keeps some padding: 0.2 s slack
        assert abs(seg.start - start) < 0.2 * SR, (seg.start_s, start / SR)
        assert abs(seg.end - end) < 0.2 * SR, (seg.end_s, end / SR)
        assert seg.samples.size == seg.end - seg.start


def test_chunk_size_does_not_change_segments(question_pcm):
    clip = np.concatenate([np.zeros(SR // 2, np.float32), question_pcm, np.zeros(SR, np.float32)])
    a = [(s.start, s.end) for s in detect_segments(clip, chunk=160)]
    b = [(s.start, s.end) for s in detect_segments(clip, chunk=16000)]
    assert a == b and len(a) == 1


def test_segment_closes_while_streaming_before_flush(question_pcm):
    vad = StreamingVad(VadConfig(min_silence_s=0.3))
    assert vad.push(question_pcm) == [] or True  # speech may not have ended yet
    done = vad.push(np.zeros(SR, np.float32))
    assert len(done) == 1 and not vad.speaking()
    assert vad.flush() == []


def test_silence_only_gives_no_segments():
    assert detect_segments(np.zeros(3 * SR, np.float32)) == []


def test_nan_input_is_refused():
    vad = StreamingVad()
    with pytest.raises(InputError, match="NaN"):
        vad.push(np.full(512, np.nan, np.float32))
