"""Synthetic training videos with exact ground-truth tracks, made on the fly (no downloads).

A scene is a stack of flat textured layers: a large background (the "camera" motion) and a few
objects in front of it, each a texture with a binary shape mask. Every layer moves with its own
smooth homography ``H(t)`` (texture pixels -> image pixels: translation, rotation, anisotropic
scale, shear and perspective, all smooth functions of continuous time), so

* a point ``(u, v)`` on a layer is at ``H(t) (u, v)`` in frame t — exactly, by construction;
* it is visible when it lies inside the frame and no layer in front covers it (depth order is
  the layer order; the covering test maps the point into each front layer's texture and reads
  its mask at the nearest texel, the same rule the renderer uses for every pixel centre).

Objects can leave the frame, grow and shrink, and the lighting of every layer drifts (gain and
offset per frame). Optional motion blur averages sub-frame renders around the frame time (the
ground truth stays at the frame time). Textures are procedural (noise octaves, stripes, checkers,
blobs) or random crops of real images or video frames from a folder. Everything is drawn from the
``numpy`` generator passed in, so a sample is a pure function of its seed.

Output: :class:`~cotracker3_plugin.train.data.TrackingSample` (video (T,3,H,W) float in 0..255,
trajectory (T,N,2) pixels (x right, y down), visibility (T,N), valid (T,N) ones), tracks chosen
like the official Kubric loader (visible at the first, middle or last frame).
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
from cotracker3_plugin.train.real_videos import VIDEO_SUFFIXES

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class SyntheticConfig:
    """How synthetic clips look."""

    num_frames: int = 24
    """Frames per clip (the maximum when min_frames is set)."""
    min_frames: int = 0
    """If > 0, every clip draws its length uniformly from [min_frames, num_frames)."""
    height: int = 96
    """Frame height in pixels (the model needs a multiple of 4; 96 is the smallest sensible)."""
    width: int = 128
    """Frame width in pixels (multiple of 4)."""
    num_tracks: int = 64
    """Ground-truth tracks per clip."""
    min_objects: int = 2
    """Fewest foreground objects in front of the background."""
    max_objects: int = 6
    """Most foreground objects."""
    image_dir: Path | None = None
    """Optional folder of images and/or videos whose random crops are used as textures (searched
    recursively; a video gives every ``video_frame_stride``-th of its frames)."""
    image_prob: float = 0.5
    """Probability that a layer uses an image crop instead of a procedural texture (with image_dir)."""
    video_frame_stride: int = 6
    """Frame stride for videos in image_dir (neighbouring frames look alike). At most 32 frames of a
    video are kept, decoded once per data worker."""
    object_motion: float = 0.5
    """Typical object displacement over the clip, as a fraction of the frame width."""
    leave_frame_prob: float = 0.3
    """Probability that an object moves fast enough to (partly) leave the frame."""
    camera_motion: float = 0.12
    """Typical background displacement over the clip, as a fraction of the frame width."""
    max_rotation_deg: float = 45.0
    """Largest rotation of an object over the clip (the background turns at most a tenth of it)."""
    scale_change: float = 0.35
    """Largest log-scale change of an object over the clip."""
    perspective: float = 0.3
    """Strength of the perspective (keystone) component, 0 = affine motion only."""
    lighting: float = 0.25
    """Strength of the per-layer lighting drift (log gain); 0 keeps colours constant."""
    motion_blur_prob: float = 0.0
    """Probability that a clip is rendered with motion blur."""
    blur_samples: int = 5
    """Sub-frame renders averaged for motion blur."""
    candidates_per_track: int = 4
    """Candidate points drawn per requested track before the visibility-based selection."""
    include_last_frame: bool = True
    """Also keep candidates visible in the last frame (the official offline Kubric run does)."""
    length: int = 1_000_000
    """Nominal number of distinct samples (one 'epoch' of the batch stream)."""


@dataclass
class LayerMotion:
    """Smooth motion of one layer over normalised time s in [0, 1]: texture pixels -> image pixels."""

    texture_size: tuple[int, int]
    """(h, w) of the layer's texture."""
    center: np.ndarray
    """(3, 2) coefficients: centre(s) = c0 + c1 s + c2 s^2 (pixels)."""
    wiggle: np.ndarray
    """(2, 3) per axis (amplitude px, frequency cycles per clip, phase) of a sinusoidal wiggle."""
    angle: np.ndarray
    """(2,) angle(s) = a0 + a1 s (radians)."""
    log_scale: np.ndarray
    """(2,) log scale(s) = l0 + l1 s."""
    log_aspect: np.ndarray
    """(2,) log anisotropy(s) = q0 + q1 s."""
    shear: np.ndarray
    """(2,) shear(s) = k0 + k1 s."""
    persp: np.ndarray
    """(2, 2) perspective terms p(s) = p0 + p1 s, in units of 1 / texture size."""

    def homography(self, s: float) -> np.ndarray:
        h, w = self.texture_size
        c = self.center[0] + self.center[1] * s + self.center[2] * s * s
        c = c + self.wiggle[:, 0] * np.sin(2 * np.pi * self.wiggle[:, 1] * s + self.wiggle[:, 2])
        a = self.angle[0] + self.angle[1] * s
        sc = math.exp(self.log_scale[0] + self.log_scale[1] * s)
        asp = math.exp(self.log_aspect[0] + self.log_aspect[1] * s)
        k = self.shear[0] + self.shear[1] * s
        p = (self.persp[0] + self.persp[1] * s) / np.array([w, h])
        to_center = np.array([[1, 0, -(w - 1) / 2], [0, 1, -(h - 1) / 2], [0, 0, 1]], float)
        keystone = np.array([[1, 0, 0], [0, 1, 0], [p[0], p[1], 1]], float)
        shear = np.array([[1, k, 0], [0, 1, 0], [0, 0, 1]], float)
        scale = np.diag([sc * asp, sc / asp, 1.0])
        rot = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
        move = np.array([[1, 0, c[0]], [0, 1, c[1]], [0, 0, 1]], float)
        return move @ rot @ scale @ shear @ keystone @ to_center


@dataclass
class Layer:
    """A flat textured layer: texture (h,w,3) float 0..255, mask (h,w) bool, motion and lighting."""

    texture: np.ndarray
    mask: np.ndarray
    motion: LayerMotion
    light: np.ndarray = field(default_factory=lambda: np.zeros((2, 3)))
    """(2, 3): log gain = g0 + g1 s + g2 sin(2 pi s + phase); rows (gain, offset) coefficients."""

    def lighting(self, s: float) -> tuple[float, float]:
        g = self.light[0]
        o = self.light[1]
        gain = math.exp(g[0] + g[1] * s + g[2] * math.sin(2 * np.pi * s + o[2]))
        return gain, float(o[0] + o[1] * s)


@dataclass
class SyntheticScene:
    """The layers of one clip, back to front (layer 0 is the background)."""

    layers: list[Layer]
    num_frames: int
    height: int
    width: int
    blur_shutter: float = 0.0
    """Fraction of a frame interval the shutter is open (0 = no motion blur)."""
    blur_samples: int = 5
    """Sub-frame renders averaged when blurring."""

    def time(self, t: float) -> float:
        return t / max(self.num_frames - 1, 1)


# -- textures -----------------------------------------------------------------------------


def _noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth noise in [0, 1] with features about ``cell`` pixels large."""
    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    g = rng.random((gh, gw)).astype(np.float32)
    return cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)


def procedural_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random texture (h, w, 3) float32 in 0..255 with detail at several scales."""
    c1, c2 = rng.random(3) * 255, rng.random(3) * 255
    kind = rng.integers(4)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == 0:  # fractal noise
        base = sum(_noise(rng, h, w, cell) * a for cell, a in ((32, 0.5), (12, 0.3), (4, 0.2)))
    elif kind == 1:  # stripes, slightly warped
        period = rng.uniform(4, 20)
        phi = rng.uniform(0, np.pi)
        warp = _noise(rng, h, w, 24) * rng.uniform(0, 8)
        base = 0.5 + 0.5 * np.sin(2 * np.pi * ((xx * math.cos(phi) + yy * math.sin(phi)) + warp) / period)
    elif kind == 2:  # checker
        size = rng.uniform(4, 16)
        base = ((np.floor(xx / size) + np.floor(yy / size)) % 2).astype(np.float32)
    else:  # blobs
        base = np.zeros((h, w), np.float32)
        for _ in range(int(rng.integers(5, 30))):
            centre = (int(rng.integers(w)), int(rng.integers(h)))
            axes = (int(rng.integers(2, max(3, w // 4))), int(rng.integers(2, max(3, h // 4))))
            cv2.ellipse(base, centre, axes, float(rng.uniform(0, 180)), 0, 360, float(rng.random()), -1)
    base = np.asarray(base, np.float32)[..., None]
    tex = c1 * base + c2 * (1 - base)
    # fine per-channel grain so that every texture has trackable detail
    grain = np.stack([_noise(rng, h, w, 2.5) for _ in range(3)], -1) - 0.5
    tex = tex + grain * rng.uniform(20, 60)
    return np.clip(tex, 0, 255).astype(np.float32)


@functools.lru_cache(maxsize=64)
def _read_image(path: str) -> np.ndarray | None:
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        return None
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


#: Bounds on what one texture video keeps in memory (per worker): frames, and their longer side.
VIDEO_TEXTURE_FRAMES = 32
VIDEO_TEXTURE_SIDE = 1024


@functools.lru_cache(maxsize=16)
def _read_video_frames(path: str, stride: int) -> tuple[np.ndarray, ...]:
    """Every ``stride``-th frame of a video (RGB uint8; the stride grows so that at most
    VIDEO_TEXTURE_FRAMES spread over the whole video are kept); empty if it cannot be decoded."""
    from cotracker3_plugin.io.video import iter_frames, probe_video

    try:
        stride = max(stride, math.ceil(probe_video(path).num_frames / VIDEO_TEXTURE_FRAMES))
        frames = iter_frames(path, stride=stride, max_frames=VIDEO_TEXTURE_FRAMES, max_side=VIDEO_TEXTURE_SIDE)
        return tuple(f for _, f in frames)
    except UserError as e:  # an unreadable video is skipped like an unreadable image
        log.warning("texture video skipped: %s", e)
        return ()


def image_texture(rng: np.random.Generator, path: Path, h: int, w: int, video_stride: int = 6
                  ) -> np.ndarray | None:
    """A random (h, w) crop of an image (or of a random frame of a video), at a zoom drawn
    log-uniformly between "the whole image" and the image's own resolution (upscaled if the image is
    smaller than the crop)."""
    if path.suffix.lower() in VIDEO_SUFFIXES:
        frames = _read_video_frames(str(path), video_stride)
        img = frames[int(rng.integers(len(frames)))] if frames else None
    else:
        img = _read_image(str(path))
    if img is None:
        return None
    img = img.astype(np.float32)
    ih, iw = img.shape[:2]
    f_min = max(h / ih, w / iw)
    f = f_min if f_min >= 1 else math.exp(rng.uniform(math.log(f_min), 0.0))
    size = (max(w, round(iw * f)), max(h, round(ih * f)))
    img = cv2.resize(img, size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
    ih, iw = img.shape[:2]
    y0, x0 = int(rng.integers(ih - h + 1)), int(rng.integers(iw - w + 1))
    return np.ascontiguousarray(img[y0 : y0 + h, x0 : x0 + w])


def shape_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random filled shape (ellipse, rectangle or polygon) covering much of an (h, w) box."""
    m = np.zeros((h, w), np.uint8)
    kind = rng.integers(3)
    if kind == 0:
        cv2.ellipse(m, (w // 2, h // 2), (max(1, w // 2 - 1), max(1, h // 2 - 1)), 0, 0, 360, 1, -1)
    elif kind == 1:
        m[:] = 1
    else:
        n = int(rng.integers(5, 10))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = rng.uniform(0.55, 1.0, n)
        pts = np.stack([(w - 1) / 2 * (1 + rad * np.cos(ang)), (h - 1) / 2 * (1 + rad * np.sin(ang))], -1)
        cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 1)
    return m.astype(bool)


# -- rendering and ground truth -----------------------------------------------------------


def render_frame(scene: SyntheticScene, t: float) -> tuple[np.ndarray, np.ndarray]:
    """Render time t (frame units, may be fractional): colours (H,W,3) float32 (not clipped) and
    the index of the front-most layer at every pixel centre (H,W) int (-1 where none)."""
    H, W = scene.height, scene.width
    img = np.zeros((H, W, 3), np.float32)
    label = np.full((H, W), -1, np.int32)
    s = scene.time(t)
    for i, layer in enumerate(scene.layers):
        M = layer.motion.homography(s)
        col = cv2.warpPerspective(layer.texture, M, (W, H), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REFLECT)
        cover = cv2.warpPerspective(layer.mask.astype(np.uint8), M, (W, H), flags=cv2.INTER_NEAREST,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
        gain, offset = layer.lighting(s)
        img[cover] = col[cover] * gain + offset
        label[cover] = i
    return img, label


def render(scene: SyntheticScene) -> tuple[np.ndarray, np.ndarray]:
    """All frames (T,H,W,3) float32 (unclipped; motion-blurred if the scene says so) and labels (T,H,W)."""
    frames, labels = [], []
    for t in range(scene.num_frames):
        img, lab = render_frame(scene, t)
        if scene.blur_shutter > 0:
            offs = np.linspace(-0.5, 0.5, max(2, scene.blur_samples)) * scene.blur_shutter
            img = np.mean([render_frame(scene, t + o)[0] if o else img for o in offs], axis=0)
        frames.append(img)
        labels.append(lab)
    return np.stack(frames), np.stack(labels)


def _apply(M: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = pts @ M[:, :2].T + M[:, 2]
    return p[:, :2] / p[:, 2:3]


def _covered(layer: Layer, M: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Does the layer (placed by M) cover image points xy? Nearest-texel mask lookup, as rendered."""
    uv = _apply(np.linalg.inv(M), xy)
    h, w = layer.mask.shape
    iu, iv = np.floor(uv[:, 0] + 0.5), np.floor(uv[:, 1] + 0.5)
    inside = (iu >= 0) & (iu < w) & (iv >= 0) & (iv < h) & np.isfinite(uv).all(1)
    out = np.zeros(len(xy), bool)
    out[inside] = layer.mask[iv[inside].astype(int), iu[inside].astype(int)]
    return out


def project_points(scene: SyntheticScene, layer_ids: np.ndarray, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact tracks of texture points ``uv`` (N,2) on layers ``layer_ids`` (N,).

    Returns trajectory (T,N,2) float64 image pixels and visibility (T,N) bool (inside
    [0, W-1] x [0, H-1] and not covered by a layer in front).
    """
    T, H, W = scene.num_frames, scene.height, scene.width
    traj = np.zeros((T, len(uv), 2))
    vis = np.zeros((T, len(uv)), bool)
    for t in range(T):
        s = scene.time(t)
        Ms = [layer.motion.homography(s) for layer in scene.layers]
        for i in np.unique(layer_ids):
            sel = layer_ids == i
            traj[t, sel] = _apply(Ms[i], uv[sel])
        x, y = traj[t, :, 0], traj[t, :, 1]
        v = (x >= 0) & (x <= W - 1) & (y >= 0) & (y <= H - 1)
        for j in range(1, len(scene.layers)):
            front = layer_ids < j
            if front.any():
                v[front] &= ~_covered(scene.layers[j], Ms[j], traj[t, front])
        vis[t] = v
    return traj, vis


class SyntheticGenerator:
    """A :class:`~cotracker3_plugin.train.data.SampleSource` of synthetic clips (see the module doc)."""

    def __init__(self, cfg: SyntheticConfig | None = None) -> None:
        self.cfg = cfg or SyntheticConfig()
        c = self.cfg
        if c.height % 4 or c.width % 4:
            raise UserError(f"synthetic frame size {c.height}x{c.width} must be divisible by 4; "
                            "choose e.g. 96x128, 192x256 or 384x512.")
        self.images: list[Path] = []
        if c.image_dir is not None:
            root = Path(c.image_dir)
            if not root.is_dir():
                raise UserError(f"texture image folder {root} does not exist; pass an existing folder "
                                "or leave image_dir unset for procedural textures.")
            suffixes = IMAGE_SUFFIXES + VIDEO_SUFFIXES
            self.images = sorted(p for p in root.rglob("*") if p.suffix.lower() in suffixes)
            if not self.images:
                raise UserError(f"no images or videos ({', '.join(suffixes)}) found under {root}; "
                                "add some or leave image_dir unset.")
            if c.video_frame_stride < 1:
                raise UserError(f"video_frame_stride must be at least 1, got {c.video_frame_stride}.")

    def __len__(self) -> int:
        return self.cfg.length

    # -- scene -------------------------------------------------------------------------

    def _texture(self, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
        if self.images and rng.random() < self.cfg.image_prob:
            tex = image_texture(rng, self.images[int(rng.integers(len(self.images)))], h, w,
                                self.cfg.video_frame_stride)
            if tex is not None:
                return tex
        return procedural_texture(rng, h, w)

    def _light(self, rng: np.random.Generator) -> np.ndarray:
        a = self.cfg.lighting
        return np.array([[rng.normal(0, a / 2), rng.normal(0, a), rng.uniform(0, a / 2)],
                         [rng.normal(0, 10 * a), rng.normal(0, 20 * a), rng.uniform(0, 2 * np.pi)]])

    def make_scene(self, rng: np.random.Generator, num_frames: int | None = None) -> SyntheticScene:
        """Draw textures, shapes, depth order, motions and lighting of one clip."""
        c = self.cfg
        num_frames = num_frames or c.num_frames
        H, W = c.height, c.width
        layers = []
        # background: larger than the frame so that its gentle motion keeps the frame covered
        bh, bw = int(H * 2.0), int(W * 2.0)
        disp = rng.normal(0, c.camera_motion * W, 2)
        bg = LayerMotion(
            texture_size=(bh, bw),
            center=np.array([[(W - 1) / 2, (H - 1) / 2], disp, rng.normal(0, 0.1 * c.camera_motion * W, 2)]),
            wiggle=np.stack([rng.uniform(0, 0.02 * W, 2), rng.uniform(0.5, 2, 2), rng.uniform(0, 6.3, 2)], 1),
            angle=np.array([0.0, np.deg2rad(rng.uniform(-1, 1) * c.max_rotation_deg / 10)]),
            log_scale=np.array([0.0, rng.uniform(-0.1, 0.1)]),
            log_aspect=np.zeros(2),
            shear=np.zeros(2),
            persp=np.stack([np.zeros(2), rng.uniform(-0.15, 0.15, 2) * c.perspective]),
        )
        layers.append(Layer(self._texture(rng, bh, bw), np.ones((bh, bw), bool), bg, self._light(rng)))
        for _ in range(int(rng.integers(c.min_objects, c.max_objects + 1))):
            oh = int(rng.uniform(0.2, 0.6) * H)
            ow = int(np.clip(oh * math.exp(rng.uniform(-0.6, 0.6)), 0.1 * W, 0.7 * W))
            speed = c.object_motion * W * (rng.uniform(1.0, 2.0) if rng.random() < c.leave_frame_prob
                                           else rng.uniform(0.05, 1.0))
            direction = rng.uniform(0, 2 * np.pi)
            start = np.array([rng.uniform(0.1, 0.9) * W, rng.uniform(0.1, 0.9) * H])
            v = speed * np.array([math.cos(direction), math.sin(direction)])
            acc = rng.normal(0, 0.2 * c.object_motion * W, 2)
            # start so that the path crosses the frame centre region around mid-clip
            start = start - 0.5 * v * rng.uniform(0, 1)
            motion = LayerMotion(
                texture_size=(oh, ow),
                center=np.stack([start, v, acc]),
                wiggle=np.stack([rng.uniform(0, 0.03 * W, 2), rng.uniform(0.5, 3, 2), rng.uniform(0, 6.3, 2)], 1),
                angle=np.array([rng.uniform(-np.pi, np.pi) * 0.2,
                                np.deg2rad(rng.uniform(-1, 1) * c.max_rotation_deg)]),
                log_scale=np.array([rng.uniform(-0.3, 0.3), rng.uniform(-1, 1) * c.scale_change]),
                log_aspect=np.array([rng.uniform(-0.2, 0.2), rng.uniform(-0.15, 0.15)]),
                shear=np.array([rng.uniform(-0.2, 0.2), rng.uniform(-0.1, 0.1)]),
                persp=np.stack([rng.uniform(-0.3, 0.3, 2), rng.uniform(-0.3, 0.3, 2)]) * c.perspective,
            )
            layers.append(Layer(self._texture(rng, oh, ow), shape_mask(rng, oh, ow), motion, self._light(rng)))
        shutter = rng.uniform(0.3, 1.0) if rng.random() < c.motion_blur_prob else 0.0
        return SyntheticScene(layers, num_frames, H, W, blur_shutter=shutter, blur_samples=c.blur_samples)

    def candidate_points(self, scene: SyntheticScene, rng: np.random.Generator, count: int
                         ) -> tuple[np.ndarray, np.ndarray]:
        """About ``count`` texture points, spread over layers in proportion to their area in frame 0."""
        areas = []
        for i, layer in enumerate(scene.layers):
            M = layer.motion.homography(0.0)
            det = abs(np.linalg.det(M[:2, :2])) if i else 1.0
            areas.append(layer.mask.sum() * det if i else scene.height * scene.width)
        share = np.asarray(areas, float) / np.sum(areas)
        ids, uvs = [], []
        for i, layer in enumerate(scene.layers):
            k = max(4, int(round(count * share[i])))
            h, w = layer.mask.shape
            if i == 0:  # only the background part the camera sees
                M = layer.motion.homography(0.0)
                xy = rng.uniform([0, 0], [scene.width - 1, scene.height - 1], (k, 2))
                uv = _apply(np.linalg.inv(M), xy)
            else:
                uv = rng.uniform([0, 0], [w - 1, h - 1], (3 * k, 2))
                keep = layer.mask[np.floor(uv[:, 1] + 0.5).astype(int), np.floor(uv[:, 0] + 0.5).astype(int)]
                uv = uv[keep][:k]
            ids.append(np.full(len(uv), i))
            uvs.append(uv)
        return np.concatenate(ids), np.concatenate(uvs)

    # -- sample --------------------------------------------------------------------------

    def sample(self, index: int, rng: np.random.Generator) -> TrackingSample | None:
        """A clip with ``num_tracks`` tracks visible at the first, middle or last frame; None if too few."""
        c = self.cfg
        T = c.num_frames
        if 0 < c.min_frames < c.num_frames:
            T = int(rng.integers(c.min_frames, c.num_frames))
        scene = self.make_scene(rng, T)
        ids, uv = self.candidate_points(scene, rng, c.candidates_per_track * c.num_tracks)
        traj, vis = project_points(scene, ids, uv)
        frames_to_check = [0, T // 2] + ([T - 1] if c.include_last_frame else [])
        cand = np.unique(np.concatenate([np.flatnonzero(vis[t]) for t in frames_to_check]))
        if len(cand) < c.num_tracks:
            log.debug("synthetic sample %d: %d usable tracks < %d; skipped", index, len(cand), c.num_tracks)
            return None
        pick = rng.permutation(cand)[: c.num_tracks]
        frames, _ = render(scene)
        video = torch.from_numpy(np.clip(frames, 0, 255)).permute(0, 3, 1, 2).contiguous()
        return TrackingSample(
            video=video.float(),
            trajectory=torch.from_numpy(traj[:, pick]).float(),
            visibility=torch.from_numpy(vis[:, pick]),
            valid=torch.ones(T, c.num_tracks),
            name=f"synthetic-{index}",
        )
