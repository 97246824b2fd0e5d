"""Video / image-folder decoding: rotation, pixel formats, frame options, seeking, errors."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from cotracker3_plugin.errors import UserError, VideoError
from cotracker3_plugin.io import (
    Clip,
    estimate_memory,
    iter_frames,
    load_clip,
    probe_video,
    read_images,
    read_video,
    resized_size,
)


def test_probe_and_read(make_video, frame_no):
    path = make_video("basic.mp4", num=20, fps=10)
    info = probe_video(path)
    assert (info.num_frames, info.fps, info.size, info.rotation) == (20, 10.0, (48, 64), 0)
    assert (info.codec, info.pix_fmt, info.frames_exact) == ("h264", "yuv420p", True)
    assert info.duration == pytest.approx(2.0, abs=0.11)
    clip = read_video(path)
    assert isinstance(clip, Clip)
    assert clip.frames.shape == (20, 48, 64, 3) and clip.frames.dtype == np.uint8
    assert clip.fps == 10.0 and clip.source == path
    np.testing.assert_array_equal(clip.frame_indices, np.arange(20))
    assert [frame_no(f) for f in clip.frames] == list(range(20))
    # the marker is white and the background stays at 60 (H.264 at crf 12: a few levels of error)
    assert clip.frames[:, 1:7, 1:7].min() > 235
    assert abs(float(clip.frames[:, 20:40, 12:28].mean()) - 60) < 3


@pytest.mark.parametrize("rotation,k", [(90, 1), (180, 2), (-90, 3), (270, 3)])
def test_rotation_tag_is_applied(pattern_frames, make_video, rotation, k):
    frames = pattern_frames(3)
    path = make_video(f"rot{rotation}.mp4", frames=frames, rotation=rotation)
    info = probe_video(path)
    assert info.rotation == (rotation % 360)
    expected = np.rot90(frames[0], k=k)  # display = coded frame turned counter-clockwise
    assert info.size == expected.shape[:2]
    clip = read_video(path)
    assert clip.frames.shape[1:3] == expected.shape[:2]
    # the white marker sits where the rotation puts it, and nowhere else
    ys, xs = np.nonzero(expected[..., 0] == 255)
    got = clip.frames[0]
    assert got[ys, xs].min() > 230
    mask = np.ones(expected.shape[:2], bool)
    mask[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1] = False
    assert got[mask].max() < 200
    assert np.abs(got.astype(int) - expected).mean() < 2.0


def test_rotation_90_marker_position(make_video):
    # Spelled out once: a 64x48 (WxH) frame tagged 90 is shown 48x64 with the top-left marker
    # now at the bottom-left (counter-clockwise turn).
    clip = read_video(make_video("r90.mp4", num=2, rotation=90))
    assert clip.frames.shape == (2, 64, 48, 3)
    assert clip.frames[0, 60, 3].min() > 230  # bottom-left
    assert clip.frames[0, 3, 3].max() < 200  # top-left is no longer the marker


@pytest.mark.parametrize("name,codec,pix_fmt", [
    ("p10.mp4", "libx264", "yuv420p10le"),
    ("p444.mp4", "libx264", "yuv444p"),
    ("gray.mkv", "ffv1", "gray"),
    ("bgr0.mkv", "ffv1", "bgr0"),
    ("rgba.mov", "png", "rgba"),
])
def test_pixel_formats_convert_to_rgb(pattern_frames, make_video, frame_no, name, codec, pix_fmt):
    frames = pattern_frames(6)
    if pix_fmt == "rgba":
        alpha = np.full(frames.shape[:3] + (1,), 255, np.uint8)
        path = make_video(name, frames=np.concatenate([frames, alpha], -1), codec=codec,
                          pix_fmt=pix_fmt, in_format="rgba")
    else:
        path = make_video(name, frames=frames, codec=codec, pix_fmt=pix_fmt)
    assert probe_video(path).pix_fmt == pix_fmt
    clip = read_video(path)
    assert clip.frames.shape == (6, 48, 64, 3) and clip.frames.dtype == np.uint8
    assert [frame_no(f) for f in clip.frames] == list(range(6))
    assert np.abs(clip.frames.astype(int) - frames).mean() < 2.0


def test_stride_and_max_frames(make_video, frame_no):
    path = make_video("s.mp4", num=20, fps=10)
    clip = read_video(path, stride=3)
    np.testing.assert_array_equal(clip.frame_indices, [0, 3, 6, 9, 12, 15, 18])
    assert [frame_no(f) for f in clip.frames] == [0, 3, 6, 9, 12, 15, 18]
    assert clip.fps == pytest.approx(10 / 3)
    assert len(read_video(path, max_frames=4)) == 4
    clip = read_video(path, stride=2, max_frames=3)
    np.testing.assert_array_equal(clip.frame_indices, [0, 2, 4])


def test_time_range_equals_full_decode_sliced(make_video):
    # keyframes every 10 frames: the seek lands on frame 20 and must decode forward to 24
    path = make_video("seek.mp4", num=60, fps=10, gop=10)
    full = read_video(path)
    part = read_video(path, start_time=2.35, end_time=4.0)
    np.testing.assert_array_equal(part.frame_indices, np.arange(24, 40))
    np.testing.assert_array_equal(part.frames, full.frames[24:40])
    part = read_video(path, start_time=3.0, stride=4, max_frames=5)
    np.testing.assert_array_equal(part.frame_indices, [30, 34, 38, 42, 46])
    np.testing.assert_array_equal(part.frames, full.frames[30:50:4])
    np.testing.assert_array_equal(read_video(path, end_time=0.5).frame_indices, np.arange(5))
    with pytest.raises(VideoError, match="time range"):
        read_video(path, start_time=60.0)


def test_iter_frames_streams(make_video):
    gen = iter_frames(make_video("it.mp4", num=20), max_side=32)
    index, frame = next(gen)
    assert index == 0 and frame.shape == (24, 32, 3) and frame.dtype == np.uint8
    gen.close()  # stopping early closes the file without decoding the rest


def test_max_side_uses_inter_area(make_video):
    path = make_video("big.mp4", num=3)
    full = read_video(path)
    small = read_video(path, max_side=32)
    assert small.frames.shape == (3, 24, 32, 3)
    np.testing.assert_array_equal(small.frames[1], cv2.resize(full.frames[1], (32, 24),
                                                              interpolation=cv2.INTER_AREA))
    assert read_video(path, max_side=200).frames.shape == (3, 48, 64, 3)  # never enlarges
    assert resized_size(1080, 1920, 960) == (540, 960)
    assert resized_size(1920, 1080, 960) == (960, 540)


def test_image_folder(pattern_frames, tmp_path, frame_no):
    frames = pattern_frames(11)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, f in enumerate(frames):  # f1 ... f11: natural order, not f1, f10, f11, f2
        cv2.imwrite(str(folder / f"f{i + 1}.png"), f[..., ::-1])
    (folder / "notes.txt").write_text("ignored")
    clip = load_clip(folder)
    assert clip.frames.shape == (11, 48, 64, 3) and clip.source == folder
    np.testing.assert_array_equal(clip.frames, frames)
    clip = read_images(folder, stride=2, max_side=32, fps=24.0)
    assert [frame_no(f) for f in clip.frames] == [0, 2, 4, 6, 8, 10]
    assert clip.fps == 12.0 and clip.frames.shape[1:3] == (24, 32)
    assert probe_video(folder).num_frames == 11
    np.testing.assert_array_equal(read_images(folder, start_time=0.1, end_time=0.2, fps=30).frame_indices,
                                  [3, 4, 5])
    assert [i for i, _ in iter_frames(folder, max_frames=2)] == [0, 1]
    cv2.imwrite(str(folder / "f12.png"), np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(VideoError, match="same size"):
        load_clip(folder)


def _message(exc_info) -> str:
    return str(exc_info.value)


def test_error_missing_file(tmp_path):
    with pytest.raises(VideoError) as e:
        load_clip(tmp_path / "nope.mp4")
    assert "does not exist" in _message(e) and "nope.mp4" in _message(e)
    assert issubclass(VideoError, UserError)


def test_error_folders(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VideoError, match="is empty"):
        load_clip(empty)
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.txt").write_text("x")
    with pytest.raises(VideoError, match="folder without images"):
        read_video(other)


def test_error_not_a_video(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    with pytest.raises(VideoError) as e:
        probe_video(text)
    assert "not a readable video" in _message(e) and "re-export" in _message(e)
    with pytest.raises(VideoError, match="not a readable video"):
        read_video(text)


def test_error_zero_frames(tmp_path):
    import av

    path = tmp_path / "zero.mp4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    with pytest.raises(VideoError, match="no video frames"):
        read_video(path)


def test_truncated_file_keeps_decoded_frames(pattern_frames, make_video, tmp_path, caplog):
    # mkv is streamable: a truncated copy still decodes its first frames -> warning, frames kept
    full = make_video("full.mkv", frames=pattern_frames(40, 96, 128), gop=5)
    cut = tmp_path / "cut.mkv"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="cotracker3_plugin.io.video"):
        clip = read_video(cut)
    assert 5 <= len(clip) < 40
    assert "truncated" in caplog.text
    np.testing.assert_array_equal(clip.frames, read_video(full).frames[: len(clip)])
    # mp4 keeps its index at the end: cut in half, nothing can be decoded -> error
    mp4 = make_video("full.mp4", num=20)
    bad = tmp_path / "cut.mp4"
    bad.write_bytes(mp4.read_bytes()[: mp4.stat().st_size // 2])
    with pytest.raises(VideoError, match="corrupt, truncated"):
        read_video(bad)


def test_memory_guard(make_video):
    path = make_video("m.mp4", num=20)
    info = probe_video(path)
    assert estimate_memory(info) == 20 * 48 * 64 * 3
    assert estimate_memory(info, stride=3, max_side=32) == 7 * 24 * 32 * 3
    assert estimate_memory(info, start_time=1.0, max_frames=4) == 4 * 48 * 64 * 3
    with pytest.raises(VideoError) as e:
        read_video(path, memory_limit=100_000)
    msg = _message(e)
    assert "would need about 180.0 KiB" in msg and "--max-side" in msg and "--max-frames" in msg
    side = int(msg.split("--max-side ")[1].split()[0])
    assert len(read_video(path, memory_limit=100_000, max_side=side)) == 20  # the suggestion fits
    assert len(read_video(path, memory_limit=None)) == 20


def test_bad_options(make_video):
    path = make_video("o.mp4", num=3)
    for kw, pattern in [({"stride": 0}, "stride"), ({"max_frames": 0}, "max_frames"),
                        ({"start_time": 2.0, "end_time": 1.0}, "end_time"), ({"max_side": 3}, "max_side")]:
        with pytest.raises(VideoError, match=pattern):
            read_video(path, **kw)


def test_real_video(data_dir: Path):
    info = probe_video(data_dir / "videos" / "cat.mp4")
    assert (info.num_frames, info.fps, info.size) == (87, 20.0, (480, 368))
    clip = read_video(data_dir / "videos" / "cat.mp4", stride=10, max_side=240)
    assert clip.frames.shape == (9, 240, 184, 3) and clip.fps == 2.0
