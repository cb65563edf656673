"""huma-rt serve in a real headless Chromium (Playwright, the system chromium).

The page loads from the server, its fake microphone (a WAV of synthesized speech) reaches the
server, the video shows the avatar (pixels compared with the session's own rest pose), the
caption shows the recognised question, the mouth moves while the answer's audio plays and not
before, barge-in cuts the answer, two pages run at once while a third visitor is told "busy",
a visitor's page (no ?measure=1) reads no pixels and two of them share one browser, the idle
avatar blinks in the page and its mouth stays still, and a visitor who vanishes mid-answer
frees its worker.

Timing figures are printed (run with -s), never asserted tightly: this machine is shared.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from _espeak import espeak  # tests/_espeak.py
from huma_rt.bench import _proc
from huma_rt.bench._browser import (
    CHROMIUM,
    Browser,
    Page,
    Server,
    process_type,
    silence,
    write_wav48,
)

from huma_rt.serve.worker import moving_box

pytest.importorskip("aiortc")
pytest.importorskip("aiohttp")
sync_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

REPLY = ("Sure, let me tell you about it. The weather in Paris today is mild and bright, with a "
         "light wind from the west and a few clouds late in the afternoon.")  # fmt: skip
QUESTION = "What is the weather like today in Paris?"
MOVING = 6.0  # the page's motion measure (app.js MOTION_ON): idle frames measure ~0.5
VOICE_ON = 0.003  # RMS of the avatar's voice in the page (app.js AUDIO_ON): idle sends digital silence


@pytest.fixture(scope="module")
def server():
    srv = Server("--max-visitors", "2", "--warm", "2", "--responder", "scripted", "--reply", REPLY,
                 "--idle-timeout", "120", ready_workers=2)  # fmt: skip
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def playwright():
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    d = tmp_path_factory.mktemp("mic")
    speech = espeak(QUESTION, d / "q16.wav")
    return {
        "silence": write_wav48(d / "silence.wav", silence(5.0)),
        # the question, then 5 s of quiet: the file loops, so the question comes back while
        # the (long) answer to the previous one is still playing: barge-in
        "question": write_wav48(d / "question.wav", np.concatenate([silence(0.5), speech, silence(5.0)])),
    }


def _shows_avatar(page: Page, rest_pose: np.ndarray) -> float:
    page.wait("huma.frames.length > 5", 60, "video frames in the page")
    img = page.frame_png()
    assert img.shape == rest_pose.shape, f"video is {img.shape}, the avatar renders {rest_pose.shape}"
    err = float(np.abs(img.astype(np.int16) - rest_pose.astype(np.int16)).mean())
    assert img.std() > 20, "the frame is flat: no avatar in it"
    assert err < 8.0, f"the page's frame differs from the avatar's rest pose by {err:.1f} levels on average"
    return err


def _wait_quiet(page: Page, timeout: float = 90.0) -> None:
    """Until the avatar is idle: every started answer ended, nothing heard for 2 s (the muted
    microphone's last utterance may still be turned into a question), the picture still."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        quiet = page.js(f"""(() => {{ const now = performance.now();
            const started = new Set(huma.events.filter(e => e.type === 'answer_start').map(e => e.turn));
            const ended = new Set(huma.events.filter(e => e.type === 'answer_end').map(e => e.turn));
            const heard = huma.events.filter(e => e.type === 'heard');
            const speaking = huma.events.filter(e => e.type === 'user_speaking');
            if (speaking.length && speaking[speaking.length - 1].on) return false;
            return [...started].every(t => ended.has(t)) && (!heard.length || now - heard[heard.length - 1].at > 2000)
                && heard.every(h => h.turn === null || ended.has(h.turn))
                && huma.frames.slice(-20).every(f => f[1] <= {MOVING}); }})()""")
        if quiet:
            return
        time.sleep(0.25)
    raise AssertionError(f"the avatar did not go quiet within {timeout} s")


def test_two_pages_at_once_and_a_third_is_busy(server, playwright, wavs, rest_pose):
    pages = [Page(playwright, server.url, wavs["silence"]) for _ in range(2)]
    try:
        for p in pages:
            p.start()
        assert len({p.js("huma.worker") for p in pages}) == 2, "each visitor has its own worker process"
        status, body = server.post("offer", json.dumps({"type": "offer", "sdp": pages[0].js(
            "pc.localDescription.sdp")}).encode())  # fmt: skip
        assert status == 503 and body["error"].startswith("busy: 2 of 2 visitors"), (status, body)
        for p in pages:
            _shows_avatar(p, rest_pose)
        # idle: after 1 s of one picture (and 1 s after each bitrate step of the browser's estimate,
        # which restarts the encoder) the worker resends one display-only frame; every copy decodes
        # to the same picture (aiortc's re-encoded rest pose measured 0.5-1.5 here)
        for i, p in enumerate(pages):
            p.wait("huma.frames.length > 20 && huma.frames.slice(-15).every(f => f[1] === 0)", 30,
                   f"page {i + 1}: idle frames that are one picture")  # fmt: skip
        before = [p.receive_stats()["video"] for p in pages]
        for i, p in enumerate(pages):
            p.js(f"huma.ask('Question number {i + 1}?')")
        for i, p in enumerate(pages):
            start = p.wait("huma.events.find(e => e.type === 'answer_start')", 60, f"page {i + 1}'s answer")
            heard = p.events("heard")
            assert heard[0]["text"] == f"Question number {i + 1}?"
            # after the held frames the answer's frames decode (no stall, no lost reference)
            p.wait(f"huma.frames.some(f => f[0] > {start['at']} && f[1] > {MOVING})", 20, f"page {i + 1}'s mouth moving")
        time.sleep(1.5)
        for i, (p, b) in enumerate(zip(pages, before, strict=True)):
            a = p.receive_stats()["video"]
            start = p.events("answer_start")[0]["at"]
            shown = p.js(f"huma.frames.filter(f => f[0] > {start}).map(f => f[0])")
            span = (shown[-1] - shown[0]) / 1000 if len(shown) > 1 else 0.0
            print(f"\npage {i + 1}: {len(shown)} frames presented in {span:.1f} s after the answer started "
                  f"(this machine's load decides the rate), keyframes {a['key_frames']}, PLI {a['pli'] - b['pli']}, "
                  f"NACK {a['nack']}, freezes {a['freezes']}")  # fmt: skip
            # a decoder stall (a lost reference) would freeze the picture: frames go on being
            # presented and the mouth moves (above); their rate is the load's (serve_visitors)
            assert len(shown) >= 3 and span > 0.5, "the video stopped when the answer started"
            assert a["pli"] == b["pli"], f"page {i + 1} asked for keyframes: its decoder lost its reference"
    finally:
        for p in pages:
            p.close()
    server.wait_health(lambda h: h["visitors"] == 0, 30, "both visits to end")


def _eyes(avatar, rest: np.ndarray) -> list[float]:
    """The box (fractions of the frame) of what a full blink changes on the rest pose ``rest``."""
    session = avatar.session(live=True)
    try:
        session.blink = 1.0
        for frame in session.idle_frames(40):  # as the rest pose: from silence alone
            shut = frame.rgb.astype(np.int16)
    finally:
        session.close()
    ys, xs = np.nonzero(np.abs(shut - rest).max(axis=2) > 30)
    h, w = rest.shape[:2]
    return [xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h]


def test_the_idle_avatar_blinks_in_the_page(server, playwright, wavs, demo_avatar, rest_pose):
    """Nobody speaks: in the page the avatar's eyes shut now and then (their pixels depart from
    their usual picture for a few frames at a time), and the page's own meter, which stamps the
    answer's first frame, sees no movement on a blink's frames: a blink is not taken for an
    answer. (A new encoder's keyframe while idle, when the browser's bitrate estimate moves,
    re-encodes the whole still picture, which the meter can see: that is not a blink's doing and
    is printed, not asserted; CI saw one 10.7 s into a visit, and one that fell on a blink, which
    re-encoded the blink's own frames and left the meter's rest picture stale: the encoder now
    waits until a blink is over to restart, and the meter takes its rest picture again whenever
    one picture has been shown 10 times.)"""
    eyes = _eyes(demo_avatar, rest_pose)
    page = Page(playwright, server.url, wavs["silence"])
    try:
        page.start()
        # settled: the visit's first seconds re-encode the picture (its first keyframe is refined,
        # and the browser's first bitrate estimate restarts the encoder), which the meter sees
        page.wait("huma.frames.length > 50 && huma.frames.slice(-15).every(f => f[1] === 0)", 30,
                  "idle frames that are one picture")  # fmt: skip
        t0 = page.js("performance.now()")
        # the test's own probe: each presented frame's mean absolute luminance difference over
        # the eyes' box from the first frame it sees
        page.js(f"""(() => {{ const v = document.getElementById('avatar'), c = document.createElement('canvas');
            const ctx = c.getContext('2d', {{ willReadFrequently: true }}); window.probe = []; let ref = null;
            const f = (now, meta) => {{ c.width = v.videoWidth; c.height = v.videoHeight; ctx.drawImage(v, 0, 0);
                const b = {json.dumps(eyes)}, x = b[0] * c.width, y = b[1] * c.height;
                const d = ctx.getImageData(x, y, (b[2] - b[0]) * c.width, (b[3] - b[1]) * c.height).data;
                const lum = new Float32Array(d.length / 4);
                for (let i = 0; i < lum.length; i++) lum[i] = 0.299 * d[4 * i] + 0.587 * d[4 * i + 1] + 0.114 * d[4 * i + 2];
                if (!ref) ref = lum;
                let s = 0; for (let i = 0; i < lum.length; i++) s += Math.abs(lum[i] - ref[i]);
                window.probe.push([meta.expectedDisplayTime || now, s / lum.length]);
                v.requestVideoFrameCallback(f); }};
            v.requestVideoFrameCallback(f); }})()""")  # fmt: skip
        time.sleep(12.0)  # one blink per 4 s slot: two at least
        probe = np.array(page.js("window.probe"), dtype=float)
        frames = np.array(page.js("huma.frames"), dtype=float)
        onsets = page.js(f"huma.motionOnsets.filter(t => t > {t0})")
        keyframes = page.receive_stats()["video"].get("key_frames")
    finally:
        page.close()
    assert len(probe) > 200, f"{len(probe)} frames presented in 10 s"
    # the reference may itself be a blink's frame: measure from the usual (median) difference
    eye = np.abs(probe[:, 1] - np.median(probe[:, 1]))
    shut = eye > 8.0
    blinks = int(np.count_nonzero(shut[1:] & ~shut[:-1]) + shut[0])
    meter = frames[frames[:, 0] > t0]
    # each blink's span of display times, from its first shut frame to the frame after its last:
    # the meter's rows in it. Matched by span, not frame by frame: the meter's and the probe's
    # frame callbacks each skip presented frames when the page is busy (CI: 4 of 24 blink frames
    # had no meter row), and a frame the meter skips still shows in its next row's motion, which
    # is measured against the last frame it read
    starts = np.flatnonzero(shut & ~np.r_[False, shut[:-1]])
    ends = np.flatnonzero(shut & ~np.r_[shut[1:], False])
    spans = [(probe[a, 0], probe[min(b + 1, len(probe) - 1), 0]) for a, b in zip(starts, ends, strict=True)]
    # judged: the blinks with no new encoder's keyframe near them: the held picture, shown
    # unchanged for 1 s before the blink and again after it (a restart re-encodes the whole
    # picture, eyes included, which the meter sees whether or not the eyes move, and the meter's
    # rest picture is retaken only once the picture is still again; printed, not asserted, as above)
    def _held(lo: float, hi: float) -> bool:
        before = probe[(probe[:, 0] >= lo - 1000) & (probe[:, 0] < lo), 1]
        after = probe[(probe[:, 0] > hi) & (probe[:, 0] <= hi + 160), 1]
        return before.size > 10 and np.ptp(before) <= 0.1 and after.size > 0 and np.abs(after - before[-1]).max() <= 0.1

    clean = [_held(lo, hi) for lo, hi in spans]
    spans = [sp for sp, ok in zip(spans, clean, strict=True) if ok]
    rows = [(meter[:, 0] >= lo - 1) & (meter[:, 0] <= hi + 1) for lo, hi in spans]
    at = np.logical_or.reduce(rows) if rows else np.zeros(len(meter), bool)
    near = [t for t in onsets if any(lo - 80 <= t <= hi + 80 for lo, hi in spans)]
    on = (meter[at, 1].max(initial=0.0), meter[at, 5].max(initial=0.0))
    print(f"\nblinks seen in the page: {blinks} in {len(probe) / 25:.1f} s ({len(spans)} with no keyframe near), the "
          f"eyes' pixels {eye.max():.0f} levels off on average; the page's meter on their frames: motion <= "
          f"{on[0]:.2f}, opening <= {on[1]:.2f}; elsewhere {meter[~at, 1].max(initial=0.0):.2f} / "
          f"{meter[~at, 5].max(initial=0.0):.2f}, onsets {len(onsets) - len(near)}, keyframes {keyframes}")  # fmt: skip
    assert blinks >= 2 and shut.mean() < 0.2, (blinks, shut.mean())
    assert spans, f"a new encoder's keyframe fell near every blink ({blinks}); none could be judged"
    assert all(r.sum() >= 2 for r in rows), f"the meter read {[int(r.sum()) for r in rows]} frames of the blinks"
    assert near == [] and on[0] <= MOVING and on[1] <= MOVING, "the meter saw a blink"


def test_a_visitors_page_reads_no_pixels_and_pages_share_one_browser(server, playwright, wavs, rest_pose):
    """The page as a visitor opens it (no ?measure=1) reads no frame's pixels and no audio levels,
    yet decodes the avatar's video; two such pages run in one shared Chromium, a context each."""
    server.wait_health(lambda h: h["warm"] >= 2 and h["visitors"] == 0, 120, "two warm workers")
    browser = Browser(playwright, wavs["silence"])
    pages = []
    try:
        assert len(browser.pids) == 1 and process_type(browser.pids[0]) == "browser", browser.pids
        pages = [Page(playwright, server.url, wavs["silence"], measure=False, browser=browser) for _ in range(2)]
        for p in pages:
            p.start()
        assert len({p.js("huma.worker") for p in pages}) == 2, "each visitor has its own worker process"
        kinds = [process_type(pid) for pid in _proc.descendants(browser.pids)]
        assert kinds.count("renderer") >= 2, f"one renderer per context expected; processes: {kinds}"
        for i, p in enumerate(pages):
            p.wait("huma.pcState === 'connected'", 30, f"page {i + 1} connected")
            deadline = time.monotonic() + 30
            while (p.receive_stats().get("video", {}).get("frames_decoded") or 0) < 50:
                assert time.monotonic() < deadline, f"page {i + 1} decoded under 50 frames in 30 s"
                time.sleep(0.5)
            img = p.frame_png()
            err = float(np.abs(img.astype(np.int16) - rest_pose.astype(np.int16)).mean())
            assert img.shape == rest_pose.shape and err < 8.0, f"page {i + 1}: {img.shape}, {err:.1f} levels off the rest pose"
            assert p.js("[huma.frames.length, huma.levels.length]") == [0, 0], "the visitor's page measured frames/levels"
    finally:
        for p in pages:
            p.close()
        browser.close()
    server.wait_health(lambda h: h["visitors"] == 0, 30, "both visits to end")


def test_talk_caption_mouth_bargein_text_and_vanish(server, playwright, wavs, rest_pose, demo_avatar):
    server.wait_health(lambda h: h["warm"] >= 1, 120, "a warm worker")
    page = Page(playwright, server.url, wavs["question"])
    try:
        page.start()
        worker = page.js("huma.worker")
        err = _shows_avatar(page, rest_pose)
        print(f"\npage frame vs rest pose: {err:.2f} levels mean abs difference")
        # the channel's open event reached the page, with where the avatar moves (its meter's box)
        box = page.wait("huma.movingBox", 10, "the open event's moving_box")
        assert box == moving_box(demo_avatar.bundle, demo_avatar.blink_mask()), box

        # the fake microphone's question is recognised and answered
        heard = page.wait("huma.events.find(e => e.type === 'heard' && e.source === 'speech' && "
                          "/weather/i.test(e.text))", 60, "the spoken question's caption")  # fmt: skip
        print(f"heard: {heard['text']!r}")
        assert "weather" in page.js("document.getElementById('captions').innerText").lower()
        # answered (on a loaded machine a turn may be cut by the question's next round before
        # its first audio: any spoken turn from here on will do)
        started = page.wait(f"huma.events.find(e => e.type === 'answer_start' && e.turn >= {heard['turn']})", 90,
                            "an answer to the spoken question")  # fmt: skip

        # the question comes round again (the file loops) while the answer plays: barge-in
        cut = page.wait(f"huma.events.find(e => e.type === 'barge_in' && e.turn >= {started['turn']})", 60,
                        "barge-in")  # fmt: skip
        page.wait(f"huma.events.some(e => e.type === 'answer_end' && e.turn === {cut['turn']} && e.cut)", 10,
                  "the cut answer's end")  # fmt: skip
        t_cut = page.js(f"huma.events.find(e => e.type === 'barge_in' && e.turn === {cut['turn']}).at")
        time.sleep(1.6)
        levels = np.array(page.js("huma.levels"), dtype=float)
        near = levels[(levels[:, 0] > t_cut - 3000) & (levels[:, 0] < t_cut + 1600)]
        onset = near[(near[:, 1] > 0.01) & (near[:, 0] < t_cut)][:, 0].min()  # the visitor starts talking
        quiet = near[:, 2] < 0.01
        # the first moment after that from which the avatar's voice stays silent for 300 ms (the
        # next answer, to the interrupting question, only starts after its end of turn and ASR)
        silent_from = next((near[i, 0] for i in range(len(near))
                            if near[i, 0] >= onset and np.all(quiet[i : i + 30]) and i + 30 <= len(near)), None)  # fmt: skip
        assert silent_from is not None and silent_from < t_cut + 1000, "the avatar's voice went on after barge-in"
        print(f"barge-in: avatar silent {silent_from - onset:.0f} ms after the visitor started talking over it "
              f"(the page got the barge-in event {t_cut - onset:.0f} ms after)")

        # typed question, microphone muted: the mouth moves while the answer's audio plays, not before
        page.js("huma.setMic(false)")
        time.sleep(3.0)  # the utterance the mute cut off still becomes a question (end of turn + ASR)
        _wait_quiet(page)
        t_ask = page.js("performance.now()")
        page.page.fill("#question", "And tomorrow?")
        page.page.click("#send")
        heard = page.wait("huma.events.find(e => e.type === 'heard' && e.source === 'text')", 30, "typed caption")
        assert heard["text"] == "And tomorrow?"
        started = page.wait(f"huma.events.find(e => e.type === 'answer_start' && e.turn === {heard['turn']})", 60,
                            "the typed question's answer")  # fmt: skip
        time.sleep(2.5)
        frames = np.array(page.js("huma.frames"), dtype=float)
        levels = np.array(page.js("huma.levels"), dtype=float)
        audio_on = levels[(levels[:, 0] > t_ask) & (levels[:, 2] > VOICE_ON)][:, 0].min()
        moving = frames[(frames[:, 0] > t_ask) & (frames[:, 1] > MOVING)][:, 0]
        assert moving.size, "the mouth never moved during the answer"
        # still until the answer is heard, give or take the model's 80 ms lookahead (the mouth
        # opens just before a sound) and Chrome's A/V sync, which starts video 20-50 ms early
        # and corrects slowly (DEPENDENCIES.md); more on a loaded machine
        still = frames[(frames[:, 0] > t_ask) & (frames[:, 0] < audio_on - 300)]
        assert still.size == 0 or still[:, 1].max() <= MOVING, (
            f"the mouth moved {audio_on - moving.min():.0f} ms before the answer's audio was heard")
        during = frames[(frames[:, 0] >= audio_on) & (frames[:, 0] < audio_on + 2000)]
        assert (during[:, 1] > MOVING).mean() > 0.3, "the mouth is mostly still while the answer plays"
        av = moving.min() - audio_on
        print(f"typed question: first audio {audio_on - t_ask:.0f} ms, first mouth motion "
              f"{moving.min() - t_ask:.0f} ms after send (video {-av:.0f} ms {'ahead of' if av < 0 else 'behind'} "
              "the audio as the page sees it)")  # fmt: skip
        # Not asserted: Chrome lines the two tracks up from RTCP sender reports and corrects
        # slowly (DEPENDENCIES.md); on this shared, overloaded 2-core machine its audio jitter
        # buffer swings by hundreds of ms. The server-side pairing is exact (test_conversation).

        # the visitor vanishes mid-answer (browser killed): the worker ends and its slot frees
        visitors = server.health()["visitors"]
        assert page.kill(), "found no browser process to kill"
        h = server.wait_health(lambda h: worker not in h["worker_pids"], 45, "the vanished visitor's worker to exit")
        assert h["visitors"] == visitors - 1
    finally:
        page.close()
