"""Text cleaning and chunking for TTS; ONNX metadata read/append without the onnx package."""

from __future__ import annotations

import pytest

from huma_rt.errors import FormatError, InputError
from huma_rt.speech._onnx_meta import encode_metadata, read_metadata
from huma_rt.speech.text import chunk_text, clean_text, decode_text, split_sentences


def test_sentences_and_abbreviations():
    assert split_sentences("Hi there! Dr. Smith came. Really? Yes.") == [
        "Hi there!", "Dr. Smith came.", "Really?", "Yes."]


def test_first_chunk_is_cut_at_a_clause():
    chunks = chunk_text("Well, I think that the answer to your question, which is a good one, is yes. Sure.")
    assert chunks == ["Well,", "I think that the answer to your question, which is a good one, is yes.", "Sure."]
    assert chunk_text("Hi, there. Fine.") == ["Hi, there.", "Fine."]  # 'Hi,' is too short to go alone


def test_emoji_and_punctuation_only_give_nothing():
    assert chunk_text("😀 🎉 !!! ...") == []
    assert clean_text("a😀b\tc\n") == "ab c"


def test_long_text_is_bounded():
    for text in ("word " * 2000, "x" * 10_000, "a, " * 3000):
        chunks = chunk_text(text)
        assert max(map(len, chunks)) <= 200
        assert "".join(chunks).replace(" ", "").replace(",", "") == text.replace(" ", "").replace(",", "")


def test_non_utf8_bytes_and_surrogates():
    with pytest.raises(InputError, match="byte 0xff at offset 3"):
        decode_text(b"abc\xff")
    bad_argv = b"hi \xfe".decode("utf-8", "surrogateescape")
    with pytest.raises(InputError, match="byte 0xfe at character 3"):
        decode_text(bad_argv)
    assert decode_text("héllo".encode()) == "héllo"


def test_metadata_append_is_read_back_by_onnx_and_us(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph)
    helper.set_model_props(model, {"existing": "1"})
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString() + encode_metadata({"sample_rate": "22050", "ké": "vé"}))
    expected = {"existing": "1", "sample_rate": "22050", "ké": "vé"}
    assert read_metadata(path) == expected
    assert {p.key: p.value for p in onnx.load(str(path)).metadata_props} == expected
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert sess.get_modelmeta().custom_metadata_map == expected


def test_metadata_of_garbage(tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"\x0a\xff\xff\xff\x0f")  # a field claiming 4 GB
    with pytest.raises(FormatError, match="not a valid ONNX model"):
        read_metadata(path)


def test_assembler_releases_sentences_as_they_complete():
    from huma_rt.speech.text import ChunkAssembler

    a = ChunkAssembler()
    assert a.feed("One moment") == []
    assert a.feed(". ") == ["One moment."]
    assert a.feed("Dr. ") == []  # an abbreviation does not end the sentence
    assert a.feed("Who? And") == ["Dr. Who?"]
    assert a.feed(" then") == [] and a.close() == ["And then"]


def test_assembler_first_clause_early_and_total_cap():
    from huma_rt.speech.text import ChunkAssembler

    a = ChunkAssembler()
    assert a.feed("Well") == []
    assert a.feed(", I think that the answer to your question, which") == ["Well,"]
    assert a.feed(" is good. ") == ["I think that the answer to your question, which is good."]
    b = ChunkAssembler(max_total=30)
    assert b.feed("Hello there. This is long. And more text here. ") == ["Hello there.", "This is long."]
    assert b.truncated and b.close() == []
    c = ChunkAssembler()
    assert c.feed("x" * 450) == ["x" * 200, "x" * 200] and c.close() == ["x" * 50]


def test_a_long_first_sentence_is_cut_at_a_phrase_boundary():
    # no clause boundary in its first 60 characters: cut before a conjunction or preposition,
    # 20 or more characters in, and given a comma so the voice ends it as a phrase
    text = "I'm a curious and adventurous soul with a passion for sustainability. I love it."
    assert chunk_text(text) == ["I'm a curious and adventurous soul,", "with a passion for sustainability.", "I love it."]
    # text spoken whole (PiperTTS.synthesize) keeps its sentences
    assert chunk_text(text, phrases=False) == [text[:69], "I love it."]
    # the earliest boundary wins, clause or phrase
    assert chunk_text("A rainbow is formed when light from the sun, in the sky, bends.") == [
        "A rainbow is formed when light,", "from the sun, in the sky, bends."]
    assert chunk_text("Well, I think that the answer is yes.") == ["Well,", "I think that the answer is yes."]
    # a boundary under 20 characters in ('and' at 11) is not used; nor one without a word after it
    assert chunk_text("It is sunny and warm.") == ["It is sunny and warm."]
    assert chunk_text("This is the very thing I was thinking of.") == ["This is the very thing I was thinking of."]
    # a clause boundary past first_chars right before a phrase boundary keeps its one comma
    from huma_rt.speech.text import first_cut

    assert first_cut("Hello there everyone out here, with love", 10) == ("Hello there everyone out here,", "with love")
    assert first_cut("Hello there everyone out here with", 60) is None


def test_streamed_text_is_cut_as_the_whole_text_is():
    from huma_rt.speech.text import ChunkAssembler

    texts = [
        "I'm a curious and adventurous soul with a passion for sustainability. I love it.",
        "A rainbow is formed when light from the sun, in the sky, bends. It is pretty.",
        "Sure, it is sunny and warm.",
        "The moon is a celestial body orbiting the Earth. It is far.",
        "Why, of course! The answer to that question depends on where you live.",
    ]
    for text in texts:
        for pieces in ([w + " " for w in text.split(" ")], list(text), [" " + w for w in text.split(" ")]):
            a = ChunkAssembler()
            chunks = [c for piece in pieces for c in a.feed(piece)] + a.close()
            assert chunks == chunk_text(text), (text, pieces[:3])


def test_a_phrase_boundary_waits_for_the_whole_next_word():
    from huma_rt.speech.text import ChunkAssembler

    a = ChunkAssembler()
    assert a.feed("I'm a curious and adventurous soul with") == []  # 'with' may become 'without'
    assert a.feed("out a doubt. ") == ["I'm a curious and adventurous soul without a doubt."]
    b = ChunkAssembler()
    assert b.feed("I'm a curious and adventurous soul with") == []
    assert b.feed(" a") == ["I'm a curious and adventurous soul,"]
    assert b.feed(" passion. ") == ["with a passion."]


def test_a_chunk_that_would_be_late_is_cut_to_the_longest_piece_in_time():
    from huma_rt.speech.text import pace_cut

    text = "Paris is famous for its landmarks, like the Eiffel Tower and the Louvre."
    # the last boundary with at most max_chars before it; a phrase boundary gets its comma
    assert pace_cut(text, 40) == ("Paris is famous for its landmarks,", "like the Eiffel Tower and the Louvre.")
    assert pace_cut(text, 20) == ("Paris is famous,", "for its landmarks, like the Eiffel Tower and the Louvre.")
    assert pace_cut(text, 60) == ("Paris is famous for its landmarks, like the Eiffel Tower,",
                                  "and the Louvre.")
    # no boundary that early: the shortest piece there is, PACE_MIN (8) characters or more
    assert pace_cut("It is sunny and warm.", 3) == ("It is sunny,", "and warm.")
    assert pace_cut("Yes, it is.", 3) is None  # the comma is 3 characters in: too short a piece
    # nothing to cut at, or nothing speakable after the cut
    assert pace_cut("Hello there.", 3) is None
    assert pace_cut("Hello there, !", 3) is None
