"""Rendering: Gaussians + camera -> image, on the CPU, the GPU, or the emulated GPU kernels."""

from huma_rt.render._common import BACKENDS, RenderResult, to_uint8
from huma_rt.render.frame_renderer import FrameRenderer
from huma_rt.render.renderer import Renderer, rasterize

__all__ = ["BACKENDS", "FrameRenderer", "RenderResult", "Renderer", "rasterize", "to_uint8"]
