"""What one ANSWERING visitor's worker costs: CPU seconds per second of answer, by thread and
(with ``--profile``) by stage, without a browser.

    python bench/serve_worker_cost.py [--answers 3] [--idle 10] [--profile] [--vp8 cpu_used=-8]
        [--threads 1] [--tts-threads 1] [--out F.json]

The worker's own parts, real, as ``huma-rt serve`` runs them (``WorkerConfig`` defaults of the
CLI: avatar on 1 thread, Piper on 1, ``OMP_WAIT_POLICY=PASSIVE`` as the pool sets it): the demo
avatar, Piper, the silero turn detector, the conversation's frame clock, VP8/Opus
(``AvatarMedia``) and its paced tracks drained by one coroutine per track as aiortc's senders do
(``track.recv()``). Not included without ``--rtp``: aiortc's RTP packetizing, SRTP and ICE (in a
visit they run on the main thread) and the decoding of the visitor's microphone; ``--rtp``
connects to an aiortc receiver in another process over loopback and counts them.

Each answer is a typed question with a scripted reply of ``--reply`` (~7 s of speech). Per
answer, CPU seconds of the process and of each thread from ``ask()`` until the answer's last
packets have left, divided by the answer's voice seconds (what the TTS made): ``cpu_per_answer_s``.
A frame clock behind real time (a loaded host) does not draw some frames (``not_drawn``): those
answers cost less than they would. ``--idle S`` first measures S seconds of idle (CPU per wall second) for
comparison. ``--profile`` samples the process with py-spy (native frames) over the answers and
splits the samples by stage (``STAGES``: the avatar's networks, the rasterizer, VP8, Opus,
TTS, ...). A rough guide only: native stacks need py-spy to pause the process for each sample
(measured: Piper's real-time factor 0.2 -> 2.8 under it), and unresolved libc leaves (waits and
copies alike) land in "other"; ``--stages`` is the split to quote. Works with an older tree on PYTHONPATH (``PYTHONSAFEPATH=1 PYTHONPATH=/tmp/base``)
for A/B runs of the code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as huma_rt.serve.pool starts workers

import numpy as np  # noqa: E402

NOISE_RMS = 2e-4  # a muted page's microphone (-74 dBFS), as bench/serve_idle.py
REPLY = ("Sure, it is sunny and warm today, with a light breeze from the west. "
         "Tomorrow looks much the same, so it is a good day for a long walk by the river.")  # fmt: skip
# native and Python frames -> stage: the first rule whose key appears in the sampled stack wins
# (py-spy --native); an answer's frame clock runs the networks, then the rasterizer, then Opus
STAGES = (
    ("vp8 (libvpx + yuv)", ("libvpx", "vp8_", "vpx_", "_encode_video", "sws_", "swscale")),
    ("opus", ("libopus", "opus_", "_encode_audio", "silk_", "celt_")),
    ("tts (piper/espeak)", ("sherpa", "speech/tts", "espeak", "_speak ")),
    ("vad / turns", ("speech/vad", "speech/turns", "_listen")),
    ("rasterizer (kernels/cpu)", ("hr_cpu_", "_raster_cpu", "render/")),
    ("avatar networks (onnxruntime)", ("onnxruntime", "backends/ort", "Ort", "mlas", "Mlas")),
    ("avatar other (session, numpy)", ("runtime/", "idle_frames", "push_audio")),
    ("media push / tracks", ("serve/peer", "_deliver", "recv (")),
    ("event loop", ("asyncio", "selectors")),
)
WAITING = ("epoll_wait", "pthread_cond", "futex", "nanosleep", "clock_nanosleep", "select (", "poll (",
           "Condition.wait", "Event.wait", "sleep (", "_wait_for_tstate_lock", "Queue.get", "sem_")  # fmt: skip


def thread_cpu() -> dict[str, float]:
    """CPU seconds of this process by thread name: Python threads by name (``huma-turn7`` ->
    ``huma-turn``), native threads Python did not start (OpenMP, onnxruntime pools) as ``native``."""
    tick = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: _thread_name(t.name) for t in threading.enumerate()}
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            name = names.get(int(tid), "native")
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def _thread_name(name: str) -> str:
    """``huma-turn7`` -> ``huma-turn``; ``ThreadPoolExecutor-0_1`` -> ``ThreadPoolExecutor``;
    ``Thread-3 (decoder_worker)`` (aiortc's) -> ``decoder_worker``."""
    if name.endswith(")") and "(" in name:
        return name[name.index("(") + 1 : -1]
    return name.split("_")[0].rstrip("0123456789-")


def split_profile(raw: Path) -> dict:
    """py-spy raw output (``stack count`` lines) -> % of busy samples per stage, and top leaves."""
    by_stage, by_leaf, total, waiting = Counter(), Counter(), 0, 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit() or not stack.strip():
            continue
        leaf = stack.split(";")[-1]
        if any(k in leaf for k in WAITING):
            waiting += int(n)
            continue
        total += int(n)
        by_stage[next((name for name, keys in STAGES if any(k in stack for k in keys)), "other")] += int(n)
        by_leaf[leaf[:100]] += int(n)
    pct = (lambda c: {k: round(100.0 * v / total, 1) for k, v in c}) if total else (lambda c: {})
    return {"busy_samples": total, "waiting_samples": waiting, "stages_pct": pct(by_stage.most_common()),
            "top_leaves_pct": pct(by_leaf.most_common(15))}  # fmt: skip


def _delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: round(b[k] - a.get(k, 0.0), 3) for k in sorted(b) if b[k] - a.get(k, 0.0) > 0}


async def _run(args) -> dict:
    from huma_rt.export.demo.bundle import ensure_bundle

    from huma_rt.serve.conversation import Conversation
    from huma_rt.serve.encode import Vp8Config
    from huma_rt.serve.peer import AUDIO_RATE, AvatarMedia
    from huma_rt.serve.worker import WorkerConfig, _Models

    if args.audio_ms != 20:  # an experiment: peer.py reads its packet size from this global
        import huma_rt.serve.peer as peer

        peer.AUDIO_FRAME = args.audio_ms * AUDIO_RATE // 1000
    bundle, _ = ensure_bundle()
    cfg = WorkerConfig(bundle=str(bundle), responder="scripted", responder_options={"replies": [args.reply]},
                       threads=args.threads, tts_threads=args.tts_threads)  # fmt: skip
    models = _Models(cfg)
    loop = asyncio.get_running_loop()
    vp8 = Vp8Config(**args.vp8)
    media = AvatarMedia(loop, fps=int(models.avatar.fps), vp8=vp8)
    events: list[dict] = []

    def emit(ev: dict) -> None:
        ev["at"] = time.perf_counter()
        events.append(ev)

    conv = Conversation(models.avatar, models.tts, models.responder, None,
                        lambda *a, **k: media.push(*a, **k), emit, models.conversation)  # fmt: skip
    conv.on_cut = lambda: loop.call_soon_threadsafe(media.silence_queued)
    conv.retract = getattr(media, "retract", None)
    sent = {"video": 0.0, "audio": 0.0}  # pts of the last packet each track returned

    async def drain(track, scale: int) -> None:
        while True:
            frame = await track.recv()
            sent[track.kind] = frame.pts / scale

    async def microphone() -> None:
        rng = np.random.default_rng(0)
        t = time.perf_counter()
        while True:
            conv.push_mic(rng.normal(0.0, NOISE_RMS, 320).astype(np.float32), time.perf_counter())
            t += 0.02
            await asyncio.sleep(max(0.0, t - time.perf_counter()))

    if args.rtp:  # a real peer connection; aiortc's senders call recv() and packetize, encrypt, send
        receiver, pc = await _connect(media, conv)
        for track, scale in ((media.video, 90000), (media.audio, AUDIO_RATE)):
            track.recv = _noting(track.recv, sent, track.kind, scale)
        tasks = []
    else:
        receiver = pc = None
        tasks = [asyncio.ensure_future(drain(media.video, 90000)), asyncio.ensure_future(drain(media.audio, AUDIO_RATE)),
                 asyncio.ensure_future(microphone())]  # fmt: skip
    conv.start()
    result: dict = {"load_before": os.getloadavg(), "tree": __import__("huma_rt").__file__, "vp8": vars(vp8),
                    "threads": args.threads, "tts_threads": args.tts_threads, "reply": args.reply,
                    "audio_ms": args.audio_ms}  # fmt: skip
    spy = None
    try:
        await asyncio.sleep(args.settle)
        if args.idle:
            c0, w0 = thread_cpu(), time.perf_counter()
            await asyncio.sleep(args.idle)
            c1, wall = thread_cpu(), time.perf_counter() - w0
            result["idle"] = {"wall_s": round(wall, 2), "cpu_per_s": round(sum(_delta(c0, c1).values()) / wall, 4),
                              "threads_per_s": {k: round(v / wall, 4) for k, v in _delta(c0, c1).items()}}  # fmt: skip
        if args.profile:
            spy = _start_spy(args)
        rows = []
        for _ in range(args.answers):
            n0 = len(events)
            tts0, spoken0 = models.tts.stats.compute_s, models.tts.stats.audio_s
            drawn0 = conv.stats.get("not_drawn", 0), conv.stats.get("clock_rebases", 0)
            frames0 = conv.stats["frames"] - conv.stats.get("idle_skipped", 0)
            enc0 = media.video_stats.get("encoded", 0)
            c0, w0, p0 = thread_cpu(), time.perf_counter(), time.process_time()
            conv.ask("What is the weather like?")
            while not any(e["type"] == "answer_end" for e in events[n0:]):
                await asyncio.sleep(0.02)
            turn = conv._turn
            end_pts = turn.last_sample / AUDIO_RATE
            for _ in range(100):  # its last packets leave one media-clock delay after the tick
                if sent["video"] >= end_pts - 0.08 and sent["audio"] >= end_pts - 0.05:
                    break
                await asyncio.sleep(0.01)
            c1, wall, proc = thread_cpu(), time.perf_counter() - w0, time.process_time() - p0
            # the voice's seconds (a TTS behind real time leaves gaps on the timeline: not counted)
            answer_s = models.tts.stats.audio_s - spoken0
            threads = _delta(c0, c1)
            drawn = conv.stats["frames"] - conv.stats.get("idle_skipped", 0) - frames0 \
                - (conv.stats.get("not_drawn", 0) - drawn0[0])  # fmt: skip
            threads["exited (turn: tts)"] = round(max(0.0, proc - sum(threads.values())), 3)  # gone from /proc
            start = next(e for e in events[n0:] if e["type"] == "answer_start")
            rows.append({"answer_s": round(answer_s, 3), "wall_s": round(wall, 3), "cpu_s": round(proc, 3),
                         "cpu_per_answer_s": round(proc / answer_s, 4),
                         "threads_per_answer_s": {k: round(v / answer_s, 4) for k, v in threads.items()},
                         "tts_compute_s": round(models.tts.stats.compute_s - tts0, 3),
                         "vp8_encoded": media.video_stats.get("encoded", 0) - enc0,
                         "timeline_s": round((turn.last_sample - turn.first_sample) / AUDIO_RATE, 3),
                         # per frame drawn / encoded: what a loaded host's skipped frames do not skew
                         "frames_ms_per_drawn": round(1000 * threads.get("huma-frames", 0.0) / max(1, drawn), 2),
                         "encode_ms_per_encoded": round(1000 * threads.get("huma-encode", 0.0)
                                                        / max(1, media.video_stats.get("encoded", 0) - enc0), 2),
                         "not_drawn": conv.stats.get("not_drawn", 0) - drawn0[0],
                         "clock_rebases": conv.stats.get("clock_rebases", 0) - drawn0[1],
                         "first_frame_ms": start["server_ms"].get("first_frame")})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
            await asyncio.sleep(args.gap)
        if spy is not None:
            result["profile"] = _stop_spy(spy)
        result["answers"] = rows
        if rows:
            names = sorted({k for r in rows for k in r["threads_per_answer_s"]})
            result["summary"] = {
                "cpu_per_answer_s_median": statistics.median(r["cpu_per_answer_s"] for r in rows),
                "threads_per_answer_s_median": {k: statistics.median(r["threads_per_answer_s"].get(k, 0.0) for r in rows)
                                                for k in names},
                "frames_ms_per_drawn_median": statistics.median(r["frames_ms_per_drawn"] for r in rows),
                "encode_ms_per_encoded_median": statistics.median(r["encode_ms_per_encoded"] for r in rows),
                "tts_rtf": round(sum(r["tts_compute_s"] for r in rows) / sum(r["answer_s"] for r in rows), 4)}  # fmt: skip
        result["video_stats"] = media.video_stats
        result["dropped"] = media.dropped
        result["conversation_stats"] = dict(conv.stats)
    finally:
        if spy is not None and spy[0].poll() is None:
            spy[0].terminate()
        conv.stop()
        media.close()
        for t in tasks:
            t.cancel()
        if pc is not None:
            await pc.close()
            receiver.stdin.close()
            receiver.wait(timeout=10)
    result["rtp"] = bool(args.rtp)
    result["load_after"] = os.getloadavg()
    return result


def _noting(recv, sent: dict, kind: str, scale: int):
    """track.recv that notes the pts (seconds) of what it returns in sent[kind]."""

    async def wrapper():
        frame = await recv()
        sent[kind] = frame.pts / scale
        return frame

    return wrapper


async def _connect(media, conv):
    """A peer connection with a receiver in a process of its own (``--receiver``: aiortc, its
    microphone sends silence, it decodes and drops what it gets), over loopback as a visit on
    ``huma-rt serve`` is; the microphone goes to ``conv``. -> (receiver Popen, our pc)."""
    from aiortc import RTCPeerConnection, RTCSessionDescription

    from huma_rt.serve.peer import quicken_microphone, read_microphone
    from huma_rt.serve.worker import _loopback_candidates_only

    _loopback_candidates_only()
    receiver = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--receiver"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    loop = asyncio.get_running_loop()
    offer = json.loads(await loop.run_in_executor(None, receiver.stdout.readline))
    pc = RTCPeerConnection()
    tasks = []

    @pc.on("track")
    def _on_track(track) -> None:
        if track.kind == "audio":
            tasks.append(asyncio.ensure_future(read_microphone(track, conv.push_mic)))

    await pc.setRemoteDescription(RTCSessionDescription(**offer))
    quicken_microphone(pc)
    pc.addTrack(media.audio)
    media.bind(pc.addTrack(media.video))
    await pc.setLocalDescription(await pc.createAnswer())
    receiver.stdin.write(json.dumps({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}) + "\n")
    receiver.stdin.flush()
    for _ in range(200):
        if pc.connectionState == "connected":
            break
        await asyncio.sleep(0.05)
    else:
        raise RuntimeError(f"the receiver did not connect: {pc.connectionState}")
    return receiver, pc


async def _receive() -> None:
    """``--receiver``: offer audio (silence) + video (receive only) on stdout, take the answer
    from stdin, decode and drop everything until stdin closes."""
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaBlackhole
    from aiortc.mediastreams import AudioStreamTrack

    from huma_rt.serve.worker import _loopback_candidates_only

    _loopback_candidates_only()
    pc = RTCPeerConnection()
    sink = MediaBlackhole()
    pc.on("track", sink.addTrack)
    pc.addTrack(AudioStreamTrack())
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    print(json.dumps({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}), flush=True)
    loop = asyncio.get_running_loop()
    answer = json.loads(await loop.run_in_executor(None, sys.stdin.readline))
    await pc.setRemoteDescription(RTCSessionDescription(**answer))
    await sink.start()
    await loop.run_in_executor(None, sys.stdin.read)  # until the worker side closes it
    await sink.stop()
    await pc.close()


def _timed(obj, name: str, acc: dict, key: str) -> None:
    """Replace ``obj.name`` (a bound method) by one that adds its thread CPU time to acc[key]."""
    fn = getattr(obj, name)

    def wrapper(*a, **k):
        t = time.thread_time()
        try:
            return fn(*a, **k)
        finally:
            acc[key] += time.thread_time() - t

    setattr(obj, name, wrapper)


def stages(args) -> dict:
    """Each stage of an answer run alone on this thread, CPU seconds per answer second: the TTS
    on the reply, the avatar's frames of that audio (features, audio encoder, deformation
    network, rasterizer), VP8 of those frames (with ``--vp8`` settings; bytes and PSNR of the
    decoded frames against the drawn ones), Opus of the audio. Thread CPU time: robust to load
    (not to cache and memory contention)."""
    import av
    from huma_rt.export.demo.bundle import ensure_bundle

    from huma_rt.serve.encode import OpusStream, Vp8Config, Vp8Stream
    from huma_rt.serve.worker import WorkerConfig, _Models
    from huma_rt.speech.text import chunk_text

    bundle, _ = ensure_bundle()
    models = _Models(WorkerConfig(bundle=str(bundle), threads=args.threads, tts_threads=args.tts_threads))
    out: dict = {"load_before": os.getloadavg(), "tree": __import__("huma_rt").__file__}
    tts = models.tts
    t0 = time.thread_time()
    pcm = np.concatenate([p for p, _ in tts.stream_chunks(chunk_text(args.reply))]).astype(np.float32)
    tts_cpu = time.thread_time() - t0
    answer_s = pcm.size / 16000
    out["answer_s"] = round(answer_s, 3)
    session = models.avatar.session(live=True)
    acc = dict.fromkeys(("features", "audio encoder", "deformation", "rasterizer"), 0.0)
    _timed(session._features, "next_window", acc, "features")
    _timed(session._encoder, "run", acc, "audio encoder")
    _timed(session._deformer, "run", acc, "deformation")
    _timed(session._renderer, "render", acc, "rasterizer")
    spf = session.samples_per_frame
    frames = []
    t0 = time.thread_time()
    for i in range(0, pcm.size - spf + 1, spf):
        session.push_audio(pcm[i:i + spf])
        for f in session.idle_frames(1):
            frames.append(f.rgb.copy())
    frames_cpu = time.thread_time() - t0
    session.close()
    n = len(frames)
    per_s = {"tts (piper + espeak)": tts_cpu, **{f"avatar {k}": v for k, v in acc.items()}}
    per_s["avatar other (session, copies)"] = frames_cpu - sum(acc.values())
    vp8 = Vp8Stream(Vp8Config(**args.vp8))
    dec = av.CodecContext.create("libvpx", "r")
    psnr, size = [], 0
    t_vp8 = t_yuv = 0.0
    for i, rgb in enumerate(frames):
        t0 = time.thread_time()
        av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        t_yuv += time.thread_time() - t0
        t0 = time.thread_time()
        p = vp8.encode(rgb, i / 25)
        t_vp8 += time.thread_time() - t0
        size += p.size
        for df in dec.decode(p):
            err = (df.to_ndarray(format="rgb24").astype(np.float32) - rgb) ** 2
            psnr.append(10 * np.log10(255.0**2 / max(float(err.mean()), 1e-6)))
    per_s["vp8 (rgb->yuv + libvpx)"] = t_vp8
    opus = OpusStream()
    s16 = np.clip(pcm * 32767, -32768, 32767).astype(np.int16)
    t0 = time.thread_time()
    for i in range(0, s16.size - 319, 320):
        opus.encode(s16[i:i + 320], i)
    per_s["opus"] = time.thread_time() - t0
    out.update({"frames": n, "cpu_per_answer_s": {k: round(v / answer_s, 4) for k, v in per_s.items()},
                "total_per_answer_s": round(sum(per_s.values()) / answer_s, 4),
                "ms_per_frame": {k: round(1000 * v / n, 2) for k, v in per_s.items()},
                "rgb_to_yuv_ms_per_frame": round(1000 * t_yuv / n, 2),
                "vp8": {**vars(vp8.config), "kbit_s": round(8 * size / (n / 25) / 1000, 1),
                        "psnr_db_median": round(float(np.median(psnr)), 2), "psnr_db_p5": round(float(np.percentile(psnr, 5)), 2)},
                "load_after": os.getloadavg()})  # fmt: skip
    return out


def _start_spy(args):
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        raise SystemExit("--profile needs py-spy (pip install py-spy)")
    raw = Path(tempfile.mkdtemp(prefix="worker_cost_")) / "profile.txt"
    cmd = [exe, "record", "--pid", str(os.getpid()), "--rate", str(args.rate), "--format", "raw",
           "--output", str(raw), "--native", "--threads"]  # fmt: skip (native stacks need blocking samples)
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), raw


def _stop_spy(spy) -> dict:
    import signal

    proc, raw = spy
    proc.send_signal(signal.SIGINT)  # py-spy writes what it has on Ctrl-C
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    if not raw.exists():
        return {"error": (proc.stderr.read() or b"").decode()[-500:]}
    out = split_profile(raw)
    out["by_thread"] = _by_thread(raw)
    shutil.rmtree(raw.parent, ignore_errors=True)
    return out


def _by_thread(raw: Path) -> dict:
    """Busy samples per (thread, stage): py-spy --threads puts the thread first in each stack."""
    table: dict[str, Counter] = {}
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit() or not stack.strip() or any(k in stack.split(";")[-1] for k in WAITING):
            continue
        thread = stack.split(";")[0][:60]
        stage = next((name for name, keys in STAGES if any(k in stack for k in keys)), "other")
        table.setdefault(thread, Counter())[stage] += int(n)
    return {t: dict(c.most_common()) for t, c in table.items()}


def _kv(text: str) -> tuple[str, int]:
    key, _, value = text.partition("=")
    if not key or not value.lstrip("-").isdigit():
        raise argparse.ArgumentTypeError(f"expected KEY=INT (a Vp8Config field); got {text!r}")
    return key, int(value)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--answers", type=int, default=3, help="answers to measure, one after the other")
    ap.add_argument("--idle", type=float, default=0.0, help="seconds of idle CPU to measure first")
    ap.add_argument("--settle", type=float, default=4.0, help="seconds before measuring")
    ap.add_argument("--gap", type=float, default=1.5, help="seconds between answers")
    ap.add_argument("--reply", default=REPLY)
    ap.add_argument("--threads", type=int, default=1, help="avatar threads (huma-rt serve's default: 1)")
    ap.add_argument("--tts-threads", type=int, default=1)
    ap.add_argument("--vp8", type=_kv, action="append", default=[], help="a Vp8Config field, KEY=INT")
    ap.add_argument("--profile", action="store_true", help="py-spy (native) over the answers: time by stage")
    ap.add_argument("--rate", type=int, default=50, help="py-spy samples per second (each pauses the process)")
    ap.add_argument("--stages", action="store_true", help="each stage alone, offline (no frame clock)")
    ap.add_argument("--rtp", action="store_true",
                    help="a real peer connection to an aiortc receiver in another process: aiortc's RTP, "
                         "SRTP and ICE, and the microphone's decoding, counted too")  # fmt: skip
    ap.add_argument("--receiver", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--audio-ms", type=int, default=20, choices=(20, 40),
                    help="Opus packet length (an experiment: huma_rt.serve.peer.AUDIO_FRAME is set for this run)")  # fmt: skip
    ap.add_argument("--out", type=Path, help="JSON file to write")
    args = ap.parse_args(argv)
    if args.receiver:
        asyncio.run(_receive())
        return 0
    args.vp8 = dict(args.vp8)
    import torch

    torch.set_num_threads(1)
    result = stages(args) if args.stages else asyncio.run(_run(args))
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(json.dumps({k: v for k, v in result.items() if k not in ("answers",)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
