"""Input formats benchmark: reading a large PLY and decoding a compressed audio file.

- ``ply``: ``read_ply`` of a 200k-Gaussian degree-3 PLY (full; 20k quick), median of repeats;
  with ``--base REV`` the reader of a git revision (its ``huma_rt/formats/ply.py``) runs in the
  same loop, alternating with the current one, so a burst of load hits both sides.
- ``audio``: a 60 s stereo 44.1 kHz MP3 (full; 10 s quick): ``read_audio`` (decode only) and
  ``load_audio`` (decode, downmix, resample to 16 kHz, as render/demo/chat read it).

    python -m huma_rt.bench.formats [--quick] [--base 8ca6e1b] [--out DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from huma_rt.bench.common import stats_ms, write_result

log = logging.getLogger(__name__)


def _gaussians(n: int):
    from huma_rt.gaussians import Gaussians

    rng = np.random.default_rng(0)
    return Gaussians(
        means=rng.normal(size=(n, 3)).astype(np.float32), log_scales=rng.uniform(-5, -1, (n, 3)).astype(np.float32),
        quats=rng.normal(size=(n, 4)).astype(np.float32), opacity_logits=rng.normal(size=n).astype(np.float32),
        sh=rng.normal(size=(n, 16, 3)).astype(np.float32), region=(rng.random(n) < 0.3).astype(np.uint8),
    )  # fmt: skip


def _reader_at(rev: str, tmp: Path):
    """The ``read_ply`` of git revision ``rev``, loaded as a standalone module."""
    repo = Path(__file__).resolve().parents[1]
    src = subprocess.run(["git", "-C", str(repo), "show", f"{rev}:huma_rt/formats/ply.py"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    path = tmp / f"ply_{rev}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(f"ply_{rev}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.read_ply


def bench_ply(tmp: Path, n: int, repeat: int, base: str | None) -> list[dict]:
    from huma_rt.formats.ply import read_ply, write_ply

    g = _gaussians(n)
    path = write_ply(tmp / f"g{n}.ply", g)
    readers = {"current": read_ply}
    if base:
        readers[f"base {base}"] = _reader_at(base, tmp)
    times: dict[str, list[float]] = {k: [] for k in readers}
    for i in range(repeat + 1):  # round 0 warms up
        for name, read in readers.items():
            t0 = time.perf_counter()
            h = read(path)
            dt = time.perf_counter() - t0
            if i:
                times[name].append(dt)
            assert np.array_equal(h.sh, g.sh) and np.array_equal(h.region, g.region), f"{name} read wrong values"
    size = path.stat().st_size / 2**20
    return [{"case": "ply", "reader": k, "gaussians": n, "file_mib": round(size, 1), **stats_ms(v)} for k, v in times.items()]


def _write_mp3(path: Path, seconds: float, rate: int = 44100) -> Path:
    import av

    t = np.arange(int(seconds * rate)) / rate
    x = (0.2 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.5 * t))).astype(np.float32)
    stereo = np.stack([x, x[::-1]])
    with av.open(str(path), "w", format="mp3") as c:
        s = c.add_stream("mp3", rate=rate)
        s.layout = "stereo"
        for i in range(0, stereo.shape[1], 1152):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(stereo[:, i : i + 1152]), format="fltp", layout="stereo")
            frame.sample_rate = rate
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    return path


def bench_audio(tmp: Path, seconds: float, repeat: int) -> list[dict]:
    from huma_rt.media.audio_file import load_audio, read_audio

    path = _write_mp3(tmp / "speech.mp3", seconds)
    calls = {"read_audio (decode)": lambda: read_audio(path), "load_audio (decode + mono + 16 kHz)": lambda: load_audio(path)}
    times: dict[str, list[float]] = {k: [] for k in calls}
    for i in range(repeat + 1):
        for name, call in calls.items():
            t0 = time.perf_counter()
            call()
            if i:
                times[name].append(time.perf_counter() - t0)
    return [{"case": "audio", "reader": k, "audio_s": seconds, **stats_ms(v)} for k, v in times.items()]


def run(quick: bool, out_dir: Path, base: str | None = None) -> dict:
    """Measure and write ``formats.json`` / ``formats.md`` into ``out_dir``."""
    with tempfile.TemporaryDirectory(prefix="huma-formats-") as d:
        tmp = Path(d)
        rows = bench_ply(tmp, 20_000 if quick else 200_000, 3 if quick else 7, base)
        try:
            rows += bench_audio(tmp, 10.0 if quick else 60.0, 3 if quick else 5)
        except ImportError as exc:  # PyAV is the media extra
            log.warning("audio decoding skipped: %s", exc)
    return write_result(Path(out_dir), "formats", rows, {"base": base})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("bench-results"))
    p.add_argument("--base", help="also time the PLY reader of this git revision, side by side")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run(a.quick, a.out, a.base)
    print((a.out / "formats.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
