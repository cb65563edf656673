"""huma-rt vs a plain PyTorch-eager pipeline: the same avatar and audio, side by side, one run.

Both pipelines render the same bundle (the demo avatar when its trained checkpoint is shipped,
else seeded random weights packed with the procedural demo head) from the same speech, one
frame at a time (batch 1, not throughput):

- ``huma-rt``: ``Avatar.load(bundle)`` -> ``avatar.session()``; 640 samples pushed per frame,
  the frame taken as soon as it is ready. Inference time per frame, then H.264 encoding of that
  frame (PyAV) timed separately: inference fps and delivered fps are reported apart.
- ``torch-eager``: bench/torch_reference.py (export/ models in torch + gsplat torch projection +
  a plain torch compositor, full frame every frame).
- ``nets``: the encoder (one streaming code) and the deformer (the avatar's dynamic Gaussians)
  alone on onnxruntime (the bundle's fp32 ONNX, our runner) vs the same weights in torch eager.

Rows give p50/p95/p99 per frame and per stage; ``torch_over_huma`` = torch p50 / huma-rt p50
(> 1: huma-rt is faster). The PSNR of the two pipelines' frames shows they render the same thing.
With ``--device cuda`` frame times come from CUDA events (never host clocks for GPU numbers).

    python -m huma_rt.bench.reference [--quick] [-o bench-results] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from huma_rt.bench.common import frame_stage_times, stats_ms, time_calls, write_result
from huma_rt.bench.suite import peak_rss_mb

from huma_rt.errors import DeviceError, HumaError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
SPEECH = ("The quick brown fox jumps over the lazy dog. Real time avatars need every frame "
          "on time, so we measure each stage of each frame.")


# -- inputs --------------------------------------------------------------------------------------

def speech_audio(seconds: float, seed: int = 0) -> tuple[np.ndarray, str]:
    """Speech for the benchmark: espeak-ng when present, else a voiced synthetic signal.

    Returns (pcm [S] float32 at 16 kHz, description). Content does not change the timing of
    either pipeline; it only makes the mouth move so the frames are not all the rest pose.
    """
    n = int(seconds * SAMPLE_RATE)
    try:
        from huma_rt.speech import espeak
        from huma_rt.speech.audio import prepare_input

        syn = espeak.synthesize(SPEECH, voice="en-us", rate=165)
        pcm = prepare_input(syn.pcm, syn.sample_rate, name="espeak-ng audio")
        reps = -(-n // max(pcm.size, 1))
        return np.ascontiguousarray(np.tile(pcm, reps)[:n], dtype=np.float32), "espeak-ng en-us speech"
    except (HumaError, ImportError, OSError) as exc:
        log.info("espeak-ng unavailable (%s); using a synthetic voiced signal", exc)
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SAMPLE_RATE
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.7 * t)
    voiced = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / SAMPLE_RATE) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None) ** 2  # ~3 syllables a second
    pcm = 0.2 * envelope * voiced + 0.003 * rng.standard_normal(n)
    return pcm.astype(np.float32), "synthetic voiced signal (espeak-ng missing)"


def prepare_bundle(work: Path, seed: int = 0) -> tuple[Path, tuple, str]:
    """(bundle path, (encoder, spatial, deformer) torch modules with the bundle's weights, source).

    The demo bundle (cached) when the trained demo checkpoint is shipped; otherwise the seeded
    random models exported and packed with the procedural demo head into ``work``.
    """
    from huma_rt.export.checkpoint import DEMO_CHECKPOINT_DIR
    from huma_rt.export.onnx_export import export_models, resolve_models

    (encoder, spatial, deformer, _, _), source = resolve_models(None, seed)
    try:
        from huma_rt.export.demo.bundle import ensure_bundle

        bundle, _ = ensure_bundle(DEMO_CHECKPOINT_DIR)
        return bundle, (encoder, spatial, deformer), f"demo bundle ({source})"
    except HumaError as exc:
        log.info("demo bundle unavailable (%s); packing seeded models with the demo head", exc)
    from huma_rt.export.demo.head import build_background, build_camera, build_head

    from huma_rt.bundle import AvatarSource, pack

    export_models(work / "export", encoder, spatial, deformer, seed=seed, source=source)
    src = AvatarSource(gaussians=build_head(), camera=build_camera(512), background=build_background(512),
                       export_dir=work / "export", name="bench-avatar")
    return Path(pack(src, work / "bundle")), (encoder, spatial, deformer), f"demo head + {source}"


# -- clocks --------------------------------------------------------------------------------------

class FrameClock:
    """Times one call: host perf_counter on CPU, CUDA events on the current stream for ``cuda``.

    On ``cuda`` without CuPy events it raises DeviceError rather than report GPU work timed with
    host clocks (a host clock measures launch time, not GPU time).
    """

    def __init__(self, device: str) -> None:
        self.device = device
        if device == "cuda":
            from huma_rt._optional import has_cuda

            if not has_cuda():
                raise DeviceError("--device cuda needs a usable CUDA GPU (CuPy sees none); "
                                  "refusing to report GPU numbers timed with host clocks")
            import cupy

            self._cp = cupy
            self._start, self._stop = cupy.cuda.Event(), cupy.cuda.Event()
        elif device != "cpu":
            raise DeviceError(f"device must be 'cpu' or 'cuda'; got {device!r}")

    def time(self, fn) -> tuple[object, float]:
        """(fn(), seconds)."""
        if self.device == "cpu":
            t0 = time.perf_counter()
            out = fn()
            return out, time.perf_counter() - t0
        self._start.record()
        out = fn()
        self._stop.record()
        self._stop.synchronize()
        return out, self._cp.cuda.get_elapsed_time(self._start, self._stop) / 1e3


def device_memory_used() -> int | None:
    """Bytes in use on the current CUDA device (None without a GPU)."""
    from huma_rt._optional import has_cuda

    if not has_cuda():
        return None
    import cupy

    free, total = cupy.cuda.runtime.memGetInfo()
    return int(total - free)


# -- the two pipelines ---------------------------------------------------------------------------

class _H264:
    """Per-frame H.264 encoding into memory (PyAV): the 'delivered' part of a frame."""

    def __init__(self, width: int, height: int, fps: int) -> None:
        import io

        import av

        self._av = av
        self._buf = io.BytesIO()
        self._container = av.open(self._buf, mode="w", format="mp4")
        self._stream = self._container.add_stream("libx264", rate=fps)
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"preset": "veryfast", "tune": "zerolatency"}

    def encode(self, rgb: np.ndarray) -> None:
        frame = self._av.VideoFrame.from_ndarray(rgb, format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> int:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        return len(self._buf.getvalue())


def _jsonable(report) -> object:
    """A preload report as JSON-ready data (to_dict, a dataclass, or its text)."""
    import dataclasses

    if report is None or isinstance(report, (dict, list, str, int, float)):
        return report
    if hasattr(report, "to_dict"):
        return report.to_dict()
    if dataclasses.is_dataclass(report):
        return dataclasses.asdict(report)
    return str(report)


def run_huma(bundle: Path, audio: np.ndarray, warmup: int, device: str) -> dict:
    """Stream ``audio`` through one huma-rt session frame by frame -> timings and the frames."""
    from huma_rt.runtime import Avatar

    clock = FrameClock(device)
    t0 = time.perf_counter()
    avatar = Avatar.load(bundle, device=device)
    load_s = time.perf_counter() - t0
    spf = avatar.sample_rate // avatar.fps
    mem0 = device_memory_used()
    session = avatar.session()
    mem1 = device_memory_used()
    w, h = avatar.size
    encoder = _H264(w, h, avatar.fps)
    infer, encode, stages, frames = [], [], {}, []

    copies: list[float] = []  # seconds of each frame's copy out of the session's buffer

    def next_frames(chunk):
        if chunk is None:
            session.finish()
        else:
            session.push_audio(chunk)
        out = []
        for f in session.frames():
            t_copy = time.perf_counter()
            out.append(f.rgb.copy())  # a Frame's rgb is valid until the next
            copies.append(time.perf_counter() - t_copy)
        return out

    starts = list(range(0, audio.size, spf))
    for i, start in enumerate([*starts, None]):
        chunk = None if start is None else audio[start:start + spf]
        got, dt = clock.time(lambda c=chunk: next_frames(c))
        for rgb in got:
            t_enc = time.perf_counter()
            encoder.encode(rgb)
            enc_dt = time.perf_counter() - t_enc
            frames.append(rgb)
            # only steady-state frames, one per push: the lookahead delays the first frames and
            # finish() flushes several at once, neither is a per-frame latency
            if i >= warmup and start is not None and len(got) == 1:
                infer.append(dt)
                encode.append(enc_dt)
                for k, v in frame_stage_times(session).items():
                    stages.setdefault(k, []).append(v)
                stages.setdefault("output_copy", []).append(copies[-1])
    video_bytes = encoder.close()
    if not infer:
        raise HumaError(f"audio of {audio.size} samples gave no steady-state frames after {warmup} warm-up frames")
    return {
        "frames": frames, "infer": infer, "encode": encode, "stages": stages, "load_s": load_s,
        "video_bytes": video_bytes, "size": (w, h),
        "device_mem_per_session_mb": None if mem0 is None else (mem1 - mem0) / 2**20,
        "preload": _jsonable(getattr(avatar, "preload_report", None)),
    }


def run_torch(modules: tuple, bundle: Path, audio: np.ndarray, warmup: int, max_frames: int) -> dict:
    """The torch-eager pipeline on the same bundle's Gaussians, camera and background."""
    from huma_rt.bench.torch_reference import TorchReferencePipeline

    from huma_rt.bundle import open_bundle

    b = open_bundle(bundle)
    encoder, spatial, deformer = modules
    pipe = TorchReferencePipeline(encoder, spatial, deformer, b.gaussians(), b.camera, b.background)
    warm = pipe.warmup()  # huma-rt warms up at preload too
    log.info("torch reference nets warmed up in %d calls", warm)
    padded = pipe.pad_audio(audio)
    total, stages, frames = [], {}, {}
    n = min(-(-audio.size // pipe.cfg.samples_per_frame), warmup + max_frames)
    for t in range(n):
        t0 = time.perf_counter()
        frames[t] = pipe.frame(padded, t)
        dt = time.perf_counter() - t0
        if t >= warmup:
            total.append(dt)
            for k, v in pipe.stage_times.items():
                stages.setdefault(k, []).append(v)
    return {"frames": frames, "infer": total, "stages": stages, "warmup_calls": warm}


def time_nets(modules: tuple, bundle: Path, warmup: int, repeat: int, seed: int = 0) -> list[dict]:
    """Encoder and deformer alone: onnxruntime (bundle's fp32 graphs) vs torch eager, same inputs."""
    import torch
    from huma_rt.bench.torch_reference import warm_until_stable

    from huma_rt.backends import open_runner
    from huma_rt.bundle import open_bundle

    b = open_bundle(bundle)
    encoder, spatial, deformer = modules
    g = b.gaussians()
    rng = np.random.default_rng(seed)
    cfg = encoder.cfg
    mel = (-5 + 4 * rng.standard_normal((1, cfg.receptive_mels, cfg.mel.n_mels))).astype(np.float32)
    dyn = np.ascontiguousarray(g.means[g.region != 0])
    with torch.inference_mode():
        feat = spatial(torch.from_numpy(dyn)).numpy()
    code = rng.standard_normal((1, cfg.code_dim)).astype(np.float32)
    n = dyn.shape[0]
    cases = [
        ("encoder", f"mel [1,{cfg.receptive_mels},{cfg.mel.n_mels}]", {"mel": mel},
         {"code": np.zeros((1, 1, cfg.code_dim), np.float32)}, lambda: encoder(torch.from_numpy(mel))),
        ("deformer", f"N={n} dynamic", {"feat": feat, "code": code},
         {k: np.zeros((1, n, c), np.float32) for k, c in (("dmu", 3), ("dquat", 4), ("dscale", 3))},
         lambda: deformer(torch.from_numpy(feat), torch.from_numpy(code))),
    ]
    rows = []
    for graph, shape, ins, outs, torch_fn in cases:
        runner = open_runner(b.model_file(graph, "fp32"), backend="onnxruntime")
        runner.bind(inputs=ins, outputs=outs)
        warm_until_stable(runner.run)  # the same settling warm-up for both sides
        ort = stats_ms(time_calls(runner.run, warmup=warmup, repeat=repeat))
        runner.close()
        # torch at its default thread count and at 1 thread; the faster one is compared: on a
        # busy machine torch's OpenMP barriers stall small nets at 2 threads (~1 ms -> ~170 ms)
        by_threads = {}
        default_threads = torch.get_num_threads()
        for threads in dict.fromkeys((default_threads, 1)):
            torch.set_num_threads(threads)
            with torch.inference_mode():
                warm_until_stable(torch_fn)  # torch eager's first dozens of calls are ~100x slower
                by_threads[threads] = stats_ms(time_calls(torch_fn, warmup=warmup, repeat=repeat))
        torch.set_num_threads(default_threads)
        best = min(by_threads, key=lambda k: by_threads[k]["p50_ms"])
        pt = by_threads[best]
        rows.append({"what": f"net: {graph}", "input": shape, "huma_p50_ms": ort["p50_ms"],
                     "huma_p95_ms": ort["p95_ms"], "torch_p50_ms": pt["p50_ms"], "torch_p95_ms": pt["p95_ms"],
                     "torch_over_huma": pt["p50_ms"] / ort["p50_ms"], "huma": "onnxruntime fp32 (CPU)",
                     "torch_threads": best,
                     **{f"torch_{k}t_p50_ms": v["p50_ms"] for k, v in by_threads.items()}})
    return rows


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (inf when equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


# -- the scenario --------------------------------------------------------------------------------

def _row(what: str, huma: list[float] | None, torch_: list[float] | None) -> dict:
    row: dict = {"what": what}
    for prefix, xs in (("huma", huma), ("torch", torch_)):
        if xs:
            s = stats_ms(xs)
            row.update({f"{prefix}_p50_ms": s["p50_ms"], f"{prefix}_p95_ms": s["p95_ms"], f"{prefix}_p99_ms": s["p99_ms"]})
    if huma and torch_:
        row["torch_over_huma"] = row["torch_p50_ms"] / row["huma_p50_ms"]
    return row


def run(quick: bool, out_dir: Path, device: str = "cpu", seed: int = 0) -> dict:
    """Both pipelines + the nets; write ``reference.json`` / ``reference.md``; return the record."""
    # the torch pipeline takes 10+ s a frame at 512 px here: quick mode times one of its frames
    seconds, warmup, torch_warmup, torch_frames, net_warmup, net_repeat = (
        (2.0, 5, 0, 1, 2, 10) if quick else (10.0, 10, 1, 10, 10, 60))
    audio, audio_desc = speech_audio(seconds, seed)
    extra: dict = {"device": device, "audio": audio_desc, "audio_seconds": seconds, "batch": 1,
                   "load_avg_1min_start": os.getloadavg()[0]}  # shared machines: say how busy it was
    with tempfile.TemporaryDirectory(prefix="huma-bench-reference-") as tmp:
        bundle, modules, source = prepare_bundle(Path(tmp), seed)
        extra["avatar"] = source
        huma: dict | None = None
        try:
            huma = run_huma(bundle, audio, warmup, device)
        except ImportError as exc:
            extra["huma_unavailable"] = f"huma_rt.runtime not importable: {exc}"
            log.warning("%s", extra["huma_unavailable"])
        # process peak so far (bundle preparation + huma-rt); the torch pipeline's pair arrays
        # come after, so this bounds huma-rt's memory without resetting the suite's peak
        extra["peak_rss_mb_after_huma"] = peak_rss_mb()
        # the torch reference is CPU eager by definition; on cuda it still runs on the CPU
        ref = run_torch(modules, bundle, audio, warmup=torch_warmup, max_frames=torch_frames)
        rows = [_row("frame (inference)", huma and huma["infer"], ref["infer"])]
        stage_names = list(dict.fromkeys([*(huma["stages"] if huma else {}), *ref["stages"]]))
        rows += [_row(f"stage: {k}", huma and huma["stages"].get(k), ref["stages"].get(k)) for k in stage_names]
        if huma:
            enc = stats_ms(huma["encode"])
            rows.append({"what": "output: H.264 encode", "huma_p50_ms": enc["p50_ms"], "huma_p95_ms": enc["p95_ms"],
                         "huma_p99_ms": enc["p99_ms"]})
            delivered = [a + b for a, b in zip(huma["infer"], huma["encode"], strict=True)]
            rows.append(_row("frame (delivered: inference + encode)", delivered, None))
            extra.update({
                "huma_inference_fps": len(huma["infer"]) / sum(huma["infer"]),
                "huma_delivered_fps": len(delivered) / sum(delivered),
                "huma_load_s": huma["load_s"], "frame_size": list(huma["size"]),
                "device_mem_per_session_mb": huma["device_mem_per_session_mb"],
                "preload_report": huma["preload"],
            })
            common = [t for t in ref["frames"] if t < len(huma["frames"])]
            extra["psnr_huma_vs_torch_db"] = float(min(psnr(huma["frames"][t], ref["frames"][t]) for t in common))
        extra["torch_fps"] = len(ref["infer"]) / sum(ref["infer"])
        extra["torch_warmup_calls"] = ref["warmup_calls"]
        extra["peak_rss_mb_after_torch"] = peak_rss_mb()
        rows += time_nets(modules, bundle, net_warmup, net_repeat, seed)
    extra["load_avg_1min_end"] = os.getloadavg()[0]
    for r in rows:
        r.setdefault("huma", "huma-rt runtime" if huma else "")
    # one column set for every row, so the Markdown table shows the nets' columns too
    columns = list(dict.fromkeys(k for r in rows for k in r))
    rows = [{k: r.get(k, "") for k in columns} for r in rows]
    return write_result(out_dir, "reference", rows, extra)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("-o", "--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    record = run(args.quick, args.out, device=args.device)
    print((args.out / "reference.md").read_text())
    print({k: v for k, v in record.items() if k not in ("results", "machine", "preload_report")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
