"""Standard file formats: INRIA 3D Gaussian Splatting PLY."""

from huma_rt.formats.ply import read_ply, write_ply

__all__ = ["read_ply", "write_ply"]
