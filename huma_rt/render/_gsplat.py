"""The 'gsplat' backend: gsplat's own CUDA rasterizer, for A/B comparison on a GPU.

Imports torch and gsplat lazily (dev extras); the runtime never needs it.
"""

from __future__ import annotations

import numpy as np

from huma_rt._optional import require, require_cuda
from huma_rt.gaussians import Camera, Gaussians
from huma_rt.render._common import RenderResult


def render_gsplat(g: Gaussians, camera: Camera, bg_image: np.ndarray | None,
                  bg_color: np.ndarray, out: np.ndarray | None, return_depth: bool) -> RenderResult:
    """Render with gsplat.rasterization (classic 3DGS, eps2d 0.3, packed=False) on cuda:0."""
    require_cuda("the 'gsplat' render backend")
    torch = require("torch", "the 'gsplat' render backend")
    gsplat = require("gsplat", "the 'gsplat' render backend")

    def t(a: np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to("cuda")

    h, w = camera.height, camera.width
    colors, alphas, _ = gsplat.rasterization(
        t(g.means), t(g.quats), t(g.scales()), t(g.opacities()), t(g.sh),
        t(camera.world_to_camera)[None], t(camera.intrinsics)[None], w, h,
        near_plane=float(camera.near), far_plane=float(camera.far), sh_degree=g.sh_degree,
        packed=False, render_mode="RGB+ED" if return_depth else "RGB",
    )
    alpha = alphas[0, ..., 0]
    bg = t(bg_image) if bg_image is not None else t(bg_color).view(1, 1, 3)
    rgb = colors[0, ..., :3] + (1.0 - alpha)[..., None] * bg
    rgb_np = rgb.cpu().numpy()
    if out is not None:
        np.copyto(out, rgb_np)
        rgb_np = out
    depth = colors[0, ..., 3].cpu().numpy() if return_depth else None
    return RenderResult(rgb=rgb_np, alpha=alpha.cpu().numpy(), depth=depth)
