// Host-device math of the Gaussian rasterizer, written once and compiled three ways: by NVRTC
// (CUDA kernels in raster.cu), by g++ (the CPU backend in cpu/) and by g++ under the CUDA
// emulation shim (kernels/emulation/). Conventions follow gsplat 1.5.3's forward pass
// (ProjectionEWA3DGSFused.cu, IntersectTile.cu, RasterizeToPixels3DGSFwd.cu) so images agree
// pixel for pixel: row-major 4x4 world-to-camera matrix, wxyz quaternions, pixel centres at
// (x + 0.5, y + 0.5), 16x16 tiles.
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define HR_HD __host__ __device__ __forceinline__
#else
#include <cmath>
#define HR_HD inline __attribute__((always_inline))  // also into every target clone
#endif

#define HR_TILE 16
#define HR_BLOCK (HR_TILE * HR_TILE)
#define HR_EPS2D 0.3f
#define HR_ALPHA_MIN (1.0f / 255.0f)
#define HR_ALPHA_MAX 0.999f
#define HR_T_MIN 1e-4f
#define HR_EXTEND_MAX 3.33f

// Camera parameters shared by every projection call (plain floats: one struct for all paths).
struct HrCamera {
    float R[9];    // world-to-camera rotation, row-major
    float t[3];    // world-to-camera translation
    float campos[3];  // camera centre in world space (for SH view directions)
    float fx, fy, cx, cy;
    float near_plane, far_plane;
    int width, height;
};

// One projected Gaussian: everything the binning and blending stages read.
struct HrProjected {
    float x, y;        // pixel-space mean
    float ca, cb, cc;  // conic (inverse 2D covariance): [[ca, cb], [cb, cc]]
    float opacity;     // activated opacity
    float depth;       // camera-space z
    int rx, ry;        // bounding-box radius per axis in pixels; 0 = culled
};

// The per-Gaussian math (activations, projection, colour) is written once for a value type F:
// float on the GPU and in the emulated kernels (one thread per Gaussian) and, in the CPU
// backend, also an 8-lane vector (8 Gaussians per call). cpu/raster_cpu.cpp declares the
// vector overloads of the helpers below before it includes this header. A comparison of F
// gives its mask (bool, or lanes of all ones), masks combine with |, and every decision is a
// select, so the lanes never branch apart; the arithmetic of each lane is the float code's.
HR_HD float hr_select(bool m, float a, float b) { return m ? a : b; }
HR_HD float hr_sqrt(float v) { return sqrtf(v); }
HR_HD float hr_log(float v) { return logf(v); }
HR_HD float hr_ceil(float v) { return ceilf(v); }
HR_HD int hr_to_int(float v) { return (int)v; }
// row `row` of an array with `stride` floats a row (the lanes: rows row .. row + 7)
HR_HD void hr_load(float &out, const float *a, long long row, int stride) {
    out = a[row * stride];
}

// v broadcast to F
template <class F>
HR_HD F hr_splat(float v) {
    return F() + v;
}

// fmaxf(v, lo) / fminf(v, hi) for a non-NaN bound (a NaN v gives the bound, as there), written
// as compares: a host compiler turns fminf/fmaxf into libm calls unless finite math is assumed,
// while these are one instruction everywhere.
template <class F>
HR_HD F hr_max(F v, float lo) {
    return hr_select(v > lo, v, hr_splat<F>(lo));
}
template <class F>
HR_HD F hr_min(F v, float hi) {
    return hr_select(v < hi, v, hr_splat<F>(hi));
}

HR_HD float hr_sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }

// Scale activation: 0 = exp, 1 = softplus (recorded per avatar, never assumed).
HR_HD float hr_activate_scale(float v, int activation) {
    if (activation == 0) return expf(v);
    // softplus, stable for large v
    return v > 20.0f ? v : log1pf(expf(v));
}

// quat (wxyz, any norm) + scale -> world covariance (symmetric 3x3, row-major in cov[9]).
template <class F>
HR_HD void hr_quat_scale_to_covar(const F q[4], const F s[3], F cov[9]) {
    F w = q[0], x = q[1], y = q[2], z = q[3];
    F inv = 1.0f / hr_sqrt(w * w + x * x + y * y + z * z);
    w *= inv; x *= inv; y *= inv; z *= inv;
    F x2 = x * x, y2 = y * y, z2 = z * z;
    F xy = x * y, xz = x * z, yz = y * z;
    F wx = w * x, wy = w * y, wz = w * z;
    F R[9] = {
        1.f - 2.f * (y2 + z2), 2.f * (xy - wz), 2.f * (xz + wy),
        2.f * (xy + wz), 1.f - 2.f * (x2 + z2), 2.f * (yz - wx),
        2.f * (xz - wy), 2.f * (yz + wx), 1.f - 2.f * (x2 + y2)};
    F M[9];  // M = R * diag(s)
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 3; ++c) M[r * 3 + c] = R[r * 3 + c] * s[c];
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 3; ++c)
            cov[r * 3 + c] = M[r * 3 + 0] * M[c * 3 + 0] + M[r * 3 + 1] * M[c * 3 + 1] +
                             M[r * 3 + 2] * M[c * 3 + 2];
}

// world point -> camera point
template <class F>
HR_HD void hr_world_to_camera(const HrCamera &cam, const F p[3], F out[3]) {
    for (int r = 0; r < 3; ++r)
        out[r] = cam.R[r * 3 + 0] * p[0] + cam.R[r * 3 + 1] * p[1] + cam.R[r * 3 + 2] * p[2] +
                 cam.t[r];
}

// Perspective projection of mean and covariance (camera space). The Jacobian uses x/z, y/z
// clamped to the half field of view + 30% (gsplat's persp_proj) so off-screen Gaussians do
// not blow up; the mean itself is projected unclamped.
template <class F>
HR_HD void hr_persp_proj(const HrCamera &cam, const F m[3], const F C[9], F cov2d[3],
                         F mean2d[2]) {
    F x = m[0], y = m[1], z = m[2];
    float tan_fovx = 0.5f * cam.width / cam.fx;
    float tan_fovy = 0.5f * cam.height / cam.fy;
    float lim_x_pos = (cam.width - cam.cx) / cam.fx + 0.3f * tan_fovx;
    float lim_x_neg = cam.cx / cam.fx + 0.3f * tan_fovx;
    float lim_y_pos = (cam.height - cam.cy) / cam.fy + 0.3f * tan_fovy;
    float lim_y_neg = cam.cy / cam.fy + 0.3f * tan_fovy;
    F rz = 1.f / z;
    F rz2 = rz * rz;
    F tx = z * hr_min(hr_max(x * rz, -lim_x_neg), lim_x_pos);
    F ty = z * hr_min(hr_max(y * rz, -lim_y_neg), lim_y_pos);
    // J = [[fx/z, 0, -fx tx/z^2], [0, fy/z, -fy ty/z^2]]
    const F zero = hr_splat<F>(0.f);
    F J0[3] = {cam.fx * rz, zero, -cam.fx * tx * rz2};
    F J1[3] = {zero, cam.fy * rz, -cam.fy * ty * rz2};
    F CJ0[3], CJ1[3];  // C * J^T columns
    for (int r = 0; r < 3; ++r) {
        CJ0[r] = C[r * 3 + 0] * J0[0] + C[r * 3 + 1] * J0[1] + C[r * 3 + 2] * J0[2];
        CJ1[r] = C[r * 3 + 0] * J1[0] + C[r * 3 + 1] * J1[1] + C[r * 3 + 2] * J1[2];
    }
    cov2d[0] = J0[0] * CJ0[0] + J0[1] * CJ0[1] + J0[2] * CJ0[2];
    cov2d[1] = J0[0] * CJ1[0] + J0[1] * CJ1[1] + J0[2] * CJ1[2];
    cov2d[2] = J1[0] * CJ1[0] + J1[1] * CJ1[1] + J1[2] * CJ1[2];
    mean2d[0] = cam.fx * x * rz + cam.cx;
    mean2d[1] = cam.fy * y * rz + cam.cy;
}

// Full EWA projection of one Gaussian (scales and opacity already activated) into out, an
// HrProjected (or its lanes). A culled Gaussian gets rx = ry = 0 (its other fields are
// undefined): outside the depth range, degenerate, too transparent to reach alpha 1/255, or
// with its bounding box off the image. Everything is computed for every Gaussian and the
// culling tests only combine into one mask (see above).
template <class F, class P>
HR_HD void hr_project(const HrCamera &cam, const F mean[3], const F quat[4], const F scale[3],
                      F opacity, P &out) {
    F mc[3];
    hr_world_to_camera(cam, mean, mc);
    auto culled = (mc[2] < cam.near_plane) | (mc[2] > cam.far_plane);
    F cw[9];
    hr_quat_scale_to_covar(quat, scale, cw);
    // camera covariance R cw R^T
    F RC[9], cc[9];
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 3; ++c)
            RC[r * 3 + c] = cam.R[r * 3 + 0] * cw[0 * 3 + c] + cam.R[r * 3 + 1] * cw[1 * 3 + c] +
                            cam.R[r * 3 + 2] * cw[2 * 3 + c];
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 3; ++c)
            cc[r * 3 + c] = RC[r * 3 + 0] * cam.R[c * 3 + 0] + RC[r * 3 + 1] * cam.R[c * 3 + 1] +
                            RC[r * 3 + 2] * cam.R[c * 3 + 2];
    F cov2d[3], m2[2];
    hr_persp_proj(cam, mc, cc, cov2d, m2);
    // low-pass dilation (eps2d), then invert
    cov2d[0] += HR_EPS2D;
    cov2d[2] += HR_EPS2D;
    F det = cov2d[0] * cov2d[2] - cov2d[1] * cov2d[1];
    culled = culled | !(det > 0.f);
    F idet = 1.f / det;
    culled = culled | (opacity < HR_ALPHA_MIN);
    // opacity-aware tight bounding box (arXiv 2402.00525, B.2)
    F extend = hr_min(hr_sqrt(2.0f * hr_log(opacity / HR_ALPHA_MIN)), HR_EXTEND_MAX);
    F rx = hr_ceil(extend * hr_sqrt(cov2d[0]));
    F ry = hr_ceil(extend * hr_sqrt(cov2d[2]));
    culled = culled | ((rx <= 0.f) & (ry <= 0.f));
    culled = culled | (m2[0] + rx <= 0.f) | (m2[0] - rx >= (float)cam.width) |
             (m2[1] + ry <= 0.f) | (m2[1] - ry >= (float)cam.height);
    out.x = m2[0];
    out.y = m2[1];
    out.ca = cov2d[2] * idet;
    out.cb = -cov2d[1] * idet;
    out.cc = cov2d[0] * idet;
    out.opacity = opacity;
    out.depth = mc[2];
    const F zero = hr_splat<F>(0.f);
    out.rx = hr_to_int(hr_select(culled, zero, rx));
    out.ry = hr_to_int(hr_select(culled, zero, ry));
}

// View-dependent colour: max(SH . basis(normalize(mean - campos)) + 0.5, 0) for degree 0..3.
// Row `row` of sh holds the Gaussian's (degree+1)^2 x 3 coefficients (DC first).
template <class F>
HR_HD void hr_sh_color(int degree, const float *sh, long long row, const F mean[3],
                       const float campos[3], F rgb[3]) {
    const int K3 = (degree + 1) * (degree + 1) * 3;
    F basis[16];
    basis[0] = hr_splat<F>(0.28209479177387814f);
    int k = 1;
    if (degree > 0) {
        F x = mean[0] - campos[0], y = mean[1] - campos[1], z = mean[2] - campos[2];
        F n2 = x * x + y * y + z * z;
        F inv = hr_select(n2 > 0.f, 1.f / hr_sqrt(n2), hr_splat<F>(0.f));
        x *= inv; y *= inv; z *= inv;
        const float C1 = 0.4886025119029199f;
        basis[1] = -C1 * y;
        basis[2] = C1 * z;
        basis[3] = -C1 * x;
        k = 4;
        if (degree > 1) {
            F xx = x * x, yy = y * y, zz = z * z, xy = x * y, yz = y * z, xz = x * z;
            basis[4] = 1.0925484305920792f * xy;
            basis[5] = -1.0925484305920792f * yz;
            basis[6] = 0.31539156525252005f * (2.f * zz - xx - yy);
            basis[7] = -1.0925484305920792f * xz;
            basis[8] = 0.5462742152960396f * (xx - yy);
            k = 9;
            if (degree > 2) {
                basis[9] = -0.5900435899266435f * y * (3.f * xx - yy);
                basis[10] = 2.890611442640554f * xy * z;
                basis[11] = -0.4570457994644658f * y * (4.f * zz - xx - yy);
                basis[12] = 0.3731763325901154f * z * (2.f * zz - 3.f * xx - 3.f * yy);
                basis[13] = -0.4570457994644658f * x * (4.f * zz - xx - yy);
                basis[14] = 1.445305721320277f * z * (xx - yy);
                basis[15] = -0.5900435899266435f * x * (xx - 3.f * yy);
                k = 16;
            }
        }
    }
    // the three channels' sums side by side (each in the same order as a loop per channel)
    F v[3];
    for (int c = 0; c < 3; ++c) v[c] = hr_splat<F>(0.f);
    for (int i = 0; i < k; ++i)
        for (int c = 0; c < 3; ++c) {
            F coef;
            hr_load(coef, sh + i * 3 + c, row, K3);
            v[c] += basis[i] * coef;
        }
    for (int c = 0; c < 3; ++c) rgb[c] = hr_max(v[c] + 0.5f, 0.f);
}

// v clamped to [0, tiles], as fminf(fmaxf(v, 0), tiles) (NaN -> 0).
HR_HD int hr_clamp_tile(float v, int tiles) { return (int)hr_min(hr_max(v, 0.f), (float)tiles); }

// Tile range [tx0, tx1) x [ty0, ty1) covered by a projected Gaussian (gsplat's isect_tiles:
// floor/ceil of (mean +- radius) / 16, clamped to the grid). Empty when culled.
HR_HD void hr_tile_bounds(const HrProjected &p, int tiles_x, int tiles_y, int b[4]) {
    if (p.rx <= 0 || p.ry <= 0) {
        b[0] = b[1] = b[2] = b[3] = 0;
        return;
    }
    float tx = p.x / (float)HR_TILE, ty = p.y / (float)HR_TILE;
    float rx = (float)p.rx / (float)HR_TILE, ry = (float)p.ry / (float)HR_TILE;
    // negative lower bounds clamp to 0 (gsplat's unsigned cast saturates there)
    b[0] = hr_clamp_tile(floorf(tx - rx), tiles_x);
    b[1] = hr_clamp_tile(floorf(ty - ry), tiles_y);
    b[2] = hr_clamp_tile(ceilf(tx + rx), tiles_x);
    b[3] = hr_clamp_tile(ceilf(ty + ry), tiles_y);
}

// Gaussian falloff exponent at pixel centre (px, py).
HR_HD float hr_sigma(const HrProjected &p, float px, float py) {
    float dx = p.x - px, dy = p.y - py;
    return 0.5f * (p.ca * dx * dx + p.cc * dy * dy) + p.cb * dx * dy;
}

// alpha of one Gaussian at one pixel; 0 when it is skipped (sigma < 0 or alpha < 1/255).
HR_HD float hr_alpha(float opacity, float sigma) {
    float a = fminf(HR_ALPHA_MAX, opacity * expf(-sigma));
    return (sigma < 0.f || a < HR_ALPHA_MIN) ? 0.f : a;
}

// Sort key within a tile: depth first (positive floats order like their bit patterns), then
// Gaussian index, which is the order gsplat's stable radix sort produces.
HR_HD unsigned long long hr_depth_key(float depth, int id) {
    union { float f; unsigned int u; } v;
    v.f = depth;
    return ((unsigned long long)v.u << 32) | (unsigned long long)(unsigned int)id;
}

// Camera from its flat parameter block (one layout for ctypes, CuPy and the shim):
// [R(9, row-major), t(3), campos(3), fx, fy, cx, cy, near, far, width, height] = 23 floats.
#define HR_CAMERA_PARAMS 23
HR_HD HrCamera hr_camera_from_params(const float *p) {
    HrCamera c;
    for (int i = 0; i < 9; ++i) c.R[i] = p[i];
    for (int i = 0; i < 3; ++i) c.t[i] = p[9 + i];
    for (int i = 0; i < 3; ++i) c.campos[i] = p[12 + i];
    c.fx = p[15]; c.fy = p[16]; c.cx = p[17]; c.cy = p[18];
    c.near_plane = p[19]; c.far_plane = p[20];
    c.width = (int)p[21];
    c.height = (int)p[22];
    return c;
}

// One front-to-back compositing step at one pixel: returns the weight alpha * T of this
// Gaussian's colour (0 when skipped), advances T, and sets done when the pixel saturates
// (exclusive: the saturating Gaussian itself contributes nothing, as in gsplat).
HR_HD float hr_blend_step(float opacity, float sigma, float &T, bool &done) {
    float a = hr_alpha(opacity, sigma);
    if (a == 0.f) return 0.f;
    float next_T = T * (1.f - a);
    if (next_T <= HR_T_MIN) {
        done = true;
        return 0.f;
    }
    float vis = a * T;
    T = next_T;
    return vis;
}

// Project Gaussian i (the lanes: i .. i + 7) of raw (pre-activation) arrays and evaluate its
// colour. means [N,3], quats [N,4] wxyz, log_scales [N,3], opacity_logits [N],
// sh [N,(d+1)^2,3]; out: an HrProjected (or its lanes).
template <class F, class P>
HR_HD void hr_project_gaussian(long long i, const float *means, const float *quats,
                               const float *log_scales, const float *opacity_logits,
                               const float *sh, int sh_degree, int scale_activation,
                               const HrCamera &cam, P &out, F rgb[3]) {
    F m[3], q[4], ls[3], logit;
    for (int k = 0; k < 3; ++k) hr_load(m[k], means + k, i, 3);
    for (int k = 0; k < 4; ++k) hr_load(q[k], quats + k, i, 4);
    for (int k = 0; k < 3; ++k) hr_load(ls[k], log_scales + k, i, 3);
    hr_load(logit, opacity_logits, i, 1);
    F s[3];
    for (int k = 0; k < 3; ++k) s[k] = hr_activate_scale(ls[k], scale_activation);
    F op = hr_sigmoid(logit);
    hr_project(cam, m, q, s, op, out);
    hr_sh_color(sh_degree, sh, i, m, cam.campos, rgb);
}
