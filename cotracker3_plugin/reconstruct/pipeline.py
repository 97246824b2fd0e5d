"""``reconstruct(tracks, clip, config) -> Scene``: the whole tracks-to-3D pipeline, in order.

Tracks -> usable observations (Lucas-Kanade-sharpened for coarse trackers; SIFT feature tracks
joined) -> :mod:`.motion` (which tracks and pixels move; they leave every later stage) -> key frames
solved at a trial focal -> :mod:`.calibrate` (the focal length from the static correspondences) ->
:mod:`.cameras` (the free-camera solve from that focal; a fixed camera only as a last resort) ->
clean-up -> Scene. Each stage is its own module; this one only orders them and reports.
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
from cotracker3_plugin.reconstruct.calibrate import CalibrationConfig, FocalEstimate, self_calibrate
from cotracker3_plugin.reconstruct.cameras import (
    CameraSolution,
    SolveOptions,
    refine_photometrically,
    solve_cameras,
)
from cotracker3_plugin.reconstruct.correspondences import (
    frame_pairs,
    on_mask,
    parallax_share,
    select_frames,
    select_sfm_tracks,
    split_tracks,
    usable_observations,
)
from cotracker3_plugin.reconstruct.keyframes import residual_limit, solve_keyframes
from cotracker3_plugin.reconstruct.mapping import CameraModel, make_camera
from cotracker3_plugin.reconstruct.motion import (
    MotionConfig,
    moving_masks,
    multiview_test,
    segment_motion,
)
from cotracker3_plugin.reconstruct.scene import Scene
from cotracker3_plugin.reconstruct.sift import SiftMatching, sift_tracks
from cotracker3_plugin.refine import refine_observations
from cotracker3_plugin.tracks import Tracks

log = logging.getLogger(__name__)

__all__ = ["ReconstructConfig", "ReconstructReport", "ReconstructResult", "reconstruct",
           "reconstruct_detailed"]


#: Below this share of static tracks off one homography the video has no parallax (the camera only turned
#: or stood still, or the scene is a plane): no cameras or points are made up from it. Low on purpose: a
#: distant landscape panned from a paraglider (0.5 % at 480 px) still maps on a fixed camera.
MIN_PARALLAX_SHARE = 0.003
#: Key-frame solve: focal lengths (x the larger image side) tried in turn when no prior is known.
KEYFRAME_FOCALS = (0.9, 0.6, 1.4)
#: Fixed-camera last resort when the focal length is not determined: a phone's wide camera (~70 degrees
#: across the long side), 53 and 39 degrees.
RETRY_FOCALS = (0.7, 1.0, 1.4)


@dataclass
class ReconstructConfig:
    """How tracks become cameras and points."""

    mapper: Literal["incremental", "global"] = "incremental"
    """COLMAP mapper: incremental (robust, default) or global (GLOMAP-style, faster on long videos)."""
    camera_model: CameraModel = "SIMPLE_RADIAL"
    """Shared camera model for all frames (one focal length, radial distortion k1 by default)."""
    focal: float | None = None
    """Focal length in pixels if known; default: from the source's metadata (see ``metadata_focal``), else
    self-calibrated from the video (see ``calibration``)."""
    refine_focal: bool = True
    """Refine the given ``focal`` in bundle adjustment (ignored when ``focal`` is not given)."""
    metadata_focal: bool = True
    """Without ``focal``, start from the focal length the camera recorded, when the source has one: EXIF
    FocalLengthIn35mmFilm or FocalLength + FocalPlaneXResolution of photos, a phone video's 35 mm-equivalent
    metadata key. It is still refined (and self-calibration checks it)."""
    constrained_retry: bool = True
    """Last resort: when the free camera fails (no structure, or an absurd focal length or distortion), solve
    again with the camera held fixed (SIMPLE_PINHOLE) at the given or self-calibrated focal length, or, when
    the video did not determine it, at 0.7, 1.0 and 1.4 x the larger side, keeping the best reprojection."""
    motion: MotionConfig = field(default_factory=MotionConfig)
    """Moving subjects: which tracks and pixels are kept out of the map (and masked for nerfstudio)."""
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    """Self-calibration of the focal length when neither ``focal`` nor the video's metadata gives it."""
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
    max_track_span: int | Literal["auto"] | None = "auto"
    """Cut each tracker track into pieces of at most this many frames before mapping (staggered from track to
    track, so the pieces still tie the clip together; the parallax test and the focal calibration still see
    whole tracks). A chained track drifts along the image motion, and as one 3D point it bends the cameras:
    on dynamic_room with --tracker klt the focal error went from +2.00 % to +0.04 % and the trajectory error
    from 0.73 % to 0.16 % of the path radius; with the bundled model static_room's from 0.12 % to 0.09 %
    (benchmarks/reconstruct_accuracy.py). Tracks without drift lose by it (tests/reconstruct/test_pipeline.py's
    synthetic tracks, 1 px noise: focal +2.8 % cut, within 1 % whole), and so do pieces without SIFT tracks to
    tie them together. auto: 12 for KLT and bundled-model tracks joined by SIFT, whole tracks otherwise (the
    official weights, tracks from elsewhere, --reconstruct.no-sift). None: whole tracks."""
    photometric_refinement: bool = True
    """After the bundle adjustment, measure every map track's observations again by matching the patch of
    its reference frame (its query), carried into each frame by the cameras (NCC), and bundle-adjust once
    more on them: the cameras no longer fit the trackers' drift (static_room with --tracker klt: trajectory
    error 0.29 % -> 0.05 % of the path radius, focal +0.05 %; benchmarks/reconstruct_accuracy.py). Needs the clip; costs a few seconds."""
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
    no_parallax: bool = False
    """The camera only turned (or the scene is a plane): no 3D can be had from this video."""
    failure: str = ""
    """Why no usable cameras came out (empty when they did)."""
    unregistered_frames: list[int] = field(default_factory=list)
    tracks: int = 0
    track_pieces: int = 0
    """Pieces the tracker's tracks were cut into for mapping (``max_track_span``; 0: not cut)."""
    tracks_moving: int = 0
    """Tracks on moving subjects (two-view and multi-view tests), kept out of the map."""
    moving_pixel_share: float = 0.0
    """Mean share of each frame's pixels masked as moving."""
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
    """The final focal length (px), after bundle adjustment."""
    focal_prior: str = ""
    """Where the focal length handed to the mapper came from: "given", the metadata tag, "self-calibrated",
    or "default (...)" when nothing determined it."""
    calibration: dict = field(default_factory=dict)
    """Self-calibration: estimate, whether the data determined it, sharpness of the minimum, profile."""
    runtime_s: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class ReconstructResult:
    scene: Scene
    report: ReconstructReport
    tracks: Tracks
    """The tracks ``scene.track_ids`` index: the input tracks (LK-refined when ``tracks_refined``, cut into
    pieces when ``max_track_span`` is set), followed by the SIFT feature tracks. Pass these to :func:`.write_colmap_model` so every point keeps
    its 2D observations."""
    dynamic: np.ndarray | None = None
    """(N,) bool over ``tracks``: the track follows a moving subject."""
    input_dynamic: np.ndarray | None = None
    """(N_in,) bool over the tracks given to the reconstruction (``tracks`` may hold them cut into pieces,
    see ``max_track_span``): some piece of the track follows a moving subject."""
    source_track: np.ndarray | None = None
    """(N,) for each of ``tracks``, the input track it is (a piece of); -1 for SIFT feature tracks. So
    ``source_track[scene.track_ids]`` are the input tracks the points come from."""
    moving_masks: np.ndarray | None = None
    """(T, H, W) bool at the tracks' frame size: pixels of moving subjects in each frame."""


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


#: ``max_track_span="auto"``: the pieces' length for the trackers known to drift.
AUTO_TRACK_SPAN = 12


def _track_span(setting: int | str | None, tracks: Tracks, with_sift: bool) -> int | None:
    """The piece length ``max_track_span`` asks for (None: whole tracks); ``"auto"`` cuts chained KLT tracks
    and the bundled model's, whose errors drift (``tracks.meta`` says which tracker made them), when SIFT
    tracks join them: without SIFT the pieces alone tie the frames together too loosely (static_room, KLT:
    1.2 % trajectory error cut, under 1 % whole)."""
    if setting != "auto":
        return int(setting) if setting else None
    if not with_sift:
        return None
    meta = tracks.meta
    drifts = meta.get("tracker") == "klt" or str(meta.get("model", "")).startswith("bundled")
    return AUTO_TRACK_SPAN if drifts else None


def _focal_prior(cfg: ReconstructConfig, clip: Clip | None, frame_size: tuple[int, int]
                 ) -> tuple[float | None, str]:
    """The focal length known before looking at the tracks (None: unknown) and where it came from."""
    if cfg.focal:
        return float(cfg.focal), "given"
    if cfg.metadata_focal and clip is not None:
        prior = focal_prior(clip.source, frame_size)
        if prior is not None:
            log.info("focal length %.0f px from %s", prior.focal, prior.source)
            return prior.focal, prior.source
    return None, ""


def _no_scene(tracks: Tracks, clip: Clip | None, rep: ReconstructReport, dynamic: np.ndarray,
              parent: np.ndarray, n_input: int, times: dict[str, float], stage: Callable[[str], None]
              ) -> ReconstructResult:
    """The result when no camera can be solved: every frame unregistered, no point."""
    T = tracks.num_frames
    size = tracks.frame_size
    stage("end")
    rep.frames_registered, rep.unregistered_frames = 0, list(range(T))
    names = list(times)
    rep.runtime_s = {a: round(times[b] - times[a], 3) for a, b in zip(names[:-1], names[1:])}
    side = max(size)
    K = np.array([[1.2 * side, 0, (size[1] - 1) / 2], [0, 1.2 * side, (size[0] - 1) / 2], [0, 0, 1.0]])
    scene = Scene(intrinsics=K[None], image_size=size, camera_index=np.zeros(T, np.int64),
                  world_from_cam=np.full((T, 4, 4), np.nan), registered=np.zeros(T, bool), points=np.zeros((0, 3)),
                  colors=np.zeros((0, 3), np.uint8), track_ids=np.zeros(0, np.int64),
                  frame_indices=np.arange(T, dtype=np.int64), point_errors=np.zeros(0))
    return _result(scene, rep, tracks, dynamic, np.zeros((T, *size), dtype=bool), parent, n_input)


def reconstruct_detailed(tracks: Tracks, clip: Clip | None = None, config: ReconstructConfig | None = None,
                         *, exclude_mask: np.ndarray | None = None,
                         progress: Callable[[str], None] | None = None) -> ReconstructResult:
    """Like :func:`reconstruct`, also returning a :class:`ReconstructReport`, the tracks' moving flags
    and the per-frame masks of moving pixels."""
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
    size = tracks.frame_size
    side = max(size)
    opts = SolveOptions(mapper=cfg.mapper, num_threads=cfg.num_threads, seed=cfg.seed,
                        max_mapping_seconds=cfg.max_mapping_seconds,
                        register_skipped_frames=cfg.register_skipped_frames, max_pnp_rounds=cfg.max_pnp_rounds,
                        final_bundle_adjustment=cfg.final_bundle_adjustment,
                        max_reprojection_error=cfg.max_reprojection_error,
                        min_triangulation_angle=cfg.min_triangulation_angle, min_views=cfg.min_views,
                        photometric_refinement=cfg.photometric_refinement)

    def stage(name: str) -> None:
        times[name] = time.perf_counter()
        if progress is not None:
            progress(name)

    # -- usable observations ------------------------------------------------------------------
    stage("correspondences")
    usable_all = usable_observations(tracks, margin=cfg.margin, min_confidence=cfg.min_confidence,
                                     exclude_mask=exclude_mask)
    refine = cfg.refine_tracks
    if refine == "auto":
        refine = str(tracks.meta.get("model", "")).startswith("bundled")
        if refine and (clip is None or clip.frame_size != size):
            log.info("bundled-model tracks without their clip: not refined (refine_tracks needs the frames)")
            refine = False
    rep.tracks_refined = bool(refine)
    if refine:
        if clip is None or clip.frame_size != size:
            raise UserError("--reconstruct.refine-tracks needs the video the tracks were made on, at the "
                            "tracks' frame size.")
        xy, usable_all = refine_observations(tracks, clip.frames, usable_all)
        log.info("refined %d of %d observations", int(usable_all.sum()), int(tracks.visible.sum()))
        tracks = replace(tracks, xy=xy)
    n_input, parent = N, np.arange(N)
    whole, whole_usable = tracks, usable_all
    span = _track_span(cfg.max_track_span, tracks, with_sift=cfg.sift and clip is not None)
    if span:
        tracks, usable_all, parent = split_tracks(tracks, usable_all, span)
        N = rep.track_pieces = tracks.num_points
        log.info("%d tracks cut into %d pieces of at most %d frames", n_input, N, span)
    frames = select_frames(T, cfg.stride, cfg.max_frames)
    # The mapper gets the SIFT tracks first: matched pair by pair, they carry no chained drift, which
    # long tracks over wide baselines do (Strecha castle-P30: 0.5% ATE this way, 10-18% when the
    # longest tracks, the tracker's, go first). The tracker's fill the frames SIFT leaves thin.
    from_sift = None
    if cfg.sift and clip is None:
        log.info("no frames given: tracks only, no SIFT feature tracks (pass the clip to add them)")
    elif cfg.sift:
        stage("sift")
        features = sift_tracks(_frames_at(clip, size, frames), frame_indices=frames, num_frames=T,
                               matching=cfg.sift_matching, max_features=cfg.sift_max_features,
                               num_threads=cfg.num_threads, seed=cfg.seed)
        usable_all = np.concatenate([usable_all, usable_observations(
            features, margin=cfg.margin, min_confidence=cfg.min_confidence, exclude_mask=exclude_mask)], axis=1)
        tracks = tracks.concatenate(features)
        from_sift = np.arange(tracks.num_points) >= N
        rep.sift_tracks = features.num_points
    N = tracks.num_points
    rep.frames_mapped = len(frames)
    xy_f = tracks.xy[frames].astype(np.float64)

    # -- motion: two-view test on the mapped frames ---------------------------------------------
    stage("motion")
    seg = segment_motion(xy_f, usable_all[frames], frame_pairs(len(frames), cfg.window), cfg.motion, seed=cfg.seed)
    dynamic = seg.dynamic.copy()
    labelled = seg.tested_pairs >= cfg.motion.min_pairs

    # -- no parallax, no 3D: a camera that only turned (or stood still), or a single plane --------
    # Whole tracks (not their pieces) where long baselines matter: the parallax test and the calibration.
    P = len(parent)
    whole_xy = np.concatenate([whole.xy, tracks.xy[:, P:]], axis=1) if span else tracks.xy
    whole_usable = np.concatenate([whole_usable, usable_all[:, P:]], axis=1) if span else usable_all

    def on_whole(flags: np.ndarray) -> np.ndarray:
        """Flags over ``tracks`` -> over the whole tracks (any piece) and the SIFT tracks."""
        out = np.zeros(n_input, dtype=bool)
        np.logical_or.at(out, parent, flags[:P])
        return np.concatenate([out, flags[P:]])

    parallax = parallax_share(whole_xy[frames].astype(np.float64), whole_usable[frames] & ~on_whole(dynamic)[None],
                              threshold=cfg.motion.threshold)
    if parallax < MIN_PARALLAX_SHARE:
        rep.no_parallax = True
        rep.failure = (f"the static tracks follow one homography ({parallax:.1%} off it): the camera only turned "
                       "or stood still (or the scene is one plane), so no 3D can be had from this video. Film "
                       "while walking around the subject")
        log.warning("%s", rep.failure)
        return _no_scene(tracks, clip, rep, dynamic, parent, n_input, times, stage)

    # -- key frames: cameras at a trial focal for the multi-view test and the calibration ------
    known_focal, known_source = _focal_prior(cfg, clip, size)
    keys = frames[select_frames(len(frames), 1, cfg.calibration.max_keyframes)]
    need_keys = cfg.motion.enabled or (known_focal is None and cfg.calibration.enabled)
    key, key_sol, key_focal = None, None, float("nan")
    moving_obs = dynamic[None] & usable_all
    labelled_obs = labelled[None] & usable_all
    if need_keys and len(keys) >= 3:
        stage("keyframes")
        trials = [known_focal] if known_focal else [k * side for k in KEYFRAME_FOCALS]
        key = solve_keyframes(tracks.xy, usable_all & ~dynamic[None], keys, size, trials, opts, cfg.motion,
                               max_tracks=cfg.max_sfm_tracks, seed=cfg.seed)
        if key is not None:
            key_sol, key_focal = key.solution, key.focal
    # Calibrate on the tracks the key frames' world explains even loosely: at a trial focal good tracks
    # near the border miss by a few px too, and dropping them would bias the focal length.
    calib_out = dynamic.copy()
    if key is not None and cfg.motion.enabled:
        loose = multiview_test(tracks.xy, usable_all, key_sol.world_from_cam, key_sol.registered, key_sol.camera,
                               cfg.motion.mask_evidence_factor * key.test.limit)
        calib_out |= loose.dynamic()
    # (on whole tracks: a track is left out when any piece of it is)
    calib_usable = whole_usable & ~on_whole(calib_out)[None]

    # -- calibration ---------------------------------------------------------------------------
    if known_focal is not None:
        est = FocalEstimate(known_focal, known_source, True, message=f"focal length {known_focal:.0f} px ({known_source})")
    elif cfg.calibration.enabled and key_sol is not None:
        stage("calibration")
        key_reg = np.flatnonzero(key_sol.registered)
        est = self_calibrate(whole_xy, calib_usable, key_sol.world_from_cam, key_reg, size, key_focal,
                             cfg.calibration, fallback=(key_focal, f"default ({key_focal / side:.1f} x side)"),
                             num_threads=cfg.num_threads, seed=cfg.seed)
    else:
        f0 = key_focal if np.isfinite(key_focal) else 1.2 * side
        est = FocalEstimate(f0, f"default ({f0 / side:.1f} x side)", False,
                            message="self-calibration off or no key frames mapped")
    (log.info if est.determined else log.warning)("%s", est.message)
    rep.focal_prior, rep.calibration = est.source, est.as_dict()

    # -- motion: the multi-view test, from the key frames at the focal length now known ---------
    if key is not None and cfg.motion.enabled:
        test = key.test
        if est.determined and est.key_poses is not None:
            cam = make_camera("SIMPLE_RADIAL", size[1], size[0], est.focal, colmap_pixels=False)
            cam.params = [est.focal, *cam.params[1:3], est.k1]
            registered_keys = np.all(np.isfinite(est.key_poses[:, :3, 3]), axis=1)
            test = multiview_test(tracks.xy, usable_all, est.key_poses, registered_keys, cam,
                                  max(cfg.motion.multiview_min_error, cfg.motion.multiview_factor * est.cost))
        bad = test.dynamic()
        log.info("motion: %d tracks fail the two-view test, %d more the multi-view test",
                 int(dynamic.sum()), int((bad & ~dynamic).sum()))
        dynamic |= bad
        moving_obs = usable_all & (dynamic[None] | test.moving_obs)
        labelled_obs = usable_all & (labelled | test.tested)[None]
    masks = moving_masks(tracks.xy, usable_all, moving_obs, labelled_obs, size, cfg.motion)
    usable_static = usable_all & ~dynamic[None] & ~on_mask(tracks.xy, masks)

    # -- the free-camera solve from that focal ---------------------------------------------------
    usable_f = usable_static[frames]
    static = ~dynamic
    sfm_ids = select_sfm_tracks(xy_f, usable_f, static, size, cfg.max_sfm_tracks, cfg.seed,
                                min_per_frame=cfg.min_sfm_tracks_per_frame, preferred=from_sift)
    rep.sfm_tracks = len(sfm_ids)
    sfm_mask = np.zeros(N, dtype=bool)
    sfm_mask[sfm_ids] = True
    images = None
    if clip is not None and cfg.photometric_refinement:  # the frames themselves, not a copy, when sizes agree
        images = clip.frames if clip.frame_size == tuple(size) else _frames_at(clip, size, np.arange(T))
    solve = dict(xy=tracks.xy, frame_size=size, frames=frames, usable_sfm=usable_f & sfm_mask[None],
                 geoms=seg.geometries, static=static, usable_static=usable_static, opts=opts, stage=stage,
                 images=images, reference_frames=np.asarray(tracks.queries)[:, 0])
    given_fixed = cfg.focal is not None and not cfg.refine_focal
    # A focal the data determined is held while frames are added and freed in the final bundle
    # adjustment; an undetermined one is refined all along, as COLMAP would.
    sol = solve_cameras(camera_model=cfg.camera_model, focal=est.focal, refine_focal=not given_fixed,
                        refine_while_mapping=not est.determined, **solve)
    if sol.failure and cfg.constrained_retry and not (given_fixed and cfg.camera_model == "SIMPLE_PINHOLE"):
        # Last resort: the camera held fixed. At the focal length found when the data determined it;
        # otherwise (typically a pan: the profile keeps falling towards long focal lengths) at a few
        # fields of view as well, keeping the one whose points reproject best.
        focals = [est.focal] if est.determined else sorted({est.focal, *(k * side for k in RETRY_FOCALS)})
        log.warning("%s; solving again with the camera fixed (SIMPLE_PINHOLE, focal %s px, %s)", sol.failure,
                    " / ".join(f"{f:.0f}" for f in focals), est.source)
        found: list[tuple[float, float, CameraSolution]] = []
        # The candidates are compared without the photometric refinement; the chosen one gets it.
        for f0 in focals:
            retry = solve_cameras(camera_model="SIMPLE_PINHOLE", focal=f0, refine_focal=False,
                                  suffix=f"_fixed_f{f0:.0f}", **{**solve, "images": None})
            if retry.failure:
                log.info("fixed camera f=%.0f px: %s", f0, retry.failure)
            else:
                found.append((float(retry.tri.errors.mean()), f0, retry))
        if found:
            _, f0, best = min(found, key=lambda c: c[0])
            source = est.source if f0 == est.focal else f"the best of {len(focals)} fields of view"
            rep.camera_fixed = f"{sol.failure}; camera fixed at SIMPLE_PINHOLE f={f0:.0f} px ({source})"
            sol = best
            if images is not None and cfg.photometric_refinement:
                sol = refine_photometrically(sol, xy=tracks.xy, usable_static=usable_static, opts=opts, images=images,
                                             reference_frames=solve["reference_frames"], camera_model="SIMPLE_PINHOLE",
                                             refine_focal=False, stage=stage, suffix=f"_fixed_f{f0:.0f}")
    if sol.failure:
        rep.failure = sol.failure
        log.warning("%s", sol.failure)
    wfc, registered, tri = sol.world_from_cam, sol.registered, sol.tri
    if cfg.motion.enabled and registered.sum() >= 3 and len(tri.points):
        # Final labels and masks from every solved frame: the key frames' test saw only some frames.
        stage("motion_final")
        test = multiview_test(tracks.xy, usable_all, wfc, registered, sol.camera, residual_limit(sol, cfg.motion))
        dynamic = seg.dynamic | test.dynamic()
        # Observations vote by their own fit: a static track that slipped onto an occluder for a few
        # frames is moving evidence there and nowhere else.
        untested = seg.dynamic & ~test.tested
        far = np.nan_to_num(test.residual, nan=0.0) > cfg.motion.mask_evidence_factor * test.limit
        masks = moving_masks(tracks.xy, usable_all, usable_all & (untested[None] | far),
                             usable_all & (labelled | test.tested)[None], size, cfg.motion)
        keep = ~dynamic[tri.track_ids]
        # A point whose own query pixel lies on a moving region is not trusted either: pieces of a few frames
        # on a slow subject can fit the static geometry (dynamic_room, KLT: 15 of the 16 map points on the
        # subjects, at the price of static points within the masks' margin).
        q = np.asarray(tracks.queries, dtype=np.float64)[tri.track_ids]
        qt = np.clip(np.rint(q[:, 0]).astype(np.int64), 0, T - 1)
        qy = np.clip(np.rint(q[:, 2]).astype(np.int64), 0, size[0] - 1)
        qx = np.clip(np.rint(q[:, 1]).astype(np.int64), 0, size[1] - 1)
        on_moving = masks[qt, qy, qx] & keep
        if on_moving.any():
            log.info("motion: %d map points dropped: their query pixel is on a moving region", int(on_moving.sum()))
        keep &= ~on_moving
        tri = replace(tri, points=tri.points[keep], track_ids=tri.track_ids[keep], errors=tri.errors[keep],
                      num_views=tri.num_views[keep], inlier_obs=tri.inlier_obs[:, keep],
                      angles=None if tri.angles is None else tri.angles[keep])
    rep.tracks_moving = int(dynamic.sum())
    rep.moving_pixel_share = float(masks.mean()) if masks.size else 0.0
    rep.sfm_points, rep.sfm_models = sol.mapper_points, sol.mapper_models
    rep.sfm_mean_reprojection_error = sol.mapper_reprojection_error
    rep.camera_implausible = sol.camera_implausible
    rep.frames_registered_by_mapper, rep.frames_registered_by_pnp = sol.by_mapper, sol.by_pnp
    rep.focal = float(sol.K[0, 0])
    rep.points_triangulated = len(tri.points)

    # -- clean-up ------------------------------------------------------------------------------
    stage("cleanup")
    keep = np.arange(len(tri.points))
    if cfg.outlier_neighbors > 0:
        keep = cleanup.statistical_outliers(tri.points, cfg.outlier_neighbors, cfg.outlier_std_ratio)
    vs = cleanup.auto_voxel_size(tri.points[keep]) if cfg.voxel_size is None else cfg.voxel_size
    keep = keep[cleanup.voxel_thin(tri.points[keep], vs, tri.errors[keep])]
    pts, ids, errs = tri.points[keep], tri.track_ids[keep], tri.errors[keep]
    times["end"] = time.perf_counter()

    scene = Scene(intrinsics=sol.K[None], image_size=size, camera_index=np.zeros(T, np.int64),
                  world_from_cam=wfc, registered=registered, points=pts, colors=_colors(tracks, clip, ids),
                  track_ids=ids, distortion=sol.dist, frame_indices=np.arange(T, dtype=np.int64),
                  point_errors=errs, moving_masks=masks if cfg.motion.enabled else None)
    rep.frames_registered = scene.num_registered
    rep.unregistered_frames = np.flatnonzero(~registered).tolist()
    rep.points = len(pts)
    rep.mean_reprojection_error = float(errs.mean()) if len(errs) else float("nan")
    names = list(times)
    rep.runtime_s = {a: round(times[b] - times[a], 3) for a, b in zip(names[:-1], names[1:])}
    log.info("registered %d/%d frames, %d points, mean reprojection error %.2f px, focal %.1f px",
             rep.frames_registered, T, rep.points, rep.mean_reprojection_error, rep.focal)
    return _result(scene, rep, tracks, dynamic, masks, parent, n_input)


def _result(scene: Scene, rep: ReconstructReport, tracks: Tracks, dynamic: np.ndarray, masks: np.ndarray,
            parent: np.ndarray, n_input: int) -> ReconstructResult:
    """The result, with the flags and sources mapped back to the input tracks through ``parent`` (the input
    track of each of the first len(parent) of ``tracks``; the rest are SIFT feature tracks)."""
    source = np.concatenate([parent, np.full(tracks.num_points - len(parent), -1, dtype=np.int64)])
    input_dynamic = np.zeros(n_input, dtype=bool)
    np.logical_or.at(input_dynamic, parent, dynamic[:len(parent)])
    return ReconstructResult(scene, rep, replace(tracks, dynamic=dynamic), dynamic=dynamic, moving_masks=masks,
                             input_dynamic=input_dynamic, source_track=source)


def reconstruct(tracks: Tracks, clip: Clip | None = None, config: ReconstructConfig | None = None, *,
                exclude_mask: np.ndarray | None = None,
                progress: Callable[[str], None] | None = None) -> Scene:
    """Estimate cameras and coloured 3D points from point tracks.

    ``tracks`` in pixels of the clip (x right, y down); ``clip`` gives the point colours
    (at each track's query frame; ``None``: grey). ``exclude_mask`` ((H, W) or (T, H, W)
    bool, True = ignore) removes regions such as moving people before anything else; moving
    subjects are also found from the tracks themselves (``config.motion``).
    ``progress(stage)`` is called as each stage starts. Frames that get no pose are in
    the scene with ``registered`` False and NaN poses.
    """
    return reconstruct_detailed(tracks, clip, config, exclude_mask=exclude_mask, progress=progress).scene
