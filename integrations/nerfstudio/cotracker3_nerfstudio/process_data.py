"""Video or image folder -> nerfstudio dataset, with point tracking in place of feature matching.

The output folder has exactly the layout ``ns-process-data`` writes::

    images/frame_00001.png ...      the frames that were tracked (full resolution of the clip)
    images_2/ images_4/ ...         the same frames downscaled by 2, 4, ... (``num_downscales``)
    colmap/sparse/0/                cameras.bin, images.bin, points3D.bin (COLMAP binary model)
    transforms.json                 intrinsics, distortion, per-frame ``transform_matrix``
    sparse_pc.ply                   the 3D points (``ply_file_path`` in transforms.json)
    masks/frame_00001.png ...       when something moves: 0 on moving subjects, 255 elsewhere (``mask_path``
    masks_2/ ...                    per frame in transforms.json), at every downscale

plus ``tracks.npz`` (the point tracks, :class:`cotracker3_plugin.tracks.Tracks`) and
``scene.npz`` (the reconstruction, :class:`cotracker3_plugin.reconstruct.Scene`).

``transforms.json`` and ``sparse_pc.ply`` are written by nerfstudio's own
``colmap_utils.colmap_to_json`` from the COLMAP model, so poses follow nerfstudio's
conventions exactly: camera-to-world with OpenGL camera axes (x right, y up, z back)
and nerfstudio's world re-orientation (``applied_transform``: world z up).

Frames are decoded with PyAV (not ffmpeg, which nerfstudio's extractor calls): the
images written are then bit-for-bit the frames the tracker saw, and no ffmpeg binary
is needed.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from cotracker3_plugin._atomic import atomic_dir
from cotracker3_plugin.errors import OutputExistsError, UserError, VideoError
from cotracker3_plugin.io.clip import Clip
from cotracker3_plugin.reconstruct import ReconstructConfig, Scene
from cotracker3_plugin.tracks import Tracks

log = logging.getLogger(__name__)

#: nerfstudio camera types that a track-based reconstruction can produce, and the
#: COLMAP camera model each one means (as in nerfstudio's ``CAMERA_MODELS``).
CAMERA_TYPES: dict[str, str] = {
    "perspective": "OPENCV",
    "pinhole": "PINHOLE",
    "simple_pinhole": "SIMPLE_PINHOLE",
}

#: A tracker: a function of the clip that returns tracks in pixels of that clip.
Tracker = Callable[[Clip], Tracks]


class NerfstudioMissingError(UserError):
    """nerfstudio's process-data utilities cannot be imported."""


@dataclass
class ProcessDataConfig:
    """How to turn a video (or image folder) into a nerfstudio dataset."""

    num_frames_target: int = 300
    """Target number of frames taken from a video (every k-th frame, k = frames // target, as ns-process-data does). All of them are tracked; the registered ones are in transforms.json."""
    num_downscales: int = 3
    """Number of times to downscale the images by 2 (3 writes images_2, images_4 and images_8)."""
    tracker: Literal["cotracker3", "cotracker3-online", "klt"] = "cotracker3"
    """Point tracker that replaces ns-process-data's feature matching: CoTracker3 offline (whole clip at once), online (sliding windows, less memory) or OpenCV pyramidal KLT (no network)."""
    model: str | None = None
    """CoTracker3 checkpoint: a name ("cotracker3_offline", "cotracker3_online"), a file path, or None for the bundled default."""
    max_side: int | None = None
    """Resize frames so that their longer side is at most this many pixels (None: full size). The images written, the tracks and the intrinsics are all at this size."""
    grid_size: int = 12
    """Query points per query frame: a grid_size x grid_size grid (`cotracker3 run`'s default; SIFT adds thousands of feature tracks, see benchmarks/reconstruct_accuracy.py)."""
    num_query_frames: int = 3
    """Number of frames, spread over the clip, that get a query grid (tracked forward and backward), so that scene content entering late is tracked too."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """The network's arithmetic: auto (bf16 with the fast kernels where the CPU or GPU has native bf16, else the official float32), fp32, bf16 or fp16 (CUDA)."""
    backward_tracking: bool | None = None
    """Also run the model on the reversed clip for the frames before each query. None: on for the online model (it only tracks forward from a query frame), off for the offline model (it tracks both ways already; on doubles the time)."""
    camera_type: Literal["perspective", "pinhole", "simple_pinhole"] = "perspective"
    """Camera model: perspective (OpenCV radial-tangential distortion), pinhole (fx, fy, cx, cy) or simple_pinhole (one focal length)."""
    masks: bool = True
    """Write masks/ (and masks_2/, ... for the downscales) of the moving subjects the reconstruction found, 0 = moving
    (ignored by nerfstudio's training), and a mask_path per frame in transforms.json, so that splatfacto / nerfacto
    do not bake moving people into the scene. Written only when something moves; --no-masks to opt out."""
    skip_image_processing: bool = False
    """Do not write images/ and its downscaled copies. With --overwrite, the image folders of the existing output folder are kept; otherwise copy the frames there yourself."""
    device: str = "auto"
    """Torch device for the tracker: auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, ..."""
    overwrite: bool = False
    """Replace the output folder if it exists (atomically, once the new one is complete)."""
    verbose: bool = False
    """Log every step (and show tracebacks in the CLI)."""
    reconstruct: ReconstructConfig = field(default_factory=ReconstructConfig)
    """Options of the camera and point estimation from the tracks (pycolmap)."""


# --------------------------------------------------------------------------- frames


def frame_stride(num_frames: int, num_frames_target: int) -> int:
    """ns-process-data's spacing: keep every ``num_frames // target``-th frame (at least 1)."""
    if num_frames_target <= 0:
        return 1
    return max(1, num_frames // num_frames_target)


def image_names(num_frames: int) -> list[str]:
    """``frame_00001.png`` ... (1-based), the names ns-process-data gives extracted frames."""
    return [f"frame_{i + 1:05d}.png" for i in range(num_frames)]


def load_input(data: Path | Clip, num_frames_target: int = 300, max_side: int | None = None) -> Clip:
    """A :class:`Clip` from a video file, a folder of same-size images, or a Clip (returned as is).

    From a video, every k-th frame is kept (k from :func:`frame_stride`); from a folder,
    all images in natural name order, as ns-process-data copies them all.
    """
    if isinstance(data, Clip):
        return data
    from cotracker3_plugin.io import load_clip, probe_video

    data = Path(data)
    info = probe_video(data)
    stride = frame_stride(info.num_frames, num_frames_target) if data.is_file() else 1
    clip = load_clip(data, stride=stride, max_side=max_side)
    if clip.num_frames < 2:
        raise VideoError(f"{data} gives {clip.num_frames} frame; tracking needs at least 2. Pass a longer "
                         "video or a folder with more frames.")
    return clip


def write_images(frames: np.ndarray, image_dir: Path, names: list[str], num_downscales: int) -> None:
    """``images/`` and ``images_2/`` ... beside it, as nerfstudio lays them out.

    Downscaled sizes are ``floor(W / f) x floor(H / f)``, the size nerfstudio's data parser
    gives the rescaled cameras, so intrinsics and pixels stay consistent.
    """
    h, w = frames.shape[1:3]
    factors = [2**i for i in range(num_downscales + 1)]
    dirs = [image_dir if f == 1 else image_dir.with_name(f"{image_dir.name}_{f}") for f in factors]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    for frame, name in zip(frames, names):
        bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        for f, d in zip(factors, dirs):
            img = bgr if f == 1 else cv2.resize(bgr, (max(1, w // f), max(1, h // f)),
                                                interpolation=cv2.INTER_AREA)
            ok, data = cv2.imencode(Path(name).suffix, img)
            if not ok:
                raise ValueError(f"OpenCV cannot encode {name}")
            try:  # a Python write reports a full disk as ENOSPC (cv2.imwrite only says False)
                (d / name).write_bytes(data.tobytes())
            except OSError as e:  # a failed write() does not name its file
                raise OSError(e.errno, e.strerror, str(d / name)) from e


def write_masks(moving: np.ndarray, mask_dir: Path, names: list[str], num_downscales: int) -> None:
    """nerfstudio masks from (T, H, W) bool moving pixels: 0 = ignore, 255 = use; ``masks_2/`` ... beside
    ``mask_dir`` at the images' downscaled sizes (a downscaled pixel is ignored if any of its pixels moves)."""
    h, w = moving.shape[1:]
    factors = [2**i for i in range(num_downscales + 1)]
    dirs = [mask_dir if f == 1 else mask_dir.with_name(f"{mask_dir.name}_{f}") for f in factors]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    for m, name in zip(moving, names):
        moving_u8 = m.astype(np.uint8) * 255
        for f, d in zip(factors, dirs):
            small = moving_u8 if f == 1 else cv2.resize(moving_u8, (max(1, w // f), max(1, h // f)),
                                                        interpolation=cv2.INTER_AREA)
            ok, data = cv2.imencode(".png", np.where(small > 0, 0, 255).astype(np.uint8))
            if not ok:
                raise ValueError(f"OpenCV cannot encode the mask {name}")
            (d / Path(name).with_suffix(".png").name).write_bytes(data.tobytes())


def _write_dense(dense, folder: Path) -> None:
    """sparse_pc.ply <- the dense cloud (in nerfstudio's world, as ``ply_file_path`` is read);
    the structure-from-motion points nerfstudio's converter wrote there -> sfm_pc.ply."""
    import json

    from cotracker3_plugin.reconstruct.densify import write_dense_ply

    meta = json.loads((folder / "transforms.json").read_text())
    ply = folder / meta.get("ply_file_path", "sparse_pc.ply")
    if ply.exists():
        ply.rename(folder / "sfm_pc.ply")
    transform = np.asarray(meta["applied_transform"], dtype=np.float64) if "applied_transform" in meta else None
    write_dense_ply(dense, ply, transform=transform)


def add_mask_paths(transforms: Path, mask_dir_name: str = "masks") -> None:
    """Give every frame of ``transforms.json`` the ``mask_path`` of the mask named like its image."""
    import json

    meta = json.loads(transforms.read_text())
    for frame in meta["frames"]:
        frame["mask_path"] = f"{mask_dir_name}/{Path(frame['file_path']).with_suffix('.png').name}"
    transforms.write_text(json.dumps(meta, indent=4))


# --------------------------------------------------------------------------- tracking


def query_grid(clip: Clip, grid_size: int, num_query_frames: int) -> np.ndarray:
    """(N, 3) ``(t, x, y)`` queries: a grid on each of ``num_query_frames`` evenly spread frames.

    The grid keeps a margin of one cell from the border; with several query frames the
    grids are shifted by a fraction of a cell so they do not start on the same pixels.
    """
    t = clip.num_frames
    nq = max(1, min(num_query_frames, t))
    frames = np.unique(np.round(np.linspace(0, t - 1, nq + 2)[1:-1] if nq > 1 else [0]).astype(int))
    h, w = clip.frame_size
    out = []
    for k, f in enumerate(frames):
        shift = k / len(frames)
        xs = (np.arange(grid_size) + 0.5 + shift * 0.5) / grid_size * (w - 1)
        ys = (np.arange(grid_size) + 0.5 + shift * 0.5) / grid_size * (h - 1)
        gx, gy = np.meshgrid(xs, ys)
        out.append(np.stack([np.full(gx.size, f, dtype=np.float64), gx.ravel(), gy.ravel()], axis=1))
    return np.concatenate(out).astype(np.float32)


def tracks_backward(config: ProcessDataConfig) -> bool:
    """Whether the model also runs on the reversed clip: ``config.backward_tracking``, or by default only for
    the online model, which tracks forward from each query frame only."""
    if config.backward_tracking is not None:
        return config.backward_tracking
    return config.tracker == "cotracker3-online"


def default_tracker(config: ProcessDataConfig) -> Tracker:
    """The tracker ``config.tracker`` names, as a function of the clip."""
    queries_of = lambda clip: query_grid(clip, config.grid_size, config.num_query_frames)  # noqa: E731

    if config.tracker == "klt":
        def klt(clip: Clip) -> Tracks:
            from cotracker3_plugin.evaluate.klt import klt_video_tracks

            # Corners re-seeded on every 4th frame, steps pre-aligned, gaps linked: the KLT
            # tracks made for structure from motion (grid_size / num_query_frames don't apply).
            xy, visible, q = klt_video_tracks(clip.frames)
            return Tracks(xy=xy, visible=visible, confidence=visible.astype(np.float32), queries=q,
                          frame_size=clip.frame_size, meta={"tracker": "klt"})
        return klt

    def cotracker(clip: Clip) -> Tracks:
        from cotracker3_plugin.device import resolve_device
        from cotracker3_plugin.precision import fast_kernels_for, precision_name, resolve_precision
        from cotracker3_plugin.predict import track
        from cotracker3_plugin.weights import load_model

        online = config.tracker == "cotracker3-online"
        device = resolve_device(config.device)
        model = load_model(config.model, online=online, device=device)
        dtype = resolve_precision(config.precision, device)
        model.set_fast(fast_kernels_for(dtype))
        # Queries on several frames, tracked both ways: content that enters the view after
        # frame 0 (the normal case for a camera walking around an object) is tracked too.
        return track(clip, model, queries=queries_of(clip), backward_tracking=tracks_backward(config),
                     online=online, precision=precision_name(dtype))
    return cotracker


# --------------------------------------------------------------------------- transforms.json


def _nerfstudio_colmap_utils():
    try:
        from nerfstudio.process_data import colmap_utils
    except ImportError as e:
        raise NerfstudioMissingError(
            f"nerfstudio's process-data utilities cannot be imported ({e}). Install them beside this "
            "package: pip install --no-deps nerfstudio==1.1.5 && pip install -c constraints.txt "
            "'cotracker3-plugin[nerfstudio]' (or use an existing nerfstudio 1.1.5 environment)."
        ) from e
    return colmap_utils


def write_transforms(recon_dir: Path, output_dir: Path) -> int:
    """transforms.json + sparse_pc.ply from a COLMAP binary model, by nerfstudio's own converter.

    Returns the number of frames written (registered images).
    """
    colmap_utils = _nerfstudio_colmap_utils()
    return int(colmap_utils.colmap_to_json(recon_dir=recon_dir, output_dir=output_dir))


def _scene_with_camera_type(scene: Scene, camera_type: str) -> Scene:
    """Make the scene's intrinsics fit the requested camera type before it is exported."""
    model = CAMERA_TYPES[camera_type]
    if model == "OPENCV":
        return scene
    k = scene.intrinsics.copy()
    if model == "SIMPLE_PINHOLE":
        f = 0.5 * (k[:, 0, 0] + k[:, 1, 1])
        k[:, 0, 0] = k[:, 1, 1] = f
    if np.any(scene.distortion):
        log.warning("camera type %s has no distortion; dropping the estimated k1 k2 p1 p2 = %s",
                    camera_type, np.round(scene.distortion, 5).tolist())
    return dataclasses.replace(scene, intrinsics=k, distortion=np.zeros(4))


# --------------------------------------------------------------------------- main entry


def process_data(
    data: str | Path | Clip,
    output_dir: str | Path,
    config: ProcessDataConfig | None = None,
    *,
    tracker: Tracker | Tracks | None = None,
    scene: Scene | None = None,
    scene_tracks: Tracks | None = None,
    dense=None,
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Turn a video (or image folder, or :class:`Clip`) into a nerfstudio dataset at ``output_dir``.

    Args:
        data: a video file, a folder of same-size frames (sorted by name), or a Clip.
        output_dir: the dataset folder to write (atomically: a failed run leaves nothing).
        config: options; defaults to :class:`ProcessDataConfig()`.
        tracker: replaces the tracker that ``config.tracker`` names: a function ``clip -> Tracks``
            or precomputed :class:`Tracks` (pixels of the clip's frames).
        scene: a precomputed reconstruction of these tracks (skips pycolmap mapping).
        scene_tracks: the tracks ``scene.track_ids`` index (``ReconstructResult.tracks``: the tracks, cut
            into pieces, plus SIFT feature tracks), for the points' 2D observations in the COLMAP model;
            default: the tracks. The moving-subject masks come from ``scene.moving_masks``; flag the tracks
            themselves with ``ReconstructResult.input_dynamic``.
        dense: a :class:`~cotracker3_plugin.reconstruct.densify.DenseCloud` of the scene: then
            ``sparse_pc.ply`` (``ply_file_path``, what splatfacto initialises from) holds it, and the
            structure-from-motion points move to ``sfm_pc.ply``.
        extra: writes more files into the dataset (called with its temporary folder, so they
            land atomically with the rest).

    Returns:
        ``output_dir``.
    """
    config = config or ProcessDataConfig()
    output_dir = Path(output_dir)
    if config.camera_type not in CAMERA_TYPES:
        raise UserError(f"camera type {config.camera_type!r} is not supported by the track step; use "
                        f"one of {', '.join(CAMERA_TYPES)} (fisheye/equirectangular: run ns-process-data).")
    if output_dir.exists() and not config.overwrite:  # checked before the slow steps too
        raise OutputExistsError(f"The output folder {output_dir} already exists. Choose another "
                                "--output-dir, or pass --overwrite to replace it.")
    _nerfstudio_colmap_utils()  # fail early, before tracking, if nerfstudio is missing

    clip = load_input(data if isinstance(data, Clip) else Path(data), config.num_frames_target,
                      config.max_side)
    log.info("%d frames of %dx%d to track", clip.num_frames, clip.width, clip.height)

    if isinstance(tracker, Tracks):
        tracks = tracker
    else:
        tracks = (tracker or default_tracker(config))(clip)
    if tracks.num_frames != clip.num_frames or tuple(tracks.frame_size) != clip.frame_size:
        raise UserError(f"The tracks cover {tracks.num_frames} frames of size {tracks.frame_size} but the "
                        f"clip has {clip.num_frames} frames of size {clip.frame_size}. Track this clip.")
    log.info("%d tracks, %.0f%% visible", tracks.num_points, 100 * tracks.mean_visibility())

    if scene is None:
        from cotracker3_plugin.reconstruct import reconstruct_detailed

        rcfg = config.reconstruct
        if config.camera_type != "perspective":  # estimate the model asked for, not a distorted one
            rcfg = dataclasses.replace(rcfg, camera_model=CAMERA_TYPES[config.camera_type])
        result = reconstruct_detailed(tracks, clip, rcfg)
        scene, scene_tracks = result.scene, result.tracks
        if tracks.dynamic is None:
            tracks = dataclasses.replace(tracks, dynamic=result.input_dynamic)
    if scene.num_registered == 0:
        raise UserError(f"No frame of {clip.num_frames} could be registered from {tracks.num_points} tracks. "
                        "Try more query points (--grid-size), another --tracker, or a video with more "
                        "camera motion and texture.")
    if len(scene.points) == 0:  # nerfstudio's converter needs points (and so does splatfacto)
        raise UserError(f"{scene.num_registered} frames got a pose but no 3D point survived triangulation. "
                        "Track more points (--grid-size), loosen --reconstruct.max-reprojection-error, or "
                        "use a video with more camera motion around a static scene.")
    scene = _scene_with_camera_type(scene, config.camera_type)
    log.info("%d of %d frames registered, %d points", scene.num_registered, scene.num_frames,
             len(scene.points))

    from cotracker3_plugin.reconstruct import write_colmap_model

    names = image_names(clip.num_frames)
    scene_names = [names[int(i)] for i in scene.frame_indices]
    old_images = _existing_image_dirs(output_dir) if config.skip_image_processing else []
    with atomic_dir(output_dir, overwrite=config.overwrite) as tmp:
        if not config.skip_image_processing:
            write_images(clip.frames, tmp / "images", names, config.num_downscales)
        else:
            for d in old_images:  # copy (not move): the old folder stays whole until the swap
                shutil.copytree(d, tmp / d.name)
        recon_dir = tmp / "colmap" / "sparse" / "0"
        write_colmap_model(scene, recon_dir, image_names=scene_names,
                           tracks=tracks if scene_tracks is None else scene_tracks)
        write_transforms(recon_dir, tmp)
        if dense is not None and len(dense):
            _write_dense(dense, tmp)
        moving = scene.moving_masks
        if config.masks and moving is not None and moving.any():
            if moving.shape[1:] != clip.frame_size:
                moving = np.stack([cv2.resize(m.astype(np.uint8), clip.frame_size[::-1],
                                              interpolation=cv2.INTER_NEAREST) > 0 for m in moving])
            write_masks(moving, tmp / "masks", scene_names, config.num_downscales)
            add_mask_paths(tmp / "transforms.json")
            log.info("masks/ of moving subjects written (%.1f%% of the pixels)", 100 * moving.mean())
        tracks.save(tmp / "tracks.npz")
        scene.save(tmp / "scene.npz")
        if extra is not None:
            extra(tmp)
    return output_dir


def _existing_image_dirs(output_dir: Path) -> list[Path]:
    if not output_dir.is_dir():
        return []
    return sorted(d for d in output_dir.iterdir()
                  if d.is_dir() and (d.name == "images" or (d.name.startswith("images_")
                                                            and d.name[7:].isdigit())))


def registered_summary(output_dir: str | Path) -> dict[str, int | float]:
    """Frames tracked / registered and points, read back from a written dataset."""
    output_dir = Path(output_dir)
    scene = Scene.load(output_dir / "scene.npz")
    tracks = Tracks.load(output_dir / "tracks.npz")
    return {
        "frames": scene.num_frames,
        "registered": scene.num_registered,
        "registered_share": scene.num_registered / max(1, scene.num_frames),
        "points": int(len(scene.points)),
        "tracks": tracks.num_points,
        "mean_point_error_px": float(np.mean(scene.point_errors)) if len(scene.point_errors) else math.nan,
    }
