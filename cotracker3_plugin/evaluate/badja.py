"""BADJA (hand-labelled animal joints on DAVIS videos): reader and scorer.

Ground truth is sparse in time (about every 5th frame is labelled). Each joint is queried
at its first visible labelled frame (TAP-Vid "first" mode) and scored on the other labelled
frames where it is visible: δ^x for x = 1, 2, 4, 8, 16 pixels after scaling the frame to
256×256 (corner-aligned, as TAP-Vid), their mean δ_avg, and the median error in pixels of
the 854×480 frames. Coordinates are pixels, x right, y down; queries are ``(t, x, y)``.

Data layout (see ``../shared/data/README.md``): ``<root>/<seq>/gt.npz`` and frames either in
``<root>/<seq>/frames/*.jpg`` or, for ``bear``, in ``videos/bear.mp4`` beside ``tracks/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from cotracker3_plugin.errors import UserError
from cotracker3_plugin.evaluate.metrics import THRESHOLDS

SEQUENCES: tuple[str, ...] = ("bear", "camel", "dog")


class Tracker(Protocol):
    """Anything that tracks query points through a video.

    ``tracker(frames, queries) -> (xy, visible)`` with frames (T, H, W, 3) uint8 RGB, queries
    (N, 3) ``(t, x, y)`` in pixels of ``frames``, xy (T, N, 2) pixels and visible (T, N) bool.
    """

    def __call__(self, frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass
class BadjaSequence:
    """One BADJA sequence with its frames and sparse joint labels."""

    name: str
    frames: np.ndarray
    """(T, H, W, 3) uint8 RGB."""
    points: np.ndarray
    """(N, T, 2) float32 ``(x, y)`` pixels; NaN where not labelled or not visible."""
    occluded: np.ndarray
    """(N, T) bool: True where the joint is invisible or the frame is not labelled."""
    annotated_frames: np.ndarray
    """(T,) bool: frames that carry labels."""
    query_t: np.ndarray
    """(N,) int: first labelled frame where the joint is visible."""
    joint_names: np.ndarray
    """(N,) str."""

    @property
    def queries(self) -> np.ndarray:
        """(N, 3) ``(t, x, y)`` queries at each joint's first visible labelled frame."""
        n = np.arange(len(self.query_t))
        xy = self.points[n, self.query_t]
        return np.concatenate([self.query_t[:, None].astype(np.float32), xy], axis=1).astype(np.float32)

    @property
    def score_mask(self) -> np.ndarray:
        """(N, T) bool: labelled, visible, and not the query frame."""
        mask = self.annotated_frames[None, :] & ~self.occluded
        mask[np.arange(len(self.query_t)), self.query_t] = False
        return mask


def default_badja_root() -> Path:
    """``../shared/data/tracks/badja`` beside the repository (or ``$COTRACKER3_SHARED``)."""
    import os

    shared = os.environ.get("COTRACKER3_SHARED")
    base = Path(shared) if shared else Path(__file__).resolve().parents[3] / "shared"
    return base / "data" / "tracks" / "badja"


def _read_video(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def _read_frames(seq_dir: Path, num_frames: int) -> np.ndarray:
    frame_dir = seq_dir / "frames"
    if frame_dir.is_dir():
        files = sorted(frame_dir.glob("*.jpg"))
        frames = np.stack([cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files])
    else:
        video = seq_dir.resolve().parents[2] / "videos" / f"{seq_dir.name}.mp4"
        if not video.is_file():
            raise UserError(
                f"No frames for BADJA sequence {seq_dir.name}: neither {frame_dir} nor {video} exists. "
                "Point --data at the shared data folder that holds tracks/badja and videos/."
            )
        frames = _read_video(video)
    if len(frames) < num_frames:
        raise UserError(
            f"BADJA sequence {seq_dir.name} has {len(frames)} frames but its labels need {num_frames}; "
            "the frames are incomplete: restore them from the shared data."
        )
    return frames[:num_frames]


def load_badja(name: str, root: str | Path | None = None) -> BadjaSequence:
    """Load one BADJA sequence (``bear``, ``camel`` or ``dog``) with its frames."""
    root = Path(root) if root is not None else default_badja_root()
    seq_dir = root / name
    gt_path = seq_dir / "gt.npz"
    if not gt_path.is_file():
        raise UserError(
            f"BADJA ground truth {gt_path} not found. Pass the folder holding bear/, camel/, dog/ "
            "with --data (the shared data's tracks/badja), or set COTRACKER3_SHARED."
        )
    gt = np.load(gt_path)
    num_frames = int(gt["num_frames"])
    return BadjaSequence(
        name=name,
        frames=_read_frames(seq_dir, num_frames),
        points=gt["points"].astype(np.float32),
        occluded=gt["occluded"].astype(bool),
        annotated_frames=gt["annotated_frames"].astype(bool),
        query_t=gt["query_t"].astype(np.int64),
        joint_names=gt["joint_names"],
    )


def score_badja(seq: BadjaSequence, xy: np.ndarray, visible: np.ndarray | None = None) -> dict[str, float]:
    """Score predicted tracks (T, N, 2) pixels against the sequence's labels.

    Returns ``pts_within_{1,2,4,8,16}`` and ``average_pts_within_thresh`` (fractions, 256-px
    scale), ``median_error_px`` (pixels of the original frame), ``num_scored`` and, when
    ``visible`` is given, ``visible_recall`` (share of scored labels predicted visible; BADJA
    has no reliable occlusion labels, so there is no occlusion accuracy).
    """
    mask = seq.score_mask  # (N, T)
    H, W = seq.frames.shape[1:3]
    pred = np.transpose(np.asarray(xy, dtype=np.float64), (1, 0, 2))  # (N, T, 2)
    gt = seq.points.astype(np.float64)
    diff = pred[mask] - gt[mask]
    err_px = np.linalg.norm(diff, axis=1)
    # Corner-aligned scaling to 256×256, as TAP-Vid does for its points.
    scale = np.array([255.0 / (W - 1), 255.0 / (H - 1)])
    err256 = np.linalg.norm(diff * scale, axis=1)
    out: dict[str, float] = {}
    for t in THRESHOLDS:
        out[f"pts_within_{t}"] = float(np.mean(err256 < t))
    out["average_pts_within_thresh"] = float(np.mean([out[f"pts_within_{t}"] for t in THRESHOLDS]))
    out["median_error_px"] = float(np.median(err_px))
    out["num_scored"] = int(mask.sum())
    if visible is not None:
        out["visible_recall"] = float(np.mean(np.asarray(visible).T[mask]))
    return out


def evaluate_badja(
    tracker: Tracker, root: str | Path | None = None, sequences: tuple[str, ...] = SEQUENCES
) -> dict:
    """Run ``tracker`` on each BADJA sequence; per-sequence scores and their plain mean."""
    per_video: dict[str, dict[str, float]] = {}
    for name in sequences:
        seq = load_badja(name, root)
        xy, vis = tracker(seq.frames, seq.queries)
        per_video[name] = score_badja(seq, xy, vis)
    keys = [k for k in next(iter(per_video.values())) if k != "num_scored"]
    mean = {k: float(np.mean([v[k] for v in per_video.values()])) for k in keys}
    return {"dataset": "badja", "per_video": per_video, "mean": mean}
