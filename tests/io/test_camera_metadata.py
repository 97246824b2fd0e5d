"""Focal-length priors from EXIF and video metadata (io.camera_metadata)."""

from __future__ import annotations

import math

import av
import numpy as np
import pytest
from PIL import Image

from cotracker3_plugin.io.camera_metadata import exif_focal, focal_from_35mm, focal_prior

EXIF_IFD, F35, F_MM, XRES, UNIT, ORIENTATION = 0x8769, 0xA405, 0x920A, 0xA20E, 0xA210, 0x0112


def _jpeg(path, size_hw=(300, 400), **tags):
    exif = Image.Exif()
    ifd = exif.get_ifd(EXIF_IFD)
    for tag, value in tags.items():
        if tag == "orientation":
            exif[ORIENTATION] = value
        else:
            ifd[{"f35": F35, "f_mm": F_MM, "xres": XRES, "unit": UNIT}[tag]] = value
    Image.fromarray(np.full((*size_hw, 3), 90, np.uint8)).save(path, exif=exif)
    return path


def test_35mm_equivalent_matches_a_full_frame_diagonal():
    # 50 mm on a full frame (36 x 24 mm) sampled at 3600 x 2400 px: 100 px per mm.
    assert focal_from_35mm(50, 3600, 2400) == pytest.approx(5000)
    assert focal_from_35mm(26, 1920, 1080) == pytest.approx(26 / math.hypot(36, 24) * math.hypot(1920, 1080))


def test_exif_35mm_tag_scaled_to_the_frames_and_orientation_invariant(tmp_path):
    p = _jpeg(tmp_path / "a.jpg", f35=32, orientation=6)  # stored landscape, shown portrait
    prior = exif_focal(p, (200, 150))  # frames downscaled by 2 and rotated
    assert prior.focal == pytest.approx(32 / math.hypot(36, 24) * 250)
    assert "FocalLengthIn35mmFilm 32 mm" in prior.source


def test_exif_focal_length_with_focal_plane_resolution(tmp_path):
    # 4.25 mm at 1000 px per cm of sensor = 425 px at the stored 400 px width; frames at half size.
    p = _jpeg(tmp_path / "b.jpg", f_mm=4.25, xres=1000.0, unit=3)
    assert exif_focal(p, (150, 200)).focal == pytest.approx(212.5)


def test_no_usable_tag_gives_none(tmp_path):
    assert exif_focal(_jpeg(tmp_path / "c.jpg"), (300, 400)) is None
    assert exif_focal(_jpeg(tmp_path / "d.jpg", f_mm=4.25), (300, 400)) is None  # sensor size unknown
    (tmp_path / "e.jpg").write_bytes(b"not a jpeg")
    assert exif_focal(tmp_path / "e.jpg", (300, 400)) is None


def test_image_folder_uses_its_first_image(tmp_path):
    _jpeg(tmp_path / "img_2.jpg", f35=24)
    _jpeg(tmp_path / "img_10.jpg", f35=50)
    assert "24 mm (img_2.jpg)" in focal_prior(tmp_path, (300, 400)).source
    assert focal_prior(None, (300, 400)) is None and focal_prior(tmp_path / "missing", (300, 400)) is None


def _mp4(path, metadata: dict[str, str]):
    with av.open(str(path), "w", options={"movflags": "use_metadata_tags"}) as c:
        c.metadata.update(metadata)
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for _ in range(2):
            for pkt in s.encode(av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


def test_phone_video_35mm_key(tmp_path):
    p = _mp4(tmp_path / "phone.mp4", {"com.apple.quicktime.camera.focal_length.35mm_equivalent": "26"})
    prior = focal_prior(p, (480, 640))
    assert prior.focal == pytest.approx(focal_from_35mm(26, 640, 480)) and "35mm_equivalent 26 mm" in prior.source
    assert focal_prior(_mp4(tmp_path / "plain.mp4", {}), (480, 640)) is None
