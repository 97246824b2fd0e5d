"""Dense triangulation: every track becomes a 3D point given the final camera poses.

Vectorised over tracks: each observation is a ray from its camera centre; the point
minimising the summed squared distance to the rays is the solution of a 3x3 linear
system per track. Observations that reproject further than ``max_error`` px (or lie
behind the camera) are dropped and the point is solved again, so a track that slid off
its surface for a few frames still gives a point. Points seen under too small an angle
(depth undetermined) or by too few frames are dropped.

The ray intersection minimises distances in space, which favours near cameras once the
observations are noisy; ``refine_iters`` Gauss-Newton steps then minimise the reprojection
error itself (in undistorted normalised coordinates, so the lens model is applied once).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["TriangulatedPoints", "triangulate_tracks"]


@dataclass
class TriangulatedPoints:
    points: np.ndarray
    """(P, 3) world coordinates."""
    track_ids: np.ndarray
    """(P,) index of the track of each point."""
    errors: np.ndarray
    """(P,) mean reprojection error (px) over the inlier observations."""
    num_views: np.ndarray
    """(P,) number of inlier observations."""
    inlier_obs: np.ndarray
    """(T, P) bool: observations used for each point."""
    angles: np.ndarray | None = None
    """(P,) approximate largest angle (degrees) between the inlier rays of each point."""


def _normalised_coords(xy: np.ndarray, usable: np.ndarray, cameras: Sequence, camera_index: np.ndarray
                       ) -> np.ndarray:
    """(T, N, 2) undistorted normalised image coordinates (NaN where not usable)."""
    out = np.full(xy.shape, np.nan)
    for t in range(xy.shape[0]):
        idx = np.flatnonzero(usable[t])
        if len(idx):
            out[t, idx] = cameras[int(camera_index[t])].cam_from_img(xy[t, idx].astype(np.float64))
    return out


def _project(cameras: Sequence, camera_index: np.ndarray, pts_cam: np.ndarray) -> np.ndarray:
    """(T, M, 3) camera-frame points -> (T, M, 2) pixels (with the camera's distortion)."""
    out = np.full(pts_cam.shape[:2] + (2,), np.nan)
    for t in range(pts_cam.shape[0]):
        z = pts_cam[t, :, 2]
        ok = np.isfinite(z) & (z > 1e-9)
        if ok.any():
            out[t, ok] = cameras[int(camera_index[t])].img_from_cam(pts_cam[t, ok])
    return out


def _solve(centres: np.ndarray, dirs: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Least-squares ray intersection. centres (T,3), dirs (T,M,3) unit, w (T,M) -> (M,3)."""
    eye = np.eye(3)
    proj = eye - dirs[..., :, None] * dirs[..., None, :]  # (T, M, 3, 3)
    A = np.einsum("tm,tmij->mij", w, proj)
    b = np.einsum("tm,tmij,tj->mi", w, proj, centres)
    # A tiny ridge keeps degenerate (single-ray) systems solvable; they are dropped later.
    A += 1e-9 * eye
    return np.linalg.solve(A, b[..., None])[..., 0]


def _gauss_newton(X: np.ndarray, nrm: np.ndarray, w: np.ndarray, cfw: np.ndarray, iters: int
                  ) -> np.ndarray:
    """``iters`` Gauss-Newton steps on the squared normalised reprojection residuals.

    X (M, 3) world points, nrm (T, M, 2) undistorted normalised observations, w (T, M)
    weights (0: unused), cfw (T, 4, 4) camera-from-world. Observations behind the camera
    are left out of a step (their Jacobian is meaningless there).
    """
    R, t = cfw[:, :3, :3], cfw[:, :3, 3]
    n = np.nan_to_num(nrm)
    T, M = w.shape
    for _ in range(iters):
        pc = np.matmul(X[None], R.transpose(0, 2, 1)) + t[:, None]  # (T, M, 3)
        ww = np.where(pc[..., 2] > 1e-9, w, 0.0)
        z = np.where(ww > 0, pc[..., 2], 1.0)
        u = pc[..., :2] / z[..., None]
        r = (u - n) * ww[..., None]  # (T, M, 2)
        # d(x/z, y/z)/dX = (R[:2] - u R[2]) / z, rows weighted like the residuals.
        J = (R[:, None, :2, :] - u[..., :, None] * R[:, None, 2:3, :]) * (ww / z)[..., None, None]
        Jm = J.transpose(1, 0, 2, 3).reshape(M, 2 * T, 3)  # batched matmul: BLAS, not einsum
        H = np.matmul(Jm.transpose(0, 2, 1), Jm) + 1e-12 * np.eye(3)
        g = np.matmul(Jm.transpose(0, 2, 1), r.transpose(1, 0, 2).reshape(M, 2 * T, 1))
        step = np.linalg.solve(H, -g)[..., 0]
        X = X + np.where(np.isfinite(step), step, 0.0)
    return X


def _max_ray_angle_deg(X: np.ndarray, centres: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Approximate largest angle between the inlier rays of each point (two-sweep diameter)."""
    u = X[None] - centres[:, None]  # (T, M, 3)
    u /= np.maximum(np.linalg.norm(u, axis=-1, keepdims=True), 1e-12)
    u = np.where(w[..., None] > 0, u, np.nan)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: points with no rays
        mean = np.nanmean(u, axis=0)
    a_idx = np.nanargmin(np.nan_to_num(np.einsum("tmi,mi->tm", u, mean), nan=np.inf), axis=0)
    a = u[a_idx, np.arange(u.shape[1])]
    cos_ab = np.nan_to_num(np.einsum("tmi,mi->tm", u, a), nan=np.inf).min(axis=0)
    return np.degrees(np.arccos(np.clip(cos_ab, -1, 1)))


def triangulate_tracks(xy: np.ndarray, usable: np.ndarray, world_from_cam: np.ndarray,
                       registered: np.ndarray, cameras: Sequence, camera_index: np.ndarray, *,
                       max_error: float = 3.0, min_angle_deg: float = 1.5, min_views: int = 2,
                       rounds: int = 2, chunk: int = 4096, refine_iters: int = 0) -> TriangulatedPoints:
    """Triangulate every track (columns of ``xy`` (T, N, 2)) from the registered frames.

    ``cameras`` are pycolmap cameras (their ``cam_from_img``/``img_from_cam`` handle
    distortion), ``camera_index`` (T,) picks one per frame, ``world_from_cam`` (T, 4, 4)
    are OpenCV camera-to-world poses. ``rounds`` re-solves drop observations far above
    the track's median residual, a final one keeps those below ``max_error``.
    ``refine_iters`` Gauss-Newton steps on the reprojection error follow every solve.
    """
    T, N = usable.shape
    use = usable & np.asarray(registered, dtype=bool)[:, None]
    reg = np.flatnonzero(np.asarray(registered, dtype=bool))
    wfc = np.asarray(world_from_cam, dtype=np.float64)
    R_wc = np.where(np.isfinite(wfc[:, :3, :3]), wfc[:, :3, :3], 0.0)
    centres = np.where(np.isfinite(wfc[:, :3, 3]), wfc[:, :3, 3], 0.0)
    cfw = np.tile(np.eye(4), (T, 1, 1))
    cfw[reg] = np.linalg.inv(wfc[reg])
    keep_cols = np.flatnonzero(use.sum(0) >= min_views)

    pts_all, ids_all, err_all, nv_all, inl_all, ang_all = [], [], [], [], [], []
    for s in range(0, len(keep_cols), chunk):
        cols = keep_cols[s:s + chunk]
        u = use[:, cols]
        nrm = _normalised_coords(xy[:, cols], u, cameras, camera_index)
        rays = np.concatenate([nrm, np.ones(nrm.shape[:2] + (1,))], axis=-1)
        dirs = np.einsum("tij,tmj->tmi", R_wc, np.nan_to_num(rays))
        dirs /= np.maximum(np.linalg.norm(dirs, axis=-1, keepdims=True), 1e-12)
        w = u.astype(np.float64)
        for r in range(max(1, rounds) + 1):
            X = _solve(centres, dirs, w)
            if refine_iters > 0:
                X = _gauss_newton(X, nrm, w, cfw, refine_iters)
            pc = np.einsum("tij,mj->tmi", cfw[:, :3, :3], X) + cfw[:, None, :3, 3]
            px = _project(cameras, camera_index, pc)
            err = np.linalg.norm(px - xy[:, cols], axis=-1)
            valid = u & np.isfinite(err) & (pc[..., 2] > 0)
            limit = np.full(len(cols), float(max_error))
            if r < rounds:
                # A gross slip in one frame pulls the first solution off for all frames:
                # first drop only what is far above the track's median residual.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # tracks with no rays left
                    med = np.nanmedian(np.where(w > 0, err, np.nan), axis=0)
                limit = np.maximum(limit, 3.0 * np.nan_to_num(med, nan=np.inf))
            good = valid & (err < limit[None])
            w = good.astype(np.float64)
        nv = good.sum(0)
        err_mean = np.where(good, err, 0).sum(0) / np.maximum(nv, 1)
        angle = _max_ray_angle_deg(X, centres, w) if len(cols) else np.zeros(0)
        ok = (nv >= min_views) & (angle >= min_angle_deg) & np.all(np.isfinite(X), axis=1)
        pts_all.append(X[ok])
        ids_all.append(cols[ok])
        err_all.append(err_mean[ok])
        nv_all.append(nv[ok])
        inl_all.append(good[:, ok])
        ang_all.append(angle[ok])
    if not pts_all:
        return TriangulatedPoints(np.zeros((0, 3)), np.zeros(0, np.int64), np.zeros(0),
                                  np.zeros(0, np.int64), np.zeros((T, 0), bool), np.zeros(0))
    return TriangulatedPoints(np.concatenate(pts_all), np.concatenate(ids_all).astype(np.int64),
                              np.concatenate(err_all), np.concatenate(nv_all),
                              np.concatenate(inl_all, axis=1), np.concatenate(ang_all))
