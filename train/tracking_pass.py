"""The per-frame pass of face tracking: boxes, raw landmarks and the checks that need the image.

Detection runs on the first frame, every ``detect_every`` frames after it, and on every frame
while the last one was refused or showed more than one face; in between, the predictor starts
from a box around the previous frame's landmarks (~1.3 ms instead of ~12 ms). When detection
finds nothing within ``hold_frames`` of the last kept frame, the predictor still starts from that
frame's box, so a face hidden for a moment is refused for the right reason (hidden, not absent). Its state is a few
numbers and the recorded rows, so it is checkpointed every ``checkpoint_every`` frames and a
restarted run continues from the checkpoint with the same results as an uninterrupted one.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from huma_rt._files import atomic_write
from huma_rt.errors import FormatError

from .face_checks import lip_contrast
from .face_detect import FaceModel, box_from_landmarks
from .face_template import EYE_LEFT, EYE_RIGHT, RIGID
from .lip_shape import mouth_width
from .tracking_tracks import REASONS

log = logging.getLogger(__name__)

NO_FACE, FACES, LOW_CONFIDENCE, JUMP = (REASONS.index(r) for r in ("no_face", "faces", "low_confidence", "jump"))
_NAN68 = np.full((68, 2), np.nan, np.float32)


@dataclass
class PassState:
    """Rows recorded so far (one per frame) and the tracker's memory."""

    times: list = field(default_factory=list)
    boxes: list = field(default_factory=list)
    faces: list = field(default_factory=list)
    landmarks: list = field(default_factory=list)
    spread: list = field(default_factory=list)
    lip: list = field(default_factory=list)
    mouth: list = field(default_factory=list)
    reason: list = field(default_factory=list)
    last_detect: int = -(10**9)
    force_detect: bool = True

    @property
    def done(self) -> int:
        return len(self.times)

    def previous(self) -> np.ndarray | None:
        """Landmarks of the last frame if it was kept, else None (the next frame detects)."""
        if not self.reason or self.reason[-1] != 0:
            return None
        return self.landmarks[-1].astype(np.float64)

    def recent(self, frames: int) -> np.ndarray | None:
        """Landmarks of the last kept frame among the last ``frames`` ones, else None."""
        for k in range(len(self.reason) - 1, max(len(self.reason) - 1 - frames, -1), -1):
            if self.reason[k] == 0:
                return self.landmarks[k].astype(np.float64)
        return None

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "times": np.asarray(self.times, np.float64),
            "boxes": np.asarray(self.boxes, np.float32).reshape(-1, 4),
            "faces": np.asarray(self.faces, np.int8),
            "landmarks_raw": np.asarray(self.landmarks, np.float32).reshape(-1, 68, 2),
            "spread": np.asarray(self.spread, np.float32),
            "lip_contrast": np.asarray(self.lip, np.float32),
            "mouth_width": np.asarray(self.mouth, np.float32),
            "reason": np.asarray(self.reason, np.uint8),
        }

    def save(self, path: Path, key: str) -> None:
        buf = io.BytesIO()
        meta = json.dumps({"key": key, "last_detect": self.last_detect, "force_detect": self.force_detect})
        np.savez(buf, meta=np.array(meta), **self.arrays())
        atomic_write(path, buf.getvalue())

    @classmethod
    def load(cls, path: Path, key: str) -> PassState | None:
        """The checkpoint at ``path`` if it was written for ``key`` (same video and config), else None."""
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                a = {k: z[k] for k in z.files if k != "meta"}
        except (OSError, ValueError, KeyError) as exc:
            raise FormatError(f"checkpoint {path} is unreadable ({exc}); delete it to start over") from None
        if meta.get("key") != key:
            log.warning("checkpoint %s belongs to another video or config; starting over", path)
            return None
        if "mouth_width" not in a:
            log.warning("checkpoint %s was written before the mouth's colour width; starting over", path)
            return None
        return cls(times=list(a["times"]), boxes=list(a["boxes"]), faces=list(a["faces"]),
                   landmarks=list(a["landmarks_raw"]), spread=list(a["spread"]), lip=list(a["lip_contrast"]),
                   mouth=list(a["mouth_width"]), reason=list(a["reason"]), last_detect=int(meta["last_detect"]),
                   force_detect=bool(meta["force_detect"]))  # fmt: skip


class FramePass:
    """Feeds frames one by one into a PassState; ``cfg`` is a TrackingConfig."""

    def __init__(self, cfg, state: PassState, model: FaceModel | None = None):
        self.cfg = cfg
        self.state = state
        self.model = model or FaceModel()
        self.timing = {"detect": [0.0, 0], "landmarks": [0.0, 0], "checks": [0.0, 0], "mouth": [0.0, 0]}

    def _timed(self, name: str, fn, *args):
        import time

        t0 = time.perf_counter()
        out = fn(*args)
        self.timing[name][0] += time.perf_counter() - t0
        self.timing[name][1] += 1
        return out

    def push(self, index: int, t: float, rgb: np.ndarray) -> None:
        """Track frame ``index`` (must be the next one) shown at ``t`` seconds, rgb uint8 [H, W, 3]."""
        st, cfg = self.state, self.cfg
        assert index == st.done, (index, st.done)
        prev = st.previous()
        faces = -1
        box = None
        if prev is None or st.force_detect or index - st.last_detect >= cfg.detect_every:
            boxes, _ = self._timed("detect", self.model.detect, rgb, cfg.upsample)
            st.last_detect = index
            big = boxes[(boxes[:, 2] - boxes[:, 0]) >= cfg.second_face_ratio * (boxes[:, 2] - boxes[:, 0]).max(initial=0)]
            faces = len(big)
            if faces:
                box = big[_nearest(big, prev)]
        if box is None:  # the detector misses turned and partly hidden faces: the checks decide
            held = prev if prev is not None else st.recent(cfg.hold_frames)
            box = box_from_landmarks(held) if held is not None else None
        if box is None:
            self._record(t, np.full(4, np.nan), faces, _NAN68, np.nan, np.nan, np.nan, NO_FACE)
            st.force_detect = True
            return
        pts = self._timed("landmarks", self.model.landmarks, rgb, box)
        spread = float(self._timed("checks", self.model.landmark_spread, rgb, box, pts, cfg.spread_shift).mean())
        if spread > cfg.max_spread and faces >= 1:
            # the detector's pyramid can give a box a scale step too small for the predictor (the
            # demo head: 179 px instead of ~225, spread 0.8-1.1); one pass from the box of its own
            # landmarks recovers a real face (0.13-0.18) and leaves a featureless region refused
            box2 = box_from_landmarks(pts)
            pts2 = self._timed("landmarks", self.model.landmarks, rgb, box2)
            spread2 = float(self._timed("checks", self.model.landmark_spread, rgb, box2, pts2, cfg.spread_shift).mean())
            if spread2 < spread:
                box, pts, spread = box2, pts2, spread2
        lip = lip_contrast(rgb, pts)
        reason = 0
        if faces >= 2:
            reason = FACES
        elif spread > cfg.max_spread:
            reason = LOW_CONFIDENCE
        elif prev is not None and _jump(prev, pts) > cfg.max_jump:
            reason = JUMP
        st.force_detect = reason != 0
        mouth = np.nan
        if reason == 0 and cfg.mouth_colour:
            mouth = self._timed("mouth", mouth_width, rgb, pts)
        self._record(t, box, faces, pts, spread, lip, mouth, reason)

    def _record(self, t, box, faces, pts, spread, lip, mouth, reason) -> None:
        st = self.state
        st.times.append(t)
        st.boxes.append(np.asarray(box, np.float32))
        st.faces.append(faces)
        st.landmarks.append(np.asarray(pts, np.float32))
        st.spread.append(spread)
        st.lip.append(lip)
        st.mouth.append(mouth)
        st.reason.append(reason)


def _nearest(boxes: np.ndarray, prev: np.ndarray | None) -> int:
    """The detected box nearest the previous face, or the best-scored one (boxes come best first)."""
    if prev is None:
        return 0
    centre = prev.mean(0)
    mids = (boxes[:, :2] + boxes[:, 2:]) / 2
    return int(np.argmin(np.linalg.norm(mids - centre, axis=1)))


def inter_ocular(points: np.ndarray) -> float:
    """Distance between the eye centres of landmarks [68, 2], pixels."""
    return float(np.linalg.norm(points[EYE_LEFT].mean(0) - points[EYE_RIGHT].mean(0)))


def _jump(prev: np.ndarray, pts: np.ndarray) -> float:
    """Mean motion of the rigid landmarks between frames in inter-ocular distances."""
    d = np.linalg.norm(pts[RIGID] - prev[RIGID], axis=1).mean()
    return float(d / max(inter_ocular(prev), 1.0))
