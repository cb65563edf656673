"""The speech chain: VAD -> ASR -> responder -> TTS -> avatar session (see docs/speech.md).

Submodules import sherpa-onnx lazily; importing this package costs nothing.
"""
