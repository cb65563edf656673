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
HR_HD float hr_exp(float v) { return expf(v); }
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

// The camera-frame covariance R cw R^T of a world covariance cw (row-major 3x3), the same
// arithmetic for the projection and its VJP (which recomputes the forward).
template <class F>
HR_HD void hr_camera_covar(const HrCamera &cam, const F cw[9], F cc[9]) {
    F RC[9];
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 3; ++c)
            RC[r * 3 + c] = cam.R[r * 3 + 0] * cw[0 * 3 + c] + cam.R[r * 3 + 1] * cw[1 * 3 + c] +
                            cam.R[r * 3 + 2] * cw[2 * 3 + c];
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 3; ++c)
            cc[r * 3 + c] = RC[r * 3 + 0] * cam.R[c * 3 + 0] + RC[r * 3 + 1] * cam.R[c * 3 + 1] +
                            RC[r * 3 + 2] * cam.R[c * 3 + 2];
}

// From a camera-frame mean mc and the activated quat/scale: the camera covariance cc, the 2D
// mean m2 and the screen covariance cov2d with its low-pass dilation (eps2d). One sequence for
// the projection and its VJP, which recomputes it.
template <class F>
HR_HD void hr_screen_covar(const HrCamera &cam, const F mc[3], const F quat[4], const F scale[3],
                           F cc[9], F cov2d[3], F m2[2]) {
    F cw[9];
    hr_quat_scale_to_covar(quat, scale, cw);
    hr_camera_covar(cam, cw, cc);
    hr_persp_proj(cam, mc, cc, cov2d, m2);
    cov2d[0] += HR_EPS2D;
    cov2d[2] += HR_EPS2D;
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
    F cc[9], cov2d[3], m2[2];
    hr_screen_covar(cam, mc, quat, scale, cc, cov2d, m2);
    // invert the dilated cov2d
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

// alpha of one Gaussian at one pixel from its falloff e = expf(-sigma); 0 when it is skipped
// (sigma < 0 or alpha < 1/255).
HR_HD float hr_alpha_of(float opacity, float sigma, float e) {
    float a = fminf(HR_ALPHA_MAX, opacity * e);
    return (sigma < 0.f || a < HR_ALPHA_MIN) ? 0.f : a;
}

// alpha of one Gaussian at one pixel; 0 when it is skipped (sigma < 0 or alpha < 1/255).
HR_HD float hr_alpha(float opacity, float sigma) {
    return hr_alpha_of(opacity, sigma, expf(-sigma));
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

// ---------------------------------------------------------------------------------------------
// Backward pass (vector-Jacobian products), beside the forward above. Plain float, one Gaussian
// (or one pixel-Gaussian pair) a call: the CPU backend, the CUDA kernels and the emulation all
// call these. Gradients of the discrete decisions (culling, the 1/255 skip, the T stop, the
// bounding box) are zero, as in gsplat; so is the gradient through the 0.999 alpha clamp and
// through max(colour, 0).

// Per-Gaussian screen-space gradient record written by the blend backward: dL/d of the 2D
// mean (x, y), the conic (ca, cb, cc), the activated opacity and the colour (r, g, b).
#define HR_V2D 9

// hr_sigma at pixel centres (px, py) with px of type F: one pixel (float) or, in the CPU
// backend, the 8 pixel centres of a half row (the same operations per lane as hr_sigma).
template <class F>
HR_HD F hr_sigma_at(const HrProjected &p, F px, float py) {
    F dx = p.x - px;
    float dy = p.y - py;
    return 0.5f * (p.ca * dx * dx + p.cc * dy * dy) + p.cb * dx * dy;
}

// One back-to-front step of a pixel's blend (the reverse of hr_blend_step over the Gaussians
// that contributed), for one pixel (F = float) or 8 pixels of a row (F = 8 lanes, selects
// instead of branches). State: T, the transmittance after this Gaussian (start: the pixel's
// final T), becomes the one before it; S[3], the colour of the Gaussians behind it, gains its
// own. v_C: dL/d(un-composited colour) of the pixel; v_T: dL/d(final T), T_final: the final T.
// active: the pixel's list reaches this entry (at or before its last contributing one).
// Writes this pair's v2d[HR_V2D] (dL/d 2D mean, conic, opacity, colour; 0 where skipped) and
// returns the mask of the pixels where the Gaussian contributed (alpha > 0).
template <class F, class M>
HR_HD auto hr_blend_step_vjp(const HrProjected &p, const float rgb[3], F px, float py,
                             const F v_C[3], F v_T, F T_final, F &T, F S[3], F v2d[HR_V2D],
                             M active) {
    const F zero = hr_splat<F>(0.f);
    const F sigma = hr_sigma_at(p, px, py);
    const F e = hr_exp(-sigma);
    const F a0 = hr_min(p.opacity * e, HR_ALPHA_MAX);  // hr_alpha_of, its skips as a mask
    const auto on = active & (sigma >= 0.f) & (a0 >= HR_ALPHA_MIN);
    const F a = hr_select(on, a0, zero);
    const F ra = 1.f / (1.f - a);
    T = T * ra;  // transmittance in front of this Gaussian (unchanged where skipped)
    const F w = a * T;
    // dC/da = c T - S / (1 - a); dT_final/da = -T_final / (1 - a)
    F v_a = -T_final * ra * v_T;
    for (int c = 0; c < 3; ++c) {
        v_a += (rgb[c] * T - S[c] * ra) * v_C[c];
        v2d[6 + c] = w * v_C[c];
        S[c] += rgb[c] * w;
    }
    // alpha = o e^-sigma where not clamped at 0.999 (no gradient through the clamp)
    const F g = hr_select(on & (p.opacity * e < HR_ALPHA_MAX), v_a, zero);
    v2d[5] = g * hr_select(on, e, zero);  // e may be inf where sigma < 0 (skipped)
    const F v_sigma = -g * a;
    const F dx = p.x - px;
    const float dy = p.y - py;
    v2d[0] = v_sigma * (p.ca * dx + p.cb * dy);
    v2d[1] = v_sigma * (p.cc * dy + p.cb * dx);
    v2d[2] = 0.5f * v_sigma * dx * dx;
    v2d[3] = v_sigma * dx * dy;
    v2d[4] = 0.5f * v_sigma * dy * dy;
    return on;
}

// Rotation of a quaternion (wxyz, unit) as in hr_quat_scale_to_covar.
HR_HD void hr_quat_to_rotmat(const float q[4], float R[9]) {
    const float w = q[0], x = q[1], y = q[2], z = q[3];
    R[0] = 1.f - 2.f * (y * y + z * z); R[1] = 2.f * (x * y - w * z); R[2] = 2.f * (x * z + w * y);
    R[3] = 2.f * (x * y + w * z); R[4] = 1.f - 2.f * (x * x + z * z); R[5] = 2.f * (y * z - w * x);
    R[6] = 2.f * (x * z - w * y); R[7] = 2.f * (y * z + w * x); R[8] = 1.f - 2.f * (x * x + y * y);
}

// hr_quat_scale_to_covar's VJP: v_cov (symmetric 3x3, dL/d of each entry) -> v_quat (raw
// quaternion, through its normalisation) and v_scale (activated scales), both written.
HR_HD void hr_quat_scale_to_covar_vjp(const float quat[4], const float s[3], const float v_cov[9],
                                      float v_quat[4], float v_scale[3]) {
    const float qn2 = quat[0] * quat[0] + quat[1] * quat[1] + quat[2] * quat[2] +
                      quat[3] * quat[3];
    const float inv = 1.f / sqrtf(qn2);
    const float q[4] = {quat[0] * inv, quat[1] * inv, quat[2] * inv, quat[3] * inv};
    float R[9];
    hr_quat_to_rotmat(q, R);
    // cov = M M^T with M = R diag(s): v_M = (v_cov + v_cov^T) M
    float V[9];  // dL/dR
    for (int c = 0; c < 3; ++c) v_scale[c] = 0.f;
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 3; ++c) {
            float vm = 0.f;
            for (int k = 0; k < 3; ++k)
                vm += (v_cov[r * 3 + k] + v_cov[k * 3 + r]) * R[k * 3 + c] * s[c];
            V[r * 3 + c] = vm * s[c];
            v_scale[c] += vm * R[r * 3 + c];
        }
    const float w = q[0], x = q[1], y = q[2], z = q[3];
    float vn[4];
    vn[0] = 2.f * (-z * V[1] + y * V[2] + z * V[3] - x * V[5] - y * V[6] + x * V[7]);
    vn[1] = 2.f * (y * V[1] + z * V[2] + y * V[3] - 2.f * x * V[4] - w * V[5] + z * V[6] +
                   w * V[7] - 2.f * x * V[8]);
    vn[2] = 2.f * (-2.f * y * V[0] + x * V[1] + w * V[2] + x * V[3] + z * V[5] - w * V[6] +
                   z * V[7] - 2.f * y * V[8]);
    vn[3] = 2.f * (-2.f * z * V[0] - w * V[1] + x * V[2] + w * V[3] - 2.f * z * V[4] +
                   y * V[5] + x * V[6] + y * V[7]);
    // through q / |q|: (vn - q (q . vn)) / |q|
    const float dot = q[0] * vn[0] + q[1] * vn[1] + q[2] * vn[2] + q[3] * vn[3];
    for (int k = 0; k < 4; ++k) v_quat[k] = (vn[k] - q[k] * dot) * inv;
}

// hr_persp_proj's VJP: v_cov2d (symmetric 2x2 as [a, b, c], dL/d of each matrix entry: b is
// dL/d cov2d[0][1] = dL/d cov2d[1][0]) and v_mean2d -> v_m (camera mean, accumulated) and
// v_C (camera covariance, written). The clamped tangent of the Jacobian passes no gradient to
// x (or y) where it is clamped, but its dependence on z.
HR_HD void hr_persp_proj_vjp(const HrCamera &cam, const float m[3], const float C[9],
                             const float v_cov2d[3], const float v_mean2d[2], float v_m[3],
                             float v_C[9]) {
    const float x = m[0], y = m[1], z = m[2];
    const float tan_fovx = 0.5f * cam.width / cam.fx;
    const float tan_fovy = 0.5f * cam.height / cam.fy;
    const float lim_x_pos = (cam.width - cam.cx) / cam.fx + 0.3f * tan_fovx;
    const float lim_x_neg = cam.cx / cam.fx + 0.3f * tan_fovx;
    const float lim_y_pos = (cam.height - cam.cy) / cam.fy + 0.3f * tan_fovy;
    const float lim_y_neg = cam.cy / cam.fy + 0.3f * tan_fovy;
    const float rz = 1.f / z, rz2 = rz * rz;
    const float tx = z * hr_min(hr_max(x * rz, -lim_x_neg), lim_x_pos);
    const float ty = z * hr_min(hr_max(y * rz, -lim_y_neg), lim_y_pos);
    const float J[6] = {cam.fx * rz, 0.f, -cam.fx * tx * rz2, 0.f, cam.fy * rz, -cam.fy * ty * rz2};
    const float G[4] = {v_cov2d[0], v_cov2d[1], v_cov2d[1], v_cov2d[2]};
    // cov2d = J C J^T: v_C = J^T G J, v_J = 2 G J C (G and C symmetric)
    float GJ[6];
    for (int r = 0; r < 2; ++r)
        for (int c = 0; c < 3; ++c) GJ[r * 3 + c] = G[r * 2] * J[c] + G[r * 2 + 1] * J[3 + c];
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 3; ++c) v_C[r * 3 + c] = J[r] * GJ[c] + J[3 + r] * GJ[3 + c];
    float vJ[6];
    for (int r = 0; r < 2; ++r)
        for (int c = 0; c < 3; ++c)
            vJ[r * 3 + c] = 2.f * (GJ[r * 3] * C[c] + GJ[r * 3 + 1] * C[3 + c] +
                                   GJ[r * 3 + 2] * C[6 + c]);
    const float rz3 = rz2 * rz;
    // mean2d = (fx x / z + cx, fy y / z + cy)
    v_m[0] += cam.fx * rz * v_mean2d[0];
    v_m[1] += cam.fy * rz * v_mean2d[1];
    float v_z = -cam.fx * x * rz2 * v_mean2d[0] - cam.fy * y * rz2 * v_mean2d[1];
    v_z += -cam.fx * rz2 * vJ[0] + 2.f * cam.fx * tx * rz3 * vJ[2] - cam.fy * rz2 * vJ[4] +
           2.f * cam.fy * ty * rz3 * vJ[5];
    const float v_tx = -cam.fx * rz2 * vJ[2], v_ty = -cam.fy * rz2 * vJ[5];
    // tx = x inside the limits, z * limit outside
    if (x * rz > -lim_x_neg && x * rz < lim_x_pos) v_m[0] += v_tx;
    else v_z += v_tx * tx * rz;
    if (y * rz > -lim_y_neg && y * rz < lim_y_pos) v_m[1] += v_ty;
    else v_z += v_ty * ty * rz;
    v_m[2] += v_z;
}

// hr_project's VJP for a visible Gaussian (rx > 0 in the forward): v2d[0..5] (2D mean, conic,
// opacity) -> v_mean (world, accumulated), v_quat (written), v_scale (activated, written),
// v_opacity (written).
HR_HD void hr_project_vjp(const HrCamera &cam, const float mean[3], const float quat[4],
                          const float scale[3], const float v2d[HR_V2D], float v_mean[3],
                          float v_quat[4], float v_scale[3], float &v_opacity) {
    float mc[3];
    hr_world_to_camera(cam, mean, mc);
    float cc[9], cov2d[3], m2[2];
    hr_screen_covar(cam, mc, quat, scale, cc, cov2d, m2);
    const float idet = 1.f / (cov2d[0] * cov2d[2] - cov2d[1] * cov2d[1]);
    // conic Q = inverse of the dilated cov2d: dL/dcov2d = -Q G_Q Q, G_Q the gradient of each
    // matrix entry (the off-diagonal cb is both entries: half its gradient each)
    const float Q[4] = {cov2d[2] * idet, -cov2d[1] * idet, -cov2d[1] * idet, cov2d[0] * idet};
    const float GQ[4] = {v2d[2], 0.5f * v2d[3], 0.5f * v2d[3], v2d[4]};
    float QG[4], GS[4];
    for (int r = 0; r < 2; ++r)
        for (int c = 0; c < 2; ++c) QG[r * 2 + c] = Q[r * 2] * GQ[c] + Q[r * 2 + 1] * GQ[2 + c];
    for (int r = 0; r < 2; ++r)
        for (int c = 0; c < 2; ++c)
            GS[r * 2 + c] = -(QG[r * 2] * Q[c] + QG[r * 2 + 1] * Q[2 + c]);
    const float v_cov2d[3] = {GS[0], 0.5f * (GS[1] + GS[2]), GS[3]};
    float v_mc[3] = {0.f, 0.f, 0.f}, v_cc[9];
    hr_persp_proj_vjp(cam, mc, cc, v_cov2d, v2d, v_mc, v_cc);
    // cc = Rcam cw Rcam^T: v_cw = Rcam^T v_cc Rcam; mc = Rcam mean + t: v_mean = Rcam^T v_mc
    float T1[9], v_cw[9];
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 3; ++c)
            T1[r * 3 + c] = cam.R[0 * 3 + r] * v_cc[0 * 3 + c] + cam.R[1 * 3 + r] * v_cc[1 * 3 + c] +
                            cam.R[2 * 3 + r] * v_cc[2 * 3 + c];
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 3; ++c)
            v_cw[r * 3 + c] = T1[r * 3 + 0] * cam.R[0 * 3 + c] + T1[r * 3 + 1] * cam.R[1 * 3 + c] +
                              T1[r * 3 + 2] * cam.R[2 * 3 + c];
    for (int k = 0; k < 3; ++k)
        v_mean[k] += cam.R[0 * 3 + k] * v_mc[0] + cam.R[1 * 3 + k] * v_mc[1] +
                     cam.R[2 * 3 + k] * v_mc[2];
    hr_quat_scale_to_covar_vjp(quat, scale, v_cw, v_quat, v_scale);
    v_opacity = v2d[5];
}

// hr_sh_color's VJP: v_rgb -> v_sh (row `row` of an [N,(d+1)^2,3] array, written) and the
// view direction's dependence on the mean (v_mean, accumulated). A channel clamped at 0 in the
// forward passes nothing.
HR_HD void hr_sh_color_vjp(int degree, const float *sh, long long row, const float mean[3],
                           const float campos[3], const float v_rgb[3], float *v_sh,
                           float v_mean[3]) {
    const int K3 = (degree + 1) * (degree + 1) * 3;
    const float *coef = sh + row * K3;
    float *vcoef = v_sh + row * K3;
    float rgb[3];
    hr_sh_color(degree, sh, row, mean, campos, rgb);
    float g[3];  // dL/d(SH sum) per channel
    for (int c = 0; c < 3; ++c) g[c] = rgb[c] > 0.f ? v_rgb[c] : 0.f;
    float basis[16], db[16][3];  // basis and d basis / d direction
    basis[0] = 0.28209479177387814f;
    int k = 1;
    float x = 0.f, y = 0.f, z = 0.f, inv = 0.f;
    if (degree > 0) {
        x = mean[0] - campos[0]; y = mean[1] - campos[1]; z = mean[2] - campos[2];
        const float n2 = x * x + y * y + z * z;
        inv = n2 > 0.f ? 1.f / sqrtf(n2) : 0.f;
        x *= inv; y *= inv; z *= inv;
        const float C1 = 0.4886025119029199f;
        basis[1] = -C1 * y; basis[2] = C1 * z; basis[3] = -C1 * x;
        const float d1[3][3] = {{0.f, -C1, 0.f}, {0.f, 0.f, C1}, {-C1, 0.f, 0.f}};
        for (int i = 0; i < 3; ++i)
            for (int j = 0; j < 3; ++j) db[1 + i][j] = d1[i][j];
        k = 4;
        if (degree > 1) {
            const float C2 = 1.0925484305920792f, C3 = 0.31539156525252005f,
                        C4 = 0.5462742152960396f;
            const float xx = x * x, yy = y * y, zz = z * z;
            basis[4] = C2 * x * y; basis[5] = -C2 * y * z; basis[6] = C3 * (2.f * zz - xx - yy);
            basis[7] = -C2 * x * z; basis[8] = C4 * (xx - yy);
            const float d2[5][3] = {{C2 * y, C2 * x, 0.f},
                                    {0.f, -C2 * z, -C2 * y},
                                    {-2.f * C3 * x, -2.f * C3 * y, 4.f * C3 * z},
                                    {-C2 * z, 0.f, -C2 * x},
                                    {2.f * C4 * x, -2.f * C4 * y, 0.f}};
            for (int i = 0; i < 5; ++i)
                for (int j = 0; j < 3; ++j) db[4 + i][j] = d2[i][j];
            k = 9;
            if (degree > 2) {
                const float C5 = 0.5900435899266435f, C6 = 2.890611442640554f,
                            C7 = 0.4570457994644658f, C8 = 0.3731763325901154f,
                            C9 = 1.445305721320277f;
                basis[9] = -C5 * y * (3.f * xx - yy);
                basis[10] = C6 * x * y * z;
                basis[11] = -C7 * y * (4.f * zz - xx - yy);
                basis[12] = C8 * z * (2.f * zz - 3.f * xx - 3.f * yy);
                basis[13] = -C7 * x * (4.f * zz - xx - yy);
                basis[14] = C9 * z * (xx - yy);
                basis[15] = -C5 * x * (xx - 3.f * yy);
                const float d3[7][3] = {
                    {-6.f * C5 * x * y, -3.f * C5 * (xx - yy), 0.f},
                    {C6 * y * z, C6 * x * z, C6 * x * y},
                    {2.f * C7 * x * y, -C7 * (4.f * zz - xx - 3.f * yy), -8.f * C7 * y * z},
                    {-6.f * C8 * x * z, -6.f * C8 * y * z, C8 * (6.f * zz - 3.f * xx - 3.f * yy)},
                    {-C7 * (4.f * zz - 3.f * xx - yy), 2.f * C7 * x * y, -8.f * C7 * x * z},
                    {2.f * C9 * x * z, -2.f * C9 * y * z, C9 * (xx - yy)},
                    {-3.f * C5 * (xx - yy), 6.f * C5 * x * y, 0.f}};
                for (int i = 0; i < 7; ++i)
                    for (int j = 0; j < 3; ++j) db[9 + i][j] = d3[i][j];
                k = 16;
            }
        }
    }
    float v_dir[3] = {0.f, 0.f, 0.f};
    for (int i = 0; i < k; ++i) {
        float gi = 0.f;  // dL/d basis[i]
        for (int c = 0; c < 3; ++c) {
            vcoef[i * 3 + c] = basis[i] * g[c];
            gi += coef[i * 3 + c] * g[c];
        }
        if (i > 0)
            for (int j = 0; j < 3; ++j) v_dir[j] += gi * db[i][j];
    }
    for (int i = k * 3; i < K3; ++i) vcoef[i] = 0.f;
    if (degree > 0) {
        // direction = d / |d|: v_d = (v_dir - dir (dir . v_dir)) / |d|
        const float dot = x * v_dir[0] + y * v_dir[1] + z * v_dir[2];
        v_mean[0] += (v_dir[0] - x * dot) * inv;
        v_mean[1] += (v_dir[1] - y * dot) * inv;
        v_mean[2] += (v_dir[2] - z * dot) * inv;
    }
}

// d activation / d raw for the scale activations of hr_activate_scale.
HR_HD float hr_activate_scale_grad(float v, int activation) {
    if (activation == 0) return expf(v);
    return v > 20.0f ? 1.0f : 1.0f / (1.0f + expf(-v));  // softplus' = sigmoid
}

// The VJP of hr_project_gaussian for Gaussian i of the raw arrays: v2d[HR_V2D] (its blend
// gradients) -> rows i of v_means [N,3], v_quats [N,4], v_log_scales [N,3],
// v_opacity_logits [N], v_sh [N,(d+1)^2,3], all written (zero for a culled Gaussian).
// Returns the norm of dL/d(2D mean), the statistic 3DGS densification accumulates per view
// (0 when culled), and sets visible.
HR_HD float hr_project_gaussian_vjp(long long i, const float *means, const float *quats,
                                    const float *log_scales, const float *opacity_logits,
                                    const float *sh, int sh_degree, int scale_activation,
                                    const HrCamera &cam, const float v2d[HR_V2D],
                                    float *v_means, float *v_quats, float *v_log_scales,
                                    float *v_opacity_logits, float *v_sh, bool &visible) {
    float m[3], q[4], s[3];
    for (int k = 0; k < 3; ++k) m[k] = means[i * 3 + k];
    for (int k = 0; k < 4; ++k) q[k] = quats[i * 4 + k];
    for (int k = 0; k < 3; ++k) s[k] = hr_activate_scale(log_scales[i * 3 + k], scale_activation);
    const float op = hr_sigmoid(opacity_logits[i]);
    HrProjected p;
    hr_project(cam, m, q, s, op, p);
    visible = p.rx > 0 && p.ry > 0;
    float vm[3] = {0.f, 0.f, 0.f}, vq[4] = {0.f, 0.f, 0.f, 0.f}, vs[3] = {0.f, 0.f, 0.f};
    float vo = 0.f;
    const int K3 = (sh_degree + 1) * (sh_degree + 1) * 3;
    if (visible) {
        hr_project_vjp(cam, m, q, s, v2d, vm, vq, vs, vo);
        hr_sh_color_vjp(sh_degree, sh, i, m, cam.campos, v2d + 6, v_sh, vm);
    } else {
        for (int k = 0; k < K3; ++k) v_sh[i * K3 + k] = 0.f;
    }
    for (int k = 0; k < 3; ++k) v_means[i * 3 + k] = vm[k];
    for (int k = 0; k < 4; ++k) v_quats[i * 4 + k] = vq[k];
    for (int k = 0; k < 3; ++k)
        v_log_scales[i * 3 + k] = vs[k] * hr_activate_scale_grad(log_scales[i * 3 + k],
                                                                 scale_activation);
    v_opacity_logits[i] = vo * op * (1.f - op);
    return visible ? sqrtf(v2d[0] * v2d[0] + v2d[1] * v2d[1]) : 0.f;
}
