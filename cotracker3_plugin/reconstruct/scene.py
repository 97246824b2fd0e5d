"""The ``Scene`` type: cameras, per-frame poses and coloured 3D points.

Conventions: OpenCV camera axes (x right, y down, z forward); poses are
``world_from_cam`` 4x4 matrices (camera-to-world), so a world point X projects as
``K @ (inv(world_from_cam) @ X)[:3]``. Pixel centres at integer coordinates.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cotracker3_plugin._atomic import atomic_path
from cotracker3_plugin.errors import UserError

SCENE_FORMAT_VERSION = 1


@dataclass
class Scene:
    """The output of reconstruction; the input of the exporters and the viewer."""

    intrinsics: np.ndarray
    """(C, 3, 3) float64 pinhole K per camera (C = 1 for a shared camera)."""
    image_size: tuple[int, int]
    """(height, width) in pixels of the frames the intrinsics refer to."""
    camera_index: np.ndarray
    """(T,) int: which camera each frame uses."""
    world_from_cam: np.ndarray
    """(T, 4, 4) float64 camera-to-world poses; NaN for unregistered frames."""
    registered: np.ndarray
    """(T,) bool: the mapper gave this frame a pose."""
    points: np.ndarray
    """(P, 3) float64 world coordinates."""
    colors: np.ndarray
    """(P, 3) uint8 RGB."""
    track_ids: np.ndarray
    """(P,) int: index of the track (in ``Tracks``) that made each point; -1 if none."""
    distortion: np.ndarray = field(default_factory=lambda: np.zeros(4))
    """OpenCV (k1, k2, p1, p2) shared by all cameras (zeros: none estimated)."""
    frame_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """(T,) index of each frame in the clip (frames may be subsampled)."""
    point_errors: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """(P,) mean reprojection error in px of each point (empty if unknown)."""
    moving_masks: np.ndarray | None = None
    """(T, H, W) bool at ``image_size``: pixels of moving subjects, kept out of the map (None: not computed)."""

    def __post_init__(self) -> None:
        t = len(self.registered)
        if len(self.frame_indices) == 0:
            self.frame_indices = np.arange(t, dtype=np.int64)
        self.registered = np.asarray(self.registered, dtype=bool)
        self.points = np.asarray(self.points, dtype=np.float64).reshape(-1, 3)
        self.colors = np.asarray(self.colors, dtype=np.uint8).reshape(-1, 3)
        self.track_ids = np.asarray(self.track_ids, dtype=np.int64).reshape(-1)

    @property
    def num_frames(self) -> int:
        return int(len(self.registered))

    @property
    def num_registered(self) -> int:
        return int(self.registered.sum())

    def K(self, frame: int) -> np.ndarray:
        """Intrinsics of frame ``frame``."""
        return self.intrinsics[int(self.camera_index[frame])]

    def camera_centers(self) -> np.ndarray:
        """(T, 3) camera centres in world coordinates (NaN where unregistered)."""
        return self.world_from_cam[:, :3, 3]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the scene as ``.npz`` atomically."""
        path = Path(path)
        buf = io.BytesIO()
        np.savez_compressed(
            buf, format_version=np.int64(SCENE_FORMAT_VERSION), intrinsics=self.intrinsics,
            image_size=np.asarray(self.image_size), camera_index=self.camera_index,
            world_from_cam=self.world_from_cam, registered=self.registered, points=self.points,
            colors=self.colors, track_ids=self.track_ids, distortion=self.distortion,
            frame_indices=self.frame_indices, point_errors=self.point_errors,
            **({} if self.moving_masks is None else {"moving_masks": np.packbits(self.moving_masks, axis=-1),
                                                     "moving_masks_width": np.int64(self.moving_masks.shape[-1])}),
        )
        with atomic_path(path) as tmp:
            tmp.write_bytes(buf.getvalue())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Scene:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"Scene file {path} does not exist. Run `cotracker3 reconstruct` first.")
        with np.load(path, allow_pickle=False) as z:
            if int(z["format_version"]) > SCENE_FORMAT_VERSION:
                raise UserError(f"{path} was written by a newer cotracker3-plugin; upgrade it.")
            return cls(
                intrinsics=z["intrinsics"], image_size=tuple(z["image_size"].tolist()),
                camera_index=z["camera_index"], world_from_cam=z["world_from_cam"],
                registered=z["registered"], points=z["points"], colors=z["colors"],
                track_ids=z["track_ids"], distortion=z["distortion"],
                frame_indices=z["frame_indices"], point_errors=z["point_errors"],
                moving_masks=(np.unpackbits(z["moving_masks"], axis=-1, count=int(z["moving_masks_width"])).astype(bool)
                              if "moving_masks" in z.files else None),
            )
