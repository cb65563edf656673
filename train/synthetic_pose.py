"""Rigid head motion for synthetic clips: smooth seeded poses, frame changes, posing Gaussians.

Conventions: quaternions are wxyz (Hamilton), rotation matrices act on column vectors.
A *world pose* (R_w, t_w) moves a canonical point p of the avatar to ``R_w p + t_w`` in the
bundle's world frame. The *camera pose* of the head is the model-to-camera transform a face
tracker estimates: ``x_cam = R_c p + t_c`` for a canonical point p; at rest it equals the
bundle camera's world-to-camera extrinsics. ``world_to_camera_pose`` / ``camera_to_world_pose``
convert between the two.
"""

from __future__ import annotations

import numpy as np

from huma_rt.errors import InputError

# Rotation pivot of the demo head in world units: the top of the neck, so nods and turns look
# like a head on a neck rather than a ball spinning about its centre.
DEMO_PIVOT = (0.0, -0.35, -0.05)
_COMPONENTS = 3  # sinusoids summed per pose channel


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a ⊗ b of wxyz quaternions [..., 4] (broadcast); float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    aw, ax, ay, az = (a[..., i] for i in range(4))
    bw, bx, by, bz = (b[..., i] for i in range(4))
    return np.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], -1)  # fmt: skip


def quat_from_rotvec(r: np.ndarray) -> np.ndarray:
    """Axis-angle vectors [..., 3] (radians) -> unit wxyz quaternions [..., 4] float64."""
    r = np.asarray(r, np.float64)
    angle = np.linalg.norm(r, axis=-1, keepdims=True)
    half = angle / 2
    # sin(x/2)/x -> 1/2 at 0: the series keeps tiny angles exact (an identity stays an identity)
    k = np.where(angle > 1e-8, np.sin(half) / np.where(angle > 1e-8, angle, 1.0), 0.5 - angle**2 / 48)
    return np.concatenate([np.cos(half), r * k], -1)


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """wxyz quaternions [..., 4] (normalised here) -> rotation matrices [..., 3, 3] float64."""
    q = np.asarray(q, np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = (q[..., i] for i in range(4))
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)  # fmt: skip


def matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """Rotation matrix [3, 3] -> unit wxyz quaternion [4] float64 with w >= 0 (Shepperd)."""
    m = np.asarray(m, np.float64)
    if m.shape != (3, 3) or not np.allclose(m @ m.T, np.eye(3), atol=1e-5) or np.linalg.det(m) < 0:
        raise InputError(f"expected a 3x3 rotation matrix (orthonormal, det +1); got {m.tolist()}")
    tr = np.trace(m)
    i = int(np.argmax([tr, m[0, 0], m[1, 1], m[2, 2]]))
    if i == 0:
        s = 2 * np.sqrt(1 + tr)
        q = [s / 4, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif i == 1:
        s = 2 * np.sqrt(1 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [(m[2, 1] - m[1, 2]) / s, s / 4, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif i == 2:
        s = 2 * np.sqrt(1 - m[0, 0] + m[1, 1] - m[2, 2])
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, s / 4, (m[1, 2] + m[2, 1]) / s]
    else:
        s = 2 * np.sqrt(1 - m[0, 0] - m[1, 1] + m[2, 2])
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, s / 4]
    q = np.asarray(q)
    return q * (1.0 if q[0] >= 0 else -1.0) / np.linalg.norm(q)


def smooth_signal(frames: int, fps: float, rng: np.random.Generator, max_hz: float) -> np.ndarray:
    """[frames] float64 in [-1, 1]: a sum of sinusoids with random frequencies in
    [max_hz / 8, max_hz], phases and weights, divided by the weights' sum (so it never exceeds 1)."""
    t = np.arange(frames) / fps
    freqs = rng.uniform(max_hz / 8, max_hz, _COMPONENTS)
    phases = rng.uniform(0, 2 * np.pi, _COMPONENTS)
    weights = rng.uniform(0.5, 1.0, _COMPONENTS)
    waves = np.sin(2 * np.pi * freqs[:, None] * t[None] + phases[:, None])
    return (weights @ waves) / weights.sum()


def head_motion(frames: int, fps: float, seed: int, rotation_deg: float, translation: float,
                max_hz: float, pivot=DEMO_PIVOT) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """World poses of a gently moving head: (quats [T,4] wxyz, trans [T,3]) float64.

    Rotation: an axis-angle vector whose x (nod), y (turn) and z (tilt) components are each a
    smooth signal times ``rotation_deg``, applied about ``pivot`` (world units); translation: a
    smooth signal per axis times ``translation`` (world units). Zero amplitudes give identities.
    """
    rng = np.random.default_rng(seed)
    sig = np.stack([smooth_signal(frames, fps, rng, max_hz) for _ in range(6)], -1)  # [T, 6]
    rotvec = np.radians(rotation_deg) * sig[:, :3]
    shift = translation * sig[:, 3:]
    q = quat_from_rotvec(rotvec)
    r = quat_to_matrix(q)
    c = np.asarray(pivot, np.float64)
    trans = c + shift - r @ c  # R (p - c) + c + shift = R p + (c + shift - R c)
    return q, trans


def _rigid(w2c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(w2c, np.float64)
    return m[:3, :3], m[:3, 3]


def world_to_camera_pose(quat_w: np.ndarray, trans_w: np.ndarray, w2c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World poses (quats [T,4], trans [T,3]) -> camera poses of the head (model-to-camera)."""
    rc, tc = _rigid(w2c)
    qc = matrix_to_quat(rc)
    quat_c = quat_multiply(qc[None], np.asarray(quat_w, np.float64))
    quat_c *= np.where(quat_c[:, :1] < 0, -1.0, 1.0)
    return quat_c, np.asarray(trans_w, np.float64) @ rc.T + tc


def camera_to_world_pose(quat_c: np.ndarray, trans_c: np.ndarray, w2c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Camera poses of the head (quats [..., 4], trans [..., 3]) -> world poses (R_c^T (x - t_c))."""
    rc, tc = _rigid(w2c)
    qc = matrix_to_quat(rc)
    q_inv = qc * np.array([1.0, -1.0, -1.0, -1.0])
    return quat_multiply(q_inv, np.asarray(quat_c, np.float64)), (np.asarray(trans_c, np.float64) - tc) @ rc


class Poser:
    """Applies a world pose to every Gaussian of an avatar, into buffers allocated once.

    means' = R means + t; quats' = q ⊗ quats; with ``rotate_sh`` the degree-1 SH coefficients
    turn with the head (a rigid body carries its view-dependent colour). Higher SH degrees have
    no rotation here, so they are refused when ``rotate_sh`` is set.
    """

    def __init__(self, count: int, sh_coeffs: int, rotate_sh: bool = True) -> None:
        if rotate_sh and sh_coeffs > 4:
            raise InputError(f"rotate_sh supports SH degree <= 1 (<= 4 coefficients); got {sh_coeffs} coefficients")
        self.rotate_sh = rotate_sh
        self.means = np.empty((count, 3), np.float32)
        self.quats = np.empty((count, 4), np.float32)
        self.sh = np.empty((count, sh_coeffs, 3), np.float32)

    def apply(self, means: np.ndarray, quats: np.ndarray, sh: np.ndarray, quat_w: np.ndarray,
              trans_w: np.ndarray) -> None:  # fmt: skip
        """Pose means [N,3], quats [N,4], sh [N,K,3] (float32) by (quat_w [4], trans_w [3]) into
        ``self.means``, ``self.quats``, ``self.sh``. The identity pose copies them exactly."""
        q = np.asarray(quat_w, np.float64)
        q = q / np.linalg.norm(q)
        r = quat_to_matrix(q)
        _linear(means, r, self.means)
        self.means += np.asarray(trans_w, np.float32)
        _linear(quats, _left_matrix(q), self.quats)  # q ⊗ quats
        if not (self.rotate_sh and sh.shape[1] == 4):
            self.sh[...] = sh
            return
        # gsplat's degree-1 basis is (-C1 y, C1 z, -C1 x): colour = C1 v . d with
        # v = P (sh1, sh2, sh3) = (-sh3, -sh1, sh2); a rotated body shows v' = R v along d,
        # so the coefficients become P^T R P (sh1, sh2, sh3) (P a signed permutation)
        self.sh[:, 0] = sh[:, 0]
        for c in range(3):  # per channel: 1-D loops (numpy runs [N, 3] slices as N loops of 3)
            _linear(sh[:, 1:4, c], _SH1_P.T @ r @ _SH1_P, self.sh[:, 1:4, c])

def _linear(src: np.ndarray, m: np.ndarray, out: np.ndarray) -> None:
    """out [N,k] = src [N,k] @ m.T, column by column in float32: BLAS threads stall on a busy
    machine for such thin products (17 ms vs 1 ms measured on 2 loaded cores), and an identity
    m copies src exactly."""
    m = m.astype(np.float32)
    for i in range(m.shape[0]):
        col = out[:, i]
        np.multiply(src[:, 0], m[i, 0], out=col)
        for j in range(1, m.shape[1]):
            col += m[i, j] * src[:, j]

_SH1_P = np.array([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def _left_matrix(q: np.ndarray) -> np.ndarray:
    """L [4,4] with L p = q ⊗ p for wxyz quaternions."""
    w, x, y, z = q
    return np.array([[w, -x, -y, -z], [x, w, -z, y], [y, z, w, -x], [z, -y, x, w]])
