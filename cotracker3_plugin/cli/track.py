"""Track points through a video with CoTracker3.

Writes into the output folder (atomically: a failed run leaves nothing behind):
tracks.npz (cotracker3_plugin.tracks.Tracks, in pixels of the decoded frames), tracks.mp4
(the tracks drawn on the video) and summary.json (sizes, mean visibility, where the positions came
from (provenance: chained KLT, network sharpened by Lucas-Kanade, network as is), time per stage,
model, device, versions).

Examples:
  cotracker3 track video.mp4
  cotracker3 track video.mp4 --grid-size 30 --online --output outputs/run1
  cotracker3 track frames/ --queries points.csv --backward-tracking
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import tyro

from cotracker3_plugin._atomic import atomic_dir
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
from cotracker3_plugin.errors import UserError
from cotracker3_plugin.io.clip import Clip
from cotracker3_plugin.precision import Precision, fast_kernels_for, precision_name, resolve_precision

log = logging.getLogger("cotracker3_plugin.cli.track")


@tyro.conf.configure(tyro.conf.FlagCreatePairsOff)
@dataclass
class Config:
    """Options of `cotracker3 track`."""

    video: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="VIDEO")]
    """Video file (mp4, mov, mkv, webm, avi, ...) or a folder of images (natural name order)."""
    model: str | None = None
    """Model: cotracker3_offline or cotracker3_online (official weights, downloaded once), a checkpoint path, or unset for the small model bundled with the package."""
    grid_size: int = 20
    """Track a grid of grid-size x grid-size points (ignored when --queries is given)."""
    grid_query_frame: int = 0
    """Frame (of the decoded clip) on which the grid points are placed."""
    queries: Path | None = None
    """File of query points, one 't, x, y' row each: .csv/.txt (commas or spaces; '#' comments and a header line allowed) or .npy of shape (N, 3). t is a frame index of the source video; x, y are pixels of the source video (x right, y down)."""
    mask: Path | None = None
    """Image whose non-zero pixels select the grid points to track (same aspect ratio as the video; resized to the decoded frames)."""
    online: bool = False
    """Use the online (sliding-window) model and predictor. Without --online/--offline the model's own type decides."""
    offline: bool = False
    """Use the offline (whole clip at once) model and predictor."""
    backward_tracking: bool = False
    """Also track backwards in time from each query frame (matters for queries after the first frame with the online model, and for windowed runs)."""
    window: int | None = None
    """Offline model only: run on overlapping windows of this many frames (e.g. 60), for long videos in bounded memory."""
    refine_tracks: bool | Literal["auto"] = "auto"
    """Make the tracks precise with OpenCV Lucas-Kanade: chained KLT from each query point for as long as its forward-backward check holds the point (visible there), the model's tracks after that, sharpened by LK from the query patch where LK confirms them. auto: on for the bundled model (it runs at 192x256, so its positions are coarse), off for other weights."""
    device: str = "auto"
    """Device: auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps."""
    precision: Precision = "auto"
    """Arithmetic of the network: auto (bf16 where the CPU has native bf16 units, AVX512-BF16 or AMX-BF16, or the GPU supports it; fp32 elsewhere), fp32 (the official numbers, identical on every machine), bf16, fp16 (GPUs). bf16 moves tracks by a fraction of a pixel; see cotracker3_plugin/precision.py."""
    decode: Annotated[DecodeOptions, tyro.conf.OmitArgPrefixes] = field(default_factory=DecodeOptions)
    """Frames to decode."""
    output: Path | None = None
    """Output folder (default: outputs/<video name>)."""
    overwrite: bool = False
    """Replace the output folder if it exists."""
    no_video: bool = False
    """Do not write the tracks.mp4 overlay video."""
    trail: int = 8
    """Length of the trails drawn in tracks.mp4, in frames."""
    verbose: bool = False
    """Debug logging, and full tracebacks on errors."""


# ---------------------------------------------------------------------- input files
def read_queries_file(path: Path) -> np.ndarray:
    """(N, 3) float32 ``(t, x, y)`` rows from a .npy, .csv or .txt file."""
    if not path.is_file():
        raise UserError(f"Queries file {path} does not exist. Give a .csv/.txt of 't, x, y' rows "
                        "or a .npy array of shape (N, 3).")
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise UserError(f"{path} is not a readable .npy array ({e}). Save it with "
                            "np.save(path, queries) with queries of shape (N, 3).") from e
        arr = np.asarray(arr, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != 3:
            raise UserError(f"{path} holds an array of shape {arr.shape}; queries must be (N, 3) "
                            "rows of (t, x, y).")
    else:
        rows: list[list[float]] = []
        for lineno, line in enumerate(path.read_text().splitlines(), start=1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            parts = [p for p in text.replace(",", " ").replace(";", " ").split() if p]
            try:
                values = [float(p) for p in parts]
            except ValueError:
                if not rows:  # a header line such as "t,x,y"
                    continue
                raise UserError(f"{path} line {lineno} is not three numbers: {line.strip()!r}. "
                                "Each row must be 't, x, y'.") from None
            if len(values) != 3:
                raise UserError(f"{path} line {lineno} has {len(values)} values: {line.strip()!r}. "
                                "Each row must be 't, x, y' (frame, x pixel, y pixel).")
            rows.append(values)
        arr = np.asarray(rows, dtype=np.float32).reshape(-1, 3)
    if len(arr) == 0:
        raise UserError(f"{path} holds no query rows. Add 't, x, y' rows or drop --queries to "
                        "track a grid.")
    if not np.isfinite(arr).all():
        bad = np.nonzero(~np.isfinite(arr).all(1))[0]
        raise UserError(f"{path}: rows {_rows(bad)} contain NaN or infinity. Fix or remove them.")
    return arr


def _rows(idx: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(str(int(i)) for i in idx[:limit])
    return shown + (f" ... ({len(idx)} rows)" if len(idx) > limit else "")


def queries_to_clip(queries: np.ndarray, clip: Clip, source_hw: tuple[int, int]) -> np.ndarray:
    """Map source-video queries (source frame index, source pixels) into the decoded clip.

    Raises :class:`UserError` naming every row outside the source frame or the decoded range.
    A frame skipped by ``--stride`` maps to the nearest decoded frame (with a warning).
    """
    q = np.asarray(queries, dtype=np.float32).copy()
    sh, sw = source_hw
    t, x, y = q[:, 0], q[:, 1], q[:, 2]
    outside = (x < -0.5) | (x > sw - 0.5) | (y < -0.5) | (y > sh - 0.5)
    if outside.any():
        bad = np.nonzero(outside)[0]
        raise UserError(
            f"Query rows {_rows(bad)} (data rows counted from 0, a header line not counted) lie outside "
            f"the {sw}x{sh} frame, e.g. row {int(bad[0])} at x={x[bad[0]]:g}, y={y[bad[0]]:g}. Queries are "
            "'t, x, y' in pixels of the source video (x to the right, y down); did you swap x and y?")
    idx = clip.frame_indices.astype(np.float64)
    late = (t < idx[0] - 0.5) | (t > idx[-1] + 0.5)
    if late.any():
        bad = np.nonzero(late)[0]
        raise UserError(
            f"Query rows {_rows(bad)} (data rows counted from 0, a header line not counted) are at frames "
            f"outside the decoded frames {int(idx[0])}..{int(idx[-1])}, e.g. row {int(bad[0])} at frame "
            f"{t[bad[0]]:g}. Use frame indices of the source video inside that range, or change "
            "--start-time/--end-time/--max-frames.")
    nearest = np.abs(t[:, None] - idx[None]).argmin(1)
    moved = np.abs(idx[nearest] - t) > 1e-3
    if moved.any():
        log.warning("%d queries are on frames skipped by --stride %s; they use the nearest decoded "
                    "frame instead.", int(moved.sum()), _stride_of(clip))
    q[:, 0] = nearest
    # cv2.resize maps pixel centres: x' = (x + 0.5) * scale - 0.5
    q[:, 1] = (x + 0.5) * (clip.width / sw) - 0.5
    q[:, 2] = (y + 0.5) * (clip.height / sh) - 0.5
    return q


def _stride_of(clip: Clip) -> int:
    return int(clip.frame_indices[1] - clip.frame_indices[0]) if len(clip) > 1 else 1


def read_mask(path: Path, clip_hw: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 0/1 mask at the clip's size from an image (non-zero = inside)."""
    import cv2

    if not path.is_file():
        raise UserError(f"Mask image {path} does not exist. Give a PNG/JPEG whose non-zero pixels "
                        "mark where to track.")
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise UserError(f"Mask {path} is not a readable image. Save it as PNG (non-zero = track).")
    h, w = clip_hw
    mh, mw = img.shape
    if abs(mw / mh - w / h) > 0.02 * (w / h):
        raise UserError(f"Mask {path} is {mw}x{mh} but the video frames are {w}x{h} (another aspect "
                        "ratio). Make the mask the size of the video.")
    if (mh, mw) != (h, w):
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_NEAREST)
    mask = (img > 0).astype(np.float32)
    if not mask.any():
        raise UserError(f"Mask {path} is all zero: no grid point would be tracked. Mark the region "
                        "to track with non-zero pixels.")
    return mask


# ---------------------------------------------------------------------- main
def _mode(cfg: Config) -> bool | None:
    if cfg.online and cfg.offline:
        raise UserError("--online and --offline contradict each other. Give at most one.")
    return True if cfg.online else (False if cfg.offline else None)


def _model_label(cfg: Config, model) -> str:
    if cfg.model is not None:
        return str(cfg.model)
    return "bundled default" + (f" ({type(model).__name__})" if model is not None else "")


def run(cfg: Config) -> int:
    from cotracker3_plugin.io.overlay import render_overlay, write_video
    from cotracker3_plugin.io.video import (
        check_memory,
        clip_from_frames,
        iter_frames,
        probe_video,
        read_video,
    )

    online = _mode(cfg)
    if cfg.mask is not None and cfg.queries is not None:
        raise UserError("--mask selects grid points and --queries gives explicit points; use one.")
    if cfg.trail < 0:
        raise UserError(f"--trail must be >= 0 frames, got {cfg.trail}.")
    queries_src = read_queries_file(cfg.queries) if cfg.queries is not None else None
    out_dir = cfg.output if cfg.output is not None else Path("outputs") / Path(cfg.video).stem
    bars = show_progress()
    sw = Stopwatch()
    t_start = time.perf_counter()

    with atomic_dir(out_dir, overwrite=cfg.overwrite) as tmp:
        # A bad video fails before the model loads (probing is cheap), a wrong --model or
        # --device before a long decode.
        with sw("decode"):
            info = probe_video(cfg.video)
        with sw("load_model"):
            device = resolve_device(cfg.device)
            model = load_model_verbose(cfg.model, online=online, device=device)
            dtype = resolve_precision(cfg.precision, device)
            model.set_fast(fast_kernels_for(dtype))
        log.info("Network arithmetic: %s, %s kernels.", precision_name(dtype),
                 "fast" if fast_kernels_for(dtype) else "exact")

        with sw("decode"):
            dec = cfg.decode
            opts = dec.kwargs()
            # iterate once with a bar, so long videos show progress while decoding
            total = None if dec.start_time or dec.end_time else -(-info.num_frames // opts["stride"])
            if total is not None and dec.max_frames is not None:
                total = min(total, dec.max_frames)
            with progress_bar(total, "decode", enabled=bars, unit="frame") as advance:
                if Path(cfg.video).is_dir():
                    clip = read_video(cfg.video, **opts)
                    advance(len(clip))
                else:
                    check_memory(info, **opts)

                    def counted():
                        for pair in iter_frames(cfg.video, **opts):
                            advance(1)
                            yield pair

                    clip = clip_from_frames(counted(), Path(cfg.video), info.fps / opts["stride"])
        log.info("Decoded %d frames of %s at %dx%d (source %dx%d, %.3g fps).", len(clip), cfg.video,
                 clip.width, clip.height, info.width, info.height, info.fps)

        queries = mask = None
        if queries_src is not None:
            queries = queries_to_clip(queries_src, clip, info.size)
        if cfg.mask is not None:
            mask = read_mask(cfg.mask, clip.frame_size)

        from cotracker3_plugin.predict import track

        with sw("track"), progress_callback("track", enabled=bars) as on_progress:
            tracks = track(clip, model, queries=queries, grid_size=cfg.grid_size,
                           grid_query_frame=cfg.grid_query_frame, segm_mask=mask,
                           backward_tracking=cfg.backward_tracking, online=online,
                           window=cfg.window, precision=precision_name(dtype), progress=on_progress)
        refine = cfg.model is None if cfg.refine_tracks == "auto" else bool(cfg.refine_tracks)
        if refine:
            from cotracker3_plugin.refine import sharpen_tracks

            with sw("refine"):
                tracks = sharpen_tracks(tracks, clip.frames)
            log.info("Lucas-Kanade refinement: %s.", tracks.meta["refined"])
        else:  # the network's positions alone: on record too, so every tracks.npz says where they came from
            from cotracker3_plugin.refine import provenance_meta

            unrefined = np.zeros(tracks.visible.shape, bool)
            tracks.meta.update(provenance_meta(unrefined, unrefined, tracks.visible))
        tracks.meta.update({
            "model": _model_label(cfg, model), "source": str(cfg.video),
            "source_size": f"{info.height}x{info.width}", "stride": str(opts["stride"]),
            "first_frame": str(int(clip.frame_indices[0])),
        })

        with sw("save"):
            tracks.save(tmp / "tracks.npz")
        if not cfg.no_video:
            with sw("overlay"), progress_bar(len(clip), "overlay", enabled=bars, unit="frame") as adv:
                def frames_with_bar():
                    for f in render_overlay(clip, tracks, trail=cfg.trail):
                        adv(1)
                        yield f

                write_video(tmp / "tracks.mp4", frames_with_bar(), clip.fps)

        summary = {
            "video": str(cfg.video),
            "output": str(out_dir),
            "frames": len(clip),
            "points": tracks.num_points,
            "frame_size": list(clip.frame_size),
            "source_size": list(info.size),
            "source_frames": info.num_frames,
            "fps": clip.fps,
            "frame_indices": clip.frame_indices.tolist(),
            "mean_visibility": round(tracks.mean_visibility(), 4),
            "mean_confidence": round(float(tracks.confidence.mean()), 4),
            "provenance": {k: round(v, 4) for k, v in _provenance(tracks).items()},
            "mode": tracks.meta.get("mode", "offline" if not online else "online"),
            "refined": tracks.meta.get("refined", "no"),
            "precision": precision_name(dtype),
            "kernels": "fast" if fast_kernels_for(dtype) else "exact",
            "model": _model_label(cfg, model),
            "model_class": type(model).__name__,
            "device": str(device),
            "runtime_s": sw.rounded(),
            "wall_s": round(time.perf_counter() - t_start, 3),
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        }
        write_summary(tmp / "summary.json", summary)

    print(f"Tracked {tracks.num_points} points over {len(clip)} frames "
          f"(mean visibility {tracks.mean_visibility():.2f}) in {sw.rounded()['total']:.1f} s "
          f"-> {out_dir}/")
    print(provenance_line(_provenance(tracks)))
    return 0


def _provenance(tracks) -> dict[str, float]:
    from cotracker3_plugin.refine import provenance

    return provenance(tracks)


def provenance_line(shares: dict[str, float]) -> str:
    """One summary line saying where the positions came from (``cotracker3_plugin.refine.provenance``)."""
    def part(suffix: str) -> str:
        return (f"{shares['klt' + suffix]:.0%} chained KLT, {shares['lk' + suffix]:.0%} network sharpened by "
                f"Lucas-Kanade, {shares['network' + suffix]:.0%} network as is")

    return f"Positions: {part('')} (of the visible ones: {part('_visible')})."
