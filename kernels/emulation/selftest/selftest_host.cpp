// Host entry points of the shim self-test kernels (called from Python through ctypes).
#include "selftest.cu"

extern "C" {
void st_run_block_reduce(const float *in, int n, float *partial, float *total) {
    int blocks = (n + ST_BLOCK - 1) / ST_BLOCK;
    emu_launch(st_block_reduce, dim3(blocks), dim3(ST_BLOCK), in, n, partial, total);
}
void st_run_reverse(const int *in, int *out, int blocks, int use_barrier) {
    emu_launch(st_reverse, dim3(blocks), dim3(ST_BLOCK), in, out, use_barrier);
}
void st_run_saxpy(int n, float a, const float *x, float *y, int blocks, int threads) {
    emu_launch(st_saxpy, dim3(blocks), dim3(threads), n, a, x, y);
}
void st_run_atomics(const int *vals, int n, int *hist, int nbins, int *vmax, int *vmin,
                    int *claim, unsigned long long *sum64) {
    emu_launch(st_atomics, dim3((n + 127) / 128), dim3(128), vals, n, hist, nbins, vmax, vmin,
               claim, sum64);
}
void st_run_vote_and_index(const int *flags, int *counts, int *ids, int gx, int gy, int gz,
                           int bx, int by, int bz) {
    emu_launch(st_vote_and_index, dim3(gx, gy, gz), dim3(bx, by, bz), flags, counts, ids);
}
void st_run_exit_before_barrier(int *out) {
    emu_launch(st_exit_before_barrier, dim3(1), dim3(64), out);
}
void st_run_divergent_barrier(int *out) {
    emu_launch(st_divergent_barrier, dim3(1), dim3(64), out);
}
}
