"""Focal length from the metadata a camera wrote: EXIF of photos, QuickTime keys of phone videos.

A prior for the mapper, as COLMAP's image reader takes EXIF: a good starting focal length helps
videos with little parallax, where the focal length is barely observable. Nothing is guessed
from the camera make: without a usable tag the caller keeps its default.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# EXIF tags (Exif sub-IFD)
_EXIF_IFD = 0x8769
_FOCAL_LENGTH = 0x920A
_FOCAL_35MM = 0xA405
_FOCAL_PLANE_X_RES = 0xA20E
_FOCAL_PLANE_UNIT = 0xA210
_UNIT_MM = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}  # inch, cm, mm, micrometre
# A full-frame (36 x 24 mm) diagonal: "35 mm equivalent" focal lengths match fields of view by diagonal.
_FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)


@dataclass(frozen=True)
class FocalPrior:
    focal: float
    """Focal length in pixels of the frames the caller uses (after any downscaling)."""
    source: str
    """Where it came from, for reports (e.g. ``EXIF FocalLengthIn35mmFilm 26 mm (IMG_0001.jpg)``)."""


def focal_from_35mm(f35: float, width: int, height: int) -> float:
    """Pixels of a ``width`` x ``height`` frame whose diagonal field of view is a full frame's at ``f35`` mm."""
    return f35 / _FULL_FRAME_DIAGONAL_MM * math.hypot(width, height)


def _ratio(v) -> float:
    return float(v[0]) / float(v[1]) if isinstance(v, tuple) else float(v)


def exif_focal(path: Path, frame_size: tuple[int, int]) -> FocalPrior | None:
    """Focal length of the photo ``path`` for frames of ``frame_size`` (H, W), from its EXIF."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            stored_w, stored_h = im.size
            exif = im.getexif().get_ifd(_EXIF_IFD)
    except OSError:
        return None
    h, w = frame_size
    # Frames may be downscaled and rotated by the EXIF orientation: scale by the long side.
    scale = max(h, w) / max(stored_w, stored_h)
    try:
        f35 = _ratio(exif[_FOCAL_35MM]) if _FOCAL_35MM in exif else 0.0
        if f35 > 0:
            return FocalPrior(focal_from_35mm(f35, w, h), f"EXIF FocalLengthIn35mmFilm {f35:g} mm ({path.name})")
        f_mm = _ratio(exif.get(_FOCAL_LENGTH, 0))
        xres = _ratio(exif.get(_FOCAL_PLANE_X_RES, 0))
        unit = _UNIT_MM.get(int(exif.get(_FOCAL_PLANE_UNIT, 2)))
    except (ValueError, ZeroDivisionError, TypeError):
        return None
    if f_mm > 0 and xres > 0 and unit:
        # FocalPlaneXResolution: pixels of the stored image per unit of sensor width.
        return FocalPrior(f_mm * xres / unit * scale,
                          f"EXIF FocalLength {f_mm:g} mm x FocalPlaneXResolution ({path.name})")
    return None


def video_focal(metadata: dict[str, str], frame_size: tuple[int, int]) -> FocalPrior | None:
    """Focal length from container metadata: Apple's ``...camera.focal_length.35mm_equivalent`` key."""
    for key, value in metadata.items():
        k = key.lower()
        if "focal_length" in k and "35mm" in k:
            try:
                f35 = float(str(value).strip().split()[0])
            except (ValueError, IndexError):
                continue
            if f35 > 0:
                h, w = frame_size
                return FocalPrior(focal_from_35mm(f35, w, h), f"video metadata {key} {f35:g} mm")
    return None


def focal_prior(source: Path | None, frame_size: tuple[int, int]) -> FocalPrior | None:
    """The metadata focal length of a clip's source (image folder: its first image; video: container
    and stream metadata) for frames of ``frame_size`` (H, W), or None."""
    if source is None or not Path(source).exists():
        return None
    source = Path(source)
    if source.is_dir():
        from cotracker3_plugin.io.video import list_images

        images = list_images(source)
        return exif_focal(images[0], frame_size) if images else None
    try:
        import av

        with av.open(str(source)) as container:
            meta = dict(container.metadata)
            if container.streams.video:
                meta.update(container.streams.video[0].metadata)
    except (OSError, av.FFmpegError):  # type: ignore[attr-defined]
        return None
    return video_focal(meta, frame_size)
