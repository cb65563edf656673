"""One answer of a served ``Conversation`` without a browser, for tests that only look at how it
was made (its events, its stats)."""

from __future__ import annotations

import time


def wait_for(cond, timeout: float, what: str) -> None:
    """Poll ``cond()`` every 50 ms; AssertionError naming ``what`` after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def answer_once(avatar, tts, responder, question: str = "What is the weather like?"):
    """A started conversation asked one typed question, stopped once the answer ended (its
    frames are dropped) -> (the conversation, its events)."""
    from huma_rt.serve.conversation import Conversation, ConversationConfig

    events: list[dict] = []
    conv = Conversation(avatar, tts, responder, None, lambda *a, **k: None, events.append, ConversationConfig())
    conv.start()
    try:
        conv.ask(question)
        wait_for(lambda: any(e["type"] == "answer_end" for e in events), 60, "the answer to end")
    finally:
        conv.stop()
    return conv, events
