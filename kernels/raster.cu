// CUDA kernels of the Gaussian rasterizer. The per-Gaussian and per-pixel math is
// raster_math.cuh (shared with the CPU backend); this file is only the parallel structure:
//   project -> count (tiles per Gaussian, atomicAdd) -> scan (exclusive, one block)
//   -> emit (depth keys into per-tile slots) -> sort (one block per tile) -> blend (one block
//   per 16x16 tile, shared-memory batches) -> composite.
// Only threadIdx/blockIdx/blockDim/gridDim, fixed-size __shared__ arrays, __syncthreads and
// atomicAdd are used, so the emulation shim (kernels/emulation/) can run these kernels on the
// CPU. Buffers are preallocated by the host; nothing here allocates or needs a host sync.
#include "raster_math.cuh"

#define HR_SCAN_BLOCK 256
#define HR_KEY_PAD 0xffffffffffffffffull

// Tile t of the launch's rectangle [tx0, ty0) .. [tx1, ty1): block b -> global tile id.
__device__ __forceinline__ int hr_rect_tile(int b, int tiles_x, int tx0, int ty0, int tx1) {
    const int rw = tx1 - tx0;
    return (ty0 + b / rw) * tiles_x + tx0 + b % rw;
}

// One thread per Gaussian. Row i of the inputs -> row out_index[i] (or i) of proj / rgb.
extern "C" __global__ void hr_project_kernel(
    int n, const float *means, const float *quats, const float *log_scales,
    const float *opacity_logits, const float *sh, int sh_degree, int scale_activation,
    const float *cam_params, const int *out_index, HrProjected *proj, float *rgb) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const HrCamera cam = hr_camera_from_params(cam_params);
    const int row = out_index ? out_index[i] : i;
    HrProjected p;
    float c[3];
    hr_project_gaussian(i, means, quats, log_scales, opacity_logits, sh, sh_degree,
                        scale_activation, cam, p, c);
    proj[row] = p;
    rgb[row * 3 + 0] = c[0];
    rgb[row * 3 + 1] = c[1];
    rgb[row * 3 + 2] = c[2];
}

// Tiles of the rectangle that Gaussian i touches (empty when culled or outside).
__device__ __forceinline__ bool hr_rect_bounds(const HrProjected &p, int tiles_x, int tiles_y,
                                               int tx0, int ty0, int tx1, int ty1, int b[4]) {
    hr_tile_bounds(p, tiles_x, tiles_y, b);
    b[0] = max(b[0], tx0);
    b[1] = max(b[1], ty0);
    b[2] = min(b[2], tx1);
    b[3] = min(b[3], ty1);
    return b[0] < b[2] && b[1] < b[3];
}

// One thread per Gaussian: tile_counts[t] += 1 for every tile it touches (counts zeroed by
// the host's memset before the launch).
extern "C" __global__ void hr_count_kernel(int n, const HrProjected *proj, int tiles_x,
                                           int tiles_y, int tx0, int ty0, int tx1, int ty1,
                                           int *tile_counts) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    int b[4];
    if (!hr_rect_bounds(proj[i], tiles_x, tiles_y, tx0, ty0, tx1, ty1, b)) return;
    for (int ty = b[1]; ty < b[3]; ++ty)
        for (int tx = b[0]; tx < b[2]; ++tx) atomicAdd(&tile_counts[ty * tiles_x + tx], 1);
}

// One block of HR_SCAN_BLOCK threads: exclusive scan of tile_counts into tile_offsets
// [tiles + 1] (offsets clamped to capacity), cursor = offsets, status[0] = total intersections.
extern "C" __global__ void hr_scan_kernel(int tiles, const int *tile_counts, int capacity,
                                          int *tile_offsets, int *cursor, int *status) {
    __shared__ int s[HR_SCAN_BLOCK];
    __shared__ int carry;
    const int tid = threadIdx.x;
    if (tid == 0) carry = 0;
    __syncthreads();
    for (int base = 0; base < tiles; base += HR_SCAN_BLOCK) {
        const int i = base + tid;
        const int v = i < tiles ? tile_counts[i] : 0;
        s[tid] = v;
        __syncthreads();
        // Hillis-Steele inclusive scan in shared memory
        for (int off = 1; off < HR_SCAN_BLOCK; off *= 2) {
            const int add = tid >= off ? s[tid - off] : 0;
            __syncthreads();
            s[tid] += add;
            __syncthreads();
        }
        const int excl = carry + s[tid] - v;
        if (i < tiles) {
            const int o = min(excl, capacity);
            tile_offsets[i] = o;
            cursor[i] = o;
        }
        __syncthreads();
        if (tid == HR_SCAN_BLOCK - 1) carry += s[tid];
        __syncthreads();
    }
    if (tid == 0) {
        tile_offsets[tiles] = min(carry, capacity);
        status[0] = carry;
    }
}

// One thread per Gaussian: write its depth key into a slot of every tile it touches. Slot
// order inside a tile is arbitrary (atomics); the sort makes it deterministic. Keys past
// capacity are dropped; the host sees status[0] > capacity and grows the buffers.
extern "C" __global__ void hr_emit_kernel(int n, const HrProjected *proj, int tiles_x,
                                          int tiles_y, int tx0, int ty0, int tx1, int ty1,
                                          int capacity, int *cursor,
                                          unsigned long long *keys) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    int b[4];
    if (!hr_rect_bounds(proj[i], tiles_x, tiles_y, tx0, ty0, tx1, ty1, b)) return;
    const unsigned long long key = hr_depth_key(proj[i].depth, i);
    for (int ty = b[1]; ty < b[3]; ++ty)
        for (int tx = b[0]; tx < b[2]; ++tx) {
            const int slot = atomicAdd(&cursor[ty * tiles_x + tx], 1);
            if (slot < capacity) keys[slot] = key;
        }
}

// One block (HR_BLOCK threads) per tile of the rectangle: rank sort of the tile's keys by
// (depth, index), comparing against shared-memory batches. Keys are unique (the index is in
// the low bits), so ranks form a permutation.
extern "C" __global__ void hr_sort_kernel(int tiles_x, int tx0, int ty0, int tx1,
                                          const int *tile_offsets, const unsigned long long *keys,
                                          unsigned long long *sorted) {
    __shared__ unsigned long long s_keys[HR_BLOCK];
    const int t = hr_rect_tile(blockIdx.x, tiles_x, tx0, ty0, tx1);
    const int start = tile_offsets[t], end = tile_offsets[t + 1];
    const int tid = threadIdx.y * blockDim.x + threadIdx.x;
    for (int base = start; base < end; base += HR_BLOCK) {
        const int i = base + tid;
        const unsigned long long mine = i < end ? keys[i] : HR_KEY_PAD;
        int rank = 0;
        for (int cb = start; cb < end; cb += HR_BLOCK) {
            __syncthreads();
            const int j = cb + tid;
            s_keys[tid] = j < end ? keys[j] : HR_KEY_PAD;
            __syncthreads();
            const int m = min(HR_BLOCK, end - cb);
            for (int k = 0; k < m; ++k) rank += s_keys[k] < mine ? 1 : 0;
        }
        if (i < end) sorted[start + rank] = mine;
    }
}

// One block of 16x16 threads per tile of the rectangle, one thread per pixel. The block loads
// the tile's sorted Gaussians in batches of HR_BLOCK into shared memory and every thread
// blends them front to back (hr_blend_step); the block stops once all its pixels saturate.
// Writes un-composited colour [H,W,3], alpha [H,W] and, if out_depth, expected depth [H,W].
// Save (training): also the final transmittance out_T [H,W] and out_last [H,W], the number of
// the tile's list entries up to and including the pixel's last contributing Gaussian, which the
// backward pass starts from.
template <bool Save>
__device__ __forceinline__ void hr_blend_tile(const HrProjected *proj, const float *rgb,
                                              int width, int height, int tiles_x, int tx0,
                                              int ty0, int tx1, const int *tile_offsets,
                                              const unsigned long long *sorted, float *out_rgb,
                                              float *out_alpha, float *out_depth, float *out_T,
                                              int *out_last) {
    __shared__ HrProjected s_proj[HR_BLOCK];
    __shared__ float s_rgb[HR_BLOCK * 3];
    __shared__ int s_done;
    const int t = hr_rect_tile(blockIdx.x, tiles_x, tx0, ty0, tx1);
    const int px = (t % tiles_x) * HR_TILE + threadIdx.x;
    const int py = (t / tiles_x) * HR_TILE + threadIdx.y;
    const int tid = threadIdx.y * blockDim.x + threadIdx.x;
    const bool inside = px < width && py < height;
    bool done = !inside;
    const float fx = (float)px + 0.5f, fy = (float)py + 0.5f;
    float T = 1.f, cr = 0.f, cg = 0.f, cb = 0.f, cd = 0.f;
    int last = 0;
    const int start = tile_offsets[t], end = tile_offsets[t + 1];
    if (tid == 0) s_done = 0;
    __syncthreads();
    if (done) atomicAdd(&s_done, 1);
    for (int base = start; base < end; base += HR_BLOCK) {
        // every thread reads s_done between two barriers, so the exit is uniform
        __syncthreads();
        if (s_done == HR_BLOCK) break;
        const int i = base + tid;
        if (i < end) {
            const int g = (int)(sorted[i] & 0xffffffffull);
            s_proj[tid] = proj[g];
            s_rgb[tid * 3 + 0] = rgb[g * 3 + 0];
            s_rgb[tid * 3 + 1] = rgb[g * 3 + 1];
            s_rgb[tid * 3 + 2] = rgb[g * 3 + 2];
        }
        __syncthreads();
        const int m = min(HR_BLOCK, end - base);
        for (int k = 0; k < m && !done; ++k) {
            const HrProjected &p = s_proj[k];
            const float vis = hr_blend_step(p.opacity, hr_sigma(p, fx, fy), T, done);
            cr += s_rgb[k * 3 + 0] * vis;
            cg += s_rgb[k * 3 + 1] * vis;
            cb += s_rgb[k * 3 + 2] * vis;
            cd += p.depth * vis;
            if (Save && vis != 0.f) last = base - start + k + 1;
            if (done) atomicAdd(&s_done, 1);
        }
    }
    if (!inside) return;
    const int pix = py * width + px;
    const float a = 1.f - T;
    out_rgb[pix * 3 + 0] = cr;
    out_rgb[pix * 3 + 1] = cg;
    out_rgb[pix * 3 + 2] = cb;
    out_alpha[pix] = a;
    if (out_depth) out_depth[pix] = cd / fmaxf(a, 1e-10f);
    if (Save) {
        out_T[pix] = T;
        out_last[pix] = last;
    }
}

extern "C" __global__ void hr_blend_kernel(const HrProjected *proj, const float *rgb, int width,
                                           int height, int tiles_x, int tx0, int ty0, int tx1,
                                           const int *tile_offsets,
                                           const unsigned long long *sorted, float *out_rgb,
                                           float *out_alpha, float *out_depth) {
    hr_blend_tile<false>(proj, rgb, width, height, tiles_x, tx0, ty0, tx1, tile_offsets, sorted,
                         out_rgb, out_alpha, out_depth, nullptr, nullptr);
}

// hr_blend_kernel that also saves what the backward pass needs (out_T, out_last: see above).
extern "C" __global__ void hr_blend_save_kernel(const HrProjected *proj, const float *rgb,
                                                int width, int height, int tiles_x, int tx0,
                                                int ty0, int tx1, const int *tile_offsets,
                                                const unsigned long long *sorted, float *out_rgb,
                                                float *out_alpha, float *out_T, int *out_last) {
    hr_blend_tile<true>(proj, rgb, width, height, tiles_x, tx0, ty0, tx1, tile_offsets, sorted,
                        out_rgb, out_alpha, nullptr, out_T, out_last);
}

// Backward of the blend: one block of 16x16 threads per tile of the rectangle, one thread per
// pixel, walking the tile's list back to front (hr_blend_step_vjp) from each pixel's last
// contributing entry, in shared-memory batches from the block's furthest one. v_rgb [H,W,3]:
// dL/d(un-composited colour); v_T [H,W]: dL/d(final transmittance). Each pair's gradients
// are added to its Gaussian's row of v2d [N, HR_V2D] (zeroed by the host) with atomicAdd.
extern "C" __global__ void hr_blend_backward_kernel(
    const HrProjected *proj, const float *rgb, int width, int height, int tiles_x, int tx0,
    int ty0, int tx1, const int *tile_offsets, const unsigned long long *sorted,
    const float *final_T, const int *last_entry, const float *v_rgb, const float *v_T,
    float *v2d) {
    __shared__ HrProjected s_proj[HR_BLOCK];
    __shared__ float s_rgb[HR_BLOCK * 3];
    __shared__ int s_id[HR_BLOCK];
    __shared__ int s_max[HR_BLOCK];
    const int t = hr_rect_tile(blockIdx.x, tiles_x, tx0, ty0, tx1);
    const int px = (t % tiles_x) * HR_TILE + threadIdx.x;
    const int py = (t / tiles_x) * HR_TILE + threadIdx.y;
    const int tid = threadIdx.y * blockDim.x + threadIdx.x;
    const bool inside = px < width && py < height;
    const int pix = inside ? py * width + px : 0;
    const float fx = (float)px + 0.5f, fy = (float)py + 0.5f;
    const int last = inside ? last_entry[pix] : 0;
    const float T_final = inside ? final_T[pix] : 1.f;
    float T = T_final, S[3] = {0.f, 0.f, 0.f}, vC[3] = {0.f, 0.f, 0.f};
    const float vT = inside ? v_T[pix] : 0.f;
    if (inside)
        for (int c = 0; c < 3; ++c) vC[c] = v_rgb[pix * 3 + c];
    // the block's furthest last entry (tree reduction in shared memory)
    s_max[tid] = last;
    __syncthreads();
    for (int s = HR_BLOCK / 2; s > 0; s >>= 1) {
        if (tid < s) s_max[tid] = max(s_max[tid], s_max[tid + s]);
        __syncthreads();
    }
    const int start = tile_offsets[t];
    const int stop = start + s_max[0];
    for (int end = stop; end > start; end -= HR_BLOCK) {
        const int base = max(start, end - HR_BLOCK);
        __syncthreads();  // the previous batch is read by everyone
        const int i = base + tid;
        if (i < end) {
            const int g = (int)(sorted[i] & 0xffffffffull);
            s_id[tid] = g;
            s_proj[tid] = proj[g];
            s_rgb[tid * 3 + 0] = rgb[g * 3 + 0];
            s_rgb[tid * 3 + 1] = rgb[g * 3 + 1];
            s_rgb[tid * 3 + 2] = rgb[g * 3 + 2];
        }
        __syncthreads();
        for (int k = end - base - 1; k >= 0; --k) {
            if (base - start + k >= last) continue;  // behind this pixel's last contributor
            float v[HR_V2D];
            if (!hr_blend_step_vjp(s_proj[k], &s_rgb[k * 3], fx, fy, vC, vT, T_final, T, S, v,
                                   true))
                continue;
            float *dst = v2d + (long long)s_id[k] * HR_V2D;
            for (int c = 0; c < HR_V2D; ++c) atomicAdd(&dst[c], v[c]);
        }
    }
}

// Backward of the projection, one thread per Gaussian: its blend gradients v2d [N, HR_V2D] ->
// rows of v_means [N,3], v_quats [N,4], v_log_scales [N,3], v_opacity_logits [N],
// v_sh [N,(d+1)^2,3] (written). Densification statistics (nullable): grad_norm_sum [N] +=
// |dL/d 2D mean|, visible_count [N] += 1 where the Gaussian is visible.
extern "C" __global__ void hr_project_backward_kernel(
    int n, const float *means, const float *quats, const float *log_scales,
    const float *opacity_logits, const float *sh, int sh_degree, int scale_activation,
    const float *cam_params, const float *v2d, float *v_means, float *v_quats,
    float *v_log_scales, float *v_opacity_logits, float *v_sh, float *grad_norm_sum,
    int *visible_count) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const HrCamera cam = hr_camera_from_params(cam_params);
    bool visible;
    const float norm = hr_project_gaussian_vjp(
        i, means, quats, log_scales, opacity_logits, sh, sh_degree, scale_activation, cam,
        v2d + (long long)i * HR_V2D, v_means, v_quats, v_log_scales, v_opacity_logits, v_sh,
        visible);
    if (grad_norm_sum) grad_norm_sum[i] += norm;
    if (visible_count && visible) visible_count[i] += 1;
}

// One thread per pixel of [x0, x1) x [y0, y1): out = rgb + (1 - alpha) * background (image
// [H,W,3] or colour[3]), as float32 and/or uint8 (round(clip(v, 0, 1) * 255)).
extern "C" __global__ void hr_composite_kernel(const float *rgb, const float *alpha,
                                               const float *bg_image, const float *bg_color,
                                               int width, int x0, int y0, int x1, int y1,
                                               float *out_f32, unsigned char *out_u8) {
    const int x = x0 + blockIdx.x * blockDim.x + threadIdx.x;
    const int y = y0 + blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= x1 || y >= y1) return;
    const int pix = y * width + x;
    const float T = 1.f - alpha[pix];
    for (int c = 0; c < 3; ++c) {
        const float bg = bg_image ? bg_image[pix * 3 + c] : bg_color[c];
        const float v = rgb[pix * 3 + c] + T * bg;
        if (out_f32) out_f32[pix * 3 + c] = v;
        if (out_u8) out_u8[pix * 3 + c] = (unsigned char)(fminf(fmaxf(v, 0.f), 1.f) * 255.f + 0.5f);
    }
}
