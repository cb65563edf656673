// huma-rt page: microphone -> server, the avatar's video and voice <- server, captions, latency.
// Plain JS, no build step. Everything measured is kept (bounded) in window.huma for tests.
"use strict";

const $ = (id) => document.getElementById(id);
const LOG_MAX = 30000;         // entries kept per log (5 minutes of 10 ms audio levels)
const AUDIO_ON = 0.003;        // RMS above which the avatar's voice counts as playing (idle sends digital silence)
const MIC_ON = 0.01;           // RMS above which the microphone counts as speech
const MOTION_ON = 6;           // mean |diff| (0..255) of the most-changed 8x8 block: the mouth moved
const QUIET_MS = 300;          // quiet this long before an onset counts as a new one
// The level meters read the newest LEVEL_FFT samples (5.8 ms at 44.1 kHz). An analyser's time
// data is its last fftSize samples, and a shorter array gets the OLDEST of them: with the default
// fftSize (2048) a 256-sample read lagged 40-46 ms, which stamped the end of the visitor's speech
// that much late (spoken latencies read ~40 ms short).
const LEVEL_FFT = 256;
// ?measure=1 (tests, benchmarks): read every frame's pixels and the audio levels every 10 ms, for
// the page-side latency (huma.frames, huma.levels). Off for visitors: it costs a page about a
// fifth of its CPU.
const MEASURE = new URLSearchParams(location.search).has("measure");

const huma = (window.huma = {
  state: "idle", worker: null, movingBox: null, events: [], captions: [], frames: [], levels: [],
  micEnds: [], audioOnsets: [], motionOnsets: [], turns: {}, errors: [],
  setMic(on) { if (micTrack) micTrack.enabled = on; $("mic").textContent = on ? "Mute mic" : "Unmute mic"; },
  ask(text) { return send({ type: "text", text }); },
});

let pc = null, dc = null, micTrack = null, audioCtx = null;
let micAnalyser = null, remoteAnalyser = null;

function push(list, item) { list.push(item); if (list.length > LOG_MAX) list.splice(0, list.length - LOG_MAX); }
function status(text) { $("status").textContent = text; }
function caption(cls, text) {
  const p = document.createElement("p");
  p.className = cls;
  p.textContent = text;
  $("captions").appendChild(p);
  $("captions").scrollTop = 1e9;
  return p;
}
function send(msg) {
  if (!dc || dc.readyState !== "open") return false;
  dc.send(JSON.stringify(msg));
  return true;
}
function token() { return new URLSearchParams(location.search).get("token"); }

// -- levels: the microphone and the avatar's voice, every 10 ms ---------------------------------
function rms(analyser, buf) {
  analyser.getFloatTimeDomainData(buf);
  let s = 0;
  for (let i = 0; i < buf.length; i++) s += buf[i] * buf[i];
  return Math.sqrt(s / buf.length);
}

function watchLevels() {
  const buf = new Float32Array(LEVEL_FFT);
  // the avatar's voice is heard this long after the graph has it: the page's audio output
  // latency (measured headless: 10 + 32 ms); its onsets are stamped when it is heard
  const outMs = 1000 * ((audioCtx.baseLatency || 0) + (audioCtx.outputLatency || 0));
  huma.outputLatencyMs = +outMs.toFixed(1);
  let micLoud = -1e9, micSpeaking = false, audioLoud = -1e9;
  setInterval(() => {
    const t = performance.now();
    const mic = micAnalyser && micTrack && micTrack.enabled ? rms(micAnalyser, buf) : 0;
    const out = remoteAnalyser ? rms(remoteAnalyser, buf) : 0;
    push(huma.levels, [Math.round(t), +mic.toFixed(4), +out.toFixed(4)]);
    if (mic > MIC_ON) { micLoud = t; micSpeaking = true; }
    else if (micSpeaking && t - micLoud > 200) { micSpeaking = false; push(huma.micEnds, micLoud); }
    if (out > AUDIO_ON) {
      if (t - audioLoud > QUIET_MS) push(huma.audioOnsets, t + outMs);
      audioLoud = t;
    }
  }, 10);
}

// -- frames: pixels of every presented frame (requestVideoFrameCallback) ---------------------------
// Read on the part of the picture where the avatar moves (the server's moving_box, fractions of
// the frame; the whole frame until it comes): a small face in a large frame moves few of the
// whole picture's pixels, and its first mouth movement would go unseen at this resolution.
function watchFrames(video) {
  const N = 128, canvas = document.createElement("canvas");
  canvas.width = canvas.height = N;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  let prev = null, lastMotion = -1e9, rest = null, still = 0, same = 0, box = null;
  const onFrame = (now, meta) => {
    if (huma.movingBox !== box) { box = huma.movingBox; prev = rest = null; still = same = 0; }
    const vw = video.videoWidth, vh = video.videoHeight;
    if (box && vw && vh) {
      ctx.drawImage(video, box[0] * vw, box[1] * vh, (box[2] - box[0]) * vw, (box[3] - box[1]) * vh, 0, 0, N, N);
    } else {
      ctx.drawImage(video, 0, 0, N, N);
    }
    const px = ctx.getImageData(0, 0, N, N).data;
    const lum = new Float32Array(N * N);
    let sum = 0, sum2 = 0;
    for (let i = 0; i < N * N; i++) {
      const y = 0.299 * px[4 * i] + 0.587 * px[4 * i + 1] + 0.114 * px[4 * i + 2];
      lum[i] = y; sum += y; sum2 += y * y;
    }
    // motion: the most-changed 8x8 block against the previous frame (the mouth moving);
    // opening: the same against the rest pose (how far the mouth is from closed)
    let motion = 0, opening = 0;
    for (let by = 0; by < N; by += 8) for (let bx = 0; bx < N; bx += 8) {
      let d = 0, o = 0;
      for (let y = by; y < by + 8; y++) for (let x = bx; x < bx + 8; x++) {
        const i = y * N + x;
        if (prev) d += Math.abs(lum[i] - prev[i]);
        if (rest) o += Math.abs(lum[i] - rest[i]);
      }
      motion = Math.max(motion, d / 64);
      opening = Math.max(opening, o / 64);
    }
    still = prev && motion < 1.5 ? still + 1 : 0;
    same = prev && motion === 0 ? same + 1 : 0;
    // the rest pose: the idle avatar once the picture has settled, and again whenever one picture
    // has been shown 10 times (a new encoder re-encodes the idle picture at another quality, and
    // the picture taken while the first keyframe was still being refined is not the settled one)
    if ((!rest && still >= 10) || same >= 10) rest = lum;
    prev = lum;
    const t = meta.expectedDisplayTime || now;
    const mean = sum / (N * N), std = Math.sqrt(Math.max(0, sum2 / (N * N) - mean * mean));
    push(huma.frames, [Math.round(t), +motion.toFixed(2), +std.toFixed(1), meta.rtpTimestamp || 0,
                       meta.presentedFrames || 0, +opening.toFixed(2)]);
    // an onset: the picture changes fast, or has left the rest pose (a mouth that opens slowly
    // changes little from one frame to the next)
    if (motion > MOTION_ON || opening > MOTION_ON) {
      if (t - lastMotion > QUIET_MS) push(huma.motionOnsets, t);
      lastMotion = t;
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
}

// -- latency of a turn as the page sees it --------------------------------------------------------
function after(list, t) { return list.find((x) => x >= t); }

function turnLatency(turn) {
  // end of the question: the send time of a typed one; the last microphone speech before the
  // server heard a spoken one
  let end = turn.sent;
  if (turn.source === "speech") end = huma.micEnds.filter((x) => x <= turn.heardAt).pop();
  if (end === undefined) return null;
  const frame = after(huma.motionOnsets, end), audio = after(huma.audioOnsets, end);
  return {
    turn: turn.id, source: turn.source, end: Math.round(end),
    frame_ms: frame === undefined ? null : Math.round(frame - end),
    audio_ms: audio === undefined ? null : Math.round(audio - end),
    av_ms: frame === undefined || audio === undefined ? null : Math.round(frame - audio),
  };
}
huma.latency = () => Object.values(huma.turns).map(turnLatency).filter(Boolean);

function showLatency(turn) {
  const l = turnLatency(turn);
  const s = turn.server || {};
  const parts = [];
  if (l && l.frame_ms !== null) parts.push(`first frame ${l.frame_ms} ms`);
  if (l && l.audio_ms !== null) parts.push(`first audio ${l.audio_ms} ms`);
  if (l && l.av_ms !== null) parts.push(`A/V ${l.av_ms} ms`);
  const srv = Object.entries(s).map(([k, v]) => `${k} ${v}`).join(", ");
  $("latency").textContent = `turn ${turn.id}: ${parts.join(", ") || "…"}` + (srv ? ` | server: ${srv} ms` : "");
}

// -- server events ---------------------------------------------------------------------------------
let lastTextSent = null;

function onEvent(ev) {
  ev.at = performance.now();
  push(huma.events, ev);
  const turn = ev.turn ? (huma.turns[ev.turn] = huma.turns[ev.turn] || { id: ev.turn, answer: "" }) : null;
  switch (ev.type) {
    case "open":
      if (Array.isArray(ev.moving_box) && ev.moving_box.length === 4) huma.movingBox = ev.moving_box;
      break;
    case "heard":
      if (!turn) { caption("note", ev.note || "(nothing heard)"); break; }
      turn.question = ev.text; turn.source = ev.source; turn.heardAt = ev.at;
      if (ev.source === "text") turn.sent = lastTextSent !== null ? lastTextSent : ev.at;
      turn.you = caption("you", "You: " + ev.text);
      huma.captions.push({ who: "you", turn: ev.turn, text: ev.text });
      break;
    case "answer":
      turn.answer += ev.text;
      if (!turn.el) turn.el = caption("avatar", "");
      turn.el.textContent = "Avatar: " + turn.answer;
      huma.captions.push({ who: "avatar", turn: ev.turn, text: ev.text });
      break;
    case "answer_start":
      turn.server = ev.server_ms; turn.pts = ev.pts;
      setTimeout(() => showLatency(turn), 1500);
      break;
    case "answer_end":
      turn.ended = ev; if (ev.cut && turn.el) turn.el.textContent += " [cut]";
      break;
    case "barge_in":
      turn.bargeIn = ev.at;
      break;
    case "user_speaking":
      status(ev.on ? "Listening…" : "Connected: talk, or type below.");
      break;
    case "error":
      huma.errors.push(ev.message); caption("note", "error: " + ev.message);
      break;
    case "bye":
      status("Session ended: " + ev.reason); huma.state = "ended";
      break;
  }
}

// -- connection ------------------------------------------------------------------------------------
async function start() {
  $("start").disabled = true;
  huma.state = "connecting";
  status("Connecting…");
  try {
    const mic = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
    });
    micTrack = mic.getAudioTracks()[0];
    if (MEASURE) {
      audioCtx = new AudioContext();
      micAnalyser = audioCtx.createAnalyser();
      micAnalyser.fftSize = LEVEL_FFT;
      audioCtx.createMediaStreamSource(mic).connect(micAnalyser);
    }

    pc = new RTCPeerConnection({ iceServers: [] });
    pc.addTrack(micTrack, mic);
    pc.addTransceiver("video", { direction: "recvonly" });
    dc = pc.createDataChannel("chat", { ordered: true });
    dc.onmessage = (e) => onEvent(JSON.parse(e.data));
    dc.onopen = () => {
      huma.state = "connected";
      status("Connected: talk, or type below.");
      $("question").disabled = $("send").disabled = $("mic").disabled = false;
    };
    const video = $("avatar");
    pc.ontrack = (e) => {
      if (video.srcObject !== e.streams[0]) {
        video.srcObject = e.streams[0];
        video.play().catch((err) => huma.errors.push("play: " + err));
        if (MEASURE) watchFrames(video);
      }
      if (e.track.kind === "audio" && MEASURE) {
        remoteAnalyser = audioCtx.createAnalyser();
        remoteAnalyser.fftSize = LEVEL_FFT;
        // Remote WebRTC audio reaches WebAudio only while a media element plays it (the video).
        audioCtx.createMediaStreamSource(e.streams[0]).connect(remoteAnalyser);
      }
    };
    pc.onconnectionstatechange = () => {
      huma.pcState = pc.connectionState;
      if (["failed", "closed", "disconnected"].includes(pc.connectionState)) status("Connection " + pc.connectionState);
    };
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {  // the server does not trickle: send every candidate at once
      if (pc.iceGatheringState === "complete") return resolve();
      pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && resolve();
      setTimeout(resolve, 3000);
    });
    const headers = { "Content-Type": "application/json" };
    if (token()) headers.Authorization = "Bearer " + token();
    const resp = await fetch("offer", {
      method: "POST", headers,
      body: JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type }),
    });
    const body = await resp.json();
    if (!resp.ok) throw new Error(resp.status === 503 ? "The avatar is busy: " + body.error : body.error);
    huma.worker = body.worker;
    await pc.setRemoteDescription(body);
    if (MEASURE) watchLevels();
  } catch (err) {
    huma.state = "failed";
    huma.errors.push(String(err.message || err));
    status(String(err.message || err));
    $("start").disabled = false;
    if (pc) pc.close();
  }
}

$("start").onclick = start;
// A closed tab says so, so its worker ends now instead of after 5 s without microphone packets.
window.addEventListener("pagehide", () => {
  send({ type: "leave" });
  if (pc) pc.close();
});
$("mic").onclick = () => huma.setMic(!micTrack.enabled);
$("ask").onsubmit = (e) => {
  e.preventDefault();
  const text = $("question").value.trim();
  if (!text) return;
  lastTextSent = performance.now();
  if (send({ type: "text", text })) $("question").value = "";
};
