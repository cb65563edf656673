"""Speech recognition: sherpa-onnx online (streaming) and offline recognizers from a model dir.

No ASR model ships with huma-rt (none is on the package indexes); the user points
``AsrConfig.model_dir`` at a sherpa-onnx model directory (docs/speech.md lists the layouts).
The layout is detected from file names and ONNX metadata, and every file is checked to exist
and to be a well-formed ONNX model *before* sherpa-onnx sees it: sherpa-onnx answers some bad
models with ``exit(-1)``, which no caller could catch.

Layouts (``*`` = any prefix/suffix; ``.int8`` variants preferred when ``prefer_int8``):
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

log = logging.getLogger(__name__)

KINDS = ("transducer", "paraformer", "whisper", "sense-voice")
# Encoder metadata keys only streaming (chunked) exports carry (icefall zipformer/conformer,
# streaming paraformer).
_STREAMING_KEYS = {"decode_chunk_len", "T", "left_context_len", "chunk_size", "context_size_left"}


@dataclass
class AsrConfig(_JsonConfig):
    """Where the ASR model is and how to run it.

    model_dir: a sherpa-onnx model directory. kind: 'auto' or one of KINDS. mode: 'auto',
    'online' (streaming) or 'offline'. language: whisper / sense-voice language ('' = auto).
    """

    model_dir: str
    kind: str = "auto"
    mode: str = "auto"
    num_threads: int = 2
    prefer_int8: bool = True
    language: str = ""
    decoding_method: str = "greedy_search"



@dataclass
class AsrLayout:
    """A detected model directory: kind, streaming or not, and the files by role."""

    kind: str
    streaming: bool
    files: dict[str, Path] = field(default_factory=dict)


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


def detect_layout(config: AsrConfig) -> AsrLayout:
    """Find and check the model files of ``config.model_dir``; FormatError says what is wrong."""
    if config.kind not in ("auto", *KINDS):
        raise InputError(f"ASR kind must be 'auto' or one of {list(KINDS)}; got {config.kind!r}")
    if config.mode not in ("auto", "online", "offline"):
        raise InputError(f"ASR mode must be 'auto', 'online' or 'offline'; got {config.mode!r}")
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
                "<name>-encoder/-decoder.onnx + <name>-tokens.txt (whisper), model.onnx + tokens.txt (sense-voice)"
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
    if files["tokens"].stat().st_size == 0:
        raise FormatError(f"ASR tokens file {files['tokens']} is empty")

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
    """A sherpa-onnx recognizer over 16 kHz mono audio: ``transcribe(pcm) -> AsrResult``."""

    def __init__(self, config: AsrConfig) -> None:
        self.config = config
        self.layout = detect_layout(config)
        so = require("sherpa_onnx", "speech recognition")
        f, c, k = self.layout.files, config, self.layout.kind
        common = {"num_threads": c.num_threads, "decoding_method": c.decoding_method}
        t0 = time.perf_counter()
        if self.layout.streaming:
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
        log.info("loaded %s ASR (%s) in %.2f s", k, "online" if self.layout.streaming else "offline",
                 time.perf_counter() - t0)

    def transcribe(self, pcm: np.ndarray) -> AsrResult:
        """Recognize one utterance of 16 kHz mono float32 audio [S]."""
        x = to_mono_float(pcm, name="ASR input")
        if x.size == 0:
            raise InputError("ASR input is empty; expected at least one sample")
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
        return AsrResult(str(text).strip(), time.perf_counter() - t0, x.size / TARGET_RATE)
