"""Pure numpy geometry for the viewer: poses, lifting 2D tracks to 3D, click picking.

Conventions follow :mod:`cotracker3_plugin.reconstruct.scene`: OpenCV camera axes
(x right, y down, z forward), ``world_from_cam`` camera-to-world 4x4 poses, pixel
centres at integer coordinates.
"""

from __future__ import annotations

import numpy as np


def wxyz_from_matrix(rot: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) of a 3x3 rotation matrix (Shepperd's method, stable)."""
    m = np.asarray(rot, dtype=np.float64)
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def vertical_fov(K: np.ndarray, height: int) -> float:
    """Vertical field of view in radians of a pinhole camera with intrinsics ``K``."""
    return float(2.0 * np.arctan2(height / 2.0, K[1, 1]))


def scene_extent(points: np.ndarray, centers: np.ndarray) -> float:
    """A robust size of the scene (5-95 percentile box diagonal of points and camera centres)."""
    xyz = np.concatenate([np.asarray(points).reshape(-1, 3), np.asarray(centers).reshape(-1, 3)])
    xyz = xyz[np.isfinite(xyz).all(1)]
    if len(xyz) < 2:
        return 1.0
    lo, hi = np.percentile(xyz, 5, axis=0), np.percentile(xyz, 95, axis=0)
    ext = float(np.linalg.norm(hi - lo))
    return ext if ext > 1e-9 else 1.0


def lift_to_depth(xy: np.ndarray, world_points: np.ndarray, world_from_cam: np.ndarray,
                  K: np.ndarray) -> np.ndarray:
    """Back-project pixels to the depth that ``world_points`` have in this camera.

    ``xy`` (N, 2) pixels of one frame and ``world_points`` (N, 3) the triangulated
    point of each track; returns (N, 3) world positions. For a perfectly tracked static
    point every frame lifts to the point itself, so the spread of a trail shows the 2D
    motion (object motion or tracking drift) at the point's distance. NaN where the
    point is behind the camera.
    """
    rot, center = world_from_cam[:3, :3], world_from_cam[:3, 3]
    cam = (world_points - center) @ rot  # = rot.T @ (X - C), row-wise
    z = cam[:, 2]
    x = (xy[:, 0] - K[0, 2]) / K[0, 0] * z
    y = (xy[:, 1] - K[1, 2]) / K[1, 1] * z
    lifted = np.stack([x, y, z], axis=1) @ rot.T + center
    lifted[z <= 0] = np.nan
    return lifted


def pick_nearest_to_ray(points: np.ndarray, origin: np.ndarray, direction: np.ndarray,
                        max_angle: float = 0.02) -> int:
    """Index of the point closest in angle to the ray (in front of it), or -1 if none within ``max_angle`` rad."""
    if len(points) == 0:
        return -1
    d = direction / max(np.linalg.norm(direction), 1e-12)
    rel = points - origin
    along = rel @ d
    perp = np.linalg.norm(rel - along[:, None] * d, axis=1)
    angle = np.arctan2(perp, along)
    angle[~np.isfinite(angle) | (along <= 0)] = np.inf
    best = int(np.argmin(angle))
    return best if angle[best] <= max_angle else -1


def ray_plane_hit(origin: np.ndarray, direction: np.ndarray, plane_point: np.ndarray,
                  plane_normal: np.ndarray) -> np.ndarray | None:
    """Intersection of a ray with a plane, or None if parallel or behind the origin."""
    denom = float(direction @ plane_normal)
    if abs(denom) < 1e-12:
        return None
    s = float((plane_point - origin) @ plane_normal) / denom
    return None if s < 0 else origin + s * direction
