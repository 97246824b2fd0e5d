"""Draw tracks on frames (OpenCV) and encode videos (PyAV, H.264 yuv420p).

Each track keeps one colour, picked from where its query lies in the frame: hue follows
x (left red ... right violet), saturation follows y (top pale, bottom saturated), so
neighbouring points get neighbouring colours and a drifting point stands out. Visible
points are filled discs, occluded ones hollow circles; a short trail shows the last few
positions.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from cotracker3_plugin._atomic import atomic_path
from cotracker3_plugin.io.clip import Clip
from cotracker3_plugin.tracks import Tracks

_SHIFT = 4  # cv2 fixed-point bits: draw at 1/16 px precision
_ONE = 1 << _SHIFT


def query_colors(queries: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """(N, 3) uint8 RGB colour per track from its query's (x, y) position in a (H, W) frame."""
    h, w = frame_size
    q = np.asarray(queries, dtype=np.float32).reshape(-1, 3)
    x = np.clip(q[:, 1] / max(w - 1, 1), 0.0, 1.0)
    y = np.clip(q[:, 2] / max(h - 1, 1), 0.0, 1.0)
    # OpenCV 8-bit HSV: hue in [0, 180). Stop at 135 (violet) so the two sides never share red.
    hsv = np.stack([x * 135.0, 110.0 + 145.0 * y, np.full_like(x, 255.0)], axis=-1)
    hsv = np.round(hsv).astype(np.uint8)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]


def _radius(frame_size: tuple[int, int]) -> int:
    return max(2, round(max(frame_size) / 240))


def draw_tracks(frame: np.ndarray, xy: np.ndarray, visible: np.ndarray, colors: np.ndarray, *,
                trail_xy: np.ndarray | None = None, radius: int | None = None) -> np.ndarray:
    """A copy of ``frame`` (H, W, 3 uint8 RGB) with points drawn.

    ``xy`` (N, 2) pixel positions, ``visible`` (N,) bool, ``colors`` (N, 3) uint8,
    ``trail_xy`` (K, N, 2) the previous K positions (oldest first) or None. NaN positions
    are skipped.
    """
    out = np.ascontiguousarray(frame.copy())
    r = _radius(out.shape[:2]) if radius is None else radius
    cols = [tuple(int(c) for c in col) for col in np.asarray(colors)]
    if trail_xy is not None and len(trail_xy):
        path = np.concatenate([trail_xy, xy[None]], axis=0)  # (K+1, N, 2)
        fixed = np.round(path * _ONE)
        ok = np.isfinite(path).all(-1) & (np.abs(path) < 1e5).all(-1)
        thickness = max(1, r // 2)
        for n in range(path.shape[1]):
            pts = fixed[ok[:, n], n].astype(np.int32)
            if len(pts) >= 2:
                cv2.polylines(out, [pts], False, cols[n], thickness, cv2.LINE_AA, _SHIFT)
    finite = np.isfinite(xy).all(-1) & (np.abs(xy) < 1e5).all(-1)
    centres = np.round(np.nan_to_num(xy) * _ONE).astype(np.int64)
    # Occluded first so that visible points are drawn on top.
    for n in np.argsort(np.asarray(visible, dtype=bool), kind="stable"):
        if not finite[n]:
            continue
        c = (int(centres[n, 0]), int(centres[n, 1]))
        if visible[n]:
            cv2.circle(out, c, r * _ONE, cols[n], -1, cv2.LINE_AA, _SHIFT)
        else:
            cv2.circle(out, c, r * _ONE, cols[n], max(1, r // 2), cv2.LINE_AA, _SHIFT)
    return out


def render_overlay(clip: Clip | np.ndarray, tracks: Tracks, *, trail: int = 8,
                   radius: int | None = None) -> Iterator[np.ndarray]:
    """Yield the frames of ``clip`` with ``tracks`` drawn (trails of ``trail`` past frames).

    Tracks computed at another resolution than the clip are rescaled to the clip
    (pixel centres at integer coordinates, so corners map to corners).
    """
    frames = clip.frames if isinstance(clip, Clip) else np.asarray(clip)
    if frames.shape[0] != tracks.num_frames:
        raise ValueError(f"the clip has {frames.shape[0]} frames but the tracks {tracks.num_frames}")
    h, w = frames.shape[1:3]
    th, tw = tracks.frame_size
    xy = tracks.xy.astype(np.float32)
    queries = tracks.queries.copy()
    if (th, tw) != (h, w):
        scale = np.array([(w - 1) / max(tw - 1, 1), (h - 1) / max(th - 1, 1)], dtype=np.float32)
        xy = xy * scale
        queries[:, 1:] *= scale
    colors = query_colors(queries, (h, w))
    for t in range(frames.shape[0]):
        past = xy[max(0, t - trail):t] if trail > 0 else None
        yield draw_tracks(frames[t], xy[t], tracks.visible[t], colors, trail_xy=past, radius=radius)


def _even(frame: np.ndarray) -> np.ndarray:
    # yuv420p needs even sizes: pad by one replicated row/column rather than losing one.
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return cv2.copyMakeBorder(frame, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)


def write_video(path: str | os.PathLike[str], frames: Iterable[np.ndarray], fps: float, *,
                crf: int = 20, codec: str = "libx264") -> Path:
    """Encode RGB uint8 frames (H, W, 3) to an H.264 yuv420p mp4, atomically; returns the path.

    Odd sizes are padded to even; the size of the first frame is used for all. Falls back
    to MPEG-4 Part 2 when libx264 is missing from the PyAV build.
    """
    import av

    path = Path(path)
    rate = Fraction(float(fps)).limit_denominator(1001) if fps and fps > 0 else Fraction(30)
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise ValueError("write_video needs at least one frame")
    first = _even(np.asarray(first, dtype=np.uint8))
    h, w = first.shape[:2]
    if codec not in av.codecs_available:
        codec = "mpeg4"
    with atomic_path(path) as tmp:
        # The temp name ends in .tmp, so name the muxer explicitly.
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream(codec, rate=rate)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            if codec == "libx264":
                stream.options = {"crf": str(crf), "preset": "veryfast"}
            for frame in _chain(first, it):
                frame = _even(np.asarray(frame, dtype=np.uint8))
                if frame.shape[:2] != (h, w):
                    raise ValueError(f"frame size {frame.shape[:2]} differs from the first {(h, w)}")
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return path


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def write_overlay(path: str | os.PathLike[str], clip: Clip, tracks: Tracks, *, trail: int = 8,
                  radius: int | None = None, fps: float | None = None) -> Path:
    """Render ``tracks`` over ``clip`` and write an mp4 at the clip's fps (atomic)."""
    return write_video(path, render_overlay(clip, tracks, trail=trail, radius=radius),
                       fps if fps is not None else clip.fps)
