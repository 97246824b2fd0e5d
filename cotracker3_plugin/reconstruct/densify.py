"""Dense 3D points from dense tracks and the solved (fixed) cameras of a Scene.

Structure from motion keeps a few thousand points: the tracks it needs to pose the
cameras. Once the cameras are known, any track gives a point. This module lays a dense
grid of queries on a few registered frames, tracks them in chunks (bounded memory),
triangulates each track with the Scene's cameras (ray intersection, then Gauss-Newton on
the reprojection error: :func:`~cotracker3_plugin.reconstruct.triangulate.triangulate_tracks`)
and keeps a point only where the geometry vouches for it:

1. ``excluded``: its query pixel is on ``exclude_mask`` (moving objects): not even tracked;
   observations on the mask in other frames are dropped too;
2. ``visibility``: the tracker saw it (visible, or ``confidence > min_confidence``) in fewer
   than ``min_views`` registered frames, or not on its own query frame;
3. ``reprojection``: fewer than ``min_views`` observations reproject within
   ``max_reprojection_error`` px (in front of the camera), or the query observation itself is
   not among them (the point would not be the pixel that was asked for, nor have its colour);
4. ``angle``: its inlier rays span less than ``min_triangulation_angle`` (depth undetermined);

then, with ``photometric`` (the default), the depth of every candidate is swept along its query ray for the
best multi-view patch agreement (:mod:`~cotracker3_plugin.reconstruct.photometric`: it removes the
tracker's drift from the depth), on planes from open3d's normals of the candidate cloud:

- ``imprecise``: a one-pixel error would move it by more than ``max_depth_per_pixel`` of its depth;
- ``unrefined``: the sweep found no textured, clear, interior optimum (with ``drop_unrefined``);

and on the cloud:

5. ``neighbors``: its inverse depth disagrees with every opposite pair of lattice neighbours on
   its query frame (:func:`~cotracker3_plugin.reconstruct.dense_grid.neighbor_consistent`);
6. ``outliers``, ``voxel``, ``budget``: open3d statistical outlier removal, one point per voxel,
   a random subsample above ``max_points``.

Each point takes its colour from its query frame. Coordinates: clip pixels (x right, y down),
OpenCV camera axes, the Scene's world.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cotracker3_plugin.errors import UserError
from cotracker3_plugin.io.clip import Clip
from cotracker3_plugin.reconstruct import dense_cleanup
from cotracker3_plugin.reconstruct.correspondences import usable_observations
from cotracker3_plugin.reconstruct.dense_grid import (
    grid_queries,
    neighbor_consistent,
    sample_colors,
    spread_frames,
)
from cotracker3_plugin.reconstruct.dense_trackers import TrackFn, make_track_fn
from cotracker3_plugin.reconstruct.photometric import (
    PhotometricConfig,
    grey_frames,
    refine_depths,
    spread_views,
)
from cotracker3_plugin.reconstruct.scene import Scene
from cotracker3_plugin.reconstruct.triangulate import per_camera, triangulate_tracks
from cotracker3_plugin.tracks import Tracks

__all__ = ["DenseCloud", "DensifyConfig", "DensifyStats", "densify", "make_track_fn", "scene_cameras",
           "write_dense_ply"]

log = logging.getLogger(__name__)

#: open3d's plane fit that gives the photometric sweep its surface normals: radius in lattice spacings
#: on the surface (3 on static_room: median depth error 0.29 % of the radius, against 0.53 % with the
#: 30 nearest points and 0.64 % with fronto-parallel patches), and at most this many points.
_NORMAL_RADIUS = 3.0
_NORMAL_MAX_NN = 400
#: Observations closer than this to the frame border are not used (trackers clamp there).
_BORDER_PX = 2.0
Progress = Callable[[int, int], None]


@dataclass
class DensifyConfig:
    """How dense triangulation samples, tracks and filters points."""

    grid_size: int = 96
    """Query points per side of the grid laid on each query frame (grid_size x grid_size). Point count and time
    grow with its square (benchmarks/densify.py, static_room, KLT, ground-truth cameras, 2 CPU cores: 96 -> 40 k
    points in 26 s, 128 -> 73 k points in 44 s, both with 8 query frames). 96 keeps the quick start's time."""
    num_query_frames: int = 8
    """Registered frames, evenly spread over the clip, that get a query grid; more frames cover surfaces that only
    part of the clip sees, but mostly add duplicates of surfaces already covered (merged by the voxel step): on
    static_room 96 x 96 on 16 frames gave 61 k points in 49 s, 128 x 128 on 8 frames 65 k in 45 s."""
    chunk_size: int = 4096
    """Queries tracked at once; bounds the tracker's memory (it holds chunk_size x frames estimates)."""
    min_views: int = 3
    """A point needs at least this many frames where its observation fits (reprojection within max_reprojection_error)."""
    min_triangulation_angle: float = 2.0
    """Smallest angle (degrees) between the rays of a point; below it the depth is too uncertain."""
    max_reprojection_error: float = 2.0
    """An observation fits its point when it reprojects within this many pixels (clip pixels)."""
    min_confidence: float | None = None
    """Use observations with tracker confidence above this; None: the tracker's own visibility flags."""
    neighbor_check: bool = True
    """Drop points whose depth disagrees with every opposite pair of grid neighbours on their query frame."""
    neighbor_tolerance: float = 0.02
    """Relative inverse-depth disagreement tolerated by the neighbour check (0.02: 2 %)."""
    outlier_neighbors: int = 20
    """Statistical outlier removal (open3d): neighbours per point; 0 turns it off."""
    outlier_std_ratio: float = 2.0
    """Statistical outlier removal: drop points whose mean neighbour distance exceeds the cloud's mean by this many standard deviations."""
    voxel_size: float | None = None
    """Keep one point per voxel of this edge (scene units). None: a quarter of the grid spacing on the surfaces (merges the near-duplicates that several query frames give); 0: off."""
    max_points: int | None = 1_000_000
    """At most this many points (a seeded random subsample above it); None: no limit."""
    refine_iters: int = 1
    """Gauss-Newton steps on the reprojection error after each ray-intersection solve. One does what three did
    on static_room with KLT (median depth error 1.131 % vs 1.130 % of the radius, the same points) in less
    time; 0 is a little worse (1.150 %)."""
    photometric: bool = True
    """Sharpen each point's depth by a photometric sweep along its query ray (multi-view NCC with the solved
    cameras, :mod:`~cotracker3_plugin.reconstruct.photometric`): removes the tracker's drift from the depth."""
    photometric_sweep: PhotometricConfig = field(default_factory=PhotometricConfig)
    """The sweep's patch, views, steps and acceptance."""
    drop_unrefined: bool = True
    """Drop the points the sweep could not refine (untextured patch, peak outside the sweep, low NCC)."""
    max_depth_per_pixel: float | None = 0.05
    """With the sweep: drop points whose depth would move by more than this share per pixel of matching error
    in their most sensitive view (too little parallax for their depth); they are not swept either. On
    static_room (grid 96, 8 query frames, 6 views a point) 0.05 kept 40 k points with 93.5 % within 2 % of the
    path radius, 0.02 36 k with 95.5 %, no limit 41 k with 92.6 %. None: off."""
    seed: int = 0
    """Seed of the point-budget subsample."""

    def check(self) -> None:
        """Raise :class:`UserError` naming the first invalid field."""
        problems = [
            (self.grid_size < 3, "grid_size must be at least 3"),
            (self.num_query_frames < 1, "num_query_frames must be at least 1"),
            (self.chunk_size < 1, "chunk_size must be at least 1"),
            (self.min_views < 2, "min_views must be at least 2 (one view gives no depth)"),
            (self.max_reprojection_error <= 0, "max_reprojection_error must be positive"),
            (self.neighbor_tolerance <= 0, "neighbor_tolerance must be positive"),
            (self.voxel_size is not None and self.voxel_size < 0, "voxel_size must be >= 0 (or None: auto)"),
            (self.max_points is not None and self.max_points < 1, "max_points must be at least 1 (or None)"),
            (self.max_depth_per_pixel is not None and self.max_depth_per_pixel <= 0,
             "max_depth_per_pixel must be positive (or None: off)"),
        ]
        for bad, msg in problems:
            if bad:
                raise UserError(f"densify: {msg}.")
        self.photometric_sweep.check()


@dataclass
class DensifyStats:
    """What densification did: points removed by each filter (in order), sizes and times."""

    queries: int = 0
    """Grid queries laid on the query frames."""
    excluded: int = 0
    visibility: int = 0
    reprojection: int = 0
    angle: int = 0
    imprecise: int = 0
    """Points with more than ``max_depth_per_pixel`` depth change per pixel (not swept)."""
    unrefined: int = 0
    """Points the photometric sweep could not refine (removed only with ``drop_unrefined``)."""
    neighbors: int = 0
    outliers: int = 0
    voxel: int = 0
    budget: int = 0
    points: int = 0
    """Points in the final cloud."""
    query_frames: list[int] = field(default_factory=list)
    """Clip frame indices of the query frames."""
    voxel_size: float = 0.0
    """The voxel edge used (0: none)."""
    refined: int = 0
    """Points whose depth the photometric sweep set."""
    track_s: float = 0.0
    triangulate_s: float = 0.0
    photometric_s: float = 0.0
    cleanup_s: float = 0.0
    total_s: float = 0.0

    def removed(self) -> dict[str, int]:
        """Points removed by each filter, in the order they apply."""
        return {k: getattr(self, k) for k in ("excluded", "visibility", "reprojection", "angle", "imprecise", "unrefined",
                                               "neighbors",
                                               "outliers", "voxel", "budget")}

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class DenseCloud:
    """A dense coloured point cloud in the Scene's world."""

    points: np.ndarray
    """(P, 3) float64 world coordinates."""
    colors: np.ndarray
    """(P, 3) uint8 RGB, from each point's query frame."""
    errors: np.ndarray
    """(P,) mean reprojection error (clip pixels) over the point's inlier observations."""
    num_views: np.ndarray
    """(P,) number of inlier observations."""
    query_frames: np.ndarray
    """(P,) clip frame each point was queried on (where it is certainly seen)."""
    query_xy: np.ndarray
    """(P, 2) its query pixel (x, y) on that frame."""
    stats: DensifyStats = field(default_factory=DensifyStats)

    def __len__(self) -> int:
        return int(len(self.points))

    def subset(self, idx: np.ndarray) -> DenseCloud:
        return DenseCloud(self.points[idx], self.colors[idx], self.errors[idx], self.num_views[idx],
                          self.query_frames[idx], self.query_xy[idx], self.stats)


def write_dense_ply(cloud: DenseCloud, path: str | os.PathLike[str], *,
                    transform: np.ndarray | None = None) -> Path:
    """Write the cloud as a binary PLY (float xyz, uchar rgb) atomically; readable by open3d.

    For a nerfstudio dataset pass ``transform = transforms.json["applied_transform"]``: nerfstudio
    reads ``ply_file_path`` in that world (see :func:`~cotracker3_plugin.reconstruct.export.write_points_ply`).
    """
    from cotracker3_plugin.reconstruct.export import write_points_ply

    return write_points_ply(cloud.points, cloud.colors, path, transform=transform)


def _scaled_K(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Intrinsics for frames resized by (sx, sy), pixel centres at integers (as image resampling does)."""
    out = np.array(K, dtype=np.float64)
    out[0, 0], out[0, 1], out[1, 1] = K[0, 0] * sx, K[0, 1] * sx, K[1, 1] * sy
    out[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    out[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return out


def scene_cameras(scene: Scene, frame_size: tuple[int, int]) -> tuple[list, np.ndarray]:
    """pycolmap cameras of the Scene for frames of ``frame_size`` (H, W), and their K (C, 3, 3).

    Intrinsics are rescaled from ``scene.image_size``; the Scene's distortion (normalised
    coordinates, so unchanged by scaling) makes them OPENCV cameras, else PINHOLE. They use
    this package's pixel convention (centres at integers), like the tracks.
    """
    import pycolmap

    h, w = frame_size
    sh, sw = scene.image_size
    sx, sy = w / sw, h / sh
    if abs(sx - sy) > 0.01 * max(sx, sy):
        raise UserError(f"The clip frames are {w}x{h} but the scene's cameras are for {sw}x{sh} images (another "
                        "aspect ratio). Densify the clip the scene was reconstructed from.")
    dist = np.zeros(4)
    d = np.asarray(scene.distortion, dtype=np.float64).reshape(-1)[:4]
    dist[:len(d)] = d
    cams, Ks = [], []
    for K in np.asarray(scene.intrinsics, dtype=np.float64):
        Kc = _scaled_K(K, sx, sy)
        f = [Kc[0, 0], Kc[1, 1], Kc[0, 2], Kc[1, 2]]
        model, params = ("OPENCV", f + list(dist)) if np.any(dist) else ("PINHOLE", f)
        cams.append(pycolmap.Camera(model=model, width=int(w), height=int(h), params=params))
        Ks.append(Kc)
    return cams, np.stack(Ks)


def _check_inputs(scene: Scene, clip: Clip, exclude_mask: np.ndarray | None) -> np.ndarray | None:
    fi = np.asarray(scene.frame_indices, dtype=np.int64)
    if len(fi) and (fi.min() < 0 or fi.max() >= clip.num_frames):
        raise UserError(f"The scene refers to clip frame {int(fi.max())} but the clip has {clip.num_frames} "
                        "frames. Densify the clip the scene was reconstructed from.")
    if exclude_mask is None:
        return None
    m = np.asarray(exclude_mask, dtype=bool)
    if m.shape[-2:] != clip.frame_size or m.ndim not in (2, 3) or (m.ndim == 3 and len(m) != clip.num_frames):
        raise UserError(f"exclude_mask must be (T, H, W) = ({clip.num_frames}, {clip.height}, {clip.width}) "
                        f"or (H, W), True on pixels to ignore; got {m.shape}.")
    return m


def _scene_moving_mask(scene: Scene, clip: Clip) -> np.ndarray | None:
    """The Scene's ``moving_masks`` (scene frames, scene image size) as a (T, H, W) mask of the clip, if any."""
    masks = getattr(scene, "moving_masks", None)
    if masks is None:
        return None
    import cv2

    out = np.zeros((clip.num_frames, *clip.frame_size), dtype=bool)
    for s, f in enumerate(np.asarray(scene.frame_indices, dtype=np.int64)):
        m = np.asarray(masks[s], dtype=np.uint8)
        if m.shape != clip.frame_size:
            m = cv2.resize(m, (clip.width, clip.height), interpolation=cv2.INTER_NEAREST)
        out[f] = m > 0
    return out


@dataclass
class _PhotometricInputs:
    """What the photometric sweep needs, indexed by clip frame."""

    gray: object
    """(T, H, W) float16 torch grey levels of the clip."""
    K: np.ndarray
    cfw: np.ndarray
    cam_of_frame: np.ndarray

    @staticmethod
    def build(clip: Clip, scene: Scene, cams: list, Ks: np.ndarray, cfw: np.ndarray,
              registered: np.ndarray) -> _PhotometricInputs:
        T = clip.num_frames
        K, pose, cam = np.tile(np.eye(3), (T, 1, 1)), np.tile(np.eye(4), (T, 1, 1)), np.zeros(T, np.int64)
        fidx = np.asarray(scene.frame_indices, dtype=np.int64)
        cidx = np.asarray(scene.camera_index, dtype=np.int64)
        reg = np.flatnonzero(registered)
        K[fidx[reg]], pose[fidx[reg]], cam[fidx[reg]] = Ks[cidx[reg]], cfw[reg], cidx[reg]
        return _PhotometricInputs(grey_frames(clip.frames), K, pose, cam)


@dataclass
class _Candidates:
    """Points that passed the per-track filters, with their lattice position (for the neighbour check)."""

    points: list[np.ndarray] = field(default_factory=list)
    colors: list[np.ndarray] = field(default_factory=list)
    errors: list[np.ndarray] = field(default_factory=list)
    views: list[np.ndarray] = field(default_factory=list)
    grid: list[np.ndarray] = field(default_factory=list)
    """Index of the query grid of each point."""
    cell: list[np.ndarray] = field(default_factory=list)
    """Flat lattice index of each point in its grid."""
    depth: list[np.ndarray] = field(default_factory=list)
    """Depth in the query camera."""
    query_xy: list[np.ndarray] = field(default_factory=list)
    query_t: list[np.ndarray] = field(default_factory=list)
    """Clip frame of each point's query."""
    views_px: list[np.ndarray] = field(default_factory=list)
    """(n, V) clip frames the photometric sweep compares each point in (-1 padded)."""
    depth_per_px: list[np.ndarray] = field(default_factory=list)
    """Relative depth change per pixel of each point (after the sweep; empty without it)."""

    def cat(self, name: str, dtype) -> np.ndarray:
        parts = getattr(self, name)
        return np.concatenate(parts).astype(dtype) if parts else np.zeros((0,), dtype)


def densify(scene: Scene, clip: Clip, track_fn: TrackFn, config: DensifyConfig | None = None, *,
            exclude_mask: np.ndarray | None = None, progress: Progress | None = None) -> DenseCloud:
    """A dense point cloud from grid tracks on ``clip`` and the fixed cameras of ``scene``.

    Args:
        scene: cameras and poses (its points are not used); ``scene.frame_indices`` say which clip
            frame each scene frame is, ``scene.image_size`` may differ from the clip's (rescaled).
        clip: the frames to track (and to take colours from).
        track_fn: ``track_fn(clip, queries) -> Tracks`` for (N, 3) ``(t, x, y)`` queries in clip
            pixels (:func:`make_track_fn` builds one from a CoTracker3 model or ``"klt"``).
        config: sampling and filters (:class:`DensifyConfig`).
        exclude_mask: (T, H, W) or (H, W) bool at the clip's size, True on pixels to ignore
            (moving objects): no query there, and no observation there counts. None: the Scene's
            ``moving_masks`` where the reconstruction made them, else nothing excluded.
        progress: called as ``progress(done_chunks, total_chunks)`` after every chunk.

    Returns:
        A :class:`DenseCloud`; ``cloud.stats`` counts what each filter removed.
    """
    cfg = config or DensifyConfig()
    cfg.check()
    mask = _check_inputs(scene, clip, exclude_mask)
    if exclude_mask is None:
        mask = _scene_moving_mask(scene, clip)
    start = time.perf_counter()
    stats = DensifyStats()
    cams, Ks = scene_cameras(scene, clip.frame_size)
    wfc = np.asarray(scene.world_from_cam, dtype=np.float64)
    registered = scene.registered & np.isfinite(wfc).all(axis=(1, 2))
    reg = np.flatnonzero(registered)
    if len(reg) < 2:
        raise UserError(f"The scene has {len(reg)} registered frame(s); dense triangulation needs at least two.")
    fidx = np.asarray(scene.frame_indices, dtype=np.int64)
    cfw = np.tile(np.eye(4), (len(wfc), 1, 1))
    cfw[reg] = np.linalg.inv(wfc[reg])
    cidx = np.asarray(scene.camera_index, dtype=np.int64)

    # Query grids on registered frames spread over the clip; none on excluded pixels. Lattice
    # offsets follow the golden ratio, so that query frames close in time sample other pixels.
    q_scene = spread_frames(reg, cfg.num_query_frames)
    grids = [grid_queries(int(fidx[s]), clip.frame_size, cfg.grid_size, (0.5 + 0.618034 * k) % 1.0,
                          margin=_BORDER_PX + 1)
             for k, s in enumerate(q_scene)]
    stats.query_frames = [g.frame for g in grids]
    queries, grid_of, cell_of = [], [], []
    for k, g in enumerate(grids):
        cell = np.arange(len(g.queries))
        if mask is not None:
            m = mask if mask.ndim == 2 else mask[g.frame]
            xi = np.clip(np.rint(g.queries[:, 1]), 0, clip.width - 1).astype(np.int64)
            yi = np.clip(np.rint(g.queries[:, 2]), 0, clip.height - 1).astype(np.int64)
            cell = cell[~m[yi[cell], xi[cell]]]
        queries.append(g.queries[cell])
        grid_of.append(np.full(len(cell), k))
        cell_of.append(cell)
    stats.queries = sum(len(g.queries) for g in grids)
    queries_all = np.concatenate(queries)
    grid_all, cell_all = np.concatenate(grid_of), np.concatenate(cell_of)
    stats.excluded = stats.queries - len(queries_all)
    scene_of_grid = np.asarray(q_scene, dtype=np.int64)

    photo = _PhotometricInputs.build(clip, scene, cams, Ks, cfw, registered) if cfg.photometric else None
    cand = _Candidates()
    n_chunks = max(1, -(-len(queries_all) // cfg.chunk_size))
    for c in range(n_chunks):
        t0 = time.perf_counter()
        sl = slice(c * cfg.chunk_size, (c + 1) * cfg.chunk_size)
        q, g_id, cell = queries_all[sl], grid_all[sl], cell_all[sl]
        if len(q) == 0:
            break
        tracks = track_fn(clip, q)
        _check_tracks(tracks, clip, len(q))
        t1 = time.perf_counter()
        _triangulate_chunk(tracks, q, g_id, cell, scene_of_grid[g_id], clip, mask, cfg, cams, cidx, wfc,
                           cfw, registered, fidx, stats, cand, photo)
        t2 = time.perf_counter()
        stats.track_s += t1 - t0
        stats.triangulate_s += t2 - t1
        if c == 0 and n_chunks > 1:
            log.info("densify: chunk 1 of %d (%d queries) took %.1f s; about %.0f s to go%s", n_chunks, len(q),
                     t2 - t0, (t2 - t0) * (n_chunks - 1), ", then the photometric sweep" if photo else "")
        if progress is not None:
            progress(c + 1, n_chunks)

    if photo is not None and cand.points:
        t3 = time.perf_counter()
        step = np.array([g.step for g in grids])[np.concatenate(cand.grid)]
        _sharpen_depths(cand, photo, cams, step, cfg, stats)
        stats.photometric_s = time.perf_counter() - t3
    t3 = time.perf_counter()
    cloud = _filter_and_clean(cand, grids, Ks[cidx[scene_of_grid]], cfg, stats)
    stats.cleanup_s = time.perf_counter() - t3
    stats.points = len(cloud)
    stats.total_s = time.perf_counter() - start
    log.info("densify: %d points from %d queries in %.1f s (removed: %s)", stats.points, stats.queries,
             stats.total_s, ", ".join(f"{k} {v}" for k, v in stats.removed().items() if v))
    return cloud


def _check_tracks(tracks: Tracks, clip: Clip, n: int) -> None:
    if tracks.num_points != n or tracks.num_frames != clip.num_frames or tuple(tracks.frame_size) != clip.frame_size:
        raise ValueError(f"track_fn returned {tracks.num_points} tracks over {tracks.num_frames} frames of "
                         f"{tracks.frame_size} for {n} queries on {clip.num_frames} frames of {clip.frame_size}")


def _triangulate_chunk(tracks: Tracks, q: np.ndarray, g_id: np.ndarray, cell: np.ndarray, s_query: np.ndarray,
                       clip: Clip, mask: np.ndarray | None, cfg: DensifyConfig, cams: list, cidx: np.ndarray,
                       wfc: np.ndarray, cfw: np.ndarray, registered: np.ndarray, fidx: np.ndarray,
                       stats: DensifyStats, cand: _Candidates, photo: _PhotometricInputs | None = None) -> None:
    """Triangulate one chunk of tracks, apply the per-track filters, append the survivors to ``cand``."""
    usable = usable_observations(tracks, margin=_BORDER_PX, min_confidence=cfg.min_confidence,
                                 exclude_mask=mask)[fidx] & registered[:, None]
    enough = (usable.sum(0) >= cfg.min_views) & usable[s_query, np.arange(len(q))]
    stats.visibility += int((~enough).sum())
    cols = np.flatnonzero(enough)
    if len(cols) == 0:
        return
    tri = triangulate_tracks(tracks.xy[fidx][:, cols].astype(np.float64), usable[:, cols], wfc, registered, cams,
                             cidx, max_error=cfg.max_reprojection_error, min_angle_deg=0.0,
                             min_views=cfg.min_views, rounds=2, chunk=len(cols), refine_iters=cfg.refine_iters)
    ids = cols[tri.track_ids]
    query_fits = tri.inlier_obs[s_query[ids], np.arange(len(ids))]
    stats.reprojection += len(cols) - int(query_fits.sum())
    wide = tri.angles >= cfg.min_triangulation_angle
    stats.angle += int((query_fits & ~wide).sum())
    keep = query_fits & wide
    ids, X = ids[keep], tri.points[keep]
    pc = np.einsum("mij,mj->mi", cfw[s_query[ids], :3, :3], X) + cfw[s_query[ids], :3, 3]
    if photo is not None:
        views = spread_views(tri.inlier_obs[:, keep], s_query[ids], cfg.photometric_sweep.num_views)
        cand.views_px.append(np.where(views >= 0, fidx[np.maximum(views, 0)], -1))
    qt = q[ids, 0].astype(np.int64)
    colors = np.empty((len(ids), 3), np.uint8)
    for t in np.unique(qt):
        sel = qt == t
        colors[sel] = sample_colors(clip.frames[t], q[ids[sel], 1:3])
    cand.points.append(X)
    cand.colors.append(colors)
    cand.errors.append(tri.errors[keep])
    cand.views.append(tri.num_views[keep])
    cand.grid.append(g_id[ids])
    cand.cell.append(cell[ids])
    cand.depth.append(pc[:, 2])
    cand.query_xy.append(q[ids, 1:3])
    cand.query_t.append(qt)


def _sharpen_depths(cand: _Candidates, photo: _PhotometricInputs, cams: list, grid_step: np.ndarray,
                    cfg: DensifyConfig, stats: DensifyStats) -> None:
    """The photometric depth sweep over all candidates, on planes fitted to their neighbourhood (open3d
    normals of the triangulated cloud: a patch laid fronto-parallel on a slanted floor compares the wrong
    pixels). Moves the refined points along their query rays; with ``drop_unrefined`` drops the rest."""
    pts = np.concatenate(cand.points)
    qxy = np.concatenate(cand.query_xy)
    qt = np.concatenate(cand.query_t)
    views = np.concatenate(cand.views_px)
    depth = np.concatenate(cand.depth)
    cfw = photo.cfw[qt]
    # The plane is fitted over a few lattice spacings: the raw points are too noisy for a tighter fit.
    radius = _NORMAL_RADIUS * dense_cleanup.footprint_voxel_size(depth, grid_step, photo.K[qt, 0, 0], fraction=1.0)
    normals = dense_cleanup.normals_o3d(pts, radius, _NORMAL_MAX_NN)
    normals = np.einsum("pij,pj->pi", cfw[:, :3, :3], normals)
    ray = np.concatenate([per_camera("cam_from_img", qxy, photo.cam_of_frame[qt], cams), np.ones((len(qt), 1))], 1)
    normals = np.where((np.einsum("pi,pi->p", normals, ray) > 0)[:, None], -normals, normals)  # facing the camera
    res = refine_depths(photo.gray, cams, photo.cam_of_frame, photo.K, photo.cfw, qt, qxy, depth, views,
                        cfg.photometric_sweep, normals=normals, max_depth_per_px=cfg.max_depth_per_pixel)
    stats.refined = int(res.refined.sum())
    pc = ray * res.depth[:, None]
    wfc = np.linalg.inv(cfw)
    moved = np.einsum("pij,pj->pi", wfc[:, :3, :3], pc) + wfc[:, :3, 3]
    pts = np.where(res.refined[:, None], moved, pts)
    precise = np.ones(len(pts), dtype=bool) if cfg.max_depth_per_pixel is None else \
        res.depth_per_px <= cfg.max_depth_per_pixel
    stats.imprecise = int((~precise).sum())
    keep = precise & res.refined if cfg.drop_unrefined else precise
    stats.unrefined = int((precise & ~keep).sum())
    sizes = np.cumsum([0] + [len(p) for p in cand.points])
    for i in range(len(cand.points)):
        sl = slice(sizes[i], sizes[i + 1])
        k = keep[sl]
        cand.points[i] = pts[sl][k]
        cand.depth[i] = res.depth[sl][k]
        cand.depth_per_px.append(res.depth_per_px[sl][k])
        for name in ("colors", "errors", "views", "grid", "cell", "query_xy", "query_t", "views_px"):
            getattr(cand, name)[i] = getattr(cand, name)[i][k]


def _filter_and_clean(cand: _Candidates, grids: list, K_of_grid: np.ndarray, cfg: DensifyConfig,
                      stats: DensifyStats) -> DenseCloud:
    """Neighbour check on each query lattice, then open3d clean-up and the point budget."""
    pts = np.concatenate(cand.points) if cand.points else np.zeros((0, 3))
    colors = np.concatenate(cand.colors) if cand.colors else np.zeros((0, 3), np.uint8)
    errors, views = cand.cat("errors", np.float64), cand.cat("views", np.int64)
    grid, cell, depth = cand.cat("grid", np.int64), cand.cat("cell", np.int64), cand.cat("depth", np.float64)
    frames = np.array([g.frame for g in grids], dtype=np.int64)[grid]
    qxy = np.concatenate(cand.query_xy) if cand.query_xy else np.zeros((0, 2))
    cloud = DenseCloud(pts, colors, errors, views, frames, qxy, stats)
    per_px = np.concatenate(cand.depth_per_px) if cand.depth_per_px else None
    if cfg.neighbor_check and len(cloud):
        ok = np.zeros(len(cloud), dtype=bool)
        for k, g in enumerate(grids):
            sel = np.flatnonzero(grid == k)
            inv = np.full(g.shape, np.nan).ravel()
            inv[cell[sel]] = 1.0 / depth[sel]
            passed, _ = neighbor_consistent(inv.reshape(g.shape), cfg.neighbor_tolerance)
            ok[sel] = passed.ravel()[cell[sel]]
        stats.neighbors = int((~ok).sum())
        cloud, depth, grid = cloud.subset(ok), depth[ok], grid[ok]
        per_px = None if per_px is None else per_px[ok]

    keep = dense_cleanup.statistical_outliers_o3d(cloud.points, cfg.outlier_neighbors, cfg.outlier_std_ratio)
    stats.outliers = len(cloud) - len(keep)
    cloud, depth, grid = cloud.subset(keep), depth[keep], grid[keep]
    per_px = None if per_px is None else per_px[keep]

    if cfg.voxel_size is None:
        focal = np.sqrt(K_of_grid[grid, 0, 0] * K_of_grid[grid, 1, 1]) if len(grid) else np.ones(0)
        step = np.array([g.step for g in grids])[grid] if len(grid) else np.zeros(0)
        vs = dense_cleanup.footprint_voxel_size(depth, step, focal)
    else:
        vs = float(cfg.voxel_size)
    stats.voxel_size = vs
    # Per voxel the best-conditioned point after the sweep (least depth change per pixel); without the
    # sweep the point seen in the most frames (the better depth), then the lower error.
    if per_px is not None:
        score = per_px
    else:
        score = -cloud.num_views + 0.5 * cloud.errors / max(float(cloud.errors.max(initial=0.0)), 1e-9)
    keep = dense_cleanup.voxel_representatives(cloud.points, vs, score)
    stats.voxel = len(cloud) - len(keep)
    cloud = cloud.subset(keep)

    keep = dense_cleanup.budget_subsample(len(cloud), cfg.max_points, cfg.seed)
    stats.budget = len(cloud) - len(keep)
    return cloud.subset(keep)
