"""Photometric refinement once the cameras are known: the depth of dense points, the 2D observations of map
tracks.

A tracked point's position in a far frame carries the tracker's drift: chained Lucas-Kanade slides a little
along the image motion. That error goes straight into a triangulated depth, and into the cameras that bundle
adjustment fits to the tracks. Once the cameras are (nearly) solved, the patch around a point in its
reference frame can be carried into any other frame exactly: lay it on a plane through the point (its surface
normal, or fronto-parallel), map it by the plane-induced homography, compare by normalised cross-correlation
(NCC). Two questions are asked that way:

- :func:`refine_depths` (dense points, cameras fixed): which depth along the query pixel's ray makes the
  patch look the same in the frames that saw it? The plane-sweep test of multi-view stereo, asked for one
  pixel at a time around the depth that triangulation gave. Candidates are inverse depths spaced so that the
  point moves ``step_px`` pixels in the most sensitive view; a coarse sweep finds the peak of the mean NCC
  over up to ``num_views`` frames, a finer one around it and a parabola through the best three give the depth.
- :func:`refine_observations` (map tracks, before a last bundle adjustment): where in each frame does the
  reference patch, carried there by the current cameras and point, match best? A 2D search around the
  predicted position gives an observation that does not accumulate drift (the idea of featuremetric
  refinement in Pixel-Perfect SfM, with NCC on image patches instead of learned features).

Coordinates: pixels (x right, y down, centres at integers), OpenCV camera axes. Cameras are pycolmap cameras
(distortion goes through their ``img_from_cam``/``cam_from_img`` for the patch centre; the patch's shape uses
the pinhole part, exact enough over a few pixels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cotracker3_plugin.reconstruct.triangulate import per_camera

__all__ = ["ObservationConfig", "PhotometricConfig", "PhotometricDepths", "depth_per_pixel", "grey_frames",
           "refine_depths", "refine_observations", "spread_views"]


@dataclass
class PhotometricConfig:
    """The depth sweep of :func:`refine_depths`."""

    patch_radius: int = 5
    """Half side of the square patch compared (5: 11 x 11 pixels)."""
    num_views: int = 4
    """Frames compared with the query frame per point (spread over the frames the tracker saw it in). On
    static_room (grid 96, 8 query frames) 6 views give a median error of 0.281 % of the radius against 0.292 %
    with 4, for 1.5x the sweep's time."""
    coarse_step_px: float = 0.5
    """Coarse sweep: displacement (pixels, in the most sensitive view) between candidate depths."""
    coarse_steps: int = 6
    """Coarse sweep: candidates on each side of the triangulated depth (reach = steps x step_px)."""
    fine_step_px: float = 0.125
    """Fine sweep around the coarse peak: displacement between candidates."""
    coarse_stride: int = 2
    """The coarse sweep compares every ``coarse_stride``-th patch row and column (the fine one all pixels)."""
    fine_steps: int = 2
    """Fine sweep: candidates on each side of the coarse peak."""
    min_score: float = 0.6
    """A refined depth needs at least this mean NCC over the views at its peak."""
    min_texture: float = 2.0
    """Least standard deviation of the query patch's grey levels (0-255) for NCC to mean anything."""
    chunk: int = 512
    """Points swept at once (memory: chunk x views x candidates x patch pixels floats)."""

    def check(self) -> None:
        """Raise :class:`~cotracker3_plugin.errors.UserError` naming the first invalid field."""
        from cotracker3_plugin.errors import UserError

        problems = [
            (self.patch_radius < 1, "patch_radius must be at least 1"),
            (self.num_views < 1, "num_views must be at least 1"),
            (self.coarse_step_px <= 0 or self.fine_step_px <= 0, "coarse_step_px and fine_step_px must be positive"),
            (self.coarse_steps < 1 or self.fine_steps < 1, "coarse_steps and fine_steps must be at least 1"),
            (self.coarse_stride < 1, "coarse_stride must be at least 1"),
            (not -1.0 <= self.min_score <= 1.0, "min_score is an NCC: between -1 and 1"),
            (self.chunk < 1, "chunk must be at least 1"),
        ]
        for bad, msg in problems:
            if bad:
                raise UserError(f"photometric sweep: {msg}.")


@dataclass
class PhotometricDepths:
    depth: np.ndarray
    """(P,) depth in the query camera: the sweep's where refined, else the input depth."""
    refined: np.ndarray
    """(P,) bool: the sweep found a textured, interior peak with mean NCC >= ``min_score``."""
    score: np.ndarray
    """(P,) mean NCC over the views at the chosen depth (NaN where no view could be compared)."""
    depth_per_px: np.ndarray
    """(P,) relative depth change per pixel of image motion in the point's most sensitive view (inf where
    no view moves): how far a one-pixel matching error would move the point, as a share of its depth."""


def spread_views(inliers: np.ndarray, query_frame: np.ndarray, num_views: int) -> np.ndarray:
    """(P, V) frames to compare each point in: its inlier frames other than the query frame,
    ``num_views`` of them spread evenly in time over the track (the first and last included), -1 padded.

    ``inliers`` (T, P) bool, ``query_frame`` (P,) frame index.
    """
    T, P = inliers.shape
    use = inliers.copy()
    use[query_frame, np.arange(P)] = False
    count = use.sum(0)
    order = np.argsort(~use, axis=0, kind="stable")  # the inlier frames first, in time order
    out = np.full((P, num_views), -1, dtype=np.int64)
    if num_views == 1:
        pos = np.zeros((P, 1))
    else:
        pos = np.linspace(0.0, 1.0, num_views)[None, :] * np.maximum(count - 1, 0)[:, None]
    pick = np.rint(pos).astype(np.int64)
    frames = np.take_along_axis(order.T, pick, axis=1)
    valid = np.arange(num_views)[None, :] < count[:, None]
    out[valid] = frames[valid]
    # Fewer inliers than slots: the rounding repeats frames; drop the repeats.
    dup = np.zeros_like(valid)
    dup[:, 1:] = out[:, 1:] == out[:, :-1]
    out[dup] = -1
    return out


def grey_frames(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W) float16 grey levels (0-255) of RGB uint8 frames, converted a frame at a time (a long clip's
    float RGB would not fit in memory; float16 keeps grey levels to 1/8 of a level)."""
    frames = np.asarray(frames)
    out = torch.empty(frames.shape[:3], dtype=torch.float16)
    weights = torch.tensor([0.299, 0.587, 0.114])
    for t in range(len(frames)):
        out[t] = (torch.from_numpy(np.ascontiguousarray(frames[t])).float() @ weights).half()
    return out


class _GreyFrames:
    """The grey frames (float16, flat) and bilinear sampling from them (four gathers per sample)."""

    def __init__(self, gray: torch.Tensor):
        self.t, self.h, self.w = gray.shape
        self.flat = gray.reshape(-1)

    def sample(self, frame: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Bilinear samples (float32) at (x, y) of ``frame`` (broadcast); coordinates must lie inside the frame."""
        x0 = x.floor().clamp_(0, self.w - 2)
        y0 = y.floor().clamp_(0, self.h - 2)
        fx, fy = x - x0, y - y0
        idx = (frame * self.h + y0.long()) * self.w + x0.long()
        a, b = self.flat[idx].float(), self.flat[idx + 1].float()
        c, d = self.flat[idx + self.w].float(), self.flat[idx + self.w + 1].float()
        top = a + (b - a) * fx
        bottom = c + (d - c) * fx
        return top + (bottom - top) * fy


def _ncc(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """NCC over the last axis; ``a`` is already zero-mean with unit norm."""
    b = b - b.mean(-1, keepdim=True)
    return (a * b).sum(-1) / b.norm(dim=-1).clamp_min(1e-6)


class _Rays:
    """Each point's query ray and the poses of its views: where it lands at a given inverse depth."""

    def __init__(self, cameras: list, cam_of_frame: np.ndarray, cfw: np.ndarray, qf: np.ndarray, qxy: np.ndarray,
                 views: np.ndarray):
        self.cameras, self.cam_of_frame, self.views = cameras, cam_of_frame, views
        self.vf = np.maximum(views, 0)
        rel = cfw[self.vf] @ np.linalg.inv(cfw[qf])[:, None]  # (P, V, 4, 4) query camera -> view camera
        self.R, self.t = rel[..., :3, :3], rel[..., :3, 3]
        self.ray = np.concatenate([per_camera("cam_from_img", qxy, cam_of_frame[qf], cameras),
                                   np.ones((len(qf), 1))], 1)

    def centres(self, rho: np.ndarray) -> np.ndarray:
        """Pixel of each point in each view at inverse depths ``rho`` (P, C) -> (P, V, C, 2), through
        the full camera model (NaN behind the camera)."""
        X = self.ray[:, None, :] / rho[..., None]  # (P, C, 3) query camera
        Xv = np.einsum("pvij,pcj->pvci", self.R, X) + self.t[:, :, None]
        z = Xv[..., 2]
        P, V, C = z.shape
        ok = (z > 1e-9).reshape(-1)
        px = np.full((P * V * C, 2), np.nan)
        if ok.any():
            cam = np.broadcast_to(self.cam_of_frame[self.vf][:, :, None], (P, V, C)).reshape(-1)
            px[ok] = per_camera("img_from_cam", np.ascontiguousarray(Xv.reshape(-1, 3)[ok]), cam[ok],
                                      self.cameras)
        return px.reshape(P, V, C, 2)

    def sensitivity(self, rho: np.ndarray) -> np.ndarray:
        """Largest pixel motion per unit inverse depth over each point's views, at ``rho`` (P,)."""
        eps = 1e-4 * rho
        c = self.centres(np.stack([rho - eps, rho + eps], 1))  # (P, V, 2, 2)
        move = np.linalg.norm(c[:, :, 1] - c[:, :, 0], axis=-1) / (2 * eps[:, None])
        move = np.where((self.views >= 0) & np.isfinite(move), move, 0.0)
        return move.max(axis=1) if move.shape[1] else np.zeros(len(rho))


class _Sweeper(_Rays):
    """Geometry and sampling of one chunk of points.

    The patch lies on a plane through the point (normal ``n``, query camera). Its pixel ``p``
    (homogeneous, query image) maps into view v through the plane-induced homography
    ``H(rho) = A + rho b w^T`` with ``A = K_v R K_q^-1``, ``b = K_v t`` and ``w = K_q^-T n / (n . c)``
    (``c`` the centre's ray at depth 1, ``rho`` its inverse depth, ``X_v = R X + t``). The patch
    centre goes through the full camera model (distortion); the other pixels keep their offset
    from it under the pinhole homography.
    """

    def __init__(self, frames: _GreyFrames, cameras: list, cam_of_frame: np.ndarray, K: np.ndarray,
                 cfw: np.ndarray, qf: np.ndarray, qxy: np.ndarray, views: np.ndarray, radius: int,
                 normals: np.ndarray | None = None):
        _Rays.__init__(self, cameras, cam_of_frame, cfw, qf, qxy, views)
        self.frames = frames
        self.h, self.w = frames.h, frames.w
        self.distorted = any(c.model.name not in ("PINHOLE", "SIMPLE_PINHOLE") for c in cameras)
        P, V = views.shape
        r = np.arange(-radius, radius + 1, dtype=np.float64)
        oy, ox = np.meshgrid(r, r, indexing="ij")
        off = np.stack([ox.ravel(), oy.ravel()], 1)  # (S, 2), the centre (0, 0) in the middle
        self.centre_idx = len(off) // 2
        pix = np.concatenate([qxy[:, None] + off[None], np.ones((P, len(off), 1))], -1)  # (P, S, 3)
        Kq_inv = np.linalg.inv(K[qf])
        Kv = K[self.vf]
        A = Kv @ self.R @ Kq_inv[:, None]  # (P, V, 3, 3)
        self.Ap = torch.from_numpy(np.einsum("pvij,psj->pvsi", A, pix)).float()  # (P, V, S, 3)
        self.b = torch.from_numpy(np.einsum("pvij,pvj->pvi", Kv, self.t)).float()  # (P, V, 3)
        if normals is None:
            normals = np.tile([0.0, 0.0, 1.0], (P, 1))
        n = np.asarray(normals, dtype=np.float64)
        nc = np.einsum("pi,pi->p", n, self.ray)
        wq = np.einsum("pji,pj->pi", Kq_inv, n) / np.where(np.abs(nc) > 1e-9, nc, 1e-9)[:, None]
        wp = np.einsum("pi,psi->ps", wq, pix)  # (P, S): 1 at the centre
        # Grazing planes (the patch would stretch far along the ray) keep the fronto-parallel patch.
        sane = np.all((wp > 0.5) & (wp < 2.0), axis=1) & np.isfinite(wp).all(1)
        self.wp = torch.from_numpy(np.where(sane[:, None], wp, 1.0)).float()
        qpatch = frames.sample(torch.from_numpy(qf)[:, None], torch.from_numpy(pix[..., 0]).float(),
                               torch.from_numpy(pix[..., 1]).float())
        self.raw_qpatch = qpatch
        qpatch = qpatch - qpatch.mean(-1, keepdim=True)
        # A query patch that leaves the frame counts as untextured: nothing to compare.
        q_inside = ((pix[..., 0] >= 0) & (pix[..., 0] <= self.w - 1) & (pix[..., 1] >= 0)
                    & (pix[..., 1] <= self.h - 1)).all(1)
        self.texture = np.where(q_inside, (qpatch.norm(dim=-1) / np.sqrt(qpatch.shape[-1])).numpy(), 0.0)
        self.off = off

    def _subset(self, stride: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """Patch pixels on every ``stride``-th row and column (the centre among them)."""
        sel = np.flatnonzero((self.off[:, 0] % stride == 0) & (self.off[:, 1] % stride == 0))
        idx = torch.from_numpy(sel)
        q = self.raw_qpatch[:, idx]
        q = q - q.mean(-1, keepdim=True)
        q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        return self.Ap[:, :, idx], self.wp[:, idx], q, int(np.flatnonzero(sel == self.centre_idx)[0])

    def _pixels(self, rho: np.ndarray, stride: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Where the patch pixels land in each view at inverse depths ``rho`` (P, C): x, y (P, V, C, S), whether
        every pixel is in front of the view's camera (P, V, C), and the query patch (normalised, (P, S))."""
        Ap, wp, qpatch, centre_idx = self._subset(stride)
        r = torch.from_numpy(rho).float()
        y = Ap[:, :, None] + r[:, None, :, None, None] * self.b[:, :, None, None, :] \
            * wp[:, None, None, :, None]  # (P, V, C, S, 3)
        z = y[..., 2]
        front = (z > 1e-6).all(-1)
        z = torch.where(z > 1e-6, z, torch.ones_like(z))
        px, py = y[..., 0] / z, y[..., 1] / z
        if self.distorted:
            c = torch.from_numpy(self.centres(rho)).float()
            px = px - px[..., centre_idx:centre_idx + 1] + c[..., 0:1]
            py = py - py[..., centre_idx:centre_idx + 1] + c[..., 1:2]
        return px, py, front, qpatch

    def _ncc_at(self, px: torch.Tensor, py: torch.Tensor, front: torch.Tensor, qpatch: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """NCC (P, V, C) of the query patch with the views sampled at (px, py) (P, V, C, S), and which views
        (P, V) lie inside the frame at every candidate."""
        inside = ((px >= 0) & (px <= self.w - 1) & (py >= 0) & (py <= self.h - 1)).all(-1) & front
        view_ok = inside.all(-1) & torch.from_numpy(self.views >= 0)
        px = torch.where(view_ok[:, :, None, None], px, torch.zeros_like(px)).nan_to_num_(0.0)
        py = torch.where(view_ok[:, :, None, None], py, torch.zeros_like(py)).nan_to_num_(0.0)
        vals = self.frames.sample(torch.from_numpy(self.vf)[:, :, None, None], px, py)  # (P, V, C, S)
        return _ncc(qpatch[:, None, None, :], vals), view_ok

    def scores(self, rho: np.ndarray, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Mean NCC over the usable views at inverse depths ``rho`` (P, C), and the number of views used (P,);
        ``stride`` > 1 compares every ``stride``-th patch row and column only (a cheaper coarse test)."""
        ncc, view_ok = self._ncc_at(*self._pixels(rho, stride))
        n = view_ok.sum(1)
        mean = (ncc * view_ok[:, :, None]).sum(1) / n[:, None].clamp_min(1)
        mean = torch.where(n[:, None] > 0, mean, torch.full_like(mean, float("nan")))
        return mean.numpy().astype(np.float64), n.numpy()

    def shifted_scores(self, rho: np.ndarray, shifts: np.ndarray, stride: int = 1
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """NCC in each view (P, V, C) with the patch at inverse depth ``rho`` (P,) moved by ``shifts`` pixels
        ((P, V, C, 2) or (C, 2)), which views lie inside at every shift (P, V), and the unshifted centres
        (P, V, 2)."""
        px, py, front, qpatch = self._pixels(rho[:, None], stride)
        centre = torch.stack([px[:, :, 0, px.shape[-1] // 2], py[:, :, 0, py.shape[-1] // 2]], -1)
        sh = torch.from_numpy(np.broadcast_to(shifts, (*px.shape[:2], shifts.shape[-2], 2)).copy()).float()
        px = px + sh[..., 0:1]
        py = py + sh[..., 1:2]
        ncc, view_ok = self._ncc_at(px, py, front.expand(*px.shape[:3]), qpatch)
        return ncc.numpy().astype(np.float64), view_ok.numpy(), centre.numpy().astype(np.float64)


def _peak(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the best candidate (P,) and its sub-sample offset from a parabola (in candidate steps)."""
    s = np.where(np.isfinite(scores), scores, -np.inf)
    k = s.argmax(1)
    C = s.shape[1]
    kk = np.clip(k, 1, C - 2)
    rows = np.arange(len(s))
    a, b, c = s[rows, kk - 1], s[rows, kk], s[rows, kk + 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        den = a - 2 * b + c
        off = np.where((den < 0) & np.isfinite(den), 0.5 * (a - c) / den, 0.0)
    off = np.where((k == kk), np.clip(off, -0.5, 0.5), 0.0)
    return k, off


def depth_per_pixel(cameras: list, cam_of_frame: np.ndarray, cam_from_world: np.ndarray, query_frame: np.ndarray,
                    query_xy: np.ndarray, depth: np.ndarray, views: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """(P,) relative depth change per pixel of image motion in each point's most sensitive view (inf where no
    view moves): a one-pixel matching error moves the point by this share of its depth. Arguments as in
    :func:`refine_depths`."""
    cfw = np.asarray(cam_from_world, dtype=np.float64)
    qf, qxy = np.asarray(query_frame, dtype=np.int64), np.asarray(query_xy, dtype=np.float64)
    rho = 1.0 / np.asarray(depth, dtype=np.float64)
    out = np.full(len(rho), np.inf)
    for s in range(0, len(rho), chunk):
        sl = slice(s, s + chunk)
        sens = _Rays(cameras, np.asarray(cam_of_frame), cfw, qf[sl], qxy[sl], np.asarray(views)[sl]).sensitivity(rho[sl])
        # d(depth)/depth = d(rho)/rho = d(px) / (sens rho).
        with np.errstate(divide="ignore", invalid="ignore"):
            out[sl] = np.where(sens > 0, 1.0 / (sens * rho[sl]), np.inf)
    return out


def refine_depths(frames: np.ndarray | torch.Tensor, cameras: list, cam_of_frame: np.ndarray, K: np.ndarray,
                  cam_from_world: np.ndarray, query_frame: np.ndarray, query_xy: np.ndarray, depth: np.ndarray,
                  views: np.ndarray, config: PhotometricConfig | None = None,
                  normals: np.ndarray | None = None, max_depth_per_px: float | None = None) -> PhotometricDepths:
    """Sweep each point's depth along its query ray for the best photometric agreement.

    Args:
        frames: (T, H, W, 3) uint8 RGB, or an already converted (T, H, W) float grey stack.
        cameras: pycolmap cameras; ``cam_of_frame`` (T,) picks the camera of each frame.
        K: (T, 3, 3) pinhole part of each frame's camera (the patch's shape).
        cam_from_world: (T, 4, 4) world-to-camera poses (OpenCV axes); rows of frames that no
            point uses may hold anything finite.
        query_frame, query_xy, depth: (P,), (P, 2), (P,) each point's query frame, pixel and the
            depth (z in that camera) to start from.
        views: (P, V) frames to compare each point in, -1 padded (:func:`spread_views`).
        normals: (P, 3) surface normal at each point in its query camera, to lay the patch on;
            None: fronto-parallel patches (good for small patches; slanted floors want normals).
        max_depth_per_px: points whose :func:`depth_per_pixel` exceeds it are not swept (saves the
            time of points a caller will drop); None: all are.
    """
    cfg = config or PhotometricConfig()
    cfg.check()
    P = len(depth)
    out_d = np.asarray(depth, dtype=np.float64).copy()
    refined = np.zeros(P, dtype=bool)
    score = np.full(P, np.nan)
    qf = np.asarray(query_frame, dtype=np.int64)
    qxy = np.asarray(query_xy, dtype=np.float64)
    cfw = np.asarray(cam_from_world, dtype=np.float64)
    Kf = np.asarray(K, dtype=np.float64)
    cam_of_frame = np.asarray(cam_of_frame, dtype=np.int64)
    views = np.asarray(views)
    per_px = depth_per_pixel(cameras, cam_of_frame, cfw, qf, qxy, out_d, views)
    todo = np.flatnonzero(np.isfinite(per_px) if max_depth_per_px is None else per_px <= max_depth_per_px)
    if len(todo) == 0:
        return PhotometricDepths(out_d, refined, score, per_px)
    corners = _GreyFrames(frames if isinstance(frames, torch.Tensor) else grey_frames(frames))
    with torch.no_grad():
        for s in range(0, len(todo), cfg.chunk):
            sl = todo[s:s + cfg.chunk]
            sw = _Sweeper(corners, cameras, cam_of_frame, Kf, cfw, qf[sl], qxy[sl], views[sl],
                          cfg.patch_radius, None if normals is None else np.asarray(normals)[sl])
            rho0 = 1.0 / out_d[sl]
            sens = sw.sensitivity(rho0)
            ok = np.isfinite(sens) & (sens > 0) & (sw.texture >= cfg.min_texture)
            sens = np.where(ok, sens, 1.0)
            # Coarse sweep, then a fine one around its peak.
            ks = np.arange(-cfg.coarse_steps, cfg.coarse_steps + 1)
            step = cfg.coarse_step_px / sens
            sc, _ = sw.scores(rho0[:, None] + ks[None] * step[:, None], cfg.coarse_stride)
            k, _ = _peak(sc)
            interior = (k > 0) & (k < len(ks) - 1)
            centre = rho0 + ks[k] * step
            kf = np.arange(-cfg.fine_steps, cfg.fine_steps + 1)
            fstep = cfg.fine_step_px / sens
            sc2, n2 = sw.scores(centre[:, None] + kf[None] * fstep[:, None])
            k2, off2 = _peak(sc2)
            rho = centre + (kf[k2] + off2) * fstep
            best = sc2[np.arange(len(k2)), k2]
            good = ok & interior & (n2 > 0) & np.isfinite(best) & (best >= cfg.min_score) & (rho > 0)
            with np.errstate(divide="ignore"):
                out_d[sl] = np.where(good, 1.0 / rho, out_d[sl])
                per_px[sl] = np.where(good, per_px[sl] * rho0 / rho, per_px[sl])  # at the new depth
            refined[sl] = good
            score[sl] = np.where(n2 > 0, best, np.nan)
    return PhotometricDepths(out_d, refined, score, per_px)


@dataclass
class ObservationConfig:
    """The 2D search of :func:`refine_observations`."""

    patch_radius: int = 3
    """Half side of the square patch compared (3: 7 x 7 pixels; fronto-parallel, so small)."""
    reach_px: float = 1.5
    """The coarse search covers this many pixels each way around the predicted position."""
    coarse_step_px: float = 0.5
    """Coarse search grid spacing (pixels)."""
    coarse_stride: int = 2
    """The coarse search compares every ``coarse_stride``-th patch row and column."""
    fine_step_px: float = 0.125
    """Fine search grid spacing around the coarse peak (a 5 x 5 grid; a parabola per axis then)."""
    min_score: float = 0.8
    """Least NCC for a refined observation."""
    min_texture: float = 2.0
    """Least standard deviation of the reference patch's grey levels (0-255)."""
    chunk: int = 2048
    """Observations searched at once."""


def _peak_2d(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Best cell (ix, iy) of (..., n*n) scores on an n x n grid (x fastest), its sub-cell offset per axis from
    parabolas (..., 2), whether it is interior, and its score."""
    s = np.where(np.isfinite(scores), scores, -np.inf)
    k = s.argmax(-1)
    iy, ix = np.divmod(k, n)
    grid = s.reshape(*s.shape[:-1], n, n)
    idx = np.indices(k.shape)
    ixc, iyc = np.clip(ix, 1, n - 2), np.clip(iy, 1, n - 2)

    def vertex(a, b, c):
        with np.errstate(invalid="ignore", divide="ignore"):
            den = a - 2 * b + c
            return np.where((den < 0) & np.isfinite(den), np.clip(0.5 * (a - c) / den, -0.5, 0.5), 0.0)

    dx = vertex(grid[(*idx, iy, ixc - 1)], grid[(*idx, iy, ixc)], grid[(*idx, iy, ixc + 1)])
    dy = vertex(grid[(*idx, iyc - 1, ix)], grid[(*idx, iyc, ix)], grid[(*idx, iyc + 1, ix)])
    interior = (ix == ixc) & (iy == iyc)
    return np.stack([ix, iy], -1), np.stack([dx, dy], -1), interior, s.max(-1)


def refine_observations(frames: np.ndarray | torch.Tensor, cameras: list, cam_of_frame: np.ndarray, K: np.ndarray,
                        cam_from_world: np.ndarray, reference_frame: np.ndarray, reference_xy: np.ndarray,
                        depth: np.ndarray, observed: np.ndarray, config: ObservationConfig | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Re-measure every observation of every point against the patch of its reference frame.

    Args:
        frames, cameras, cam_of_frame, K, cam_from_world: as in :func:`refine_depths`.
        reference_frame, reference_xy: (P,), (P, 2) the frame and pixel that define each point (an
            observation the caller trusts, e.g. the track's query).
        depth: (P,) the point's depth (z) in its reference camera; the patch lies fronto-parallel there.
        observed: (T, P) bool, the frames to measure each point in (the reference frame is skipped).

    Returns:
        ``xy`` (T, P, 2): the refined observations (the reference pixel in the reference frame, NaN where
        not measured) and ``ok`` (T, P) bool: measured with a textured patch, an interior peak and NCC of at
        least ``min_score`` (the reference frame counts as measured).
    """
    cfg = config or ObservationConfig()
    T, P = observed.shape
    ref = np.asarray(reference_frame, dtype=np.int64)
    rxy = np.asarray(reference_xy, dtype=np.float64)
    out = np.full((T, P, 2), np.nan)
    ok = np.zeros((T, P), dtype=bool)
    good_ref = np.isfinite(rxy).all(1) & (np.asarray(depth) > 0)
    out[ref[good_ref], np.flatnonzero(good_ref)] = rxy[good_ref]
    ok[ref[good_ref], np.flatnonzero(good_ref)] = True
    todo = np.asarray(observed, dtype=bool).copy()
    todo[ref, np.arange(P)] = False
    todo &= good_ref[None]
    t_of, p_of = np.nonzero(todo)
    if len(t_of) == 0:
        return out, ok
    corners = _GreyFrames(frames if isinstance(frames, torch.Tensor) else grey_frames(frames))
    n_c = 2 * int(round(cfg.reach_px / cfg.coarse_step_px)) + 1
    g = (np.arange(n_c) - n_c // 2) * cfg.coarse_step_px
    coarse = np.stack(np.meshgrid(g, g, indexing="xy"), -1).reshape(-1, 2)
    gf = (np.arange(5) - 2) * cfg.fine_step_px
    fine = np.stack(np.meshgrid(gf, gf, indexing="xy"), -1).reshape(-1, 2)
    Kf, cfw = np.asarray(K, dtype=np.float64), np.asarray(cam_from_world, dtype=np.float64)
    cof = np.asarray(cam_of_frame, dtype=np.int64)
    with torch.no_grad():
        for s in range(0, len(t_of), cfg.chunk):
            t, p = t_of[s:s + cfg.chunk], p_of[s:s + cfg.chunk]
            # One "point" per observation, with that frame as its only view.
            sw = _Sweeper(corners, cameras, cof, Kf, cfw, ref[p], rxy[p], t[:, None], cfg.patch_radius)
            rho = 1.0 / np.asarray(depth, dtype=np.float64)[p]
            sc, inside, centre = sw.shifted_scores(rho, coarse, cfg.coarse_stride)
            cell, _, interior, _ = _peak_2d(sc[:, 0], n_c)
            best_coarse = g[cell]  # (n, 2)
            sc2, inside2, _ = sw.shifted_scores(rho, best_coarse[:, None, None, :] + fine[None, None])
            cell2, sub, _, score = _peak_2d(sc2[:, 0], 5)
            shift = best_coarse + gf[cell2] + sub * cfg.fine_step_px
            # The fine grid spans one coarse step: its edge is a fine answer when the coarse peak was interior.
            good = (inside[:, 0] & inside2[:, 0] & interior & (score >= cfg.min_score)
                    & (sw.texture >= cfg.min_texture))
            out[t[good], p[good]] = centre[good, 0] + shift[good]
            ok[t[good], p[good]] = True
    return out, ok
