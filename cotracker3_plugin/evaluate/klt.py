"""OpenCV pyramidal Lucas–Kanade (KLT) point tracking: a classical baseline and teacher.

Each query ``(t, x, y)`` is tracked frame to frame from its query frame, forward to the
last frame and backward to the first. A forward–backward check (track t→t±1, then back,
and compare with the start) decides visibility per frame. Coordinates are pixels, x right,
y down.
"""

from __future__ import annotations

import cv2
import numpy as np


def _gray(frames: np.ndarray) -> list[np.ndarray]:
    return [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]


def _lk_step(
    src: np.ndarray,
    dst: np.ndarray,
    pts: np.ndarray,
    lk: dict,
    fb_threshold: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Track ``pts`` (M,2) from ``src`` to ``dst``.

    Returns the new points, whether LK converged, and whether the step passed the
    forward–backward check as well.
    """
    p0 = pts.reshape(-1, 1, 2).astype(np.float32)
    p1, st1, _ = cv2.calcOpticalFlowPyrLK(src, dst, p0, None, **lk)
    p0b, st2, _ = cv2.calcOpticalFlowPyrLK(dst, src, p1, None, **lk)
    p1 = p1.reshape(-1, 2)
    fb_err = np.linalg.norm(p0b.reshape(-1, 2) - pts, axis=1)
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

    Returns:
        xy (T, N, 2) float32 pixel positions (a failed step keeps the previous position) and
        visible (T, N) bool. At its query frame a point is at its query position and visible.
    """
    frames = np.asarray(frames)
    queries = np.asarray(queries, dtype=np.float64).reshape(-1, 3)
    T, H, W = frames.shape[:3]
    N = len(queries)
    xy = np.zeros((T, N, 2), np.float32)
    visible = np.zeros((T, N), bool)
    if N == 0 or T == 0:
        return xy, visible
    qt = np.clip(np.round(queries[:, 0]).astype(np.int64), 0, T - 1)
    qxy = queries[:, 1:3].astype(np.float32)
    gray = _gray(frames)
    lk = dict(
        winSize=(win_size, win_size),
        maxLevel=levels - 1,
        criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01),
    )

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
            idx = np.flatnonzero(started)
            if len(idx) == 0:
                continue
            p1, converged, ok = _lk_step(gray[t], gray[nxt], pos[idx], lk, fb_threshold)
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
