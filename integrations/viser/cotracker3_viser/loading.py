"""Load an output folder of ``cotracker3 track`` / ``reconstruct`` / ``run`` for viewing.

The folder holds ``tracks.npz``, optionally ``scene.npz``, and a way back to the
frames: an ``images/`` folder (nerfstudio dataset layout), or the source video named
by the ``"video"`` key of ``summary.json`` / ``report.json`` (relative paths are
taken from the output folder, then from the working directory). ``--video``
overrides both. Decoding options recorded next to the video (``stride``,
``max_frames``, ``start_time``, ``end_time``) are applied, so the frames line up
with the tracks.

A dense point cloud is loaded too when the folder has one (:data:`DENSE_NAMES`, the first found):
a PLY in the reconstruction's world, or, when ``transforms.json`` names it as ``ply_file_path``,
in the nerfstudio world of that file, brought back with the inverse of its ``applied_transform``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cotracker3_plugin.errors import UserError
from cotracker3_plugin.io.clip import Clip
from cotracker3_plugin.reconstruct.scene import Scene
from cotracker3_plugin.tracks import Tracks

log = logging.getLogger(__name__)

SUMMARY_NAMES = ("summary.json", "report.json")
#: Dense point clouds, in order of preference.
DENSE_NAMES = ("dense_pc.ply", "points.ply")
_DECODE_KEYS = ("stride", "max_frames", "start_time", "end_time")


@dataclass
class LoadedOutput:
    """What the viewer needs from an output folder."""

    clip: Clip
    tracks: Tracks
    scene: Scene | None
    folder: Path
    dense_points: np.ndarray | None = None
    """(P, 3) dense points in the scene's world, if the folder has a dense cloud."""
    dense_colors: np.ndarray | None = None
    """(P, 3) uint8 colours of ``dense_points``."""


def read_summary(folder: Path) -> dict[str, Any]:
    """The first of ``summary.json`` / ``report.json`` in ``folder`` as a dict ({} if none)."""
    for name in SUMMARY_NAMES:
        p = folder / name
        if p.is_file():
            try:
                data = json.loads(p.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise UserError(f"{p} is not valid JSON ({e}). Fix or delete it, and pass --video.") from e
            return data if isinstance(data, dict) else {}
    return {}


def _decode_options(summary: dict[str, Any]) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    for src in (summary, summary.get("options") or {}, summary.get("config") or {}):
        if isinstance(src, dict):
            for k in _DECODE_KEYS:
                if src.get(k) is not None and k not in opts:
                    opts[k] = src[k]
    return opts


def _video_from_summary(folder: Path, summary: dict[str, Any]) -> Path | None:
    video = summary.get("video")
    if isinstance(video, dict):  # {"path": ..., ...}
        video = video.get("path")
    if not video:
        return None
    for cand in (folder / str(video), Path(str(video))):
        if cand.exists():
            return cand
    return None


def _applied_transform(folder: Path, ply: Path) -> np.ndarray | None:
    """The (3, 4) ``applied_transform`` of ``transforms.json`` if that file names ``ply`` as its point cloud."""
    tj = folder / "transforms.json"
    if not tj.is_file():
        return None
    try:
        meta = json.loads(tj.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(meta, dict) or meta.get("ply_file_path") != ply.name or "applied_transform" not in meta:
        return None
    return np.asarray(meta["applied_transform"], dtype=np.float64)[:3, :4]


def load_dense_cloud(folder: str | Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(points (P, 3), colors (P, 3) uint8) of the first of :data:`DENSE_NAMES` in ``folder``, or None."""
    folder = Path(folder)
    ply = next((folder / n for n in DENSE_NAMES if (folder / n).is_file()), None)
    if ply is None:
        return None
    import open3d as o3d  # slow to import: only when there is a cloud to read

    pcd = o3d.io.read_point_cloud(str(ply))
    pts = np.asarray(pcd.points, dtype=np.float64)
    cols = (np.rint(np.asarray(pcd.colors) * 255).astype(np.uint8) if pcd.has_colors()
            else np.full((len(pts), 3), 180, np.uint8))
    m = _applied_transform(folder, ply)
    if m is not None:  # nerfstudio world -> the reconstruction's world
        pts = (pts - m[:, 3]) @ np.linalg.inv(m[:, :3]).T
    log.info("dense cloud: %d points from %s", len(pts), ply)
    return pts, cols


def load_frames(path: str | Path, *, max_side: int | None = None, **opts: Any) -> Clip:
    """A :class:`Clip` from a video file or an image folder, via :func:`cotracker3_plugin.io.load_clip`."""
    from cotracker3_plugin.io import load_clip

    return load_clip(Path(path), max_side=max_side, **opts)


def _align(clip: Clip, tracks: Tracks, scene: Scene | None, source: Path
           ) -> tuple[Clip, Tracks, Scene | None]:
    """Make the clip and the tracks cover the same frames."""
    if clip.num_frames == tracks.num_frames:
        return clip, tracks, scene
    if scene is not None and clip.num_frames == scene.num_frames:
        # A nerfstudio images/ folder holds only the reconstructed frames.
        keep = np.asarray(scene.frame_indices, dtype=np.int64)
        log.info("%s has the %d reconstructed frames only; showing those.", source, clip.num_frames)
        scene = dataclasses.replace(scene, frame_indices=np.arange(scene.num_frames, dtype=np.int64))
        return clip, tracks.subset(frames=keep), scene
    if clip.num_frames > tracks.num_frames:
        # Unknown decoding options: spread the tracked frames evenly over the video.
        idx = np.round(np.linspace(0, clip.num_frames - 1, tracks.num_frames)).astype(np.int64)
        log.warning("%s has %d frames but the tracks %d; showing every %.2fth frame. Pass the exact "
                    "frames with --video if this looks wrong.", source, clip.num_frames,
                    tracks.num_frames, clip.num_frames / tracks.num_frames)
        fps = clip.fps * tracks.num_frames / clip.num_frames
        return Clip(clip.frames[idx], fps, clip.source, clip.frame_indices[idx]), tracks, scene
    raise UserError(
        f"{source} has {clip.num_frames} frames but the tracks have {tracks.num_frames}. "
        "Pass the video the tracks were computed on with --video.")


def load_output(folder: str | Path, video: str | Path | None = None, *, max_side: int | None = 960
                ) -> LoadedOutput:
    """Tracks, optional Scene and frames of an output folder (see the module docstring).

    ``max_side`` bounds the decoded frame size (the viewer shows at most ~1 k pixels;
    tracks keep their own pixel coordinates and are rescaled when drawn).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder. Pass the output folder of `cotracker3 track` "
                        "(it holds tracks.npz).")
    tracks = Tracks.load(folder / "tracks.npz")
    scene = Scene.load(folder / "scene.npz") if (folder / "scene.npz").is_file() else None
    summary = read_summary(folder)
    opts = _decode_options(summary)
    if video is not None:
        source = Path(video)
        if not source.exists():
            raise UserError(f"--video {source} does not exist. Pass the video the tracks were computed on.")
    elif (folder / "images").is_dir():
        source, opts = folder / "images", {}
    else:
        found = _video_from_summary(folder, summary)
        if found is None:
            named = summary.get("video")
            hint = f" ({named} is named in the summary but does not exist here)" if named else ""
            raise UserError(f"No frames found for {folder}{hint}. Pass the video with --video PATH.")
        source = found
    clip = load_frames(source, max_side=max_side, **opts)
    clip, tracks, scene = _align(clip, tracks, scene, source)
    dense = load_dense_cloud(folder) if scene is not None else None
    return LoadedOutput(clip, tracks, scene, folder, *(dense or (None, None)))
