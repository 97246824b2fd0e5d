"""Open an output folder (tracks.npz, optional scene.npz, the video) in the viser web viewer.

Serves the viewer on --host/--port until Ctrl-C. With --export out.html (or .viser)
and/or --render out.mp4 it writes those files and exits instead (add --serve to
keep serving afterwards).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from cotracker3_plugin.errors import UserError
from cotracker3_plugin.tracks import VISIBILITY_THRESHOLD

log = logging.getLogger("cotracker3_plugin.cli.view")


@dataclass
class Config:
    """Options of `cotracker3 view`."""

    output_dir: Annotated[Path, tyro.conf.Positional]
    """Output folder of `cotracker3 track`, `reconstruct` or `run` (holds tracks.npz)."""
    video: Path | None = None
    """The video or image folder the tracks were computed on (default: images/ in the folder, or the
    video named in summary.json)."""
    host: str = "127.0.0.1"
    """Address to serve on; 0.0.0.0 makes the viewer reachable from other machines."""
    port: int = 8080
    """Port to serve on (the next free port is used if it is taken)."""
    render: Path | None = None
    """Also write the 2D overlay of every frame to this mp4 file."""
    export: Path | None = None
    """Also write a recording: .html (self-contained, plays without Python) or .viser."""
    serve: bool = False
    """Keep serving after --render/--export (serving is the default when neither is given)."""
    max_side: int = 960
    """Decode frames at most this many pixels on the longer side (the viewer shows ~640 px)."""
    trail_length: int = 10
    """Frames of history drawn as 2D and 3D trails."""
    visibility_threshold: float = VISIBILITY_THRESHOLD
    """A point counts as visible where its confidence exceeds this."""
    max_trails: int = 5000
    """At most this many tracks get 3D trails."""
    max_dense_points: int = 300_000
    """At most this many points of a dense cloud (dense_pc.ply or points.ply in the folder) are shown; a random subset above it keeps the browser fluid."""
    moving: Literal["show", "colour", "hide"] = "colour"
    """Tracks flagged moving in tracks.npz ("dynamic"): show them like the others, colour them magenta,
    or hide them with their trails (--render honours hide only). No effect on tracks without flags."""
    verbose: bool = False
    """Show debug logs and full tracebacks."""


def run(cfg: Config) -> int:
    from cotracker3_viser.export import export_recording, render_video
    from cotracker3_viser.loading import load_output
    from cotracker3_viser.moving import moving_flags
    from cotracker3_viser.server import headless_viewer, show
    from cotracker3_viser.viewer import ViewerConfig

    if cfg.render is not None and cfg.render.suffix.lower() not in (".mp4", ".mov", ".mkv"):
        raise UserError(f"--render {cfg.render}: give a video file name ending in .mp4.")
    if cfg.export is not None and cfg.export.suffix.lower() not in (".html", ".viser"):
        raise UserError(f"--export {cfg.export}: give a file name ending in .html or .viser.")
    # The mp4 is drawn at the tracks' own resolution; the browser views need less.
    loaded = load_output(cfg.output_dir, cfg.video, max_side=None if cfg.render else cfg.max_side)
    clip, tracks, scene = loaded.clip, loaded.tracks, loaded.scene
    print(f"Loaded {tracks.num_points} tracks over {clip.num_frames} frames ({clip.width}x{clip.height})"
          + (f", {len(scene.points)} 3D points and {scene.num_registered} cameras" if scene else ", no scene")
          + (f", {len(loaded.dense_points)} dense points" if loaded.dense_points is not None else ""))
    vcfg = ViewerConfig(trail_length=cfg.trail_length, visibility_threshold=cfg.visibility_threshold,
                        max_trails=cfg.max_trails, max_dense_points=cfg.max_dense_points, moving=cfg.moving)
    dense = {"dense_points": loaded.dense_points, "dense_colors": loaded.dense_colors}
    if cfg.render is not None:
        # The mp4 overlay draws query colours only: "colour" cannot apply there, "hide" can.
        moving = moving_flags(tracks) if cfg.moving == "hide" else None
        drawn = tracks if moving is None else tracks.subset(points=~moving)
        render_video(clip, drawn, cfg.render, trail=cfg.trail_length,
                     visibility_threshold=cfg.visibility_threshold)
        print(f"Wrote {cfg.render}")
    if cfg.export is not None:
        with headless_viewer(clip, tracks, scene, vcfg, **dense) as viewer:
            export_recording(viewer, cfg.export)
        print(f"Wrote {cfg.export} (open it in a browser; no server needed)"
              if cfg.export.suffix.lower() == ".html" else f"Wrote {cfg.export}")
    if (cfg.render is not None or cfg.export is not None) and not cfg.serve:
        return 0
    handle = show(clip, tracks, scene, host=cfg.host, port=cfg.port, block=False, config=vcfg, **dense)
    if handle.port != cfg.port:
        print(f"Port {cfg.port} is taken; using {handle.port}.")
    print(f"\nViewer running at {handle.url}  (open it in a browser; Ctrl-C to stop)")
    if cfg.host in ("0.0.0.0", "::"):
        print("It listens on all interfaces: use this machine's address from other machines.")
    handle.wait()
    return 0
