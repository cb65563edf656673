"""Triton: per-request gRPC latency on loopback and fps of 1/4/8 concurrent sessions vs local.

Starts the real tritonserver (nvidia-pytriton) on a --target cpu repository of an export, then
measures, in one run and on the same inputs:
- per-request latency (p50/p95) over gRPC (payload in the request, or "triton+shm": in POSIX
  shared-memory regions registered with the server): encoder (one receptive window), encoder_stream (one
  frame of new mel rows on a live sequence), deformer (N Gaussians), the avatar_frame ensemble;
  beside the same networks on local onnxruntime (1 thread);
- frames per second with 1, 4 and 8 concurrent sessions, each frame = streaming encoder step +
  deformer, through Triton (one server; "triton+baked": the avatar_deformer model, features on
  the server, requests batched across sessions) and locally (one onnxruntime runner pair per
  session).
Rendering is local in both cases and not part of this scenario (see the runtime bench).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from huma_rt.bench.common import markdown_table, stats_ms, time_calls, write_result

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]


def _export(export_dir: Path | None, work: Path) -> Path:
    if export_dir is not None:
        return export_dir
    from huma_rt.export.onnx_export import export_models, resolve_models

    (models, source) = resolve_models(None, 0)
    export_models(work / "export", *models[:3], seed=0, source=source)
    return work / "export"


def _bundle(export: Path, means: np.ndarray, out: Path) -> Path:
    """A bundle of ``means`` (all dynamic, region 1) so the repository gets avatar_deformer."""
    from huma_rt.bundle import AvatarSource, pack
    from huma_rt.gaussians import Camera, Gaussians

    n = means.shape[0]
    g = Gaussians(means=means, log_scales=np.full((n, 3), -3.0, np.float32), quats=np.tile(np.float32([1, 0, 0, 0]), (n, 1)),
                  opacity_logits=np.zeros(n, np.float32), sh=np.zeros((n, 1, 3), np.float32), region=np.ones(n, np.uint8))  # fmt: skip
    w2c = np.eye(4, dtype=np.float32)
    w2c[2, 3] = 3.0
    cam = Camera(width=64, height=64, fx=60.0, fy=60.0, cx=32.0, cy=32.0, world_to_camera=w2c)
    return pack(AvatarSource(gaussians=g, camera=cam, background=(0.0, 0.0, 0.0), export_dir=export, name="bench-triton"), out)


def _runner_pair(backend: str, export: Path, url: str | None):
    from huma_rt.backends import open_runner

    if backend == "triton+baked":  # the avatar's features live on the server: code-only requests
        return (open_runner(export / "encoder.fp32.onnx", backend="triton", url=url),
                open_runner("avatar_deformer", backend="triton", url=url))  # fmt: skip

    if backend.startswith("triton"):
        opts, backend = {"url": url, "shared_memory": backend == "triton+shm"}, "triton"
    else:
        opts = {"threads": 1}
    return (open_runner(export / "encoder.fp32.onnx", backend=backend, **opts), open_runner(export / "deformer.fp32.onnx", backend=backend, **opts))


def _latency(export: Path, url: str, feat: np.ndarray, enc, warmup: int, repeat: int) -> list[dict]:
    from huma_rt.triton.runner import EncoderStream

    rng = np.random.default_rng(0)
    mel = rng.standard_normal((1, enc.receptive_mels, enc.mel.n_mels)).astype(np.float32)
    code = np.zeros((1, 1, enc.code_dim), np.float32)
    n = feat.shape[0]
    outs = {k: np.zeros((1, n, d), np.float32) for k, d in (("dmu", 3), ("dquat", 4), ("dscale", 3))}
    rows = []
    for backend in ("triton", "triton+shm", "onnxruntime"):
        e, d = _runner_pair(backend, export, url)
        try:
            e.bind(inputs={"mel": mel}, outputs={"code": code})
            d.bind(inputs={"feat": feat, "code": code[0]}, outputs=outs)
            for name, fn in (("encoder", e.run), ("deformer", d.run)):
                rows.append({"request": name, "backend": backend, "gaussians": n, **stats_ms(time_calls(fn, warmup=warmup, repeat=repeat))})
        finally:
            e.close()
            d.close()
    with _runner_pair("triton+baked", export, url)[1] as d:
        d.bind(inputs={"code": code[0]}, outputs=outs)
        rows.append({"request": "avatar_deformer (features baked)", "backend": "triton", "gaussians": n, **stats_ms(time_calls(d.run, warmup=warmup, repeat=repeat))})
    with EncoderStream(url) as s:
        s.push(mel[0])
        step = mel[0, : enc.mels_per_frame]
        rows.append({"request": "encoder_stream", "backend": "triton", "gaussians": 0, **stats_ms(time_calls(lambda: s.push(step), warmup=warmup, repeat=repeat))})
    import tritonclient.grpc as g

    client = g.InferenceServerClient(url)
    inputs = [g.InferInput("mel", list(mel.shape), "FP32"), g.InferInput("feat", list(feat.shape), "FP32")]
    inputs[0].set_data_from_numpy(mel)
    inputs[1].set_data_from_numpy(feat)
    ens = stats_ms(time_calls(lambda: client.infer("avatar_frame", inputs), warmup=warmup, repeat=repeat))
    client.close()
    rows.append({"request": "avatar_frame (ensemble)", "backend": "triton", "gaussians": n, **ens})
    return rows


def _session_fps(backend: str, export: Path, url: str, feat: np.ndarray, enc, sessions: int, frames: int) -> dict:
    """``sessions`` threads, each streaming ``frames`` frames (encoder step + deformer)."""
    from huma_rt.triton.runner import EncoderStream

    n = feat.shape[0]
    errors: list[BaseException] = []
    barrier = threading.Barrier(sessions + 1)
    per_frame: list[float] = []
    lock = threading.Lock()

    def session(seed: int) -> None:
        rng = np.random.default_rng(seed)
        mel = rng.standard_normal((enc.receptive_mels + frames * enc.mels_per_frame, enc.mel.n_mels)).astype(np.float32)
        code = np.zeros((1, enc.code_dim), np.float32)
        outs = {k: np.zeros((1, n, d), np.float32) for k, d in (("dmu", 3), ("dquat", 4), ("dscale", 3))}
        times = []
        try:
            if backend.startswith("triton"):
                stream = EncoderStream(url)
                _, dfm = None, _runner_pair(backend, export, url)[1]
                window = None
            else:
                enc_r, dfm = _runner_pair(backend, export, url)
                window = np.zeros((1, enc.receptive_mels, enc.mel.n_mels), np.float32)
                wcode = np.zeros((1, 1, enc.code_dim), np.float32)
                enc_r.bind(inputs={"mel": window}, outputs={"code": wcode})
            dfm.bind(inputs={"code": code} if backend == "triton+baked" else {"feat": feat, "code": code}, outputs=outs)
            barrier.wait()
            for t in range(frames):
                t0 = time.perf_counter()
                k = enc.mels_per_frame
                if backend.startswith("triton"):
                    new = mel[: enc.receptive_mels] if t == 0 else mel[enc.receptive_mels + (t - 1) * k : enc.receptive_mels + t * k]
                    code[:] = stream.push(new)
                else:
                    window[0] = mel[t * k : t * k + enc.receptive_mels]
                    enc_r.run()
                    code[:] = wcode[0]
                dfm.run()
                times.append(time.perf_counter() - t0)
            if backend.startswith("triton"):
                stream.close()
            else:
                enc_r.close()
            dfm.close()
        except BaseException as exc:  # noqa: BLE001 (re-raised by the caller)
            errors.append(exc)
            if not barrier.broken:
                barrier.abort()
        with lock:
            per_frame.extend(times)

    threads = [threading.Thread(target=session, args=(i,)) for i in range(sessions)]
    for th in threads:
        th.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    t0 = time.perf_counter()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    total = sessions * frames
    return {"backend": backend, "sessions": sessions, "gaussians": n, "frames": total, "fps_total": total / wall,
            "fps_per_session": total / wall / sessions, **{f"frame_{k}": v for k, v in stats_ms(per_frame).items() if k != "n"}}  # fmt: skip


def run(quick: bool, out_dir: Path, *, export_dir: Path | None = None, gaussians: int | None = None, frames: int | None = None) -> dict:
    from huma_rt.model_config import EncoderConfig
    from huma_rt.triton.repo import RepoOptions, resolve_source, write_repository
    from huma_rt.triton.server import ServerConfig, TritonServer, check_model_env

    env = check_model_env(ROOT / ".venv-triton")
    gaussians = gaussians or (2000 if quick else 20000)
    frames = frames or (25 if quick else 100)
    warmup, repeat = (5, 30) if quick else (20, 200)
    with tempfile.TemporaryDirectory(prefix="huma-bench-triton-") as tmp:
        work = Path(tmp)
        export = _export(export_dir, work)
        enc = EncoderConfig.load(export / "encoder.json")
        means = np.random.default_rng(1).uniform(-1, 1, (gaussians, 3)).astype(np.float32)
        bundle = _bundle(export, means, work / "bundle")
        repo = write_repository(work / "repo", resolve_source(bundle=bundle), RepoOptions(target="cpu", model_env=env))
        import onnxruntime as ort

        feat = ort.InferenceSession(str(export / "spatial.fp32.onnx"), providers=["CPUExecutionProvider"]).run(None, {"means": means})[0]
        with TritonServer(ServerConfig(repo, model_env=env)) as srv:
            latency = _latency(export, srv.grpc_url, feat, enc, warmup, repeat)
            sessions = []
            for count in (1, 4, 8):
                for backend in ("triton", "triton+shm", "triton+baked", "onnxruntime"):
                    sessions.append(_session_fps(backend, export, srv.grpc_url, feat, enc, count, frames))
                    log.info("%s %d sessions: %.1f fps", backend, count, sessions[-1]["fps_total"])
    rows = [{"part": "latency", **r} for r in latency] + [{"part": "sessions", **r} for r in sessions]
    record = write_result(out_dir, "triton", rows, {"quick": quick, "gaussians": gaussians, "frames_per_session": frames,
                                                   "transport": "gRPC on 127.0.0.1, tritonserver 2.51 (nvidia-pytriton 0.7.0), --target cpu"})  # fmt: skip
    # two tables: one row layout per part
    (Path(out_dir) / "triton.md").write_text(
        "# triton\n\nPer-request latency (gRPC loopback vs local onnxruntime, 1 thread):\n\n"
        + markdown_table(latency, ["request", "backend", "gaussians", "p50_ms", "p95_ms", "p99_ms", "n"])
        + f"\nConcurrent sessions ({frames} frames each; a frame = streaming encoder step + deformer):\n\n"
        + markdown_table(sessions, ["backend", "sessions", "gaussians", "fps_total", "fps_per_session", "frame_p50_ms", "frame_p95_ms"])
    )
    return record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2000 Gaussians, 25 frames per session, 30 repeats")
    p.add_argument("-o", "--out", type=Path, default=Path("bench-results"))
    p.add_argument("--export-dir", type=Path, default=None, help="export folder (default: export the demo/random models)")
    p.add_argument("--gaussians", type=int, default=None, help="Gaussians sent to the deformer (default 20000; quick 2000)")
    p.add_argument("--frames", type=int, default=None, help="frames per session (default 100; quick 25)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    record = run(args.quick, args.out, export_dir=args.export_dir, gaussians=args.gaussians, frames=args.frames)
    print(json.dumps(record["results"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
