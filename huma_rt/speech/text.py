"""Text going into TTS: decoding, cleaning and cutting into speakable chunks.

Chunks are what the TTS synthesizes in one call. They follow sentences, but the first chunk is
cut short at a clause or phrase boundary (the first audio comes sooner; ``first_cut``) and no
chunk exceeds a bound (a 10 000-character paragraph without a full stop still streams).
"""

from __future__ import annotations

import re
import unicodedata

from huma_rt.errors import InputError

_SENTENCE_END = re.compile(r"(?<=[.!?;…])[\"')\]]*\s+")
_CLAUSE_END = re.compile(r"(?<=[,:;—–])\s+")
# The first chunk ends at the first clause boundary at least this many characters in: TTS time
# grows with the chunk's length (measured: "Sure," 0.13 s vs "Sure, I can help with that."
# 0.66 s on one loaded core), so a short first clause brings the first audio forward.
MIN_FIRST = 4
# Or, if one comes first, at a phrase boundary (before a conjunction or preposition) at least
# PHRASE_FIRST characters in: a first sentence with no early comma was spoken whole (3.5-5 s of
# audio, 0.5-1 s of Piper on one core); local LLM answers' first audio p90 857 -> 505 ms
# (bench/results/answer-chunks-2026-12-07).
PHRASE_FIRST = 20
_PHRASE_START = re.compile(
    r"\s+(?=(?:and|but|or|so|because|that|which|who|when|where|while|if|than|with|without|for|to|of|in|on|at|by"
    r"|from|as|about|into|after|before|since|until|through|during)\s)",
    re.IGNORECASE,
)
# Abbreviations whose full stop does not end a sentence (English voices).
_ABBREV = re.compile(r"\b(?:Mr|Mrs|Ms|Dr|Prof|St|Sr|Jr|vs|etc|e\.g|i\.e|No|Fig)\.$", re.IGNORECASE)
# Unicode categories that carry no speech: symbols and emoji (So, Sk), private use (Co),
# unassigned (Cn), lone surrogates (Cs) and control/format characters (Cc, Cf).
_DROP = {"So", "Sk", "Co", "Cn", "Cs", "Cc", "Cf"}


def decode_text(data: bytes | str, *, source: str = "text") -> str:
    """UTF-8 ``bytes`` (or str) -> str; invalid bytes are an InputError naming the offset.

    A str holding lone surrogates (how Python hands over undecodable command-line bytes) is
    refused the same way.
    """
    if isinstance(data, (bytes, bytearray)):
        try:
            return bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            bad = bytes(data)[exc.start : exc.start + 1]
            raise InputError(
                f"{source} is not valid UTF-8: byte 0x{bad.hex()} at offset {exc.start}; "
                "expected UTF-8 text"
            ) from exc
    if not isinstance(data, str):
        raise InputError(f"{source} must be str or UTF-8 bytes; got {type(data).__name__}")
    for i, ch in enumerate(data):
        if 0xDC80 <= ord(ch) <= 0xDCFF:  # surrogateescape of a raw byte
            raise InputError(
                f"{source} is not valid UTF-8: byte 0x{ord(ch) - 0xDC00:02x} at character {i}; "
                "expected UTF-8 text"
            )
    return data


def clean_text(text: str) -> str:
    """NFC-normalize, replace controls/newlines by spaces, drop emoji and symbols."""
    text = unicodedata.normalize("NFC", text)
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in "\n\r\t" or cat == "Zs":
            out.append(" ")
        elif cat not in _DROP:
            out.append(ch)
    return re.sub(r"\s+", " ", "".join(out)).strip()


def is_speakable(text: str) -> bool:
    """True when ``text`` has at least one letter or digit (punctuation alone says nothing)."""
    return any(unicodedata.category(ch)[0] in "LN" for ch in text)


def _split_long(chunk: str, limit: int) -> list[str]:
    """Cut ``chunk`` at clause punctuation, then at spaces, into pieces of <= limit chars."""
    if len(chunk) <= limit:
        return [chunk]
    pieces: list[str] = []
    for clause in _CLAUSE_END.split(chunk):
        while len(clause) > limit:
            cut = clause.rfind(" ", 0, limit)
            cut = cut if cut > limit // 4 else limit  # one huge "word": hard cut
            pieces.append(clause[:cut].strip())
            clause = clause[cut:].strip()
        if clause:
            if pieces and len(pieces[-1]) + 1 + len(clause) <= limit:
                pieces[-1] = f"{pieces[-1]} {clause}"
            else:
                pieces.append(clause)
    return [p for p in pieces if p]


def split_sentences(text: str) -> list[str]:
    """Sentences of cleaned ``text`` (abbreviations such as 'Dr.' do not end one)."""
    parts = _SENTENCE_END.split(text)
    out: list[str] = []
    for part in parts:
        if out and _ABBREV.search(out[-1]):
            out[-1] = f"{out[-1]} {part}"
        elif part:
            out.append(part)
    return out


def chunk_text(text: str, *, first_chars: int = 60, max_chars: int = 200, phrases: bool = True) -> list[str]:
    """Cleaned, speakable TTS chunks of ``text``.

    The first chunk is cut at its first clause or phrase boundary (``first_cut``; ``phrases``
    False: at a clause boundary only, for text spoken whole, where an early first chunk gains
    nothing); every chunk is at most ``max_chars``. Chunks without a letter or
    digit are dropped. Empty result = nothing to say (the caller decides whether that is an
    error).
    """
    if first_chars < MIN_FIRST or max_chars < first_chars:
        raise InputError(f"need {MIN_FIRST} <= first_chars <= max_chars; got {first_chars}, {max_chars}")
    chunks: list[str] = []
    for sentence in split_sentences(clean_text(text)):
        chunks.extend(_split_long(sentence, max_chars))
    chunks = [c for c in chunks if is_speakable(c)]
    if chunks and (cut := first_cut(chunks[0], first_chars, phrases=phrases)) and is_speakable(cut[1]):
        chunks[0:1] = list(cut)
    return chunks


def first_cut(sentence: str, first_chars: int, *, phrases: bool = True) -> tuple[str, str] | None:
    """The answer's first sentence (or as much of it as has arrived) -> (first chunk, the rest),
    or None while it has no boundary to cut at.

    The earliest of: a clause boundary between MIN_FIRST and ``first_chars`` characters in, and
    a phrase boundary (before a conjunction or preposition) PHRASE_FIRST or more characters in,
    where the first chunk gets a comma: the voice then ends it as a phrase (rising, a short pause)
    and not as a sentence. Text streams in left to right, so the earliest boundary is the one a
    streaming answer finds first: cutting streamed text and the whole text agree. A phrase
    boundary counts once the word after it is whole ("soul with " - not "soul with", which may
    become "soul without").
    """
    clauses = [(m.start(), m.end(), "") for m in _CLAUSE_END.finditer(sentence, 0, first_chars + 1)
               if m.start() >= MIN_FIRST]
    cuts = clauses[:1]
    if phrases:
        cuts += [(m.start(), m.end(), ",") for m in _PHRASE_START.finditer(sentence) if m.start() >= PHRASE_FIRST][:1]
    if not cuts:
        return None
    head_end, tail_start, comma = min(cuts)
    head = sentence[:head_end]
    return (head if head.endswith((",", ":", ";", "—", "–")) else head + comma), sentence[tail_start:]


# A chunk cut so that its synthesis ends before the answer's audio runs out (``pace_cut``) keeps
# at least this many characters in each piece: every Piper call costs ~5 characters' worth.
PACE_MIN = 8


def pace_cut(chunk: str, max_chars: int, *, min_chars: int = PACE_MIN) -> tuple[str, str] | None:
    """A chunk too long to synthesize before the audio ahead of it runs out -> (piece, the rest),
    or None when it has no clause or phrase boundary that leaves both sides speakable.

    The piece ends at the last boundary with at most ``max_chars`` characters before it (the
    longest piece that is in time: fewer cuts in the voice), or, when none is that early, at the
    first one at least ``min_chars`` in (the shortest piece there is). A phrase boundary gets a
    comma, as in ``first_cut``.
    """
    cuts = [(m.start(), m.end(), "") for m in _CLAUSE_END.finditer(chunk)]
    cuts += [(m.start(), m.end(), ",") for m in _PHRASE_START.finditer(chunk)]
    cuts = sorted(c for c in cuts if c[0] >= min_chars and is_speakable(chunk[c[1]:]))
    if not cuts:
        return None
    fitting = [c for c in cuts if c[0] <= max_chars]
    head_end, tail_start, comma = fitting[-1] if fitting else cuts[0]
    head = chunk[:head_end]
    return (head if head.endswith((",", ":", ";", "—", "–")) else head + comma), chunk[tail_start:]


class ChunkAssembler:
    """Cuts a stream of text deltas (a streaming responder) into TTS chunks as they complete.

    A sentence is complete once a space after its final punctuation (or more text) has arrived,
    or at ``close()``; the first chunk is released at the first sentence's first boundary
    (``first_cut``: the chunks are those ``chunk_text`` cuts from the whole text), so speech can
    start before the first sentence is finished. ``max_total`` bounds the characters released
    (the rest is dropped and ``truncated`` is set): a runaway answer cannot occupy the avatar for
    hours.
    """

    def __init__(self, *, first_chars: int = 60, max_chars: int = 200, max_total: int | None = None) -> None:
        self.first_chars, self.max_chars, self.max_total = first_chars, max_chars, max_total
        self._buf = ""
        self.released = 0  # characters handed out
        self.truncated = False

    def _release(self, pieces: list[str]) -> list[str]:
        out = []
        for piece in pieces:
            if not is_speakable(piece) or self.truncated:
                continue
            if self.max_total is not None and self.released + len(piece) > self.max_total:
                self.truncated = True
                break
            self.released += len(piece)
            out.append(piece)
        return out

    def feed(self, delta: str) -> list[str]:
        """Add a text delta; return the chunks that became complete."""
        raw = self._buf + delta
        text = clean_text(raw) + (" " if raw[-1:].isspace() else "")
        if self.truncated or not text.strip():
            self._buf = text
            return []
        parts = split_sentences(text)
        ready = parts[:-1]
        rest = parts[-1] if parts else ""
        # "...end. " with the space already here: the sentence is over (unless "Dr. ").
        if text.endswith(" ") and re.search(r"[.!?;…][\"')\]]*$", rest) and not _ABBREV.search(rest):
            ready, rest = [*ready, rest], ""
        if self.released == 0 and not ready and (cut := first_cut(rest + (" " if text.endswith(" ") else ""),
                                                                   self.first_chars)):
            ready, rest = [cut[0]], cut[1].strip()
        if len(rest) > self.max_chars:
            long_parts = _split_long(rest, self.max_chars)
            ready, rest = ready + long_parts[:-1], long_parts[-1]
        pieces: list[str] = []
        for sentence in ready:
            pieces.extend(_split_long(sentence, self.max_chars))
        self._buf = rest + (" " if text.endswith(" ") and rest else "")
        return self._release(pieces)

    def close(self) -> list[str]:
        """End of the answer: return what is left."""
        rest, self._buf = self._buf.strip(), ""
        return self._release(_split_long(rest, self.max_chars)) if rest else []
