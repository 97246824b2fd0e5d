"""Static correspondences -> camera poses and points for one camera setting (the "map" room).

One solve: COLMAP mapping of the chosen tracks on the mapped frames, absolute-pose registration of
the frames the mapper skipped, bundle adjustment of everything, triangulation of every static track
with the final poses. :func:`mapping_failure` says when the result cannot be trusted (no frame, an
absurd camera, no structure), so that the pipeline can solve again differently.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from cotracker3_plugin.reconstruct.correspondences import PairGeometry
from cotracker3_plugin.reconstruct.mapping import bundle_adjust, camera_to_scene, run_mapping
from cotracker3_plugin.reconstruct.triangulate import TriangulatedPoints, triangulate_tracks

log = logging.getLogger(__name__)

__all__ = ["CameraSolution", "SolveOptions", "bogus_camera", "mapping_failure", "solve_cameras"]

#: A mapper model with fewer 3D points than this is not trusted.
MIN_MODEL_POINTS = 20


@dataclass
class SolveOptions:
    """The parts of :class:`~.pipeline.ReconstructConfig` one solve needs."""

    mapper: Literal["incremental", "global"] = "incremental"
    num_threads: int = -1
    seed: int = 0
    max_mapping_seconds: float | None = 300.0
    register_skipped_frames: bool = True
    max_pnp_rounds: int = 20
    final_bundle_adjustment: bool = True
    max_reprojection_error: float = 3.0
    min_triangulation_angle: float = 1.5
    min_views: int = 2
    photometric_refinement: bool = True


@dataclass
class CameraSolution:
    """Cameras and points from one camera setting."""

    world_from_cam: np.ndarray
    """(T, 4, 4) OpenCV camera-to-world poses (NaN: unregistered)."""
    registered: np.ndarray
    """(T,) bool."""
    tri: TriangulatedPoints
    """Every static track triangulated with the final poses."""
    K: np.ndarray
    dist: np.ndarray
    camera: object
    """The final pycolmap camera in this package's pixels."""
    colmap_camera: object
    """The same camera in COLMAP's pixels (what the mapper and bundle adjustment take)."""
    by_mapper: int
    by_pnp: int
    mapper_points: int
    mapper_models: int
    mapper_reprojection_error: float
    camera_implausible: bool
    failure: str
    """Why these poses cannot be used ("" when they can)."""


def bogus_camera(camera) -> bool:
    """Focal length outside 0.1-10 image sizes, or distortion above 1: what degenerate motion gives."""
    return camera.has_bogus_params(0.1, 10.0, 1.0)


def mapping_failure(m, frame_size: tuple[int, int]) -> str:
    """Why a mapper result cannot be used ("" when it can)."""
    if not m.registered.any():
        return "the mapper registered no frame"
    if bogus_camera(m.camera):
        # Pure rotation or a scene dominated by a moving object: the mapper "succeeds" with a
        # focal length of many image widths or a huge distortion; those poses are not usable.
        return (f"the mapper's camera is implausible ({m.camera.model.name} {m.camera.params_to_string()} "
                f"for a {frame_size[1]}x{frame_size[0]} image)")
    if m.num_points < MIN_MODEL_POINTS:
        # COLMAP can keep a model of frames registered to one another without any 3D point
        # (pure rotation): its translations are arbitrary.
        return f"the mapper's model has {m.num_points} 3D points (too little camera translation?)"
    return ""


def register_by_pnp(frames: np.ndarray, xy: np.ndarray, usable: np.ndarray, pts: np.ndarray,
                    track_ids: np.ndarray, camera, min_inliers: int = 20, max_error: float = 4.0
                    ) -> dict[int, np.ndarray]:
    """World-from-camera poses of ``frames`` from their views of the triangulated tracks."""
    import pycolmap

    out: dict[int, np.ndarray] = {}
    est = pycolmap.AbsolutePoseEstimationOptions()
    est.ransac.max_error = float(max_error)
    ref = pycolmap.AbsolutePoseRefinementOptions()
    ref.refine_focal_length = False
    ref.refine_extra_params = False
    for t in frames:
        sel = usable[t, track_ids]
        if sel.sum() < min_inliers:
            continue
        res = pycolmap.estimate_and_refine_absolute_pose(
            xy[t, track_ids[sel]].astype(np.float64), pts[sel], camera, est, ref)
        if res is None or int(res["num_inliers"]) < max(min_inliers, 0.5 * sel.sum()):
            continue
        m = np.eye(4)
        m[:3, :4] = res["cam_from_world"].matrix()
        out[int(t)] = np.linalg.inv(m)
    return out


def _triangulate_static(xy: np.ndarray, usable_static: np.ndarray, wfc: np.ndarray, registered: np.ndarray, camera,
                        opts: SolveOptions) -> TriangulatedPoints:
    """Every static track triangulated with these poses and this (package-pixel) camera."""
    return triangulate_tracks(xy.astype(np.float64), usable_static, wfc, registered, [camera],
                              np.zeros(len(xy), np.int64), max_error=opts.max_reprojection_error,
                              min_angle_deg=opts.min_triangulation_angle, min_views=opts.min_views)


def photometric_bundle_adjustment(images: np.ndarray, xy: np.ndarray, reference_frames: np.ndarray,
                                  tri: TriangulatedPoints, wfc: np.ndarray, registered: np.ndarray, cam, colmap_cam,
                                  *, refine_focal: bool, refine_extra: bool, num_threads: int = -1):
    """Bundle adjustment on observations re-measured photometrically (:func:`.photometric.refine_observations`).

    Each triangulated track keeps one observation as its reference (its query frame when that is an inlier,
    else its middle inlier); every other inlier observation is measured again by matching the reference patch,
    carried there by the current cameras. Chained trackers drift along the image motion and bundle
    adjustment bends the cameras to fit; the re-measured observations do not drift (static_room with KLT
    tracks: 0.29 % -> 0.05 % of the path radius, benchmarks/reconstruct_accuracy.py). Returns the adjusted
    :class:`~.mapping.BundleAdjusted`, or None when too little could be measured or the result is implausible.
    """
    from cotracker3_plugin.reconstruct.photometric import refine_observations

    T = len(wfc)
    P = len(tri.points)
    obs = tri.inlier_obs
    q = np.clip(np.rint(np.asarray(reference_frames, dtype=np.float64)[tri.track_ids]), 0, T - 1).astype(np.int64)
    ref = q.copy()
    off = ~obs[q, np.arange(P)]
    for p in np.flatnonzero(off):  # the middle inlier frame
        f = np.flatnonzero(obs[:, p])
        ref[p] = f[len(f) // 2]
    cfw = np.tile(np.eye(4), (T, 1, 1))
    cfw[registered] = np.linalg.inv(wfc[registered])
    depth = np.einsum("pj,pj->p", cfw[ref, 2, :3], tri.points) + cfw[ref, 2, 3]
    K = camera_to_scene(colmap_cam)[0]
    xy_ref = xy[ref, tri.track_ids].astype(np.float64)
    new_xy, ok = refine_observations(images, [cam], np.zeros(T, np.int64), np.tile(K, (T, 1, 1)), cfw, ref, xy_ref,
                                     depth, obs)
    cols = np.flatnonzero(ok.sum(0) >= 2)
    measured = int(ok.sum()) - P
    log.info("photometric refinement: %d of %d observations re-measured", measured, int(obs.sum()) - P)
    if len(cols) < 20 or measured < 0.3 * (int(obs.sum()) - P):
        log.info("photometric refinement: too few observations matched; keeping the tracks' bundle adjustment")
        return None
    ba = bundle_adjust(new_xy[:, cols], ok[:, cols], wfc, registered, tri.points[cols], colmap_cam,
                       refine_focal=refine_focal, refine_extra=refine_extra, num_threads=num_threads)
    if bogus_camera(ba.camera) or not np.all(np.isfinite(ba.world_from_cam[registered])):
        log.warning("photometric bundle adjustment gave an implausible camera (%s); keeping the previous one",
                    ba.camera.params_to_string())
        return None
    return ba


def solve_cameras(*, xy: np.ndarray, frame_size: tuple[int, int], frames: np.ndarray, usable_sfm: np.ndarray,
                  geoms: list[PairGeometry], static: np.ndarray, usable_static: np.ndarray, opts: SolveOptions,
                  camera_model: str, focal: float | None, refine_focal: bool, refine_while_mapping: bool = True,
                  stage: Callable[[str], None] = lambda name: None, suffix: str = "",
                  images: np.ndarray | None = None, reference_frames: np.ndarray | None = None) -> CameraSolution:
    """Map, register the rest, bundle-adjust and triangulate, for one camera setting.

    ``xy`` (T, N, 2) all tracks; ``frames`` the frames the mapper sees, ``usable_sfm`` (F, N) the
    observations it gets there; ``usable_static`` (T, N) those every later step may use.
    ``refine_focal``: the final bundle adjustment refines the camera; ``refine_while_mapping`` False
    holds it at ``focal`` until then (a calibrated focal: early, few-frame bundle adjustments are what
    lets a focal run away). ``images`` (T, H, W, 3) at ``frame_size`` and ``reference_frames`` (N,) (each
    track's query frame) enable the photometric re-measurement before a second bundle adjustment
    (``opts.photometric_refinement``, :func:`photometric_bundle_adjustment`).
    """
    T = xy.shape[0]
    fixed_focal = focal is not None and not refine_focal
    stage("mapping" + suffix)
    m = run_mapping(xy[frames].astype(np.float64), usable_sfm, geoms, static, frame_size, mapper=opts.mapper,
                    camera_model=camera_model, focal=focal, refine_focal=refine_focal,
                    refine_camera_while_mapping=refine_while_mapping, num_threads=opts.num_threads, seed=opts.seed, max_seconds=opts.max_mapping_seconds)
    failure = mapping_failure(m, frame_size)
    implausible = bool(m.registered.any()) and bogus_camera(m.camera)
    if failure:
        m.registered[:] = False
        m.world_from_cam[:] = np.nan
    by_mapper = int(m.registered.sum())
    colmap_cam = m.camera
    K, dist, cam = camera_to_scene(colmap_cam)
    wfc = np.full((T, 4, 4), np.nan)
    registered = np.zeros(T, dtype=bool)
    wfc[frames[m.registered]] = m.world_from_cam[m.registered]
    registered[frames[m.registered]] = True

    stage("triangulation" + suffix)
    adjusted = False

    def triangulate(camera) -> TriangulatedPoints:
        return _triangulate_static(xy, usable_static, wfc, registered, camera, opts)

    tri = triangulate(cam)
    rounds = by_pnp = 0
    while opts.register_skipped_frames and len(tri.points) >= 20 and rounds < opts.max_pnp_rounds:
        # Each round registers the frames that see enough triangulated tracks; their views
        # triangulate more tracks, which reach further frames (e.g. the rest of a video the
        # mapper split into several models).
        rounds += 1
        # Later rounds rest on points seen from few, newly registered frames: ask for more support.
        poses = register_by_pnp(np.flatnonzero(~registered), xy, usable_static, tri.points, tri.track_ids, cam,
                                min_inliers=20 if rounds == 1 else 50, max_error=opts.max_reprojection_error)
        if not poses:
            break
        for t, pose in poses.items():
            wfc[t], registered[t] = pose, True
        by_pnp += len(poses)
        tri = triangulate(cam)
    if opts.final_bundle_adjustment and len(tri.points) >= 20 and registered.sum() >= 2:
        stage("bundle_adjustment" + suffix)
        ba = bundle_adjust(xy[:, tri.track_ids].astype(np.float64), tri.inlier_obs, wfc, registered,
                           tri.points, colmap_cam, refine_focal=not fixed_focal,
                           refine_extra=camera_model not in ("SIMPLE_PINHOLE", "PINHOLE"),
                           num_threads=opts.num_threads)
        stage("triangulation_final" + suffix)
        if bogus_camera(ba.camera) or not np.all(np.isfinite(ba.world_from_cam[registered])):
            # Near-degenerate motion (e.g. panning) lets the focal length run away; keep the mapper's.
            log.warning("bundle adjustment gave an implausible camera (%s); keeping the mapper's result",
                        ba.camera.params_to_string())
        else:
            wfc = ba.world_from_cam
            colmap_cam = ba.camera
            K, dist, cam = camera_to_scene(colmap_cam)
            tri = triangulate(cam)
            adjusted = True
    if not failure and registered.sum() >= 2 and len(tri.points) < MIN_MODEL_POINTS:
        # A near-orthographic camera (a long focal length on little translation) registers frames
        # whose rays then meet at too small angles for any point.
        failure = (f"{int(registered.sum())} frames got a pose but only {len(tri.points)} points triangulate "
                   f"(focal {K[0, 0]:.0f} px: too little parallax for this camera)")
    sol = CameraSolution(wfc, registered, tri, K, dist, cam, colmap_cam, by_mapper, by_pnp, m.num_points,
                         m.num_models, m.mean_reprojection_error, implausible, failure)
    if adjusted and opts.photometric_refinement and images is not None and reference_frames is not None:
        sol = refine_photometrically(sol, xy=xy, usable_static=usable_static, opts=opts, images=images,
                                     reference_frames=reference_frames, camera_model=camera_model,
                                     refine_focal=not fixed_focal, stage=stage, suffix=suffix)
    return sol


def refine_photometrically(sol: CameraSolution, *, xy: np.ndarray, usable_static: np.ndarray, opts: SolveOptions,
                           images: np.ndarray, reference_frames: np.ndarray, camera_model: str, refine_focal: bool,
                           stage: Callable[[str], None] = lambda name: None, suffix: str = "") -> CameraSolution:
    """:func:`photometric_bundle_adjustment` on a finished solution, its tracks triangulated again with the
    adjusted cameras; the solution unchanged when it failed or the adjustment declined."""
    if sol.failure or len(sol.tri.points) < 20:
        return sol
    stage("photometric_refinement" + suffix)
    pba = photometric_bundle_adjustment(images, xy, reference_frames, sol.tri, sol.world_from_cam, sol.registered,
                                        sol.camera, sol.colmap_camera, refine_focal=refine_focal,
                                        refine_extra=camera_model not in ("SIMPLE_PINHOLE", "PINHOLE"),
                                        num_threads=opts.num_threads)
    if pba is None:
        return sol
    K, dist, cam = camera_to_scene(pba.camera)
    tri = _triangulate_static(xy, usable_static, pba.world_from_cam, sol.registered, cam, opts)
    return replace(sol, world_from_cam=pba.world_from_cam, tri=tri, K=K, dist=dist, camera=cam,
                   colmap_camera=pba.camera)
