"""The main job: one command from a phone video to cameras, 3D points and a nerfstudio dataset.

video -> frames -> CoTracker3 tracks -> pycolmap cameras + bundle adjustment -> coloured
points -> nerfstudio dataset (images/, colmap/sparse/0, transforms.json, sparse_pc.ply,
tracks.npz, scene.npz, summary.json). Open the result with `cotracker3 view OUTPUT` or pass
--view. The output folder is written atomically: a failed or interrupted run leaves nothing.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import tyro

from cotracker3_plugin.errors import OutputExistsError, UserError
from cotracker3_plugin.reconstruct import ReconstructConfig

log = logging.getLogger("cotracker3_plugin.cli")


@dataclass
class Config:
    video: tyro.conf.Positional[Path]
    """The video file (or a folder of frames) to process."""
    output: Path | None = None
    """Output folder (the nerfstudio dataset). Default: outputs/<video name>."""
    model: str | None = None
    """Model name or checkpoint path: the bundled small model when not given; `cotracker3_offline`
    / `cotracker3_online` for the official weights (a download; CC-BY-NC), or a .pth/.safetensors path."""
    tracker: Literal["cotracker3", "cotracker3-online", "klt"] = "cotracker3"
    """Which tracker makes the correspondences (`klt`: OpenCV Lucas-Kanade, no weights)."""
    grid_size: int = 16
    """Query points per side of the grid laid on each query frame."""
    num_query_frames: int = 3
    """Frames (spread over the clip) that get a query grid; the offline model tracks each point
    through the whole clip, before and after its query frame."""
    backward_tracking: bool = False
    """Also run the model on the reversed video for the frames before each query (the official
    predictor's option; twice the tracking time)."""
    num_frames_target: int = 48
    """Keep about this many frames of the video (every k-th frame, as ns-process-data does)."""
    max_side: int = 640
    """Downscale frames so the longer side is at most this many pixels (dataset images too)."""
    num_downscales: int = 2
    """Also write images_2/, images_4/, ... for nerfstudio's downscaled training."""
    device: str = "auto"
    """Torch device: auto (CUDA if present, else CPU), cpu, cuda, cuda:1 …"""
    reconstruct: ReconstructConfig = field(default_factory=ReconstructConfig)
    """Options of the camera and point estimation (pycolmap)."""
    overwrite: bool = False
    """Replace the output folder if it exists."""
    view: bool = False
    """Open the viser viewer on the result when done."""
    host: str = "127.0.0.1"
    """Viewer host (with --view)."""
    port: int = 8080
    """Viewer port (with --view)."""
    verbose: bool = False
    """Show debug logs and full tracebacks."""


def run(cfg: Config) -> int:
    from cotracker3_nerfstudio.process_data import (
        ProcessDataConfig,
        load_input,
        process_data,
        query_grid,
    )

    from cotracker3_plugin.cli._common import (
        Stopwatch,
        load_model_verbose,
        progress_callback,
        resolve_device,
        show_progress,
        write_summary,
    )
    from cotracker3_plugin.reconstruct import reconstruct_detailed

    video = Path(cfg.video)
    output = cfg.output or Path("outputs") / video.stem
    if output.exists() and not cfg.overwrite:  # before any slow work
        raise OutputExistsError(f"The output folder {output} already exists. Choose another --output "
                                "folder, or pass --overwrite to replace it.")
    if cfg.grid_size < 2 or cfg.num_query_frames < 1:
        raise UserError("--grid-size must be at least 2 and --num-query-frames at least 1.")
    pcfg = ProcessDataConfig(num_frames_target=cfg.num_frames_target, num_downscales=cfg.num_downscales,
                             tracker=cfg.tracker, model=cfg.model, max_side=cfg.max_side,
                             grid_size=cfg.grid_size, num_query_frames=cfg.num_query_frames,
                             device=cfg.device, overwrite=cfg.overwrite, verbose=cfg.verbose,
                             reconstruct=cfg.reconstruct)
    sw = Stopwatch()
    bars = show_progress()
    with sw("decode"):
        clip = load_input(video, cfg.num_frames_target, cfg.max_side)
    log.info("Decoded %d frames of %dx%d from %s", clip.num_frames, clip.width, clip.height, video)

    with sw("track"):
        queries = query_grid(clip, cfg.grid_size, cfg.num_query_frames)
        if cfg.tracker == "klt":
            from cotracker3_nerfstudio.process_data import default_tracker

            tracks = default_tracker(pcfg)(clip)
        else:
            from cotracker3_plugin.predict import track

            online = cfg.tracker == "cotracker3-online"
            device = resolve_device(cfg.device)
            model = load_model_verbose(cfg.model, online=online or None, device=device)
            with progress_callback("tracking", enabled=bars, unit="frames") as cb:
                tracks = track(clip, model, queries=queries, backward_tracking=cfg.backward_tracking,
                               progress=cb)
    log.info("%d tracks, %.0f%% visible", tracks.num_points, 100 * tracks.mean_visibility())

    with sw("reconstruct"):
        result = reconstruct_detailed(tracks, clip, cfg.reconstruct)
    scene, report = result.scene, result.report
    log.info("%d of %d frames registered, %d points", scene.num_registered, scene.num_frames,
             len(scene.points))

    summary: dict = {}

    def write_run_summary(folder: Path) -> None:
        # Inside the dataset's temporary folder: the summary lands with the rest, or not at all.
        runtime = {k: v for k, v in sw.rounded().items() if k != "total"}
        runtime["export"] = round(time.perf_counter() - export_start, 3)
        runtime["total"] = round(sum(runtime.values()), 3)
        summary.update({
            "video": str(video.resolve()),
            "frames": clip.num_frames,
            "frame_size_hw": list(clip.frame_size),
            "tracks": tracks.num_points,
            "mean_visibility": round(tracks.mean_visibility(), 4),
            "frames_registered": scene.num_registered,
            "unregistered_frames": [int(i) for i in scene.frame_indices[~scene.registered]],
            "points": int(len(scene.points)),
            "mean_reprojection_error_px": (round(float(scene.point_errors.mean()), 4)
                                           if len(scene.point_errors) else None),
            "camera": {"focal_px": round(report.focal, 2), "focal_prior": report.focal_prior,
                       "camera_fixed": report.camera_fixed, "tracks_refined": report.tracks_refined,
                       "sift_tracks": report.sift_tracks},
            "tracker": cfg.tracker,
            "model": tracks.meta.get("model", cfg.model or "bundled"),
            "runtime_s": runtime,
            "outputs": {"dataset": str(output), "transforms": str(output / "transforms.json"),
                        "colmap": str(output / "colmap" / "sparse" / "0"),
                        "points": str(output / "sparse_pc.ply"), "tracks": str(output / "tracks.npz")},
        })
        write_summary(folder / "summary.json", summary)

    export_start = time.perf_counter()
    with sw("export"):
        process_data(clip, output, pcfg, tracker=tracks, scene=scene, scene_tracks=result.tracks,
                     extra=write_run_summary)
    _print_summary(summary)
    if cfg.view:
        from cotracker3_viser.cli import Config as ViewConfig
        from cotracker3_viser.cli import run as view

        return int(view(ViewConfig(output_dir=output, host=cfg.host, port=cfg.port)) or 0)
    return 0


def _print_summary(s: dict) -> None:
    t = s["runtime_s"]
    lines = [
        "",
        f"Frames     {s['frames']} ({s['frame_size_hw'][1]}x{s['frame_size_hw'][0]})",
        f"Tracks     {s['tracks']} ({100 * s['mean_visibility']:.0f}% visible)"
        + (f" + {s['camera']['sift_tracks']} SIFT feature tracks" if s["camera"]["sift_tracks"] else ""),
        f"Registered {s['frames_registered']} of {s['frames']} frames"
        + (" (tracks refined by Lucas-Kanade)" if s["camera"]["tracks_refined"] else ""),
        f"Camera     focal {s['camera']['focal_px']:.0f} px" + (" (held fixed: the free camera failed)"
                                                            if s["camera"]["camera_fixed"] else ""),
        f"Points     {s['points']}",
        "Runtime    " + ", ".join(f"{k} {v:.1f}s" for k, v in t.items()),
        f"Dataset    {s['outputs']['dataset']}  (ns-train splatfacto --data {s['outputs']['dataset']})",
        f"Viewer     cotracker3 view {s['outputs']['dataset']}",
    ]
    print("\n".join(lines), file=sys.stdout)
