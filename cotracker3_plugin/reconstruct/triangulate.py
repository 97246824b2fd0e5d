"""Dense triangulation: every track becomes a 3D point given the final camera poses.

Each observation is a ray from its camera centre; the point minimising the summed squared
distance to the rays is the solution of a 3x3 linear system per track. Observations that
reproject further than ``max_error`` px (or lie behind the camera) are dropped and the point
is solved again, so a track that slid off its surface for a few frames still gives a point.
Points seen under too small an angle (depth undetermined) or by too few frames are dropped.

The ray intersection minimises distances in space, which favours near cameras once the
observations are noisy; ``refine_iters`` Gauss-Newton steps then minimise the reprojection
error itself (in undistorted normalised coordinates, so the lens model is applied once).

Only the usable (frame, track) observations are computed on: dense tracks are short, so
they are a fraction of frames x tracks. Each chunk lists them sorted by track then frame;
every per-track sum, median or minimum is a reduction over the track's run of that list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["TriangulatedPoints", "per_camera", "triangulate_tracks"]

_SYM = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))  # unique entries of a symmetric 3x3


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


def per_camera(method: str, pts: np.ndarray, cam: np.ndarray, cameras: Sequence) -> np.ndarray:
    """``cameras[c].<method>`` on the rows of ``pts`` whose camera index ``cam`` is c -> (K, 2)."""
    out = np.empty((len(pts), 2))
    for c in np.unique(cam):
        sel = cam == c
        out[sel] = getattr(cameras[int(c)], method)(np.ascontiguousarray(pts[sel]))
    return out


# Per-observation vectors are stored component-major, (3, K) and (3, 4, K), so that every
# operation below runs on contiguous length-K arrays.

def _transform(P: np.ndarray, X: np.ndarray) -> np.ndarray:
    """P[:, :3] @ X + P[:, 3] for every observation: P (3, 4, K), X (3, K) -> (3, K)."""
    return P[:, 0] * X[0] + P[:, 1] * X[1] + P[:, 2] * X[2] + P[:, 3]


def _sums(seg: np.ndarray, M: int, sym: dict, vec: list) -> tuple[np.ndarray, np.ndarray]:
    """Per-track sums: (M, 3, 3) of the symmetric matrix with entries ``sym[i, j]`` (i <= j,
    each (K,)) and (M, 3) of the vector ``vec``."""
    A = np.empty((M, 3, 3))
    for (i, j), v in sym.items():
        A[:, i, j] = A[:, j, i] = np.bincount(seg, v, minlength=M)
    b = np.stack([np.bincount(seg, v, minlength=M) for v in vec], axis=1)
    return A, b


def _solve(seg: np.ndarray, M: int, centres: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Least-squares ray intersection per track: ray k of track seg[k] from centres[:, k]
    along the unit dirs[:, k] (both (3, K)) -> (M, 3)."""
    # A = sum (I - d d^T), b = sum (I - d d^T) c = sum c - d (d . c)
    dc = dirs[0] * centres[0] + dirs[1] * centres[1] + dirs[2] * centres[2]
    A, b = _sums(seg, M, {(i, j): float(i == j) - dirs[i] * dirs[j] for i, j in _SYM},
                 list(centres - dirs * dc))
    # A tiny ridge keeps degenerate (single-ray or no-ray) systems solvable; they are dropped later.
    A += 1e-9 * np.eye(3)
    return np.linalg.solve(A, b[..., None])[..., 0]


def _gauss_newton(X: np.ndarray, seg: np.ndarray, P: np.ndarray, nrm: np.ndarray, iters: int) -> np.ndarray:
    """``iters`` Gauss-Newton steps on the squared normalised reprojection residuals.

    X (M, 3) world points; per observation: track seg (K,), camera-from-world P (3, 4, K) and
    undistorted normalised position nrm (2, K). Observations behind the camera are left out
    of a step (their Jacobian is meaningless there).
    """
    M = len(X)
    for _ in range(iters):
        pc = _transform(P, X.T[:, seg])
        front = pc[2] > 1e-9
        inv_z = 1.0 / np.where(front, pc[2], 1.0)
        u = np.where(front, pc[0] * inv_z, 0.0)
        v = np.where(front, pc[1] * inv_z, 0.0)
        f = inv_z * front
        ru, rv = (u - nrm[0]) * front, (v - nrm[1]) * front
        # d(x/z, y/z)/dX = (R[:2] - (u, v) R[2]) / z
        Ju = [(P[0, j] - u * P[2, j]) * f for j in range(3)]
        Jv = [(P[1, j] - v * P[2, j]) * f for j in range(3)]
        H, g = _sums(seg, M, {(i, j): Ju[i] * Ju[j] + Jv[i] * Jv[j] for i, j in _SYM},
                     [Ju[i] * ru + Jv[i] * rv for i in range(3)])
        H += 1e-12 * np.eye(3)
        try:
            step = np.linalg.solve(H, -g[..., None])[..., 0]
        except np.linalg.LinAlgError:
            # H exactly singular in floating point (a lone ray whose point sits almost on its
            # camera: J^T J ~ 1/z^2 swamps the ridge): no step for that track.
            step = np.zeros_like(g)
            for m in range(M):
                try:
                    step[m] = np.linalg.solve(H[m], -g[m])
                except np.linalg.LinAlgError:
                    pass
        X = X + np.where(np.isfinite(step), step, 0.0)
    return X


def _runs(seg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start positions of the runs of the sorted ``seg`` and the run number of every element."""
    new = np.empty(len(seg), bool)
    new[:1] = True
    np.not_equal(seg[1:], seg[:-1], out=new[1:])
    return np.flatnonzero(new), np.cumsum(new) - 1


def _median(seg: np.ndarray, v: np.ndarray, M: int) -> np.ndarray:
    """(M,) median of ``v`` per track ``seg``; inf for tracks with no values."""
    out = np.full(M, np.inf)
    if len(v) == 0:
        return out
    v = v[np.lexsort((v, seg))]
    n = np.bincount(seg, minlength=M)
    has = np.flatnonzero(n)
    start = (np.cumsum(n) - n)[has]
    out[has] = (v[start + (n[has] - 1) // 2] + v[start + n[has] // 2]) / 2
    return out


def _max_ray_angle_deg(X: np.ndarray, seg: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Approximate largest angle between the rays of each point (two-sweep diameter): the ray
    farthest from the mean direction (first in frame order on ties), then the ray farthest
    from that one. Ray k: track seg[k] (sorted) seen from centres[:, k]. 0 for no rays."""
    M = len(X)
    angle = np.zeros(M)
    if len(seg) == 0:
        return angle
    u = X.T[:, seg] - centres
    u /= np.maximum(np.linalg.norm(u, axis=0), 1e-12)
    n = np.maximum(np.bincount(seg, minlength=M), 1)
    mean = np.stack([np.bincount(seg, c, minlength=M) / n for c in u])  # (3, M)
    starts, run = _runs(seg)
    d = np.nan_to_num(np.einsum("ik,ik->k", u, mean[:, seg]), nan=np.inf)
    cand = np.flatnonzero(d == np.minimum.reduceat(d, starts)[run])
    a = u[:, cand[_runs(run[cand])[0]]]  # (3, runs)
    cos_ab = np.minimum.reduceat(np.nan_to_num(np.einsum("ik,ik->k", u, a[:, run]), nan=np.inf), starts)
    angle[seg[starts]] = np.degrees(np.arccos(np.clip(cos_ab, -1, 1)))
    return angle


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
    cam_of_frame = np.asarray(camera_index).astype(np.int64)
    wfc = np.asarray(world_from_cam, dtype=np.float64)
    # Component-major per frame: R_wc (3, 3, T), centres (3, T), cfw_c (3, 4, T).
    R_wc = np.where(np.isfinite(wfc[:, :3, :3]), wfc[:, :3, :3], 0.0).transpose(1, 2, 0)
    centres = np.where(np.isfinite(wfc[:, :3, 3]), wfc[:, :3, 3], 0.0).T
    cfw = np.tile(np.eye(4), (T, 1, 1))
    cfw[reg] = np.linalg.inv(wfc[reg])
    cfw_c = cfw[:, :3].transpose(1, 2, 0)
    keep_cols = np.flatnonzero(use.sum(0) >= min_views)

    pts_all, ids_all, err_all, nv_all, inl_all, ang_all = [], [], [], [], [], []
    for s in range(0, len(keep_cols), chunk):
        cols = keep_cols[s:s + chunk]
        M = len(cols)
        # The chunk's usable observations, sorted by track then frame.
        mk, tk = np.nonzero(use[:, cols].T)
        K = len(tk)
        obs = xy[tk, cols[mk]].astype(np.float64)  # (K, 2)
        cam = cam_of_frame[tk]
        nrm = np.ascontiguousarray(np.nan_to_num(per_camera("cam_from_img", obs, cam, cameras)).T)
        R = np.take(R_wc, tk, axis=2)
        dirs = R[:, 0] * nrm[0] + R[:, 1] * nrm[1] + R[:, 2]  # R @ (x, y, 1)
        dirs /= np.maximum(np.linalg.norm(dirs, axis=0), 1e-12)
        c_k, P = np.take(centres, tk, axis=1), np.take(cfw_c, tk, axis=2)
        w = np.ones(K, bool)  # observations used by the current solve
        for r in range(max(1, rounds) + 1):
            a = np.flatnonzero(w)
            X = _solve(mk[a], M, c_k[:, a], dirs[:, a])
            if refine_iters > 0:
                X = _gauss_newton(X, mk[a], P[:, :, a], nrm[:, a], refine_iters)
            # Every usable observation is re-checked: one dropped in an early round may come back.
            pc = _transform(P, X.T[:, mk])
            front = np.isfinite(pc[2]) & (pc[2] > 1e-9)
            px = np.full((K, 2), np.nan)
            px[front] = per_camera("img_from_cam", pc[:, front].T, cam[front], cameras)
            err = np.linalg.norm(px - obs, axis=-1)
            valid = np.isfinite(err) & (pc[2] > 0)
            limit = np.full(M, float(max_error))
            if r < rounds:
                # A gross slip in one frame pulls the first solution off for all frames:
                # first drop only what is far above the track's median residual.
                sel = w & ~np.isnan(err)
                limit = np.maximum(limit, 3.0 * _median(mk[sel], err[sel], M))
            w = valid & (err < limit[mk])
        nv = np.bincount(mk[w], minlength=M)
        err_mean = np.bincount(mk[w], err[w], minlength=M) / np.maximum(nv, 1)
        angle = _max_ray_angle_deg(X, mk[w], c_k[:, w])
        ok = (nv >= min_views) & (angle >= min_angle_deg) & np.all(np.isfinite(X), axis=1)
        good = np.zeros((T, M), bool)
        good[tk[w], mk[w]] = True
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
