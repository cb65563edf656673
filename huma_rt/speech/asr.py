"""Speech recognition: the shipped Moonshine tiny-en, or a sherpa-onnx model directory.

``AsrConfig()`` is the shipped model: Moonshine tiny-en from the ``moonshine-voice==0.1.0``
wheel (see :mod:`huma_rt.speech.moonshine`), offline, run by sherpa-onnx on each utterance the
VAD cuts out. ``AsrConfig(model_dir=DIR)`` brings your own sherpa-onnx model directory
(docs/speech.md lists the layouts). The layout is detected from file names and ONNX metadata,
and every file is checked to exist and to be a well-formed model *before* sherpa-onnx sees it:
sherpa-onnx answers some bad models with ``exit(-1)`` or a crash, which no caller could catch.

Layouts (``*`` = any prefix/suffix; ``.int8`` variants preferred when ``prefer_int8``):
- moonshine (v2, offline): ``encoder_model*.ort|onnx decoder_model_merged*.ort|onnx`` and
  ``tokenizer.bin`` or ``tokens.txt``
- transducer: ``encoder*.onnx decoder*.onnx joiner*.onnx tokens.txt`` (online or offline)
- paraformer (online): ``encoder*.onnx decoder*.onnx tokens.txt``
- paraformer (offline) / sense-voice: ``model*.onnx tokens.txt``
- whisper: ``<name>-encoder*.onnx <name>-decoder*.onnx <name>-tokens.txt``
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from huma_rt._optional import require
from huma_rt.errors import FormatError, InputError
from huma_rt.model_config import _JsonConfig  # to_dict/from_dict/save/load
from huma_rt.speech._onnx_meta import scan_model
from huma_rt.speech.audio import TARGET_RATE, to_mono_float
from huma_rt.speech.text import is_speakable

log = logging.getLogger(__name__)

KINDS = ("moonshine", "transducer", "paraformer", "whisper", "sense-voice")
SHIPPED = "Moonshine tiny-en (moonshine-voice 0.1.0)"
# Shorter input holds no word (and Moonshine's encoder needs >= 895 samples: its convolutions).
MIN_SAMPLES = TARGET_RATE // 10
# Input whose peak is below -60 dBFS is silence; Moonshine makes up text ('♪♪♪') for it.
SILENCE_PEAK = 1e-3
# Encoder metadata keys only streaming (chunked) exports carry (icefall zipformer/conformer,
# streaming paraformer).
_STREAMING_KEYS = {"decode_chunk_len", "T", "left_context_len", "chunk_size", "context_size_left"}


@dataclass
class AsrConfig(_JsonConfig):
    """Where the ASR model is and how to run it.

    model_dir: a sherpa-onnx model directory; '' (the default) = the shipped Moonshine tiny-en.
    kind: 'auto' or one of KINDS. mode: 'auto', 'online' (streaming) or 'offline'.
    language: whisper / sense-voice language ('' = auto; Moonshine tiny-en is English only).
    num_threads: 1 by default: on the shared 2-core machine Moonshine decoded 2-3x faster on 1
    thread than on 2 (its token-by-token decoder gains little from a second thread, and
    onnxruntime's spinning threads lose a lot when the cores are busy; docs/speech.md).
    """

    model_dir: str = ""
    kind: str = "auto"
    mode: str = "auto"
    num_threads: int = 1
    prefer_int8: bool = True
    language: str = ""
    decoding_method: str = "greedy_search"



@dataclass
class AsrLayout:
    """A detected model directory: kind, streaming or not, and the files by role."""

    kind: str
    streaming: bool
    files: dict[str, Path] = field(default_factory=dict)
    packaged: bool = False  # the shipped Moonshine model (files checked by their digests)


def _pick(model_dir: Path, pattern: str, prefer_int8: bool) -> Path | None:
    rx = re.compile(pattern)
    found = sorted(p for p in model_dir.iterdir() if p.is_file() and rx.fullmatch(p.name))
    if not found:
        return None
    int8 = [p for p in found if ".int8." in p.name]
    plain = [p for p in found if ".int8." not in p.name]
    order = (int8 + plain) if prefer_int8 else (plain + int8)
    return order[0]


def _check_onnx(path: Path, role: str) -> dict[str, str]:
    if path.stat().st_size == 0:
        raise FormatError(f"ASR {role} model {path} is empty")
    meta, fields = scan_model(path)
    if 7 not in fields:
        raise FormatError(f"ASR {role} model {path} is not an ONNX model (no graph)")
    return meta


_TOKEN_ID = re.compile(r"[+-]?[0-9]{1,10}")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_MAX_TOKENS_BYTES = 64 << 20


def check_tokens(path: Path, *, base64: bool = False) -> int:
    """Check a sherpa-onnx ``tokens.txt`` as sherpa-onnx 2.0.1 reads it; return its line count.

    Each line is ``<symbol> <id>`` or ``<id>`` alone (an empty symbol); a third field or an id
    that is not an integer makes sherpa-onnx end the process (``exit(-1)``), as does a symbol
    that is not base64 where the model's tokens are base64 (Moonshine).
    """
    size = path.stat().st_size
    if size == 0 or size > _MAX_TOKENS_BYTES:
        raise FormatError(f"ASR tokens file {path} is {size} bytes; expected 1 B .. 64 MiB")
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise FormatError(f"ASR tokens file {path} is not UTF-8 text: {exc}") from exc
    for n, line in enumerate(lines, 1):
        fields = line.split()
        bad = len(fields) > 2 or len(fields) == 2 and not _TOKEN_ID.fullmatch(fields[1]) \
            or base64 and len(fields) == 2 and not _BASE64.fullmatch(fields[0])
        if bad or len(fields) == 2 and not -2**31 <= int(fields[1]) < 2**31:
            raise FormatError(f"ASR tokens file {path} line {n} is {line[:60]!r}; expected '<symbol> <integer id>'"
                              + (" with a base64 symbol" if base64 else ""))
    return len(lines)


def detect_layout(config: AsrConfig) -> AsrLayout:
    """Find and check the model files of ``config.model_dir`` ('' = the shipped Moonshine);
    FormatError says what is wrong."""
    if config.kind not in ("auto", *KINDS):
        raise InputError(f"ASR kind must be 'auto' or one of {list(KINDS)}; got {config.kind!r}")
    if config.mode not in ("auto", "online", "offline"):
        raise InputError(f"ASR mode must be 'auto', 'online' or 'offline'; got {config.mode!r}")
    if isinstance(config.num_threads, bool) or not isinstance(config.num_threads, int) \
            or not 1 <= config.num_threads <= 64:
        raise InputError(f"ASR num_threads must be an integer in 1..64; got {config.num_threads!r}")
    if not config.model_dir:
        if config.kind not in ("auto", "moonshine"):
            raise InputError(f"ASR kind {config.kind!r} needs model_dir (a model directory); "
                             "without one the shipped Moonshine model is used")
        return _moonshine_layout(config, None)
    d = Path(config.model_dir)
    if not d.is_dir():
        raise FormatError(f"ASR model directory {d} does not exist (see docs/speech.md for layouts)")
    i8 = config.prefer_int8
    names = sorted(p.name for p in d.iterdir())
    whisper_tokens = _pick(d, r".+-tokens\.txt", i8)
    tokens = d / "tokens.txt" if (d / "tokens.txt").is_file() else whisper_tokens
    enc = _pick(d, r"(.*[-_.])?encoder.*\.onnx", i8)
    dec = _pick(d, r"(.*[-_.])?decoder.*\.onnx", i8)
    joiner = _pick(d, r"(.*[-_.])?joiner.*\.onnx", i8)
    model = _pick(d, r"model.*\.onnx", i8)
    lowered = d.name.lower()

    kind = config.kind
    if kind == "moonshine" or kind == "auto" and _pick(d, _MOONSHINE_DECODER, i8):
        return _moonshine_layout(config, d)
    if kind == "auto":
        if joiner and enc and dec:
            kind = "transducer"
        elif whisper_tokens and enc and dec or "whisper" in lowered:
            kind = "whisper"
        elif enc and dec:
            kind = "paraformer"
        elif model:
            meta = _check_onnx(model, "model")
            if "sense" in lowered or {"with_itn", "lang_auto", "lang_zh"} & set(meta):
                kind = "sense-voice"
            elif "paraformer" in lowered or meta.get("model_type", "").startswith("paraformer"):
                kind = "paraformer"
            else:
                raise FormatError(
                    f"{d} has {model.name} + tokens.txt, which fits both paraformer and sense-voice; "
                    "set kind ('--asr-kind paraformer' or '--asr-kind sense-voice')"
                )
        else:
            raise FormatError(
                f"{d} is not a sherpa-onnx ASR model directory: found {names[:12]}; expected one of "
                "encoder/decoder/joiner(.int8).onnx + tokens.txt (transducer), "
                "encoder/decoder.onnx or model.onnx + tokens.txt (paraformer), "
                "<name>-encoder/-decoder.onnx + <name>-tokens.txt (whisper), model.onnx + tokens.txt (sense-voice), "
                "encoder_model/decoder_model_merged.ort|onnx + tokenizer.bin (moonshine)"
            )

    need: dict[str, Path | None]
    if kind == "transducer":
        need = {"encoder": enc, "decoder": dec, "joiner": joiner, "tokens": tokens}
    elif kind == "whisper":
        need = {"encoder": enc, "decoder": dec, "tokens": tokens}
    elif kind == "paraformer" and (enc or dec) and not model:
        need = {"encoder": enc, "decoder": dec, "tokens": tokens}
    else:  # offline paraformer, sense-voice
        need = {"model": model, "tokens": tokens}
    missing = [role for role, p in need.items() if p is None]
    if missing:
        raise FormatError(f"{kind} model in {d} lacks its {', '.join(missing)} file(s); found {names[:12]}")
    files = {role: p for role, p in need.items() if p is not None}
    metas = {role: _check_onnx(p, role) for role, p in files.items() if role != "tokens"}
    check_tokens(files["tokens"])

    if kind in ("whisper", "sense-voice"):
        can_stream = False
    elif kind == "paraformer":
        can_stream = "model" not in files
    else:
        can_stream = bool(_STREAMING_KEYS & set(metas["encoder"])) or "streaming" in lowered
    if config.mode == "online" and not can_stream:
        raise FormatError(f"{kind} model in {d} is not a streaming model; use mode 'offline'")
    streaming = can_stream if config.mode == "auto" else config.mode == "online"
    return AsrLayout(kind, streaming, files)


_MOONSHINE_ENCODER = r"encoder_model.*\.(ort|onnx)"
_MOONSHINE_DECODER = r"decoder_model_merged.*\.(ort|onnx)"


def _moonshine_layout(config: AsrConfig, d: Path | None) -> AsrLayout:
    """The shipped Moonshine (``d`` None) or a Moonshine v2 directory, structurally checked."""
    from huma_rt.speech import moonshine

    if config.mode == "online":
        raise FormatError("Moonshine is an offline (non-streaming) model; use mode 'offline' or 'auto'")
    if config.language not in ("", "en"):
        raise InputError(f"Moonshine tiny-en recognizes English only; got language {config.language!r}")
    if d is None:
        m = moonshine.packaged_model()
        return AsrLayout("moonshine", False, {"encoder": m.encoder, "decoder": m.decoder,
                                              "tokenizer": m.tokenizer}, packaged=True)
    i8 = config.prefer_int8
    files = {"encoder": _pick(d, _MOONSHINE_ENCODER, i8), "decoder": _pick(d, _MOONSHINE_DECODER, i8)}
    if (d / "tokens.txt").is_file():
        files["tokens"] = d / "tokens.txt"
    elif (d / "tokenizer.bin").is_file():
        files["tokenizer"] = d / "tokenizer.bin"
    missing = [r for r in ("encoder", "decoder") if files[r] is None] + (
        [] if "tokens" in files or "tokenizer" in files else ["tokenizer.bin (or tokens.txt)"])
    if missing:
        raise FormatError(
            f"Moonshine model in {d} lacks its {', '.join(missing)}; expected encoder_model.ort|onnx, "
            f"decoder_model_merged.ort|onnx and tokenizer.bin; found {sorted(p.name for p in d.iterdir())[:12]}"
        )
    for role in ("encoder", "decoder"):
        moonshine.check_model_file(files[role], role)
    if "tokenizer" in files:
        moonshine.tokenizer_vocab(files["tokenizer"])  # FormatError if malformed
    else:
        check_tokens(files["tokens"], base64=True)
    return AsrLayout("moonshine", False, {k: v for k, v in files.items() if v is not None})


@dataclass
class AsrResult:
    """A transcript with the compute time spent and the audio length (for the RTF)."""

    text: str
    compute_s: float
    audio_s: float

    @property
    def rtf(self) -> float:
        return self.compute_s / self.audio_s if self.audio_s else float("nan")


class Recognizer:
    """A sherpa-onnx recognizer over 16 kHz mono audio: ``transcribe(pcm) -> AsrResult``.

    config: default ``AsrConfig()``, the shipped Moonshine tiny-en. cache_dir: where Moonshine's
    tokens.txt and file digests are kept (default ``$HUMA_RT_CACHE`` or ``~/.cache/huma-rt``,
    under ``asr/``). ``load_s``: seconds the model took to load; ``description``: which model.
    """

    def __init__(self, config: AsrConfig | None = None, *, cache_dir: str | Path | None = None) -> None:
        self.config = config = config or AsrConfig()
        self.layout = detect_layout(config)
        so = require("sherpa_onnx", "speech recognition")
        f, c, k = self.layout.files, config, self.layout.kind
        common = {"num_threads": c.num_threads, "decoding_method": c.decoding_method}
        self.description = SHIPPED if self.layout.packaged else f"{k} model {c.model_dir}"
        t0 = time.perf_counter()
        if k == "moonshine":
            tokens = self._moonshine_tokens(cache_dir)
            self._rec = so.OfflineRecognizer.from_moonshine_v2(
                encoder=str(f["encoder"]), decoder=str(f["decoder"]), tokens=str(tokens), **common)
        elif self.layout.streaming:
            if k == "transducer":
                self._rec = so.OnlineRecognizer.from_transducer(
                    tokens=str(f["tokens"]), encoder=str(f["encoder"]), decoder=str(f["decoder"]),
                    joiner=str(f["joiner"]), **common)
            else:
                self._rec = so.OnlineRecognizer.from_paraformer(
                    tokens=str(f["tokens"]), encoder=str(f["encoder"]), decoder=str(f["decoder"]), **common)
        elif k == "transducer":
            self._rec = so.OfflineRecognizer.from_transducer(
                encoder=str(f["encoder"]), decoder=str(f["decoder"]), joiner=str(f["joiner"]),
                tokens=str(f["tokens"]), **common)
        elif k == "paraformer":
            self._rec = so.OfflineRecognizer.from_paraformer(paraformer=str(f["model"]), tokens=str(f["tokens"]), **common)
        elif k == "whisper":
            self._rec = so.OfflineRecognizer.from_whisper(
                encoder=str(f["encoder"]), decoder=str(f["decoder"]), tokens=str(f["tokens"]),
                language=c.language or "en", **common)
        else:
            self._rec = so.OfflineRecognizer.from_sense_voice(
                model=str(f["model"]), tokens=str(f["tokens"]), language=c.language, **common)
        self.load_s = time.perf_counter() - t0
        log.info("loaded %s ASR (%s) in %.2f s", self.description, "online" if self.layout.streaming else "offline",
                 self.load_s)

    def _moonshine_tokens(self, cache_dir: str | Path | None) -> Path:
        """Check the Moonshine files deeply (sherpa-onnx crashes on wrong graphs) -> tokens.txt."""
        from huma_rt.speech import moonshine

        f, cache = self.layout.files, moonshine.cache_dir(cache_dir)
        if self.layout.packaged:
            moonshine.verify_packaged(moonshine.MoonshineFiles(f["encoder"], f["decoder"], f["tokenizer"]), cache)
            vocab = moonshine.PACKAGED_VOCAB
        else:
            vocab = moonshine.check_signature(f["encoder"], f["decoder"])
        if "tokenizer" in f:
            return moonshine.ensure_tokens(f["tokenizer"], cache, vocab)
        lines = check_tokens(f["tokens"], base64=True)
        if lines != vocab:
            raise FormatError(f"{f['tokens']} has {lines} lines; the decoder's vocabulary has {vocab} tokens")
        return f["tokens"]

    def transcribe(self, pcm: np.ndarray) -> AsrResult:
        """Recognize one utterance of 16 kHz mono float32 audio [S].

        Empty, too short (< MIN_SAMPLES) or silent (peak < SILENCE_PEAK) input gives empty
        text without running the model; a transcript without a letter or digit (Moonshine
        answers noise with '♪♪♪') is returned as empty text.
        """
        x = to_mono_float(pcm, name="ASR input")
        audio_s = x.size / TARGET_RATE
        if x.size < MIN_SAMPLES or float(np.max(np.abs(x))) < SILENCE_PEAK:
            return AsrResult("", 0.0, audio_s)
        t0 = time.perf_counter()
        stream = self._rec.create_stream()
        if self.layout.streaming:
            stream.accept_waveform(TARGET_RATE, x)
            # Tail padding flushes the encoder's right context, as sherpa's examples do.
            stream.accept_waveform(TARGET_RATE, np.zeros(int(0.66 * TARGET_RATE), np.float32))
            stream.input_finished()
            while self._rec.is_ready(stream):
                self._rec.decode_stream(stream)
            text = self._rec.get_result(stream)
        else:
            stream.accept_waveform(TARGET_RATE, x)
            self._rec.decode_stream(stream)
            text = stream.result.text
        text = str(text).strip()
        return AsrResult(text if is_speakable(text) else "", time.perf_counter() - t0, audio_s)
