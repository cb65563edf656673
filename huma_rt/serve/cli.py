"""``huma-rt serve``: talk to the avatar in a browser (WebRTC; one worker process per visitor).

Arguments are checked (and the bundle found or built) before the server starts; each worker
then loads the avatar, voice, VAD and ASR itself, so a bad model shows as an error at start-up,
not when the first visitor arrives.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from huma_rt.errors import InputError
from huma_rt.speech.cli import (
    add_asr_arguments,
    add_responder_arguments,
    asr_config,
    responder_options,
    turn_config,
)

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", type=Path, help="avatar bundle (default: the demo avatar)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; anything else needs --token)")
    parser.add_argument("--port", type=int, default=8080, help="HTTP port (0: any free port)")
    parser.add_argument("--token", default=os.environ.get("HUMA_SERVE_TOKEN"),
                        help="access token for /offer (env HUMA_SERVE_TOKEN); required off loopback")
    parser.add_argument("--public-media", action="store_true",
                        help="offer WebRTC media on every interface even with --host 127.0.0.1 (behind a "
                             "reverse proxy: HTTP via the proxy, media straight to this host; needs --token)")
    parser.add_argument("--max-visitors", type=int, default=4, help="concurrent visitors (beyond: 'busy')")
    parser.add_argument("--warm", type=int, default=1, help="loaded spare worker processes kept ready")
    parser.add_argument("--idle-timeout", type=float, default=300.0,
                        help="end a visit after this many seconds with no speech and no text")
    parser.add_argument("--media", choices=("packets", "frames"), default="packets",
                        help="packets: each worker encodes VP8/Opus itself and does not re-encode an "
                             "unchanged picture (default); frames: aiortc encodes every frame (for A/B)")
    parser.add_argument("--no-blink", action="store_true",
                        help="the avatar's eyes stay open (default: it blinks every few seconds when its bundle "
                             "has a blink code)")
    parser.add_argument("--threads", type=int, default=1,
                        help="avatar threads per worker (default 1: one visitor per core; measured under load "
                             "66 ms a frame on 1 thread vs 214 ms on 2)")
    asr = add_asr_arguments(parser, "speech recognition")
    asr.add_argument("--no-asr", action="store_true", help="no speech recognition (questions typed only)")
    asr.add_argument("--barge-in", type=float, default=0.3,
                     help="seconds of the visitor's speech (from its start; the VAD needs 0.25) that cut an "
                          "answer in progress")
    resp = add_responder_arguments(parser)
    resp.add_argument("--max-answer-chars", type=int, default=2000)
    resp.add_argument("--no-speculate", action="store_true",
                      help="call the responder only once the turn has ended (default: the answer to the text "
                           "heard at the pause is made during the turn's silence, and dropped unheard if the "
                           "visitor goes on: a paid endpoint is then called for it too)")
    resp.add_argument("--history", type=int, default=16, metavar="N",
                      help="the visit's last N exchanges (question, answer) go to the responder with each "
                           "question, so a follow-up has its context (0: every question alone)")
    tts = parser.add_argument_group("voice")
    tts.add_argument("--voice", type=Path, help="Piper voice .onnx (default: the packaged en_US joe voice)")
    tts.add_argument("--speed", type=float, default=1.0, help="speaking speed (> 1 faster)")
    tts.add_argument("--tts-threads", type=int, default=1, help="TTS threads per worker")


def _responder(args) -> tuple[str, dict]:
    from huma_rt.speech.responder import make_responder

    kind, options = responder_options(args)
    if kind == "local":  # checked and its decoder built (once) here; only the workers load it
        from huma_rt.speech.local_llm import LocalLLMConfig, build_model

        build_model(LocalLLMConfig(**options))
    else:
        make_responder(kind, **options)  # bad options fail here, not in every worker
    return kind, options


def _asr(args) -> dict | None:
    """The ASR the chat command uses, as AsrConfig fields: ``--asr-model DIR``, else the shipped
    Moonshine tiny-en. None (speech detected, not understood) with --no-asr, or when the shipped
    model is not installed (a warning says how to install it)."""
    from huma_rt.errors import MissingDependencyError
    from huma_rt.speech.asr import detect_layout

    if args.no_asr:
        return None
    cfg = asr_config(args, num_threads=1)
    try:
        detect_layout(cfg)  # layout errors before anything starts
    except MissingDependencyError as exc:
        if args.asr_model is not None:
            raise
        print(f"warning: no speech recognition ({exc}); spoken questions are detected (and cut "
              "answers) but not understood: type questions in the page", file=sys.stderr)  # fmt: skip
        return None
    return cfg.to_dict()


def worker_config(args):
    """The WorkerConfig every visitor's process gets, from the command line."""
    from huma_rt.serve.server import is_loopback
    from huma_rt.serve.worker import WorkerConfig

    if args.idle_timeout <= 0:
        raise InputError(f"--idle-timeout must be > 0 seconds; got {args.idle_timeout}")
    if args.voice is not None and not args.voice.is_file():
        raise InputError(f"--voice {args.voice} does not exist")
    responder, options = _responder(args)
    asr = _asr(args)
    bundle = args.bundle
    if bundle is None:
        from huma_rt.export.demo.bundle import ensure_bundle

        bundle, built = ensure_bundle()
        if built:
            print(f"built the demo avatar bundle at {bundle}", file=sys.stderr)
    elif not bundle.exists():
        raise InputError(f"--bundle {bundle} does not exist")
    level = logging.getLogger().getEffectiveLevel()
    return WorkerConfig(
        bundle=str(Path(bundle).resolve()), responder=responder, responder_options=options, asr=asr,
        voice=str(args.voice) if args.voice else None, speed=args.speed, tts_threads=args.tts_threads,
        threads=args.threads, barge_in_s=args.barge_in,
        turns=turn_config(args).to_dict(),
        max_answer_chars=args.max_answer_chars, speculate=not args.no_speculate, history_turns=args.history,
        blink=not args.no_blink, idle_timeout_s=args.idle_timeout,
        loopback=is_loopback(args.host) and not args.public_media, media=args.media, log_level=level)  # fmt: skip


def run(args) -> int:
    from huma_rt._optional import require

    require("aiohttp", "huma-rt serve (pip install 'huma-rt[serve]')")
    require("aiortc", "huma-rt serve (pip install 'huma-rt[serve]')")
    from huma_rt.serve.pool import WorkerPool
    from huma_rt.serve.server import ServerConfig, serve

    config = ServerConfig(host=args.host, port=args.port, token=args.token or None,
                          max_visitors=args.max_visitors, warm=args.warm,
                          public_media=args.public_media)  # fmt: skip
    config.validate()  # the token rule before any model is touched
    pool = WorkerPool(worker_config(args).to_json(), max_visitors=config.max_visitors, warm=config.warm)

    def announce(line: str) -> None:
        print(line, flush=True)

    asyncio.run(serve(config, pool, announce))
    return 0
