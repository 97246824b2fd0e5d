"""Clean-up of a dense cloud with open3d: statistical outliers, voxel merging, a point budget.

Every function returns indices into its input, so that colours, errors and view counts
stay attached to their points. Voxel merging keeps, per voxel, the real point with the
lowest score (reprojection error) instead of open3d's average: an average of points from
two query frames that disagree slightly is a point neither saw.

open3d is imported inside the functions: importing it takes seconds, and the core package
imports this module.
"""

from __future__ import annotations

import numpy as np

__all__ = ["budget_subsample", "footprint_voxel_size", "normals_o3d", "statistical_outliers_o3d",
           "voxel_representatives"]


def _cloud(points: np.ndarray):
    import open3d as o3d

    return o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, dtype=np.float64)))


def normals_o3d(points: np.ndarray, radius: float, max_nn: int) -> np.ndarray:
    """(P, 3) unit normals from open3d's local plane fit to the points within ``radius`` (at most
    ``max_nn`` of them), unoriented."""
    if len(points) < 3 or not radius > 0:
        return np.tile([0.0, 0.0, 1.0], (len(points), 1))
    import open3d as o3d

    pcd = _cloud(points)
    pcd.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=float(radius), max_nn=int(max_nn)))
    return np.asarray(pcd.normals)


def statistical_outliers_o3d(points: np.ndarray, nb_neighbors: int, std_ratio: float) -> np.ndarray:
    """Indices kept by open3d's ``remove_statistical_outlier`` (all of them if too few points)."""
    if nb_neighbors <= 0 or len(points) <= nb_neighbors:
        return np.arange(len(points))
    _, kept = _cloud(points).remove_statistical_outlier(nb_neighbors=int(nb_neighbors),
                                                        std_ratio=float(std_ratio))
    return np.sort(np.asarray(kept, dtype=np.int64))


def voxel_representatives(points: np.ndarray, voxel_size: float, scores: np.ndarray) -> np.ndarray:
    """Indices of one point per occupied voxel of edge ``voxel_size`` (open3d's grid): the lowest score.

    ``voxel_size <= 0`` keeps every point.
    """
    n = len(points)
    if voxel_size <= 0 or n == 0:
        return np.arange(n)
    pc = _cloud(points)
    lo, hi = pc.get_min_bound(), pc.get_max_bound()
    _, _, traced = pc.voxel_down_sample_and_trace(float(voxel_size), lo, hi, False)
    members = [np.asarray(v, dtype=np.int64) for v in traced]
    idx = np.concatenate(members)
    voxel = np.repeat(np.arange(len(members)), [len(m) for m in members])
    order = np.lexsort((np.asarray(scores, dtype=np.float64)[idx], voxel))
    first = np.ones(len(order), dtype=bool)
    first[1:] = voxel[order][1:] != voxel[order][:-1]
    return np.sort(idx[order][first])


def footprint_voxel_size(depths: np.ndarray, step_px: np.ndarray | float, focal_px: np.ndarray | float,
                         fraction: float = 0.25) -> float:
    """``fraction`` of the median distance between neighbouring grid samples on the surfaces.

    A lattice spacing of ``step_px`` pixels at depth ``z`` covers ``z * step_px / focal_px``
    on a fronto-parallel surface (per point: arrays broadcast). A quarter of that merges the
    near-duplicates that several query frames give of one spot, and caps the density at about
    16 points per lattice cell however many query frames see a surface, without thinning any
    single frame's lattice.
    """
    fp = np.asarray(depths, dtype=np.float64) * np.asarray(step_px, dtype=np.float64) / np.asarray(focal_px)
    fp = fp[np.isfinite(fp) & (fp > 0)]
    return float(fraction * np.median(fp)) if len(fp) else 0.0


def budget_subsample(n: int, max_points: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``max_points`` of ``n`` points, drawn at random (seeded)."""
    if max_points is None or n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=int(max_points), replace=False))
