// Host entry points of the emulated GPU path: kernels/raster.cu compiled for the CPU under the
// CUDA emulation shim (kernels/emulation/cuda_shim.h, force-included by its build.py), one
// extern "C" launcher per kernel for kernels/emulated.py (ctypes). Tests only.
#include "../raster.cu"

#define HR_GRID dim3(gx, gy, gz), dim3(bx, by, bz)
#define HR_DIMS unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz

extern "C" {
void hr_emu_hr_project_kernel(HR_DIMS, int n, const float *means, const float *quats,
                              const float *log_scales, const float *opacity_logits,
                              const float *sh, int sh_degree, int scale_activation,
                              const float *cam_params, const int *out_index, HrProjected *proj,
                              float *rgb) {
    emu_launch(hr_project_kernel, HR_GRID, n, means, quats, log_scales, opacity_logits, sh,
               sh_degree, scale_activation, cam_params, out_index, proj, rgb);
}
void hr_emu_hr_count_kernel(HR_DIMS, int n, const HrProjected *proj, int tiles_x, int tiles_y,
                            int tx0, int ty0, int tx1, int ty1, int *tile_counts) {
    emu_launch(hr_count_kernel, HR_GRID, n, proj, tiles_x, tiles_y, tx0, ty0, tx1, ty1,
               tile_counts);
}
void hr_emu_hr_scan_kernel(HR_DIMS, int tiles, const int *tile_counts, int capacity,
                           int *tile_offsets, int *cursor, int *status) {
    emu_launch(hr_scan_kernel, HR_GRID, tiles, tile_counts, capacity, tile_offsets, cursor,
               status);
}
void hr_emu_hr_emit_kernel(HR_DIMS, int n, const HrProjected *proj, int tiles_x, int tiles_y,
                           int tx0, int ty0, int tx1, int ty1, int capacity, int *cursor,
                           unsigned long long *keys) {
    emu_launch(hr_emit_kernel, HR_GRID, n, proj, tiles_x, tiles_y, tx0, ty0, tx1, ty1, capacity,
               cursor, keys);
}
void hr_emu_hr_sort_kernel(HR_DIMS, int tiles_x, int tx0, int ty0, int tx1,
                           const int *tile_offsets, const unsigned long long *keys,
                           unsigned long long *sorted) {
    emu_launch(hr_sort_kernel, HR_GRID, tiles_x, tx0, ty0, tx1, tile_offsets, keys, sorted);
}
void hr_emu_hr_blend_kernel(HR_DIMS, const HrProjected *proj, const float *rgb, int width,
                            int height, int tiles_x, int tx0, int ty0, int tx1,
                            const int *tile_offsets, const unsigned long long *sorted,
                            float *out_rgb, float *out_alpha, float *out_depth) {
    emu_launch(hr_blend_kernel, HR_GRID, proj, rgb, width, height, tiles_x, tx0, ty0, tx1,
               tile_offsets, sorted, out_rgb, out_alpha, out_depth);
}
void hr_emu_hr_composite_kernel(HR_DIMS, const float *rgb, const float *alpha,
                                const float *bg_image, const float *bg_color, int width, int x0,
                                int y0, int x1, int y1, float *out_f32, unsigned char *out_u8) {
    emu_launch(hr_composite_kernel, HR_GRID, rgb, alpha, bg_image, bg_color, width, x0, y0, x1,
               y1, out_f32, out_u8);
}
void hr_emu_hr_blend_save_kernel(HR_DIMS, const HrProjected *proj, const float *rgb, int width,
                                 int height, int tiles_x, int tx0, int ty0, int tx1,
                                 const int *tile_offsets, const unsigned long long *sorted,
                                 float *out_rgb, float *out_alpha, float *out_T, int *out_last) {
    emu_launch(hr_blend_save_kernel, HR_GRID, proj, rgb, width, height, tiles_x, tx0, ty0, tx1,
               tile_offsets, sorted, out_rgb, out_alpha, out_T, out_last);
}
void hr_emu_hr_blend_backward_kernel(HR_DIMS, const HrProjected *proj, const float *rgb,
                                     int width, int height, int tiles_x, int tx0, int ty0,
                                     int tx1, const int *tile_offsets,
                                     const unsigned long long *sorted, const float *final_T,
                                     const int *last_entry, const float *v_rgb, const float *v_T,
                                     float *v2d) {
    emu_launch(hr_blend_backward_kernel, HR_GRID, proj, rgb, width, height, tiles_x, tx0, ty0,
               tx1, tile_offsets, sorted, final_T, last_entry, v_rgb, v_T, v2d);
}
void hr_emu_hr_project_backward_kernel(HR_DIMS, int n, const float *means, const float *quats,
                                       const float *log_scales, const float *opacity_logits,
                                       const float *sh, int sh_degree, int scale_activation,
                                       const float *cam_params, const float *v2d, float *v_means,
                                       float *v_quats, float *v_log_scales,
                                       float *v_opacity_logits, float *v_sh,
                                       float *grad_norm_sum, int *visible_count) {
    emu_launch(hr_project_backward_kernel, HR_GRID, n, means, quats, log_scales, opacity_logits,
               sh, sh_degree, scale_activation, cam_params, v2d, v_means, v_quats, v_log_scales,
               v_opacity_logits, v_sh, grad_norm_sum, visible_count);
}
}
