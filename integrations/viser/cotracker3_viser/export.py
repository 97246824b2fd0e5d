"""Offline outputs of the viewer: a recording that plays without Python, and an mp4.

* ``.viser``: viser's own serialization of the scene nodes over time (points,
  cameras, the current camera with its frame and tracks, 3D trails); play it with
  viser's client (``?playbackPath=...``) or embed it.
* ``.html``: the same recording inlined into viser's single-file client
  (viser >= 1.0): one file that opens in a browser from disk, with no server and no
  network access. The GUI panel is not part of a recording; on a clip without a
  Scene the frame is on an image plane, so the tracks still show.
* ``.mp4``: the 2D overlay of every frame, drawn by
  :func:`cotracker3_plugin.io.write_overlay` (the same picture as ``cotracker3 track``).

A recording is made from a :class:`~cotracker3_viser.viewer.TrackViewer` (this module depends on
the viewer; the viewer does not know about recordings).
"""

from __future__ import annotations

import logging
from pathlib import Path

from cotracker3_plugin._atomic import atomic_path
from cotracker3_plugin.errors import UserError
from cotracker3_plugin.io.clip import Clip
from cotracker3_plugin.tracks import VISIBILITY_THRESHOLD, Tracks
from cotracker3_viser import _compat
from cotracker3_viser.viewer import TrackViewer

log = logging.getLogger(__name__)

RECORDING_SUFFIXES = (".viser", ".html")


def record(viewer: TrackViewer, frames: range | None = None, fps: float | None = None):
    """A viser serializer holding one pass of ``viewer`` over ``frames`` (scene nodes only, no GUI)."""
    serializer = _compat.scene_serializer(viewer.server)
    if serializer is None:
        raise UserError(f"viser {_compat.VERSION_STRING} cannot record scenes. Upgrade viser "
                        "(pip install -c constraints.txt 'viser>=1.0') or use --render instead.")
    rate = float(fps or viewer.fps.value or 30.0)
    frames = range(viewer.num_frames) if frames is None else frames
    for t in frames:
        viewer.render(int(t))
        serializer.insert_sleep(1.0 / rate)
    return serializer


def export_recording(viewer: TrackViewer, path: str | Path, *, fps: float | None = None,
                     frames: range | None = None) -> Path:
    """Write one pass over the clip as ``.viser`` or self-contained ``.html`` (atomically)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in RECORDING_SUFFIXES:
        raise UserError(f"Cannot export a recording to {path}: the name must end in .viser or .html.")
    serializer = record(viewer, frames, fps)
    if suffix == ".html":
        if not hasattr(serializer, "as_html"):
            raise UserError("This viser version cannot write a self-contained .html (needs viser >= 1.0). "
                            "Export a .viser file instead, or upgrade viser.")
        data = serializer.as_html().encode("utf-8")
    else:
        data = serializer.serialize()
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    log.info("wrote %s (%.1f MB)", path, len(data) / 1e6)
    return path


def render_video(clip: Clip, tracks: Tracks, path: str | Path, *, trail: int = 10,
                 visibility_threshold: float = VISIBILITY_THRESHOLD, fps: float | None = None) -> Path:
    """Draw the tracks over every frame and encode an mp4 (atomically)."""
    from cotracker3_plugin.io import write_overlay

    path = Path(path)
    if path.suffix.lower() not in (".mp4", ".mov", ".mkv"):
        raise UserError(f"--render {path}: give a video file name ending in .mp4.")
    return write_overlay(path, clip, tracks.with_threshold(visibility_threshold), trail=trail, fps=fps)
