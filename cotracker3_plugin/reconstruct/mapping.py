"""Cameras from correspondences with COLMAP's own mappers (through pycolmap).

A COLMAP database is filled from the tracks alone (no images, no descriptors): one
camera, one frame and image per video frame, the track observations as keypoints, the
shared tracks of each frame pair as matches, and as two-view geometry the fundamental
matrices and inliers already found by :mod:`.correspondences` (so COLMAP's own, slower
verification is skipped). Then the incremental (default) or global mapper runs, and
the model with the most registered frames is kept.

Pixel convention: this package puts pixel centres at integer coordinates, COLMAP at
``+0.5``; keypoints and principal points are shifted at this boundary.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from cotracker3_plugin.reconstruct.correspondences import PairGeometry

log = logging.getLogger(__name__)

__all__ = ["BundleAdjusted", "CameraModel", "MappingResult", "bundle_adjust", "camera_to_scene", "make_camera", "run_mapping"]

CameraModel = Literal["SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV"]
#: COLMAP's pixel centre offset relative to this package's.
COLMAP_PIXEL_OFFSET = 0.5


@contextlib.contextmanager
def quiet_colmap(enabled: bool = True) -> Iterator[None]:
    """Silence COLMAP's glog lines unless debug logging is on."""
    import pycolmap

    if not enabled or log.isEnabledFor(logging.DEBUG):
        yield
        return
    old = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 3  # FATAL only: the outcomes are logged by this package
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = old


def make_camera(model: str, width: int, height: int, focal: float, *, colmap_pixels: bool = True):
    """A pycolmap camera with focal ``focal`` px, principal point at the image centre, no distortion."""
    import pycolmap

    off = COLMAP_PIXEL_OFFSET if colmap_pixels else 0.0
    cx, cy = width / 2 - 0.5 + off, height / 2 - 0.5 + off
    params = {
        "SIMPLE_PINHOLE": [focal, cx, cy],
        "PINHOLE": [focal, focal, cx, cy],
        "SIMPLE_RADIAL": [focal, cx, cy, 0.0],
        "RADIAL": [focal, cx, cy, 0.0, 0.0],
        "OPENCV": [focal, focal, cx, cy, 0.0, 0.0, 0.0, 0.0],
    }[model]
    return pycolmap.Camera(model=model, width=int(width), height=int(height), params=params)


def camera_to_scene(camera) -> tuple[np.ndarray, np.ndarray, object]:
    """COLMAP camera -> (K in this package's pixels, OpenCV (k1, k2, p1, p2), camera in our pixels)."""
    import pycolmap

    p = np.asarray(camera.params, dtype=np.float64)
    name = camera.model.name
    dist = np.zeros(4)
    if name == "SIMPLE_RADIAL":
        dist[0] = p[3]
    elif name == "RADIAL":
        dist[:2] = p[3:5]
    elif name == "OPENCV":
        dist[:] = p[4:8]
    elif name not in ("SIMPLE_PINHOLE", "PINHOLE"):
        raise ValueError(f"unsupported camera model {name}")
    K = np.asarray(camera.calibration_matrix(), dtype=np.float64).copy()
    K[0, 2] -= COLMAP_PIXEL_OFFSET
    K[1, 2] -= COLMAP_PIXEL_OFFSET
    ours = pycolmap.Camera(model=name, width=camera.width, height=camera.height, params=p.copy())
    pp = list(ours.principal_point_idxs())
    params = np.asarray(ours.params, dtype=np.float64)
    params[pp] -= COLMAP_PIXEL_OFFSET
    ours.params = params
    return K, dist, ours


@dataclass
class MappingResult:
    world_from_cam: np.ndarray
    """(F, 4, 4) OpenCV camera-to-world poses of the mapped frames (NaN: unregistered)."""
    registered: np.ndarray
    """(F,) bool."""
    camera: object
    """The refined pycolmap camera (COLMAP pixel convention)."""
    num_points: int
    """3D points in the kept model."""
    mean_reprojection_error: float
    num_models: int
    """Models the mapper produced (more than 1: the video broke into pieces)."""


def _write_database(path: Path, xy: np.ndarray, usable: np.ndarray, geoms: Sequence[PairGeometry],
                    camera, static: np.ndarray, min_matches: int) -> None:
    import pycolmap

    F = xy.shape[0]
    db = pycolmap.Database.open(str(path))
    try:
        cam_id = db.write_camera(camera)
        rig = pycolmap.Rig()
        sensor = pycolmap.sensor_t(pycolmap.SensorType.CAMERA, cam_id)
        rig.add_ref_sensor(sensor)
        rig_id = db.write_rig(rig)
        kp_index = np.full(usable.shape, -1, dtype=np.int64)
        for f in range(F):
            image_id = db.write_image(pycolmap.Image(name=f"frame_{f:06d}", camera_id=cam_id))
            assert image_id == f + 1
            frame = pycolmap.Frame()
            frame.rig_id = rig_id
            frame.add_data_id(pycolmap.data_t(sensor, image_id))
            db.write_frame(frame)
            idx = np.flatnonzero(usable[f])
            kp_index[f, idx] = np.arange(len(idx))
            db.write_keypoints(image_id, (xy[f, idx] + COLMAP_PIXEL_OFFSET).astype(np.float32))
        for g in geoms:
            i, j = g.i, g.j
            both = usable[i, g.tracks] & usable[j, g.tracks]
            tr = g.tracks[both]
            if len(tr) < min_matches:
                continue
            matches = np.stack([kp_index[i, tr], kp_index[j, tr]], axis=1).astype(np.uint32)
            db.write_matches(i + 1, j + 1, matches)
            inl = (g.inliers[both] & static[tr])
            if g.F is None or inl.sum() < min_matches:
                continue
            tvg = pycolmap.TwoViewGeometry()
            tvg.config = pycolmap.TwoViewGeometryConfiguration.UNCALIBRATED
            # OpenCV's F is for pixel-centre coordinates; shift it to COLMAP's.
            S = np.array([[1, 0, -COLMAP_PIXEL_OFFSET], [0, 1, -COLMAP_PIXEL_OFFSET], [0, 0, 1.0]])
            tvg.F = S.T @ g.F @ S
            tvg.inlier_matches = matches[inl]
            db.write_two_view_geometry(i + 1, j + 1, tvg)
    finally:
        db.close()


def run_mapping(xy: np.ndarray, usable: np.ndarray, geoms: Sequence[PairGeometry], static: np.ndarray,
                frame_size: tuple[int, int], *, mapper: Literal["incremental", "global"] = "incremental",
                camera_model: CameraModel = "SIMPLE_RADIAL", focal: float | None = None,
                refine_focal: bool = True, refine_camera_while_mapping: bool = True,
                num_threads: int = -1, seed: int = 0,
                min_matches: int = 15, init_min_tri_angle: float = 8.0,
                max_seconds: float | None = None, workdir: str | Path | None = None) -> MappingResult:
    """Map the frames of ``xy`` (F, N, 2) whose observations ``usable`` (F, N) are given.

    ``geoms`` hold the pair geometries (frame positions 0..F-1), ``static`` (N,) the
    tracks allowed as two-view inliers. ``refine_camera_while_mapping`` False holds the camera at
    ``focal`` (and no distortion) while frames are added, for a final bundle adjustment to free it
    once every frame constrains it.
    """
    import pycolmap

    h, w = frame_size
    F = xy.shape[0]
    f0 = float(focal) if focal else 1.2 * max(h, w)
    camera = make_camera(camera_model, w, h, f0)
    camera.has_prior_focal_length = focal is not None
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="cotracker3-sfm-"))
        work = Path(workdir)
        work.mkdir(parents=True, exist_ok=True)
        db_path = work / "database.db"
        db_path.unlink(missing_ok=True)
        out = work / "sparse"
        out.mkdir(exist_ok=True)
        _write_database(db_path, xy, usable, geoms, camera, static, min_matches)
        fixed_focal = focal is not None and (not refine_focal or not refine_camera_while_mapping)
        with quiet_colmap():
            if mapper == "incremental":
                opts = pycolmap.IncrementalPipelineOptions()
                opts.num_threads = int(num_threads)
                opts.random_seed = int(seed)
                opts.extract_colors = False
                opts.min_num_matches = int(min_matches)
                # Only the largest model is used (absolute-pose rounds register the rest): searching
                # for more models on degenerate videos can take minutes.
                opts.multiple_models = False
                opts.ba_refine_focal_length = not fixed_focal
                opts.mapper.abs_pose_refine_focal_length = not fixed_focal
                if not refine_camera_while_mapping:
                    opts.ba_refine_extra_params = False
                    opts.mapper.abs_pose_refine_extra_params = False
                # Video pairs have small baselines; the long-range pairs give enough angle.
                opts.mapper.init_min_tri_angle = float(init_min_tri_angle)
                # Fewer global BAs: with hundreds of well-tracked points per frame local BA suffices.
                opts.ba_global_frames_ratio = 1.4
                opts.ba_global_points_ratio = 1.4
                opts.ba_global_max_refinements = 2
                if max_seconds:
                    opts.max_runtime_seconds = int(max_seconds)
                recs = pycolmap.incremental_mapping(str(db_path), str(work), str(out), opts)
            elif mapper == "global":
                gopts = pycolmap.GlobalPipelineOptions()
                gopts.num_threads = int(num_threads)
                gopts.random_seed = int(seed)
                gopts.min_num_matches = int(min_matches)
                gopts.mapper.bundle_adjustment.refine_focal_length = not fixed_focal
                if not refine_camera_while_mapping:
                    gopts.mapper.bundle_adjustment.refine_extra_params = False
                recs = pycolmap.global_mapping(str(db_path), str(work), str(out), gopts)
            else:
                raise ValueError(f"unknown mapper {mapper!r}")

    wfc = np.full((F, 4, 4), np.nan)
    registered = np.zeros(F, dtype=bool)
    if not recs:
        return MappingResult(wfc, registered, camera, 0, float("nan"), 0)
    best = max(recs.values(), key=lambda r: r.num_reg_images())
    for image_id in best.reg_image_ids():
        f = int(image_id) - 1
        m = np.eye(4)
        m[:3, :4] = best.image(image_id).cam_from_world().matrix()
        wfc[f] = np.linalg.inv(m)
        registered[f] = True
    cam = next(iter(best.cameras.values()))
    return MappingResult(wfc, registered, cam, best.num_points3D(),
                         float(best.compute_mean_reprojection_error()), len(recs))


@dataclass
class BundleAdjusted:
    world_from_cam: np.ndarray
    """(T, 4, 4) refined poses (NaN where unregistered)."""
    points: np.ndarray
    """(P, 3) refined points."""
    errors: np.ndarray
    """(P,) mean reprojection error (px) after refinement."""
    camera: object
    """Refined pycolmap camera (COLMAP pixel convention)."""


def bundle_adjust(xy: np.ndarray, observations: np.ndarray, world_from_cam: np.ndarray,
                  registered: np.ndarray, points: np.ndarray, camera, *, refine_focal: bool = True,
                  refine_extra: bool = True, num_threads: int = -1, max_iterations: int = 30) -> BundleAdjusted:
    """Joint refinement of all registered poses, the points and the shared camera.

    ``xy`` (T, N, 2) track positions (this package's pixels), ``observations`` (T, P) bool
    which frames see point p (column p of ``xy`` belongs to point p), ``camera`` in COLMAP
    pixels. Uses a robust (Huber, 2 px) loss so that a few slipped observations do not bend the
    cameras.
    """
    import pycolmap

    T, P = observations.shape
    rec = pycolmap.Reconstruction()
    cam = pycolmap.Camera(model=camera.model.name, width=camera.width, height=camera.height,
                          params=np.asarray(camera.params, dtype=np.float64).copy(), camera_id=1)
    rec.add_camera_with_trivial_rig(cam)
    reg = np.flatnonzero(registered)
    kp_of: dict[int, np.ndarray] = {}
    for t in reg:
        idx = np.flatnonzero(observations[t])
        kp_of[int(t)] = idx
        cfw = np.linalg.inv(world_from_cam[t])
        rec.add_image_with_trivial_frame(
            pycolmap.Image(name=f"frame_{t:06d}", keypoints=xy[t, idx].astype(np.float64) + COLMAP_PIXEL_OFFSET,
                           camera_id=1, image_id=int(t) + 1),
            pycolmap.Rigid3d(pycolmap.Rotation3d(cfw[:3, :3]), cfw[:3, 3]))
    elements: list[list[tuple[int, int]]] = [[] for _ in range(P)]
    for t, idx in kp_of.items():
        for k, p in enumerate(idx.tolist()):
            elements[p].append((t + 1, k))
    pid_of = np.full(P, -1, dtype=np.int64)
    for p in range(P):
        if len(elements[p]) < 2:
            continue
        track = pycolmap.Track()
        for image_id, k in elements[p]:
            track.add_element(image_id, k)
        pid_of[p] = rec.add_point3D(points[p], track)
    opts = pycolmap.BundleAdjustmentOptions()
    opts.refine_focal_length = bool(refine_focal)
    opts.refine_extra_params = bool(refine_extra)
    opts.print_summary = False
    opts.ceres.loss_function_type = pycolmap.LossFunctionType.HUBER
    opts.ceres.loss_function_scale = 2.0
    opts.ceres.solver_options.num_threads = int(num_threads)
    opts.ceres.solver_options.max_num_iterations = int(max_iterations)
    config = pycolmap.BundleAdjustmentConfig()
    for t in reg:
        config.add_image(int(t) + 1)
    # Without a fixed gauge (7 free dof of a similarity) the solver crawls and does not converge.
    config.fix_gauge(pycolmap.BundleAdjustmentGauge.TWO_CAMS_FROM_WORLD)
    with quiet_colmap():
        pycolmap.create_default_bundle_adjuster(opts, config, rec).solve()
    rec.update_point_3d_errors()
    wfc = np.full_like(world_from_cam, np.nan)
    for t in reg:
        m = np.eye(4)
        m[:3, :4] = rec.image(int(t) + 1).cam_from_world().matrix()
        wfc[t] = np.linalg.inv(m)
    out_pts = np.array(points, dtype=np.float64, copy=True)
    errors = np.full(P, np.nan)
    for p in np.flatnonzero(pid_of >= 0):
        pt = rec.point3D(int(pid_of[p]))
        out_pts[p] = pt.xyz
        errors[p] = pt.error
    return BundleAdjusted(wfc, out_pts, errors, rec.cameras[1])
