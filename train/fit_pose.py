"""The head pose applied to canonical Gaussians, differentiably, and a posed render."""

from __future__ import annotations

import torch

from huma_rt.gaussians import Camera

from .densify import quat_to_matrix
from .raster_autograd import rasterize

# gsplat's degree-1 SH basis is (-C1 y, C1 z, -C1 x): colour = C1 (P sh1) . d; a rotated body
# shows R (P sh1), so its coefficients become P^T R P sh1 (same convention as synthetic_pose)
_SH1_P = torch.tensor([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a ⊗ b for wxyz quaternions (broadcast over leading dims)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], -1)  # fmt: skip


def pose_gaussians(means: torch.Tensor, quats: torch.Tensor, sh: torch.Tensor, q: torch.Tensor,
                   t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Canonical means [N,3], quats [N,4], sh [N,K,3] -> camera frame under pose q [4] wxyz,
    t [3]: (R means + t, q ⊗ quats, sh with the degree-1 band turned by R). Differentiable."""
    q = q / q.norm()
    r = quat_to_matrix(q[None])[0]
    posed_sh = sh
    if sh.shape[1] >= 4:
        p = _SH1_P.to(sh.dtype)
        band1 = torch.einsum("ij,njc->nic", p.T @ r @ p, sh[:, 1:4])
        posed_sh = torch.cat([sh[:, :1], band1, sh[:, 4:]], 1)
    return means @ r.T + t, quat_multiply(q, quats), posed_sh


def render_view(params: dict[str, torch.Tensor], camera: Camera, q: torch.Tensor, t: torch.Tensor,
                background: torch.Tensor, sh_degree: int):
    """Render the canonical Gaussians at a head pose -> RasterOutput (image [h,w,3] over the plate)."""
    sh = params["sh_dc"]
    if sh_degree > 0 and "sh_rest" in params:
        sh = torch.cat([sh, params["sh_rest"][:, : (sh_degree + 1) ** 2 - 1]], 1)
    means, quats, sh = pose_gaussians(params["means"], params["quats"], sh, q, t)
    return rasterize(means, quats, params["log_scales"], params["opacity_logits"], sh, camera, background)
