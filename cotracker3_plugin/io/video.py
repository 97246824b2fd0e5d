"""Decode videos (PyAV) and image folders into RGB frames.

Everything here yields ``(H, W, 3)`` uint8 RGB frames as the video is meant to be *shown*:
the container's rotation tag (phone videos) is applied, any pixel format (10-bit, gray,
yuv444p, rgba, ...) is converted to rgb24, and ``max_side`` downsizes with OpenCV's
INTER_AREA. Frame options, applied in this order:

- ``start_time`` / ``end_time`` (seconds from the start of the stream; end exclusive): the
  decoder seeks to the keyframe before ``start_time`` and decodes forward from there, so
  the frames are the same as a full decode sliced by time;
- ``stride``: keep every ``stride``-th frame of that range (the first one included);
- ``max_frames``: stop after that many kept frames.

Frame indices count frames from the start of the stream. After a seek they are derived
from timestamps (``round(t * fps)``), which equals the decode count for constant-rate video.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from cotracker3_plugin.errors import VideoError
from cotracker3_plugin.io.clip import Clip

log = logging.getLogger(__name__)

#: File suffixes read as images when a folder is given.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
#: ``read_video`` refuses clips whose decoded frames would take more memory than this.
DEFAULT_MEMORY_LIMIT = 8 * 1024**3
#: Frame rate given to image folders unless the caller says otherwise.
DEFAULT_IMAGE_FPS = 30.0

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe_video`` learns without decoding the whole file."""

    path: Path
    """The video file or image folder."""
    num_frames: int
    """Number of frames (exact for image folders and most mp4/mov; see ``frames_exact``)."""
    fps: float
    """Frames per second (nominal ``DEFAULT_IMAGE_FPS`` for image folders)."""
    width: int
    """Width as displayed, i.e. after applying ``rotation``."""
    height: int
    """Height as displayed, i.e. after applying ``rotation``."""
    rotation: int
    """Counter-clockwise rotation (0, 90, 180, 270) applied to the coded frames for display."""
    pix_fmt: str
    """Pixel format of the coded frames (e.g. yuv420p, yuv420p10le, gray)."""
    codec: str
    """Codec name (e.g. h264, hevc), or ``images`` for a folder."""
    duration: float
    """Duration in seconds (``num_frames / fps`` when the container does not say)."""
    frames_exact: bool = True
    """False when ``num_frames`` was estimated from the duration (the container has no count)."""

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) as displayed."""
        return self.height, self.width


# ---------------------------------------------------------------------- helpers
def resized_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """(height, width) after shrinking so that the longer side is at most ``max_side``.

    Never enlarges; keeps the aspect ratio (rounded to whole pixels, at least 1).
    """
    if max_side is None or max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def _resize(img: np.ndarray, max_side: int | None) -> np.ndarray:
    h, w = img.shape[:2]
    nh, nw = resized_size(h, w, max_side)
    if (nh, nw) == (h, w):
        return img
    return cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)


def _rotate(img: np.ndarray, rotation: int) -> np.ndarray:
    # np.rot90 turns counter-clockwise, the same sense as the display matrix angle.
    if rotation == 0:
        return img
    return np.ascontiguousarray(np.rot90(img, k=rotation // 90))


def _normalise_rotation(degrees: float | int | None) -> int:
    if not degrees:
        return 0
    return int(round(float(degrees) / 90.0)) * 90 % 360


def _check_options(stride: int, max_frames: int | None, start_time: float | None,
                   end_time: float | None, max_side: int | None) -> None:
    if int(stride) != stride or stride < 1:
        raise VideoError(f"stride must be a whole number >= 1, got {stride}. Use --stride 1 to keep "
                         "every frame, 2 for every other frame, ...")
    if max_frames is not None and (int(max_frames) != max_frames or max_frames < 1):
        raise VideoError(f"max_frames must be a whole number >= 1, got {max_frames}. "
                         "Leave it unset to read all frames.")
    if start_time is not None and start_time < 0:
        raise VideoError(f"start_time must be >= 0 seconds, got {start_time}.")
    if end_time is not None and end_time <= (start_time or 0.0):
        raise VideoError(f"end_time ({end_time} s) must be after start_time ({start_time or 0.0} s). "
                         "Fix the time range.")
    if max_side is not None and (int(max_side) != max_side or max_side < 8):
        raise VideoError(f"max_side must be a whole number of pixels >= 8, got {max_side}. "
                         "Leave it unset to keep the original size.")


def _natural_key(name: str) -> list[int | str]:
    # frame_2.png before frame_10.png
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


def list_images(folder: PathLike) -> list[Path]:
    """Image files directly in ``folder`` (by suffix, case-insensitive), in natural order."""
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
             and not p.name.startswith(".")]
    return sorted(files, key=lambda p: _natural_key(p.name))


def _check_path(path: PathLike) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        hint = ""
        if path.parent.is_dir():
            near = sorted(p.name for p in path.parent.iterdir() if p.stem == path.stem)[:3]
            if near:
                hint = f" Files with that name there: {', '.join(near)}."
        raise VideoError(f"Video {path} does not exist. Check the path (relative paths start from "
                         f"{Path.cwd()}).{hint}")
    return path


def _check_folder(path: Path) -> list[Path]:
    images = list_images(path)
    if images:
        return images
    entries = [p for p in path.iterdir() if not p.name.startswith(".")]
    if not entries:
        raise VideoError(f"The image folder {path} is empty. Put the frames there as "
                         f"{'/'.join(s.lstrip('.') for s in IMAGE_SUFFIXES[:3])} files, or pass a video file.")
    raise VideoError(f"{path} is a folder without images ({', '.join(IMAGE_SUFFIXES)}). "
                     "Pass a video file, or a folder holding the frames as images.")


def _reason(e: Exception) -> str:
    """FFmpeg's words without its error number and the repeated path."""
    return getattr(e, "strerror", None) or str(e)


def _open_container(path: Path):  # -> av.container.InputContainer
    import av

    try:
        container = av.open(str(path), mode="r")
    except av.error.FileNotFoundError as e:
        raise VideoError(f"Video {path} does not exist. Check the path.") from e
    except (av.error.InvalidDataError, av.error.DemuxerNotFoundError, av.error.EOFError) as e:
        raise VideoError(f"{path} is not a readable video (FFmpeg: {_reason(e)}). It may be corrupt, "
                         "truncated or not a video at all; re-export it (e.g. as H.264 mp4) or pass "
                         "a folder of images.") from e
    except (av.FFmpegError, OSError) as e:
        raise VideoError(f"Cannot open {path} as a video ({e}). Pass a video file (mp4, mov, mkv, "
                         "webm, avi) or a folder of images.") from e
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path} has no video frames (no video stream: an empty or audio-only file). "
                         "Pass a video file with at least one frame.")
    return container


def _stream_fps(stream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and float(rate) > 0 and math.isfinite(float(rate)):
            return float(rate)
    return DEFAULT_IMAGE_FPS


# ---------------------------------------------------------------------- probe
def probe_video(path: PathLike) -> VideoInfo:
    """Frame count, fps, displayed size, rotation, pixel format and codec of a video or image folder.

    Decodes at most the first frame (to read its rotation). Raises :class:`VideoError`.
    """
    import av

    path = _check_path(path)
    if path.is_dir():
        images = _check_folder(path)
        first = _read_image(images[0])
        h, w = first.shape[:2]
        return VideoInfo(path=path, num_frames=len(images), fps=DEFAULT_IMAGE_FPS, width=w, height=h,
                         rotation=0, pix_fmt="rgb24", codec="images",
                         duration=len(images) / DEFAULT_IMAGE_FPS, frames_exact=True)
    with _open_container(path) as container:
        stream = container.streams.video[0]
        fps = _stream_fps(stream)
        cc = stream.codec_context
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1e6  # AV_TIME_BASE is microseconds
        frames_exact = bool(stream.frames and stream.frames > 0)
        num_frames = int(stream.frames) if frames_exact else (
            int(round(duration * fps)) if duration is not None else 0)
        rotation: int | None = None
        try:
            for frame in container.decode(stream):
                rotation = _normalise_rotation(frame.rotation)
                break
        except av.FFmpegError as e:
            raise VideoError(f"{path} is not a decodable video (FFmpeg: {_reason(e)}). Re-export it (e.g. as "
                             "H.264 mp4) or pass a folder of images.") from e
        if rotation is None:
            raise VideoError(f"{path} contains no video frames. Pass a video with at least one frame.")
        w, h = int(cc.width or stream.width), int(cc.height or stream.height)
        if rotation in (90, 270):
            w, h = h, w
        pix_fmt = cc.pix_fmt or (stream.format.name if stream.format else "unknown")
        return VideoInfo(path=path, num_frames=num_frames, fps=fps, width=w, height=h,
                         rotation=rotation, pix_fmt=str(pix_fmt), codec=str(cc.name),
                         duration=duration if duration is not None else num_frames / fps,
                         frames_exact=frames_exact)


def estimate_memory(info: VideoInfo, *, stride: int = 1, max_frames: int | None = None,
                    start_time: float | None = None, end_time: float | None = None,
                    max_side: int | None = None) -> int:
    """Bytes the decoded clip (uint8 RGB) would take with these options (an upper estimate)."""
    n = info.num_frames
    if start_time is not None or end_time is not None:
        t0 = start_time or 0.0
        t1 = info.duration if end_time is None else min(end_time, info.duration)
        n = min(n, max(0, math.ceil((t1 - t0) * info.fps)))
    n = math.ceil(n / stride)
    if max_frames is not None:
        n = min(n, max_frames)
    h, w = resized_size(info.height, info.width, max_side)
    return int(n) * h * w * 3


def _format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def check_memory(info: VideoInfo, limit: int | None = DEFAULT_MEMORY_LIMIT, **opts) -> int:
    """Raise :class:`VideoError` if the decoded clip would exceed ``limit`` bytes; return the estimate.

    The default limit (8 GiB) can be changed with the environment variable
    ``COTRACKER3_DECODE_LIMIT_GIB`` (e.g. on a machine with more memory).
    """
    if limit == DEFAULT_MEMORY_LIMIT and os.environ.get("COTRACKER3_DECODE_LIMIT_GIB"):
        limit = int(float(os.environ["COTRACKER3_DECODE_LIMIT_GIB"]) * 1024**3)
    need = estimate_memory(info, **opts)
    if limit is None or need <= limit:
        return need
    # The largest max_side that fits, for the message.
    frames = max(1, estimate_memory(info, **{**opts, "max_side": None}) // (info.height * info.width * 3))
    side_fit = int(math.sqrt(limit / (frames * 3) * max(info.height, info.width) / min(info.height, info.width)))
    raise VideoError(
        f"Decoding {info.path} ({frames} frames at {resized_size(info.height, info.width, opts.get('max_side'))[1]}x"
        f"{resized_size(info.height, info.width, opts.get('max_side'))[0]}) would need about {_format_bytes(need)}, "
        f"more than the limit of {_format_bytes(limit)}. Downsize with --max-side {max(8, side_fit)} (or smaller), "
        "or read fewer frames with --max-frames / --stride / a time range."
    )


# ---------------------------------------------------------------------- decode
def iter_frames(path: PathLike, *, stride: int = 1, max_frames: int | None = None,
                start_time: float | None = None, end_time: float | None = None,
                max_side: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Stream ``(index, frame)`` pairs, frame (H, W, 3) uint8 RGB, never holding the whole video.

    ``path`` may be a video file or a folder of images (then see :func:`iter_images`).
    If the file is damaged part-way, the frames decoded before the damage are yielded and a
    warning is logged; if none decode, :class:`VideoError` is raised.
    """
    import av

    _check_options(stride, max_frames, start_time, end_time, max_side)
    path = _check_path(path)
    if path.is_dir():
        yield from iter_images(path, stride=stride, max_frames=max_frames, start_time=start_time,
                               end_time=end_time, max_side=max_side)
        return
    with _open_container(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = _stream_fps(stream)
        tb = stream.time_base
        t0 = stream.start_time or 0
        tol = 0.25 / fps  # timestamps are rounded to the time base; a quarter frame absorbs that
        seeked = False
        if start_time and tb is not None:
            try:
                container.seek(t0 + int(start_time / tb), stream=stream, backward=True, any_frame=False)
                seeked = True
            except av.FFmpegError as e:  # unseekable input: decode from the start instead
                log.debug("seek failed on %s (%s); decoding from the start", path, e)
        count = in_range = kept = 0
        last_index = -1
        rotation: int | None = None
        frames = container.decode(stream)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                _warn_if_short(path, stream, container, fps, last_index, end_time)
                break
            except av.FFmpegError as e:
                if kept:
                    log.warning("%s is damaged after frame %d (FFmpeg: %s); keeping the %d frames "
                                "decoded before it.", path, count, e, kept)
                    return
                raise VideoError(f"{path} could not be decoded (FFmpeg: {_reason(e)}). The file is corrupt or "
                                 "truncated; re-export it or pass a folder of images.") from e
            if frame.pts is not None and tb is not None:
                t = float((frame.pts - t0) * tb)
                index = int(round(t * fps)) if seeked else count
            else:
                t, index = count / fps, count
            count += 1
            last_index = index
            if start_time is not None and t < start_time - tol:
                continue
            if end_time is not None and t >= end_time - tol:
                break
            take = in_range % stride == 0
            in_range += 1
            if not take:
                continue
            if rotation is None:
                rotation = _normalise_rotation(frame.rotation)
            try:
                rgb = frame.to_ndarray(format="rgb24")
            except (av.FFmpegError, ValueError) as e:
                raise VideoError(f"{path}: frame {index} has pixel format {frame.format.name}, which "
                                 f"cannot be converted to RGB ({e}). Re-export the video as yuv420p.") from e
            yield index, _resize(_rotate(rgb, rotation), max_side)
            kept += 1
            if max_frames is not None and kept >= max_frames:
                return
        if kept == 0:
            if count == 0:
                raise VideoError(f"{path} contains no video frames. Pass a video with at least one frame.")
            lasts = container.duration / 1e6 if container.duration else count / fps
            raise VideoError(f"No frames of {path} fall in the time range [{start_time or 0.0}, "
                             f"{end_time if end_time is not None else 'end'}) s (the video lasts about "
                             f"{lasts:.2f} s). Fix --start-time / --end-time.")


def _warn_if_short(path: Path, stream, container, fps: float, last_index: int,
                   end_time: float | None) -> None:
    # Truncated files often just end early without an FFmpeg error: compare with the header.
    if end_time is not None or last_index < 0:
        return
    if stream.frames and stream.frames > 0:
        expected, exact = int(stream.frames), True
    elif container.duration:
        expected, exact = int(container.duration / 1e6 * fps), False
    else:
        return
    missing = expected - (last_index + 1)
    if missing > (0 if exact else max(2, expected // 20)):
        log.warning("%s: the header announces %s%d frames but only %d decoded; the file is probably "
                    "truncated. Using the frames that decoded.", path, "" if exact else "about ",
                    expected, last_index + 1)


def _read_image(path: Path) -> np.ndarray:
    # IMREAD_COLOR applies the EXIF orientation and turns gray / 16-bit / alpha into 8-bit BGR.
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise VideoError(f"Cannot read the image {path} (not an image, or corrupt). Remove it from "
                         "the folder or replace it.")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def iter_images(folder: PathLike, *, stride: int = 1, max_frames: int | None = None,
                start_time: float | None = None, end_time: float | None = None,
                max_side: int | None = None, fps: float = DEFAULT_IMAGE_FPS
                ) -> Iterator[tuple[int, np.ndarray]]:
    """Stream ``(index, frame)`` from a folder of images in natural name order.

    Times are converted to indices with ``fps``. All images must have the same size.
    """
    _check_options(stride, max_frames, start_time, end_time, max_side)
    folder = _check_path(folder)
    if not folder.is_dir():
        raise VideoError(f"{folder} is not a folder. Pass a folder of images, or use iter_frames "
                         "for a video file.")
    images = _check_folder(folder)
    first = math.ceil((start_time or 0.0) * fps - 1e-6)
    last = len(images) if end_time is None else min(len(images), math.ceil(end_time * fps - 1e-6))
    if first >= last:
        raise VideoError(f"No images of {folder} fall in the time range [{start_time or 0.0}, "
                         f"{end_time if end_time is not None else 'end'}) s ({len(images)} images at "
                         f"{fps} fps). Fix --start-time / --end-time.")
    size: tuple[int, int] | None = None
    for kept, index in enumerate(range(first, last, stride)):
        if max_frames is not None and kept >= max_frames:
            return
        img = _read_image(images[index])
        if size is None:
            size = img.shape[:2]
        elif img.shape[:2] != size:
            raise VideoError(f"{images[index]} is {img.shape[1]}x{img.shape[0]} but the first image is "
                             f"{size[1]}x{size[0]}. All frames in a folder must have the same size.")
        yield index, _resize(img, max_side)


def clip_from_frames(pairs: Iterable[tuple[int, np.ndarray]], source: Path | None, fps: float) -> Clip:
    """A :class:`Clip` from ``(index, frame)`` pairs (e.g. :func:`iter_frames`), at ``fps``.

    Frames are moved one at a time into the output array and released, so the peak memory
    is about one clip, not two.
    """
    indices: list[int] = []
    frames: list[np.ndarray | None] = []
    for index, frame in pairs:
        indices.append(index)
        frames.append(frame)
    if not frames:
        raise VideoError(f"No frames were read from {source}. Check the file and the frame options.")
    first = frames[0]
    assert first is not None
    out = np.empty((len(frames),) + first.shape, dtype=np.uint8)  # pages are committed on write
    for i in range(len(frames)):
        out[i] = frames[i]
        frames[i] = None
    return Clip(frames=out, fps=fps, source=source, frame_indices=np.asarray(indices, dtype=np.int64))


def read_video(path: PathLike, *, stride: int = 1, max_frames: int | None = None,
               start_time: float | None = None, end_time: float | None = None,
               max_side: int | None = None, memory_limit: int | None = DEFAULT_MEMORY_LIMIT) -> Clip:
    """Decode a video file into a :class:`Clip` (fps divided by ``stride``).

    Refuses (``VideoError``) when the decoded frames would exceed ``memory_limit`` bytes
    (``None``: no limit); the message gives the estimate and a ``--max-side`` that fits.
    """
    _check_options(stride, max_frames, start_time, end_time, max_side)
    path = _check_path(path)
    if path.is_dir():  # a folder of images is a video too; a folder without images raises
        return read_images(path, stride=stride, max_frames=max_frames, start_time=start_time,
                           end_time=end_time, max_side=max_side, memory_limit=memory_limit)
    info = probe_video(path)
    check_memory(info, memory_limit, stride=stride, max_frames=max_frames, start_time=start_time,
                 end_time=end_time, max_side=max_side)
    return clip_from_frames(iter_frames(path, stride=stride, max_frames=max_frames, start_time=start_time,
                                        end_time=end_time, max_side=max_side), path, info.fps / stride)


def read_images(folder: PathLike, *, stride: int = 1, max_frames: int | None = None,
                start_time: float | None = None, end_time: float | None = None,
                max_side: int | None = None, fps: float = DEFAULT_IMAGE_FPS,
                memory_limit: int | None = DEFAULT_MEMORY_LIMIT) -> Clip:
    """Read a folder of images (natural name order) into a :class:`Clip` at ``fps / stride``."""
    _check_options(stride, max_frames, start_time, end_time, max_side)
    folder = _check_path(folder)
    info = probe_video(folder)
    info = VideoInfo(**{**info.__dict__, "fps": fps, "duration": info.num_frames / fps})
    check_memory(info, memory_limit, stride=stride, max_frames=max_frames, start_time=start_time,
                 end_time=end_time, max_side=max_side)
    return clip_from_frames(iter_images(folder, stride=stride, max_frames=max_frames, start_time=start_time,
                                        end_time=end_time, max_side=max_side, fps=fps), folder, fps / stride)


def load_clip(path: PathLike, **opts) -> Clip:
    """A :class:`Clip` from a video file (:func:`read_video`) or a folder of images (:func:`read_images`)."""
    path = _check_path(path)
    if path.is_dir():
        return read_images(path, **opts)
    opts.pop("fps", None)
    return read_video(path, **opts)
