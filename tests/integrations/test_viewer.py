"""The viser viewer without a browser: geometry, drawing, viewer state, picking, export, loading, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("viser")

from cotracker3_viser import _compat  # noqa: E402
from cotracker3_viser.drawing import OverlayDrawer, stamp, stamp_segments  # noqa: E402
from cotracker3_viser.geometry import (  # noqa: E402
    lift_to_depth,
    pick_nearest_to_ray,
    ray_plane_hit,
    scene_extent,
    vertical_fov,
    wxyz_from_matrix,
)
from cotracker3_viser.moving import MOVING_COLOR, style_tracks  # noqa: E402
from cotracker3_viser.server import headless_viewer  # noqa: E402
from cotracker3_viser.synthetic import make_synthetic  # noqa: E402
from cotracker3_viser.viewer import ViewerConfig, check_inputs  # noqa: E402

from cotracker3_plugin.errors import UserError  # noqa: E402
from cotracker3_plugin.io.clip import Clip  # noqa: E402


@pytest.fixture(scope="module")
def data():
    return make_synthetic(num_points=120, num_frames=12, size=(60, 80), seed=1)


# ------------------------------------------------------------------ geometry
def test_wxyz_from_matrix_known_rotations():
    c = np.cos(np.pi / 4)
    rz90 = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    np.testing.assert_allclose(wxyz_from_matrix(rz90), [c, 0, 0, c], atol=1e-12)
    rx180 = np.diag([1.0, -1, -1])
    np.testing.assert_allclose(wxyz_from_matrix(rx180), [0, 1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(wxyz_from_matrix(np.eye(3)), [1, 0, 0, 0], atol=1e-12)


def test_vertical_fov_and_extent():
    K = np.array([[50.0, 0, 40], [0, 50.0, 30], [0, 0, 1]])
    assert vertical_fov(K, 100) == pytest.approx(2 * np.arctan(1.0))
    pts = np.stack(np.meshgrid(np.linspace(0, 1, 21), np.linspace(0, 1, 21), [0.0]), -1).reshape(-1, 3)
    assert scene_extent(pts, np.zeros((0, 3))) == pytest.approx(np.sqrt(2) * 0.9, rel=0.02)
    assert scene_extent(np.zeros((0, 3)), np.zeros((0, 3))) == 1.0


def test_lift_static_point_returns_the_point_and_moving_point_moves(data):
    clip, tracks, scene = data
    f, n = 5, 3
    X = scene.points[[n]]
    m = scene.world_from_cam[f]
    cam = (X - m[:3, 3]) @ m[:3, :3]
    K = scene.K(f)
    xy = cam[:, :2] / cam[:, 2:] * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]]
    np.testing.assert_allclose(lift_to_depth(xy, X, m, K), X, atol=1e-9)
    # 10 px to the right at the same depth lies 10 * z / fx along the camera's x axis.
    moved = lift_to_depth(xy + [10.0, 0.0], X, m, K)
    np.testing.assert_allclose(moved - X, (10 * cam[0, 2] / K[0, 0]) * m[:3, 0][None], atol=1e-9)


def test_pick_nearest_to_ray_and_plane_hit():
    pts = np.array([[0.0, 0, 5], [1, 0, 5], [0, 0, -5]])
    assert pick_nearest_to_ray(pts, np.zeros(3), np.array([0.0, 0, 1])) == 0
    assert pick_nearest_to_ray(pts, np.zeros(3), np.array([1.0, 0, 5])) == 1
    assert pick_nearest_to_ray(pts, np.zeros(3), np.array([0.0, 1, 0])) == -1  # nothing within 0.02 rad
    assert pick_nearest_to_ray(pts[2:], np.zeros(3), np.array([0.0, 0, 1])) == -1  # behind
    hit = ray_plane_hit(np.array([0.0, 0, 2]), np.array([0.5, 0, -1]), np.zeros(3), np.array([0.0, 0, 1]))
    np.testing.assert_allclose(hit, [1.0, 0, 0])
    assert ray_plane_hit(np.array([0.0, 0, 2]), np.array([0.0, 0, 1]), np.zeros(3), np.array([0.0, 0, 1])) is None


# ------------------------------------------------------------------- drawing
def test_stamp_and_segments_write_exact_pixels():
    img = np.zeros((10, 12, 3), np.uint8)
    stamp(img, np.array([[1.0, 1.0], [11.0, 9.0]]), np.array([[255, 0, 0], [0, 255, 0]], np.uint8),
          np.array([[0, 0], [1, 0], [-1, 0]]))
    assert (img[1, 0:3] == [255, 0, 0]).all() and (img[9, 10:12] == [0, 255, 0]).all()
    assert img.sum() == 255 * 5  # the off-image pixel of the border stamp is dropped
    img[:] = 0
    stamp_segments(img, np.array([[0.0, 5.0]]), np.array([[11.0, 5.0]]), np.array([[9, 9, 9]], np.uint8))
    assert (img[5, :, 0] == 9).all() and img[[0, 4, 6, 9]].sum() == 0


def test_overlay_filled_hollow_trail_and_hidden():
    from cotracker3_plugin.tracks import Tracks

    xy = np.array([[[20.0, 20.0], [60.0, 20.0], [40.0, 40.0]], [[30.0, 20.0], [60.0, 20.0], [40.0, 40.0]]])
    visible = np.array([[True, False, True], [True, False, True]])
    tr = Tracks(xy=xy, visible=visible, confidence=visible.astype(np.float32),
                queries=np.c_[np.zeros(3), xy[0]], frame_size=(60, 80))
    drawer = OverlayDrawer(tr)
    black = np.zeros((60, 80, 3), np.uint8)
    out = drawer.draw(black, 1, visible=visible, shown=np.array([True, True, False]), trail=1, radius=3)
    col0, col1 = drawer.colors[0], drawer.colors[1]
    assert (out[20, 30] == col0).all()  # visible: filled centre
    assert (out[20, 25] == col0).all()  # trail from x=20 to x=30
    assert (out[20, 60] == 0).all() and (out[20, 63] == col1).all()  # occluded: hollow ring
    assert out[35:46, 35:46].sum() == 0  # hidden track not drawn
    assert black.sum() == 0  # input untouched


def test_style_tracks_show_colour_hide_moving():
    from cotracker3_plugin.tracks import Tracks

    xy = np.array([[[20.0, 20.0], [60.0, 20.0], [40.0, 40.0]], [[30.0, 20.0], [60.0, 20.0], [40.0, 40.0]]])
    visible = np.ones((2, 3), bool)
    moving = np.array([True, False, False])
    tr = Tracks(xy=xy, visible=visible, confidence=visible.astype(np.float32),
                queries=np.c_[np.zeros(3), xy[0]], frame_size=(60, 80), dynamic=moving)
    drawer = OverlayDrawer(tr)
    black = np.zeros((60, 80, 3), np.uint8)
    everything = np.ones(3, bool)
    plain = drawer.draw(black, 1, visible=visible, shown=everything, trail=1, radius=3)

    def draw(mode, flags=moving):
        shown, colors = style_tracks(mode, flags, everything, drawer.colors)
        return drawer.draw(black, 1, visible=visible, shown=shown, colors=colors, trail=1, radius=3)

    np.testing.assert_array_equal(draw("show"), plain)
    for mode in ("show", "colour", "hide"):  # no flags: as today
        np.testing.assert_array_equal(draw(mode, None), plain)
    hidden = draw("hide")
    assert hidden[15:26, 15:36].sum() == 0  # the moving track and its trail are gone
    np.testing.assert_array_equal(hidden[:, 50:], plain[:, 50:])  # the static ones stay
    coloured = draw("colour")
    assert (coloured[20, 30] == MOVING_COLOR).all() and (coloured[20, 25] == MOVING_COLOR).all()
    assert (coloured[40, 40] == drawer.colors[2]).all()
    np.testing.assert_array_equal(coloured[:, 50:], plain[:, 50:])
    with pytest.raises(ValueError, match="moving mode"):
        style_tracks("color", moving, everything, drawer.colors)


# -------------------------------------------------------------------- viewer
def test_viewer_frames_trails_filter_and_click(data):
    clip, tracks, scene = data
    cfg = ViewerConfig(image_width=80, trail_length=4)
    with headless_viewer(clip, tracks, scene, cfg) as v:
        assert v.frame == 0
        v.set_frame(7)
        assert v.frame == 7 and int(v.frame_slider.value) == 7
        assert "Frame **7** / 11" in v.status.content
        if v.gui_image is not None:
            np.testing.assert_array_equal(v.gui_image.image, v.frame_overlay(7))
        # Trails: moving sphere points draw segments that follow their 2D motion in 3D.
        lifted, ok = v.lifted_trails(7, 4, v.trail_points)
        assert lifted.shape == (5, len(v.trail_points), 3) and ok.any()
        ground = scene.points[v.trail_points][:, 2] < -0.99  # static points: trail collapses to the point
        spread = np.nanmax(np.linalg.norm(lifted - scene.points[v.trail_points][None], axis=-1), axis=0)
        assert np.nanmax(spread[ground & ok.all(0)]) < 1e-6
        assert np.nanmax(spread[~ground & ok.all(0)]) > 0.05
        if _compat.HAS_LINE_SEGMENTS:
            segs = np.asarray(v.trails_node.points)
            assert segs.ndim == 3 and segs.shape[1:] == (2, 3) and len(segs) > 0
        # Track-confidence filter hides the points of weak tracks (every 7th track has half confidence).
        n_all = len(np.asarray(v.points_node.points)) if _compat.has_prop(v.points_node, "points") else None
        v.min_conf.value = 0.4
        if n_all is not None:
            assert len(np.asarray(v.points_node.points)) == int((v.track_score >= 0.4).sum()) < n_all
        v.min_conf.value = 0.0
        # Click along the ray from camera 7 through point 4: selects track 4.
        m = scene.world_from_cam[7]
        v._on_click(m[:3, 3], scene.points[4] - m[:3, 3], None)
        assert v.selected == 4 and int(v.track_id.value) == 4
        assert "Track 4" in v.selection_info.content
        v._on_click(m[:3, 3], -m[:3, 2], None)  # looking away: nothing hit, selection kept
        assert v.selected == 4
        v.select_track(-1)
        assert v.selected == -1


def _moving_flags(tracks):
    return np.arange(tracks.num_points) < tracks.num_points * 2 // 3  # the spinning sphere of make_synthetic


def _set_mode(v, mode):
    v.moving_mode.value = mode
    v._on_point_style()  # viser 0.2.7 runs the GUI callback later, on a pool thread


def test_viewer_moving_tracks_show_colour_hide(data):
    import dataclasses

    clip, tracks, scene = data
    moving = _moving_flags(tracks)
    flagged = dataclasses.replace(tracks, dynamic=moving)
    cfg = ViewerConfig(image_width=80, trail_length=4)
    t = 6

    def magenta(img):
        return int((img == MOVING_COLOR).all(-1).sum())

    with headless_viewer(clip, tracks, scene, cfg) as plain:  # no flags: as today, no control
        assert plain.moving is None and not plain.moving_mode.visible and plain.moving_mode.disabled
        before = plain.frame_overlay(t)
        n_points = len(np.asarray(plain.points_node.points)) if _compat.has_prop(plain.points_node, "points") else None
        _set_mode(plain, "hide")
        np.testing.assert_array_equal(plain.frame_overlay(t), before)
        assert "moving" not in plain.status.content
    with headless_viewer(clip, flagged, scene, cfg) as v:
        assert v.moving_mode.visible and v.moving_mode.value == "colour"  # the default with flags
        assert f"{int(moving.sum())} moving" in v.status.content
        coloured = v.frame_overlay(t)
        colors = v.drawer.colors.copy()
        colors[moving] = MOVING_COLOR
        np.testing.assert_array_equal(coloured, v.drawer.draw(
            v.clip.frames[t], t, visible=v._visible, shown=np.ones(len(moving), bool), colors=colors, trail=4))
        assert magenta(coloured) > 0 and magenta(before) == 0
        if _compat.has_prop(v.points_node, "colors"):
            cols = np.asarray(v.points_node.colors)
            assert (cols[moving] == MOVING_COLOR).all() and not (cols[~moving] == MOVING_COLOR).all(-1).any()

        _set_mode(v, "show")
        np.testing.assert_array_equal(v.frame_overlay(t), before)

        _set_mode(v, "hide")
        hidden = v.frame_overlay(t)
        static = flagged.subset(points=~moving)  # what the frame shows when only static tracks exist
        ref = OverlayDrawer(static).draw(v.clip.frames[t], t, visible=static.confidence > cfg.visibility_threshold,
                                         shown=np.ones(len(static), bool), trail=4)
        np.testing.assert_array_equal(hidden, ref)
        assert magenta(hidden) == 0 and not np.array_equal(hidden, before)
        assert f"of {int((~moving).sum())} tracks visible" in v.status.content
        if n_points is not None:
            assert len(np.asarray(v.points_node.points)) == int((~moving).sum()) < n_points
        if _compat.HAS_LINE_SEGMENTS:  # static points' 3D trails collapse to dots; the sphere's are gone
            v.render(t)
            segs = np.asarray(v.trails_node.points)
            assert len(segs) > 0 and np.linalg.norm(segs[:, 0] - segs[:, 1], axis=-1).max() < 1e-5
        # A click on a hidden moving point selects nothing.
        m = scene.world_from_cam[t]
        v._on_click(m[:3, 3], scene.points[0] - m[:3, 3], None)
        assert v.selected < 0 or not moving[v.selected]
    with pytest.raises(ValueError, match="moving mode"), headless_viewer(
            clip, flagged, None, ViewerConfig(image_width=80, moving="color")):  # type: ignore[arg-type]
        pass


def test_viewer_tints_moving_pixels_behind_a_checkbox(data):
    import dataclasses

    clip, tracks, scene = data
    masks = np.zeros((scene.num_frames, *scene.image_size), bool)
    masks[:, :, :40] = True  # the left half of every frame
    with headless_viewer(clip, tracks, dataclasses.replace(scene, moving_masks=masks),
                         ViewerConfig(image_width=80)) as v:
        v.show_tracks2d.value = False
        assert v.show_moving_pixels.visible and not v.show_moving_pixels.value  # off by default
        np.testing.assert_array_equal(v.frame_overlay(3), clip.frames[3])
        v.show_moving_pixels.value = True
        out = v.frame_overlay(3).astype(int)
        np.testing.assert_array_equal(out[:, 40:], clip.frames[3][:, 40:])
        assert (out[:, :40, 0] > clip.frames[3][:, :40, 0]).all()  # pulled towards magenta
        assert (out[:, :40, 1] <= clip.frames[3][:, :40, 1]).all()
    with headless_viewer(clip, tracks, scene, ViewerConfig(image_width=80)) as v:
        assert not v.show_moving_pixels.visible

    import time

    clip, tracks, _ = data
    with headless_viewer(clip, tracks, None, ViewerConfig(image_width=80, fps=50.0)) as v:
        v.set_frame(clip.num_frames - 2)
        v.playing.value = True
        deadline = time.monotonic() + 10
        while v.frame != 1 and time.monotonic() < deadline:  # ..., T-1, 0, 1: wrapped around
            time.sleep(0.01)
        v.playing.value = False
        assert v.frame in (1, 2, 3)
        time.sleep(0.3)
        stopped = v.frame
        time.sleep(0.3)
        assert v.frame == stopped


def test_viewer_without_scene_click_on_image_plane(data):
    clip, tracks, _ = data
    with headless_viewer(clip, tracks, None, ViewerConfig(image_width=80)) as v:
        v.set_frame(3)
        n = int(np.flatnonzero(tracks.visible[3])[0])
        h, w = clip.frame_size
        x, y = tracks.xy[3, n]
        pw, ph = v.plane_size
        target = np.array([(x / (w - 1) - 0.5) * pw, (0.5 - y / (h - 1)) * ph, 0.0])
        origin = np.array([0.0, 0.0, 2.6])
        v._on_click(origin, target - origin, None)
        d = np.linalg.norm(tracks.xy[3] - tracks.xy[3, n], axis=1)
        assert v.selected == n or d[v.selected] < 1e-6  # the clicked track (or one on the same pixel)


def test_check_inputs_rejects_mismatches(data):
    clip, tracks, scene = data
    short = Clip(clip.frames[:5], clip.fps)
    with pytest.raises(UserError, match="frames"):
        check_inputs(short, tracks, scene)
    wide = Clip(np.zeros((clip.num_frames, 60, 200, 3), np.uint8))
    with pytest.raises(UserError, match="aspect"):
        check_inputs(wide, tracks, None)


def test_compat_call_drops_unknown_keywords():
    def add(name, *, size=1.0):
        return name, size

    assert _compat.call(add, "a", size=2.0, precision="float32") == ("a", 2.0)


# -------------------------------------------------------------------- export
def test_export_viser_and_html(data, tmp_path):
    from cotracker3_viser.export import export_recording

    clip, tracks, scene = data
    with headless_viewer(clip, tracks, scene, ViewerConfig(image_width=80)) as v:
        rec = export_recording(v, tmp_path / "rec.viser")
        raw = rec.read_bytes()
        # viser's format: 8-byte little-endian size of the zstd-compressed payload that follows.
        assert len(raw) > 1000 and int.from_bytes(raw[:8], "little") > len(raw)
        with pytest.raises(UserError, match=".viser or .html"):
            export_recording(v, tmp_path / "rec.mp4")
        if hasattr(_compat.scene_serializer(v.server), "as_html"):
            html = export_recording(v, tmp_path / "rec.html").read_text()
            assert "window.__VISER_EMBED_DATA__=" in html and "<script" in html


# ------------------------------------------------------------- loading + CLI
def _write_output(folder, data, *, video=None, images=False):
    import cv2

    clip, tracks, scene = data
    folder.mkdir(parents=True, exist_ok=True)
    tracks.save(folder / "tracks.npz")
    scene.save(folder / "scene.npz")
    if images:
        (folder / "images").mkdir()
        for i, f in enumerate(clip.frames):
            cv2.imwrite(str(folder / "images" / f"frame_{i + 1:05d}.png"), f[..., ::-1])
    if video is not None:
        (folder / "summary.json").write_text(json.dumps({"video": video}))


def test_load_output_images_folder_and_summary_video(data, tmp_path):
    from cotracker3_viser.loading import load_output

    from cotracker3_plugin.io import write_video

    clip, tracks, _ = data
    _write_output(tmp_path / "a", data, images=True)
    out = load_output(tmp_path / "a")
    assert out.clip.num_frames == tracks.num_frames and out.scene is not None
    np.testing.assert_array_equal(out.clip.frames[4], clip.frames[4])  # png: lossless

    write_video(tmp_path / "v.mp4", list(clip.frames), fps=10)
    _write_output(tmp_path / "b", data, video="../v.mp4")
    out = load_output(tmp_path / "b")
    assert out.clip.frame_size == clip.frame_size and out.clip.num_frames == clip.num_frames

    _write_output(tmp_path / "c", data)
    with pytest.raises(UserError, match="--video"):
        load_output(tmp_path / "c")
    with pytest.raises(UserError, match="tracks.npz"):
        load_output(tmp_path / "v.mp4")


def test_cli_render_and_export(data, tmp_path):
    import av
    from cotracker3_viser.cli import Config, run

    _write_output(tmp_path / "out", data, images=True)
    mp4, html = tmp_path / "overlay.mp4", tmp_path / "view.viser"
    assert run(Config(output_dir=tmp_path / "out", render=mp4, export=html)) == 0
    with av.open(str(mp4)) as c:
        assert sum(1 for _ in c.decode(video=0)) == data[1].num_frames
    assert html.stat().st_size > 1000
    with pytest.raises(UserError, match=".mp4"):
        run(Config(output_dir=tmp_path / "out", render=tmp_path / "x.gif"))


def test_cli_moving_flag(data, tmp_path, monkeypatch):
    import dataclasses

    import tyro
    from cotracker3_viser import export
    from cotracker3_viser.cli import Config, run
    from cotracker3_viser.loading import load_output

    clip, tracks, scene = data
    moving = _moving_flags(tracks)
    _write_output(tmp_path / "out", (clip, dataclasses.replace(tracks, dynamic=moving), scene), images=True)
    np.testing.assert_array_equal(load_output(tmp_path / "out").tracks.dynamic, moving)
    assert tyro.cli(Config, args=[str(tmp_path / "out")]).moving == "colour"
    cfg = tyro.cli(Config, args=[str(tmp_path / "out"), "--moving", "hide", "--render", str(tmp_path / "o.mp4")])
    assert cfg.moving == "hide"
    with pytest.raises(SystemExit):
        tyro.cli(Config, args=[str(tmp_path / "out"), "--moving", "blink"])
    drawn = []
    monkeypatch.setattr(export, "render_video", lambda clip, tracks, path, **kw: drawn.append(tracks))
    assert run(cfg) == 0 and drawn[0].num_points == int((~moving).sum())  # --render honours hide
    assert run(dataclasses.replace(cfg, moving="colour")) == 0 and drawn[1].num_points == len(moving)


def test_cli_help_lists_options():
    import subprocess
    import sys

    code = "import sys; from cotracker3_plugin.cli import main; sys.exit(main(['view', '--help']))"
    res = subprocess.run([sys.executable, "-c", code],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    for flag in ("--host", "--port", "--render", "--export", "--video", "--verbose", "--moving"):
        assert flag in res.stdout


def test_edge_cases_empty_tracks_and_sparse_scene(data):
    import dataclasses

    from cotracker3_plugin.tracks import Tracks

    clip, tracks, scene = data
    T = tracks.num_frames
    empty = Tracks(np.zeros((T, 0, 2)), np.zeros((T, 0), bool), np.zeros((T, 0)), np.zeros((0, 3)),
                   tracks.frame_size)
    no_points = dataclasses.replace(scene, points=np.zeros((0, 3)), colors=np.zeros((0, 3)),
                                    track_ids=np.zeros(0))
    with headless_viewer(clip, empty, no_points, ViewerConfig(image_width=80)) as v:
        v.set_frame(5)
        assert "0 of 0 tracks" in v.status.content
    # A scene of every other frame: trails join the posed frames across the gaps.
    sparse = dataclasses.replace(scene, frame_indices=np.arange(0, T, 2), registered=scene.registered[::2],
                                 world_from_cam=scene.world_from_cam[::2], camera_index=scene.camera_index[::2])
    with headless_viewer(clip, tracks, sparse, ViewerConfig(image_width=80, trail_length=4)) as v:
        v.set_frame(7)  # frame 7 has no pose: no current camera, trails from frames 4 and 6
        assert v.current_node is None or not v.current_node.visible
        lifted, ok = v.lifted_trails(7, 4, v.trail_points)
        assert lifted.shape[0] == 2 and ok.any()


# ------------------------------------------------------------------ dense cloud
def test_viewer_shows_a_dense_cloud_within_its_budget(data, tmp_path):
    clip, tracks, scene = data
    rng = np.random.default_rng(3)
    pts = rng.normal(0, 1, (5000, 3))
    pts[7] = np.nan  # not sent
    cols = rng.integers(0, 256, (5000, 3), dtype=np.uint8)
    cfg = ViewerConfig(image_width=80, max_dense_points=1000)
    with headless_viewer(clip, tracks, scene, cfg, dense_points=pts, dense_colors=cols) as v:
        assert len(v.dense_points) == 1000 and np.isfinite(v.dense_points).all()
        assert v.dense_node is not None and v.show_dense.visible
        if _compat.has_prop(v.dense_node, "points"):
            assert len(np.asarray(v.dense_node.points)) == 1000
        # every shown point is one of the input points, with its colour
        rows = [int(np.flatnonzero(np.isclose(pts, p, atol=1e-6).all(1))[0]) for p in v.dense_points[:20]]
        np.testing.assert_array_equal(cols[rows], v.dense_colors[:20])
        v.show_dense.value = False
        import time

        time.sleep(0.2)  # viser 0.2.7 runs GUI callbacks on a pool thread
        assert not v.dense_node.visible
        # a recording includes the cloud
        from cotracker3_viser.export import export_recording

        assert export_recording(v, tmp_path / "rec.viser", frames=range(2)).stat().st_size > 1000
    with headless_viewer(clip, tracks, scene, ViewerConfig(image_width=80)) as v:
        assert v.dense_node is None and not v.show_dense.visible


def test_load_output_reads_the_dense_cloud_in_the_scene_world(data, tmp_path):
    from cotracker3_viser.loading import load_output

    from cotracker3_plugin.reconstruct.export import write_points_ply

    clip, tracks, scene = data
    _write_output(tmp_path / "out", data, images=True)
    assert load_output(tmp_path / "out").dense_points is None
    rng = np.random.default_rng(4)
    pts = rng.normal(0, 1, (300, 3))
    cols = rng.integers(0, 256, (300, 3), dtype=np.uint8)
    write_points_ply(pts, cols, tmp_path / "out" / "points.ply")
    out = load_output(tmp_path / "out")
    np.testing.assert_allclose(out.dense_points, pts, atol=1e-5)
    np.testing.assert_array_equal(out.dense_colors, cols)
    # dense_pc.ply wins; when transforms.json names it, it is in nerfstudio's world: brought back.
    applied = np.eye(4)[[0, 2, 1]][:3]
    applied[2] *= -1
    write_points_ply(pts[:100], cols[:100], tmp_path / "out" / "dense_pc.ply", transform=applied)
    (tmp_path / "out" / "transforms.json").write_text(json.dumps(
        {"ply_file_path": "dense_pc.ply", "applied_transform": applied.tolist(), "frames": []}))
    out = load_output(tmp_path / "out")
    np.testing.assert_allclose(out.dense_points, pts[:100], atol=1e-5)
