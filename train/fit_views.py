"""The static fit's training views: the input contract (StaticFitData), the frames, mattes and
poses at the fit's size, the background plate and the held-out split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from huma_rt.errors import InputError
from huma_rt.gaussians import Camera


@dataclass
class StaticFitData:
    """The training views. frames [T,H,W,3] uint8; head_quat [T,4] wxyz and head_trans [T,3]:
    model-to-camera pose per frame (x_cam = R p + t, OpenCV axes); intrinsics [3,3] at the
    frames' size; mattes [T,H,W] (uint8 0..255 or float 0..1; None: no matte, whole frame is
    the face); valid [T] bool (None: all); anchors [L,3] optional canonical points added to the
    initial Gaussians (e.g. the mean-face landmarks); face_mattes [T,H,W] like mattes: the
    region the held-out face metrics are measured on (None: the mattes)."""

    frames: np.ndarray
    head_quat: np.ndarray
    head_trans: np.ndarray
    intrinsics: np.ndarray
    mattes: np.ndarray | None = None
    valid: np.ndarray | None = None
    anchors: np.ndarray | None = None
    face_mattes: np.ndarray | None = None

    def validate(self) -> None:
        """InputError naming the first bad field."""
        f = self.frames
        if not isinstance(f, np.ndarray) or f.ndim != 4 or f.shape[-1] != 3 or f.dtype != np.uint8:
            raise InputError(f"frames must be a uint8 array [T,H,W,3]; got {getattr(f, 'dtype', type(f).__name__)} "
                             f"{getattr(f, 'shape', '')}")  # fmt: skip
        t, h, w = f.shape[:3]
        if t < 2:
            raise InputError(f"the static fit needs at least 2 frames; got {t}")
        for name, a, shape in (("head_quat", self.head_quat, (t, 4)), ("head_trans", self.head_trans, (t, 3)),
                               ("intrinsics", self.intrinsics, (3, 3))):  # fmt: skip
            a = np.asarray(a)
            if a.shape != shape:
                raise InputError(f"{name} must have shape {shape} (one per frame: {t} frames); got {a.shape}")
        valid = self.valid_mask()
        for name in ("head_quat", "head_trans"):
            a = np.asarray(getattr(self, name), np.float64)[valid]
            if not np.isfinite(a).all():
                raise InputError(f"{name} must be finite on valid frames; frame {int(np.flatnonzero(valid)[np.flatnonzero(~np.isfinite(a).all(1))[0]])} is not")
        if (np.linalg.norm(np.asarray(self.head_quat, np.float64)[valid], axis=1) < 1e-6).any():
            raise InputError("head_quat must be non-zero on valid frames")
        k = np.asarray(self.intrinsics, np.float64)
        if not np.isfinite(k).all() or k[0, 0] <= 0 or k[1, 1] <= 0:
            raise InputError(f"intrinsics must be finite with fx, fy > 0; got {k.tolist()}")
        if self.mattes is not None:
            m = self.mattes
            if not isinstance(m, np.ndarray) or m.shape != (t, h, w):
                raise InputError(f"mattes must be an array [T,H,W] = {(t, h, w)}; got {getattr(m, 'shape', type(m).__name__)}")
            empty = [i for i in np.flatnonzero(valid) if not (m[i] > (127 if m.dtype == np.uint8 else 0.5)).any()]
            if empty:
                raise InputError(f"the matte of valid frame {empty[0]} is empty (no face pixel; {len(empty)} such "
                                 "frames): mark them invalid or fix the matte")  # fmt: skip
        fm = self.face_mattes
        if fm is not None and (not isinstance(fm, np.ndarray) or fm.shape != (t, h, w)):
            raise InputError(f"face_mattes must be an array [T,H,W] = {(t, h, w)}; got {getattr(fm, 'shape', type(fm).__name__)}")
        if valid.sum() < 2:
            raise InputError(f"the static fit needs at least 2 valid frames; got {int(valid.sum())}")
        if self.anchors is not None and (np.asarray(self.anchors).ndim != 2 or np.asarray(self.anchors).shape[1] != 3):
            raise InputError(f"anchors must be [L,3]; got {np.asarray(self.anchors).shape}")

    def valid_mask(self) -> np.ndarray:
        t = self.frames.shape[0]
        if self.valid is None:
            return np.ones(t, bool)
        v = np.asarray(self.valid)
        if v.shape != (t,) or v.dtype != np.bool_:
            raise InputError(f"valid must be a bool array with one entry per frame ({t}); got {v.dtype} {v.shape}")
        return v

class Views:
    """The frames, mattes and poses at the fit's size, as torch tensors (frames stay uint8)."""

    def __init__(self, data: StaticFitData, downscale: int) -> None:
        d = downscale
        t, h, w = data.frames.shape[:3]
        h2, w2 = h // d, w // d
        if h2 < 8 or w2 < 8:
            raise InputError(f"downscale {d} leaves {w2}x{h2} pixels; at least 8x8 are needed")
        self.frames = torch.from_numpy(_pool(data.frames, d, np.uint8))
        m = data.mattes
        self.mattes = None if m is None else torch.from_numpy(
            _pool(m, d, np.float32, 1 / 255.0 if m.dtype == np.uint8 else 1.0))
        fm = data.face_mattes
        self.face_mattes = self.mattes if fm is None or fm is m else torch.from_numpy(
            _pool(fm, d, np.float32, 1 / 255.0 if fm.dtype == np.uint8 else 1.0))
        k = np.asarray(data.intrinsics, np.float64)
        self.camera = Camera(w2, h2, k[0, 0] / d, k[1, 1] / d, k[0, 2] / d, k[1, 2] / d)
        self.quat = torch.tensor(np.asarray(data.head_quat, np.float64), dtype=torch.float32)
        self.trans = torch.tensor(np.asarray(data.head_trans, np.float64), dtype=torch.float32)

    def target(self, i: int) -> torch.Tensor:
        return self.frames[i].float() / 255.0

    def matte(self, i: int) -> torch.Tensor | None:
        return None if self.mattes is None else self.mattes[i]

    def face_matte(self, i: int) -> torch.Tensor | None:
        """The region of the face metrics [h,w] (the matte unless face_mattes were given)."""
        return None if self.face_mattes is None else self.face_mattes[i]


def _pool(a: np.ndarray, d: int, dtype, scale: float = 1.0) -> np.ndarray:
    """Area-average [T,H,W,...] by d in H and W (cropping the remainder) times ``scale``, frame
    by frame (a 30 s clip's float copy at full size would be GBs)."""
    t, h, w = a.shape[:3]
    out = np.empty((t, h // d, w // d) + a.shape[3:], dtype)
    for i in range(t):
        x = a[i, : h // d * d, : w // d * d].astype(np.float32)
        if d > 1:
            x = x.reshape(h // d, d, w // d, d, *a.shape[3:]).mean((1, 3))
        x = x * scale if scale != 1.0 else x
        out[i] = np.rint(x) if dtype == np.uint8 else x
    return out


def background_plate(frames: torch.Tensor, mattes: torch.Tensor | None, index: np.ndarray,
                     max_frames: int = 64) -> torch.Tensor:
    """The static backdrop [h,w,3] float32 (see module) from up to ``max_frames`` of ``index``."""
    pick = index[np.linspace(0, len(index) - 1, min(max_frames, len(index))).round().astype(int)]
    f = frames[pick].float().numpy() / 255.0
    if mattes is None:
        return torch.from_numpy(np.median(f, 0).astype(np.float32))
    outside = (mattes[pick].numpy() < 0.5)[..., None]
    masked = np.where(outside, f, np.nan)
    seen = outside.any(0)
    with np.errstate(all="ignore"):
        plate = np.where(seen, np.nanmedian(np.where(seen, masked, 0.0), 0), np.median(f, 0))
    if seen.any() and not seen.all():
        plate = _fill_unseen(plate, seen[..., 0])
    return torch.from_numpy(plate.astype(np.float32))


def _fill_unseen(plate: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Pixels [h,w] the head covers in every frame take the nearest seen backdrop colour: the
    median of the frames there is a blurred face, and a plate that already shows a face hides
    a see-through head from the loss (on franck the fit scores the same either way)."""
    from scipy.ndimage import distance_transform_edt

    _, (iy, ix) = distance_transform_edt(~seen, return_indices=True)
    return plate[iy, ix]

def split_views(valid: np.ndarray, holdout_every: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out indices): every k-th valid frame is held out."""
    idx = np.flatnonzero(valid)
    held = idx[holdout_every - 1 :: holdout_every] if holdout_every > 0 else idx[:0]
    train = np.setdiff1d(idx, held)
    if train.size < 1:
        raise InputError(f"holdout_every {holdout_every} leaves no training frame of {idx.size} valid frames")
    return train, held
