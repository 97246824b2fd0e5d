"""Tracks -> multi-view correspondences for structure from motion.

Every track is one multi-view correspondence: its usable observations (visible,
confident, inside the frame by a margin, outside an optional exclusion mask) become
keypoints, and any two frames that see it share a match. Frames are paired within a
sliding window and across it (offsets doubling from the window size), so that the
mapper finds wide-baseline pairs to start from.

Each pair gets a fundamental matrix by RANSAC (OpenCV); :mod:`.motion` uses them to find
the tracks on moving subjects, the mapper as verified two-view geometry. The mapper gets a
subset of the static tracks, spread over the image (:func:`select_sfm_tracks`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from cotracker3_plugin.tracks import Tracks

log = logging.getLogger(__name__)

__all__ = ["PairGeometry", "estimate_pair", "frame_pairs", "on_mask", "parallax_share", "select_frames", "select_sfm_tracks",
           "split_tracks", "usable_observations"]

#: Cap on frames x pieces of :func:`split_tracks` (the arrays are dense (T, N)): long clips get longer pieces.
MAX_PIECE_CELLS = 20_000_000


def split_tracks(tracks: Tracks, usable: np.ndarray, span: int) -> tuple[Tracks, np.ndarray, np.ndarray]:
    """Each track cut into pieces of at most ``span`` frames, for mapping.

    A chained tracker's error drifts along the image motion, so one long track asks the bundle adjustment
    for a single 3D point that its observations fit less and less well; pieces keep the drift inside each
    piece. Piece boundaries are staggered from track to track (golden-ratio offsets), so that every frame
    boundary is crossed by most tracks and the pieces still tie the whole clip together (also without
    SIFT). Pieces with fewer than two usable observations are dropped. On long clips ``span`` grows to
    keep frames x pieces under :data:`MAX_PIECE_CELLS`.

    Returns the pieces (queries at each piece's first usable observation; ``dynamic`` dropped), their
    usable observations (T, P) and ``parent`` (P,), the track each piece came from.
    """
    T, N = usable.shape
    span = max(int(span), 2, int(np.ceil(N * T * T / MAX_PIECE_CELLS)))
    offset = np.floor((np.arange(N) * 0.6180339887) % 1.0 * span).astype(np.int64)
    piece = (np.arange(T)[:, None] + offset[None]) // span  # (T, N): piece of each observation
    n_per = int(piece.max()) + 1
    t_idx, n_idx = np.nonzero(usable)
    key = n_idx * n_per + piece[t_idx, n_idx]
    keys, column, count = np.unique(key, return_inverse=True, return_counts=True)
    keep = count >= 2
    new_col = np.cumsum(keep) - 1
    obs = keep[column]
    t_idx, n_idx, col = t_idx[obs], n_idx[obs], new_col[column[obs]]
    P = int(keep.sum())
    parent = (keys[keep] // n_per).astype(np.int64)
    xy = np.zeros((T, P, 2), dtype=tracks.xy.dtype)
    xy[t_idx, col] = tracks.xy[t_idx, n_idx]
    used = np.zeros((T, P), dtype=bool)
    used[t_idx, col] = True
    # Observations not usable stay out of the pieces: visible marks the piece's own frames only.
    confidence = np.zeros((T, P), dtype=tracks.confidence.dtype)
    confidence[t_idx, col] = tracks.confidence[t_idx, n_idx]
    first = used.argmax(0)
    queries = np.concatenate([first[:, None], xy[first, np.arange(P)]], axis=1).astype(tracks.queries.dtype)
    pieces = Tracks(xy=xy, visible=used.copy(), confidence=confidence, queries=queries, frame_size=tracks.frame_size,
                    meta=dict(tracks.meta))
    return pieces, used, parent


def usable_observations(tracks: Tracks, *, margin: float = 4.0, min_confidence: float | None = None,
                        exclude_mask: np.ndarray | None = None) -> np.ndarray:
    """(T, N) bool: observations fit for geometry.

    ``visible`` (or ``confidence > min_confidence`` if given), finite, at least ``margin``
    px inside the frame, and not on a True pixel of ``exclude_mask`` ((H, W) for all
    frames, or (T, H, W) per frame; pixels of ``tracks.frame_size``), which marks
    regions to ignore such as people or cars.
    """
    ok = tracks.visible.copy() if min_confidence is None else tracks.confidence > min_confidence
    ok &= np.all(np.isfinite(tracks.xy), axis=-1)
    ok &= tracks.inside_frame(margin)
    if exclude_mask is not None:
        m = np.asarray(exclude_mask, dtype=bool)
        h, w = tracks.frame_size
        if m.shape[-2:] != (h, w) or m.ndim not in (2, 3) or (m.ndim == 3 and len(m) != tracks.num_frames):
            raise ValueError(f"exclude_mask must be (H, W) or (T, H, W) = ({tracks.num_frames}, {h}, {w}), "
                             f"got {m.shape}")
        ok &= ~on_mask(tracks.xy, m if m.ndim == 3 else np.broadcast_to(m, (tracks.num_frames, h, w)))
    return ok


def on_mask(xy: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(T, N) bool: observation ``xy`` (T, N, 2) lies on a True pixel of its frame's mask (T, H, W)
    (nearest pixel; non-finite positions read pixel 0, 0)."""
    T, h, w = masks.shape
    xi = np.clip(np.rint(np.nan_to_num(xy[..., 0])), 0, w - 1).astype(np.int64)
    yi = np.clip(np.rint(np.nan_to_num(xy[..., 1])), 0, h - 1).astype(np.int64)
    return masks[np.arange(T)[:, None], yi, xi]


def frame_pairs(num_frames: int, window: int = 5, long_range: bool = True) -> list[tuple[int, int]]:
    """Pairs (i, j), i < j: every j within ``window`` of i, plus offsets 2w, 4w, 8w, ...

    The long-range offsets cost O(T log T) pairs and give the mapper the wide
    baselines a video's neighbouring frames lack.
    """
    pairs: set[tuple[int, int]] = set()
    w = max(1, int(window))
    for i in range(num_frames):
        for j in range(i + 1, min(num_frames, i + w + 1)):
            pairs.add((i, j))
        if long_range:
            off = 2 * w
            while i + off < num_frames:
                pairs.add((i, i + off))
                off *= 2
    return sorted(pairs)


@dataclass
class PairGeometry:
    """Epipolar geometry of one frame pair, from the tracks both frames see."""

    i: int
    j: int
    F: np.ndarray | None
    """3x3 fundamental matrix (None if it could not be estimated)."""
    tracks: np.ndarray
    """(M,) indices of the tracks seen in both frames."""
    inliers: np.ndarray
    """(M,) bool: Sampson distance below the threshold."""


def _sampson(F: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sampson distance (px) of correspondences a <-> b (each (M, 2)) under F."""
    ah = np.concatenate([a, np.ones((len(a), 1))], axis=1)
    bh = np.concatenate([b, np.ones((len(b), 1))], axis=1)
    fa = ah @ F.T  # epipolar lines in image b
    ftb = bh @ F  # epipolar lines in image a
    num = np.einsum("ij,ij->i", bh, fa) ** 2
    den = fa[:, 0] ** 2 + fa[:, 1] ** 2 + ftb[:, 0] ** 2 + ftb[:, 1] ** 2
    return np.sqrt(num / np.maximum(den, 1e-12))


#: RANSAC fits a two-view model to at most this many correspondences (a seeded random subset; the model is
#: then scored on all of them): with thousands of SIFT and tracker correspondences per pair the hypotheses'
#: scoring dominated the motion step, and a thousand well-spread points pin a homography or F as well.
RANSAC_MAX_POINTS = 1000


def ransac_subset(n: int, seed: int) -> np.ndarray:
    """Indices of the correspondences a RANSAC fit uses: all of them, or a seeded subset of
    :data:`RANSAC_MAX_POINTS`."""
    if n <= RANSAC_MAX_POINTS:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, RANSAC_MAX_POINTS, replace=False))


def estimate_pair(xy: np.ndarray, usable: np.ndarray, i: int, j: int, threshold: float,
                  min_matches: int = 15, seed: int = 0) -> PairGeometry:
    """Fundamental matrix of frames i, j by RANSAC over the tracks both see."""
    import cv2

    common = np.flatnonzero(usable[i] & usable[j])
    if len(common) < max(8, min_matches):
        return PairGeometry(i, j, None, common, np.zeros(len(common), dtype=bool))
    a = xy[i, common].astype(np.float64)
    b = xy[j, common].astype(np.float64)
    cv2.setRNGSeed(seed)
    fit = ransac_subset(len(common), seed)
    try:
        F, _ = cv2.findFundamentalMat(a[fit], b[fit], cv2.USAC_MAGSAC, threshold, 0.999, 2000)
    except cv2.error:
        # OpenCV's USAC asserts on some degenerate samples; plain RANSAC does not.
        F, _ = cv2.findFundamentalMat(a[fit], b[fit], cv2.FM_RANSAC, threshold, 0.999, 2000)
    if F is not None and F.shape != (3, 3):
        F = F[:3]  # several solutions (7-point): keep the first
    if F is None or F.shape != (3, 3):
        # Pure rotation or no motion: F is undefined, the pair carries no evidence.
        return PairGeometry(i, j, None, common, np.ones(len(common), dtype=bool))
    inl = _sampson(F, a, b) < threshold
    return PairGeometry(i, j, F, common, inl)


def parallax_share(xy: np.ndarray, usable: np.ndarray, *, threshold: float = 2.0,
                   min_common: int = 30) -> float:
    """Evidence of camera translation: how far the tracks are from following one homography.

    For a few long-range frame pairs (a quarter, half and all of the clip apart) a homography
    is fitted by RANSAC to the tracks both frames see; the share of those tracks that miss it
    by more than ``3 * threshold`` px is returned (the largest over the pairs). A camera that
    only turns (or a planar scene) moves every point by one homography: ~0. Parallax from
    translation in a 3-D scene leaves points off it. Pass only static tracks in ``usable``.
    """
    import cv2

    T = len(xy)
    best = 0.0
    for a, b in {(0, T // 4), (0, T // 2), (0, T - 1), (T // 2, T - 1)}:
        both = usable[a] & usable[b]
        if a == b or both.sum() < max(min_common, 8):
            continue
        p, q = xy[a, both].astype(np.float32), xy[b, both].astype(np.float32)
        H, _ = cv2.findHomography(p, q, cv2.RANSAC, threshold)
        if H is None:
            continue
        miss = np.linalg.norm(cv2.perspectiveTransform(p[None], H)[0] - q, axis=1) > 3 * threshold
        best = max(best, float(miss.mean()))
    return best


def select_frames(T: int, stride: int, max_frames: int) -> np.ndarray:
    """Every ``stride``-th frame, at most ``max_frames`` of them (evenly spread)."""
    frames = np.arange(0, T, max(1, int(stride)))
    if max_frames and len(frames) > max_frames:
        pick = np.unique(np.round(np.linspace(0, len(frames) - 1, int(max_frames))).astype(np.int64))
        frames = frames[pick]
    return frames


def spread_pick(cand: np.ndarray, pos: np.ndarray, length: np.ndarray, frame_size: tuple[int, int], k: int,
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


def select_sfm_tracks(xy: np.ndarray, usable: np.ndarray, static: np.ndarray, frame_size: tuple[int, int],
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
    chosen[spread_pick(cand, mean_xy[cand], rank[cand], frame_size, max_tracks, rng, cells)] = True
    eligible = np.zeros_like(chosen)
    eligible[cand] = True
    for t in np.argsort(usable[:, chosen].sum(1), kind="stable"):
        missing = min_per_frame - int((usable[t] & chosen).sum())
        if missing <= 0:
            continue
        more = np.flatnonzero(usable[t] & eligible & ~chosen)
        chosen[spread_pick(more, xy[t, more], rank[more], frame_size, missing, rng, cells)] = True
    return np.flatnonzero(chosen)
