"""The procedural demo head: tens of thousands of 3D Gaussians built by code, deterministic by seed.

World axes: x right, y up, z towards the camera (the face looks along +z); units are roughly
decimetres / 2 (the head is about 1 unit tall). Every part is a set of surface splats (flat
Gaussians tangent to a surface) with lighting baked into the SH DC term and a degree-1 SH term
that brightens surfaces facing the viewer (view-dependent colour).

Region ids (``Gaussians.region``): 0 static, 1 jaw skin, 2 lips, 3 mouth interior (lower teeth,
tongue), 4 eyelids. Which Gaussians move is decided by the articulation weights
(export/demo/articulation.py), so ids and motion always agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from huma_rt.gaussians import Camera, Gaussians

REGION_STATIC, REGION_JAW, REGION_LIPS, REGION_MOUTH, REGION_LIDS = 0, 1, 2, 3, 4
REGION_NAMES = {0: "static", 1: "jaw", 2: "lips", 3: "mouth_interior", 4: "lids"}
_PART_CAVITY = 5  # builder-only id: the dark back wall of the mouth never moves

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
LIGHT = np.array([-0.35, 0.45, 0.82])
LIGHT = LIGHT / np.linalg.norm(LIGHT)

# Face landmarks (world units); articulation.py reads the same numbers.
HEAD_CENTER = np.array([0.0, 0.1, 0.0])
HEAD_AXES = np.array([0.36, 0.47, 0.40])
MOUTH_Y = -0.20
MOUTH_HALF_WIDTH = 0.105
EYE_X, EYE_Y = 0.13, 0.12
EYE_RADIUS = 0.052
LID_RADIUS = 0.058
EYE_OPEN_HALF_HEIGHT = 0.024
EYE_OPEN_HALF_WIDTH = 0.05
JAW_HINGE = np.array([0.0, 0.02, -0.06])  # rotation axis of the jaw: x through this point

SKIN = np.array([0.87, 0.66, 0.55])
LIP = np.array([0.74, 0.36, 0.38])
HAIR = np.array([0.20, 0.13, 0.09])
SHIRT = np.array([0.22, 0.34, 0.52])
MOUTH_DARK = np.array([0.16, 0.04, 0.05])
TEETH = np.array([0.93, 0.91, 0.86])
TONGUE = np.array([0.62, 0.26, 0.28])


@dataclass
class HeadSpec:
    """Knobs of the procedural head. ``density`` scales every part's Gaussian count."""

    seed: int = 0
    density: float = 1.0
    image_size: int = 512


@dataclass
class _Part:
    means: np.ndarray  # [n,3]
    normals: np.ndarray  # [n,3] unit
    colour: np.ndarray  # [n,3] albedo in [0,1]
    radius: np.ndarray  # [n] splat radius (tangent scale)
    region: int
    shade: bool = True
    opacity: float = 0.97


def _face_surface(x: np.ndarray, y: np.ndarray, grow: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Front surface z of the head ellipsoid (plus ``grow``) and its normals at (x, y)."""
    a, b, c = HEAD_AXES + grow
    u = (x - HEAD_CENTER[0]) / a
    v = (y - HEAD_CENTER[1]) / b
    w = np.sqrt(np.clip(1.0 - u * u - v * v, 1e-4, None))
    z = HEAD_CENTER[2] + c * w
    n = np.stack([u / a, v / b, w / c], -1)
    return z, n / np.linalg.norm(n, axis=-1, keepdims=True)


def face_z(x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray:
    """z of the skin (ellipsoid + nose) at (x, y): where features sit on the face."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    z, _ = _face_surface(x, y)
    return z + _nose_height(x, y)


def _nose_height(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # a ridge from between the eyes to the tip, widest and highest near the tip
    t = np.clip((0.13 - y) / 0.18, 0.0, 1.0)  # 0 at the bridge, 1 at the tip
    width = 0.018 + 0.03 * t
    height = (0.02 + 0.07 * t**1.5) * np.exp(-((x / width) ** 2))
    return np.where((y > -0.07) & (y < 0.15), height * np.clip((y + 0.07) / 0.03, 0, 1), 0.0)


def _ellipsoid_points(rng, n: int, center, axes, keep) -> tuple[np.ndarray, np.ndarray]:
    """n points uniform-ish on an ellipsoid surface (rejection by ``keep(points)``) + normals."""
    pts, nrm = [], []
    have = 0
    while have < n:
        d = rng.normal(size=(n * 2, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        p = center + d * axes
        g = d / axes
        g /= np.linalg.norm(g, axis=1, keepdims=True)
        m = keep(p)
        pts.append(p[m])
        nrm.append(g[m])
        have += int(m.sum())
    return np.concatenate(pts)[:n], np.concatenate(nrm)[:n]


def _lip_outline(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper-lip top and lower-lip bottom (y) as functions of x; lips meet at MOUTH_Y."""
    s = np.sqrt(np.clip(1.0 - (x / MOUTH_HALF_WIDTH) ** 2, 0.0, 1.0))
    bow = 0.006 * np.exp(-((x / 0.012) ** 2))  # cupid's bow dip in the middle
    top = MOUTH_Y + 0.036 * s**0.8 - bow
    bottom = MOUTH_Y - 0.044 * s**0.9
    return top, bottom


def _in_eye_opening(x: np.ndarray, y: np.ndarray, margin: float = 0.0) -> np.ndarray:
    out = np.zeros(x.shape, bool)
    for ex in (-EYE_X, EYE_X):
        u = (x - ex) / (EYE_OPEN_HALF_WIDTH + margin)
        v = (y - EYE_Y) / (EYE_OPEN_HALF_HEIGHT + margin)
        out |= u * u + v * v < 1.0
    return out


def eye_centers() -> np.ndarray:
    """[2,3] eyeball centres (left, right)."""
    z = face_z(np.array([-EYE_X, EYE_X]), np.array([EYE_Y, EYE_Y])) - 0.032
    return np.stack([[-EYE_X, EYE_Y, z[0]], [EYE_X, EYE_Y, z[1]]])


def _skin(rng, n: int) -> _Part:
    # front of the head: sample (x, y) on the face disc, lift onto the surface
    x = rng.uniform(-HEAD_AXES[0], HEAD_AXES[0], n * 2)
    y = rng.uniform(HEAD_CENTER[1] - HEAD_AXES[1], HEAD_CENTER[1] + HEAD_AXES[1], n * 2)
    u = x / HEAD_AXES[0]
    v = (y - HEAD_CENTER[1]) / HEAD_AXES[1]
    top, bottom = _lip_outline(x)
    keep = (u * u + v * v < 0.985) & ~_in_eye_opening(x, y, 0.002)
    keep &= ~((np.abs(x) < MOUTH_HALF_WIDTH) & (y < top + 0.002) & (y > bottom - 0.002))
    x, y = x[keep][:n], y[keep][:n]
    z, nrm = _face_surface(x, y)
    nose = _nose_height(x, y)
    # nose normals by finite differences of the height field
    e = 1e-3
    dzdx = (_nose_height(x + e, y) - _nose_height(x - e, y)) / (2 * e)
    dzdy = (_nose_height(x, y + e) - _nose_height(x, y - e)) / (2 * e)
    nrm = nrm + np.stack([-dzdx, -dzdy, np.zeros_like(x)], -1) * nrm[:, 2:3]
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    z = z + nose
    colour = np.tile(SKIN, (x.size, 1))
    # rosy cheeks, darker brows
    for cx in (-0.17, 0.17):
        colour += np.exp(-(((x - cx) / 0.06) ** 2 + ((y + 0.06) / 0.05) ** 2))[:, None] * [0.06, -0.05, -0.04]
    for cx in (-EYE_X, EYE_X):
        brow = np.exp(-(((x - cx) / 0.055) ** 4 + ((y - EYE_Y - 0.065 - 0.012 * (1 - ((x - cx) / 0.06) ** 2)) / 0.011) ** 2))
        colour = colour * (1 - 0.75 * brow[:, None]) + brow[:, None] * 0.75 * HAIR
    radius = np.full(x.size, 0.0075)
    return _Part(np.stack([x, y, z], -1), nrm, colour, radius, REGION_STATIC)


def _back_of_head(rng, n: int) -> _Part:
    # the sides and back, so the silhouette is closed; hair covers most of it
    p, nrm = _ellipsoid_points(rng, n, HEAD_CENTER, HEAD_AXES * 0.995, lambda p: p[:, 2] < 0.05)
    return _Part(p, nrm, np.tile(SKIN * 0.95, (n, 1)), np.full(n, 0.011), REGION_STATIC)


def _hair(rng, n: int) -> _Part:
    axes = HEAD_AXES * np.array([1.06, 1.05, 1.07])

    def keep(p):
        x, y, z = p[:, 0], p[:, 1], p[:, 2]
        hairline = 0.33 - 0.22 * (np.abs(x) / axes[0]) ** 2  # fringe higher in the middle
        front = (z > 0.1) & (y > hairline)
        sides = (z <= 0.1) & (y > -0.2 + 0.3 * np.clip(z, 0, 1))
        return front | sides

    p, nrm = _ellipsoid_points(rng, n, HEAD_CENTER + [0, 0.015, -0.01], axes, keep)
    colour = HAIR * (0.8 + 0.4 * rng.random((n, 1)))
    return _Part(p, nrm, colour, np.full(n, 0.012), REGION_STATIC, opacity=0.95)


def _neck_and_shoulders(rng, n: int) -> list[_Part]:
    k = n // 3
    # neck: a vertical cylinder
    th = rng.uniform(-np.pi * 0.75, np.pi * 0.75, k) + np.pi / 2
    y = rng.uniform(-0.66, -0.28, k)
    r = 0.165
    p = np.stack([r * np.cos(th), y, -0.04 + r * np.sin(th)], -1)
    nrm = np.stack([np.cos(th), np.zeros(k), np.sin(th)], -1)
    neck = _Part(p, nrm, np.tile(SKIN * 0.9, (k, 1)), np.full(k, 0.011), REGION_STATIC)
    # shoulders and chest: a wide flattened ellipsoid cut at the bottom of the frame
    m = n - k
    sp, snrm = _ellipsoid_points(rng, m, np.array([0.0, -0.9, -0.05]), np.array([0.8, 0.3, 0.32]),
                                 lambda q: (q[:, 2] > -0.15) & (q[:, 1] > -1.2))
    colour = np.tile(SHIRT, (m, 1))
    collar = np.exp(-((sp[:, 0] / 0.17) ** 2)) * (sp[:, 1] > -0.68)
    colour = colour * (1 - collar[:, None]) + collar[:, None] * SKIN * 0.88
    shoulders = _Part(sp, snrm, colour, np.full(m, 0.021), REGION_STATIC)
    return [neck, shoulders]


def _eyes(rng, n: int) -> list[_Part]:
    parts = []
    for c in eye_centers():
        p, nrm = _ellipsoid_points(rng, n // 2, c, np.full(3, EYE_RADIUS), lambda q, c=c: q[:, 2] > c[2] + 0.01)
        d = (p - c) / EYE_RADIUS
        ang = np.degrees(np.arccos(np.clip(d[:, 2], -1, 1)))  # angle from the gaze direction (+z)
        colour = np.tile([0.94, 0.93, 0.9], (p.shape[0], 1))
        colour[ang < 24] = [0.30, 0.45, 0.32]  # iris
        colour[ang < 11] = [0.03, 0.03, 0.04]  # pupil
        parts.append(_Part(p, nrm, colour, np.full(p.shape[0], 0.0035), REGION_STATIC, shade=False))
    return parts


def _lids(rng, n: int) -> list[_Part]:
    """Upper lids: skin shells just outside the eyeball, open (above the eye) at rest."""
    parts = []
    open_angle = np.degrees(np.arcsin(EYE_OPEN_HALF_HEIGHT / LID_RADIUS))
    for c in eye_centers():
        k = n // 2
        elev = np.radians(rng.uniform(open_angle - 2, 85, k))
        azim = np.radians(rng.uniform(-80, 80, k))
        d = np.stack([np.cos(elev) * np.sin(azim), np.sin(elev), np.cos(elev) * np.cos(azim)], -1)
        p = c + LID_RADIUS * d
        colour = np.tile(SKIN * 0.97, (k, 1))
        edge = np.degrees(elev) < open_angle + 3
        colour[edge] = SKIN * 0.45  # lash line
        parts.append(_Part(p, d, colour, np.full(k, 0.0045), REGION_LIDS))
    return parts


def _lips(rng, n: int) -> _Part:
    x = rng.uniform(-MOUTH_HALF_WIDTH, MOUTH_HALF_WIDTH, n * 2)
    y = rng.uniform(MOUTH_Y - 0.05, MOUTH_Y + 0.04, n * 2)
    top, bottom = _lip_outline(x)
    keep = (y < top) & (y > bottom)
    x, y = x[keep][:n], y[keep][:n]
    top, bottom = top[keep][:n], bottom[keep][:n]
    upper = y >= MOUTH_Y
    # fullness: lips bulge out of the skin, most in the middle of each lip; the upper lip sits
    # slightly in front of the lower one where they meet
    rel = np.where(upper, (y - MOUTH_Y) / np.maximum(top - MOUTH_Y, 1e-3),
                   (MOUTH_Y - y) / np.maximum(MOUTH_Y - bottom, 1e-3))
    bulge = 0.016 * np.sin(np.pi * np.clip(0.15 + 0.85 * rel, 0, 1)) * np.sqrt(1 - (x / MOUTH_HALF_WIDTH) ** 2)
    bulge += np.where(upper, 0.004, 0.0)
    z = face_z(x, y) + bulge
    _, nrm = _face_surface(x, y)
    nrm = nrm.copy()
    nrm[:, 1] += np.where(upper, 1.0, -1.0) * (rel - 0.5) * 0.8  # rounded lip profile
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    colour = np.tile(LIP, (x.size, 1)) * (1.0 - 0.25 * (rel < 0.12)[:, None])  # darker seam
    return _Part(np.stack([x, y, z], -1), nrm, colour, np.full(x.size, 0.0042), REGION_LIPS)


def _mouth_interior(rng, n: int) -> list[_Part]:
    zf = float(face_z(0.0, MOUTH_Y))
    parts = []
    # dark cavity: a curved back wall behind the lips
    k = n // 2
    x = rng.uniform(-0.1, 0.1, k)
    y = rng.uniform(MOUTH_Y - 0.15, MOUTH_Y + 0.035, k)
    z = face_z(x, y) - 0.075 - 0.8 * x**2
    parts.append(_Part(np.stack([x, y, z], -1), np.tile([0, 0, 1.0], (k, 1)),
                       np.tile(MOUTH_DARK, (k, 1)), np.full(k, 0.008), _PART_CAVITY, shade=False))
    # teeth: upper row (static, revealed when the jaw drops) and lower row (moves with the jaw)
    for sign in (1, -1):
        k = n // 6
        x = rng.uniform(-0.075, 0.075, k)
        y = MOUTH_Y + sign * rng.uniform(0.001, 0.022, k)
        z = zf - 0.022 - 1.9 * x**2
        colour = np.tile(TEETH, (k, 1))
        gaps = np.abs(((x + 0.0065) / 0.013) % 1.0 - 0.5) < 0.06
        colour[gaps] *= 0.8
        parts.append(_Part(np.stack([x, y, z], -1), np.tile([0, 0, 1.0], (k, 1)), colour,
                           np.full(k, 0.0035), REGION_MOUTH, shade=False))
    # tongue on the floor of the mouth
    k = n - n // 2 - 2 * (n // 6)
    x = rng.uniform(-0.06, 0.06, k)
    y = MOUTH_Y - 0.035 - 0.3 * x**2 + rng.uniform(-0.008, 0.0, k)
    z = zf - 0.03 - rng.uniform(0.0, 0.04, k)
    parts.append(_Part(np.stack([x, y, z], -1), np.tile([0, 1.0, 0.3], (k, 1)),
                       np.tile(TONGUE, (k, 1)), np.full(k, 0.011), REGION_MOUTH, shade=False))
    return parts


def _quats_from_normals(n: np.ndarray) -> np.ndarray:
    """wxyz quaternions rotating +z onto each normal (a splat's thin axis is its local z)."""
    w = 1.0 + n[:, 2]
    q = np.stack([w, -n[:, 1], n[:, 0], np.zeros(len(n))], -1)
    flip = w < 1e-6  # normal = -z: rotate 180 degrees about x
    q[flip] = [0.0, 1.0, 0.0, 0.0]
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def _assemble(parts: list[_Part], rng) -> Gaussians:
    means = np.concatenate([p.means for p in parts])
    normals = np.concatenate([p.normals for p in parts])
    albedo = np.concatenate([p.colour for p in parts])
    radius = np.concatenate([p.radius for p in parts])
    shade = np.concatenate([np.full(len(p.means), p.shade) for p in parts])
    opacity = np.concatenate([np.full(len(p.means), p.opacity) for p in parts])
    region = np.concatenate([np.full(len(p.means), p.region, np.uint8) for p in parts])
    n = len(means)
    lambert = np.clip(normals @ LIGHT, 0.0, 1.0)
    light = np.where(shade, 0.45 + 0.6 * lambert, 1.0)
    albedo = albedo * (0.96 + 0.08 * rng.random((n, 1)))  # skin texture noise
    rgb = np.clip(albedo * light[:, None], 0.0, 1.0)
    sh = np.zeros((n, 4, 3))
    sh[:, 0] = (rgb - 0.5) / SH_C0
    # degree 1: colour += k * (-(view_dir . normal)) -- brighter where the surface faces the viewer
    k = 0.10 * shade
    for j, comp in ((1, 1), (2, 2), (3, 0)):
        sign = -1.0 if j in (1, 3) else 1.0  # SH basis: -C1 y, +C1 z, -C1 x
        sh[:, j] = (-k * sign * normals[:, comp] / SH_C1)[:, None] * rgb
    scales = np.stack([radius, radius, radius * 0.25], -1) * (0.85 + 0.3 * rng.random((n, 1)))
    return Gaussians(
        means=means.astype(np.float32),
        log_scales=np.log(scales).astype(np.float32),
        quats=_quats_from_normals(normals).astype(np.float32),
        opacity_logits=np.log(opacity / (1 - opacity)).astype(np.float32),
        sh=sh.astype(np.float32),
        region=region,
    )


def build_head(spec: HeadSpec | None = None, part_ids: bool = False) -> Gaussians:
    """The demo head as Gaussians (SH degree 1, exp scales), identical for identical specs.

    Region ids come from ``articulation.assign_regions``: parts that move carry their part's id;
    skin that the jaw drags becomes REGION_JAW. ``part_ids=True`` keeps the builder's part ids
    instead (what assign_regions takes; for tests and tools).
    """
    from .articulation import assign_regions  # the motion model decides which skin moves

    spec = spec or HeadSpec()
    # one independent stream per part: editing one part never reshuffles the others
    streams = iter(np.random.default_rng(s) for s in np.random.SeedSequence(spec.seed).spawn(9))

    def count(k: int) -> int:
        return max(int(k * spec.density), 16)

    parts = [_skin(next(streams), count(20000)), _back_of_head(next(streams), count(2500)),
             _hair(next(streams), count(9000))]
    parts += _neck_and_shoulders(next(streams), count(6000))
    parts += _eyes(next(streams), count(1600))
    parts += _lids(next(streams), count(1600))
    parts.append(_lips(next(streams), count(3000)))
    parts += _mouth_interior(next(streams), count(2400))
    head = _assemble(parts, next(streams))
    if not part_ids:
        head.region = assign_regions(head.means, head.region)
    return head


def build_camera(size: int = 512) -> Camera:
    """A fixed pinhole camera 3.2 units in front of the face, framing head and shoulders."""
    dist, look_y = 3.2, -0.2
    f = size / 2 / (0.87 / dist)
    w2c = np.array([[1, 0, 0, 0], [0, -1, 0, look_y], [0, 0, -1, dist], [0, 0, 0, 1]], np.float32)
    return Camera(width=size, height=size, fx=f, fy=f, cx=size / 2, cy=size / 2,
                  world_to_camera=w2c, near=0.1, far=100.0)


def face_box(size: int = 512) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): a square pixel box around the face (hair to chin) in build_camera(size)."""
    cam = build_camera(size)
    corners = np.array([[-0.42, 0.62, 0.3], [0.42, -0.5, 0.3]])
    pc = corners @ cam.world_to_camera[:3, :3].T + cam.world_to_camera[:3, 3]
    u = cam.fx * pc[:, 0] / pc[:, 2] + cam.cx
    v = cam.fy * pc[:, 1] / pc[:, 2] + cam.cy
    half = int(max(np.ptp(u), np.ptp(v)) / 2)
    cy, cx = int(v.mean()), int(u.mean())
    y0, x0 = max(cy - half, 0), max(cx - half, 0)
    return y0, min(y0 + 2 * half, size), x0, min(x0 + 2 * half, size)


def build_background(size: int = 512) -> np.ndarray:
    """A static studio backdrop [H, W, 3] float32 in [0, 1]: vertical gradient + soft vignette."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    top = np.array([0.80, 0.84, 0.88], np.float32)
    bottom = np.array([0.46, 0.52, 0.60], np.float32)
    img = top * (1 - yy[..., None]) + bottom * yy[..., None]
    r2 = (xx - 0.5) ** 2 + (yy - 0.42) ** 2
    img *= (1.0 - 0.35 * r2)[..., None]
    return np.ascontiguousarray(np.clip(img, 0, 1), dtype=np.float32)
