"""The report folder of ``huma-rt train`` (``me.report/``), written from the work folder's files:

- ``heldout.png``: held-out frames (never trained on) at the fit's size: the video's frame, the
  static avatar and the articulated avatar at that frame's pose (and motion code), with PSNR;
- ``losses.png``: the training loss of each fit over its iterations;
- ``tracking/``: the tracking overlay of a few frames and the articulation tracks (report_tracking);
- ``report.json`` and ``report.md``: the video, every stage's time, frames left out and why,
  held-out PSNR/SSIM per fit stage (whole frame and face), the Gaussian count, the audio path.

Whatever stages exist are reported (a run stopped early or refused still gets its tracking
report). Needs matplotlib (the ``dev`` extra).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from huma_rt._optional import require

from .pipeline_work import read_json, read_npz, write_json
from .stage_code import modules_code
from .tracking_tracks import REASON_TEXT, REASONS, Tracks
from .video import VideoConfig, open_video

log = logging.getLogger(__name__)

SHEET_FRAMES = 6


def write_report(work: str | os.PathLike, out: str | os.PathLike, video: str | os.PathLike,
                 video_config: VideoConfig | None = None, stages: dict | None = None) -> Path:  # fmt: skip
    """Write the report of work folder ``work`` into ``out``; return report.json's path.
    stages: {stage: {seconds, skipped, summary}} of this run (None: read from stages.json)."""
    work, out = Path(work), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = read_json(work / "stages.json") if (work / "stages.json").is_file() else {"stages": {}}
    if stages is None:
        stages = {k: {"seconds": v["seconds"], "skipped": True, "summary": v.get("summary", {})}
                  for k, v in state["stages"].items()}  # fmt: skip
    rep: dict = {"video": str(video), "work": str(work), "stages": stages, "files": []}
    if (work / "video.json").is_file():
        rep["video_info"] = read_json(work / "video.json")
    tracks = Tracks.load(work / "tracks.npz") if (work / "tracks.npz").is_file() else None
    keys = {k: v.get("key") for k, v in state["stages"].items()}
    if (work / "tracks.key").is_file():  # also there when the tracks failed their check
        keys["tracks"] = (work / "tracks.key").read_text()
    keys["report"] = modules_code("report")  # an edit of the drawing code redraws too
    if tracks is not None:
        rep["frames"] = _frames(tracks)
        from .report_tracking import REPORT_FILES
        from .report_tracking import write_report as tracking_report

        files = [out / "tracking" / f for f in REPORT_FILES]
        inputs = [keys.get("tracks"), keys["report"]]
        if not _unchanged(out / "tracking", inputs, files):
            files = tracking_report(tracks, video, out / "tracking", video_config=video_config)
            _stamp(out / "tracking", inputs)
        rep["files"] += [str(p.relative_to(out)) for p in files]
    fits = {}
    for name in ("static", "articulated"):
        p = work / name / "result.json"
        if p.is_file():
            j = read_json(p)
            fits[name] = j
            rep[name] = {**{k: v for k, v in j["metrics"].items() if k != "frames"},
                         "held_out_frames": len(j["metrics"].get("frames", [])),
                         "gaussians": int(read_npz(work / name / "result.npz")["g_means"].shape[0]),
                         "fit_seconds": j["seconds"]}  # fmt: skip
    if (work / "audio" / "encoder.json").is_file():
        rep["audio"] = read_json(work / "audio" / "encoder.json")["metrics"]
    if fits:
        plt = require("matplotlib.pyplot", "writing the training report (pip install matplotlib)")
        _losses(plt, fits, out / "losses.png")
        rep["files"].append("losses.png")
        if tracks is not None and (work / "poses.npz").is_file():
            # the sheet renders the fits over decoded frames: redrawn only when a stage it shows changed
            inputs = [keys.get("tracks"), keys.get("static"), keys.get("codes"),
                      keys.get("articulated") if "articulated" in fits else "none", keys["report"]]  # fmt: skip
            if not _unchanged(out, inputs, [out / "heldout.png"], name=".heldout.key"):
                _sheet(plt, work, tracks, video, video_config, fits, out / "heldout.png")
                _stamp(out, inputs, name=".heldout.key")
            rep["files"].append("heldout.png")
    write_json(out / "report.json", rep)
    (out / "report.md").write_text(_markdown(rep))
    log.info("training report in %s", out)
    return out / "report.json"


def _unchanged(folder: Path, inputs: list, files: list[Path], name: str = ".key") -> bool:
    """Whether ``files`` exist and were drawn from the stage keys ``inputs`` (None: unknown,
    so never) as stamped in ``folder / name``: a resumed run keeps them instead of redrawing."""
    stamp = folder / name
    return (None not in inputs and stamp.is_file() and stamp.read_text() == json.dumps(inputs)
            and all(p.is_file() for p in files))  # fmt: skip


def _stamp(folder: Path, inputs: list, name: str = ".key") -> None:
    stamp = folder / name
    if None in inputs:
        stamp.unlink(missing_ok=True)
    else:
        stamp.write_text(json.dumps(inputs))


def _frames(tracks: Tracks) -> dict:
    left = {REASONS[c]: int((tracks.reason == c).sum()) for c in np.unique(tracks.reason) if c != 0}
    return {"total": len(tracks), "valid": int(tracks.valid.sum()),
            "left_out": {k: {"frames": n, "why": REASON_TEXT[k]} for k, n in left.items()}}  # fmt: skip


def _losses(plt, fits: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, len(fits), figsize=(5.5 * len(fits), 3.4), squeeze=False)
    for ax, (name, j) in zip(axes[0], fits.items(), strict=True):
        h = [r for r in j["history"] if "loss" in r]
        ax.plot([r["iteration"] for r in h], [r["loss"] for r in h], lw=1)
        ax.set_yscale("log")
        ax.set_title(f"{name} fit", fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.set_ylabel("loss (L1 + D-SSIM)", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _sheet(plt, work: Path, tracks: Tracks, video, video_config, fits: dict, path: Path) -> None:
    """Held-out frames: truth / static / articulated, each at the fit's size."""
    import torch

    from .losses import psnr

    poses = read_npz(work / "poses.npz")  # per fit row (the fits' "frame" numbers are rows)
    rows = {r["frame"]: r for r in fits["static"]["metrics"].get("frames", [])} if "static" in fits else {}
    held = sorted(rows) or sorted(r["frame"] for r in fits["articulated"]["metrics"].get("frames", []))
    if not held:
        return
    video_frame = poses["frame"]
    picks = [held[i] for i in np.linspace(0, len(held) - 1, min(SHEET_FRAMES, len(held))).round().astype(int)]
    picks = list(dict.fromkeys(picks))
    renders: dict[str, dict[int, np.ndarray]] = {}
    if "static" in fits:
        from .fit_static import render_fit
        from .pipeline_work import load_static

        s = load_static(work / "static")
        renders["static"] = {i: render_fit(s, poses["head_quat"][i], poses["head_trans"][i]) for i in picks}
    if "articulated" in fits and (work / "codes.npz").is_file():
        from .fit_articulated import render_articulated
        from .pipeline_work import load_articulated

        a = load_articulated(work / "articulated")
        codes = read_npz(work / "codes.npz")["codes"]
        renders["articulated"] = {i: render_articulated(a, poses["head_quat"][i], poses["head_trans"][i],
                                                        np.nan_to_num(codes[video_frame[i]])) for i in picks}  # fmt: skip
    h, w = next(iter(next(iter(renders.values())).values())).shape[:2]
    frames = _truth(video, video_config, [int(video_frame[i]) for i in picks], h, w)
    truth = {i: frames[int(video_frame[i])] for i in picks}
    fig, axes = plt.subplots(1 + len(renders), len(picks), figsize=(2.2 * len(picks), 2.3 * (1 + len(renders))),
                             squeeze=False)  # fmt: skip
    for c, i in enumerate(picks):
        axes[0, c].imshow(truth[i])
        axes[0, c].set_title(f"frame {int(video_frame[i])}: video", fontsize=7)
        for r, (name, imgs) in enumerate(renders.items(), 1):
            p = psnr(torch.from_numpy(imgs[i]), torch.from_numpy(truth[i]))
            axes[r, c].imshow(np.clip(imgs[i], 0, 1))
            axes[r, c].set_title(f"{name} {p:.1f} dB", fontsize=7)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _truth(video, video_config, picks: list[int], h: int, w: int) -> dict[int, np.ndarray]:
    """The video's frames ``picks`` area-averaged to the fit's size (float32 [h,w,3] in [0, 1])."""
    want, got = set(picks), {}
    for i, _, rgb in open_video(video, video_config).frames():
        if i in want:
            d = rgb.shape[0] // h
            x = rgb[: h * d, : w * d].astype(np.float32).reshape(h, d, w, d, 3).mean((1, 3))
            got[i] = np.rint(x) / 255.0  # the fit's targets are pooled to uint8, then scaled
            if len(got) == len(want):
                break
    return {k: v.astype(np.float32) for k, v in got.items()}


def _markdown(rep: dict) -> str:
    lines = [f"# Training report: {Path(rep['video']).name}", ""]
    info = rep.get("video_info", {}).get("info")
    if info:
        lines.append(f"Video: {info['width']}x{info['height']}, {info['fps']:.3g} fps, {info['seconds']:.1f} s, "
                     f"{info['frames']} frames; speech: {rep.get('audio', {}).get('speech', '-')}.")  # fmt: skip
    fr = rep.get("frames")
    if fr:
        left = "; ".join(f"{v['frames']} {v['why']}" for v in fr["left_out"].values()) or "none"
        lines.append(f"Frames: {fr['valid']} of {fr['total']} used; left out: {left}.")
    lines += ["", "| stage | seconds | note |", "|---|---|---|"]
    for name, s in rep["stages"].items():
        note = "done in an earlier run" if s.get("skipped") else ""
        lines.append(f"| {name} | {s['seconds']:.1f} | {note} |")
    fits = [n for n in ("static", "articulated") if n in rep]
    if fits:
        lines += ["", "Held-out frames (never trained on), at the fit's size:", "",
                  "| fit | PSNR dB | SSIM | face PSNR dB | face SSIM | head PSNR dB | mouth | eyes | Gaussians |",
                  "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for n in fits:
            m = rep[n]
            cells = [f"{m[k]:.2f}" if isinstance(m.get(k), (int, float)) else "-"
                     for k in ("psnr", "ssim", "psnr_face", "ssim_face", "psnr_head", "psnr_mouth", "psnr_eyes")]
            lines.append(f"| {n} | {' | '.join(cells)} | {m['gaussians']} |")
    pack = rep["stages"].get("pack", {}).get("summary") or {}
    if "size" in pack:
        fit = f" (the fit's frames: {pack['fit_size'][0]}x{pack['fit_size'][1]})" if "fit_size" in pack else ""
        lines += ["", f"Bundle: {pack['size'][0]}x{pack['size'][1]} px{fit}, {pack['gaussians']} Gaussians."]
        left = pack.get("fitted_gaussians", pack["gaussians"]) - pack["gaussians"]
        if left:
            lines[-1] += (f" {left} of the fit's {pack['fitted_gaussians']} were left out: no frame shows them (they "
                          f"never cover {pack.get('prune_below', 0):g} of a pixel; at rest, the avatar drawn without "
                          f"them matches the fit's picture at {pack.get('prune_psnr')} dB PSNR).")  # fmt: skip
        if "blinks" in pack:
            lines[-1] += (" It blinks when served (the fitted frames show shut eyes)." if pack["blinks"] else
                          " It does not blink: the fitted frames show no shut eye.")  # fmt: skip
    if "audio" in rep:
        a = rep["audio"]
        lines += ["", f"Audio path: {'adapted on the speech track' if a.get('adapted') else 'the shipped one'} "
                  f"({a.get('reason', '')})."]  # fmt: skip
    if rep["files"]:
        lines += ["", "Files: " + ", ".join(rep["files"]) + "."]
    return "\n".join(lines) + "\n"
