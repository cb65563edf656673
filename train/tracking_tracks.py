"""The tracking stage's output: per-frame arrays [T, ...] with fixed dtypes, saved as one .npz.

The file holds only numeric and string arrays (read with ``allow_pickle=False``); the person's
rest values and the config travel as JSON strings. Frames where ``valid`` is False have NaN in
every measured-and-derived array (smoothed landmarks, pose, features, articulation, matte);
``landmarks_raw`` keeps what the predictor said there (NaN where no face was searched or found)
so a report can show why a frame was refused.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from huma_rt._files import atomic_write
from huma_rt.errors import FormatError

from .face_articulation import ARTICULATION, FEATURES

SCHEMA = 2  # 2: mouth_width (files of schema 1 load with it NaN)
# reason codes of invalid frames (index = code)
REASONS = ("ok", "no_face", "faces", "low_confidence", "mouth_occluded", "jump", "turned")
REASON_TEXT = {
    "ok": "face tracked",
    "no_face": "no face found",
    "faces": "more than one face (a training video must show one face)",
    "low_confidence": "landmarks not held by face features (face hidden or blurred)",
    "mouth_occluded": "mouth hidden (no lip colour where the lips should be)",
    "jump": "landmarks jumped between frames (occlusion or a cut)",
    "turned": "head turned too far from the camera",
}

# field -> (dtype, trailing shape); T frames lead every per-frame field
_PER_FRAME = {
    "times": (np.float64, ()),
    "boxes": (np.float32, (4,)),
    "faces": (np.int8, ()),
    "landmarks_raw": (np.float32, (68, 2)),
    "landmarks": (np.float32, (68, 2)),
    "spread": (np.float32, ()),
    "lip_contrast": (np.float32, ()),
    "mouth_width": (np.float32, ()),
    "valid": (np.bool_, ()),
    "reason": (np.uint8, ()),
    "rotvec": (np.float32, (3,)),
    "translation": (np.float32, (3,)),
    "euler": (np.float32, (3,)),
    "reprojection": (np.float32, ()),
    "features": (np.float32, (len(FEATURES),)),
    "articulation": (np.float32, (len(ARTICULATION),)),
    "matte": (np.float32, (None, 2)),
}


@dataclass
class Tracks:
    """Per-frame tracking of one video (T frames at ``fps``; image ``width`` x ``height``).

    times float64 [T] seconds; boxes float32 [T, 4] face box x0 y0 x1 y1; faces int8 [T] faces the
    detector saw (-1: not run on that frame); landmarks_raw / landmarks float32 [T, 68, 2] pixels
    (predictor output / One-Euro smoothed); spread float32 [T] landmark confidence (0 good, 1 no
    face features); lip_contrast float32 [T]; mouth_width float32 [T] the lips' colour width in
    pixels (lip_shape.py; NaN where not measured); valid bool [T]; reason uint8 [T] (index into
    REASONS); rotvec, translation float32 [T, 3] head pose (template mm -> camera); euler float32
    [T, 3] (pitch, yaw, roll degrees); reprojection float32 [T] rms pixels; features float32
    [T, len(FEATURES)]; articulation float32 [T, len(ARTICULATION)]; matte float32 [T, V, 2]
    polygon; intrinsics float64 [3, 3]; rest: the person's rest feature values; config: the
    TrackingConfig as a dict.
    """

    fps: float
    width: int
    height: int
    times: np.ndarray
    boxes: np.ndarray
    faces: np.ndarray
    landmarks_raw: np.ndarray
    landmarks: np.ndarray
    spread: np.ndarray
    lip_contrast: np.ndarray
    mouth_width: np.ndarray
    valid: np.ndarray
    reason: np.ndarray
    rotvec: np.ndarray
    translation: np.ndarray
    euler: np.ndarray
    reprojection: np.ndarray
    features: np.ndarray
    articulation: np.ndarray
    matte: np.ndarray
    intrinsics: np.ndarray
    rest: dict
    config: dict

    def __len__(self) -> int:
        return len(self.times)

    def reasons(self) -> list[str]:
        """The reason name of every frame ("ok" for valid ones)."""
        return [REASONS[r] for r in self.reason]

    def articulation_of(self, name: str) -> np.ndarray:
        """One named articulation track float32 [T] (NaN on invalid frames)."""
        return self.articulation[:, ARTICULATION.index(name)]

    def save(self, path: str | os.PathLike) -> None:
        """Write every array to ``path`` (.npz) atomically."""
        arrays = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("rest", "config")}
        arrays["fps"] = np.float64(self.fps)
        arrays["width"], arrays["height"] = np.int64(self.width), np.int64(self.height)
        meta = {"schema": SCHEMA, "rest": self.rest, "config": self.config, "reasons": REASONS,
                "articulation": ARTICULATION, "features": FEATURES}  # fmt: skip
        arrays["meta"] = np.array(json.dumps(meta))
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write(Path(path), buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tracks:
        """Read a file written by :meth:`save`; FormatError names what is missing or wrong."""
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise FormatError(f"{path}: not a tracks file ({exc})") from None
        try:
            meta = json.loads(str(data.pop("meta")))
        except (KeyError, ValueError) as exc:
            raise FormatError(f"{path}: tracks file without readable metadata ({exc})") from None
        if meta.get("schema") not in (1, SCHEMA) or tuple(meta.get("articulation", ())) != ARTICULATION:
            raise FormatError(f"{path}: tracks schema {meta.get('schema')} with articulation "
                              f"{meta.get('articulation')}; expected schema {SCHEMA} with {ARTICULATION}")  # fmt: skip
        if meta["schema"] == 1 and "times" in data:  # before the colour width: not measured there
            data.setdefault("mouth_width", np.full(len(data["times"]), np.nan, np.float32))
        missing = [f.name for f in fields(cls) if f.name not in ("rest", "config") and f.name not in data]
        if missing:
            raise FormatError(f"{path}: tracks file lacks {missing}")
        t = len(data["times"])
        for name, (dtype, shape) in _PER_FRAME.items():
            a = data[name]
            ok = a.dtype == dtype and a.shape[0] == t and len(a.shape) == 1 + len(shape)
            ok = ok and all(s is None or s == d for s, d in zip(shape, a.shape[1:], strict=True))
            if not ok:
                raise FormatError(f"{path}: {name} is {a.dtype} {a.shape}; expected {np.dtype(dtype)} "
                                  f"[{t}, {', '.join('V' if s is None else str(s) for s in shape)}]")  # fmt: skip
        return cls(fps=float(data.pop("fps")), width=int(data.pop("width")), height=int(data.pop("height")),
                   rest=meta["rest"], config=meta["config"], **data)  # fmt: skip
