"""The speech chain: VAD -> ASR -> responder -> TTS -> avatar session (see docs/speech.md).

The public names below load lazily (sherpa-onnx is imported only when a stage is built), so
importing this package costs nothing.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "PiperTTS": "huma_rt.speech.tts",
    "StreamingVad": "huma_rt.speech.vad",
    "VadConfig": "huma_rt.speech.vad",
    "AsrConfig": "huma_rt.speech.asr",
    "Recognizer": "huma_rt.speech.asr",
    "EchoResponder": "huma_rt.speech.responder",
    "ScriptedResponder": "huma_rt.speech.responder",
    "OpenAIResponder": "huma_rt.speech.responder",
    "OpenAIConfig": "huma_rt.speech.responder",
    "LocalLLMResponder": "huma_rt.speech.local_llm",
    "LocalLLMConfig": "huma_rt.speech.local_llm",
    "ChatPipeline": "huma_rt.speech.pipeline",
    "PipelineConfig": "huma_rt.speech.pipeline",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'huma_rt.speech' has no attribute {name!r}")
