"""A/B of two ``huma-rt serve`` settings, alternated in one run: encoder CPU per frame, one
idle/answering visitor's worker CPU and frame rate, and latency as the page sees it.

    python -m huma_rt.bench.serve_ab --out DIR [--rounds 2] [--parts encode visitors latency]
        [--a "--media frames"] [--b "--media packets"] [--turns 5] [--typed 3] [--idle-s 15]

On a shared machine the load drifts during a run: the settings are alternated (A B A B ...)
and medians over the rounds are compared as ratios B/A. A setting's leading ``NAME=VALUE`` words
are the server's environment, the rest its options: ``--a "PYTHONSAFEPATH=1 PYTHONPATH=/tmp/base"``
serves the huma_rt of another tree (e.g. ``git archive HEAD | tar -x -C /tmp/base``: the code
before a change, against the checkout's). Parts:

- ``encode``: process CPU time (not wall) per frame of the two video paths on the demo
  avatar's own pictures, in this process, one thread: aiortc's (``Vp8Encoder.encode`` of a
  ``VideoFrame`` made from the RGB picture, what its sender runs for every frame) and the
  worker's (``huma_rt.serve.encode.Vp8Stream``), at rest (the same picture every frame) and
  talking; and Opus per 20 ms (aiortc's ``OpusEncoder`` vs ``OpusStream``). Bytes per frame.
- ``visitors``: ``serve_visitors.measure`` with one visitor (``--visitors``), phases idle and
  typed: the worker's CPU (% of a core and ms per frame sent), received fps, concealment.
- ``latency``: ``serve_latency.run`` (spoken and typed turns): first answer frame and first
  answer audio after the end of the question, A/V, server stages.

Writes ``serve_ab.json`` and ``serve_ab.md`` (and each latency run's own files in
``DIR/latency-<setting>-<round>/``).
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from huma_rt.bench.common import markdown_table, write_result

log = logging.getLogger(__name__)


def _median(values) -> float | None:
    v = [x for x in values if x is not None]
    return float(np.median(v)) if v else None


def _ratio(b, a) -> float | None:
    return None if a in (None, 0) or b is None else round(b / a, 3)


def demo_pictures(n_talk: int = 50) -> tuple[np.ndarray, list[np.ndarray]]:
    """The demo avatar at rest (one picture) and ``n_talk`` frames of it talking (a tone with a
    syllable-rate envelope as the voice), uint8 [H, W, 3]."""
    from huma_rt.export.demo.bundle import ensure_bundle

    from huma_rt.runtime import Avatar

    bundle, _ = ensure_bundle()
    avatar = Avatar.load(bundle, threads=1)
    session = avatar.session(live=True)
    try:
        rest = [f.rgb.copy() for f in session.idle_frames(12)][-1]
        t = np.arange(n_talk * 640 + 16000) / 16000
        voice = (0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
        session.push_audio(voice)
        talk = [f.rgb.copy() for f in session.idle_frames(n_talk)]
    finally:
        session.close()
    return rest, talk


def encode_cost(rest: np.ndarray, talk: list[np.ndarray], frames: int = 100) -> list[dict]:
    """CPU ms per frame (process time) and bytes per frame of each path; one row per path."""
    import av
    from aiortc.codecs.opus import OpusEncoder
    from aiortc.codecs.vpx import Vp8Encoder

    from huma_rt.serve.encode import OpusStream, Vp8Stream

    def aiortc_video(pictures):
        enc = Vp8Encoder()
        enc.encode(_vframe(av, pictures[0], 0))  # the keyframe and the codec's opening are not timed
        return lambda i, rgb: sum(len(p) for p in enc.encode(_vframe(av, rgb, i))[0])

    def own_video(pictures):
        enc = Vp8Stream()
        enc.encode(pictures[0], 0.0)
        return lambda i, rgb: enc.encode(rgb, i / 25).size

    rows = []
    settle = 30  # rest: timed after the first 1.2 s at rest (the worker's encoder refines for 1 s, then holds)
    for scene, pictures in (("rest", [rest] * frames), ("talking", (talk * (frames // len(talk) + 1))[:frames])):
        for name, make in (("aiortc Vp8Encoder", aiortc_video), ("Vp8Stream", own_video)):
            step = make(pictures)
            if scene == "rest":
                for i in range(1, settle):
                    step(i, rest)
                pictures = [rest] * (frames + settle)
            c0, sizes = time.process_time(), []
            first = settle if scene == "rest" else 1
            for i, rgb in enumerate(pictures[first:], first):
                sizes.append(step(i, rgb))
            cpu = time.process_time() - c0
            rows.append({"part": "encode", "what": f"VP8 {scene}", "path": name, "frames": len(sizes),
                         "cpu_ms_per_frame": round(1000 * cpu / len(sizes), 3), "bytes_per_frame": round(float(np.mean(sizes)))})  # fmt: skip
    t = np.arange(320) / 16000
    s16 = (8000 * np.sin(2 * np.pi * 220 * t)).astype(np.int16)
    def aiortc_audio():
        enc = OpusEncoder()
        return lambda k: sum(len(p) for p in enc.encode(_aframe(av, s16, 320 * k))[0])

    def own_audio():
        enc = OpusStream(frame=320)
        return lambda k: enc.encode(s16, 320 * k).size

    for name, make in (("aiortc OpusEncoder", aiortc_audio), ("OpusStream", own_audio)):
        step = make()
        step(0)
        c0 = time.process_time()
        sizes = [step(k) for k in range(1, 251)]
        cpu = time.process_time() - c0
        rows.append({"part": "encode", "what": "Opus 20 ms", "path": name, "frames": len(sizes),
                     "cpu_ms_per_frame": round(1000 * cpu / len(sizes), 3), "bytes_per_frame": round(float(np.mean(sizes)))})  # fmt: skip
    return rows


def _vframe(av, rgb, i):
    from aiortc.codecs.vpx import VIDEO_TIME_BASE

    vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    vf.pts, vf.time_base = i * 3600, VIDEO_TIME_BASE
    return vf


def _aframe(av, s16, pts):
    import fractions

    af = av.AudioFrame.from_ndarray(s16[None, :], format="s16", layout="mono")
    af.sample_rate, af.pts, af.time_base = 16000, pts, fractions.Fraction(1, 16000)
    return af


def split_setting(words: tuple[str, ...]) -> tuple[dict[str, str], tuple[str, ...]]:
    """``("NAME=VALUE", ..., "--option", "value", ...)`` -> (environment, serve options)."""
    words = list(words)
    env = {}
    while words and "=" in words[0] and not words[0].startswith("-"):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    return env, tuple(words)


def run(out_dir: Path, settings: dict[str, tuple[str, ...]], rounds: int, parts: tuple[str, ...],
        turns: int, typed: int, idle_s: float, visitors: int) -> dict:  # fmt: skip
    from huma_rt.bench import serve_latency, serve_visitors
    from huma_rt.bench._browser import espeak, silence, tree_state, write_wav48

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    tree, loads = tree_state(), []
    if "encode" in parts:
        rest, talk = demo_pictures()
        for r in range(rounds):
            for row in encode_cost(rest, talk):
                rows.append({**row, "round": r + 1, "load_1min": round(os.getloadavg()[0], 2)})
    work = Path(tempfile.mkdtemp(prefix="huma-serve-ab-"))
    if "visitors" in parts:
        q = espeak(serve_visitors.QUESTION, work / "q16.wav")
        pcm = np.concatenate([silence(0.3), q, silence(1.2)])
        wav, loop_s = write_wav48(work / "mic.wav", pcm), pcm.size / 16000
        for r in range(rounds):
            for name, words in settings.items():
                env, args = split_setting(words)
                if env:
                    raise SystemExit(f"setting {name}: the visitors part takes serve options only, not {env}")
                loads.append((f"visitors {name} {r + 1}", os.getloadavg()))
                got = serve_visitors.measure(visitors, wav, loop_s, idle_s, work, False, args, ("idle", "typed"))
                for row in got:
                    rows.append({"part": "visitors", "setting": name, "round": r + 1, **row})
    if "latency" in parts:
        for r in range(rounds):
            for name, words in settings.items():
                env, args = split_setting(words)
                loads.append((f"latency {name} {r + 1}", os.getloadavg()))
                rec = serve_latency.run(False, out_dir / f"latency-{name}-{r + 1}", turns=turns, typed=typed,
                                        serve_args=args, env=env)  # fmt: skip
                for row in rec["results"]:
                    rows.append({"part": "latency", "setting": name, "round": r + 1, **row,
                                 "load_1min": round(rec["load_avg"][0][0], 2)})  # fmt: skip
    summary = summarize(rows, list(settings))
    record = write_result(out_dir, "serve_ab", summary,
                          {"rows": rows, "settings": {k: list(v) for k, v in settings.items()}, "rounds": rounds,
                           "loads": loads, "tree": tree, "cores": os.cpu_count()})  # fmt: skip
    with open(out_dir / "serve_ab.md", "a") as f:
        f.write("\nSettings: " + ", ".join(f"{k} = `{shlex.join(v) or '(defaults)'}`" for k, v in settings.items()))
        f.write(f"\n\nLoad average (1, 5, 15 min) before each run: {loads}\n")
        if any(r["part"] == "encode" for r in rows):
            f.write("\nEncode rounds:\n\n" + markdown_table([r for r in rows if r["part"] == "encode"]))
    return record


def summarize(rows: list[dict], names: list[str]) -> list[dict]:
    """Medians over the rounds per measure and setting, and the ratio of the second to the first."""
    out = []
    enc = [r for r in rows if r["part"] == "encode"]
    for what in dict.fromkeys(r["what"] for r in enc):
        paths = list(dict.fromkeys(r["path"] for r in enc if r["what"] == what))
        med = {p: _median(r["cpu_ms_per_frame"] for r in enc if r["what"] == what and r["path"] == p) for p in paths}
        size = {p: _median(r["bytes_per_frame"] for r in enc if r["what"] == what and r["path"] == p) for p in paths}
        out.append({"part": "encode", "measure": f"{what}: CPU ms/frame (process time)",
                    **{p: med[p] for p in paths}, "ratio": _ratio(med[paths[-1]], med[paths[0]])})  # fmt: skip
        out.append({"part": "encode", "measure": f"{what}: bytes/frame", **size, "ratio": _ratio(size[paths[-1]], size[paths[0]])})
    vis = [r for r in rows if r["part"] == "visitors"]
    for phase in dict.fromkeys(r["phase"] for r in vis):
        for key, label in (("worker 1", "worker CPU %"), ("worker 1 ms/frame", "worker CPU ms per frame sent"),
                           ("chromium (all pages)", "Chromium CPU %"), ("fps", "page fps (decoded)"),
                           ("concealed_pct", "audio concealed %"), ("load_1min", "load (1 min)")):  # fmt: skip
            med = {n: _median(r.get(key) for r in vis if r["setting"] == n and r["phase"] == phase
                              and (r["page"] == "cpu %") == (key.startswith(("worker", "chromium", "load"))))
                   for n in names}  # fmt: skip
            out.append({"part": "visitors", "measure": f"{phase}: {label}", **med, "ratio": _ratio(med[names[-1]], med[names[0]])})
    lat = [r for r in rows if r["part"] == "latency"]
    for turns, measure in dict.fromkeys((r["turns"], r["measure"]) for r in lat):
        med = {n: _median(r["p50_ms"] for r in lat if r["setting"] == n and r["turns"] == turns and r["measure"] == measure)
               for n in names}  # fmt: skip
        out.append({"part": "latency", "measure": f"{turns} {measure} (p50 ms, median of rounds)", **med,
                    "ratio": _ratio(med[names[-1]], med[names[0]])})  # fmt: skip
    if lat:
        med = {n: _median(r["load_1min"] for r in lat if r["setting"] == n) for n in names}
        out.append({"part": "latency", "measure": "load (1 min) at each run's start", **med, "ratio": None})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench-results"))
    ap.add_argument("--a", default="--media frames", help="setting A: huma-rt serve options (default: aiortc encodes)")
    ap.add_argument("--b", default="--media packets", help="setting B (default: the worker encodes, holds idle frames)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--parts", nargs="+", default=["encode", "visitors", "latency"],
                    choices=["encode", "visitors", "latency"])  # fmt: skip
    ap.add_argument("--turns", type=int, default=5, help="spoken turns per latency run")
    ap.add_argument("--typed", type=int, default=3, help="typed turns per latency run")
    ap.add_argument("--idle-s", type=float, default=15.0, help="idle phase of each visitors run")
    ap.add_argument("--visitors", type=int, default=1)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = {"A": tuple(shlex.split(a.a)), "B": tuple(shlex.split(a.b))}
    record = run(a.out, settings, a.rounds, tuple(a.parts), a.turns, a.typed, a.idle_s, a.visitors)
    print(markdown_table(record["results"]))
    print(f"A = {a.a!r}, B = {a.b!r}; load average now {os.getloadavg()} ({os.cpu_count()} cores); results in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
