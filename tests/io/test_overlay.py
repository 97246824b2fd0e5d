"""Overlay rendering and mp4 encoding."""

from __future__ import annotations

import numpy as np
import pytest

from cotracker3_plugin.io import (
    Clip,
    draw_tracks,
    probe_video,
    query_colors,
    read_video,
    render_overlay,
    write_overlay,
    write_video,
)
from cotracker3_plugin.tracks import Tracks


def test_query_colors_follow_position():
    q = np.array([[0, 0, 0], [0, 99, 0], [0, 0, 49], [5, 0, 0]], np.float32)
    c = query_colors(q, (50, 100))
    assert c.dtype == np.uint8 and c.shape == (4, 3)
    # top-left: hue 0 (red), pale (saturation 110/255) -> (255, 145, 145)
    np.testing.assert_array_equal(c[0], [255, 145, 145])
    np.testing.assert_array_equal(c[0], c[3])  # colour depends on position, not on time
    assert c[1][2] > c[1][0]  # the right edge is violet/blue, not red
    assert c[2].min() < c[0].min()  # lower rows are more saturated


def test_draw_visible_filled_occluded_hollow():
    frame = np.zeros((40, 60, 3), np.uint8)
    xy = np.array([[15.0, 20.0], [45.0, 20.0], [np.nan, 5.0]], np.float32)
    colors = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    out = draw_tracks(frame, xy, np.array([True, False, True]), colors, radius=4)
    assert frame.max() == 0  # input untouched
    np.testing.assert_array_equal(out[20, 15], [255, 0, 0])  # filled disc centre
    assert out[20, 45].max() == 0  # hollow: the centre stays background
    assert out[20, 41, 1] > 100 and out[16, 45, 1] > 100  # ... and the ring is green
    assert out[..., 2].max() == 0  # NaN point not drawn


def test_trail_and_rescale():
    frames = np.zeros((3, 40, 60, 3), np.uint8)
    # a point moving right by 10 px per frame (x = 10, 20, 30 on row 20 of the 60x40 clip),
    # given in tracks of a 119x79 frame: corner-aligned scale exactly 1/2
    xy = np.array([[[20.0, 40.0]], [[40.0, 40.0]], [[60.0, 40.0]]], np.float32)
    t = Tracks(xy=xy, visible=np.ones((3, 1), bool), confidence=np.ones((3, 1)),
               queries=np.array([[0, 20.0, 40.0]]), frame_size=(79, 119))
    out = list(render_overlay(Clip(frames), t, trail=2, radius=2))
    assert len(out) == 3
    last = out[2]
    # the disc at frame 2 sits at x = 30, the trail runs back through x = 20 to x = 10
    assert last[20, 30].max() > 200
    assert last[20, 12].max() > 60 and last[20, 24].max() > 60
    assert last[20, 8].max() < 250 and last[20, 5].max() == 0
    assert out[0][20, 16].max() == 0  # no trail on the first frame
    with pytest.raises(ValueError, match="frames"):
        list(render_overlay(Clip(frames[:2]), t))


def test_write_overlay_decodes(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (12, 45, 61, 3), dtype=np.uint8)  # odd sizes
    t = Tracks(xy=rng.uniform(0, 40, (12, 5, 2)), visible=rng.random((12, 5)) > 0.5,
               confidence=rng.random((12, 5)), queries=np.zeros((5, 3)), frame_size=(45, 61))
    out = write_overlay(tmp_path / "o.mp4", Clip(frames, fps=12.5), t)
    info = probe_video(out)
    assert (info.num_frames, info.fps, info.size, info.codec, info.pix_fmt) == (
        12, 12.5, (46, 62), "h264", "yuv420p")
    assert len(read_video(out)) == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.mp4"]  # no temp files left


def test_write_video_is_atomic(tmp_path):
    def frames():
        yield np.zeros((16, 16, 3), np.uint8)
        yield np.zeros((20, 16, 3), np.uint8)  # wrong size -> error mid-way

    with pytest.raises(ValueError, match="differs"):
        write_video(tmp_path / "bad.mp4", frames(), 10)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="at least one frame"):
        write_video(tmp_path / "empty.mp4", iter([]), 10)
