"""Point-cloud clean-up: statistical outlier removal and voxel thinning.

Both return indices into the input so that colours, track ids and errors stay
attached to their points. The outlier rule is open3d's ``remove_statistical_outlier``
(checked against it in the tests), computed with a SciPy k-d tree because importing
open3d alone takes several seconds.
"""

from __future__ import annotations

import numpy as np

__all__ = ["auto_voxel_size", "statistical_outliers", "voxel_thin"]


def statistical_outliers(points: np.ndarray, nb_neighbors: int = 20, std_ratio: float = 2.0) -> np.ndarray:
    """Indices of the points kept by statistical outlier removal.

    A point is dropped when its mean distance to its ``nb_neighbors`` nearest
    points (itself included, as open3d counts) exceeds the mean of that quantity over the cloud by more
    than ``std_ratio`` sample standard deviations.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(pts) <= nb_neighbors:
        return np.arange(len(pts))
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(pts).query(pts, k=int(nb_neighbors))
    mean_d = dist.mean(axis=1)
    limit = mean_d.mean() + std_ratio * mean_d.std(ddof=1)
    return np.flatnonzero(mean_d <= limit)


def auto_voxel_size(points: np.ndarray, fraction: float = 0.002) -> float:
    """``fraction`` of the robust extent (5th-95th percentile box diagonal) of the cloud."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(pts) < 2:
        return 0.0
    lo, hi = np.percentile(pts, [5, 95], axis=0)
    return float(np.linalg.norm(hi - lo) * fraction)


def voxel_thin(points: np.ndarray, voxel_size: float, scores: np.ndarray | None = None) -> np.ndarray:
    """Indices keeping one point per voxel of edge ``voxel_size``: the lowest ``score`` in it.

    Unlike averaging down-samplers this keeps real points (and their track ids).
    ``voxel_size <= 0`` keeps everything.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if voxel_size <= 0 or len(pts) == 0:
        return np.arange(len(pts))
    s = np.zeros(len(pts)) if scores is None else np.asarray(scores, dtype=np.float64)
    keys = np.floor((pts - pts.min(0)) / voxel_size).astype(np.int64)
    # Sort by voxel, then by score, and keep the first point of every voxel.
    order = np.lexsort((s, keys[:, 2], keys[:, 1], keys[:, 0]))
    k = keys[order]
    first = np.ones(len(k), dtype=bool)
    first[1:] = np.any(k[1:] != k[:-1], axis=1)
    return np.sort(order[first])
