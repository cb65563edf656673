"""Byte-level BPE (GPT-2 style) from a GGUF's vocabulary and merges, in plain Python.

SmolLM2's pre-tokenizer (GGUF ``tokenizer.ggml.pre = "smollm"``; Hugging Face's ``Digits`` then
``ByteLevel``): every digit is a piece of its own, the rest is split by the GPT-2 pattern; each
piece's UTF-8 bytes are mapped to printable characters and merged pair by pair, lowest merge
rank first. Control tokens (``<|im_start|>``...) are recognised only when ``special=True``, so a
user's words can never close the chat turn. A prompt is a few dozen words: Python is fast enough
(~0.1 ms a word, cached per word) and needs no Rust tokenizer.
"""

from __future__ import annotations

import codecs
import functools
import logging

from huma_rt.errors import FormatError, MissingDependencyError

log = logging.getLogger(__name__)

_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
CONTROL = 3  # llama.cpp's token type of special/control tokens


@functools.lru_cache(maxsize=1)
def byte_chars() -> list[str]:
    """GPT-2's map of the 256 byte values to printable characters (printable Latin-1 bytes map to
    themselves, the rest to U+0100 onwards in byte order)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


class BpeTokenizer:
    """``encode(text) -> ids`` and ``decode(ids) -> bytes`` of a byte-level BPE vocabulary.

    tokens: token strings by id (byte-mapped); merges: ``"a b"`` pairs by rank;
    token_types: llama.cpp types (3 = control), used to find the special tokens.
    """

    def __init__(self, tokens: list[str], merges: list[str], token_types: list[int] | None = None) -> None:
        try:
            import regex
        except ImportError as exc:
            raise MissingDependencyError(
                f"the local LLM's tokenizer needs the 'regex' package ({exc}); install it with: pip install regex==2026.11.15"
            ) from exc
        self.tokens = tokens
        self.vocab = {t: i for i, t in enumerate(tokens)}
        ranks = {}
        for rank, merge in enumerate(merges):
            a, sep, b = merge.partition(" ")
            if not sep:
                raise FormatError(f"BPE merge {rank} is {merge!r}; expected two symbols separated by a space")
            ranks[(a, b)] = rank
        self._ranks = ranks
        types = token_types or [1] * len(tokens)
        self.specials = {t: i for i, t in enumerate(tokens) if types[i] == CONTROL}
        alternation = "|".join(regex.escape(s) for s in sorted(self.specials, key=len, reverse=True))
        self._special_re = regex.compile(f"({alternation})") if alternation else None
        self._digit_re = regex.compile(r"(\p{N})")
        self._word_re = regex.compile(_PATTERN)
        self._to_char = byte_chars()
        self._to_byte = {c: b for b, c in enumerate(self._to_char)}
        missing = [c for c in self._to_char[ord(" "):ord("~") + 1] if c not in self.vocab]
        if missing:
            raise FormatError(f"the BPE vocabulary lacks the byte symbols {missing[:5]}: not a byte-level BPE")
        self._bpe = functools.lru_cache(maxsize=8192)(self._merge)

    def _merge(self, word: str) -> tuple[int, ...]:
        """The ids of one pre-tokenized piece (already byte-mapped), by repeated lowest-rank merges."""
        parts = list(word)
        ranks = self._ranks
        while len(parts) > 1:
            best, at = None, -1
            for i in range(len(parts) - 1):
                r = ranks.get((parts[i], parts[i + 1]))
                if r is not None and (best is None or r < best):
                    best, at = r, i
            if best is None:
                break
            a, b = parts[at], parts[at + 1]
            merged, i = [], 0
            while i < len(parts):  # merge every occurrence of the pair, left to right
                if i < len(parts) - 1 and parts[i] == a and parts[i + 1] == b:
                    merged.append(a + b)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        # a byte the vocabulary never saw (SmolLM2 lacks a few control bytes) is dropped, as
        # Hugging Face's BPE without an unknown token does
        return tuple(self.vocab[p] for p in parts if p in self.vocab)

    def _pieces(self, text: str) -> list[str]:
        out = []
        for chunk in self._digit_re.split(text):
            if chunk:
                out.extend(self._word_re.findall(chunk))
        return out

    def encode(self, text: str, special: bool = False) -> list[int]:
        """Token ids of ``text``; with ``special``, control-token strings in it become their ids."""
        ids: list[int] = []
        chunks = self._special_re.split(text) if special and self._special_re else [text]
        for chunk in chunks:
            if not chunk:
                continue
            if special and chunk in self.specials:
                ids.append(self.specials[chunk])
                continue
            for piece in self._pieces(chunk):
                ids.extend(self._bpe("".join(self._to_char[b] for b in piece.encode("utf-8"))))
        return ids

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes a token stands for (a control token: its text)."""
        tok = self.tokens[token_id]
        if tok in self.specials:
            return tok.encode("utf-8")
        return bytes(self._to_byte[c] for c in tok)

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids`` (invalid UTF-8 replaced, as a cut multi-byte character would be)."""
        return b"".join(self.token_bytes(i) for i in ids).decode("utf-8", "replace")

    def stream_decoder(self) -> TextStream:
        """An incremental decoder: ``push(id)`` returns only whole characters."""
        return TextStream(self)


class TextStream:
    """Token ids in, text deltas out; a character split across tokens is held until complete."""

    def __init__(self, tokenizer: BpeTokenizer) -> None:
        self._tok = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")

    def push(self, token_id: int) -> str:
        return self._utf8.decode(self._tok.token_bytes(token_id))

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True)
