"""Gaussians and Camera: the runtime's scene dataclasses and their validation.

Conventions (shared with the kernels and gsplat 1.5.3): quaternions are wxyz and need not be
normalised; scales are stored as pre-activation values whose activation is recorded in
``scale_activation``; opacities are logits (sigmoid); SH coefficients are [N, (d+1)^2, 3] with
the DC term first. The camera is a pinhole with a 4x4 world-to-camera matrix (OpenCV axes:
x right, y down, z forward).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from huma_rt.errors import InputError

SCALE_ACTIVATIONS = ("exp", "softplus")
REGION_STATIC = 0  # region id 0 never moves; any other id is a dynamic region


def _check_array(name: str, arr: np.ndarray, shape: tuple, dtype=np.float32) -> np.ndarray:
    if not isinstance(arr, np.ndarray):
        raise InputError(f"{name} must be a numpy array of shape {shape}; got {type(arr).__name__}")
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape, strict=True)):
        raise InputError(f"{name} must have shape {shape} (None = any); got {arr.shape}")
    if arr.dtype != dtype:
        raise InputError(f"{name} must be {np.dtype(dtype).name}; got {arr.dtype}")
    return arr


def sh_degree_for(num_coeffs: int) -> int:
    """SH degree d for (d+1)^2 coefficients; raises InputError for any other count."""
    for d in range(4):
        if (d + 1) ** 2 == num_coeffs:
            return d
    raise InputError(f"SH coefficient count must be 1, 4, 9 or 16 (degree 0..3); got {num_coeffs}")


@dataclass
class Gaussians:
    """A set of N 3D Gaussians (all arrays C-contiguous float32 unless noted).

    means: [N,3]; log_scales: [N,3] pre-activation scales; quats: [N,4] wxyz;
    opacity_logits: [N]; sh: [N,K,3] with K = (d+1)^2; region: [N] uint8 (0 = static).
    """

    means: np.ndarray
    log_scales: np.ndarray
    quats: np.ndarray
    opacity_logits: np.ndarray
    sh: np.ndarray
    region: np.ndarray | None = None
    scale_activation: str = "exp"

    def __post_init__(self) -> None:
        self.validate()

    @property
    def count(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        return sh_degree_for(self.sh.shape[1])

    def validate(self, check_finite: bool = True) -> None:
        """Check shapes, dtypes and values; raise InputError naming the first bad field."""
        n = self.means.shape[0] if isinstance(self.means, np.ndarray) and self.means.ndim == 2 else None
        _check_array("means", self.means, (n, 3))
        _check_array("log_scales", self.log_scales, (n, 3))
        _check_array("quats", self.quats, (n, 4))
        _check_array("opacity_logits", self.opacity_logits, (n,))
        _check_array("sh", self.sh, (n, None, 3))
        sh_degree_for(self.sh.shape[1])
        if self.region is None:
            self.region = np.zeros(n, dtype=np.uint8)
        _check_array("region", self.region, (n,), np.uint8)
        if self.scale_activation not in SCALE_ACTIVATIONS:
            raise InputError(
                f"scale_activation must be one of {SCALE_ACTIVATIONS}; got {self.scale_activation!r}"
            )
        if check_finite:
            for name in ("means", "log_scales", "quats", "opacity_logits", "sh"):
                arr = getattr(self, name)
                if not np.isfinite(arr).all():
                    bad = int(np.argwhere(~np.isfinite(arr.reshape(n, -1)))[0][0])
                    raise InputError(f"{name} must be finite; Gaussian {bad} holds NaN or Inf")
            norms = np.einsum("ij,ij->i", self.quats, self.quats)
            if (norms <= 0).any():
                bad = int(np.argmax(norms <= 0))
                raise InputError(f"quats must be non-zero; Gaussian {bad} has a zero quaternion")

    def scales(self) -> np.ndarray:
        """Activated scales [N,3] float32."""
        if self.scale_activation == "exp":
            return np.exp(self.log_scales)
        return np.logaddexp(0.0, self.log_scales).astype(np.float32)

    def opacities(self) -> np.ndarray:
        """Activated opacities [N] float32 in (0, 1)."""
        return (1.0 / (1.0 + np.exp(-self.opacity_logits))).astype(np.float32)

    def subset(self, index: np.ndarray) -> Gaussians:
        """A new Gaussians holding the rows selected by ``index`` (bool mask or int indices)."""
        return Gaussians(
            means=np.ascontiguousarray(self.means[index]),
            log_scales=np.ascontiguousarray(self.log_scales[index]),
            quats=np.ascontiguousarray(self.quats[index]),
            opacity_logits=np.ascontiguousarray(self.opacity_logits[index]),
            sh=np.ascontiguousarray(self.sh[index]),
            region=np.ascontiguousarray(self.region[index]),
            scale_activation=self.scale_activation,
        )


@dataclass
class Camera:
    """A pinhole camera: intrinsics in pixels and a 4x4 float32 world-to-camera matrix."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    world_to_camera: np.ndarray = field(default_factory=lambda: np.eye(4, dtype=np.float32))
    near: float = 0.01
    far: float = 1e10

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v <= 0 or v > 16384:
                raise InputError(f"camera {name} must be an integer in 1..16384; got {v!r}")
        for name in ("fx", "fy", "cx", "cy", "near", "far"):
            v = getattr(self, name)
            if not np.isfinite(v):
                raise InputError(f"camera {name} must be finite; got {v!r}")
        if self.fx <= 0 or self.fy <= 0:
            raise InputError(f"camera fx, fy must be positive; got {self.fx}, {self.fy}")
        if not 0 < self.near < self.far:
            raise InputError(f"camera needs 0 < near < far; got near={self.near}, far={self.far}")
        m = np.asarray(self.world_to_camera, dtype=np.float32)
        if m.shape != (4, 4) or not np.isfinite(m).all():
            raise InputError(f"world_to_camera must be a finite 4x4 matrix; got shape {m.shape}")
        self.world_to_camera = np.ascontiguousarray(m)

    @property
    def intrinsics(self) -> np.ndarray:
        """K as a [3,3] float32 matrix."""
        return np.array(
            [[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=np.float32
        )

    def to_dict(self) -> dict:
        return {
            "width": int(self.width), "height": int(self.height),
            "fx": float(self.fx), "fy": float(self.fy), "cx": float(self.cx), "cy": float(self.cy),
            "world_to_camera": self.world_to_camera.tolist(),
            "near": float(self.near), "far": float(self.far),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Camera:
        try:
            return cls(
                width=int(d["width"]), height=int(d["height"]),
                fx=float(d["fx"]), fy=float(d["fy"]), cx=float(d["cx"]), cy=float(d["cy"]),
                world_to_camera=np.asarray(d["world_to_camera"], dtype=np.float32),
                near=float(d.get("near", 0.01)), far=float(d.get("far", 1e10)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"camera description is incomplete or malformed: {exc}") from exc
