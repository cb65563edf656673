"""Speech-chain latency: text -> first video frame, and the full chain with a fast responder.

Scenarios (medians and p95 over repeats, after a warm-up turn):
- ``tts_first_audio``: text -> first 16 kHz audio chunk of the packaged Piper voice.
- ``text_to_first_frame``: ``ChatPipeline.run_text`` with an instant responder -> first frame.
- ``asr_load`` / ``asr_decode`` / ``asr_rtf`` / ``asr_wer``: the shipped ASR (Moonshine tiny-en):
  load time, decode latency of 1, 3 and 8 s segments of Piper speech on 1 and 2 threads, the
  real-time factor over the test sentences, and the word error rate on them (Piper voice and
  espeak-ng, whole clips). Skipped (and said so) without moonshine-voice.
- ``full_chain``: real espeak-ng speech fed at real time -> end of turn (silero VAD + the ASR's
  text during the silence, huma_rt.speech.turns; ASR: --asr-model, else the shipped Moonshine
  tiny-en, else the known transcript, reported as such) ->
  OpenAI-compatible responder on a local HTTP server streaming at once -> TTS -> first frame.
The avatar is ``--bundle`` (default: the demo avatar when the demo command provides it). If the
runtime is not installed, a null avatar that renders nothing is used and the result says so.

    python -m huma_rt.bench.speech [--quick] [--bundle DIR] [--repeat N] [--out bench-results]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from huma_rt.bench.common import stats_ms, write_result

from huma_rt.speech.asr import AsrResult
from huma_rt.speech.pipeline import ChatPipeline, PipelineConfig
from huma_rt.speech.responder import OpenAIConfig, OpenAIResponder, ScriptedResponder
from huma_rt.speech.turns import TurnConfig

log = logging.getLogger(__name__)

ANSWER = "Sure, I can help with that. The weather in Paris is mild today, with a light breeze."
QUESTION = "What is the weather like today in Paris?"


class _NullAvatar:
    """Used only when huma_rt.runtime is missing: frames follow the timing contract (640
    samples + 1400 lookahead), nothing is rendered. Results say 'avatar: null'."""

    fps, sample_rate, size = 25, 16000, (8, 8)

    def session(self, live=False):
        return _NullSession()


class _NullSession:
    def __init__(self):
        self.pushed, self.done, self.next = 0, False, 0
        self.rgb = np.zeros((8, 8, 3), np.uint8)

    def push_audio(self, pcm, sample_rate=16000):
        self.pushed += pcm.size

    def finish(self):
        self.done = True

    def frames(self):
        from types import SimpleNamespace

        while 640 * (self.next + 1) + 1400 <= self.pushed or (self.done and 640 * self.next < self.pushed):
            t = self.next
            self.next += 1
            yield SimpleNamespace(index=t, pts=t / 25, sample_start=640 * t, sample_end=640 * t + 640, rgb=self.rgb)


def _untrained_demo_bundle(out: Path) -> Path:
    """The demo head with seeded untrained networks: same Gaussians, camera and network sizes
    as the demo avatar (so the same per-frame cost) when no trained demo checkpoint exists."""
    import torch
    from huma_rt.export.demo.head import HeadSpec, build_background, build_camera, build_head
    from huma_rt.export.models import AudioEncoder, Deformer, SpatialEncoder
    from huma_rt.export.onnx_export import export_models

    from huma_rt.bundle import AvatarSource, pack
    from huma_rt.model_config import DeformerConfig, EncoderConfig

    torch.manual_seed(0)
    spec = HeadSpec()
    export_models(out / "export", AudioEncoder(EncoderConfig()), SpatialEncoder(DeformerConfig()),
                  Deformer(DeformerConfig()))
    source = AvatarSource(gaussians=build_head(spec), camera=build_camera(spec.image_size),
                          background=build_background(spec.image_size), export_dir=out / "export",
                          name="demo-head-untrained")
    return Path(pack(source, out / "bundle"))


def _load_avatar(bundle: str | None, scratch: Path):
    try:
        from huma_rt.runtime import Avatar
    except ImportError:
        return _NullAvatar(), "null (huma_rt.runtime not installed)"
    if bundle is None:
        from huma_rt.export.demo.bundle import ensure_bundle

        from huma_rt.errors import FormatError

        try:
            bundle = ensure_bundle()[0]
        except FormatError as exc:  # no trained demo checkpoint in this tree
            log.warning("demo bundle unavailable (%s); using the demo head with untrained networks", exc)
            return Avatar.load(_untrained_demo_bundle(scratch)), "demo head, untrained networks (no demo checkpoint)"
    return Avatar.load(bundle), str(bundle)


class _SseHandler(BaseHTTPRequestHandler):
    """A fast OpenAI-compatible endpoint: streams ANSWER word by word with no delay."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        words = ANSWER.split(" ")
        events = [{"choices": [{"delta": {"content": w + (" " if i < len(words) - 1 else "")}}]}
                  for i, w in enumerate(words)]
        events.append({"choices": [{"delta": {}, "finish_reason": "stop"}]})
        for ev in events:
            data = b"data: " + json.dumps(ev).encode() + b"\n\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.write(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")
        self.wfile.flush()


class _KnownTranscript:
    """Stands in for ASR when no --asr-model is given (none is obtainable here): returns the
    question's known text; reported as 'asr: known transcript'."""

    def transcribe(self, pcm):
        return AsrResult(QUESTION, 0.0, pcm.size / 16000)


def _speech_question() -> np.ndarray:
    from huma_rt.speech.audio import prepare_input, read_wav

    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is needed for the full-chain scenario")
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "q.wav"
        subprocess.run([exe, "-v", "en-us", "-w", str(path), QUESTION], check=True)
        pcm, rate = read_wav(path)
    x = prepare_input(pcm, rate)
    return np.concatenate([np.zeros(4000, np.float32), x, np.zeros(16000, np.float32)])


def _espeak_clip(text: str) -> np.ndarray:
    from huma_rt.speech.audio import prepare_input, read_wav

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), text], check=True)
        pcm, rate = read_wav(path)
    return prepare_input(pcm, rate)


def _asr_scenarios(tts, quick: bool, repeat: int) -> tuple[list[dict], dict]:
    """The shipped ASR alone: load, decode latency by segment length and threads, RTF, WER."""
    from huma_rt.speech.asr import SHIPPED, AsrConfig, Recognizer
    from huma_rt.speech.asr_eval import SENTENCES, word_error_rate
    from huma_rt.speech.audio import prepare_input

    rows: list[dict] = []
    loads = []
    for _ in range(1 if quick else 3):
        t0 = time.perf_counter()
        rec = Recognizer(AsrConfig(num_threads=1))  # digest and tokens.txt cached after the first
        loads.append(time.perf_counter() - t0)
    rows.append({"scenario": "asr_load", "milestone": "Recognizer()", **stats_ms(loads), "asr": SHIPPED})
    clips = [(text, prepare_input(*tts.synthesize(text))) for text in SENTENCES]  # Piper, 22.05 -> 16 kHz
    speech = np.concatenate([c for _, c in clips])
    summary: dict = {"asr": SHIPPED, "asr_load_p50_ms": rows[0]["p50_ms"]}
    for threads in (1, 2):
        rec = Recognizer(AsrConfig(num_threads=threads))
        for seconds in (1, 3, 8):
            seg = speech[: seconds * 16000]
            rec.transcribe(seg)  # warm-up
            times, cpu = [], []
            for _ in range(max(3, repeat)):
                t0, c0 = time.perf_counter(), time.process_time()
                rec.transcribe(seg)
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            # CPU seconds of the process (all its threads): on 1 thread about what the wall time
            # would be on an idle core, so a busy shared machine's figures can be read beside it
            rows.append({"scenario": "asr_decode", "milestone": f"{seconds} s segment, {threads} thread(s)",
                         **stats_ms(times), "cpu_p50_ms": 1e3 * float(np.median(cpu)),
                         "rtf": float(np.median(times)) / seconds})
        results = [rec.transcribe(c) for _, c in clips]
        rtf = sum(r.compute_s for r in results) / sum(r.audio_s for r in results)
        rows.append({"scenario": "asr_rtf", "milestone": f"{len(clips)} sentences, {threads} thread(s)",
                     **stats_ms([r.compute_s for r in results]), "rtf": rtf})
        summary[f"asr_rtf_{threads}_threads"] = rtf
    piper = [(text, r.text) for (text, _), r in zip(clips, results, strict=True)]
    summary["asr_wer_piper"] = word_error_rate(piper)
    rows.append({"scenario": "asr_wer", "milestone": f"Piper voice, {len(clips)} sentences", "wer": summary["asr_wer_piper"]})
    if shutil.which("espeak-ng"):
        espeak = [(text, rec.transcribe(_espeak_clip(text)).text) for text in SENTENCES]
        summary["asr_wer_espeak"] = word_error_rate(espeak)
        rows.append({"scenario": "asr_wer", "milestone": f"espeak-ng, {len(SENTENCES)} sentences",
                     "wer": summary["asr_wer_espeak"]})
    summary["asr_transcripts"] = [h for _, h in piper]
    return rows, summary


def _rows_from(name: str, turns: list, extra: dict) -> list[dict]:
    rows = []
    keys = sorted({k for r in turns for k in r.times} - {"user_end"})
    for key in keys:
        vals = [r.times[key] - r.times["user_end"] for r in turns if key in r.times]
        rows.append({"scenario": name, "milestone": key, **stats_ms(vals), **extra})
    return rows


def run(quick: bool, out_dir: Path, *, bundle: str | None = None, repeat: int | None = None,
        asr_model: str | None = None, threads: int = 1) -> dict:
    from huma_rt.speech.tts import PiperTTS

    repeat = repeat or (2 if quick else 10)
    scratch = Path(tempfile.mkdtemp(prefix="huma-bench-speech-"))
    try:
        avatar, avatar_desc = _load_avatar(bundle, scratch)
        tts = PiperTTS.load(num_threads=threads)
        rows: list[dict] = []

        # 1. TTS alone: text -> first audio chunk.
        first = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            stream = tts.stream(ANSWER)
            next(stream)
            first.append(time.perf_counter() - t0)
            stream.close()
        rows.append({"scenario": "tts_first_audio", "milestone": "tts_first", **stats_ms(first), "rtf": tts.stats.rtf})

        # 2. text -> first video frame, instant responder, as fast as possible.
        pipe = ChatPipeline(avatar, tts, ScriptedResponder([ANSWER]), config=PipelineConfig(live=False))
        pipe.open()  # the session is opened once, outside the timed turns (as huma-rt chat does)
        pipe.run_text(QUESTION, lambda f: None)  # warm-up turn (caches)
        turns = [pipe.run_text(QUESTION, lambda f: None) for _ in range(repeat)]
        rows += _rows_from("text_to_first_frame", turns, {
            "rtf_tts": float(np.median([t.rtf.get("tts", np.nan) for t in turns])),
            "rtf_avatar": float(np.median([t.rtf.get("avatar", np.nan) for t in turns]))})

        # 3. full chain: paced speech -> end of turn (VAD + ASR) -> HTTP responder -> TTS -> first frame.
        server = ThreadingHTTPServer(("127.0.0.1", 0), _SseHandler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            host, port = server.server_address
            responder = OpenAIResponder(OpenAIConfig(base_url=f"http://{host}:{port}/v1", timeout_s=5))
            if asr_model:
                from huma_rt.speech.asr import AsrConfig, Recognizer

                asr, asr_desc = Recognizer(AsrConfig(asr_model)), asr_model
            elif importlib.util.find_spec("moonshine_voice") is not None:
                from huma_rt.speech.asr import Recognizer

                asr = Recognizer()  # the shipped Moonshine tiny-en, as huma-rt chat uses it
                asr_desc = asr.description
            else:
                asr, asr_desc = _KnownTranscript(), "known transcript (moonshine-voice not installed)"
            cfg = PipelineConfig(live=True, pace_input=True, turns=TurnConfig())
            question = _speech_question()
            chain = ChatPipeline(avatar, tts, responder, asr=asr, config=cfg)
            chain.open()
            # each turn plays in real time (~8 s: the question paced like a microphone, then the
            # answer on the live frame clock): one turn in quick mode
            turns_n = max(1 if quick else 2, repeat // 2)
            chain_turns = [chain.run_audio(question, 16000, lambda f: None) for _ in range(turns_n)]
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
        rows += _rows_from("full_chain", chain_turns, {"asr": asr_desc})
        asr_summary: dict = {}
        if importlib.util.find_spec("moonshine_voice") is not None:
            asr_rows, asr_summary = _asr_scenarios(tts, quick, repeat)
            rows += asr_rows

        def median_of(name, key):
            return next((r["p50_ms"] for r in rows if r["scenario"] == name and r["milestone"] == key), None)

        summary = {
            "avatar": avatar_desc,
            "text_to_first_frame_p50_ms": median_of("text_to_first_frame", "first_frame"),
            "full_chain_first_frame_p50_ms": median_of("full_chain", "first_frame"),
            "full_chain_after_turn_end_p50_ms": (median_of("full_chain", "first_frame") or 0) - (median_of("full_chain", "turn_end") or 0),
            "targets_ms": {"text_to_first_frame": 300, "full_chain_fast_responder": 500},
            "turns": TurnConfig().to_dict(),
            "tts_threads": threads,
            "full_chain_asr": asr_desc,
            "full_chain_questions_heard": sorted({t.question for t in chain_turns}),
            **asr_summary,
            # 2 shared cores: other processes' load inflates every figure; recorded beside them
            "load_average_1_5_15": list(os.getloadavg()),
        }
        return write_result(out_dir, "speech", rows, {"summary": summary})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--bundle", help="avatar bundle (default: the demo avatar)")
    parser.add_argument("--repeat", type=int)
    parser.add_argument("--asr-model", help="sherpa-onnx ASR model directory for the full chain")
    parser.add_argument("--threads", type=int, default=1, help="TTS threads")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args(argv)
    record = run(args.quick, args.out, bundle=args.bundle, repeat=args.repeat, asr_model=args.asr_model,
                 threads=args.threads)
    print(json.dumps(record["summary"], indent=2))
    print((args.out / "speech.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
