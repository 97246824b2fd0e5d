"""A small synthetic Clip/Tracks/Scene with known geometry, for demos, tests and benchmarks.

Coloured points on a sphere and a ground plane are seen by a camera moving on an arc;
frames are the points splatted on a gradient background, tracks are their exact
projections (occluded where they face away from the camera), and the Scene holds the
true cameras and points with ``track_ids = arange(N)``.
"""

from __future__ import annotations

import numpy as np

from cotracker3_plugin.io.clip import Clip
from cotracker3_plugin.reconstruct.scene import Scene
from cotracker3_plugin.tracks import Tracks
from cotracker3_viser.drawing import stamp


def _look_at(center: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    z = target - center
    z /= np.linalg.norm(z)
    x = np.cross(z, up)  # OpenCV: x right, y down, z forward; world up is -y of the camera
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    m = np.eye(4)
    m[:3, :3] = np.stack([x, y, z], axis=1)
    m[:3, 3] = center
    return m


def _rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def make_synthetic(num_points: int = 300, num_frames: int = 24, size: tuple[int, int] = (120, 160),
                   seed: int = 0, render_frames: bool = True, spin: float = 0.6
                   ) -> tuple[Clip, Tracks, Scene]:
    """(clip, tracks, scene) of ``num_points`` points over ``num_frames`` frames of ``size`` (H, W).

    The sphere turns by ``spin`` radians about the vertical over the clip (a moving
    object); the Scene holds its points as they are in frame 0, so 3D trails show the turn.
    """
    rng = np.random.default_rng(seed)
    h, w = size
    n_sphere = num_points * 2 // 3
    d = rng.normal(size=(n_sphere, 3))
    sphere = d / np.linalg.norm(d, axis=1, keepdims=True)
    normals = sphere.copy()
    ground = np.c_[rng.uniform(-2.5, 2.5, num_points - n_sphere), rng.uniform(-2.5, 2.5, num_points - n_sphere),
                   np.full(num_points - n_sphere, -1.0)]
    points = np.concatenate([sphere, ground])
    normals = np.concatenate([normals, np.tile([0.0, 0.0, 1.0], (len(ground), 1))])
    hue = (np.arctan2(points[:, 1], points[:, 0]) / (2 * np.pi) + 0.5)
    colors = np.stack([np.sin(2 * np.pi * hue) * 0.5 + 0.5, np.sin(2 * np.pi * (hue + 1 / 3)) * 0.5 + 0.5,
                       np.sin(2 * np.pi * (hue + 2 / 3)) * 0.5 + 0.5], 1)
    colors = (colors * 200 + 40).astype(np.uint8)

    K = np.array([[0.9 * w, 0, (w - 1) / 2], [0, 0.9 * w, (h - 1) / 2], [0, 0, 1.0]])
    angles = np.linspace(-0.6, 0.6, num_frames)
    poses = np.stack([_look_at(np.array([4.5 * np.sin(a), -4.5 * np.cos(a), 1.5]), np.zeros(3),
                               np.array([0.0, 0.0, 1.0])) for a in angles])
    xy = np.zeros((num_frames, num_points, 2), np.float32)
    visible = np.zeros((num_frames, num_points), bool)
    moving = np.arange(num_points) < n_sphere
    for t, m in enumerate(poses):
        rot = _rot_z(spin * t / max(num_frames - 1, 1))
        pts_t = np.where(moving[:, None], points @ rot.T, points)
        nrm_t = np.where(moving[:, None], normals @ rot.T, normals)
        cam = (pts_t - m[:3, 3]) @ m[:3, :3]
        uv = cam[:, :2] / cam[:, 2:3] * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]]
        xy[t] = uv
        facing = ((m[:3, 3] - pts_t) * nrm_t).sum(1) > 0
        inside = (uv[:, 0] >= 0) & (uv[:, 0] <= w - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= h - 1)
        visible[t] = facing & inside & (cam[:, 2] > 0)
    confidence = np.where(visible, 0.9, 0.15).astype(np.float32)
    confidence[:, ::7] *= 0.5  # some low-confidence tracks for the filter
    queries = np.c_[np.zeros(num_points), xy[0]].astype(np.float32)

    frames = np.zeros((num_frames, h, w, 3), np.uint8)
    if render_frames:
        yy, xx = np.mgrid[0:h, 0:w]
        bg = np.stack([40 + 60 * yy / h, 50 + 40 * xx / w, 90 + 0 * xx], -1).astype(np.uint8)
        disc = np.array([[dx, dy] for dx in range(-1, 2) for dy in range(-1, 2)])
        for t in range(num_frames):
            frames[t] = bg
            stamp(frames[t], xy[t, visible[t]], colors[visible[t]], disc)
    clip = Clip(frames=frames, fps=10.0)
    tracks = Tracks(xy=xy, visible=visible, confidence=confidence, queries=queries, frame_size=(h, w),
                    meta={"source": "synthetic"})
    scene = Scene(intrinsics=K[None], image_size=(h, w), camera_index=np.zeros(num_frames, np.int64),
                  world_from_cam=poses, registered=np.ones(num_frames, bool), points=points,
                  colors=colors, track_ids=np.arange(num_points))
    return clip, tracks, scene
