"""Which tracks and pixels move independently of the camera: per-track flags, per-frame masks.

Why: a casual video films something that moves. Points on it break the epipolar geometry of
the camera's own motion, and a mapper that sees them bends the cameras and misjudges the
focal length. Tracks are long and dense, so they can tell what moves where a single frame
pair cannot:

1. For many frame pairs (a sliding window plus long-range pairs) the dominant motion is fitted
   by RANSAC to the tracks both frames see: a fundamental matrix, or a homography where the
   pair has too little parallax for one (a panning step; there F is ill-posed and a RANSAC F can
   swallow a moving subject).
2. A track is *dynamic* when it breaks that motion in more than ``outlier_ratio`` of the pairs
   that tested it.
3. Once key frames have cameras, every track is triangulated from all its views: a subject that
   moves along the epipolar lines (the way the camera travels) passes step 2 but is no single 3D
   point (:func:`multiview_test`). Which consistent set is the static world is decided by size: the
   key frames are solved, the tracks that solution explains are set aside and the rest solved again,
   and the solution that explains more observations wins (a camera that follows its subject can make
   the mapper reconstruct the subject first).
4. Each frame's mask of moving pixels grows from the labelled tracks it sees: a pixel is moving
   when enough of its nearest labelled observations are dynamic, closed and dilated by a margin.

The masks then remove every correspondence on a moving subject (the tracker's observations and
SIFT features alike) and go to nerfstudio so that training ignores those pixels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from cotracker3_plugin.reconstruct.correspondences import PairGeometry, estimate_pair, ransac_subset

log = logging.getLogger(__name__)

__all__ = ["MotionConfig", "MotionSegmentation", "MultiViewTest", "multiview_test", "moving_masks", "segment_motion"]


@dataclass
class MotionConfig:
    """How moving subjects are found in the tracks."""

    enabled: bool = True
    """Find moving subjects and keep them out of the map (tracks flagged, pixels masked). Off: every track
    is taken as static."""
    threshold: float = 2.0
    """Sampson distance (px) to a pair's fundamental matrix above which a track breaks the camera motion."""
    homography_threshold: float = 4.0
    """Pairs with too little parallax for a fundamental matrix are tested against a homography at this
    distance (px); it allows for the little parallax such a pair has."""
    outlier_ratio: float = 0.5
    """A track is dynamic when it breaks the camera motion in more than this share of the pairs that tested it."""
    min_pairs: int = 2
    """Fewest tested pairs before a track can be called dynamic."""
    mask_radius: float = 0.0
    """Observations within this many px vote on a pixel of the moving masks; 0: 3 x the median distance
    between neighbouring observations of the frame."""
    mask_dilation: int = 8
    """Grow each moving region by this many px (tracks stop short of a subject's outline)."""
    min_region_tracks: int = 3
    """A frame's moving region needs at least this many dynamic observations (fewer: a stray track)."""
    vote_neighbors: int = 8
    """Labelled observations that vote on each pixel of the moving masks."""
    vote_share: float = 0.35
    """A pixel is moving when at least this share of its voters are dynamic ..."""
    min_votes: int = 3
    """... and at least this many of them: one failed track is a tracking error, a moving subject makes
    its neighbours fail with it."""
    mask_evidence_factor: float = 8.0
    """An observation votes "moving" in the masks when it lies this many times the multi-view limit from its
    track's static point: tracks beside a subject drift a few px (their window straddles the motion
    boundary) and would grow a halo around it; points on the subject miss by far more."""
    multiview_factor: float = 4.0
    """Multi-view test: a track is dynamic when its reprojection error from the solved key frames exceeds
    this many times the median error of the points that solve kept (and ``multiview_min_error``)."""
    multiview_min_error: float = 1.5
    """Multi-view test: errors (px) below this never make a track dynamic."""


@dataclass
class MotionSegmentation:
    """What moves: per track and per frame."""

    dynamic: np.ndarray
    """(N,) bool: the track follows a moving subject."""
    outlier_share: np.ndarray
    """(N,) float: share of the tested pairs in which the track broke the camera motion (0 if untested)."""
    tested_pairs: np.ndarray
    """(N,) int: pairs that tested the track."""
    geometries: list[PairGeometry]
    """The frame pairs' geometries (frame positions of the ``xy`` given), reused by the mapper."""
    masks: np.ndarray | None = None
    """(T, H, W) bool moving pixels, when asked for."""

    @property
    def num_dynamic(self) -> int:
        return int(self.dynamic.sum())


def _pair_outliers(xy: np.ndarray, usable: np.ndarray, i: int, j: int, cfg: MotionConfig, seed: int
                   ) -> tuple[PairGeometry, np.ndarray | None]:
    """The pair's geometry and, where it carries evidence, which of its tracks break it."""
    import cv2

    g = estimate_pair(xy, usable, i, j, cfg.threshold, seed=seed)
    if len(g.tracks) < 15:
        return g, None
    a, b = xy[i, g.tracks].astype(np.float64), xy[j, g.tracks].astype(np.float64)
    flow = np.linalg.norm(b - a, axis=-1)
    if np.median(flow) < 2 * cfg.threshold:
        return g, None  # the camera barely moved: a moving subject may look static
    # 500 hypotheses find a homography that holds for 42 % of the points or more (at 99.9 %); one that holds
    # for fewer is not the dominant motion of the pair anyway (F's inliers are taken then, below).
    fit = ransac_subset(len(a), seed)
    H, _ = cv2.findHomography(a[fit], b[fit], cv2.RANSAC, cfg.homography_threshold, maxIters=500,
                              confidence=0.999)
    h_out = None
    if H is not None:
        proj = cv2.perspectiveTransform(a[None], H)[0]
        h_out = np.linalg.norm(proj - b, axis=-1) > cfg.homography_threshold
    if g.F is None:
        return g, h_out
    f_out = ~g.inliers
    if h_out is not None and (~h_out).sum() >= 0.95 * (~f_out).sum():
        # A homography explains nearly all that F explains: too little parallax for F to be
        # trusted (a pan), the homography is the dominant motion.
        return g, h_out
    return g, f_out


def segment_motion(xy: np.ndarray, usable: np.ndarray, pairs: list[tuple[int, int]],
                   config: MotionConfig | None = None, *, seed: int = 0) -> MotionSegmentation:
    """Label tracks dynamic or static from their consistency with the camera's motion.

    ``xy`` (F, N, 2) positions and ``usable`` (F, N) observations on the frames to test;
    ``pairs`` index those frames. The geometries of all pairs are returned for the mapper.
    """
    cfg = config or MotionConfig()
    n = xy.shape[1]
    tested = np.zeros(n, dtype=np.int64)
    broken = np.zeros(n, dtype=np.int64)
    geoms: list[PairGeometry] = []
    for i, j in pairs:
        g, out = _pair_outliers(xy, usable, i, j, cfg, seed)
        geoms.append(g)
        if out is None or not cfg.enabled:
            continue
        tested[g.tracks] += 1
        broken[g.tracks] += out
    share = np.where(tested > 0, broken / np.maximum(tested, 1), 0.0)
    dynamic = (tested >= cfg.min_pairs) & (share > cfg.outlier_ratio)
    log.debug("motion: %d of %d tracks dynamic", int(dynamic.sum()), n)
    return MotionSegmentation(dynamic, share, tested, geoms)


def moving_masks(xy: np.ndarray, usable: np.ndarray, moving: np.ndarray, labelled: np.ndarray,
                 frame_size: tuple[int, int], config: MotionConfig | None = None) -> np.ndarray:
    """(T, H, W) bool: pixels of moving subjects, grown from the labelled observations of each frame.

    ``xy`` (T, N, 2), ``usable`` (T, N) observations, ``moving`` (T, N) observation labels, ``labelled``
    (T, N) which observations carry a label worth using (tested). A pixel is moving when, among its
    ``vote_neighbors`` nearest labelled observations within the radius, at least ``vote_share`` are
    dynamic: a vote rather than the nearest label, because some tracks on a subject that moves along
    the camera's epipolar lines escape detection, and should not cut holes into its mask.
    """
    import cv2
    from scipy.spatial import cKDTree

    cfg = config or MotionConfig()
    T = xy.shape[0]
    h, w = frame_size
    masks = np.zeros((T, h, w), dtype=bool)
    if not cfg.enabled or not moving.any():
        return masks
    step = 4  # votes on a 4-px lattice, then upsampled: the masks are as coarse as the tracks anyway
    gy, gx = np.mgrid[step // 2:h:step, step // 2:w:step]
    lattice = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float64)
    grow = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * cfg.mask_dilation + 1,) * 2) \
        if cfg.mask_dilation > 0 else None
    for t in range(T):
        obs = np.flatnonzero(usable[t] & labelled[t] & np.all(np.isfinite(xy[t]), axis=-1))
        if int(moving[t, obs].sum()) < cfg.min_region_tracks:
            continue
        p = xy[t, obs].astype(np.float64)
        radius = cfg.mask_radius or 3.0 * _median_spacing(p)
        k = min(cfg.vote_neighbors, len(obs))
        d, nn = cKDTree(p).query(lattice, k=k, distance_upper_bound=radius)
        d, nn = d.reshape(len(lattice), k), nn.reshape(len(lattice), k)
        near = np.isfinite(d)
        dyn = np.zeros_like(near)
        dyn[near] = moving[t, obs][nn[near]]
        votes = dyn.sum(1)
        share = votes / np.maximum(near.sum(1), 1)
        m = ((share >= cfg.vote_share) & (votes >= cfg.min_votes)).reshape(gx.shape).astype(np.uint8)
        m = cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST)
        # Close the gaps between voters (holes where no observation is near), then grow by the margin.
        side = 2 * int(np.ceil(radius)) + 1
        m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side)))
        if grow is not None:
            m = cv2.dilate(m, grow)
        masks[t] = m.astype(bool)
    return masks


@dataclass
class MultiViewTest:
    """Which tracks and observations one static point per track cannot explain, from solved cameras."""

    residual: np.ndarray
    """(T, N) px from each observation to its track's static point (inf: the track has no such point;
    NaN: not tested)."""
    tested: np.ndarray
    """(N,) bool: the track was seen from at least ``min_views`` solved frames."""
    moving_share: np.ndarray
    """(N,) share of each tested track's observations that are moving (0 where untested)."""
    limit: float

    @property
    def moving_obs(self) -> np.ndarray:
        """(T, N) bool: the observation is further than ``limit`` px from its track's static point."""
        return np.nan_to_num(self.residual, nan=0.0) > self.limit

    def dynamic(self, share: float = 0.5) -> np.ndarray:
        """(N,) bool: most of the track's observations fit no static point."""
        return self.tested & (self.moving_share > share)


def multiview_test(xy: np.ndarray, usable: np.ndarray, world_from_cam: np.ndarray, registered: np.ndarray,
                   camera, limit: float, *, min_views: int = 3) -> MultiViewTest:
    """The multi-view motion test: the static point of each track, fitted robustly from its views of the
    solved frames, and which observations it does not explain.

    A subject that moves along the epipolar lines of every frame pair (typically: it walks the way the
    camera travels) passes the two-view test, but seen from many solved cameras no static point explains
    it. Per observation rather than per track because a static track can slip onto an occluder for a
    few frames: those observations are evidence of the moving subject, the rest of the track is not.
    """
    from cotracker3_plugin.reconstruct.triangulate import triangulate_tracks

    T, N = usable.shape
    reg = np.asarray(registered, dtype=bool)
    seen = usable & reg[:, None]
    tested = seen.sum(0) >= min_views
    residual = np.where(seen & tested[None], np.inf, np.nan)  # untriangulable: no static point at all
    tri = triangulate_tracks(xy.astype(np.float64), seen, world_from_cam, reg, [camera], np.zeros(T, np.int64),
                             max_error=limit, min_angle_deg=0.0, min_views=2, rounds=2)
    if len(tri.track_ids):
        frames = np.flatnonzero(reg)
        cfw = np.linalg.inv(world_from_cam[frames])
        pc = np.einsum("tij,nj->tni", cfw[:, :3, :3], tri.points) + cfw[:, None, :3, 3]
        z = pc[..., 2]
        ok = z > 1e-9
        img = np.asarray(camera.img_from_cam(np.where(ok[..., None], pc, 1.0).reshape(-1, 3)))
        px = img.reshape(len(frames), -1, 2)
        err = np.where(ok, np.linalg.norm(px - xy[frames][:, tri.track_ids], axis=-1), np.inf)
        sub = seen[np.ix_(frames, tri.track_ids)]
        residual[np.ix_(frames, tri.track_ids)] = np.where(sub, np.nan_to_num(err, nan=np.inf), np.nan)
    n_seen = np.maximum(seen.sum(0), 1)
    moving = np.nan_to_num(residual, nan=0.0) > limit
    share = np.where(tested, moving.sum(0) / n_seen, 0.0)
    return MultiViewTest(residual, tested, share, float(limit))


def _median_spacing(p: np.ndarray) -> float:
    """Median distance of each point to its nearest neighbour (px)."""
    from scipy.spatial import cKDTree

    if len(p) < 2:
        return 16.0
    d, _ = cKDTree(p).query(p, k=2)
    return float(max(np.median(d[:, 1]), 2.0))
