"""ASR model-directory detection and validation (no ASR model can be obtained here, so these
tests build directories of minimal well-formed ONNX files; sherpa-onnx never sees them)."""

from __future__ import annotations

import pytest

from huma_rt.errors import FormatError, InputError
from huma_rt.speech._onnx_meta import encode_metadata
from huma_rt.speech.asr import AsrConfig, detect_layout

# A ModelProto with ir_version 8 and an empty graph (field 7): enough for the structure check.
_TINY_ONNX = b"\x08\x08" + b"\x3a\x00"


def _make(d, names, meta=None):
    d.mkdir(parents=True, exist_ok=True)
    for name in names:
        if name.endswith(".onnx"):
            (d / name).write_bytes(_TINY_ONNX + encode_metadata((meta or {}).get(name, {})))
        else:
            (d / name).write_text("<blk> 0\na 1\n")
    return d


def test_streaming_transducer_prefers_int8(tmp_path):
    names = ["encoder-epoch-99-avg-1.onnx", "encoder-epoch-99-avg-1.int8.onnx", "decoder-epoch-99-avg-1.onnx",
             "joiner-epoch-99-avg-1.int8.onnx", "joiner-epoch-99-avg-1.onnx", "tokens.txt"]
    d = _make(tmp_path / "zipformer", names,
              {"encoder-epoch-99-avg-1.int8.onnx": {"decode_chunk_len": "32", "T": "39"}})
    lay = detect_layout(AsrConfig(str(d)))
    assert (lay.kind, lay.streaming) == ("transducer", True)
    assert lay.files["encoder"].name == "encoder-epoch-99-avg-1.int8.onnx"
    assert lay.files["joiner"].name == "joiner-epoch-99-avg-1.int8.onnx"
    lay = detect_layout(AsrConfig(str(d), prefer_int8=False, mode="offline"))
    assert lay.files["encoder"].name == "encoder-epoch-99-avg-1.onnx" and not lay.streaming


def test_offline_transducer_cannot_stream(tmp_path):
    d = _make(tmp_path / "sherpa-onnx-zipformer-en", ["encoder.onnx", "decoder.onnx", "joiner.onnx", "tokens.txt"])
    lay = detect_layout(AsrConfig(str(d)))
    assert (lay.kind, lay.streaming) == ("transducer", False)
    with pytest.raises(FormatError, match="not a streaming model"):
        detect_layout(AsrConfig(str(d), mode="online"))


def test_whisper_paraformer_sensevoice(tmp_path):
    w = _make(tmp_path / "whisper-tiny.en", ["tiny.en-encoder.int8.onnx", "tiny.en-decoder.int8.onnx", "tiny.en-tokens.txt"])
    lay = detect_layout(AsrConfig(str(w)))
    assert (lay.kind, lay.streaming, lay.files["tokens"].name) == ("whisper", False, "tiny.en-tokens.txt")
    p = _make(tmp_path / "streaming-paraformer", ["encoder.onnx", "decoder.onnx", "tokens.txt"])
    assert (detect_layout(AsrConfig(str(p))).kind, detect_layout(AsrConfig(str(p))).streaming) == ("paraformer", True)
    s = _make(tmp_path / "m1", ["model.int8.onnx", "tokens.txt"], {"model.int8.onnx": {"with_itn": "14"}})
    assert detect_layout(AsrConfig(str(s))).kind == "sense-voice"
    op = _make(tmp_path / "sherpa-onnx-paraformer-zh", ["model.onnx", "tokens.txt"])
    assert (detect_layout(AsrConfig(str(op))).kind, detect_layout(AsrConfig(str(op))).streaming) == ("paraformer", False)


def test_ambiguous_needs_kind(tmp_path):
    d = _make(tmp_path / "m2", ["model.onnx", "tokens.txt"])
    with pytest.raises(FormatError, match="set kind"):
        detect_layout(AsrConfig(str(d)))
    assert detect_layout(AsrConfig(str(d), kind="sense-voice")).kind == "sense-voice"


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(FormatError, match="does not exist"):
        detect_layout(AsrConfig(str(tmp_path / "nope")))
    empty = _make(tmp_path / "empty", ["README.md"])
    with pytest.raises(FormatError, match="not a sherpa-onnx ASR model directory"):
        detect_layout(AsrConfig(str(empty)))
    no_tok = _make(tmp_path / "notok", ["encoder.onnx", "decoder.onnx", "joiner.onnx"])
    with pytest.raises(FormatError, match="lacks its tokens"):
        detect_layout(AsrConfig(str(no_tok)))
    wrong = _make(tmp_path / "wrong", ["encoder.onnx", "decoder.onnx", "tokens.txt"])
    with pytest.raises(FormatError, match="transducer model .* lacks its joiner"):
        detect_layout(AsrConfig(str(wrong), kind="transducer"))
    broken = _make(tmp_path / "broken", ["encoder.onnx", "decoder.onnx", "joiner.onnx", "tokens.txt"])
    (broken / "joiner.onnx").write_bytes(b"\x00" * 10)
    with pytest.raises(FormatError, match="joiner"):
        detect_layout(AsrConfig(str(broken)))
    (broken / "joiner.onnx").write_bytes(b"")
    with pytest.raises(FormatError, match="joiner model .* is empty"):
        detect_layout(AsrConfig(str(broken)))


@pytest.mark.parametrize(("content", "match"), [
    (b"<blk> 0\na b 1\n", "line 2 is 'a b 1'"), (b"<blk> 0\na one\n", "line 2"), (b"<blk> 0\na 1x\n", "line 2"),
    (b"<blk> 0\na 99999999999\n", "line 2"), (b"\xff\xfe 0\n", "not UTF-8")])
def test_tokens_sherpa_onnx_would_exit_on(tmp_path, content, match):
    # sherpa-onnx 2.0.1 ends the process (exit(-1)) on each of these lines
    d = _make(tmp_path / "sherpa-onnx-zipformer-en", ["encoder.onnx", "decoder.onnx", "joiner.onnx", "tokens.txt"])
    (d / "tokens.txt").write_bytes(content)
    with pytest.raises(FormatError, match=match):
        detect_layout(AsrConfig(str(d)))
    (d / "tokens.txt").write_bytes(b"<blk> 0\n\xe2\x96\x81THE 1\n 2\n\n")  # a lone id = an empty symbol
    assert detect_layout(AsrConfig(str(d))).kind == "transducer"


def test_bad_kind_and_mode(tmp_path):
    with pytest.raises(InputError, match="ASR kind"):
        detect_layout(AsrConfig(str(tmp_path), kind="ctc"))
    with pytest.raises(InputError, match="ASR mode"):
        detect_layout(AsrConfig(str(tmp_path), mode="live"))


def test_real_offline_recognizer_on_a_tiny_model(tiny_asr_dir, question_pcm):
    pytest.importorskip("sherpa_onnx")
    import numpy as np

    from huma_rt.speech.asr import Recognizer

    rec = Recognizer(AsrConfig(str(tiny_asr_dir)))
    assert (rec.layout.kind, rec.layout.streaming) == ("transducer", False)
    assert rec.transcribe(np.zeros(16000, np.float32)).text == ""
    result = rec.transcribe(question_pcm)
    # one 'a' per loud 10 ms frame: most of the ~2.2 s utterance, none of silence
    assert set(result.text) == {"a"} and 50 < len(result.text) < question_pcm.size / 160
    assert result.audio_s == pytest.approx(question_pcm.size / 16000) and result.compute_s > 0
    assert rec.transcribe(np.zeros(0, np.float32)).text == ""  # nothing said: empty text, no error
