"""Gaussian rasterizer kernels: host-device math, CUDA kernels, the CPU backend built from them."""
