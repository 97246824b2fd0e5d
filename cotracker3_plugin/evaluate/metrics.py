"""TAP-Vid metrics (occlusion accuracy, δ^x, Jaccard), following the official conventions.

Everything is numpy and batched over videos: ``B`` videos, ``N`` tracks, ``T`` frames.
Coordinates are pixels of the 256×256 evaluation frame (TAP-Vid scales normalised
points by 256−1). Query points are ``(t, y, x)`` as the TAP-Vid loaders produce them;
only their time is used here.
"""

from __future__ import annotations

import numpy as np

#: The pixel thresholds of δ^x and Jaccard_x.
THRESHOLDS: tuple[int, ...] = (1, 2, 4, 8, 16)

#: Metric names, in the order the official code fills its dict.
METRIC_NAMES: tuple[str, ...] = (
    "occlusion_accuracy",
    *[f"{kind}_{t}" for t in THRESHOLDS for kind in ("pts_within", "jaccard")],
    "average_jaccard",
    "average_pts_within_thresh",
)


def evaluation_mask(query_frames: np.ndarray, num_frames: int, query_mode: str) -> np.ndarray:
    """Which (track, frame) pairs are scored: (B, N, T) bool.

    ``first``: frames strictly after the query frame; ``strided``: every frame but the query frame.
    """
    eye = np.eye(num_frames, dtype=np.int32)
    if query_mode == "first":
        table = np.cumsum(eye, axis=1) - eye
    elif query_mode == "strided":
        table = 1 - eye
    else:
        raise ValueError(f"unknown query_mode {query_mode!r}; use 'first' or 'strided'")
    return table[np.round(query_frames).astype(np.int64)] > 0


def compute_tapvid_metrics(
    query_points: np.ndarray,
    gt_occluded: np.ndarray,
    gt_tracks: np.ndarray,
    pred_occluded: np.ndarray,
    pred_tracks: np.ndarray,
    query_mode: str,
) -> dict[str, np.ndarray]:
    """TAP-Vid metrics per video.

    Args:
        query_points: (B, N, 3) ``(t, y, x)``; only ``t`` is used.
        gt_occluded: (B, N, T) bool, True where the ground truth is occluded.
        gt_tracks: (B, N, T, 2) ground-truth ``(x, y)`` in 256×256 pixels.
        pred_occluded: (B, N, T) bool predicted occlusion (= not visible).
        pred_tracks: (B, N, T, 2) predicted ``(x, y)``.
        query_mode: ``"first"`` or ``"strided"``.

    Returns:
        name → (B,) array for every name in :data:`METRIC_NAMES`.
    """
    gt_occluded = np.asarray(gt_occluded, dtype=bool)
    pred_occluded = np.asarray(pred_occluded, dtype=bool)
    evaluated = evaluation_mask(np.asarray(query_points)[..., 0], gt_tracks.shape[2], query_mode)

    metrics: dict[str, np.ndarray] = {}
    # The official code divides by the evaluated count of the whole batch (not per video);
    # kept for parity — it only matters for B > 1, and the runner always passes B = 1.
    metrics["occlusion_accuracy"] = np.sum((pred_occluded == gt_occluded) & evaluated, axis=(1, 2)) / np.sum(
        evaluated
    )

    visible = ~gt_occluded
    pred_visible = ~pred_occluded
    sq_dist = np.sum(np.square(np.asarray(pred_tracks) - np.asarray(gt_tracks)), axis=-1)
    gt_positives = np.sum(visible & evaluated, axis=(1, 2))
    fracs, jaccards = [], []
    for thresh in THRESHOLDS:
        within = sq_dist < thresh**2  # strict, as in the official code
        correct = within & visible
        frac = np.sum(correct & evaluated, axis=(1, 2)) / gt_positives
        true_pos = np.sum(correct & pred_visible & evaluated, axis=(1, 2))
        false_pos = np.sum(((~visible) | (~within)) & pred_visible & evaluated, axis=(1, 2))
        jac = true_pos / (gt_positives + false_pos)
        metrics[f"pts_within_{thresh}"] = frac
        metrics[f"jaccard_{thresh}"] = jac
        fracs.append(frac)
        jaccards.append(jac)
    metrics["average_jaccard"] = np.mean(np.stack(jaccards, axis=1), axis=1)
    metrics["average_pts_within_thresh"] = np.mean(np.stack(fracs, axis=1), axis=1)
    return {k: metrics[k] for k in METRIC_NAMES}


def summarize(metrics: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean of each metric over videos, as Python floats."""
    return {k: float(np.mean(v)) for k, v in metrics.items()}
