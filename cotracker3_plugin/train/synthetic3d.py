"""3-D synthetic training videos (Kubric-like): a textured room, boxes and spheres, a hand-held camera.

The layered generator (:mod:`~cotracker3_plugin.train.synthetic`) moves flat layers with
homographies, so it has no parallax inside a layer, no self-occlusion and no out-of-plane rotation.
This one ray-casts a small 3-D scene on the CPU, which gives those for free while the ground truth
stays exact:

* the scene is a room (floor, ceiling and four walls: the inside of a box) holding a few boxes and
  spheres; 1-3 of them move rigidly (a smooth translation and a rotation about their own axis),
  independently of the camera and of each other; the rest stand still;
* the camera is a pinhole on a smooth hand-held path (a drift plus a low-frequency wobble, looking
  at a drifting target with a little roll), so the static room shows parallax;
* every surface is textured from the same sources as the layered generator (procedural textures,
  crops of images or video frames from ``image_dir``) and shaded by one directional light
  (Lambert + ambient), with a slow exposure drift of the whole frame;
* a frame is rendered by casting one ray per pixel centre (pixel (i, j) is at x = j, y = i) and
  reading the nearest surface's texture (trilinear-like: pre-blurred copies of the texture atlas
  picked by the texel footprint, so far and grazing surfaces do not alias).

Ground truth: a track is a fixed point on a surface, stored in that shape's own coordinates. Its
position in frame t is the shape's pose at t applied to it, projected with the camera of frame t
(:func:`project_points`): exact up to float64 rounding. It is visible iff it projects inside the
frame, in front of the camera, and the ray through its exact (sub-pixel) position first hits a
surface at its own depth (:func:`visibility`): the depth test against the z-buffer the renderer
would compute at that position, so self-occlusion (the far side of a box) and occlusion by other
shapes come out of the same ray caster that draws the frames. Tracks are points seen at the first,
middle or last frame, like the official Kubric loader; a share of them is put on the objects.

Output: the same :class:`~cotracker3_plugin.train.data.TrackingSample` as the layered generator,
so the trainer consumes either (``cotracker3 train --data synthetic3d`` or
``--synthetic3d-ratio``). World coordinates: metres, y up, floor at y = 0; camera coordinates as
OpenCV (x right, y down, z forward); image coordinates in pixels, x right, y down.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from cotracker3_plugin.errors import UserError
from cotracker3_plugin.train.data import TrackingSample

log = logging.getLogger(__name__)

#: Ray hits closer than this (metres) are ignored (no self-hits at the ray origin).
_EPS = 1e-6
#: A point is visible when the first hit along its ray is at least this fraction of its depth.
DEPTH_TOLERANCE = 1e-4
#: Points closer to the camera plane than this (metres) count as behind the camera.
NEAR = 0.05
#: Texture atlas gutter (texels) around every texture, so blurred levels do not bleed into neighbours.
_GUTTER = 6
#: Gaussian sigmas of the atlas levels (texel footprints 1, 2, 4).
_LEVEL_SIGMAS = (0.0, 0.87, 1.94)


@dataclass
class Synthetic3DConfig:
    """How 3-D synthetic clips look (room, objects, camera, textures)."""

    num_frames: int = 24
    """Frames per clip (the maximum when min_frames is set)."""
    min_frames: int = 0
    """If > 0, every clip draws its length uniformly from [min_frames, num_frames)."""
    height: int = 96
    """Frame height in pixels (multiple of 4)."""
    width: int = 128
    """Frame width in pixels (multiple of 4)."""
    num_tracks: int = 64
    """Ground-truth tracks per clip."""
    min_objects: int = 3
    """Fewest boxes and spheres in the room (moving ones included)."""
    max_objects: int = 6
    """Most boxes and spheres in the room."""
    min_moving: int = 1
    """Fewest objects that move on their own (rigidly, independently of the camera)."""
    max_moving: int = 3
    """Most objects that move on their own."""
    sphere_prob: float = 0.35
    """Probability that an object is a sphere rather than a box."""
    image_dir: Path | None = None
    """Optional folder of images and/or videos whose random crops texture the surfaces (the layered
    generator's texture sources; searched recursively)."""
    image_prob: float = 0.5
    """Probability that a surface uses an image crop instead of a procedural texture (with image_dir)."""
    video_frame_stride: int = 6
    """Frame stride for videos in image_dir."""
    fov_deg: tuple[float, float] = (50.0, 75.0)
    """Range of the horizontal field of view (degrees)."""
    camera_travel: float = 0.8
    """Typical camera translation over the clip (metres; the room is 6-10 m wide)."""
    camera_shake: float = 0.03
    """Amplitude of the hand-held wobble of the camera position (metres) and of its aim point (x 3)."""
    object_travel: float = 1.2
    """Typical translation of a moving object over the clip (metres)."""
    max_object_rotation_deg: float = 120.0
    """Largest rotation of a moving object over the clip."""
    lighting: float = 0.15
    """Strength of the exposure drift over the clip (log gain); 0 keeps the exposure fixed."""
    object_track_share: float = 0.4
    """At least this share of the tracks lies on objects (when enough object points are seen)."""
    candidates_per_track: int = 3
    """Candidate points drawn per requested track before the selection."""
    include_last_frame: bool = True
    """Also draw candidates on the last frame (the official offline Kubric run does)."""
    length: int = 1_000_000
    """Nominal number of distinct samples (one 'epoch' of the batch stream)."""


# -- scene description ------------------------------------------------------------------------------


@dataclass
class Shape:
    """A rigid shape with a pose per frame.

    ``kind``: ``"room"`` (the inside of a box: its six faces are seen from within), ``"box"`` or
    ``"sphere"``. Local coordinates are centred on the shape; a box spans ``[-extent, extent]``, a
    sphere has radius ``extent[0]``. Faces of boxes and rooms are numbered ``2 * axis + side``
    (side 1: the + face). ``textures`` are indices into the scene's atlas: one per face for the
    room, one per axis for a box (opposite faces share one; they are never seen together), one
    for a sphere.
    """

    kind: str
    extent: np.ndarray
    """(3,) half sizes in metres (radius repeated for a sphere)."""
    rotation: np.ndarray
    """(T, 3, 3) world-from-local rotation per frame."""
    position: np.ndarray
    """(T, 3) world position of the local origin per frame."""
    textures: tuple[int, ...] = ()

    @property
    def moving(self) -> bool:
        """True if the pose changes over the clip."""
        return bool(np.ptp(self.position, axis=0).max() > 0 or np.ptp(self.rotation, axis=0).max() > 0)

    @property
    def bounding_radius(self) -> float:
        return float(np.linalg.norm(self.extent)) if self.kind == "box" else float(self.extent[0])

    def to_world(self, t: int, local: np.ndarray) -> np.ndarray:
        """Local points (N, 3) -> world points at frame t."""
        return local @ self.rotation[t].T + self.position[t]


def static_shape(kind: str, extent, position, num_frames: int, rotation: np.ndarray | None = None,
                 textures: tuple[int, ...] = ()) -> Shape:
    """A shape standing still for ``num_frames`` frames."""
    R = np.eye(3) if rotation is None else np.asarray(rotation, float)
    return Shape(kind, np.asarray(extent, float), np.repeat(R[None], num_frames, 0),
                 np.repeat(np.asarray(position, float)[None], num_frames, 0), textures)


def look_at(position: np.ndarray, target: np.ndarray, roll: float = 0.0) -> np.ndarray:
    """World-from-camera rotation (OpenCV axes: x right, y down, z forward) of a camera at
    ``position`` looking at ``target`` with the world's y axis up, turned by ``roll`` radians."""
    z = np.asarray(target, float) - np.asarray(position, float)
    z = z / np.linalg.norm(z)
    down = np.array([0.0, -1.0, 0.0])
    y = down - (down @ z) * z
    y = y / np.linalg.norm(y)
    x = np.cross(y, z)
    c, s = math.cos(roll), math.sin(roll)
    R = np.stack([x, y, z], axis=1)
    return R @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass
class TextureAtlas:
    """All textures of a scene packed into one image, with blurred copies for far surfaces."""

    levels: list[np.ndarray]
    """Atlas images (h, w, 3) float32 0..255, increasingly blurred (texel footprints 1, 2, 4)."""
    rects: np.ndarray
    """(K, 4) float64 (x0, y0, w, h) of every texture's interior in the atlas."""
    density: np.ndarray
    """(K,) texels per metre of every texture (for the footprint of a pixel)."""
    wrap: np.ndarray
    """(K,) bool: the texture wraps around horizontally (spheres)."""


def build_atlas(textures: list[np.ndarray], density: list[float], wrap: list[bool]) -> TextureAtlas:
    """Pack textures (h, w, 3) float32 into shelves of an atlas; gutters repeat each texture's edge
    (or wrap it around, for spheres) so that bilinear and blurred reads stay on the texture."""
    g = _GUTTER
    width = max(1024, max(t.shape[1] for t in textures) + 2 * g)
    order = sorted(range(len(textures)), key=lambda i: -textures[i].shape[0])
    rects = np.zeros((len(textures), 4))
    x = y = shelf = 0
    for i in order:
        h, w = textures[i].shape[:2]
        if x + w + 2 * g > width:
            x, y, shelf = 0, y + shelf, 0
        rects[i] = (x + g, y + g, w, h)
        x += w + 2 * g
        shelf = max(shelf, h + 2 * g)
    atlas = np.zeros((y + shelf, width, 3), np.float32)
    for i, tex in enumerate(textures):
        x0, y0, w, h = (int(v) for v in rects[i])
        padded = cv2.copyMakeBorder(tex, g, g, 0, 0, cv2.BORDER_REPLICATE)
        padded = cv2.copyMakeBorder(padded, 0, 0, g, g, cv2.BORDER_WRAP if wrap[i] else cv2.BORDER_REPLICATE)
        atlas[y0 - g:y0 + h + g, x0 - g:x0 + w + g] = padded
    levels = [atlas] + [cv2.GaussianBlur(atlas, (0, 0), s) for s in _LEVEL_SIGMAS[1:]]
    return TextureAtlas(levels, rects, np.asarray(density, float), np.asarray(wrap, bool))


@dataclass
class Scene3D:
    """One clip's scene: shapes (``shapes[0]`` is the room), cameras, textures and lighting."""

    shapes: list[Shape]
    K: np.ndarray
    """(3, 3) pinhole intrinsics in pixels (principal point at the image centre)."""
    cam_rotation: np.ndarray
    """(T, 3, 3) world-from-camera rotations (OpenCV camera axes)."""
    cam_position: np.ndarray
    """(T, 3) camera centres in the world."""
    height: int
    width: int
    atlas: TextureAtlas | None = None
    """Textures (None: ground truth only, no rendering)."""
    light: np.ndarray = field(default_factory=lambda: np.array([0.3, 0.9, -0.3]) / np.linalg.norm([0.3, 0.9, -0.3]))
    """(3,) unit vector towards the directional light."""
    ambient: float = 0.45
    """Share of the light that reaches every surface whatever its orientation."""
    exposure: np.ndarray | None = None
    """(T, 2) per-frame (gain, offset) of the whole image (None: 1, 0)."""

    @property
    def num_frames(self) -> int:
        return len(self.cam_position)


# -- ray casting ------------------------------------------------------------------------------------


@dataclass
class Hits:
    """First surface hit along each ray: depth (camera z, inf where none), shape index (-1 where
    none), face, and the hit point in the shape's local coordinates."""

    depth: np.ndarray
    shape: np.ndarray
    face: np.ndarray
    local: np.ndarray


def _pick(axis: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``v[axis[i], i]`` for (3, M) ``v`` (or ``v[i, axis[i]]`` for (M, 3)), by elementwise selects
    (cheaper than a gather)."""
    rows = v if v.shape[0] == 3 and v.ndim == 2 and v.shape[1] == len(axis) else v.T
    return np.where(axis == 0, rows[0], np.where(axis == 1, rows[1], rows[2]))


def _box(o: np.ndarray, d: np.ndarray, h: np.ndarray, inside: bool
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slab test of rays o + t d (d: (3, M), one row per axis) against the box [-h, h]: the entry
    (outside) or exit (inside) t, the face crossed there, and whether it is a hit. Row-wise
    elementwise work only: reductions over a length-3 axis are slow in numpy."""
    near, far = [], []
    with np.errstate(divide="ignore", invalid="ignore"):
        for a in range(3):
            inv = 1.0 / d[a]
            t1, t2 = (-h[a] - o[a]) * inv, (h[a] - o[a]) * inv
            near.append(np.fmin(t1, t2))
            far.append(np.fmax(t1, t2))
    exit_t = np.fmin(np.fmin(far[0], far[1]), far[2])
    if inside:
        t = exit_t
        axis = np.where(far[0] == t, 0, np.where(far[1] == t, 1, 2))
        side = _pick(axis, d) > 0
        hit = t > _EPS
    else:
        t = np.fmax(np.fmax(near[0], near[1]), near[2])
        axis = np.where(near[0] == t, 0, np.where(near[1] == t, 1, 2))
        side = _pick(axis, d) < 0
        hit = (t > _EPS) & (t <= exit_t)
    return t, 2 * axis + side, hit


def _sphere(o: np.ndarray, d: np.ndarray, r: float) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hit t of rays o + t d (d: (3, M)) on the sphere of radius r about the origin."""
    a = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
    b = o[0] * d[0] + o[1] * d[1] + o[2] * d[2]
    c = o @ o - r * r
    disc = b * b - a * c
    t = (-b - np.sqrt(np.maximum(disc, 0))) / a
    return t, (disc >= 0) & (t > _EPS)


def _screen_box(scene: Scene3D, t: int, shape: Shape) -> tuple[float, float, float, float] | None:
    """A pixel rectangle (x0, x1, y0, y1) that contains the shape's projection at frame t (from its
    bounding sphere; None: it may cover the whole view)."""
    r = shape.bounding_radius
    c = (shape.position[t] - scene.cam_position[t]) @ scene.cam_rotation[t]
    if c[2] - r <= NEAR:
        return None
    K = scene.K
    zs = (c[2] - r, c[2] + r)
    xs = [K[0, 0] * (c[0] + a) / z + K[0, 2] for a in (-r, r) for z in zs]
    ys = [K[1, 1] * (c[1] + a) / z + K[1, 2] for a in (-r, r) for z in zs]
    return min(xs), max(xs), min(ys), max(ys)


def cast_rays(scene: Scene3D, t: int, dirs: np.ndarray, pix: np.ndarray | None = None) -> Hits:
    """First hits of rays from the camera centre of frame t along world directions ``dirs`` (M, 3)
    whose camera-z component is 1 (so the ray parameter is the camera depth). ``pix`` (M, 2), the
    rays' pixel positions, lets shapes skip rays outside their screen rectangle."""
    M = len(dirs)
    dt = dirs.dtype
    depth = np.full(M, np.inf, dt)
    shape_id = np.full(M, -1, np.int64)
    face = np.zeros(M, np.int64)
    local = np.zeros((3, M), dt)
    origin = scene.cam_position[t]
    for i, s in enumerate(scene.shapes):
        sel = None
        if pix is not None and s.kind != "room":
            box = _screen_box(scene, t, s)
            if box is not None:
                x0, x1, y0, y1 = box
                sel = np.flatnonzero((pix[:, 0] >= x0) & (pix[:, 0] <= x1) & (pix[:, 1] >= y0) & (pix[:, 1] <= y1))
                if len(sel) == 0:
                    continue
        R, p = s.rotation[t], s.position[t]
        o = ((origin - p) @ R).astype(dt)
        d = np.dot(R.T.astype(dt), (dirs if sel is None else dirs[sel]).T)  # (3, m): local directions
        if s.kind == "sphere":
            tt, hit = _sphere(o, d, float(s.extent[0]))
            f = np.zeros(len(tt), np.int64)
        else:
            tt, f, hit = _box(o, d, s.extent.astype(dt), inside=s.kind == "room")
        if sel is None and i == 0:  # the first shape (the room): masked writes, no gathers
            depth = np.where(hit, tt, depth)
            shape_id[hit] = i
            face = np.where(hit, f, face)
            local = np.where(hit, o[:, None] + tt * d, local)
            continue
        idx = np.arange(M) if sel is None else sel
        better = hit & (tt < depth[idx])
        idx, tt, f = idx[better], tt[better], f[better]
        depth[idx] = tt
        shape_id[idx] = i
        face[idx] = f
        local[:, idx] = o[:, None] + tt * d[:, better]
    return Hits(depth, shape_id, face, local.T)


def pixel_rays(scene: Scene3D, t: int, xy: np.ndarray) -> np.ndarray:
    """World directions (M, 3) with camera-z 1 of the rays through pixel positions ``xy`` (M, 2)."""
    K = scene.K
    cam = np.stack([(xy[:, 0] - K[0, 2]) / K[0, 0], (xy[:, 1] - K[1, 2]) / K[1, 1], np.ones(len(xy))], -1)
    return cam.astype(xy.dtype) @ scene.cam_rotation[t].T.astype(xy.dtype)


# -- ground truth -----------------------------------------------------------------------------------


def project_points(scene: Scene3D, shape_ids: np.ndarray, local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image positions (T, N, 2) and camera depths (T, N) of surface points ``local`` (N, 3) of shapes
    ``shape_ids`` (N,), float64. Points behind the camera are projected as if at depth NEAR (finite
    positions far outside the frame; they are invisible anyway)."""
    T, N = scene.num_frames, len(local)
    xy = np.zeros((T, N, 2))
    z = np.zeros((T, N))
    world = np.zeros((N, 3))
    for t in range(T):
        for i in np.unique(shape_ids):
            sel = shape_ids == i
            world[sel] = scene.shapes[int(i)].to_world(t, local[sel])
        cam = (world - scene.cam_position[t]) @ scene.cam_rotation[t]
        z[t] = cam[:, 2]
        zc = np.maximum(cam[:, 2], NEAR)
        xy[t, :, 0] = scene.K[0, 0] * cam[:, 0] / zc + scene.K[0, 2]
        xy[t, :, 1] = scene.K[1, 1] * cam[:, 1] / zc + scene.K[1, 2]
    return xy, z


def visibility(scene: Scene3D, xy: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """(T, N) bool: inside [0, W-1] x [0, H-1], in front of the camera, and the first surface along
    the ray through the exact position is at the point's own depth (within DEPTH_TOLERANCE)."""
    W, H = scene.width, scene.height
    vis = ((xy[..., 0] >= 0) & (xy[..., 0] <= W - 1) & (xy[..., 1] >= 0) & (xy[..., 1] <= H - 1)
           & (depth > NEAR))
    for t in range(scene.num_frames):
        idx = np.flatnonzero(vis[t])
        if len(idx):
            hits = cast_rays(scene, t, pixel_rays(scene, t, xy[t, idx]), xy[t, idx])
            vis[t, idx] = hits.depth >= depth[t, idx] * (1 - DEPTH_TOLERANCE)
    return vis


def track_points(scene: Scene3D, shape_ids: np.ndarray, local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact tracks (T, N, 2) float64 pixels and visibility (T, N) of surface points (see the module doc)."""
    xy, z = project_points(scene, shape_ids, local)
    return xy, visibility(scene, xy, z)


def surface_points(scene: Scene3D, t: int, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The surface points seen at pixel positions ``xy`` (M, 2) of frame t: shape ids (M,) and local
    coordinates (M, 3), float64 (-1 where a ray hits nothing)."""
    xy = np.asarray(xy, np.float64)
    hits = cast_rays(scene, t, pixel_rays(scene, t, xy), xy)
    return hits.shape, hits.local


# -- rendering --------------------------------------------------------------------------------------




def _surface(scene: Scene3D, t: int, hits: Hits) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per hit: texture index, texture coordinates (M, 2) in texels of that texture, world normal (M, 3).

    Box and room faces are looked up in small per-(shape, face) tables, so the per-pixel work is a
    few gathers and selects whatever the number of shapes; only sphere hits get their own pass."""
    S = len(scene.shapes)
    textures = np.zeros((S, 6), np.int64)
    normals = np.zeros((S, 6, 3), np.float32)
    extent = np.ones((S, 3), np.float32)
    for i, s in enumerate(scene.shapes):
        extent[i] = s.extent
        table = s.textures if s.textures else (0,) * 6
        for f in range(6):
            axis, sign = f // 2, (1.0 if f % 2 else -1.0) * (-1.0 if s.kind == "room" else 1.0)
            textures[i, f] = table[0] if s.kind == "sphere" else (table[f] if s.kind == "room" else table[axis])
            normals[i, f] = sign * s.rotation[t][:, axis]
    sid = np.maximum(hits.shape, 0)
    face = hits.face
    tex = textures[sid, face]
    q = hits.local
    ext = extent[sid]
    axis = face // 2
    b, c = (axis + 1) % 3, (axis + 2) % 3
    u = _pick(b, q) / (2 * _pick(b, ext)) + 0.5
    v = _pick(c, q) / (2 * _pick(c, ext)) + 0.5
    normal = normals[sid, face]
    rects = scene.atlas.rects if scene.atlas is not None else np.ones((int(tex.max()) + 1, 4))
    size = rects[tex, 2:4].astype(np.float32)
    uv = np.stack([u * (size[:, 0] - 1), v * (size[:, 1] - 1)], -1)
    for i, s in enumerate(scene.shapes):
        if s.kind != "sphere":
            continue
        sel = np.flatnonzero(hits.shape == i)
        if len(sel) == 0:
            continue
        qs = q[sel] / float(s.extent[0])
        uv[sel, 0] = (np.arctan2(qs[:, 2], qs[:, 0]) / (2 * np.pi) + 0.5) * size[sel, 0]
        uv[sel, 1] = np.arccos(np.clip(qs[:, 1], -1, 1)) / np.pi * (size[sel, 1] - 1)
        normal[sel] = qs @ s.rotation[t].T.astype(np.float32)
    return tex, uv, normal


@functools.lru_cache(maxsize=8)
def _pixel_centres(height: int, width: int) -> np.ndarray:
    """(H * W, 2) float32 (x, y) of every pixel centre, row by row (read-only, shared)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    pix = np.stack([xx.ravel(), yy.ravel()], -1)
    pix.flags.writeable = False
    return pix


def render_frame(scene: Scene3D, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Colours (H, W, 3) float32 (not clipped) and the z-buffer (H, W) float32 of frame t, from one
    ray per pixel centre."""
    if scene.atlas is None:
        raise ValueError("the scene has no textures to render")
    H, W = scene.height, scene.width
    pix = _pixel_centres(H, W)
    dirs = pixel_rays(scene, t, pix)
    hits = cast_rays(scene, t, dirs, pix)
    tex, uv, normal = _surface(scene, t, hits)
    atlas = scene.atlas
    rects = atlas.rects
    map_x = (rects[tex, 0] + uv[:, 0]).astype(np.float32).reshape(H, W)
    map_y = (rects[tex, 1] + uv[:, 1]).astype(np.float32).reshape(H, W)
    maps = cv2.convertMaps(map_x, map_y, cv2.CV_16SC2)  # once for all levels (1/32 texel steps)
    # texel footprint of a pixel: texels per metre x metres per pixel at that depth / obliquity
    ray_len = np.sqrt(dirs[:, 0] ** 2 + dirs[:, 1] ** 2 + dirs[:, 2] ** 2)
    cos = np.abs(normal[:, 0] * dirs[:, 0] + normal[:, 1] * dirs[:, 1] + normal[:, 2] * dirs[:, 2]) / ray_len
    footprint = atlas.density[tex].astype(np.float32) * hits.depth * ray_len / np.float32(scene.K[0, 0])
    level = np.clip(np.log2(np.maximum(footprint / np.maximum(cos, 0.15), 1e-6)), 0, len(atlas.levels) - 1)
    light = scene.light.astype(np.float32)
    shade = scene.ambient + (1 - scene.ambient) * np.maximum(normal @ light, 0)
    img = np.zeros((H, W, 3), np.float32)
    for i, lv in enumerate(atlas.levels):
        weight = np.clip(1 - np.abs(level - i), 0, 1)
        if weight.any():
            img += (weight * shade).reshape(H, W, 1) * cv2.remap(lv, *maps, cv2.INTER_LINEAR,
                                                                 borderMode=cv2.BORDER_REPLICATE)
    if scene.exposure is not None:
        gain, offset = scene.exposure[t]
        img = img * gain + offset
    return img, hits.depth.reshape(H, W).astype(np.float32)


def render(scene: Scene3D) -> tuple[np.ndarray, np.ndarray]:
    """All frames (T, H, W, 3) float32 (unclipped) and z-buffers (T, H, W)."""
    frames, depths = zip(*(render_frame(scene, t) for t in range(scene.num_frames)), strict=True)
    return np.stack(frames), np.stack(depths)


# -- random scenes ----------------------------------------------------------------------------------


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def _smooth_path(rng: np.random.Generator, s: np.ndarray, start: np.ndarray, travel: np.ndarray,
                 wobble: float) -> np.ndarray:
    """start + travel * ease(s) + a low-frequency wobble per axis: (T, 3)."""
    ease = s + rng.uniform(-0.3, 0.3) * s * (1 - s)  # gentle acceleration or deceleration
    path = start + ease[:, None] * travel
    freq = rng.uniform(0.5, 2.0, 3)
    phase = rng.uniform(0, 2 * np.pi, 3)
    amp = wobble * rng.uniform(0.3, 1.0, 3)
    return path + amp * (np.sin(2 * np.pi * freq * s[:, None] + phase) - np.sin(phase))


class Synthetic3DGenerator:
    """A :class:`~cotracker3_plugin.train.data.SampleSource` of 3-D synthetic clips (see the module doc)."""

    def __init__(self, cfg: Synthetic3DConfig | None = None) -> None:
        from cotracker3_plugin.train.synthetic import SyntheticConfig, SyntheticGenerator

        self.cfg = cfg or Synthetic3DConfig()
        c = self.cfg
        if c.height % 4 or c.width % 4:
            raise UserError(f"synthetic frame size {c.height}x{c.width} must be divisible by 4; "
                            "choose e.g. 96x128, 192x256 or 384x512.")
        if not 0 <= c.min_moving <= c.max_moving or c.max_objects < max(1, c.min_objects):
            raise UserError("synthetic3d object counts: need 0 <= min_moving <= max_moving and "
                            "1 <= min_objects <= max_objects.")
        # The layered generator owns the texture sources (folder scan, image/video crops, procedural).
        self._textures = SyntheticGenerator(SyntheticConfig(
            height=c.height, width=c.width, image_dir=c.image_dir, image_prob=c.image_prob,
            video_frame_stride=c.video_frame_stride))

    def __len__(self) -> int:
        return self.cfg.length

    def _texture(self, rng: np.random.Generator, size_m: tuple[float, float], density: float,
                 wrap: bool = False) -> tuple[np.ndarray, float, bool]:
        """A texture for a (height, width) metres surface at about ``density`` texels per metre
        (at most 512 texels a side: the density drops for very large surfaces)."""
        hm, wm = size_m
        dens = min(density, 512 / max(hm, wm))
        h, w = max(8, round(hm * dens)), max(8, round(wm * dens))
        return self._textures._texture(rng, h, w), dens, wrap

    def make_scene(self, rng: np.random.Generator, num_frames: int | None = None) -> Scene3D:
        """Draw the room, objects, their motions, textures, camera path and lighting of one clip."""
        c = self.cfg
        T = num_frames or c.num_frames
        H, W = c.height, c.width
        s = np.linspace(0.0, 1.0, T) if T > 1 else np.zeros(1)
        fov = math.radians(rng.uniform(*c.fov_deg))
        f = (W / 2) / math.tan(fov / 2)
        K = np.array([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1.0]])
        # texels per metre: about one texel per pixel at 4 m (room) and 2 m (objects)
        dens_room, dens_obj = f / 4.0, f / 2.0
        textures: list[tuple[np.ndarray, float, bool]] = []

        half = np.array([rng.uniform(3.0, 5.0), rng.uniform(1.25, 2.0), rng.uniform(3.0, 5.0)])
        room_tex = []
        for face in range(6):
            axis = face // 2
            b, cc = (axis + 1) % 3, (axis + 2) % 3
            room_tex.append(len(textures))
            textures.append(self._texture(rng, (2 * half[cc], 2 * half[b]), dens_room))
        shapes = [static_shape("room", half, [0.0, half[1], 0.0], T, textures=tuple(room_tex))]

        # objects in the front part of the room, the camera in the back part (looking along +z)
        n_obj = int(rng.integers(c.min_objects, c.max_objects + 1))
        n_moving = min(n_obj, int(rng.integers(c.min_moving, c.max_moving + 1)))
        lo = np.array([-half[0] + 0.7, 0.0, -0.8])
        hi = np.array([half[0] - 0.7, 0.0, half[2] - 0.7])
        for k in range(n_obj):
            moving = k < n_moving
            if rng.random() < c.sphere_prob:
                kind, ext = "sphere", np.full(3, rng.uniform(0.2, 0.6))
                textures.append(self._texture(rng, (math.pi * ext[0], 2 * math.pi * ext[0]), dens_obj, wrap=True))
                tex: tuple[int, ...] = (len(textures) - 1,)
            else:
                kind, ext = "box", rng.uniform(0.15, 0.6, 3)
                tex = ()
                for axis in range(3):
                    b, cc = (axis + 1) % 3, (axis + 2) % 3
                    tex += (len(textures),)
                    textures.append(self._texture(rng, (2 * ext[cc], 2 * ext[b]), dens_obj))
            yaw = _rotation(np.array([0.0, 1.0, 0.0]), rng.uniform(0, 2 * np.pi))
            rest_height = ext[1] if kind == "box" else ext[0]
            start = rng.uniform(lo, hi)
            start[1] = rest_height if (not moving or rng.random() < 0.5) else rng.uniform(rest_height, 1.8)
            if moving:
                direction = rng.normal(size=3)
                direction[1] *= 0.4
                travel = c.object_travel * rng.uniform(0.3, 1.5) * direction / np.linalg.norm(direction)
                pos = _smooth_path(rng, s, start, travel, 0.05)
                pos[:, 1] = np.maximum(pos[:, 1], rest_height * 0.5)  # may sink a little into the floor
                pos[:, [0, 2]] = np.clip(pos[:, [0, 2]], -half[[0, 2]] + 0.5 * ext[0], half[[0, 2]] - 0.5 * ext[0])
                axis_r = rng.normal(size=3)
                angle = math.radians(rng.uniform(-1, 1) * c.max_object_rotation_deg)
                rot = np.stack([_rotation(axis_r, angle * si) @ yaw for si in s])
            else:
                pos = np.repeat(start[None], T, 0)
                rot = np.repeat(yaw[None], T, 0)
            shapes.append(Shape(kind, ext, rot, pos, tex))

        centre = np.mean([sh.position[0] for sh in shapes[1:]], axis=0)
        cam0 = np.array([rng.uniform(-0.5, 0.5) * half[0], rng.uniform(0.9, min(2.2, 2 * half[1] - 0.4)),
                         rng.uniform(-half[2] + 0.5, -half[2] * 0.5)])
        direction = rng.normal(size=3) * np.array([1.0, 0.3, 0.6])
        travel = c.camera_travel * rng.uniform(0.3, 1.5) * direction / np.linalg.norm(direction)
        cam = _smooth_path(rng, s, cam0, travel, c.camera_shake)
        cam = np.clip(cam, [-half[0] + 0.3, 0.3, -half[2] + 0.3], [half[0] - 0.3, 2 * half[1] - 0.3, -1.2])
        target0 = centre + rng.normal(0, 0.5, 3) * np.array([1, 0.3, 1])
        target0[1] = rng.uniform(0.2, 1.2)
        target = _smooth_path(rng, s, target0, rng.normal(0, 0.4, 3), 3 * c.camera_shake)
        roll = rng.normal(0, 0.05) + rng.normal(0, 0.03) * s
        cam_R = np.stack([look_at(cam[t], target[t], roll[t]) for t in range(T)])

        light = np.array([rng.uniform(-0.6, 0.6), 1.0, rng.uniform(-0.6, 0.6)])
        a = c.lighting
        log_gain = rng.normal(0, a / 2) + rng.normal(0, a) * s
        exposure = np.stack([np.exp(log_gain), rng.normal(0, 10 * a) + rng.normal(0, 10 * a) * s], -1)
        atlas = build_atlas([t[0] for t in textures], [t[1] for t in textures], [t[2] for t in textures])
        return Scene3D(shapes, K, cam_R, cam, H, W, atlas, light / np.linalg.norm(light),
                       float(rng.uniform(0.35, 0.6)), exposure)

    def _keep_clear(self, scene: Scene3D, margin: float = 0.25) -> Scene3D:
        """Drop objects that come closer than ``margin`` to the camera (it must never be inside one)."""
        keep = [scene.shapes[0]]
        for sh in scene.shapes[1:]:
            gap = np.linalg.norm(sh.position - scene.cam_position, axis=1) - sh.bounding_radius
            if gap.min() >= margin:
                keep.append(sh)
        scene.shapes = keep
        return scene

    def candidate_points(self, scene: Scene3D, rng: np.random.Generator, count: int
                         ) -> tuple[np.ndarray, np.ndarray]:
        """About ``count`` surface points seen at uniformly random positions of the first, middle
        (and last) frame: shape ids (N,) and local coordinates (N, 3)."""
        T = scene.num_frames
        frames = [0, T // 2] + ([T - 1] if self.cfg.include_last_frame else [])
        per = -(-count // len(frames))
        ids, pts = [], []
        for t in frames:
            xy = rng.uniform([0, 0], [scene.width - 1, scene.height - 1], (per, 2))
            sid, local = surface_points(scene, t, xy)
            ids.append(sid)
            pts.append(local)
        sid, local = np.concatenate(ids), np.concatenate(pts)
        ok = sid >= 0
        return sid[ok], local[ok]

    def sample_with_scene(self, index: int, rng: np.random.Generator
                          ) -> tuple[TrackingSample, Scene3D, np.ndarray, np.ndarray] | None:
        """:meth:`sample` plus its scene and the tracked points (shape ids (N,), local (N, 3)), for tests
        and inspection."""
        c = self.cfg
        T = c.num_frames
        if 0 < c.min_frames < c.num_frames:
            T = int(rng.integers(c.min_frames, c.num_frames))
        scene = self._keep_clear(self.make_scene(rng, T))
        sid, local = self.candidate_points(scene, rng, c.candidates_per_track * c.num_tracks)
        traj, vis = track_points(scene, sid, local)
        frames_to_check = [0, T // 2] + ([T - 1] if c.include_last_frame else [])
        cand = np.flatnonzero(vis[frames_to_check].any(0))
        if len(cand) < c.num_tracks:
            log.debug("synthetic3d sample %d: %d usable tracks < %d; skipped", index, len(cand), c.num_tracks)
            return None
        on_obj = rng.permutation(cand[sid[cand] > 0])[: math.ceil(c.object_track_share * c.num_tracks)]
        rest = rng.permutation(np.setdiff1d(cand, on_obj))[: c.num_tracks - len(on_obj)]
        pick = rng.permutation(np.concatenate([on_obj, rest]))
        frames, _ = render(scene)
        video = torch.from_numpy(np.clip(frames, 0, 255)).permute(0, 3, 1, 2).contiguous()
        sample = TrackingSample(
            video=video.float(),
            trajectory=torch.from_numpy(traj[:, pick]).float(),
            visibility=torch.from_numpy(vis[:, pick]),
            valid=torch.ones(T, c.num_tracks),
            name=f"synthetic3d-{index}",
        )
        return sample, scene, sid[pick], local[pick]

    def sample(self, index: int, rng: np.random.Generator) -> TrackingSample | None:
        """A clip with ``num_tracks`` tracks seen at the first, middle or last frame; None if too few."""
        out = self.sample_with_scene(index, rng)
        return None if out is None else out[0]
