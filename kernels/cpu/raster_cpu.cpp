// CPU backend of the Gaussian rasterizer: the math of ../raster_math.cuh driven by OpenMP over
// Gaussians (projection) and over 16x16 tiles (sort, blend). Exposed as plain C functions that
// Python loads with ctypes (see kernels/_cpu.py); every buffer is owned by the caller.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <omp.h>

#include "../raster_math.cuh"

#define HR_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

inline int pick_threads(int threads) { return threads > 0 ? threads : omp_get_max_threads(); }

// Tiles that one Gaussian touches, restricted to rect = [tx0, ty0, tx1, ty1).
inline bool clipped_bounds(const HrProjected &p, int tiles_x, int tiles_y, const int *rect,
                           int b[4]) {
    hr_tile_bounds(p, tiles_x, tiles_y, b);
    b[0] = std::max(b[0], rect[0]);
    b[1] = std::max(b[1], rect[1]);
    b[2] = std::min(b[2], rect[2]);
    b[3] = std::min(b[3], rect[3]);
    return b[0] < b[2] && b[1] < b[3];
}

// Binning pass 1: one more intersection in every tile of rect that Gaussian p touches.
inline void count_tiles(const HrProjected &p, int tiles_x, int tiles_y, const int *rect,
                        int *tile_cursor) {
    int b[4];
    if (!clipped_bounds(p, tiles_x, tiles_y, rect, b)) return;
    for (int ty = b[1]; ty < b[3]; ++ty)
        for (int tx = b[0]; tx < b[2]; ++tx) ++tile_cursor[ty * tiles_x + tx];
}

// Binning pass 2: Gaussian `id`'s depth key into every tile of rect it touches, at each
// tile's cursor (which advances).
inline void emit_keys(const HrProjected &p, int id, int tiles_x, int tiles_y, const int *rect,
                      int *tile_cursor, uint64_t *keys) {
    int b[4];
    if (!clipped_bounds(p, tiles_x, tiles_y, rect, b)) return;
    const uint64_t key = hr_depth_key(p.depth, id);
    for (int ty = b[1]; ty < b[3]; ++ty)
        for (int tx = b[0]; tx < b[2]; ++tx) keys[tile_cursor[ty * tiles_x + tx]++] = key;
}

}  // namespace

HR_EXPORT int hr_cpu_abi_version() { return 2; }

// Project n Gaussians. Row i of the inputs goes to row out_index[i] of proj/rgb (or row i when
// out_index is null), so a renderer can refresh only its dynamic rows. tile_box (nullable)
// receives the union [tx0, ty0, tx1, ty1) of the tiles the projected Gaussians touch.
HR_EXPORT void hr_cpu_project(int n, const float *means, const float *quats,
                              const float *log_scales, const float *opacity_logits,
                              const float *sh, int sh_degree, int scale_activation,
                              const float *cam_params, const int *out_index, HrProjected *proj,
                              float *rgb, int *tile_box, int threads) {
    const HrCamera cam = hr_camera_from_params(cam_params);
    const int tiles_x = (cam.width + HR_TILE - 1) / HR_TILE;
    const int tiles_y = (cam.height + HR_TILE - 1) / HR_TILE;
    int bx0 = tiles_x, by0 = tiles_y, bx1 = 0, by1 = 0;
#pragma omp parallel for num_threads(pick_threads(threads)) schedule(static) \
    reduction(min : bx0, by0) reduction(max : bx1, by1)
    for (int i = 0; i < n; ++i) {
        const int row = out_index ? out_index[i] : i;
        HrProjected p;
        hr_project_gaussian(i, means, quats, log_scales, opacity_logits, sh, sh_degree,
                            scale_activation, cam, p, rgb + (int64_t)row * 3);
        proj[row] = p;
        int b[4];
        hr_tile_bounds(p, tiles_x, tiles_y, b);
        if (b[0] < b[2] && b[1] < b[3]) {
            bx0 = std::min(bx0, b[0]);
            by0 = std::min(by0, b[1]);
            bx1 = std::max(bx1, b[2]);
            by1 = std::max(by1, b[3]);
        }
    }
    if (tile_box) {
        tile_box[0] = bx0; tile_box[1] = by0; tile_box[2] = bx1; tile_box[3] = by1;
    }
}

// Bin projected Gaussians into the tiles of rect (count, exclusive scan, emit) and sort each
// tile's list by (depth, index). tile_offsets [tiles + 1] (global tile ids), keys [capacity].
// Returns the number of intersections; when it exceeds capacity nothing is emitted and the
// caller must grow its buffers (never a silent truncation).
HR_EXPORT int64_t hr_cpu_bin_sort(int n, const HrProjected *proj, int width, int height,
                                  const int *rect, int *tile_offsets, int *tile_cursor,
                                  uint64_t *keys, int64_t capacity, int threads) {
    const int tiles_x = (width + HR_TILE - 1) / HR_TILE;
    const int tiles_y = (height + HR_TILE - 1) / HR_TILE;
    const int tiles = tiles_x * tiles_y;
    std::memset(tile_cursor, 0, sizeof(int) * tiles);
    for (int i = 0; i < n; ++i) count_tiles(proj[i], tiles_x, tiles_y, rect, tile_cursor);
    int64_t total = 0;
    for (int t = 0; t < tiles; ++t) {
        tile_offsets[t] = (int)std::min<int64_t>(total, capacity);
        total += tile_cursor[t];
    }
    tile_offsets[tiles] = (int)std::min<int64_t>(total, capacity);
    if (total > capacity) return total;
    for (int t = 0; t < tiles; ++t) tile_cursor[t] = tile_offsets[t];
    for (int i = 0; i < n; ++i) emit_keys(proj[i], i, tiles_x, tiles_y, rect, tile_cursor, keys);
    const int rw = std::max(0, rect[2] - rect[0]), rh = std::max(0, rect[3] - rect[1]);
#pragma omp parallel for num_threads(pick_threads(threads)) schedule(dynamic, 4)
    for (int k = 0; k < rw * rh; ++k) {
        const int t = (rect[1] + k / rw) * tiles_x + rect[0] + k % rw;
        std::sort(keys + tile_offsets[t], keys + tile_offsets[t + 1]);
    }
    return total;
}

// bin_sort for a renderer whose static Gaussians never move: static_offsets/static_keys hold the
// static Gaussians' per-tile lists, binned and sorted once (hr_cpu_bin_sort with the dynamic
// rows culled). Per frame only the n_dyn dynamic rows (dyn_index) are binned into the tiles of
// rect, sorted, and merged with the static lists, which yields exactly hr_cpu_bin_sort's lists
// (same unique keys). Returns the intersections; > capacity: nothing emitted, as there.
HR_EXPORT int64_t hr_cpu_bin_merge(int n_dyn, const int *dyn_index, const HrProjected *proj,
                                   int width, int height, const int *rect,
                                   const int *static_offsets, const uint64_t *static_keys,
                                   int *tile_offsets, int *tile_cursor, uint64_t *keys,
                                   int64_t capacity, int threads) {
    const int tiles_x = (width + HR_TILE - 1) / HR_TILE;
    const int tiles_y = (height + HR_TILE - 1) / HR_TILE;
    const int tiles = tiles_x * tiles_y;
    std::memset(tile_cursor, 0, sizeof(int) * tiles);
    for (int i = 0; i < n_dyn; ++i)
        count_tiles(proj[dyn_index[i]], tiles_x, tiles_y, rect, tile_cursor);
    auto in_rect = [&](int t) {
        const int tx = t % tiles_x, ty = t / tiles_x;
        return tx >= rect[0] && tx < rect[2] && ty >= rect[1] && ty < rect[3];
    };
    int64_t total = 0;
    for (int t = 0; t < tiles; ++t) {
        tile_offsets[t] = (int)std::min<int64_t>(total, capacity);
        if (in_rect(t)) total += tile_cursor[t] + static_offsets[t + 1] - static_offsets[t];
    }
    tile_offsets[tiles] = (int)std::min<int64_t>(total, capacity);
    if (total > capacity) return total;
    for (int t = 0; t < tiles; ++t)
        tile_cursor[t] = tile_offsets[t] + (static_offsets[t + 1] - static_offsets[t]);
    for (int i = 0; i < n_dyn; ++i) {
        const int g = dyn_index[i];
        emit_keys(proj[g], g, tiles_x, tiles_y, rect, tile_cursor, keys);
    }
    const int rw = std::max(0, rect[2] - rect[0]), rh = std::max(0, rect[3] - rect[1]);
#pragma omp parallel for num_threads(pick_threads(threads)) schedule(dynamic, 4)
    for (int k = 0; k < rw * rh; ++k) {
        const int t = (rect[1] + k / rw) * tiles_x + rect[0] + k % rw;
        const int s0 = static_offsets[t], slen = static_offsets[t + 1] - s0;
        uint64_t *dst = keys + tile_offsets[t], *end = keys + tile_offsets[t + 1];
        uint64_t *dyn = dst + slen;
        std::sort(dyn, end);
        // Forward merge of the static list (read from static_keys) and the dynamic keys (at the
        // back of the range) into the front: the write position never passes the unread
        // dynamic keys, so no scratch buffer (and no allocation) is needed.
        const uint64_t *a = static_keys + s0, *a_end = a + slen;
        uint64_t *w = dst;
        while (a < a_end && dyn < end) *w++ = (*a < *dyn) ? *a++ : *dyn++;
        while (a < a_end) *w++ = *a++;
    }
    return total;
}

namespace {

// A tile's Gaussians packed contiguously in sorted order: the CPU twin of the CUDA kernel's
// shared-memory batch.
struct Packed {
    float x, y, ca, cb, cc, opacity, r, g, b, depth;
    int x0, x1, y0, y1;  // pixel window inside the tile where alpha can reach 1/255
};

// expf for the blend loop, vectorised (libm's expf is a scalar call): Cody-Waite range
// reduction + degree-6 polynomial (Cephes expf), within 2 ulp of expf on [-30, 0]. Inputs below
// -30 are clamped there: opacity * e^-30 < 1/255 is discarded all the same, and the clamp keeps
// the arithmetic out of denormals (~100 cycles each). Positive inputs (sigma < 0) are discarded.
// One Gaussian over one 16-pixel tile row, as two 8-lane vectors (GCC vector extensions, so
// the SIMD form does not depend on the auto-vectoriser): the branch-free form of hr_blend_step
// evaluated for every pixel of the row, like the CUDA block that covers its whole tile.
// live is 1 (all bits) until a pixel saturates.
static_assert(HR_TILE == 16, "the blend loop covers a tile row as two 8-lane vectors");
typedef float v8f __attribute__((vector_size(32)));
typedef int v8i __attribute__((vector_size(32)));

__attribute__((always_inline)) inline v8f vexp_neg(v8f x) {
    const v8f zero = {};
    const v8f lo = zero - 30.f;
    x = x < zero ? x : zero;
    x = x > lo ? x : lo;
    const v8i ni = __builtin_convertvector(x * 1.44269504088896341f - 0.5f, v8i);
    const v8f n = __builtin_convertvector(ni, v8f);
    v8f r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    v8f p = zero + 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.f;
    const v8i bits = (ni + 127) << 23;
    return p * (v8f)bits;
}

// Non-zero when any lane of m is set: an OR tree (a handful of instructions) instead of eight
// lane extractions.
__attribute__((always_inline)) inline bool any_lane(v8i m) {
    typedef long long v4l __attribute__((vector_size(32)));
    const v4l x = (v4l)m;
    return (x[0] | x[1] | x[2] | x[3]) != 0;
}

// One Gaussian over 8 pixels of a tile row. Returns true when a pixel saturated here.
__attribute__((always_inline)) inline bool blend8(const Packed &q, float dy, v8f dx, v8f &T,
                                                  v8f &Cr, v8f &Cg, v8f &Cb, v8f &D,
                                                  v8i &live) {
    const v8f zero = {};
    const v8f amax = zero + HR_ALPHA_MAX;
    const v8f sigma = 0.5f * (q.ca * dx * dx + q.cc * dy * dy) + q.cb * dx * dy;
    const v8f a0 = q.opacity * vexp_neg(-sigma);
    const v8f a = a0 < amax ? a0 : amax;
    const v8i use = (sigma >= 0.f) & (a >= HR_ALPHA_MIN) & live;
    const v8f nT = T * (1.f - a);
    const v8i fin = use & (nT <= HR_T_MIN);
    const v8i add = use & ~fin;
    const v8f vis = add ? a * T : zero;
    Cr += q.r * vis;
    Cg += q.g * vis;
    Cb += q.b * vis;
    D += q.depth * vis;
    T = add ? nT : T;
    live &= ~fin;
    return any_lane(fin);
}

__attribute__((target_clones("avx2", "default"))) void blend_tile(int t, const HrProjected *proj, const float *rgb, int width, int height,
                int tiles_x, const int *tile_offsets, const uint64_t *keys, Packed *pk,
                float *out_rgb, float *out_alpha, float *out_depth) {
    const int tx0 = (t % tiles_x) * HR_TILE, ty0 = (t / tiles_x) * HR_TILE;
    const int begin = tile_offsets[t], end = tile_offsets[t + 1];
    const int w = std::min(HR_TILE, width - tx0), h = std::min(HR_TILE, height - ty0);
    constexpr int NV = HR_BLOCK / 8;
    v8f Tv[NV], Crv[NV], Cgv[NV], Cbv[NV], Dv[NV];
    v8i livev[NV];
    v8f dxs[HR_TILE / 8];
    const v8f lane_centres = {0.5f, 1.5f, 2.5f, 3.5f, 4.5f, 5.5f, 6.5f, 7.5f};
    for (int j = 0; j < NV; ++j)
        for (int i = 0; i < 8; ++i) {
            const int k = j * 8 + i;
            Tv[j][i] = 1.f; Dv[j][i] = 0.f; Crv[j][i] = Cgv[j][i] = Cbv[j][i] = 0.f;
            livev[j][i] = (k % HR_TILE < w && k / HR_TILE < h) ? -1 : 0;
        }
    int n_pk = 0;
    for (int s = begin; s < end; ++s) {
        const int g = (int)(keys[s] & 0xffffffffu);
        if (s + 8 < end) {  // the gather is random access: fetch ahead of use
            const int ga = (int)(keys[s + 8] & 0xffffffffu);
            __builtin_prefetch(proj + ga);
            __builtin_prefetch(rgb + 3 * ga);
        }
        const HrProjected &p = proj[g];
        Packed &q = pk[n_pk];
        q.x = p.x; q.y = p.y; q.ca = p.ca; q.cb = p.cb; q.cc = p.cc; q.opacity = p.opacity;
        q.r = rgb[3 * g]; q.g = rgb[3 * g + 1]; q.b = rgb[3 * g + 2]; q.depth = p.depth;
        // Outside mean +- radius (the extent where alpha falls to 1/255, rounded up), alpha is
        // below the threshold; one pixel of margin keeps float rounding on the safe side.
        q.x0 = std::max(0, (int)floorf(p.x - p.rx - 1.f) - tx0);
        q.x1 = std::min(w, (int)ceilf(p.x + p.rx + 1.f) - tx0);
        q.y0 = std::max(0, (int)floorf(p.y - p.ry - 1.f) - ty0);
        q.y1 = std::min(h, (int)ceilf(p.y + p.ry + 1.f) - ty0);
        if (q.x0 < q.x1 && q.y0 < q.y1) ++n_pk;
    }
    // live pixels per 8-pixel half row: whole halves are skipped once saturated
    bool half_live[NV];
    int n_live = 0;  // halves with a live pixel
    for (int j = 0; j < NV; ++j) {
        half_live[j] = any_lane(livev[j]);
        n_live += half_live[j];
    }
    for (int s = 0; s < n_pk && n_live > 0; ++s) {
        const Packed &q = pk[s];
        dxs[0] = (q.x - (float)tx0) - lane_centres;
        dxs[1] = dxs[0] - 8.f;
        const int h0 = q.x0 / 8, h1 = (q.x1 + 7) / 8;  // halves the bounding box touches
        for (int ly = q.y0; ly < q.y1; ++ly) {
            const float dy = q.y - ((float)(ty0 + ly) + 0.5f);
            for (int hh = h0; hh < h1; ++hh) {
                const int j = ly * (HR_TILE / 8) + hh;
                if (!half_live[j]) continue;
                const bool fin = blend8(q, dy, dxs[hh], Tv[j], Crv[j], Cgv[j], Cbv[j], Dv[j],
                                       livev[j]);
                if (fin && !any_lane(livev[j])) {
                    half_live[j] = false;
                    --n_live;
                }
            }
        }
    }
    for (int ly = 0; ly < h; ++ly)
        for (int lx = 0; lx < w; ++lx) {
            const int k = ly * HR_TILE + lx, j = k / 8, i = k % 8;
            const int64_t pix = (int64_t)(ty0 + ly) * width + tx0 + lx;
            const float a = 1.f - Tv[j][i];
            out_rgb[3 * pix] = Crv[j][i];
            out_rgb[3 * pix + 1] = Cgv[j][i];
            out_rgb[3 * pix + 2] = Cbv[j][i];
            out_alpha[pix] = a;
            if (out_depth) out_depth[pix] = Dv[j][i] / fmaxf(a, 1e-10f);
        }
}

}  // namespace

// Blend every tile of rect front to back. Writes un-composited colour sum(c * alpha * T)
// [H,W,3], alpha = 1 - T [H,W] and, when out_depth is not null, the expected depth
// sum(z * alpha * T) / alpha [H,W] for the pixels of rect; pixels outside rect are untouched.
// scratch: per-thread packing space, threads x max_per_tile records of 14 x 4 bytes.
HR_EXPORT void hr_cpu_blend(const HrProjected *proj, const float *rgb, int width, int height,
                            const int *rect, const int *tile_offsets, const uint64_t *keys,
                            void *scratch, int64_t scratch_per_thread, float *out_rgb,
                            float *out_alpha, float *out_depth, int threads) {
    const int tiles_x = (width + HR_TILE - 1) / HR_TILE;
    const int rw = std::max(0, rect[2] - rect[0]), rh = std::max(0, rect[3] - rect[1]);
    const int nt = pick_threads(threads);
#pragma omp parallel num_threads(nt)
    {
        Packed *pk = reinterpret_cast<Packed *>(scratch) + omp_get_thread_num() * scratch_per_thread;
#pragma omp for schedule(dynamic, 1)
        for (int k = 0; k < rw * rh; ++k) {
            const int t = (rect[1] + k / rw) * tiles_x + rect[0] + k % rw;
            blend_tile(t, proj, rgb, width, height, tiles_x, tile_offsets, keys, pk, out_rgb,
                       out_alpha, out_depth);
        }
    }
}

// Largest per-tile list length (sizes the blend scratch).
HR_EXPORT int hr_cpu_max_tile_len(const int *tile_offsets, int tiles) {
    int m = 0;
    for (int t = 0; t < tiles; ++t) m = std::max(m, tile_offsets[t + 1] - tile_offsets[t]);
    return m;
}

HR_EXPORT int hr_cpu_packed_size() { return (int)sizeof(Packed); }

// Composite over a background and write the pixels [x0, x1) x [y0, y1):
// out = rgb + (1 - alpha) * bg, with bg an [H,W,3] image or, when bg_image is null, the colour
// bg_color[3]. out_f32 [H,W,3] (may alias rgb) and/or out_u8 [H,W,3] (round(clip(v) * 255)).
HR_EXPORT void hr_cpu_composite(const float *rgb, const float *alpha, const float *bg_image,
                                const float *bg_color, int width, int x0, int y0, int x1, int y1,
                                float *out_f32, uint8_t *out_u8, int threads) {
#pragma omp parallel for num_threads(pick_threads(threads)) schedule(static)
    for (int y = y0; y < y1; ++y)
        for (int x = x0; x < x1; ++x) {
            const int64_t pix = (int64_t)y * width + x;
            const float T = 1.f - alpha[pix];
            for (int c = 0; c < 3; ++c) {
                const float bg = bg_image ? bg_image[3 * pix + c] : bg_color[c];
                const float v = rgb[3 * pix + c] + T * bg;
                if (out_f32) out_f32[3 * pix + c] = v;
                if (out_u8) out_u8[3 * pix + c] = (uint8_t)(fminf(fmaxf(v, 0.f), 1.f) * 255.f + 0.5f);
            }
        }
}
