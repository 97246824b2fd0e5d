"""Accuracy of a dense point cloud against rendered depth maps (the ``scenes/`` test data).

Each point is compared in the camera of its query frame, the frame where it is certainly seen:
its depth there against the rendered z-depth at the pixel where it projects. Errors are given
in units of the camera path radius (largest distance of a camera centre from their mean), the
scale the scenes' README judges camera accuracy in, so that point and camera errors compare.
"""

from __future__ import annotations

import numpy as np

__all__ = ["depth_errors", "path_radius"]


def path_radius(cam_to_world: np.ndarray) -> float:
    """Largest distance of a camera centre from the mean centre."""
    c = np.asarray(cam_to_world, dtype=np.float64)[:, :3, 3]
    return float(np.linalg.norm(c - c.mean(0), axis=1).max())


def depth_errors(points: np.ndarray, query_frames: np.ndarray, K: np.ndarray, cam_to_world: np.ndarray,
                 depth: np.ndarray) -> np.ndarray:
    """(P,) |depth - true depth| of each point in its query camera, over the path radius.

    ``K`` (3, 3) and ``cam_to_world`` (T, 4, 4) OpenCV camera-to-world of the frames of ``depth``
    (T, H, W) z-depth maps. The true depth is interpolated as inverse depth (linear in the image
    on a plane) at the projected sub-pixel position; across a depth edge (corners more than 5 %
    apart) the nearest pixel is taken. Points behind the camera or outside the frame get inf.
    """
    wfc = np.asarray(cam_to_world, dtype=np.float64)
    qf = np.asarray(query_frames, dtype=np.int64)
    _, h, w = depth.shape
    cfw = np.linalg.inv(wfc[qf])
    pc = np.einsum("pij,pj->pi", cfw[:, :3, :3], np.asarray(points, dtype=np.float64)) + cfw[:, :3, 3]
    uv = pc @ np.asarray(K, dtype=np.float64).T
    with np.errstate(divide="ignore", invalid="ignore"):
        u, v = uv[:, 0] / uv[:, 2], uv[:, 1] / uv[:, 2]
    inside = (pc[:, 2] > 0) & (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)
    u, v = np.where(inside, u, 0.0), np.where(inside, v, 0.0)
    x0 = np.clip(np.floor(u), 0, w - 2).astype(np.int64)
    y0 = np.clip(np.floor(v), 0, h - 2).astype(np.int64)
    fx, fy = np.clip(u - x0, 0, 1), np.clip(v - y0, 0, 1)
    with np.errstate(divide="ignore"):
        c = np.stack([1.0 / depth[qf, y0 + dy, x0 + dx].astype(np.float64) for dy in (0, 1) for dx in (0, 1)], 1)
    inv = (1 - fy) * ((1 - fx) * c[:, 0] + fx * c[:, 1]) + fy * ((1 - fx) * c[:, 2] + fx * c[:, 3])
    edge = c.max(1) - c.min(1) > 0.05 * c.max(1)
    near = depth[qf, np.rint(v).astype(np.int64), np.rint(u).astype(np.int64)].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        true = np.where(edge, near, 1.0 / inv)
        err = np.abs(pc[:, 2] - true) / path_radius(wfc)
    return np.where(inside & np.isfinite(err), err, np.inf)
