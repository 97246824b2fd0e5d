"""The ``Clip`` type: decoded RGB frames of a video or image folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Clip:
    """T RGB frames, uint8, (T, H, W, 3), with where they came from."""

    frames: np.ndarray
    """(T, H, W, 3) uint8 RGB."""
    fps: float = 30.0
    """Frames per second of ``frames`` (the source fps divided by the stride)."""
    source: Path | None = None
    """The video file or image folder, if any."""
    frame_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """(T,) index of each frame in the source (after decoding, before striding)."""

    def __post_init__(self) -> None:
        self.frames = np.asarray(self.frames)
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            raise ValueError(f"frames must be (T, H, W, 3) uint8, got {self.frames.shape} "
                             f"{self.frames.dtype}")
        if len(self.frame_indices) == 0:
            self.frame_indices = np.arange(len(self.frames), dtype=np.int64)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def frame_size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.height, self.width

    def __len__(self) -> int:
        return self.num_frames
