"""``reconstruct(tracks, clip, config) -> Scene``: the whole tracks-to-3D pipeline.

Stages: usable observations -> frame pairs and moving-track rejection -> COLMAP mapping
of a subset of well-spread tracks on (possibly subsampled) frames -> pose for the
frames the mapper skipped or failed, by absolute-pose RANSAC against the points ->
triangulation of every track with the final poses -> outlier removal and voxel thinning.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import numpy as np

from cotracker3_plugin.errors import UserError
from cotracker3_plugin.io.camera_metadata import focal_prior
from cotracker3_plugin.io.clip import Clip
from cotracker3_plugin.reconstruct import cleanup
from cotracker3_plugin.reconstruct.correspondences import (
    frame_pairs,
    moving_track_filter,
    parallax_share,
    usable_observations,
)
from cotracker3_plugin.reconstruct.mapping import (
    CameraModel,
    bundle_adjust,
    camera_to_scene,
    run_mapping,
)
from cotracker3_plugin.reconstruct.scene import Scene
from cotracker3_plugin.reconstruct.sift import SiftMatching, sift_tracks
from cotracker3_plugin.reconstruct.triangulate import triangulate_tracks
from cotracker3_plugin.refine import refine_observations
from cotracker3_plugin.tracks import Tracks

log = logging.getLogger(__name__)

__all__ = ["ReconstructConfig", "ReconstructReport", "ReconstructResult", "reconstruct",
           "reconstruct_detailed"]


#: A mapper model with fewer 3D points than this is not trusted.
MIN_MODEL_POINTS = 20
#: The fixed-camera retry needs at least this share of static tracks off a homography (parallax):
#: without it the camera only turned, and a fixed camera would turn that into invented structure.
MIN_PARALLAX_SHARE = 0.02
#: Focal lengths (x the larger image side) the fixed-camera retry tries: a phone's wide camera
#: (~70 degrees across the long side), 53 and 39 degrees.
RETRY_FOCALS = (0.7, 1.0, 1.4)


@dataclass
class ReconstructConfig:
    """How tracks become cameras and points."""

    mapper: Literal["incremental", "global"] = "incremental"
    """COLMAP mapper: incremental (robust, default) or global (GLOMAP-style, faster on long videos)."""
    camera_model: CameraModel = "SIMPLE_RADIAL"
    """Shared camera model for all frames (one focal length, radial distortion k1 by default)."""
    focal: float | None = None
    """Focal length in pixels if known; default: estimated, starting from the source's metadata (see
    ``metadata_focal``) or else 1.2 * max(width, height)."""
    refine_focal: bool = True
    """Refine the given ``focal`` in bundle adjustment (ignored when ``focal`` is not given)."""
    metadata_focal: bool = True
    """Without ``focal``, start from the focal length the camera recorded, when the source has one: EXIF
    FocalLengthIn35mmFilm or FocalLength + FocalPlaneXResolution of photos, a phone video's 35 mm-equivalent
    metadata key. It is still refined."""
    constrained_retry: bool = True
    """When the free camera fails (no structure, or an absurd focal length or distortion, typical of
    panning shots and scenes dominated by a moving subject) but the tracks show parallax, solve again
    with the camera held fixed: SIMPLE_PINHOLE at ``focal``, or when not given at 0.7, 1.0 and 1.4
    times the larger image side, keeping the one whose points reproject best."""
    stride: int = 1
    """Map every ``stride``-th frame (the others get poses afterwards from the 3D points)."""
    max_frames: int = 150
    """At most this many frames go to the mapper (evenly spread); the others as for ``stride``."""
    register_skipped_frames: bool = True
    """Give frames left out of mapping (or not registered by it) a pose by absolute-pose RANSAC."""
    max_pnp_rounds: int = 20
    """Absolute-pose registration repeats (after triangulating with the new frames) up to this many times."""
    final_bundle_adjustment: bool = True
    """After that, refine all poses, the camera and the points together (COLMAP bundle adjustment), then triangulate again."""
    max_sfm_tracks: int = 800
    """Tracks handed to the mapper (spread over the image; SIFT feature tracks first, then the longest); all
    tracks are triangulated."""
    min_sfm_tracks_per_frame: int = 150
    """More tracks go to the mapper where a frame sees fewer than this many of the chosen ones."""
    refine_tracks: bool | Literal["auto"] = "auto"
    """Sharpen the tracks with OpenCV Lucas-Kanade from their query points before anything else, keeping
    only observations that converge near the track with a small patch residual (needs the clip).
    For coarse trackers such as the bundled small model; it drops most observations of precise ones.
    auto: on for the bundled model's tracks (``tracks.meta["model"]`` starts with "bundled") when the
    clip is given, off otherwise."""
    sift: bool = True
    """Add SIFT matches between the mapped frames (COLMAP's extractor and matcher) as short feature
    tracks. Tracks chain their errors from frame to frame; SIFT matches each pair afresh, which keeps
    wide baselines (photo sets) straight and links frames across gaps. Needs the clip (skipped
    without it); costs 0.25-2 s a frame on one CPU thread, by image size and matching."""
    sift_matching: SiftMatching = "auto"
    """Frame pairs SIFT matches: all (exhaustive), each frame with its next 10 and 2^k-th (sequential), or
    auto: exhaustive up to 50 mapped frames, else sequential."""
    sift_max_features: int = 4096
    """SIFT keypoints per frame at most."""
    margin: float = 4.0
    """Ignore observations closer than this many pixels to the frame border."""
    min_confidence: float | None = None
    """Use observations with confidence above this; default: the tracks' ``visible`` flags."""
    window: int = 5
    """Match each frame with the next ``window`` frames (plus long-range pairs at 2w, 4w, ...)."""
    epipolar_threshold: float = 2.0
    """Sampson distance (px) above which a track is an epipolar outlier in a frame pair."""
    moving_outlier_ratio: float = 0.5
    """Drop a track as moving when it is an outlier in more than this share of its pairs."""
    max_reprojection_error: float = 3.0
    """Triangulated points: observations reprojecting further than this (px) are dropped."""
    min_triangulation_angle: float = 1.5
    """Triangulated points: smallest angle (degrees) between the rays of a point."""
    min_views: int = 2
    """Triangulated points: fewest frames that must see a point."""
    outlier_neighbors: int = 20
    """Statistical outlier removal: neighbours considered (0 disables)."""
    outlier_std_ratio: float = 2.0
    """Statistical outlier removal: keep points within this many standard deviations."""
    voxel_size: float | None = None
    """Voxel thinning edge in scene units; default: 0.2% of the cloud's extent; 0 disables."""
    max_mapping_seconds: float | None = 300.0
    """Incremental mapper: stop after this long and keep what is registered (degenerate videos, e.g. pure panning, can search for an initial pair for many minutes); None: no limit."""
    num_threads: int = -1
    """Threads for COLMAP (-1: all cores). With more than 1, a few SIFT matches (COLMAP seeds a random generator
    per thread) and so the scene can differ slightly between runs."""
    seed: int = 0
    """Random seed for RANSAC and the mapper."""


@dataclass
class ReconstructReport:
    """What happened, for ``report.json`` and logs."""

    frames: int = 0
    frames_mapped: int = 0
    """Frames handed to the mapper."""
    frames_registered: int = 0
    """Frames with a pose in the end (mapper + absolute pose)."""
    frames_registered_by_mapper: int = 0
    frames_registered_by_pnp: int = 0
    camera_implausible: bool = False
    """The mapper's camera was absurd (focal far outside 0.1-10 image sizes, or huge distortion): poses dropped."""
    tracks_refined: bool = False
    """The tracks were sharpened by Lucas-Kanade first (``refine_tracks``)."""
    sift_tracks: int = 0
    """SIFT feature tracks added to the tracker's (``sift``)."""
    camera_fixed: str = ""
    """Why the camera was held fixed on a retry (empty when the free camera worked or no retry ran)."""
    unregistered_frames: list[int] = field(default_factory=list)
    tracks: int = 0
    tracks_moving: int = 0
    """Tracks rejected as moving (epipolar outliers)."""
    sfm_tracks: int = 0
    sfm_points: int = 0
    sfm_models: int = 0
    sfm_mean_reprojection_error: float = float("nan")
    points_triangulated: int = 0
    points: int = 0
    """Points in the scene after clean-up."""
    mean_reprojection_error: float = float("nan")
    """Mean over the scene's points of their mean reprojection error (px)."""
    focal: float = float("nan")
    focal_prior: str = ""
    """Where the starting focal length came from: "given", the metadata tag, or "default (1.2 x side)"."""
    runtime_s: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class ReconstructResult:
    scene: Scene
    report: ReconstructReport
    tracks: Tracks
    """The tracks ``scene.track_ids`` index: the input tracks (LK-refined when ``tracks_refined``),
    followed by the SIFT feature tracks. Pass these to :func:`.write_colmap_model` so every point keeps
    its 2D observations."""


def _select_frames(T: int, stride: int, max_frames: int) -> np.ndarray:
    frames = np.arange(0, T, max(1, int(stride)))
    if max_frames and len(frames) > max_frames:
        pick = np.unique(np.round(np.linspace(0, len(frames) - 1, int(max_frames))).astype(np.int64))
        frames = frames[pick]
    return frames


def _spread_pick(cand: np.ndarray, pos: np.ndarray, length: np.ndarray, frame_size: tuple[int, int], k: int,
                 rng: np.random.Generator, cells: int = 12) -> np.ndarray:
    """``k`` of the tracks ``cand`` at image positions ``pos``: round-robin over grid cells, longest first."""
    if len(cand) <= k:
        return cand
    h, w = frame_size
    cell = (np.clip(pos[:, 1] / h * cells, 0, cells - 1).astype(np.int64) * cells
            + np.clip(pos[:, 0] / w * cells, 0, cells - 1).astype(np.int64))
    tiebreak = rng.random(len(cand))
    order = np.lexsort((tiebreak, -length, cell))
    sorted_cells = cell[order]
    start = np.searchsorted(sorted_cells, sorted_cells, side="left")
    rank = np.arange(len(order)) - start  # rank of the track inside its cell
    return cand[order[np.lexsort((-length[order], rank))[:k]]]


def _select_sfm_tracks(xy: np.ndarray, usable: np.ndarray, static: np.ndarray, frame_size: tuple[int, int],
                       max_tracks: int, seed: int, cells: int = 12, min_per_frame: int = 0,
                       preferred: np.ndarray | None = None) -> np.ndarray:
    """Long static tracks spread over the image: round-robin over grid cells of the mean position.

    Then every frame that sees fewer than ``min_per_frame`` of them gets more, picked the same
    way among the tracks it sees (so that frames far from where most long tracks live, e.g.
    after a gap or a fast motion, still reach the mapper; the total may exceed ``max_tracks``).
    Tracks flagged ``preferred`` (N,) come before all others in each cell, whatever their length.
    """
    n_obs = usable.sum(0)
    cand = np.flatnonzero(static & (n_obs >= 2))
    if len(cand) <= max_tracks:
        return cand
    rng = np.random.default_rng(seed)
    rank = n_obs + (usable.shape[0] + 1) * (preferred if preferred is not None else 0)
    with np.errstate(invalid="ignore"):
        mean_xy = np.nansum(np.where(usable[..., None], xy, 0), axis=0) / np.maximum(n_obs, 1)[:, None]
    chosen = np.zeros(usable.shape[1], dtype=bool)
    chosen[_spread_pick(cand, mean_xy[cand], rank[cand], frame_size, max_tracks, rng, cells)] = True
    eligible = np.zeros_like(chosen)
    eligible[cand] = True
    for t in np.argsort(usable[:, chosen].sum(1), kind="stable"):
        missing = min_per_frame - int((usable[t] & chosen).sum())
        if missing <= 0:
            continue
        more = np.flatnonzero(usable[t] & eligible & ~chosen)
        chosen[_spread_pick(more, xy[t, more], rank[more], frame_size, missing, rng, cells)] = True
    return np.flatnonzero(chosen)


def _mapping_failure(m, frame_size: tuple[int, int]) -> str:
    """Why a mapper result cannot be used ("" when it can)."""
    if not m.registered.any():
        return "the mapper registered no frame"
    if _implausible_camera(m):
        # Pure rotation or a scene dominated by a moving object: the mapper "succeeds" with a
        # focal length of many image widths or a huge distortion; those poses are not usable.
        return (f"the mapper's camera is implausible ({m.camera.model.name} {m.camera.params_to_string()} "
                f"for a {frame_size[1]}x{frame_size[0]} image)")
    if m.num_points < MIN_MODEL_POINTS:
        # COLMAP can keep a model of frames registered to one another without any 3D point
        # (pure rotation): its translations are arbitrary.
        return f"the mapper's model has {m.num_points} 3D points (too little camera translation?)"
    return ""


def _bogus_camera(camera) -> bool:
    """Focal length outside 0.1-10 image sizes, or distortion above 1: what degenerate motion gives."""
    return camera.has_bogus_params(0.1, 10.0, 1.0)


def _implausible_camera(m) -> bool:
    return bool(m.registered.any()) and _bogus_camera(m.camera)


def _register_by_pnp(frames: np.ndarray, xy: np.ndarray, usable: np.ndarray, pts: np.ndarray,
                     track_ids: np.ndarray, camera, min_inliers: int = 20, max_error: float = 4.0
                     ) -> dict[int, np.ndarray]:
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


def _frames_at(clip: Clip, frame_size: tuple[int, int], frames: np.ndarray) -> np.ndarray:
    """Frames ``frames`` of the clip, resized to the tracks' ``frame_size`` when it differs."""
    import cv2

    if clip.frame_size == tuple(frame_size):
        return clip.frames[frames]
    h, w = frame_size
    return np.stack([cv2.resize(clip.frames[t], (w, h), interpolation=cv2.INTER_AREA) for t in frames])


def _colors(tracks: Tracks, clip: Clip | None, ids: np.ndarray) -> np.ndarray:
    if clip is None or len(ids) == 0:
        return np.full((len(ids), 3), 128, dtype=np.uint8)
    q = tracks.queries[ids]
    t = np.clip(np.rint(q[:, 0]).astype(np.int64), 0, clip.num_frames - 1)
    sx = clip.width / tracks.frame_size[1]
    sy = clip.height / tracks.frame_size[0]
    x = np.clip(np.rint(q[:, 1] * sx), 0, clip.width - 1).astype(np.int64)
    y = np.clip(np.rint(q[:, 2] * sy), 0, clip.height - 1).astype(np.int64)
    return clip.frames[t, y, x]


@dataclass
class _Solution:
    """Cameras and points from one camera setting (see :func:`_solve_cameras`)."""

    mapping: object
    world_from_cam: np.ndarray
    registered: np.ndarray
    tri: object
    K: np.ndarray
    dist: np.ndarray
    by_mapper: int
    by_pnp: int
    camera_implausible: bool
    failure: str
    """Why these poses cannot be used ("" when they can)."""


def _focal_prior(cfg: ReconstructConfig, clip: Clip | None, frame_size: tuple[int, int]
                 ) -> tuple[float | None, str]:
    """The starting focal length (None: the mapper's default) and where it came from."""
    if cfg.focal:
        return float(cfg.focal), "given"
    if cfg.metadata_focal and clip is not None:
        prior = focal_prior(clip.source, frame_size)
        if prior is not None:
            log.info("starting focal length %.0f px from %s", prior.focal, prior.source)
            return prior.focal, prior.source
    return None, "default (1.2 x side)"


def _solve_cameras(*, tracks: Tracks, cfg: ReconstructConfig, frames: np.ndarray, xy_f: np.ndarray,
                   usable_sfm: np.ndarray, geoms, static: np.ndarray, usable_static: np.ndarray,
                   stage: Callable[[str], None], camera_model: str, focal: float | None, refine_focal: bool,
                   suffix: str = "") -> _Solution:
    """COLMAP mapping, absolute-pose registration of the other frames, bundle adjustment and
    triangulation of every static track, for one camera setting."""
    T = tracks.num_frames
    fixed_focal = focal is not None and not refine_focal
    stage("mapping" + suffix)
    m = run_mapping(xy_f, usable_sfm, geoms, static, tracks.frame_size, mapper=cfg.mapper,
                    camera_model=camera_model, focal=focal, refine_focal=refine_focal,
                    num_threads=cfg.num_threads, seed=cfg.seed, max_seconds=cfg.max_mapping_seconds)
    failure = _mapping_failure(m, tracks.frame_size)
    implausible = _implausible_camera(m)
    if failure:
        m.registered[:] = False
        m.world_from_cam[:] = np.nan
    by_mapper = int(m.registered.sum())
    K, dist, cam = camera_to_scene(m.camera)
    wfc = np.full((T, 4, 4), np.nan)
    registered = np.zeros(T, dtype=bool)
    wfc[frames[m.registered]] = m.world_from_cam[m.registered]
    registered[frames[m.registered]] = True

    stage("triangulation" + suffix)
    cams = [cam]
    cidx = np.zeros(T, dtype=np.int64)

    def triangulate():
        return triangulate_tracks(tracks.xy.astype(np.float64), usable_static, wfc, registered, cams, cidx,
                                  max_error=cfg.max_reprojection_error,
                                  min_angle_deg=cfg.min_triangulation_angle, min_views=cfg.min_views)

    tri = triangulate()
    rounds = by_pnp = 0
    while cfg.register_skipped_frames and len(tri.points) >= 20 and rounds < cfg.max_pnp_rounds:
        # Each round registers the frames that see enough triangulated tracks; their views
        # triangulate more tracks, which reach further frames (e.g. the rest of a video the
        # mapper split into several models).
        rounds += 1
        todo = np.flatnonzero(~registered)
        # Later rounds rest on points seen from few, newly registered frames: ask for more support.
        poses = _register_by_pnp(todo, tracks.xy, usable_static, tri.points, tri.track_ids, cam,
                                 min_inliers=20 if rounds == 1 else 50, max_error=cfg.max_reprojection_error)
        if not poses:
            break
        for t, pose in poses.items():
            wfc[t], registered[t] = pose, True
        by_pnp += len(poses)
        tri = triangulate()
    if cfg.final_bundle_adjustment and len(tri.points) >= 20 and registered.sum() >= 2:
        stage("bundle_adjustment" + suffix)
        ba = bundle_adjust(tracks.xy[:, tri.track_ids].astype(np.float64), tri.inlier_obs, wfc, registered,
                           tri.points, m.camera, refine_focal=not fixed_focal,
                           refine_extra=camera_model not in ("SIMPLE_PINHOLE", "PINHOLE"),
                           num_threads=cfg.num_threads)
        stage("triangulation_final" + suffix)
        if _bogus_camera(ba.camera) or not np.all(np.isfinite(ba.world_from_cam[registered])):
            # Near-degenerate motion (e.g. panning) lets the focal length run away; keep the mapper's.
            log.warning("bundle adjustment gave an implausible camera (%s); keeping the mapper's result",
                        ba.camera.params_to_string())
        else:
            wfc = ba.world_from_cam
            K, dist, cam = camera_to_scene(ba.camera)
            cams = [cam]
            tri = triangulate()
    if not failure and registered.sum() >= 2 and len(tri.points) < MIN_MODEL_POINTS:
        # A near-orthographic camera (a long focal length on little translation) registers frames
        # whose rays then meet at too small angles for any point.
        failure = (f"{int(registered.sum())} frames got a pose but only {len(tri.points)} points triangulate "
                   f"(focal {K[0, 0]:.0f} px: too little parallax for this camera)")
    return _Solution(m, wfc, registered, tri, K, dist, by_mapper, by_pnp, implausible, failure)


def reconstruct_detailed(tracks: Tracks, clip: Clip | None = None, config: ReconstructConfig | None = None,
                         *, exclude_mask: np.ndarray | None = None,
                         progress: Callable[[str], None] | None = None) -> ReconstructResult:
    """Like :func:`reconstruct`, also returning a :class:`ReconstructReport`."""
    cfg = config or ReconstructConfig()
    T, N = tracks.num_frames, tracks.num_points
    if clip is not None and clip.num_frames != T:
        raise UserError(f"The clip has {clip.num_frames} frames but the tracks have {T}. "
                        "Pass the clip the tracks were computed on.")
    if T < 2 or N < 8:
        raise UserError(f"Reconstruction needs at least 2 frames and 8 tracks, got {T} frames and "
                        f"{N} tracks. Track a longer video or use a denser grid (--grid-size).")
    rep = ReconstructReport(frames=T, tracks=N)
    times: dict[str, float] = {}

    def stage(name: str) -> None:
        times[name] = time.perf_counter()
        if progress is not None:
            progress(name)

    stage("correspondences")
    usable_all = usable_observations(tracks, margin=cfg.margin, min_confidence=cfg.min_confidence,
                                     exclude_mask=exclude_mask)
    refine = cfg.refine_tracks
    if refine == "auto":
        refine = str(tracks.meta.get("model", "")).startswith("bundled")
        if refine and (clip is None or clip.frame_size != tracks.frame_size):
            log.info("bundled-model tracks without their clip: not refined (refine_tracks needs the frames)")
            refine = False
    rep.tracks_refined = bool(refine)
    if refine:
        if clip is None or clip.frame_size != tracks.frame_size:
            raise UserError("--reconstruct.refine-tracks needs the video the tracks were made on, at the "
                            "tracks' frame size.")
        xy, usable_all = refine_observations(tracks, clip.frames, usable_all)
        log.info("refined %d of %d observations", int(usable_all.sum()), int(tracks.visible.sum()))
        tracks = replace(tracks, xy=xy)
    frames = _select_frames(T, cfg.stride, cfg.max_frames)
    # The mapper gets the SIFT tracks first: matched pair by pair, they carry no chained drift, which
    # long tracks over wide baselines do (Strecha castle-P30: 0.5% ATE this way, 10-18% when the
    # longest tracks, the tracker's, go first). The tracker's fill the frames SIFT leaves thin.
    from_sift = None
    if cfg.sift and clip is None:
        log.info("no frames given: tracks only, no SIFT feature tracks (pass the clip to add them)")
    elif cfg.sift:
        stage("sift")
        features = sift_tracks(_frames_at(clip, tracks.frame_size, frames), frame_indices=frames, num_frames=T,
                               matching=cfg.sift_matching, max_features=cfg.sift_max_features,
                               num_threads=cfg.num_threads, seed=cfg.seed)
        usable_all = np.concatenate([usable_all, usable_observations(
            features, margin=cfg.margin, min_confidence=cfg.min_confidence, exclude_mask=exclude_mask)], axis=1)
        tracks = tracks.concatenate(features)
        from_sift = np.arange(tracks.num_points) >= N
        N = tracks.num_points
        rep.sift_tracks = features.num_points
    rep.frames_mapped = len(frames)
    xy_f = tracks.xy[frames].astype(np.float64)
    usable_f = usable_all[frames]
    pairs = frame_pairs(len(frames), cfg.window)
    sub = Tracks(xy_f, usable_f, tracks.confidence[frames], tracks.queries, tracks.frame_size)
    static, geoms = moving_track_filter(sub, usable_f, pairs, threshold=cfg.epipolar_threshold,
                                        max_outlier_ratio=cfg.moving_outlier_ratio, seed=cfg.seed)
    rep.tracks_moving = int((~static).sum())
    sfm_ids = _select_sfm_tracks(xy_f, usable_f, static, tracks.frame_size, cfg.max_sfm_tracks, cfg.seed,
                                 min_per_frame=cfg.min_sfm_tracks_per_frame, preferred=from_sift)
    rep.sfm_tracks = len(sfm_ids)
    sfm_mask = np.zeros(N, dtype=bool)
    sfm_mask[sfm_ids] = True

    usable_static = usable_all & static[None]
    solve = dict(tracks=tracks, cfg=cfg, frames=frames, xy_f=xy_f, usable_sfm=usable_f & sfm_mask[None],
                 geoms=geoms, static=static, usable_static=usable_static, stage=stage)
    focal, rep.focal_prior = _focal_prior(cfg, clip, tracks.frame_size)
    refine_focal = cfg.refine_focal or cfg.focal is None
    sol = _solve_cameras(camera_model=cfg.camera_model, focal=focal, refine_focal=refine_focal, **solve)
    if sol.failure:
        fixed = cfg.focal is not None and not cfg.refine_focal and cfg.camera_model == "SIMPLE_PINHOLE"
        parallax = parallax_share(xy_f, usable_f & static[None], threshold=cfg.epipolar_threshold)
        if parallax < MIN_PARALLAX_SHARE:
            sol.failure += f"; the tracks follow one homography ({parallax:.1%} off it): the camera only turned"
        elif cfg.constrained_retry and not fixed:
            # A free focal length and distortion are what little translation (panning with some
            # walking, a big moving subject) lets run away; with the camera fixed the same tracks
            # map. The focal length is then barely observable: try a few fields of view, keep the
            # one whose points reproject best.
            side = max(tracks.frame_size)
            focals = [float(focal)] if focal else [k * side for k in RETRY_FOCALS]
            log.warning("%s; solving again with the camera fixed (SIMPLE_PINHOLE, focal %s px; pass the real "
                        "focal length with --reconstruct.focal if you know it)", sol.failure,
                        " / ".join(f"{f:.0f}" for f in focals))
            found: list[tuple[float, float, _Solution]] = []
            for f0 in focals:
                retry = _solve_cameras(camera_model="SIMPLE_PINHOLE", focal=f0, refine_focal=False,
                                       suffix=f"_fixed_f{f0:.0f}", **solve)
                if retry.failure:
                    log.info("fixed camera f=%.0f px: %s", f0, retry.failure)
                else:
                    found.append((float(retry.tri.errors.mean()), f0, retry))
                    log.info("fixed camera f=%.0f px: %d points, %.2f px", f0, len(retry.tri.points), found[-1][0])
            if found:
                _, f0, best = min(found, key=lambda c: c[0])
                rep.camera_fixed = f"{sol.failure}; camera fixed at SIMPLE_PINHOLE f={f0:.0f} px"
                sol = best
    if sol.failure:
        log.warning("%s", sol.failure)
    m, wfc, registered, tri, K, dist = sol.mapping, sol.world_from_cam, sol.registered, sol.tri, sol.K, sol.dist
    rep.sfm_points, rep.sfm_models = m.num_points, m.num_models
    rep.sfm_mean_reprojection_error = m.mean_reprojection_error
    rep.camera_implausible = sol.camera_implausible
    rep.frames_registered_by_mapper, rep.frames_registered_by_pnp = sol.by_mapper, sol.by_pnp
    rep.focal = float(K[0, 0])
    rep.points_triangulated = len(tri.points)

    stage("cleanup")
    keep = np.arange(len(tri.points))
    if cfg.outlier_neighbors > 0:
        keep = cleanup.statistical_outliers(tri.points, cfg.outlier_neighbors, cfg.outlier_std_ratio)
    vs = cleanup.auto_voxel_size(tri.points[keep]) if cfg.voxel_size is None else cfg.voxel_size
    keep = keep[cleanup.voxel_thin(tri.points[keep], vs, tri.errors[keep])]
    pts, ids, errs = tri.points[keep], tri.track_ids[keep], tri.errors[keep]
    times["end"] = time.perf_counter()

    scene = Scene(intrinsics=K[None], image_size=tracks.frame_size, camera_index=np.zeros(T, np.int64),
                  world_from_cam=wfc, registered=registered, points=pts, colors=_colors(tracks, clip, ids),
                  track_ids=ids, distortion=dist, frame_indices=np.arange(T, dtype=np.int64),
                  point_errors=errs)
    rep.frames_registered = scene.num_registered
    rep.unregistered_frames = np.flatnonzero(~registered).tolist()
    rep.points = len(pts)
    rep.mean_reprojection_error = float(errs.mean()) if len(errs) else float("nan")
    names = list(times)
    rep.runtime_s = {a: round(times[b] - times[a], 3) for a, b in zip(names[:-1], names[1:])}
    log.info("registered %d/%d frames, %d points, mean reprojection error %.2f px",
             rep.frames_registered, T, rep.points, rep.mean_reprojection_error)
    return ReconstructResult(scene, rep, tracks)


def reconstruct(tracks: Tracks, clip: Clip | None = None, config: ReconstructConfig | None = None, *,
                exclude_mask: np.ndarray | None = None,
                progress: Callable[[str], None] | None = None) -> Scene:
    """Estimate cameras and coloured 3D points from point tracks.

    ``tracks`` in pixels of the clip (x right, y down); ``clip`` gives the point colours
    (at each track's query frame; ``None``: grey). ``exclude_mask`` ((H, W) or (T, H, W)
    bool, True = ignore) removes regions such as moving people before anything else.
    ``progress(stage)`` is called as each stage starts. Frames that get no pose are in
    the scene with ``registered`` False and NaN poses.
    """
    return reconstruct_detailed(tracks, clip, config, exclude_mask=exclude_mask, progress=progress).scene
