"""The one live-serving harness, shared by the serving benchmarks (``bench/serve_*.py``) and the
browser tests (``tests/serve``): a served huma-rt, a real headless Chromium whose microphone is a
WAV file, the page's own measurements (``window.huma``) and its WebRTC receive statistics.

It lives in ``bench/`` (shipped as ``huma_rt.bench``) rather than in ``tests/``: the tests may
import the package, but the installed benchmarks cannot import the test tree.

Needs Playwright (``pip install playwright``; no browser download) and the system Chromium
(``apt-get install chromium``), found at ``$HUMA_CHROMIUM`` or ``/usr/lib/chromium/chromium``."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import wave
from pathlib import Path

import numpy as np

CHROMIUM = os.environ.get("HUMA_CHROMIUM", "/usr/lib/chromium/chromium")
REPO = Path(__file__).resolve().parents[1]  # the checkout (bench/ is one level down)


def tree_state() -> dict:
    """The checkout's commit and its uncommitted changes under huma_rt/ (what a run measured)."""
    def git(*args: str) -> str:
        r = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30)
        return r.stdout.strip() if r.returncode == 0 else ""

    return {"commit": git("rev-parse", "--short", "HEAD"), "dirty": git("status", "--short", "--", "huma_rt").splitlines()}


def write_wav48(path: Path, pcm16k: np.ndarray) -> Path:
    """16 kHz float speech -> 48 kHz 16-bit mono WAV, the form Chromium's fake microphone reads."""
    from huma_rt.speech.audio import resample

    x = resample(np.asarray(pcm16k, np.float32), 16000, 48000)
    s16 = (np.clip(x, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(s16.tobytes())
    return path


def silence(seconds: float) -> np.ndarray:
    """``seconds`` of digital silence, 16 kHz float32."""
    return np.zeros(int(seconds * 16000), np.float32)


def espeak(text: str, path: Path) -> np.ndarray:
    """16 kHz mono float32 speech of ``text`` from the espeak-ng program (also left at ``path``)."""
    from huma_rt.errors import MissingDependencyError
    from huma_rt.speech.audio import prepare_input, read_wav

    exe = shutil.which("espeak-ng")
    if exe is None:
        raise MissingDependencyError("espeak-ng is not installed (Debian package espeak-ng)")
    subprocess.run([exe, "-v", "en-us", "-w", str(path), text], check=True, timeout=30)
    pcm, rate = read_wav(path)
    return prepare_input(pcm, rate)


def noise(kind: str, seconds: float, rms: float = 0.05, seed: int = 0) -> np.ndarray:
    """Synthetic microphone noise, 16 kHz float32 at ``rms``: ``white``; ``pink`` (1/f power,
    shaped in the frequency domain); ``babble`` (a crowd stand-in: six voice-like sources, each a
    harmonic buzz at its own pitch through a wandering formant-ish band, with syllable-rate
    envelopes, summed). Synthetic, not recorded: it exercises the VAD, not a real room."""
    from huma_rt.errors import InputError

    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    if kind == "white":
        x = rng.normal(size=n)
    elif kind == "pink":
        spec = np.fft.rfft(rng.normal(size=n))
        f = np.fft.rfftfreq(n, 1 / 16000)
        spec[1:] /= np.sqrt(f[1:])
        spec[0] = 0
        x = np.fft.irfft(spec, n)
    elif kind == "babble":
        t = np.arange(n) / 16000
        x = np.zeros(n)
        for _ in range(6):
            f0 = rng.uniform(90, 260) * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(0.2, 1) * t))
            phase = 2 * np.pi * np.cumsum(f0) / 16000
            buzz = sum(np.sin(k * phase) / k for k in range(1, 12))
            env = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 6)), 0, None) ** 2
            x += buzz * env
        x += 0.1 * np.std(x) * rng.normal(size=n)
    else:
        raise InputError(f"noise kind must be white, pink or babble; got {kind!r}")
    return (x * (rms / max(float(np.std(x)), 1e-12))).astype(np.float32)


STATS_JS = """(async () => { const r = await pc.getStats(); const o = {t: performance.now()};
  r.forEach(s => { if (s.type !== 'inbound-rtp') return;
    const k = {jitter_buffer_ms: 1000 * (s.jitterBufferDelay || 0) / Math.max(1, s.jitterBufferEmittedCount || 0),
               packets: s.packetsReceived, packets_lost: s.packetsLost};
    if (s.kind === 'video') Object.assign(k, {frames_decoded: s.framesDecoded, frames_dropped: s.framesDropped,
      frames_received: s.framesReceived, fps: s.framesPerSecond, freezes: s.freezeCount,
      freeze_s: s.totalFreezesDuration, pauses: s.pauseCount, key_frames: s.keyFramesDecoded, pli: s.pliCount,
      nack: s.nackCount});
    else Object.assign(k, {samples: s.totalSamplesReceived, concealed: s.concealedSamples,
      silent_concealed: s.silentConcealedSamples, concealment_events: s.concealmentEvents,
      inserted_decel: s.insertedSamplesForDeceleration, removed_accel: s.removedSamplesForAcceleration});
    o[s.kind] = k; });
  return o; })()"""


class Server:
    """``python -m huma_rt serve`` on a free loopback port, stopped (SIGTERM, then SIGKILL) on close."""

    def __init__(self, *args: str, ready_workers: int = 1, timeout: float = 180.0, env: dict | None = None) -> None:
        cmd = [sys.executable, "-m", "huma_rt", "-v", "serve", "--port", "0", *args]
        self.log = tempfile.NamedTemporaryFile("w+", prefix="huma-serve-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, text=True, cwd=REPO,
                                     env={**os.environ, **(env or {})})  # fmt: skip
        self.url = None
        try:
            deadline = time.monotonic() + timeout
            while self.url is None:
                line = self.proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"huma-rt serve exited ({self.proc.wait()}):\n{self.tail()}")
                if line.startswith("serving "):
                    self.url = line.split()[1].split("?")[0]
                if time.monotonic() > deadline:
                    raise RuntimeError(f"huma-rt serve did not start in {timeout} s:\n{self.tail()}")
            if ready_workers:
                self.wait_health(lambda h: h["warm"] >= ready_workers, timeout, f"{ready_workers} warm workers")
        except BaseException:
            self.close()
            raise

    def tail(self, n: int = 40) -> str:
        if not self.log.closed:
            self.log.flush()
        return "".join(Path(self.log.name).read_text(errors="replace").splitlines(True)[-n:])

    def health(self) -> dict:
        with urllib.request.urlopen(self.url + "health", timeout=10) as r:
            return json.load(r)

    def wait_health(self, cond, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            h = self.health()
            if cond(h):
                return h
            if self.proc.poll() is not None:
                raise RuntimeError(f"huma-rt serve exited while waiting for {what}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; health {h}\n{self.tail()}")
            time.sleep(0.25)

    def post(self, path: str, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(self.url + path, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})  # fmt: skip
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self.log.close()


CHROMIUM_ARGS = ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 "--allow-loopback-in-peer-connection", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--autoplay-policy=no-user-gesture-required")  # fmt: skip


def _chromium_args(wav: Path, extra: tuple[str, ...]) -> list[str]:
    return [*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={wav}", *extra]


def _cmdline(pid: int) -> list[str]:
    """A process's arguments (Chromium rewrites its own title: NULs become spaces)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").split()
    except (FileNotFoundError, ProcessLookupError):
        return []


def process_type(pid: int) -> str:
    """A Chromium process's role: ``browser``, ``renderer``, ``gpu-process``, ``zygote``, or
    ``utility:<service>`` (``AudioService``, ``NetworkService``, ...); ``gone`` once it exited."""
    args = _cmdline(pid)
    if not args:
        return "gone"
    kind = next((a.split("=", 1)[1] for a in args if a.startswith("--type=")), "browser")
    if kind == "utility":
        sub = next((a.split("=", 1)[1] for a in args if a.startswith("--utility-sub-type=")), "")
        return "utility:" + sub.rsplit(".", 1)[-1]
    return kind


def _our_browsers() -> set[int]:
    """Chromium browser (main) processes started below this Python process (via Playwright's driver)."""
    from huma_rt.bench import _proc

    return {p for p in _proc.descendants([os.getpid()])
            if process_type(p) == "browser" and any("chromium" in a for a in _cmdline(p)[:1])}  # fmt: skip


class Browser:
    """One headless Chromium shared by several pages, each in a context (a window) of its own:
    one browser, GPU, network and audio service process for all of them instead of one set per
    page. Every page's fake microphone plays the same ``wav`` (a browser-wide flag)."""

    def __init__(self, playwright, wav: Path, extra_args: tuple[str, ...] = ()) -> None:
        before = _our_browsers()
        self.browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                  args=_chromium_args(wav, extra_args),
                                                  ignore_default_args=["--mute-audio"])  # fmt: skip
        self.pids = sorted(_our_browsers() - before)  # the browser process (its children are found from it)

    def close(self) -> None:
        try:
            self.browser.close()
        except Exception:
            pass  # already gone


class Page:
    """One page on the served URL, its microphone a looping WAV file. By default in a headless
    Chromium of its own (a fresh profile: one context, one page); with ``browser``, in a new
    context (window) of that shared browser, whose microphone file it then plays.

    ``measure``: open the page with ``?measure=1``, which turns on its per-frame and audio-level
    instrumentation (``huma.frames``, ``huma.levels``, the page-side latency); without it the page
    runs as a visitor's does. ``extra_args``: more Chromium switches (own browser only)."""

    def __init__(self, playwright, url: str, wav: Path, measure: bool = True, browser: Browser | None = None,
                 extra_args: tuple[str, ...] = ()) -> None:  # fmt: skip
        self.profile = Path(tempfile.mkdtemp(prefix="huma-chromium-"))
        self.shared = browser
        if browser is None:
            self.context = playwright.chromium.launch_persistent_context(
                str(self.profile), executable_path=CHROMIUM, headless=True, args=_chromium_args(wav, extra_args),
                ignore_default_args=["--mute-audio"])  # fmt: skip
        else:
            self.context = browser.browser.new_context()
        self.page = self.context.pages[0] if self.context.pages else self.context.new_page()
        self.console: list[str] = []
        self.page.on("console", lambda m: self.console.append(m.text))
        if measure:
            url += ("&" if "?" in url else "?") + "measure=1"
        self.page.goto(url)

    def start(self, timeout: float = 60.0) -> None:
        self.page.click("#start")
        self.page.wait_for_function("['connected', 'failed'].includes(window.huma.state)", timeout=timeout * 1000)
        state = self.page.evaluate("huma.state")
        assert state == "connected", f"page state {state}: {self.page.evaluate('huma.errors')}"

    def js(self, expr: str):
        return self.page.evaluate(expr)

    def wait(self, expr: str, timeout: float, what: str):
        try:
            self.page.wait_for_function(expr, timeout=timeout * 1000, polling=100)
        except Exception as exc:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; "
                                 f"events {json.dumps(self.js('huma.events.slice(-12)'))[:1500]}") from exc  # fmt: skip
        return self.js(expr)

    def events(self, kind: str) -> list[dict]:
        return self.js(f"huma.events.filter(e => e.type === {json.dumps(kind)})")

    def receive_stats(self) -> dict:
        """The page's WebRTC receive counters now (``RTCPeerConnection.getStats()``, inbound-rtp),
        per kind: video frames decoded/dropped/received, fps, freezes, pauses; audio samples
        received and concealed, concealment events, samples inserted/removed to slow down/speed up
        playout; both jitter buffers (ms a sample or frame waited on average); video keyframes
        decoded and the keyframe requests (PLI) and retransmission requests (NACK) the page sent
        (a decoder that lost its reference asks for a keyframe)."""
        return self.js(STATS_JS)

    def frame_png(self) -> np.ndarray:
        """The frame the video element shows now, as uint8 [H, W, 3] at the stream's size."""
        from PIL import Image

        url = self.js("""(() => { const v = document.getElementById('avatar');
            const c = document.createElement('canvas'); c.width = v.videoWidth; c.height = v.videoHeight;
            c.getContext('2d').drawImage(v, 0, 0); return c.toDataURL('image/png'); })()""")
        data = base64.b64decode(url.split(",", 1)[1])
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    def browser_pids(self) -> list[int]:
        """The Chromium processes of this page (found by its private profile directory); with a
        shared browser, that browser's main process (its children serve every page)."""
        if self.shared is not None:
            return list(self.shared.pids)
        out = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True).stdout
        return [int(ln.split()[0]) for ln in out.splitlines() if f"--user-data-dir={self.profile}" in ln]

    def kill(self) -> list[int]:
        """The visitor vanishes: SIGKILL the browser (no goodbye on the peer connection)."""
        if self.shared is not None:
            raise RuntimeError("kill() needs a page with its own browser (a shared one serves other pages)")
        pids = self.browser_pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return pids

    def close(self) -> None:
        try:
            self.context.close()
        except Exception:
            pass  # already killed
        shutil.rmtree(self.profile, ignore_errors=True)
