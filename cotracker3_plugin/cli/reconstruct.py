"""Track a video, then estimate the cameras and 3D points from the tracks with pycolmap.

Input: a video (tracked first, like `cotracker3 track`, with query grids on several
frames) or an output folder of `cotracker3 track` holding tracks.npz (then no model runs).

Writes (atomically) tracks.npz, scene.npz (cameras, poses, points),
colmap/sparse/0/{cameras,images,points3D}.bin, points.ply and report.json (frames
registered, mean reprojection error, points, time per stage). For a tracks folder the
new files go into that folder unless --output is given.

Examples:
  cotracker3 reconstruct video.mp4
  cotracker3 reconstruct video.mp4 --grid-size 40 --reconstruct.mapper global
  cotracker3 reconstruct outputs/video --reconstruct.focal 1400
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated

import numpy as np
import tyro

from cotracker3_plugin._atomic import atomic_dir, atomic_path
from cotracker3_plugin.cli._common import (
    DecodeOptions,
    Stopwatch,
    load_model_verbose,
    progress_bar,
    progress_callback,
    resolve_device,
    show_progress,
    write_summary,
)
from cotracker3_plugin.errors import OutputExistsError, UserError
from cotracker3_plugin.io.clip import Clip
from cotracker3_plugin.reconstruct import ReconstructConfig
from cotracker3_plugin.tracks import Tracks

log = logging.getLogger("cotracker3_plugin.cli.reconstruct")

#: Files this command writes into its output folder.
OUTPUT_FILES = ("tracks.npz", "scene.npz", "colmap", "points.ply", "report.json")


@tyro.conf.configure(tyro.conf.FlagCreatePairsOff)
@dataclass
class Config:
    """Options of `cotracker3 reconstruct`."""

    input: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="VIDEO|FOLDER")]
    """A video file, a folder of images, or an output folder of `cotracker3 track` (with tracks.npz)."""
    output: Path | None = None
    """Output folder (default: outputs/<video name>; for a tracks folder, that folder)."""
    overwrite: bool = False
    """Replace existing outputs."""
    model: str | None = None
    """Model: cotracker3_offline, cotracker3_online, a checkpoint path, or unset for the bundled small model."""
    grid_size: int = 30
    """Each query grid has grid-size x grid-size points."""
    query_frames: int = 4
    """Place query grids on this many evenly spaced frames (tracked forwards and backwards), so that parts first seen late in the video get tracks too."""
    device: str = "auto"
    """Device for tracking: auto, cpu, cuda, cuda:1, mps."""
    decode: Annotated[DecodeOptions, tyro.conf.OmitArgPrefixes] = field(default_factory=DecodeOptions)
    """Frames to decode."""
    window: int | None = None
    """Offline model only: track on overlapping windows of this many frames (bounded memory for long videos)."""
    image_ext: str = "png"
    """Extension of the image names in the COLMAP model (frame_00001.<ext>), matching the images you will pair it with."""
    reconstruct: ReconstructConfig = field(default_factory=ReconstructConfig)
    """Reconstruction options."""
    verbose: bool = False
    """Debug logging (including COLMAP's own log), and full tracebacks on errors."""


def _decode(path: Path, opts: dict, bars: bool) -> Clip:
    from cotracker3_plugin.io.video import read_video

    with progress_bar(None, "decode", enabled=bars, unit="clip") as advance:
        clip = read_video(path, **opts)
        advance(1)
    return clip


def _clip_for_tracks(folder: Path, tracks: Tracks, bars: bool) -> Clip | None:
    """The frames a tracks folder was made from, decoded as `cotracker3 track` did (for colours)."""
    summary = folder / "summary.json"
    source = tracks.meta.get("source")
    opts: dict = {}
    if summary.is_file():
        try:
            s = json.loads(summary.read_text())
            source = s.get("video", source)
            opts = DecodeOptions.from_summary(s.get("options", {})).kwargs()
        except (ValueError, OSError, TypeError):
            opts = {}
    if not source or not Path(source).exists():
        log.warning("The source video of %s is not available; points will be grey.", folder)
        return None
    try:
        clip = _decode(Path(source), opts, bars)
    except UserError as e:
        log.warning("Could not decode %s (%s); points will be grey.", source, e)
        return None
    if clip.num_frames != tracks.num_frames:
        log.warning("%s decodes to %d frames, the tracks have %d; points will be grey.", source,
                    clip.num_frames, tracks.num_frames)
        return None
    return clip


def multi_frame_queries(num_frames: int, frame_size: tuple[int, int], grid_size: int,
                        query_frames: int) -> np.ndarray:
    """(N, 3) ``(t, x, y)``: a grid_size^2 grid (margin width/64) on each of ``query_frames`` frames."""
    h, w = frame_size
    m = w / 64
    xs = np.linspace(m, w - 1 - m, grid_size)
    ys = np.linspace(m, h - 1 - m, grid_size)
    gx, gy = np.meshgrid(xs, ys)
    frames = np.unique(np.round(np.linspace(0, num_frames - 1, max(1, query_frames))).astype(int))
    q = [np.stack([np.full(gx.size, t), gx.ravel(), gy.ravel()], axis=1) for t in frames]
    return np.concatenate(q).astype(np.float32)


def _track(cfg: Config, clip: Clip, sw: Stopwatch, bars: bool) -> Tracks:
    from cotracker3_plugin.predict import track

    with sw("load_model"):
        device = resolve_device(cfg.device)
        model = load_model_verbose(cfg.model, device=device)
    queries = multi_frame_queries(clip.num_frames, clip.frame_size, cfg.grid_size, cfg.query_frames)
    with sw("track"), progress_callback("track", enabled=bars) as on_progress:
        tracks = track(clip, model, queries=queries, backward_tracking=True, window=cfg.window,
                       progress=on_progress)
    tracks.meta.update({"model": str(cfg.model or "bundled default"), "source": str(cfg.input),
                        "stride": str(cfg.decode.stride or 1)})
    return tracks


def _write_outputs(out: Path, tracks: Tracks, result, cfg: Config, sw: Stopwatch, write_tracks: bool,
                   extra: dict) -> None:
    from cotracker3_plugin.reconstruct import write_colmap_model, write_ply
    from cotracker3_plugin.reconstruct.export import default_image_names

    scene = result.scene
    with sw("export"):
        if write_tracks:
            tracks.save(out / "tracks.npz")
        if result.report.frames_registered < 2:  # no 3D: the tracks and the report say why
            write_summary(out / "report.json", {**extra, **result.report.as_dict()})
            return
        scene.save(out / "scene.npz")
        names = [n.replace(".png", f".{cfg.image_ext.lstrip('.')}") for n in
                 default_image_names(scene.num_frames)]
        write_colmap_model(scene, out / "colmap" / "sparse" / "0", image_names=names, tracks=result.tracks)
        write_ply(scene, out / "points.ply")
    report = result.report.as_dict()
    runtime = sw.rounded()
    runtime.update({f"reconstruct.{k}": v for k, v in report.pop("runtime_s").items()})
    report = {**extra, **report, "runtime_s": runtime,
              "options": json.loads(json.dumps(asdict(cfg), default=str))}
    write_summary(out / "report.json", report)


def run(cfg: Config) -> int:
    from cotracker3_plugin.reconstruct import reconstruct_detailed

    bars = show_progress()
    sw = Stopwatch()
    t0 = time.perf_counter()
    src = Path(cfg.input)
    if not src.exists():
        raise UserError(f"{src} does not exist. Give a video file, an image folder, or an output "
                        "folder of `cotracker3 track` (with tracks.npz).")
    from_tracks = src.is_dir() and (src / "tracks.npz").is_file()
    opts = cfg.decode.kwargs()

    if from_tracks:
        tracks = Tracks.load(src / "tracks.npz")
        with sw("decode"):
            clip = _clip_for_tracks(src, tracks, bars)
    else:
        with sw("decode"):
            clip = _decode(src, opts, bars)
        tracks = _track(cfg, clip, sw, bars)

    stages = ["correspondences", "sift", "motion", "keyframes", "calibration", "mapping", "triangulation",
              "bundle_adjustment", "triangulation_final", "motion_final", "cleanup"]
    with sw("reconstruct"), progress_bar(len(stages), "reconstruct", enabled=bars, unit="stage") as adv:
        seen: list[str] = []

        def on_stage(name: str) -> None:
            if seen:
                adv(1)
            seen.append(name)
            log.debug("reconstruction stage: %s", name)

        result = reconstruct_detailed(tracks, clip, cfg.reconstruct, progress=on_stage)
    tracks = replace(tracks, dynamic=result.input_dynamic)
    no_3d = result.scene.num_registered < 2
    if no_3d:
        log.warning("Only %d of %d frames got a camera pose. Try a denser grid (--grid-size), more "
                    "query frames, --reconstruct.mapper global, or a video with more camera motion.",
                    result.scene.num_registered, result.scene.num_frames)
    extra = {"input": str(src), "frames": tracks.num_frames, "tracks": tracks.num_points,
             "frame_size": list(tracks.frame_size), "wall_s": None}

    if from_tracks and cfg.output is None:
        out = src
        clash = [n for n in OUTPUT_FILES[1:] if (out / n).exists()]
        if clash and not cfg.overwrite:
            raise OutputExistsError(f"{out} already holds {', '.join(clash)}. Pass --overwrite to "
                                    "replace them, or --output to write elsewhere.")
        # Each file is written atomically; the COLMAP folder is built aside and renamed.
        if (out / "colmap").exists():
            shutil.rmtree(out / "colmap")
        extra["wall_s"] = round(time.perf_counter() - t0, 3)
        _write_outputs(out, tracks, result, cfg, sw, write_tracks=True, extra=extra)
    else:
        out = cfg.output if cfg.output is not None else Path("outputs") / src.stem
        with atomic_dir(out, overwrite=cfg.overwrite) as tmp:
            extra["wall_s"] = round(time.perf_counter() - t0, 3)
            _write_outputs(tmp, tracks, result, cfg, sw, write_tracks=True, extra=extra)
            if from_tracks and (src / "summary.json").is_file():
                with atomic_path(tmp / "track_summary.json") as p:
                    shutil.copyfile(src / "summary.json", p)

    rep = result.report
    if no_3d:
        raise UserError(f"No 3D from {src}: {rep.failure or 'no frame got a camera pose'}. The tracks were "
                        f"written to {out / 'tracks.npz'} and the report to {out / 'report.json'}.")
    cal = rep.calibration
    focal = (f"focal {rep.focal:.0f} px ({rep.focal_prior}"
             + ("" if cal.get("determined", True) else ", NOT determined by the video: pass --reconstruct.focal")
             + ")")
    print(f"Registered {rep.frames_registered}/{rep.frames} frames, {rep.points} points, mean "
          f"reprojection error {rep.mean_reprojection_error:.2f} px, {focal}, {rep.tracks_moving} moving "
          f"tracks, in {time.perf_counter() - t0:.1f} s -> {out}/")
    return 0
