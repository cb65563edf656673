"""Face boxes and 68 landmarks on the CPU with dlib, weights from the ``face-recognition-models`` package.

Detector: dlib's HOG + linear SVM frontal face detector (built into dlib, ~11-14 ms on a 400x300
frame here; faces from ~80 px). Landmarks: the iBUG-300W 68-point ensemble-of-regression-trees
shape predictor (Kazemi & Sullivan 2014) shipped as ``shape_predictor_68_face_landmarks.dat`` in
``face-recognition-models==0.3.0`` (~1.3 ms a face). That package's ``__init__`` imports
``pkg_resources`` (gone from new setuptools), so the file is located with importlib, not imported.

The shape predictor has no confidence output. :func:`landmark_spread` gives one: it reruns the
predictor from boxes shifted by a fraction of the face size and measures how far the landmarks
follow the shift. On a face the trees pull the points back to the features; on a blacked-out
or featureless region they follow the box exactly (ratio ~1). Measured with a 5 % shift on
cap13 (50 frames): faces 0.04-0.10, the same frames with the face blacked out 0.77-0.93 (a
10 % shift separates less: 0.37-0.64 against 0.91-0.97, with four shift directions).

Licence note: dlib is Boost-licensed, but the 68-point model was trained on the iBUG 300-W
images, whose terms exclude commercial use (dlib's model notes say so); a product that ships
avatars made with it should swap in a model with other terms (MediaPipe's face landmarker is
Apache-2.0).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from pathlib import Path

import numpy as np

from huma_rt._optional import require
from huma_rt.errors import MissingDependencyError

log = logging.getLogger(__name__)

_PREDICTOR = "shape_predictor_68_face_landmarks.dat"
_SHIFTS = ((1, 1), (-1, -1))  # 4 directions separated no better on cap13 and cost twice


def predictor_path() -> Path:
    """The 68-point model file of ``face-recognition-models`` (MissingDependencyError if absent)."""
    spec = importlib.util.find_spec("face_recognition_models")
    path = Path(spec.origin).parent / "models" / _PREDICTOR if spec and spec.origin else None
    if path is None or not path.is_file():
        raise MissingDependencyError(f"face tracking needs {_PREDICTOR} from the Python package "
                                     "face-recognition-models; install it with: "
                                     "pip install face-recognition-models==0.3.0")  # fmt: skip
    return path


@functools.lru_cache(maxsize=1)
def _models():
    dlib = require("dlib", "face tracking (pip install dlib-bin==20.0.1.post1)")
    return dlib, dlib.get_frontal_face_detector(), dlib.shape_predictor(str(predictor_path()))


class FaceModel:
    """The detector and the 68-point predictor, loaded once per process (weights ~100 MB)."""

    def __init__(self):
        self._dlib, self._detector, self._predictor = _models()

    def detect(self, rgb: np.ndarray, upsample: int = 0, threshold: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Face boxes float64 [F, 4] (x0, y0, x1, y1 pixels) and scores float64 [F], best first."""
        rects, scores, _ = self._detector.run(rgb, upsample, threshold)
        boxes = np.array([(r.left(), r.top(), r.right(), r.bottom()) for r in rects], np.float64).reshape(-1, 4)
        scores = np.asarray(scores, np.float64)
        order = np.argsort(-scores)
        return boxes[order], scores[order]

    def landmarks(self, rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        """68 landmarks float64 [68, 2] (x, y pixels) inside ``box`` [4] (x0, y0, x1, y1)."""
        rect = self._dlib.rectangle(*(int(round(v)) for v in box))
        shape = self._predictor(rgb, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], np.float64)

    def landmark_spread(self, rgb: np.ndarray, box: np.ndarray, points: np.ndarray,
                        shift: float = 0.05) -> np.ndarray:  # fmt: skip
        """How far each landmark follows a shifted box, float64 [68] (0 = not at all, 1 = fully).

        ``points`` [68, 2] are the landmarks from ``box``; the box is moved diagonally by ``shift``
        x its width, both ways.
        """
        d = shift * (box[2] - box[0])
        moved = []
        for sx, sy in _SHIFTS:
            other = self.landmarks(rgb, box + d * np.array([sx, sy, sx, sy]))
            moved.append(np.linalg.norm(other - points, axis=1) / (d * np.sqrt(2)))
        return np.mean(moved, axis=0)


def box_from_landmarks(points: np.ndarray) -> np.ndarray:
    """A detector-like box float64 [4] around landmarks [68, 2].

    dlib's HOG boxes span roughly from the brows to the chin and from contour to contour; the
    landmarks' own bounding box is close to that, so the next frame's predictor starts where the
    detector would have put it (measured on cap13: the detector's box is ~7 % larger and ~5 % higher).
    """
    x0, y0 = points.min(0)
    x1, y1 = points.max(0)
    size = max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 - 0.05 * size
    half = 0.54 * size
    return np.array([cx - half, cy - half, cx + half, cy + half])
