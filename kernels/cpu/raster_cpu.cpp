// CPU backend of the Gaussian rasterizer: the math of ../raster_math.cuh driven by OpenMP over
// Gaussians (projection) and over 16x16 tiles (blend). Binning sorts the visible Gaussians by
// depth once and emits them into their tiles in that order, so no tile list is sorted. Exposed
// as plain C functions that Python loads with ctypes (see kernels/cpu/__init__.py); every
// buffer is owned by the caller.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <omp.h>
#include <vector>

// 8-lane float/int vectors (GCC vector extensions, so the SIMD form does not depend on the
// auto-vectoriser): 8 Gaussians of the projection, 8 pixels of a blend half row.
typedef float v8f __attribute__((vector_size(32)));
typedef int v8i __attribute__((vector_size(32)));

// The vector overloads of raster_math.cuh's lane helpers (see there), declared before it so its
// templates see them. Lane loops of one operation compile to one instruction (sqrt, round);
// libm calls stay per lane, so every lane equals the float code exactly.
#define HR_INLINE inline __attribute__((always_inline))  // compiled into each clone
HR_INLINE v8f hr_select(v8i m, v8f a, v8f b) { return m ? a : b; }
HR_INLINE v8f hr_sqrt(v8f v) {
    v8f r;
    for (int l = 0; l < 8; ++l) r[l] = sqrtf(v[l]);  // vsqrtps (no errno)
    return r;
}
HR_INLINE v8f hr_ceil(v8f v) {
    v8f r;
    for (int l = 0; l < 8; ++l) r[l] = ceilf(v[l]);
    return r;
}
HR_INLINE v8i hr_to_int(v8f v) { return __builtin_convertvector(v, v8i); }
// (GCC's -Wmaybe-uninitialized takes the lanes of an `out` written whole here for read)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
HR_INLINE void hr_load(v8f &out, const float *a, long long row, int stride) {
    const float *p = a + row * stride;
    out = v8f{p[0], p[stride], p[2 * stride], p[3 * stride], p[4 * stride], p[5 * stride],
              p[6 * stride], p[7 * stride]};
}
#pragma GCC diagnostic pop
HR_INLINE v8f hr_log(v8f v);
HR_INLINE v8f hr_exp(v8f v);
HR_INLINE v8f hr_sigmoid(v8f v);
HR_INLINE v8f hr_activate_scale(v8f v, int activation);

#include "../raster_math.cuh"

HR_INLINE v8f hr_log(v8f v) {
    v8f r;
    for (int l = 0; l < 8; ++l) r[l] = hr_log(v[l]);
    return r;
}
HR_INLINE v8f hr_sigmoid(v8f v) {
    v8f r;
    for (int l = 0; l < 8; ++l) r[l] = hr_sigmoid(v[l]);
    return r;
}
HR_INLINE v8f hr_activate_scale(v8f v, int activation) {
    v8f r;
    for (int l = 0; l < 8; ++l) r[l] = hr_activate_scale(v[l], activation);
    return r;
}

#define HR_EXPORT extern "C" __attribute__((visibility("default")))
// The hot loops are compiled twice, for AVX2 + FMA (x86-64-v3) and for baseline x86-64, and the
// loader picks one per CPU (an ifunc): baseline x86-64 has no instruction for floorf, fminf or
// an 8-lane vector, so its clone is several times slower, but it runs everywhere.
// HR_BASELINE_ISA builds the baseline forms only (what a CPU without AVX2 runs), for the tests.
#ifdef HR_BASELINE_ISA
#define HR_CLONES
#else
#define HR_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#endif

namespace {

// What the blend reads of one projected Gaussian, in one 64-byte line: written by the
// projection for each row it projects, so the blend's random gathers touch one line per
// Gaussian and the per-Gaussian constants of its footprint test are computed once, not per tile.
struct alignas(64) BlendRecord {
    float x, y;          // pixel-space mean
    float ha, cb, hc;    // conic halved on the diagonal: sigma = ha dx^2 + cb dx dy + hc dy^2
    float opacity, r, g, b, depth;
    float two_a_tau;     // 2 ca tau, tau = ln(255 opacity) + 1e-2 (see footprints)
    float det;           // ca cc - cb^2
    float inv_a;         // 1 / ca
};

HR_INLINE int pick_threads(int threads) { return threads > 0 ? threads : omp_get_max_threads(); }

// Tiles that one Gaussian touches, restricted to rect = [tx0, ty0, tx1, ty1).
HR_INLINE bool clipped_bounds(const HrProjected &p, int tiles_x, int tiles_y, const int *rect,
                              int b[4]) {
    hr_tile_bounds(p, tiles_x, tiles_y, b);
    b[0] = std::max(b[0], rect[0]);
    b[1] = std::max(b[1], rect[1]);
    b[2] = std::min(b[2], rect[2]);
    b[3] = std::min(b[3], rect[3]);
    return b[0] < b[2] && b[1] < b[3];
}

}  // namespace

HR_EXPORT int hr_cpu_abi_version() { return 4; }

// hr_project's out for 8 Gaussians: HrProjected's fields, a lane each.
struct LaneProjected {
    v8f x, y, ca, cb, cc, opacity, depth;
    v8i rx, ry;
};

// Lane l of a vector; a scalar is its own only lane.
HR_INLINE float lane_of(float v, int) { return v; }
HR_INLINE int lane_of(int v, int) { return v; }
HR_INLINE float lane_of(v8f v, int l) { return v[l]; }
HR_INLINE int lane_of(v8i v, int l) { return v[l]; }

// Where the projection writes one row (see hr_cpu_project).
struct ProjectOut {
    const int *out_index;
    HrProjected *proj;
    float *rgb;
    BlendRecord *rec;
    int tiles_x, tiles_y;
};

// Row r of the projection's outputs from lane l of p / c (l = 0 and F = float: one Gaussian):
// the projected row, its colour, its blend record and the tile box it widens (box, reduced
// over rows: min x, min y, max x, max y).
template <class P, class F>
HR_INLINE void store_projected(const ProjectOut &o, int i, const P &p, const F c[3], int l,
                               int box[4]) {
    const auto lane = [l](const auto &v) { return lane_of(v, l); };
    const int row = o.out_index ? o.out_index[i] : i;
    HrProjected q;
    q.x = lane(p.x); q.y = lane(p.y);
    q.ca = lane(p.ca); q.cb = lane(p.cb); q.cc = lane(p.cc);
    q.opacity = lane(p.opacity); q.depth = lane(p.depth);
    q.rx = lane(p.rx); q.ry = lane(p.ry);
    o.proj[row] = q;
    float *rgb = o.rgb + (int64_t)row * 3;
    for (int k = 0; k < 3; ++k) rgb[k] = lane(c[k]);
    if (o.rec && q.rx > 0) {
        const float tau = logf(q.opacity / HR_ALPHA_MIN) + 1e-2f;
        o.rec[row] = BlendRecord{q.x, q.y, 0.5f * q.ca, q.cb, 0.5f * q.cc, q.opacity, rgb[0],
                                 rgb[1], rgb[2], q.depth, 2.f * q.ca * tau,
                                 q.ca * q.cc - q.cb * q.cb, 1.f / q.ca};
    }
    int b[4];
    hr_tile_bounds(q, o.tiles_x, o.tiles_y, b);
    if (b[0] < b[2] && b[1] < b[3]) {
        box[0] = std::min(box[0], b[0]);
        box[1] = std::min(box[1], b[1]);
        box[2] = std::max(box[2], b[2]);
        box[3] = std::max(box[3], b[3]);
    }
}

// Project n Gaussians, 8 at a time (raster_math.cuh's math on 8 lanes; the last n % 8 one by
// one). Row i of the inputs goes to row out_index[i] of proj/rgb (or row i when out_index is
// null), so a renderer can refresh only its dynamic rows. records (nullable) receive what the
// blend reads of each visible row (BlendRecord). tile_box (nullable) receives the union
// [tx0, ty0, tx1, ty1) of the tiles the projected Gaussians touch.
HR_CLONES void hr_cpu_project_impl(int n,
                                 const float *means, const float *quats, const float *log_scales,
                                 const float *opacity_logits, const float *sh, int sh_degree,
                                 int scale_activation, const float *cam_params,
                                 const int *out_index, HrProjected *proj, float *rgb, void *records,
                                 int *tile_box, int threads) {
    const HrCamera cam = hr_camera_from_params(cam_params);
    ProjectOut o;
    o.out_index = out_index;
    o.proj = proj;
    o.rgb = rgb;
    o.rec = static_cast<BlendRecord *>(records);
    o.tiles_x = (cam.width + HR_TILE - 1) / HR_TILE;
    o.tiles_y = (cam.height + HR_TILE - 1) / HR_TILE;
    int bx0 = o.tiles_x, by0 = o.tiles_y, bx1 = 0, by1 = 0;
    const int groups = n / 8, tail = n % 8;
#pragma omp parallel for num_threads(pick_threads(threads)) schedule(static) \
    reduction(min : bx0, by0) reduction(max : bx1, by1)
    for (int g = 0; g < groups + tail; ++g) {
        int box[4] = {bx0, by0, bx1, by1};
        if (g < groups) {
            LaneProjected p;
            v8f c[3];
            hr_project_gaussian((long long)g * 8, means, quats, log_scales, opacity_logits, sh,
                                sh_degree, scale_activation, cam, p, c);
            for (int l = 0; l < 8; ++l) store_projected(o, g * 8 + l, p, c, l, box);
        } else {
            const int i = groups * 8 + (g - groups);
            HrProjected p;
            float c[3];
            hr_project_gaussian(i, means, quats, log_scales, opacity_logits, sh, sh_degree,
                                scale_activation, cam, p, c);
            store_projected(o, i, p, c, 0, box);
        }
        bx0 = box[0]; by0 = box[1]; bx1 = box[2]; by1 = box[3];
    }
    if (tile_box) {
        tile_box[0] = bx0; tile_box[1] = by0; tile_box[2] = bx1; tile_box[3] = by1;
    }
}

HR_EXPORT void hr_cpu_project(int n, const float *means, const float *quats,
                              const float *log_scales, const float *opacity_logits, const float *sh,
                              int sh_degree, int scale_activation, const float *cam_params,
                              const int *out_index, HrProjected *proj, float *rgb, void *records,
                              int *tile_box, int threads) {
    hr_cpu_project_impl(n, means, quats, log_scales, opacity_logits, sh, sh_degree,
                        scale_activation, cam_params, out_index, proj, rgb, records, tile_box,
                        threads);
}

namespace {

// A visible Gaussian's tile-list entry before sorting: its clipped tile box and depth key.
struct Visible {
    uint32_t depth_bits;  // the depth's float bits: positive floats order like their patterns
    uint32_t id;
    uint16_t box[4];      // [tx0, ty0, tx1, ty1) clipped to the rect
};

// Binning runs in three parallel steps, each thread on a contiguous share of the rows:
//  1. collect: the rows whose tile box meets rect, as Visible entries (in row order) with
//     per-thread tile counts;
//  2. sort: all entries stably by depth (LSD radix sort of the depth's float bits, 11 bits a
//     pass, serial: ~50k keys);
//  3. emit: each entry's (depth, index) key into every tile of its box. Thread t takes the t-th
//     share of the sorted entries and writes after the shares of threads < t in every tile, so
//     each tile's list comes out sorted by (depth, index) — gsplat's order — with no per-tile
//     sort.
// tile_counts holds tiles x threads ints; scratch 2n Visible. The runtime may give a parallel
// region fewer threads than asked: shares follow the threads it gave.
struct Binning {
    const HrProjected *proj;
    int tiles_x, tiles_y, tiles;
    const int *rect;
    int *tile_counts;  // [threads][tiles]
    Visible *scratch;
    int threads;
};

HR_INLINE int share_begin(int n, int t, int threads) { return (int)((int64_t)n * t / threads); }

// Step 1 over rows ids[0..n) (0..n-1 when ids is null); returns the number of entries, which
// end up in depth order in *sorted. Per-tile totals are summed into tile_total.
HR_CLONES int collect_and_sort(const Binning &b, int n, const int *ids, int *tile_total,
                               const Visible **sorted) {
    int kept[64] = {};  // per thread (threads <= 64)
    int nt = 1;         // threads the runtime gave the region (at most b.threads)
    Visible *v = b.scratch, *v2 = b.scratch + n;
#pragma omp parallel num_threads(b.threads)
    {
        const int t = omp_get_thread_num(), threads = omp_get_num_threads();
        if (t == 0) nt = threads;
        int *cnt = b.tile_counts + (int64_t)t * b.tiles;
        std::memset(cnt, 0, sizeof(int) * b.tiles);
        const int i0 = share_begin(n, t, threads), i1 = share_begin(n, t + 1, threads);
        int k = i0;
        for (int i = i0; i < i1; ++i) {
            const int g = ids ? ids[i] : i;
            int box[4];
            if (!clipped_bounds(b.proj[g], b.tiles_x, b.tiles_y, b.rect, box)) continue;
            for (int ty = box[1]; ty < box[3]; ++ty)
                for (int tx = box[0]; tx < box[2]; ++tx) ++cnt[ty * b.tiles_x + tx];
            Visible &e = v[k++];
            e.depth_bits = (uint32_t)(hr_depth_key(b.proj[g].depth, 0) >> 32);
            e.id = (uint32_t)g;
            for (int c = 0; c < 4; ++c) e.box[c] = (uint16_t)box[c];
        }
        kept[t] = k - i0;
    }
    std::memset(tile_total, 0, sizeof(int) * b.tiles);
    for (int t = 0; t < nt; ++t) {
        const int *cnt = b.tile_counts + (int64_t)t * b.tiles;
        for (int i = 0; i < b.tiles; ++i) tile_total[i] += cnt[i];
    }
    // close the gaps between the threads' shares (a move within v: the shares only shift down)
    int m = kept[0];
    for (int t = 1; t < nt; ++t) {
        std::memmove(v + m, v + share_begin(n, t, nt), sizeof(Visible) * kept[t]);
        m += kept[t];
    }
    // LSD radix sort (stable: ties keep ascending index); a pass whose digit is the same for
    // every key (the high bits of a head's narrow depth range) is skipped
    for (int shift = 0; shift < 32; shift += 11) {
        uint32_t hist[2048] = {};
        for (int i = 0; i < m; ++i) ++hist[(v[i].depth_bits >> shift) & 2047u];
        if (m == 0 || hist[(v[0].depth_bits >> shift) & 2047u] == (uint32_t)m) continue;
        uint32_t sum = 0;
        for (uint32_t &h : hist) {
            const uint32_t c = h;
            h = sum;
            sum += c;
        }
        for (int i = 0; i < m; ++i) v2[hist[(v[i].depth_bits >> shift) & 2047u]++] = v[i];
        std::swap(v, v2);
    }
    *sorted = v;
    return m;
}

// Step 3: the m sorted entries into the tiles, tile t's list starting at tile_start[t].
HR_CLONES void emit_sorted(const Binning &b, const Visible *v, int m, const int *tile_start,
                           uint64_t *keys) {
#pragma omp parallel num_threads(b.threads)
    {
        const int t = omp_get_thread_num(), threads = omp_get_num_threads();
        const int i0 = share_begin(m, t, threads), i1 = share_begin(m, t + 1, threads);
        int *cursor = b.tile_counts + (int64_t)t * b.tiles;
        std::memset(cursor, 0, sizeof(int) * b.tiles);
        for (int i = i0; i < i1; ++i)
            for (int ty = v[i].box[1]; ty < v[i].box[3]; ++ty)
                for (int tx = v[i].box[0]; tx < v[i].box[2]; ++tx) ++cursor[ty * b.tiles_x + tx];
#pragma omp barrier
#pragma omp single
        // counts -> cursors: each thread's entries go after those of the threads before it
        for (int tile = 0; tile < b.tiles; ++tile) {
            int start = tile_start[tile];
            for (int u = 0; u < threads; ++u) {
                int &c = b.tile_counts[(int64_t)u * b.tiles + tile];
                const int count = c;
                c = start;
                start += count;
            }
        }
        for (int i = i0; i < i1; ++i) {
            const Visible &e = v[i];
            const uint64_t key = ((uint64_t)e.depth_bits << 32) | e.id;
            for (int ty = e.box[1]; ty < e.box[3]; ++ty)
                for (int tx = e.box[0]; tx < e.box[2]; ++tx)
                    keys[cursor[ty * b.tiles_x + tx]++] = key;
        }
    }
}

HR_INLINE Binning make_binning(const HrProjected *proj, int width, int height, const int *rect,
                               int *tile_counts, void *sort_scratch, int threads) {
    Binning b;
    b.proj = proj;
    b.tiles_x = (width + HR_TILE - 1) / HR_TILE;
    b.tiles_y = (height + HR_TILE - 1) / HR_TILE;
    b.tiles = b.tiles_x * b.tiles_y;
    b.rect = rect;
    b.tile_counts = tile_counts;
    b.scratch = static_cast<Visible *>(sort_scratch);
    b.threads = std::min(pick_threads(threads), 64);
    return b;
}

}  // namespace

// Bin projected Gaussians into the tiles of rect, each tile's list sorted by (depth, index):
// see Binning. tile_offsets [tiles + 1] (global tile ids), tile_counts [tiles x threads],
// keys [capacity], sort_scratch 2n entries of hr_cpu_visible_size() bytes.
// Returns the number of intersections; when it exceeds capacity nothing is emitted and the
// caller must grow its buffers (never a silent truncation).
HR_CLONES int64_t hr_cpu_bin_sort_impl(int n, const HrProjected *proj, int width, int height,
                                       const int *rect, int *tile_offsets, int *tile_counts,
                                       uint64_t *keys, int64_t capacity, void *sort_scratch,
                                       int threads) {
    const Binning b = make_binning(proj, width, height, rect, tile_counts, sort_scratch, threads);
    const Visible *sorted = nullptr;
    const int m = collect_and_sort(b, n, nullptr, tile_offsets, &sorted);
    int64_t total = 0;
    for (int t = 0; t < b.tiles; ++t) {
        const int c = tile_offsets[t];
        tile_offsets[t] = (int)std::min<int64_t>(total, capacity);
        total += c;
    }
    tile_offsets[b.tiles] = (int)std::min<int64_t>(total, capacity);
    if (total > capacity) return total;
    emit_sorted(b, sorted, m, tile_offsets, keys);
    return total;
}

HR_EXPORT int64_t hr_cpu_bin_sort(int n, const HrProjected *proj, int width, int height,
                                  const int *rect, int *tile_offsets, int *tile_counts,
                                  uint64_t *keys, int64_t capacity, void *sort_scratch,
                                  int threads) {
    return hr_cpu_bin_sort_impl(n, proj, width, height, rect, tile_offsets, tile_counts, keys,
                                capacity, sort_scratch, threads);
}

// bin_sort for a renderer whose static Gaussians never move: static_offsets/static_keys hold the
// static Gaussians' per-tile lists, binned once (hr_cpu_bin_sort with the dynamic rows culled).
// Per frame only the n_dyn dynamic rows (dyn_index) are binned into the tiles of rect, after
// the static entries of each tile, then merged with them, which yields exactly
// hr_cpu_bin_sort's lists (same unique keys). tile_counts, sort_scratch: as there, for n_dyn.
// Returns the intersections; > capacity: nothing emitted, as there.
// touched / draw [tiles] (both given, else both ignored): a renderer that redraws only the tiles that
// changed. On entry touched marks the tiles the dynamic rows touched last frame (rect must
// cover them); on return it marks those they touch now, and draw marks the tiles of rect that
// either set holds: the only tiles whose lists are built (the others of rect get empty lists;
// hr_cpu_blend given draw skips them). A tile in neither set shows the static Gaussians alone,
// as the blend buffers already hold from the frame after its last change.
HR_CLONES int64_t hr_cpu_bin_merge_impl(int n_dyn, const int *dyn_index,
                                        const HrProjected *proj, int width, int height,
                                        const int *rect, const int *static_offsets,
                                        const uint64_t *static_keys, int *tile_offsets,
                                        int *tile_counts, uint64_t *keys, int64_t capacity,
                                        void *sort_scratch, uint8_t *touched, uint8_t *draw,
                                        int threads) {
    const Binning b = make_binning(proj, width, height, rect, tile_counts, sort_scratch, threads);
    const Visible *sorted = nullptr;
    const int m = collect_and_sort(b, n_dyn, dyn_index, tile_offsets, &sorted);
    const int tiles_x = b.tiles_x;
    auto in_rect = [&](int t) {
        const int tx = t % tiles_x, ty = t / tiles_x;
        return tx >= rect[0] && tx < rect[2] && ty >= rect[1] && ty < rect[3];
    };
    const bool masked = touched && draw;
    if (masked) {
        // tile_offsets holds each tile's dynamic count: a tile is touched now when it is > 0.
        // Bit 0 of draw: draw it; bit 1: touched now, moved into touched only once the lists
        // fit (a caller that grows its buffers calls again with touched as it was).
        for (int t = 0; t < b.tiles; ++t) {
            const bool inside = in_rect(t), now = inside && tile_offsets[t] > 0;
            draw[t] = (uint8_t)((inside && (now || touched[t])) | (now << 1));
        }
    }
    auto listed = [&](int t) { return masked ? (draw[t] & 1) != 0 : in_rect(t); };
    // tile_offsets holds the dynamic counts of each tile; add the static lists
    int64_t total = 0;
    for (int t = 0; t < b.tiles; ++t) {
        const int c = listed(t) ? tile_offsets[t] + static_offsets[t + 1] - static_offsets[t]
                                 : 0;
        tile_offsets[t] = (int)std::min<int64_t>(total, capacity);
        total += c;
    }
    tile_offsets[b.tiles] = (int)std::min<int64_t>(total, capacity);
    if (total > capacity) return total;
    if (masked)
        for (int t = 0; t < b.tiles; ++t) {
            touched[t] = (uint8_t)(draw[t] >> 1);
            draw[t] &= 1;
        }
    // the dynamic keys go after each tile's static share (emitted with the starts shifted by
    // it, then shifted back), and are merged with it below
    for (int t = 0; t < b.tiles; ++t)
        if (listed(t)) tile_offsets[t] += static_offsets[t + 1] - static_offsets[t];
    emit_sorted(b, sorted, m, tile_offsets, keys);
    for (int t = 0; t < b.tiles; ++t)
        if (listed(t)) tile_offsets[t] -= static_offsets[t + 1] - static_offsets[t];
    const int rw = std::max(0, rect[2] - rect[0]), rh = std::max(0, rect[3] - rect[1]);
#pragma omp parallel for num_threads(b.threads) schedule(dynamic, 4)
    for (int k = 0; k < rw * rh; ++k) {
        const int t = (rect[1] + k / rw) * tiles_x + rect[0] + k % rw;
        if (masked && !draw[t]) continue;  // an empty list: no room for its static entries
        const int s0 = static_offsets[t], slen = static_offsets[t + 1] - s0;
        uint64_t *dst = keys + tile_offsets[t], *end = keys + tile_offsets[t + 1];
        uint64_t *dyn = dst + slen;  // already in depth order
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

HR_EXPORT int64_t hr_cpu_bin_merge(int n_dyn, const int *dyn_index, const HrProjected *proj,
                                   int width, int height, const int *rect,
                                   const int *static_offsets, const uint64_t *static_keys,
                                   int *tile_offsets, int *tile_counts, uint64_t *keys,
                                   int64_t capacity, void *sort_scratch, uint8_t *touched,
                                   uint8_t *draw, int threads) {
    return hr_cpu_bin_merge_impl(n_dyn, dyn_index, proj, width, height, rect, static_offsets,
                                 static_keys, tile_offsets, tile_counts, keys, capacity,
                                 sort_scratch, touched, draw, threads);
}

namespace {

// 8-lane float/int vectors (GCC vector extensions, so the SIMD form does not depend on the
// auto-vectoriser). A 16x16 tile is 32 half rows of 8 pixels.
static_assert(HR_TILE == 16, "the blend loop covers a tile row as two 8-lane vectors");
constexpr int HALVES = HR_BLOCK / 8;
constexpr float CULL_MARGIN_PX = 0.05f;  // see footprints

// Per-thread blend scratch for tiles of up to cap Gaussians: per half row the bit set of the
// Gaussians that reach it (uint32 [HALVES][words(cap)], bit s of word w = Gaussian 32 w + s of
// the tile's list).
HR_INLINE int64_t mask_words(int64_t cap) { return (cap + 31) / 32; }
HR_INLINE int64_t scratch_bytes(int64_t cap) {
    return (int64_t)sizeof(uint32_t) * HALVES * mask_words(cap);
}

// Non-zero when any lane of m is set: an OR tree instead of eight lane extractions.
HR_INLINE bool any_lane(v8i m) {
    typedef long long v4l __attribute__((vector_size(32)));
    const v4l x = (v4l)m;
    return (x[0] | x[1] | x[2] | x[3]) != 0;
}

// Bit l = the sign bit of lane l, for a mask of all-ones / zero lanes: two SSE movmskps (in
// every x86-64, hence in both clones), not an OR tree of lane extractions.
HR_INLINE uint32_t lane_bits(v8i m) {
    typedef float v4sf __attribute__((vector_size(16)));
    const v4sf lo = (v4sf)__builtin_shufflevector(m, m, 0, 1, 2, 3);
    const v4sf hi = (v4sf)__builtin_shufflevector(m, m, 4, 5, 6, 7);
    return (uint32_t)__builtin_ia32_movmskps(lo) | (uint32_t)__builtin_ia32_movmskps(hi) << 4;
}

// Half row j of a tile: pixel rows 8 (j / 16) + j % 8, columns 8 ((j / 8) % 2) + 0..7.
HR_INLINE int half_row(int j) { return (j >> 4) * 8 + (j & 7); }
HR_INLINE int half_col(int j) { return ((j >> 3) & 1) * 8; }

// The footprints of tile-list entries s0 .. s0 + 7 (fewer past n; a Gaussian per lane) in the
// 16x16 tile at (tx0, ty0): bit s0 % 32 + l of word s0 / 32 of half row j's bit set is set when
// Gaussian l can reach alpha >= 1/255 on half row j (of those in `inside`). Lanes are
// Gaussians, so each row's test gives its bits for 8 Gaussians at once (one movmskps), already
// in the per-half-row layout the blend walks.
// Exact footprint, not the bounding box: on pixel row dy = y - py the falloff
// sigma(dx) = ca/2 dx^2 + cb dx dy + cc/2 dy^2 is a parabola in dx = x - px, below
// tau = ln(255 opacity) on [x + (cb dy - s) / ca, x + (cb dy + s) / ca] with
// s^2 = 2 ca tau - det dy^2 (det = ca cc - cb^2 > 0). Culling is conservative: tau gets a
// 1e-2 margin and the pixel range CULL_MARGIN_PX each side (float error here is ~1e-3 px),
// so every skipped pixel has alpha < 1/255: skipping it changes no image, and the per-pixel
// test stays exact.
HR_INLINE void footprints(const BlendRecord *rec, const uint64_t *list, int s0, int n, float tx0,
                          float ty0, uint32_t inside, uint32_t *bits, int64_t words) {
    v8f x = {}, y = {}, cb = {}, inv_a = {}, two_a_tau = {}, det = {};
    const int k = std::min(8, n - s0);
    for (int l = 0; l < k; ++l) {
        const BlendRecord &p = rec[(uint32_t)list[s0 + l]];
        x[l] = p.x; y[l] = p.y; cb[l] = p.cb; inv_a[l] = p.inv_a;
        two_a_tau[l] = p.two_a_tau; det[l] = p.det;
    }
    const uint32_t lanes = (1u << k) - 1;
    const v8f zero = {};
    const v8f xr = x - tx0 - 0.5f;  // in pixel indices of the tile (centre of pixel 0 = 0)
    const v8f yr = y - ty0;
    uint32_t *word = bits + s0 / 32;
    const int shift = s0 % 32;
    for (int r = 0; r < HR_TILE; ++r) {
        const int j0 = ((r >> 3) << 4) | (r & 7), j1 = j0 | 8;  // its left and right half
        if (!(inside >> j0 & 1)) continue;
        const v8f dy = yr - (r + 0.5f);
        const v8f disc = two_a_tau - det * dy * dy;
        const v8f d = disc > zero ? disc : zero;
        v8f s;
        for (int l = 0; l < 8; ++l) s[l] = sqrtf(d[l]) * inv_a[l];  // one vsqrtps (no errno)
        const v8f centre = xr + cb * dy * inv_a;
        const v8f lo = centre - s - CULL_MARGIN_PX, hi = centre + s + CULL_MARGIN_PX;
        // excluded when the row misses the ellipse or its range misses the half's pixels;
        // written as exclusions so a NaN keeps the half
        const v8i miss = disc < zero;
        const v8i h0 = ~(miss | (lo > 7.f) | (hi < 0.f));
        const v8i h1 = ~(miss | (lo > 15.f) | (hi < 8.f));
        word[j0 * words] |= (lane_bits(h0) & lanes) << shift;
        if (inside >> j1 & 1) word[j1 * words] |= (lane_bits(h1) & lanes) << shift;
    }
}

// a * b + c, fused (one rounding, one instruction) where the CPU has FMA. The library is built
// without FMA contraction, so that the blend rounds like the emulated kernels; only the exp
// polynomial fuses its terms (its result stays within 2 ulp of expf either way).
template <bool Fma>
HR_INLINE v8f madd(v8f a, v8f b, v8f c) {
    if constexpr (Fma) {
        v8f r;
        for (int i = 0; i < 8; ++i) r[i] = __builtin_fmaf(a[i], b[i], c[i]);  // one vfmadd
        return r;
    } else {
        return a * b + c;
    }
}

template <bool Fma>
HR_INLINE v8f madd(v8f a, float b, v8f c) {
    const v8f zero = {};
    return madd<Fma>(a, zero + b, c);
}

// expf for the blend loop, vectorised (libm's expf is a scalar call): Cody-Waite range
// reduction + the degree-6 polynomial of Cephes expf, within 2 ulp of expf on [-30, 0]. The
// polynomial is evaluated in Estrin's form: the same terms in a third of Horner's dependency
// chain, which bounds how fast the blend loop can go. Inputs below -30 are clamped there:
// opacity * e^-30 < 1/255 is discarded all the same, and the clamp keeps the arithmetic out of
// denormals (~100 cycles each). The caller discards positive inputs (sigma < 0).
template <bool Fma>
HR_INLINE v8f vexp_neg(v8f x) {
    const v8f zero = {};
    const v8f lo = zero - 30.f;
    x = x > lo ? x : lo;
    // n = round(x / ln 2) in the low mantissa bits of t (1.5 2^23 + n)
    const v8f t = madd<Fma>(x, 1.44269504088896341f, zero + 12582912.f);
    const v8f n = t - 12582912.f;
    v8f r = madd<Fma>(n, -0.693359375f, x);
    r = madd<Fma>(n, 2.12194440e-4f, r);
    const v8f r2 = r * r;
    const v8f p01 = madd<Fma>(r, 1.6666665459e-1f, zero + 5.0000001201e-1f);
    const v8f p23 = madd<Fma>(r, 8.3334519073e-3f, zero + 4.1665795894e-2f);
    const v8f p45 = madd<Fma>(r, 1.9875691500e-4f, zero + 1.3981999507e-3f);
    const v8f p = madd<Fma>(r2, madd<Fma>(r2, p45, p23), p01);
    const v8i bits = ((v8i)t << 23) + (127 << 23);  // 2^n: t's low bits hold n
    return madd<Fma>(p, r2, r + 1.f) * (v8f)bits;
}

// The blend state of one half row: 8 pixels' transmittance, colour, depth and liveness.
struct HalfRow {
    v8f T, Cr, Cg, Cb, D;
    v8i live;  // all bits until the pixel saturates (or 0 outside the image)
    v8i last;  // Save: list entries up to the last contributing one (hr_blend_save_kernel's)
    v8f centres;
    float y;   // pixel-centre y of the row
};

// Gaussian q over the 8 pixels of h: the branch-free form of hr_blend_step per lane.
// e^-sigma of Gaussian q over the 8 pixels of a half row (pixel centres centres, y), 0 where
// sigma < 0 (hr_alpha skips those): what the compositing step needs of the pixel positions.
template <bool Fma>
HR_INLINE v8f half_row_falloff(const BlendRecord &q, const v8f centres, float y) {
    const v8f zero = {};
    const float dy = q.y - y;
    const v8f dx = q.x - centres;
    const v8f sigma = (q.ha * dx + q.cb * dy) * dx + q.hc * dy * dy;
    return sigma >= 0.f ? vexp_neg<Fma>(-sigma) : zero;
}

// One compositing step of Gaussian q (falloff e) over the 8 pixels of h: hr_blend_step per
// lane, branch-free. A skipped lane (alpha < 1/255, or its pixel saturated) takes alpha 0: it
// keeps its T and adds nothing; T > HR_T_MIN always holds, so only a blending lane can end.
template <bool WithDepth, bool Save>
HR_INLINE void composite_step(const BlendRecord &q, v8f e, HalfRow &h, int entry) {
    const v8f zero = {};
    const v8f amax = zero + HR_ALPHA_MAX;
    const v8f a0 = q.opacity * e;
    const v8f a1 = a0 < amax ? a0 : amax;
    const v8f a = a1 >= HR_ALPHA_MIN ? a1 : zero;
    // the carried dependency is T alone: liveness masks the update, not alpha
    const v8f nT = h.T * (1.f - a);
    const v8i fin = nT <= HR_T_MIN;
    const v8i upd = h.live & ~fin;
    const v8f vis = upd ? a * h.T : zero;
    h.Cr += q.r * vis;
    h.Cg += q.g * vis;
    h.Cb += q.b * vis;
    if (WithDepth) h.D += q.depth * vis;
    h.T = upd ? nT : h.T;
    h.live &= ~fin;
    if (Save) h.last = (upd & (a > zero)) ? v8i{} + (entry + 1) : h.last;
}

// The Gaussians of one 32-bit word x of a half row's bit set (tile list entries list[bit]), in
// two passes: their falloffs first, then the compositing. A step of one pass does not wait for
// the step before it (the falloffs are independent; the compositing carries only T), so the
// CPU overlaps consecutive steps; fused into one, each step's ~60-cycle chain from record to
// T kept only ~3 steps in flight (~35 cycles a step on the benchmark head, now ~22).
template <bool WithDepth, bool Fma, bool Save>
HR_INLINE void blend_word(const BlendRecord *rec, const uint64_t *list, uint32_t x, HalfRow &h,
                          int entry0) {
    v8f falloff[32];
    const BlendRecord *q[32];
    int entry[32];
    int k = 0;
    for (; x; x &= x - 1, ++k) {
        if (Save) entry[k] = entry0 + __builtin_ctz(x);
        q[k] = rec + (uint32_t)list[__builtin_ctz(x)];
        falloff[k] = half_row_falloff<Fma>(*q[k], h.centres, h.y);
    }
    for (int i = 0; i < k; ++i)
        composite_step<WithDepth, Save>(*q[i], falloff[i], h, Save ? entry[i] : 0);
}

template <bool WithDepth>
HR_INLINE void store_half_row(const HalfRow &h, int64_t pix0, int w8, float *out_rgb,
                              float *out_alpha, float *out_depth) {
    const v8f a = 1.f - h.T;
    if (w8 == 8) {  // a whole half row: RGB interleaved by shuffles, vector stores
        const v8f rg0 = __builtin_shufflevector(h.Cr, h.Cg, 0, 8, 0, 1, 9, 1, 2, 10);
        const v8f rg1 = __builtin_shufflevector(h.Cr, h.Cg, 2, 3, 11, 3, 4, 12, 4, 5);
        const v8f rg2 = __builtin_shufflevector(h.Cr, h.Cg, 13, 5, 6, 14, 6, 7, 15, 7);
        float *o = out_rgb + 3 * pix0;
        const v8f o0 = __builtin_shufflevector(rg0, h.Cb, 0, 1, 8, 3, 4, 9, 6, 7);
        const v8f o1 = __builtin_shufflevector(rg1, h.Cb, 10, 1, 2, 11, 4, 5, 12, 7);
        const v8f o2 = __builtin_shufflevector(rg2, h.Cb, 0, 13, 2, 3, 14, 5, 6, 15);
        __builtin_memcpy(o, &o0, sizeof(v8f));
        __builtin_memcpy(o + 8, &o1, sizeof(v8f));
        __builtin_memcpy(o + 16, &o2, sizeof(v8f));
        __builtin_memcpy(out_alpha + pix0, &a, sizeof(v8f));
    } else {
        for (int i = 0; i < w8; ++i) {
            const int64_t pix = pix0 + i;
            out_rgb[3 * pix] = h.Cr[i];
            out_rgb[3 * pix + 1] = h.Cg[i];
            out_rgb[3 * pix + 2] = h.Cb[i];
            out_alpha[pix] = a[i];
        }
    }
    if (WithDepth)
        for (int i = 0; i < w8; ++i) out_depth[pix0 + i] = h.D[i] / fmaxf(a[i], 1e-10f);
}

// One tile: the half rows each of its Gaussians reaches (footprints: a bit set of Gaussians per
// half row), then each half row blended over its own Gaussians front to
// back, which keeps its colour and transmittance in registers and ends it once its pixels
// saturate.
template <bool WithDepth, bool Fma, bool Save>
HR_INLINE void blend_tile(int t, const BlendRecord *rec, int width, int height, int tiles_x,
                          const int *tile_offsets, const uint64_t *keys, uint32_t *scratch,
                          int64_t cap, float *out_rgb, float *out_alpha, float *out_depth,
                          float *out_T, int *out_last) {
    const int tx0 = (t % tiles_x) * HR_TILE, ty0 = (t / tiles_x) * HR_TILE;
    const int begin = tile_offsets[t], n = tile_offsets[t + 1] - begin;
    const uint64_t *list = keys + begin;  // front to back; low 32 bits: the Gaussian
    const int w = std::min(HR_TILE, width - tx0), h = std::min(HR_TILE, height - ty0);
    uint32_t inside = 0;  // half rows with a pixel inside the image
    for (int j = 0; j < HALVES; ++j)
        if (half_row(j) < h && half_col(j) < w) inside |= 1u << j;
    uint32_t *bits = scratch;
    const int64_t words = mask_words(cap);
    for (int j = 0; j < HALVES; ++j)
        for (int64_t wd = 0; wd * 32 < n; ++wd) bits[j * words + wd] = 0;
    for (int s = 0; s < n; s += 8) {
        for (int l = s + 16; l < std::min(s + 24, n); ++l)  // random gathers, 2 groups ahead
            __builtin_prefetch(rec + (uint32_t)list[l]);
        footprints(rec, list, s, n, (float)tx0, (float)ty0, inside, bits, words);
    }
    const v8f lane = {0.5f, 1.5f, 2.5f, 3.5f, 4.5f, 5.5f, 6.5f, 7.5f};
    const v8f zero = {};
    for (int j = 0; j < HALVES; ++j) {
        if (!(inside >> j & 1)) continue;
        const int row = ty0 + half_row(j), col = tx0 + half_col(j);
        const int w8 = std::min(8, width - col);
        HalfRow hr;
        hr.T = zero + 1.f;
        hr.Cr = hr.Cg = hr.Cb = hr.D = zero;
        hr.last = v8i{};
        for (int i = 0; i < 8; ++i) hr.live[i] = i < w8 ? -1 : 0;
        hr.centres = lane + (float)col;
        hr.y = (float)row + 0.5f;
        const uint32_t *mine = bits + j * words;
        // front to back over the set bits, 32 at a time; ends after the word in which the half
        // row's last pixel saturates
        for (int64_t wd = 0; wd * 32 < n && any_lane(hr.live); ++wd)
            blend_word<WithDepth, Fma, Save>(rec, list + wd * 32, mine[wd], hr, (int)wd * 32);
        store_half_row<WithDepth>(hr, (int64_t)row * width + col, w8, out_rgb, out_alpha,
                                  out_depth);
        if (Save)
            for (int i = 0; i < w8; ++i) {
                const int64_t pix = (int64_t)row * width + col + i;
                out_T[pix] = hr.T[i];
                out_last[pix] = hr.last[i];
            }
    }
}

// The tiles of rect, split over the threads. Compiled twice (the OpenMP region is outlined with
// the target of the function it is written in, so each form spells it out): for AVX2 + FMA and
// for baseline x86-64; hr_cpu_blend picks one per CPU.
#define HR_BLEND_TILES(FMA)                                                                     \
    const int tiles_x = (width + HR_TILE - 1) / HR_TILE;                                        \
    const int rw = std::max(0, rect[2] - rect[0]), rh = std::max(0, rect[3] - rect[1]);         \
    _Pragma("omp parallel num_threads(pick_threads(threads))") {                                \
        uint32_t *mine = reinterpret_cast<uint32_t *>(                                          \
            static_cast<char *>(scratch) +                                                      \
            omp_get_thread_num() * scratch_bytes(scratch_per_thread));                          \
        _Pragma("omp for schedule(dynamic, 1)") for (int k = 0; k < rw * rh; ++k) {             \
            const int t = (rect[1] + k / rw) * tiles_x + rect[0] + k % rw;                      \
            if (draw && !draw[t]) continue;                                                     \
            if (out_T)                                                                          \
                blend_tile<false, FMA, true>(t, rec, width, height, tiles_x, tile_offsets,      \
                                             keys, mine, scratch_per_thread, out_rgb,           \
                                             out_alpha, nullptr, out_T, out_last);              \
            else if (out_depth)                                                                 \
                blend_tile<true, FMA, false>(t, rec, width, height, tiles_x, tile_offsets,      \
                                             keys, mine, scratch_per_thread, out_rgb,           \
                                             out_alpha, out_depth, nullptr, nullptr);           \
            else                                                                                \
                blend_tile<false, FMA, false>(t, rec, width, height, tiles_x, tile_offsets,     \
                                              keys, mine, scratch_per_thread, out_rgb,          \
                                              out_alpha, nullptr, nullptr, nullptr);            \
        }                                                                                       \
    }

__attribute__((target("arch=x86-64-v3")))
void blend_tiles_fma(const BlendRecord *rec, int width, int height, const int *rect,
                     const int *tile_offsets, const uint64_t *keys, void *scratch,
                     int64_t scratch_per_thread, float *out_rgb, float *out_alpha,
                     float *out_depth, float *out_T, int *out_last, const uint8_t *draw,
                     int threads) {
    HR_BLEND_TILES(true)
}

void blend_tiles_base(const BlendRecord *rec, int width, int height, const int *rect,
                      const int *tile_offsets, const uint64_t *keys, void *scratch,
                      int64_t scratch_per_thread, float *out_rgb, float *out_alpha,
                      float *out_depth, float *out_T, int *out_last, const uint8_t *draw,
                      int threads) {
    HR_BLEND_TILES(false)
}

}  // namespace

// e^v on 8 lanes for the backward (hr_blend_step_vjp): the blend's own vectorised exp (see
// vexp_neg; within 2 ulp of expf for v <= 0, the only lanes whose value is used).
HR_INLINE v8f hr_exp(v8f v) { return vexp_neg<false>(v); }

// Whether the AVX2+FMA clones may run: asked of the CPU once; never in the baseline-ISA build.
static bool cpu_has_avx2_fma() {
#ifdef HR_BASELINE_ISA
    return false;
#else
    static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return yes;
#endif
}

// Blend every tile of rect front to back (only those draw [tiles] marks, when it is not null).
// Writes un-composited colour sum(c * alpha * T) [H,W,3], alpha = 1 - T [H,W] and, when
// out_depth is not null, the expected depth sum(z * alpha * T) / alpha [H,W] for the pixels of
// those tiles; other pixels are untouched. scratch: threads x
// hr_cpu_blend_scratch_bytes(scratch_per_thread) bytes, scratch_per_thread >= the longest list.
HR_EXPORT void hr_cpu_blend(const void *records, int width, int height, const int *rect,
                            const int *tile_offsets, const uint64_t *keys, void *scratch,
                            int64_t scratch_per_thread, float *out_rgb, float *out_alpha,
                            float *out_depth, const uint8_t *draw, int threads) {
    const bool fma = cpu_has_avx2_fma();
    (fma ? blend_tiles_fma : blend_tiles_base)(static_cast<const BlendRecord *>(records), width,
                                               height, rect, tile_offsets, keys, scratch,
                                               scratch_per_thread, out_rgb, out_alpha,
                                               out_depth, nullptr, nullptr, draw, threads);
}

// hr_cpu_blend for training: also writes each pixel's final transmittance out_T [H,W] and
// out_last [H,W], the number of its tile's list entries up to and including its last
// contributing Gaussian (as hr_blend_save_kernel), which hr_cpu_blend_backward starts from.
HR_EXPORT void hr_cpu_blend_save(const void *records, int width, int height, const int *rect,
                                 const int *tile_offsets, const uint64_t *keys, void *scratch,
                                 int64_t scratch_per_thread, float *out_rgb, float *out_alpha,
                                 float *out_T, int *out_last, int threads) {
    const bool fma = cpu_has_avx2_fma();
    (fma ? blend_tiles_fma : blend_tiles_base)(static_cast<const BlendRecord *>(records), width,
                                               height, rect, tile_offsets, keys, scratch,
                                               scratch_per_thread, out_rgb, out_alpha, nullptr,
                                               out_T, out_last, nullptr, threads);
}

HR_EXPORT int64_t hr_cpu_blend_scratch_bytes(int64_t per_thread) {
    return scratch_bytes(per_thread);
}

HR_EXPORT int hr_cpu_visible_size() { return (int)sizeof(Visible); }

HR_EXPORT int hr_cpu_record_size() { return (int)sizeof(BlendRecord); }

namespace {

// n pixels of one row: out = rgb + (1 - alpha) * bg; bg from an image row (Image) or a colour.
// Clamps are compares, not fminf/fmaxf (a libm call per value without finite math).
template <bool Image>
HR_INLINE void composite_row(const float *rgb, const float *alpha, const float *bg, int n,
                             float *out_f32, uint8_t *out_u8) {
    for (int i = 0; i < n; ++i) {
        const float T = 1.f - alpha[i];
        for (int c = 0; c < 3; ++c) {
            float v = rgb[3 * i + c] + T * (Image ? bg[3 * i + c] : bg[c]);
            if (out_f32) out_f32[3 * i + c] = v;
            if (out_u8) {
                v = v > 0.f ? v : 0.f;  // NaN -> 0, as fminf(fmaxf(v, 0), 1)
                v = v < 1.f ? v : 1.f;
                out_u8[3 * i + c] = (uint8_t)(v * 255.f + 0.5f);
            }
        }
    }
}

}  // namespace

// Composite over a background and write the pixels [x0, x1) x [y0, y1):
// out = rgb + (1 - alpha) * bg, with bg an [H,W,3] image or, when bg_image is null, the colour
// bg_color[3]. out_f32 [H,W,3] (may alias rgb) and/or out_u8 [H,W,3] (round(clip(v) * 255)).
HR_CLONES void hr_cpu_composite_impl(const float *rgb, const float *alpha, const float *bg_image,
                                     const float *bg_color, int width, int x0, int y0, int x1,
                                     int y1, float *out_f32, uint8_t *out_u8, int threads) {
    const int n = x1 - x0;
    if (n <= 0) return;
#pragma omp parallel for num_threads(pick_threads(threads)) schedule(static)
    for (int y = y0; y < y1; ++y) {
        const int64_t p = (int64_t)y * width + x0;
        float *f = out_f32 ? out_f32 + 3 * p : nullptr;
        uint8_t *u = out_u8 ? out_u8 + 3 * p : nullptr;
        if (bg_image)
            composite_row<true>(rgb + 3 * p, alpha + p, bg_image + 3 * p, n, f, u);
        else
            composite_row<false>(rgb + 3 * p, alpha + p, bg_color, n, f, u);
    }
}

HR_EXPORT void hr_cpu_composite(const float *rgb, const float *alpha, const float *bg_image,
                                const float *bg_color, int width, int x0, int y0, int x1, int y1,
                                float *out_f32, uint8_t *out_u8, int threads) {
    hr_cpu_composite_impl(rgb, alpha, bg_image, bg_color, width, x0, y0, x1, y1, out_f32, out_u8,
                          threads);
}

namespace {

// A tile-list entry as the backward reads it, gathered once per tile: the projected Gaussian,
// its colour and tau = ln(255 opacity) + 1e-3, beyond which sigma gives alpha < 1/255 for sure
// (1e-3 covers the float error of expf and logf), so most skipped pairs cost no expf.
struct BackwardEntry {
    HrProjected p;
    float rgb[3];
    float tau;
    uint32_t g;
};

// Per-thread scratch of the blend backward: the tile's entries and their gradient sums.
struct BackwardScratch {
    std::vector<BackwardEntry> entries;
    std::vector<float> sums;  // [entries][HR_V2D][8], a lane per pixel column of a half row
};

// 8 lanes at any float's address (std::vector's storage is not 32-byte aligned)
typedef float v8f_unaligned __attribute__((vector_size(32), aligned(4)));

// The backward pass of one tile, 8 pixels (a half row) at a time: the half row walks the tile
// list back to front from its pixels' furthest last contributing entry, each pixel (lane)
// active up to its own (hr_blend_step_vjp on 8 lanes, the math of hr_blend_backward_kernel).
// Pair gradients are summed per list entry in lanes, then over lanes (double) into their
// Gaussians' rows of acc [N][HR_V2D] (the thread's own).
HR_INLINE void blend_backward_tile(int t, const HrProjected *proj, const float *rgb, int width,
                                   int height, int tiles_x, const int *tile_offsets,
                                   const uint64_t *keys, const float *final_T,
                                   const int *last_entry, const float *v_rgb, const float *v_T,
                                   BackwardScratch &scratch, double *acc) {
    const int tx0 = (t % tiles_x) * HR_TILE, ty0 = (t / tiles_x) * HR_TILE;
    const uint64_t *list = keys + tile_offsets[t];
    const int x1 = std::min(tx0 + HR_TILE, width), y1 = std::min(ty0 + HR_TILE, height);
    int m = 0;
    for (int y = ty0; y < y1; ++y)
        for (int x = tx0; x < x1; ++x) m = std::max(m, last_entry[(int64_t)y * width + x]);
    if (m == 0) return;
    std::vector<BackwardEntry> &ent = scratch.entries;
    ent.resize(m);
    scratch.sums.assign((size_t)m * HR_V2D * 8, 0.f);
    v8f_unaligned *sums = reinterpret_cast<v8f_unaligned *>(scratch.sums.data());
    for (int k = 0; k < m; ++k) {
        const uint32_t g = (uint32_t)list[k];
        BackwardEntry &e = ent[k];
        e.p = proj[g];
        for (int c = 0; c < 3; ++c) e.rgb[c] = rgb[3 * (int64_t)g + c];
        e.tau = logf(e.p.opacity / HR_ALPHA_MIN) + 1e-3f;
        e.g = g;
    }
    const v8f lane = {0.5f, 1.5f, 2.5f, 3.5f, 4.5f, 5.5f, 6.5f, 7.5f};
    const v8f zero = {};
    for (int y = ty0; y < y1; ++y)
        for (int x0 = tx0; x0 < x1; x0 += 8) {
            const int64_t pix0 = (int64_t)y * width + x0;
            const int w8 = std::min(8, x1 - x0);
            v8i last = {};
            v8f T = zero + 1.f, vT = zero, vC[3] = {zero, zero, zero};
            int top = 0;  // the half row's furthest last entry
            for (int l = 0; l < w8; ++l) {
                last[l] = last_entry[pix0 + l];
                T[l] = final_T[pix0 + l];
                vT[l] = v_T[pix0 + l];
                for (int c = 0; c < 3; ++c) vC[c][l] = v_rgb[3 * (pix0 + l) + c];
                top = std::max(top, last[l]);
            }
            const v8f T_final = T, px = lane + (float)x0;
            const float py = (float)y + 0.5f;
            v8f S[3] = {zero, zero, zero};
            for (int k = top - 1; k >= 0; --k) {
                const BackwardEntry &e = ent[k];
                const v8i active = last > k;
                // skip the entry when no active pixel is in its footprint (alpha < 1/255
                // for sure beyond tau): most entries of a tile list, at no exp
                const v8f sigma = hr_sigma_at(e.p, px, py);
                if (!lane_bits(active & (sigma >= 0.f) & (sigma <= e.tau))) continue;
                v8f v[HR_V2D];
                hr_blend_step_vjp(e.p, e.rgb, px, py, vC, vT, T_final, T, S, v, active);
                v8f_unaligned *a = sums + (int64_t)k * HR_V2D;
                for (int c = 0; c < HR_V2D; ++c) a[c] += v[c];
            }
        }
    for (int k = 0; k < m; ++k) {
        double *a = acc + (int64_t)ent[k].g * HR_V2D;
        const v8f_unaligned *s = sums + (int64_t)k * HR_V2D;
        for (int c = 0; c < HR_V2D; ++c) {
            double sum = 0.0;
            for (int l = 0; l < 8; ++l) sum += s[c][l];
            a[c] += sum;
        }
    }
}

}  // namespace

// The blend backward's parallel region, compiled for AVX2 + FMA and for baseline x86-64 (as
// HR_BLEND_TILES; hr_cpu_blend_backward picks one per CPU).
#define HR_BLEND_BACKWARD_TILES                                                                 \
    const int tiles_x = (width + HR_TILE - 1) / HR_TILE;                                        \
    const int rw = std::max(0, rect[2] - rect[0]), rh = std::max(0, rect[3] - rect[1]);         \
    const int64_t rows = (int64_t)n * HR_V2D;                                                   \
    double *acc_all = static_cast<double *>(scratch);                                           \
    _Pragma("omp parallel num_threads(threads)") {                                              \
        const int tid = omp_get_thread_num(), used = omp_get_num_threads();                     \
        double *acc = acc_all + tid * rows;                                                     \
        std::memset(acc, 0, sizeof(double) * rows);                                             \
        BackwardScratch mine;                                                                   \
        /* tiles dealt round-robin: balanced (a face's tiles cost far more than the             \
           background's) and deterministic, unlike a dynamic schedule */                        \
        _Pragma("omp for schedule(static, 1)") for (int k = 0; k < rw * rh; ++k) {              \
            const int t = (rect[1] + k / rw) * tiles_x + rect[0] + k % rw;                      \
            blend_backward_tile(t, proj, rgb, width, height, tiles_x, tile_offsets, keys,       \
                                final_T, last_entry, v_rgb, v_T, mine, acc);                    \
        }                                                                                       \
        _Pragma("omp for schedule(static)") for (int64_t j = 0; j < rows; ++j) {                \
            double sum = 0.0;                                                                   \
            for (int u = 0; u < used; ++u) sum += acc_all[u * rows + j];                        \
            v2d[j] = (float)sum;                                                                \
        }                                                                                       \
    }

namespace {

#define HR_BLEND_BACKWARD_ARGS                                                                  \
    int n, const HrProjected *proj, const float *rgb, int width, int height, const int *rect,  \
        const int *tile_offsets, const uint64_t *keys, const float *final_T,                    \
        const int *last_entry, const float *v_rgb, const float *v_T, void *scratch,             \
        float *v2d, int threads

__attribute__((target("arch=x86-64-v3"))) void blend_backward_avx2(HR_BLEND_BACKWARD_ARGS) {
    HR_BLEND_BACKWARD_TILES
}

void blend_backward_base(HR_BLEND_BACKWARD_ARGS) { HR_BLEND_BACKWARD_TILES }

}  // namespace

// Backward of hr_cpu_blend_save over the tiles of rect (the lists of the forward's bin_sort):
// v_rgb [H,W,3] = dL/d(un-composited colour), v_T [H,W] = dL/d(final transmittance), final_T
// and last_entry from hr_cpu_blend_save -> v2d [n, HR_V2D] (dL/d 2D mean, conic, opacity,
// colour per Gaussian; written). Each thread adds into its own rows of scratch
// (threads x n x HR_V2D doubles, hr_cpu_backward_scratch_bytes) over a static share of the
// tiles (round-robin); the shares are summed in thread order, so a run is deterministic for a
// thread count.
HR_EXPORT void hr_cpu_blend_backward(HR_BLEND_BACKWARD_ARGS) {
    const bool avx2 = cpu_has_avx2_fma();
    threads = pick_threads(threads);
    (avx2 ? blend_backward_avx2 : blend_backward_base)(n, proj, rgb, width, height, rect,
                                                       tile_offsets, keys, final_T, last_entry,
                                                       v_rgb, v_T, scratch, v2d, threads);
}

HR_EXPORT int64_t hr_cpu_backward_scratch_bytes(int n, int threads) {
    return (int64_t)sizeof(double) * pick_threads(threads) * n * HR_V2D;
}

// Backward of hr_cpu_project (hr_project_gaussian_vjp per Gaussian): v2d [n, HR_V2D] -> v_means
// [n,3], v_quats [n,4], v_log_scales [n,3], v_opacity_logits [n], v_sh [n,(d+1)^2,3]
// (written). Densification statistics (nullable): grad_norm_sum [n] += |dL/d 2D mean|,
// visible_count [n] += 1 where the Gaussian is visible.
HR_EXPORT void hr_cpu_project_backward(int n, const float *means, const float *quats,
                                       const float *log_scales, const float *opacity_logits,
                                       const float *sh, int sh_degree, int scale_activation,
                                       const float *cam_params, const float *v2d,
                                       float *v_means, float *v_quats, float *v_log_scales,
                                       float *v_opacity_logits, float *v_sh,
                                       float *grad_norm_sum, int *visible_count, int threads) {
    const HrCamera cam = hr_camera_from_params(cam_params);
#pragma omp parallel for num_threads(pick_threads(threads)) schedule(static)
    for (int i = 0; i < n; ++i) {
        bool visible;
        const float norm = hr_project_gaussian_vjp(
            i, means, quats, log_scales, opacity_logits, sh, sh_degree, scale_activation, cam,
            v2d + (int64_t)i * HR_V2D, v_means, v_quats, v_log_scales, v_opacity_logits, v_sh,
            visible);
        if (grad_norm_sum) grad_norm_sum[i] += norm;
        if (visible_count && visible) visible_count[i] += 1;
    }
}
