"""The query lattice of dense triangulation and the checks that use its neighbourhoods.

Dense points are tracked from a regular grid of pixels on a few query frames. Keeping the
lattice index ``(row, col)`` of every query lets a point be compared with the points
sampled next to it on the same frame: on any smooth surface the inverse depth of a
pixel is (locally) linear in its image position, so a correct point lies halfway, in
inverse depth, between its two opposite neighbours along at least one of the four lattice
directions. A point that agrees with no opposite pair floats off its surface (a track that
slid along an edge, a mismatched texture); along an occlusion boundary the direction
running with the edge still agrees, so edges survive.

Coordinates are pixels of the clip, x right, y down, pixel centres at integer coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["QueryGrid", "grid_queries", "neighbor_consistent", "sample_colors", "spread_frames"]

#: The four lattice directions (row step, column step); each is tested with its opposite.
_DIRECTIONS = ((0, 1), (1, 0), (1, 1), (1, -1))


@dataclass
class QueryGrid:
    """The queries of one query frame and where each sits in the lattice."""

    frame: int
    """Clip frame index of the queries."""
    queries: np.ndarray
    """(M, 3) float64 ``(t, x, y)`` in clip pixels (M = rows x cols, row-major)."""
    shape: tuple[int, int]
    """(rows, cols) of the lattice."""
    step: float
    """Mean spacing of the lattice in pixels (its footprint on the surfaces sets the voxel size)."""


def spread_frames(candidates: np.ndarray, num: int) -> np.ndarray:
    """``num`` of the sorted ``candidates`` evenly spread, ends excluded when there are more.

    The first and last frames see the least of the scene that other frames also see, so
    interior frames are preferred (their points are seen on both sides, under a wider angle).
    """
    candidates = np.asarray(candidates, dtype=np.int64)
    if num >= len(candidates):
        return candidates
    pos = np.linspace(0, len(candidates) - 1, num + 2)[1:-1] if num > 1 else [(len(candidates) - 1) / 2]
    return np.unique(candidates[np.round(pos).astype(np.int64)])


def grid_queries(frame: int, frame_size: tuple[int, int], grid_size: int, shift: float = 0.5,
                 margin: float = 3.0) -> QueryGrid:
    """A ``grid_size x grid_size`` lattice on ``frame`` inside ``margin`` px from the border.

    Cells split the inner area evenly; ``shift`` (0..1) places the points between a quarter and
    three quarters of their cells (0.5: cell centres), so that several query frames do not sample
    the same pixels of a static view.
    """
    h, w = frame_size
    off = 0.25 + 0.5 * float(np.clip(shift, 0.0, 1.0))
    xs = margin + (np.arange(grid_size) + off) * (w - 1 - 2 * margin) / grid_size
    ys = margin + (np.arange(grid_size) + off) * (h - 1 - 2 * margin) / grid_size
    gx, gy = np.meshgrid(xs, ys)
    q = np.stack([np.full(gx.size, float(frame)), gx.ravel(), gy.ravel()], axis=1)
    step = 0.5 * ((w - 1 - 2 * margin) + (h - 1 - 2 * margin)) / grid_size
    return QueryGrid(int(frame), q, (grid_size, grid_size), step)


def neighbor_consistent(inv_depth: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Which lattice points agree with an opposite pair of neighbours; which could be tested.

    ``inv_depth`` (rows, cols) holds 1 / depth in the query camera, NaN where there is no
    point. A point passes when, along some direction with both neighbours present,
    ``|w - (w_a + w_b) / 2| <= tolerance * w``. Returns ``(passed, testable)``, both
    (rows, cols) bool; a point with no complete pair is not testable (and does not pass).
    """
    w = np.asarray(inv_depth, dtype=np.float64)
    rows, cols = w.shape
    pad = np.full((rows + 2, cols + 2), np.nan)
    pad[1:-1, 1:-1] = w
    passed = np.zeros(w.shape, dtype=bool)
    testable = np.zeros(w.shape, dtype=bool)
    for dr, dc in _DIRECTIONS:
        a = pad[1 + dr:rows + 1 + dr, 1 + dc:cols + 1 + dc]
        b = pad[1 - dr:rows + 1 - dr, 1 - dc:cols + 1 - dc]
        pair = np.isfinite(a) & np.isfinite(b) & np.isfinite(w)
        with np.errstate(invalid="ignore"):
            ok = np.abs(w - 0.5 * (a + b)) <= tolerance * np.abs(w)
        testable |= pair
        passed |= pair & ok
    return passed, testable


def sample_colors(frame: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 RGB of ``frame`` (H, W, 3) at the nearest pixels of ``xy`` (N, 2)."""
    h, w = frame.shape[:2]
    xi = np.clip(np.rint(xy[:, 0]), 0, w - 1).astype(np.int64)
    yi = np.clip(np.rint(xy[:, 1]), 0, h - 1).astype(np.int64)
    return frame[yi, xi].astype(np.uint8)
