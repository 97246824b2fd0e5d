"""Query sampling with SIFT for pseudo-label fine-tuning (the paper's real-video recipe).

SIFT keypoints are corners/blobs with texture around them: points a tracker can follow.
As in the official ``train_on_real_data.py``: a detector capped at ``num_queries / rounds``
keypoints runs on ``rounds`` frames drawn (with replacement) from the first quarter of the
clip; each keypoint gives a query ``(t, int(x), int(y))``. A clip that yields fewer than
``num_queries`` keypoints is *skipped*: it gets uniform random queries and a zero valid mask,
so the training step runs with no tracking loss (featureless sky, water, blank walls).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

log = logging.getLogger(__name__)


@dataclass
class SiftQueries:
    queries: np.ndarray
    """(N, 3) float32 (t, x, y) in pixels of the clip."""
    ok: bool
    """False when the clip had too few keypoints (queries are then uniform random)."""
    num_found: int
    """How many SIFT keypoints were found before truncation."""


def uniform_queries(num: int, num_frames: int, height: int, width: int,
                    rng: np.random.Generator) -> np.ndarray:
    """``num`` queries with t in {0..T-1}, x in [0, W), y in [0, H) uniformly."""
    t = rng.integers(0, num_frames, size=num)
    x = rng.uniform(0, width, size=num)
    y = rng.uniform(0, height, size=num)
    return np.stack([t, x, y], axis=1).astype(np.float32)


def sample_sift_queries(frames: np.ndarray, num_queries: int = 384, *, rounds: int = 8,
                        first_fraction: float = 0.25,
                        rng: np.random.Generator | None = None) -> SiftQueries:
    """Sample ``num_queries`` SIFT queries from ``frames`` (T, H, W, 3) uint8 RGB."""
    if frames.ndim != 4 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    rng = rng or np.random.default_rng()
    num_frames, height, width = frames.shape[:3]
    sift = cv2.SIFT_create(nfeatures=max(1, num_queries // rounds))
    last = int(first_fraction * num_frames)
    found: list[tuple[int, int, int]] = []
    for _ in range(rounds):
        t = int(rng.integers(0, last + 1))
        # Official code passes the RGB frame as is; SIFT converts to grey internally.
        for kp in sift.detect(np.ascontiguousarray(frames[t]), None):
            found.append((t, int(kp.pt[0]), int(kp.pt[1])))
    if len(found) < num_queries:
        log.debug("SIFT found %d < %d keypoints: clip skipped", len(found), num_queries)
        return SiftQueries(uniform_queries(num_queries, num_frames, height, width, rng), False, len(found))
    return SiftQueries(np.asarray(found[:num_queries], dtype=np.float32), True, len(found))
