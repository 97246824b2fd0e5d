"""Video and image-folder I/O (PyAV), and overlay rendering.

``load_clip`` / ``read_video`` / ``read_images`` give a :class:`Clip`; ``iter_frames`` streams
frames without holding the video; ``write_overlay`` / ``write_video`` encode mp4 files.
"""

from cotracker3_plugin.io.clip import Clip
from cotracker3_plugin.io.overlay import draw_tracks, query_colors, render_overlay, write_overlay, write_video
from cotracker3_plugin.io.video import (
    VideoInfo,
    check_memory,
    clip_from_frames,
    estimate_memory,
    iter_frames,
    iter_images,
    list_images,
    load_clip,
    probe_video,
    read_images,
    read_video,
    resized_size,
)

__all__ = [
    "Clip",
    "VideoInfo",
    "check_memory",
    "clip_from_frames",
    "draw_tracks",
    "estimate_memory",
    "iter_frames",
    "iter_images",
    "list_images",
    "load_clip",
    "probe_video",
    "query_colors",
    "read_images",
    "read_video",
    "render_overlay",
    "resized_size",
    "write_overlay",
    "write_video",
]
