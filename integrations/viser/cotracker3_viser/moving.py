"""How the viewer shows moving subjects: tracks flagged ``Tracks.dynamic`` and ``Scene.moving_masks``.

Moving tracks do not follow the static world the cameras were solved in, so a user
either wants to see them apart from the rest ("colour", the default when there are
any), to see the scene without them ("hide": their points, trails and 3D points go),
or the plain picture ("show"). Magenta is outside the track palette of
:func:`cotracker3_plugin.io.query_colors` (its hue stops at violet), so it cannot be
mistaken for a static track's colour. The viewer keeps the GUI state; this module
only turns a mode into what to draw, so it can be tested without a server.
"""

from __future__ import annotations

from typing import Literal, get_args

import cv2
import numpy as np

from cotracker3_plugin.reconstruct.scene import Scene
from cotracker3_plugin.tracks import Tracks

MovingMode = Literal["show", "colour", "hide"]
MOVING_MODES: tuple[str, ...] = get_args(MovingMode)
MOVING_COLOR = np.array([255, 0, 255], np.uint8)
"""RGB of moving tracks in "colour" mode and of the moving-pixel tint."""


def moving_flags(tracks: Tracks) -> np.ndarray | None:
    """(N,) bool moving flags, or None when the tracks have none set (the control is then moot)."""
    dyn = getattr(tracks, "dynamic", None)  # absent on cores older than the flag
    if dyn is None:
        return None
    dyn = np.asarray(dyn, dtype=bool).reshape(-1)
    return dyn if len(dyn) == tracks.num_points and dyn.any() else None


def check_mode(mode: str) -> MovingMode:
    """``mode`` if it is one of :data:`MOVING_MODES` (a clear error beats silently showing all)."""
    if mode not in MOVING_MODES:
        raise ValueError(f"moving mode must be one of {MOVING_MODES}, got {mode!r}")
    return mode  # type: ignore[return-value]


def style_tracks(mode: str, moving: np.ndarray | None, shown: np.ndarray, colors: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(shown, colors) of every track after applying ``mode`` to the ``moving`` ones.

    ``shown`` (N,) bool and ``colors`` (N, 3) uint8 are the usual ones; they are returned
    unchanged (not copied) for "show" or when there are no moving flags.
    """
    mode = check_mode(mode)
    if moving is None or mode == "show":
        return shown, colors
    if mode == "hide":
        return shown & ~moving, colors
    colors = colors.copy()
    colors[moving] = MOVING_COLOR
    return shown, colors


def scene_moving_mask(scene: Scene | None, s: int, size: tuple[int, int]) -> np.ndarray | None:
    """The moving pixels of scene frame ``s`` at ``size`` (H, W), or None if the Scene has none."""
    masks = getattr(scene, "moving_masks", None)
    if masks is None or not 0 <= s < len(masks):
        return None
    m = np.asarray(masks[s], dtype=np.uint8)
    if m.shape != tuple(size):
        m = cv2.resize(m, (int(size[1]), int(size[0])), interpolation=cv2.INTER_NEAREST)
    return m > 0


def tint(image: np.ndarray, mask: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """A copy of ``image`` with the ``mask`` pixels blended towards :data:`MOVING_COLOR`."""
    out = image.copy()
    px = out[mask].astype(np.float32)
    out[mask] = np.round(px * (1 - alpha) + MOVING_COLOR * alpha).astype(np.uint8)
    return out
