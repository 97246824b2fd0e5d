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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import tyro

from cotracker3_plugin.errors import OutputExistsError, UserError
from cotracker3_plugin.reconstruct import ReconstructConfig
from cotracker3_plugin.reconstruct.densify import DensifyConfig

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
    grid_size: int = 12
    """Query points per side of the grid laid on each query frame. 12 (432 tracks with 3 query frames; SIFT
    adds thousands more) costs 0.6x the tracking time of 16 with cameras as good on the rendered scenes
    (benchmarks/reconstruct_accuracy.py --grid-size 12 / 16)."""
    num_query_frames: int = 3
    """Frames (spread over the clip) that get a query grid; the offline model tracks each point
    through the whole clip, before and after its query frame."""
    backward_tracking: bool | None = None
    """Also run the model on the reversed video for the frames before each query (the official
    predictor's option). None: on for the online model (it tracks forward from a query frame only), off
    for the offline model (it tracks both ways already; on doubles the time)."""
    num_frames_target: int = 48
    """Keep about this many frames of the video (every k-th frame, as ns-process-data does)."""
    max_side: int = 640
    """Downscale frames so the longer side is at most this many pixels (dataset images too)."""
    num_downscales: int = 2
    """Also write images_2/, images_4/, ... for nerfstudio's downscaled training."""
    device: str = "auto"
    """Torch device: auto (CUDA if present, else CPU), cpu, cuda, cuda:1 …"""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """Arithmetic of the network: auto (bf16 where the CPU has native bf16 units or the GPU supports it, fp32
    elsewhere), fp32 (the official numbers), bf16, fp16 (GPUs). See cotracker3_plugin/precision.py."""
    reconstruct: ReconstructConfig = field(default_factory=ReconstructConfig)
    """Options of the camera and point estimation (pycolmap)."""
    dense: bool = True
    """After the cameras, track a dense grid and triangulate it with the solved cameras: sparse_pc.ply (what
    splatfacto starts from) then holds the dense cloud, sfm_pc.ply the structure-from-motion points."""
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    """Options of the dense cloud (--densify.grid-size sets its density)."""
    dense_tracker: Literal["auto", "klt", "model"] = "auto"
    """Tracker of the dense grid: auto = KLT for the bundled small model (as accurate on the dense cloud of
    static_room, where the network costs about 0.1 s a query on a 2-core CPU) and for --tracker klt, the
    model otherwise."""
    masks: bool = True
    """Write masks/ of the moving subjects for nerfstudio (mask_path per frame; 0 = ignore)."""
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
        tracks_backward,
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
                             device=cfg.device, precision=cfg.precision, backward_tracking=cfg.backward_tracking,
                             overwrite=cfg.overwrite, verbose=cfg.verbose,
                             reconstruct=cfg.reconstruct, masks=cfg.masks)
    sw = Stopwatch()
    bars = show_progress()
    with sw("decode"):
        clip = load_input(video, cfg.num_frames_target, cfg.max_side)
    log.info("Decoded %d frames of %dx%d from %s", clip.num_frames, clip.width, clip.height, video)

    model = None
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
            from cotracker3_plugin.precision import fast_kernels_for, precision_name, resolve_precision

            dtype = resolve_precision(cfg.precision, device)
            model.set_fast(fast_kernels_for(dtype))
            log.info("Network arithmetic: %s", precision_name(dtype))
            with progress_callback("tracking", enabled=bars, unit="frames") as cb:
                tracks = track(clip, model, queries=queries, backward_tracking=tracks_backward(pcfg),
                               precision=precision_name(dtype), progress=cb)
    log.info("%d tracks, %.0f%% visible", tracks.num_points, 100 * tracks.mean_visibility())

    with sw("reconstruct"):
        result = reconstruct_detailed(tracks, clip, cfg.reconstruct)
    scene, report = result.scene, result.report
    tracks = replace(tracks, dynamic=result.input_dynamic)
    log.info("%d of %d frames registered, %d points", scene.num_registered, scene.num_frames,
             len(scene.points))
    if scene.num_registered < 2 or len(scene.points) == 0:
        _write_tracks_only(output, tracks, report, cfg, video)
        why = report.failure or f"{scene.num_registered} frames got a pose and {len(scene.points)} points"
        raise UserError(f"No 3D from {video}: {why}. The tracks were written to {output / 'tracks.npz'} "
                        f"(view them with `cotracker3 view {output}`).")

    cloud = None
    if cfg.dense:
        from cotracker3_plugin.reconstruct.densify import densify, make_track_fn

        with sw("densify"), progress_callback("densify", enabled=bars, unit="chunks") as cb:
            cloud = densify(scene, clip, make_track_fn(_dense_tracker(cfg, model)), cfg.densify, progress=cb)
        log.info("dense cloud: %d points", len(cloud))

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
            "dense_points": len(cloud) if cloud is not None else None,
            "dense": cloud.stats.as_dict() if cloud is not None else None,
            "camera": {"focal_px": round(report.focal, 2), "focal_prior": report.focal_prior,
                       "focal_determined": bool(report.calibration.get("determined", False)),
                       "calibration": report.calibration,
                       "camera_fixed": report.camera_fixed, "tracks_refined": report.tracks_refined,
                       "sift_tracks": report.sift_tracks},
            "motion": {"tracks_moving": report.tracks_moving,
                       "moving_pixel_share": round(report.moving_pixel_share, 4),
                       "masks": bool(cfg.masks and report.moving_pixel_share > 0)},
            "provenance": _provenance(tracks),
            "reconstruct_runtime_s": report.runtime_s,
            "tracker": cfg.tracker,
            "model": tracks.meta.get("model", cfg.model or "bundled"),
            "runtime_s": runtime,
            "outputs": {"dataset": str(output), "transforms": str(output / "transforms.json"),
                        "colmap": str(output / "colmap" / "sparse" / "0"),
                        "points": str(output / "sparse_pc.ply"), "sfm_points": str(output / "sfm_pc.ply"),
                        "tracks": str(output / "tracks.npz")},
        })
        write_summary(folder / "summary.json", summary)

    export_start = time.perf_counter()
    with sw("export"):
        process_data(clip, output, pcfg, tracker=tracks, scene=scene, scene_tracks=result.tracks,
                     dense=cloud, extra=write_run_summary)
    _print_summary(summary)
    if cfg.view:
        from cotracker3_viser.cli import Config as ViewConfig
        from cotracker3_viser.cli import run as view

        return int(view(ViewConfig(output_dir=output, host=cfg.host, port=cfg.port)) or 0)
    return 0


def _dense_tracker(cfg: Config, model):
    """What tracks the dense grid: the model, or "klt" (see ``Config.dense_tracker``)."""
    if model is None or cfg.dense_tracker == "klt":
        return "klt"
    if cfg.dense_tracker == "model":
        return model
    return "klt" if str(getattr(model, "weights_label", "")).startswith("bundled") else model


def _provenance(tracks) -> dict[str, float]:
    from cotracker3_plugin.refine import provenance

    return {k: round(v, 4) for k, v in provenance(tracks).items()}


def _write_tracks_only(output: Path, tracks, report, cfg: Config, video: Path) -> None:
    """What is left when no 3D can be had: the tracks and a summary saying why, written atomically."""
    from cotracker3_plugin._atomic import atomic_dir
    from cotracker3_plugin.cli._common import write_summary

    with atomic_dir(output, overwrite=cfg.overwrite) as tmp:
        tracks.save(tmp / "tracks.npz")
        write_summary(tmp / "summary.json", {"video": str(video.resolve()), "frames": tracks.num_frames,
                                              "tracks": tracks.num_points, "frames_registered": report.frames_registered,
                                              "no_3d": report.failure or "no frame got a pose",
                                              "no_parallax": report.no_parallax, "report": report.as_dict()})


def _camera_line(s: dict) -> str:
    cam = s["camera"]
    cal = cam.get("calibration") or {}
    if cam["camera_fixed"]:
        how = "held fixed: the free camera failed"
    elif cal.get("source") == "self-calibrated":
        rise = cal.get("rise_at_10pct", float("nan"))
        how = (f"self-calibrated {cal['focal']:.0f} px (+{100 * rise:.0f}% cost 10% away), refined in bundle "
               "adjustment")
    elif cal and not cal.get("determined", True):
        how = f"NOT determined by the video: assumed {cal.get('focal', 0):.0f} px; pass --reconstruct.focal"
    else:
        how = cam["focal_prior"]
    return f"Camera     focal {cam['focal_px']:.0f} px ({how})"


def _print_summary(s: dict) -> None:
    t = s["runtime_s"]
    p = s.get("provenance") or {}
    m = s.get("motion") or {}
    lines = [
        "",
        f"Frames     {s['frames']} ({s['frame_size_hw'][1]}x{s['frame_size_hw'][0]})",
        f"Tracks     {s['tracks']} ({100 * s['mean_visibility']:.0f}% visible)"
        + (f" + {s['camera']['sift_tracks']} SIFT feature tracks" if s["camera"]["sift_tracks"] else ""),
        f"Registered {s['frames_registered']} of {s['frames']} frames"
        + (" (tracks refined by Lucas-Kanade)" if s["camera"]["tracks_refined"] else ""),
        _camera_line(s),
        f"Moving     {m.get('tracks_moving', 0)} tracks, {100 * m.get('moving_pixel_share', 0):.1f}% of the pixels"
        + (" (masks/ written for nerfstudio)" if m.get("masks") else ""),
        f"Positions  {100 * p.get('klt', 0):.0f}% chained KLT, {100 * p.get('lk', 0):.0f}% network + Lucas-Kanade, "
        f"{100 * p.get('network', 1):.0f}% network as is"
        + (" (then Lucas-Kanade-refined for mapping)" if s["camera"]["tracks_refined"] else ""),
        f"Points     {s['points']} from structure from motion"
        + (f", {s['dense_points']} dense (sparse_pc.ply)" if s.get("dense_points") is not None else ""),
        "Runtime    " + ", ".join(f"{k} {v:.1f}s" for k, v in t.items()),
        f"Dataset    {s['outputs']['dataset']}  (ns-train splatfacto --data {s['outputs']['dataset']})",
        f"Viewer     cotracker3 view {s['outputs']['dataset']}",
    ]
    print("\n".join(lines), file=sys.stdout)
