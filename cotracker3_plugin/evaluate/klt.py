"""OpenCV pyramidal Lucas–Kanade (KLT) point tracking: a classical baseline and teacher.

Each query ``(t, x, y)`` is tracked frame to frame from its query frame, forward to the
last frame and backward to the first. A forward–backward check (track t→t±1, then back,
and compare with the start) decides visibility per frame. Coordinates are pixels, x right,
y down.

Large motions (fast pans, rolls, zooms) defeat plain pyramidal LK. Optionally each step
starts from a global similarity (rotation, scale, shift) between the two frames, found by
phase correlation over a small grid of rotations and scales on downsized frames; LK then
only has to absorb the residual (parallax). The same pre-alignment links non-adjacent frames
(:func:`klt_video_tracks`), so that tracks survive cuts and gaps in an image sequence.
"""

from __future__ import annotations

import cv2
import numpy as np


def _gray(frames: np.ndarray) -> list[np.ndarray]:
    return [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]


#: Rotations (degrees) and scales tried by :func:`global_similarity`.
SIMILARITY_ANGLES = tuple(range(-40, 41, 10))
SIMILARITY_SCALES = (0.5, 0.6, 0.7, 0.85, 1.0, 1.2, 1.4, 1.7, 2.0)


def global_similarity(src: np.ndarray, dst: np.ndarray, *, downscale: int = 8,
                      angles: tuple[float, ...] = SIMILARITY_ANGLES,
                      scales: tuple[float, ...] = SIMILARITY_SCALES) -> tuple[np.ndarray, float]:
    """The similarity that best aligns grey image ``src`` with ``dst``, and its phase-correlation peak.

    Every (angle, scale) pair rotates and scales the downsized ``src`` about its centre; phase
    correlation with ``dst`` gives the shift and a peak height; the best peak wins. Returns a
    2x3 matrix mapping ``src`` pixels to ``dst`` pixels (full resolution, pixel centres at
    integer coordinates) and the peak (about 0.3 or more for a real overlap, lower for none).
    """
    def small(im: np.ndarray) -> np.ndarray:
        return cv2.resize(im, None, fx=1 / downscale, fy=1 / downscale, interpolation=cv2.INTER_AREA
                          ).astype(np.float32)

    a, b = small(src), small(dst)
    h, w = a.shape
    if b.shape != a.shape:
        raise ValueError(f"frames differ in size: {src.shape} vs {dst.shape}")
    window = cv2.createHanningWindow((w, h), cv2.CV_32F)
    best, best_m = -1.0, None
    for scale in scales:
        for angle in angles:
            m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), float(angle), float(scale))
            # phaseCorrelate windows its float32 inputs in place: hand it a copy of b.
            (dx, dy), peak = cv2.phaseCorrelate(cv2.warpAffine(a, m, (w, h)), b.copy(), window)
            if peak > best:
                best, best_m = peak, m + np.array([[0, 0, dx], [0, 0, dy]])
    # Full-resolution pixel x maps to (x + 0.5) / downscale - 0.5 in the small image.
    d = np.array([[1 / downscale, 0, 0.5 / downscale - 0.5], [0, 1 / downscale, 0.5 / downscale - 0.5], [0, 0, 1]])
    full = np.linalg.inv(d) @ np.vstack([best_m, [0, 0, 1]]) @ d
    return full[:2], float(best)


def _lk_step(
    src: np.ndarray,
    dst: np.ndarray,
    pts: np.ndarray,
    lk: dict,
    fb_threshold: float,
    prewarp: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Track ``pts`` (M,2) from ``src`` to ``dst``.

    ``prewarp`` (2x3, ``src`` pixels -> ``dst`` pixels) first warps ``src`` (and the points)
    towards ``dst``; LK then tracks from the warped image. Returns the new points, whether LK
    converged, and whether the step passed the forward–backward check as well.
    """
    start = pts.reshape(-1, 2).astype(np.float32)
    if prewarp is not None:
        src = cv2.warpAffine(src, prewarp, (dst.shape[1], dst.shape[0]))
        start = (start @ prewarp[:, :2].T + prewarp[:, 2]).astype(np.float32)
    p0 = start.reshape(-1, 1, 2)
    p1, st1, _ = cv2.calcOpticalFlowPyrLK(src, dst, p0, None, **lk)
    p0b, st2, _ = cv2.calcOpticalFlowPyrLK(dst, src, p1, None, **lk)
    p1 = p1.reshape(-1, 2)
    fb_err = np.linalg.norm(p0b.reshape(-1, 2) - start, axis=1)
    converged = (st1.ravel() == 1) & np.isfinite(p1).all(axis=1)
    ok = converged & (st2.ravel() == 1) & (fb_err < fb_threshold)
    return p1, converged, ok


def klt_track(
    frames: np.ndarray,
    queries: np.ndarray,
    *,
    win_size: int = 21,
    levels: int = 4,
    fb_threshold: float = 1.0,
    sticky_loss: bool = False,
    global_motion: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Track query points through a video with pyramidal KLT.

    Args:
        frames: (T, H, W, 3) uint8 RGB.
        queries: (N, 3) ``(t, x, y)`` in pixels; ``t`` is rounded to a frame index.
        win_size: LK window side (pixels, at every pyramid level).
        levels: number of pyramid levels (OpenCV ``maxLevel = levels - 1``).
        fb_threshold: a step is reliable when tracking back lands within this many pixels of the start.
        sticky_loss: if True, a point stays invisible from its first unreliable step on (in that
            direction); if False, each frame's visibility is that step's own check, so a point
            that drifted back onto good texture can count as visible again.
        global_motion: where plain LK loses more than a fifth of the points in a step, redo the
            step starting from the frames' :func:`global_similarity` and keep the result that
            keeps more points (for large motions between frames; tens of milliseconds per step).

    Returns:
        xy (T, N, 2) float32 pixel positions (a failed step keeps the previous position) and
        visible (T, N) bool. At its query frame a point is at its query position and visible.
    """
    frames = np.asarray(frames)
    gray = _gray(frames) if len(frames) and len(queries) else []
    return _track_gray(gray, queries, win_size=win_size, levels=levels, fb_threshold=fb_threshold,
                       sticky_loss=sticky_loss, warps={} if global_motion else None, num_frames=len(frames),
                       frame_hw=frames.shape[1:3])


def _track_gray(gray: list[np.ndarray], queries: np.ndarray, *, win_size: int, levels: int,
                fb_threshold: float, sticky_loss: bool, warps: dict | None, num_frames: int,
                frame_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`klt_track` on grey frames; ``warps`` caches global similarities (None: no pre-alignment)."""
    queries = np.asarray(queries, dtype=np.float64).reshape(-1, 3)
    T = num_frames
    H, W = frame_hw
    N = len(queries)
    xy = np.zeros((T, N, 2), np.float32)
    visible = np.zeros((T, N), bool)
    if N == 0 or T == 0:
        return xy, visible
    qt = np.clip(np.round(queries[:, 0]).astype(np.int64), 0, T - 1)
    qxy = queries[:, 1:3].astype(np.float32)
    lk = dict(
        winSize=(win_size, win_size),
        maxLevel=levels - 1,
        criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01),
    )

    def step(t: int, nxt: int, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        plain = _lk_step(gray[t], gray[nxt], pts, lk, fb_threshold)
        if warps is None or plain[2].mean() >= 0.8:
            return plain
        # Many points lost: the motion may be too large for plain LK. Try again from the
        # global similarity and keep whichever keeps more points (a wrong guess loses them all).
        if (t, nxt) not in warps:
            m = global_similarity(gray[t], gray[nxt])[0]
            warps[(t, nxt)] = m
            warps[(nxt, t)] = cv2.invertAffineTransform(m)
        aligned = _lk_step(gray[t], gray[nxt], pts, lk, fb_threshold, warps[(t, nxt)])
        return aligned if aligned[2].sum() > plain[2].sum() else plain

    for direction in (1, -1):
        pos = np.zeros((N, 2), np.float32)
        alive = np.ones(N, bool)
        order = range(T) if direction == 1 else range(T - 1, -1, -1)
        started = np.zeros(N, bool)
        for t in order:
            new = qt == t
            pos[new] = qxy[new]
            started |= new
            alive[new] = True
            xy[t, new] = qxy[new]
            visible[t, new] = True
            nxt = t + direction
            if nxt < 0 or nxt >= T:
                break
            # A point lost in sticky mode stays frozen and invisible: no need to track it.
            idx = np.flatnonzero(started & alive) if sticky_loss else np.flatnonzero(started)
            if sticky_loss:
                lost = np.flatnonzero(started & ~alive)
                xy[nxt, lost] = pos[lost]
            if len(idx) == 0:
                continue
            p1, converged, ok = step(t, nxt, pos[idx])
            inside = (p1[:, 0] >= 0) & (p1[:, 0] <= W - 1) & (p1[:, 1] >= 0) & (p1[:, 1] <= H - 1)
            # A step where LK did not converge keeps the last position (its output is junk);
            # a lost point in sticky mode is frozen where it was lost.
            moved = converged & (alive[idx] if sticky_loss else True)
            pos[idx[moved]] = p1[moved]
            if sticky_loss:
                alive[idx] &= ok & inside
                vis = alive[idx]
            else:
                vis = ok & inside
            xy[nxt, idx] = pos[idx]
            visible[nxt, idx] = vis
    return xy, visible


class KLTTracker:
    """:class:`~cotracker3_plugin.evaluate.badja.Tracker` wrapper around :func:`klt_track`."""

    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs

    def __call__(self, frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return klt_track(frames, queries, **self.kwargs)


def _corners(gray: np.ndarray, max_corners: int, min_distance: int, taken: np.ndarray) -> np.ndarray:
    """Shi-Tomasi corners at least ``min_distance`` px from the points ``taken`` (M, 2)."""
    mask = np.full(gray.shape, 255, np.uint8)
    for x, y in np.rint(taken).astype(np.int64):
        cv2.circle(mask, (int(x), int(y)), int(min_distance), 0, -1)
    pts = cv2.goodFeaturesToTrack(gray, maxCorners=max_corners, qualityLevel=0.01, minDistance=min_distance,
                                  mask=mask)
    return np.zeros((0, 2), np.float32) if pts is None else pts.reshape(-1, 2)


def klt_video_tracks(
    frames: np.ndarray,
    *,
    query_every: int = 4,
    max_corners: int = 800,
    min_distance: int = 7,
    win_size: int = 21,
    levels: int = 4,
    fb_threshold: float = 1.0,
    global_motion: bool = True,
    link: bool = True,
    link_max_shared: int = 50,
    link_min_inliers: int = 50,
    link_epipolar_px: float = 2.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """KLT tracks for structure from motion: re-seeded, pre-aligned and linked across gaps.

    Every ``query_every``-th frame (a key frame) gets new Shi-Tomasi corners away from the
    tracks already visible there, each tracked forwards and backwards (sticky loss,
    forward–backward checked, steps pre-aligned by :func:`global_similarity` when
    ``global_motion``). Then, if ``link``, every pair of key frames that shares fewer than
    ``link_max_shared`` tracks (a cut, a gap or a loop in the video) is tried directly: the
    tracks visible in the first are tracked into the second after pre-alignment, and when at
    least ``link_min_inliers`` of them agree with a fundamental matrix (RANSAC,
    ``link_epipolar_px``), each agreeing track continues from where it landed (a new KLT track
    from there, both ways, fills the frames where the old one is not visible).

    Returns ``xy`` (T, N, 2), ``visible`` (T, N) and ``queries`` (N, 3) ``(t, x, y)``.
    """
    frames = np.asarray(frames)
    T, H, W = frames.shape[:3]
    gray = _gray(frames)
    warps: dict | None = {} if global_motion else None
    opts = dict(win_size=win_size, levels=levels, fb_threshold=fb_threshold, sticky_loss=True, warps=warps,
                num_frames=T, frame_hw=(H, W))
    keys = list(range(0, T, max(1, int(query_every))))
    if keys and keys[-1] != T - 1:
        keys.append(T - 1)
    xy = np.zeros((T, 0, 2), np.float32)
    vis = np.zeros((T, 0), bool)
    queries = np.zeros((0, 3))
    for k in keys:
        pts = _corners(gray[k], max_corners, min_distance, xy[k, vis[k]])
        if len(pts) == 0:
            continue
        q = np.concatenate([np.full((len(pts), 1), k), pts], axis=1)
        nxy, nvis = _track_gray(gray, q, **opts)
        xy, vis, queries = np.concatenate([xy, nxy], 1), np.concatenate([vis, nvis], 1), np.concatenate([queries, q])
    if not link:
        return xy, vis, queries

    lk = dict(winSize=(win_size, win_size), maxLevel=levels - 1,
              criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))
    pairs = sorted(((i, j) for i in keys for j in keys if i < j), key=lambda p: (p[1] - p[0], p[0]))
    for i, j in pairs:
        if (vis[i] & vis[j]).sum() >= link_max_shared:
            continue
        ids = np.flatnonzero(vis[i])
        if len(ids) < link_min_inliers:
            continue
        m, _ = global_similarity(gray[i], gray[j])
        p1, _, ok = _lk_step(gray[i], gray[j], xy[i, ids], lk, fb_threshold, m)
        ok &= (p1[:, 0] >= 0) & (p1[:, 0] <= W - 1) & (p1[:, 1] >= 0) & (p1[:, 1] <= H - 1)
        if ok.sum() < link_min_inliers:
            continue
        cv2.setRNGSeed(0)
        F, inl = cv2.findFundamentalMat(xy[i, ids[ok]].astype(np.float64), p1[ok].astype(np.float64),
                                        cv2.FM_RANSAC, link_epipolar_px, 0.999)
        if F is None or inl is None or inl.sum() < link_min_inliers:
            continue
        good = ids[ok][inl.ravel().astype(bool)]
        landed = p1[ok][inl.ravel().astype(bool)]
        nxy, nvis = _track_gray(gray, np.concatenate([np.full((len(good), 1), j), landed], axis=1), **opts)
        fill = nvis & ~vis[:, good]
        sub_xy, sub_vis = xy[:, good], vis[:, good]
        sub_xy[fill] = nxy[fill]
        sub_vis |= fill
        xy[:, good], vis[:, good] = sub_xy, sub_vis
    return xy, vis, queries
