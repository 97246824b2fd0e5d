"""The ``Tracks`` type: point tracks in pixels of a clip.

Coordinates are pixels, x to the right, y down, pixel centres at integer
coordinates. A query is ``(t, x, y)`` with ``t`` a frame index of the clip.

Visibility rule (one rule for offline and online outputs alike)
---------------------------------------------------------------
The model gives two probabilities per (frame, point): ``vis`` (the point is not
occluded) and ``conf`` (the estimate is within 12 px of the truth). This package
stores ``confidence = vis * conf`` and ``visible = confidence > VISIBILITY_THRESHOLD``
with ``VISIBILITY_THRESHOLD = 0.6``, the rule of the official online predictor and
of the official evaluation. The official *offline* predictor instead uses
``vis > 0.9`` and ignores ``conf``; pass ``rule="official"`` to the predictors to
get that rule bit-for-bit (the parity tests do). Tracks from
:func:`~cotracker3_plugin.refine.sharpen_tracks` are also visible where chained KLT holds the
point, whatever the confidence; :meth:`Tracks.with_threshold` re-derives the model's own rule.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cotracker3_plugin._atomic import atomic_path
from cotracker3_plugin.errors import UserError

#: Format version written into every ``tracks.npz``; bump on incompatible changes.
TRACKS_FORMAT_VERSION = 1
#: ``visible = vis * conf > VISIBILITY_THRESHOLD`` (see module docstring).
VISIBILITY_THRESHOLD = 0.6


@dataclass
class Tracks:
    """N point tracks over T frames, in pixels of the clip they were computed on."""

    xy: np.ndarray
    """(T, N, 2) float32: x, y in pixels."""
    visible: np.ndarray
    """(T, N) bool: the point is visible (not occluded) in that frame."""
    confidence: np.ndarray
    """(T, N) float32 in [0, 1]: vis * conf probability (see module docstring)."""
    queries: np.ndarray
    """(N, 3) float32: the query of each track, (t, x, y) in pixels."""
    frame_size: tuple[int, int]
    """(height, width) of the frames the tracks are expressed in."""
    meta: dict[str, str] = field(default_factory=dict)
    """Free-form provenance (model name, mode, ...); saved as strings."""
    dynamic: np.ndarray | None = None
    """(N,) bool: the track follows a moving subject (set by reconstruction's motion segmentation;
    None: not known)."""

    def __post_init__(self) -> None:
        self.xy = np.asarray(self.xy, dtype=np.float32)
        self.visible = np.asarray(self.visible, dtype=bool)
        self.confidence = np.asarray(self.confidence, dtype=np.float32)
        self.queries = np.asarray(self.queries, dtype=np.float32).reshape(-1, 3)
        self.frame_size = (int(self.frame_size[0]), int(self.frame_size[1]))
        t, n = self.visible.shape if self.visible.ndim == 2 else (-1, -1)
        if self.xy.ndim != 3 or self.xy.shape[2] != 2:
            raise ValueError(f"xy must be (T, N, 2), got {self.xy.shape}")
        if self.xy.shape[:2] != (t, n) or self.confidence.shape != (t, n):
            raise ValueError(
                f"shapes disagree: xy {self.xy.shape}, visible {self.visible.shape}, "
                f"confidence {self.confidence.shape}"
            )
        if self.queries.shape[0] != n:
            raise ValueError(f"queries must be ({n}, 3), got {self.queries.shape}")
        if self.dynamic is not None:
            self.dynamic = np.asarray(self.dynamic, dtype=bool).reshape(-1)
            if len(self.dynamic) != n:
                raise ValueError(f"dynamic must be ({n},), got {self.dynamic.shape}")

    @property
    def num_frames(self) -> int:
        return int(self.xy.shape[0])

    @property
    def num_points(self) -> int:
        return int(self.xy.shape[1])

    def __len__(self) -> int:
        return self.num_points

    def subset(self, points: np.ndarray | slice | list[int] | None = None,
               frames: np.ndarray | slice | list[int] | None = None) -> Tracks:
        """A new ``Tracks`` with the given points (index or bool mask) and/or frames.

        Selecting frames keeps query times as they were (indices of the original clip)
        unless ``frames`` is a slice with step 1, in which case they are shifted.
        """
        pts = slice(None) if points is None else points
        frs = slice(None) if frames is None else frames
        queries = self.queries[pts].copy()
        if isinstance(frs, slice) and (frs.step in (None, 1)):
            queries[:, 0] -= frs.start or 0
        return Tracks(
            xy=self.xy[frs][:, pts],
            visible=self.visible[frs][:, pts],
            confidence=self.confidence[frs][:, pts],
            queries=queries,
            frame_size=self.frame_size,
            meta=dict(self.meta),
            dynamic=None if self.dynamic is None else self.dynamic[pts],
        )

    def concatenate(self, other: Tracks) -> Tracks:
        """These tracks followed by ``other``'s (same frames and frame size); ``self``'s meta.

        ``dynamic`` is kept when either side has it (False where unknown)."""
        if other.num_frames != self.num_frames or other.frame_size != self.frame_size:
            raise ValueError(f"cannot join tracks over {other.num_frames} frames of {other.frame_size} to "
                             f"tracks over {self.num_frames} frames of {self.frame_size}")
        dynamic = None
        if self.dynamic is not None or other.dynamic is not None:
            dynamic = np.concatenate([np.zeros(n, bool) if d is None else d
                                      for d, n in ((self.dynamic, self.num_points), (other.dynamic, other.num_points))])
        return Tracks(np.concatenate([self.xy, other.xy], 1), np.concatenate([self.visible, other.visible], 1),
                      np.concatenate([self.confidence, other.confidence], 1),
                      np.concatenate([self.queries, other.queries]), self.frame_size, dict(self.meta), dynamic)

    def with_threshold(self, threshold: float) -> Tracks:
        """The same tracks with ``visible = confidence > threshold``."""
        return Tracks(self.xy, self.confidence > threshold, self.confidence, self.queries,
                      self.frame_size, dict(self.meta), self.dynamic)

    def inside_frame(self, margin: float = 0.0) -> np.ndarray:
        """(T, N) bool: the point lies at least ``margin`` px inside the frame."""
        h, w = self.frame_size
        x, y = self.xy[..., 0], self.xy[..., 1]
        return (x >= margin) & (y >= margin) & (x <= w - 1 - margin) & (y <= h - 1 - margin)

    def mean_visibility(self) -> float:
        return float(self.visible.mean()) if self.visible.size else 0.0

    # ------------------------------------------------------------------ I/O
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``.npz`` atomically (temp file, then rename)."""
        path = Path(path)
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            format_version=np.int64(TRACKS_FORMAT_VERSION),
            xy=self.xy,
            visible=self.visible,
            confidence=self.confidence,
            queries=self.queries,
            frame_size=np.asarray(self.frame_size, dtype=np.int64),
            meta_keys=np.asarray(list(self.meta.keys()), dtype=str),
            meta_values=np.asarray([str(v) for v in self.meta.values()], dtype=str),
            **({} if self.dynamic is None else {"dynamic": self.dynamic}),
        )
        with atomic_path(path) as tmp:
            tmp.write_bytes(buf.getvalue())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Tracks:
        """Read a ``tracks.npz`` written by :meth:`save` (never unpickles)."""
        path = Path(path)
        if not path.is_file():
            raise UserError(f"Tracks file {path} does not exist. Run `cotracker3 track VIDEO` first.")
        try:
            with np.load(path, allow_pickle=False) as z:
                version = int(z["format_version"])
                if version > TRACKS_FORMAT_VERSION:
                    raise UserError(
                        f"{path} has tracks format version {version}, newer than this package "
                        f"understands ({TRACKS_FORMAT_VERSION}). Upgrade cotracker3-plugin."
                    )
                meta = dict(zip(z["meta_keys"].tolist(), z["meta_values"].tolist()))
                return cls(
                    xy=z["xy"], visible=z["visible"], confidence=z["confidence"],
                    queries=z["queries"], frame_size=tuple(z["frame_size"].tolist()), meta=meta,
                    dynamic=z["dynamic"] if "dynamic" in z.files else None,
                )
        except (KeyError, ValueError, OSError) as e:
            raise UserError(f"{path} is not a tracks file written by cotracker3-plugin ({e}).") from e

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """One row per (frame, point): frame, point, x, y, visible, confidence."""
        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["frame", "point", "x", "y", "visible", "confidence"])
            t_idx, n_idx = np.meshgrid(np.arange(self.num_frames), np.arange(self.num_points),
                                       indexing="ij")
            for t, n, x, y, v, c in zip(t_idx.ravel(), n_idx.ravel(), self.xy[..., 0].ravel(),
                                        self.xy[..., 1].ravel(), self.visible.ravel(),
                                        self.confidence.ravel()):
                w.writerow([int(t), int(n), f"{x:.3f}", f"{y:.3f}", int(v), f"{c:.4f}"])
        return path
