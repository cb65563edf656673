"""File formats for Gaussians (INRIA 3DGS PLY)."""

from huma_rt.formats.ply import read_ply, write_ply

__all__ = ["read_ply", "write_ply"]
