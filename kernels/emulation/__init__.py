"""CUDA emulation for tests: compile .cu kernels for the CPU under cuda_shim.h."""
