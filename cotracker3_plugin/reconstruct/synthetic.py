"""Synthetic scenes with known cameras, for tests and benchmarks of the reconstruction.

Random 3D points in a box are projected through a camera that moves on an arc while
looking at the box; the projections (plus Gaussian pixel noise) are the tracks. An
optional cluster of points moves on its own (a "moving object") so that its tracks
break the epipolar geometry of the static scene.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cotracker3_plugin.tracks import Tracks

__all__ = ["SyntheticScene", "look_at", "make_synthetic_scene"]


@dataclass
class SyntheticScene:
    tracks: Tracks
    world_from_cam: np.ndarray
    """(T, 4, 4) true OpenCV camera-to-world poses."""
    K: np.ndarray
    points: np.ndarray
    """(N, 3) true world points at frame 0 (moving ones move afterwards)."""
    moving: np.ndarray
    """(N,) bool: the track belongs to the moving object."""


def look_at(centre: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, -1.0, 0.0])) -> np.ndarray:
    """OpenCV camera-to-world pose at ``centre`` looking at ``target`` (y down, so ``up`` is -y)."""
    z = np.asarray(target, float) - np.asarray(centre, float)
    z /= np.linalg.norm(z)
    x = np.cross(-np.asarray(up, float), z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    m = np.eye(4)
    m[:3, :3] = np.stack([x, y, z], axis=1)
    m[:3, 3] = centre
    return m


def make_synthetic_scene(num_frames: int = 30, num_points: int = 400, *, size: tuple[int, int] = (480, 640),
                         focal: float = 600.0, arc_deg: float = 40.0, radius: float = 6.0,
                         noise_px: float = 1.0, moving_fraction: float = 0.0, seed: int = 0) -> SyntheticScene:
    """Points in a 4 x 3 x 4 box around (0, 0, 0); cameras on an arc of ``arc_deg`` at ``radius``."""
    rng = np.random.default_rng(seed)
    h, w = size
    K = np.array([[focal, 0, (w - 1) / 2], [0, focal, (h - 1) / 2], [0, 0, 1.0]])
    pts = rng.uniform([-2, -1.5, -2], [2, 1.5, 2], (num_points, 3))
    angles = np.radians(np.linspace(-arc_deg / 2, arc_deg / 2, num_frames))
    wfc = np.stack([
        look_at(np.array([radius * np.sin(a), 0.3 * np.sin(2 * a), -radius * np.cos(a)]), np.zeros(3))
        for a in angles
    ])
    n_mov = int(round(moving_fraction * num_points))
    moving = np.zeros(num_points, dtype=bool)
    moving[:n_mov] = True
    # Moving object: a small cluster translating sideways and up at its own pace.
    pts[:n_mov] = rng.normal([0.5, 0.0, -1.0], 0.3, (n_mov, 3))
    world = np.repeat(pts[None], num_frames, axis=0)
    drift = np.linspace(0, 1, num_frames)[:, None] * np.array([1.5, -0.8, 0.4])
    world[:, :n_mov] += drift[:, None]
    cfw = np.linalg.inv(wfc)
    pc = np.einsum("tij,tnj->tni", cfw[:, :3, :3], world) + cfw[:, None, :3, 3]
    uv = np.einsum("ij,tnj->tni", K, pc)
    xy = uv[..., :2] / uv[..., 2:] + rng.normal(0, noise_px, (num_frames, num_points, 2))
    visible = (pc[..., 2] > 0.1) & (xy[..., 0] >= 0) & (xy[..., 0] <= w - 1) & (xy[..., 1] >= 0) & (xy[..., 1] <= h - 1)
    first = np.argmax(visible, axis=0)
    queries = np.concatenate([first[:, None], xy[first, np.arange(num_points)]], axis=1)
    tracks = Tracks(xy=xy, visible=visible, confidence=visible.astype(np.float32), queries=queries,
                    frame_size=(h, w), meta={"source": "synthetic"})
    return SyntheticScene(tracks, wfc, K, pts, moving)
