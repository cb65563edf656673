"""Word error rate and the known sentences the ASR is measured on (tests and bench/speech.py).

The sentences are questions and requests a talking avatar hears; they are spoken by the
project's Piper voice and by espeak-ng, so the audio is real speech with a known transcript.
"""

from __future__ import annotations

import re

SENTENCES = (
    "What is the weather like today in Paris?",
    "Can you tell me a short story about a dragon?",
    "How far is the moon from the earth?",
    "Please remind me to call my mother tomorrow morning.",
    "I would like a cup of coffee with milk and sugar.",
    "Where is the nearest train station?",
    "Turn off the lights in the kitchen, please.",
    "Who wrote the book about the old man and the sea?",
)

_NOT_WORD = re.compile(r"[^\w' ]+")
# "'s" after these is "is" ("where's" = "where is"); other contractions are left as spoken
_IS_CONTRACTED = {"what", "where", "who", "how", "it", "that", "there", "here", "he", "she"}


def words(text: str) -> list[str]:
    """Lower-case words for scoring: punctuation is a space, a hyphen joins ("to-day" = "today",
    as Moonshine writes it), "where's" is "where is"; other apostrophes stay."""
    out: list[str] = []
    for w in _NOT_WORD.sub(" ", text.lower().replace("-", "")).split():
        w = w.strip("'")
        if w.endswith("'s") and w[:-2] in _IS_CONTRACTED:
            out += [w[:-2], "is"]
        elif w:
            out.append(w)
    return out


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference word count): word-level Levenshtein."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        diag, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            diag, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diag + (r != h))
    return row[len(hyp)], len(ref)


def word_error_rate(pairs: list[tuple[str, str]]) -> float:
    """Corpus WER of [(reference, hypothesis)]: all errors over all reference words."""
    errors = total = 0
    for ref, hyp in pairs:
        e, n = word_errors(ref, hyp)
        errors, total = errors + e, total + n
    return errors / total if total else 0.0
