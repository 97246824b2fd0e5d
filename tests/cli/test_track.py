"""`cotracker3 track` end to end on the bundled example video, with tiny random-weight models
(``tiny_ckpt`` / ``tiny_online_ckpt`` from conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cotracker3_plugin.cli import main
from cotracker3_plugin.cli.track import queries_to_clip, read_mask, read_queries_file
from cotracker3_plugin.errors import UserError
from cotracker3_plugin.io import Clip, load_clip, probe_video, read_video
from cotracker3_plugin.precision import fast_kernels_for, precision_name, resolve_precision
from cotracker3_plugin.tracks import Tracks
from cotracker3_plugin.weights import load_model

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "data" / "cat.mp4"


def test_track_end_to_end(tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["track", str(EXAMPLE), "--model", str(tiny_ckpt), "--max-frames", "10",
               "--grid-size", "4", "--device", "cpu", "--output", str(out)])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["summary.json", "tracks.mp4", "tracks.npz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temporary folder left
    printed = capsys.readouterr().out
    assert "Tracked 16 points over 10 frames" in printed
    assert "Positions: 0% chained KLT, 0% network sharpened by Lucas-Kanade, 100% network as is" in printed

    tracks = Tracks.load(out / "tracks.npz")
    assert tracks.xy.shape == (10, 16, 2) and tracks.frame_size == (480, 368)
    np.testing.assert_array_equal(tracks.queries[:, 0], 0)
    assert tracks.meta["model"] == str(tiny_ckpt) and tracks.meta["mode"] == "offline"
    # the CLI gives the same tracks as the library call on the same frames (--precision auto:
    # the library call resolves it the same way, with the kernels the CLI picks for it)
    clip = read_video(EXAMPLE, max_frames=10)
    dtype = resolve_precision("auto", "cpu")
    direct = __import__("cotracker3_plugin.predict", fromlist=["track"]).track(
        clip, load_model(tiny_ckpt).set_fast(fast_kernels_for(dtype)), grid_size=4, precision="auto")
    np.testing.assert_allclose(tracks.xy, direct.xy, atol=1e-4)
    np.testing.assert_array_equal(tracks.visible, direct.visible)

    info = probe_video(out / "tracks.mp4")
    assert (info.num_frames, info.size, info.fps, info.codec) == (10, (480, 368), 20.0, "h264")

    summary = json.loads((out / "summary.json").read_text())
    assert (summary["frames"], summary["points"], summary["device"]) == (10, 16, "cpu")
    assert summary["mean_visibility"] == pytest.approx(tracks.mean_visibility(), abs=1e-4)
    assert summary["frame_indices"] == list(range(10))
    assert set(summary["runtime_s"]) == {"decode", "load_model", "track", "save", "overlay", "total"}
    assert summary["model"] == str(tiny_ckpt) and "torch" in summary["versions"]
    assert summary["precision"] == precision_name(dtype) == tracks.meta["precision"]
    assert summary["kernels"] == ("fast" if dtype is not None else "exact")
    assert summary["refined"] == "no" and "refined" not in tracks.meta  # auto: off for a named model
    # every position is the network's own, and the record says so (tracks.npz, summary.json, printout)
    assert summary["provenance"] == {"klt": 0.0, "klt_visible": 0.0, "lk": 0.0, "lk_visible": 0.0,
                                     "network": 1.0, "network_visible": 1.0}
    assert tracks.meta["provenance_network"] == "1.000000"

    # the folder exists now: refused without --overwrite, and left untouched
    before = (out / "tracks.npz").read_bytes()
    rc = main(["track", str(EXAMPLE), "--model", str(tiny_ckpt), "--output", str(out)])
    assert rc == 2 and "--overwrite" in capsys.readouterr().err
    assert (out / "tracks.npz").read_bytes() == before


def test_track_refines_the_bundled_models_tracks_by_default(tmp_path):
    from cotracker3_plugin.evaluate.klt import klt_track
    from cotracker3_plugin.predict import track

    out = tmp_path / "refined"
    rc = main(["track", str(EXAMPLE), "--max-frames", "8", "--grid-size", "5", "--no-video",
               "--output", str(out)])
    assert rc == 0
    tracks = Tracks.load(out / "tracks.npz")
    clip = read_video(EXAMPLE, max_frames=8)
    coarse = track(clip, load_model(None), grid_size=5)
    klt_xy, held = klt_track(clip.frames, coarse.queries, sticky_loss=True)
    # KLT's positions while KLT holds a point (and the point is visible), the model's after it, sharpened
    # by LK within its 20 px leash; occluded observations KLT does not hold stay as they were
    assert held[1:].mean() > 0.5 and not held.all()
    np.testing.assert_allclose(tracks.xy[held], klt_xy[held], atol=1e-4)
    np.testing.assert_array_equal(tracks.visible, coarse.visible | held)
    moved = np.linalg.norm(tracks.xy - coarse.xy, axis=-1)[~held]
    assert np.all(moved[~coarse.visible[~held]] < 1e-4) and moved.max() < 20.0
    summary = json.loads((out / "summary.json").read_text())
    assert tracks.meta["refined"].startswith("klt until lost (") and summary["refined"] == tracks.meta["refined"]
    assert "refine" in summary["runtime_s"]
    p = summary["provenance"]
    assert p["klt"] == pytest.approx(held.mean(), abs=1e-4) and p["klt"] + p["lk"] + p["network"] == pytest.approx(1, abs=1e-3)
    assert float(tracks.meta["provenance_klt_visible"]) == pytest.approx(held.sum() / tracks.visible.sum(), abs=1e-5)


def test_track_queries_stride_resize_online(tiny_online_ckpt, tmp_path):
    queries = tmp_path / "q.csv"
    # source frames / pixels; with --stride 2 frame 4 is decoded frame 2, and frame 3 (skipped)
    # moves to the nearest decoded frame, the earlier one on a tie (frame 2 = decoded frame 1)
    queries.write_text("t,x,y\n0, 100, 200\n4, 367, 479  # bottom-right pixel\n3 10 20\n")
    out = tmp_path / "q"
    rc = main(["track", str(EXAMPLE), "--model", str(tiny_online_ckpt), "--online",
               "--queries", str(queries), "--stride", "2", "--max-frames", "9", "--max-side", "240",
               "--no-video", "--precision", "fp32", "--output", str(out)])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["summary.json", "tracks.npz"]
    tracks = Tracks.load(out / "tracks.npz")
    assert tracks.xy.shape == (9, 3, 2) and tracks.frame_size == (240, 184)
    assert tracks.meta["mode"] == "online"
    np.testing.assert_array_equal(tracks.queries[:, 0], [0, 2, 1])
    # half-pixel-centre scaling by 0.5: x' = (x + 0.5) / 2 - 0.5
    np.testing.assert_allclose(tracks.queries[:, 1:], [[49.75, 99.75], [183.25, 239.25], [4.75, 9.75]],
                               atol=1e-4)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frame_indices"] == list(range(0, 18, 2)) and summary["fps"] == 10.0
    assert (summary["precision"], summary["kernels"]) == ("fp32", "exact")


def test_track_bad_queries_name_the_rows(tiny_ckpt, tmp_path, capsys):
    queries = tmp_path / "q.txt"
    queries.write_text("0 10 10\n0 400 10\n0 10 10\n0 10 -5\n")
    out = tmp_path / "bad"
    rc = main(["track", str(EXAMPLE), "--model", str(tiny_ckpt), "--queries", str(queries),
               "--max-frames", "4", "--output", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "Query rows 1, 3" in err and "368x480" in err and "swap x and y" in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["q.txt"]
    rc = main(["track", str(tmp_path / "missing.mp4"), "--model", str(tiny_ckpt), "--output", str(out)])
    assert rc == 2 and "does not exist" in capsys.readouterr().err
    rc = main(["track", str(EXAMPLE), "--online", "--offline", "--output", str(out)])
    assert rc == 2 and "contradict" in capsys.readouterr().err


def test_read_queries_file_formats(tmp_path):
    p = tmp_path / "q.csv"
    p.write_text("# my points\nframe;x;y\n1;2.5;3\n\n4, 5, 6\n")
    np.testing.assert_array_equal(read_queries_file(p), [[1, 2.5, 3], [4, 5, 6]])
    n = tmp_path / "q.npy"
    np.save(n, np.array([[0, 1, 2]], np.float64))
    np.testing.assert_array_equal(read_queries_file(n), [[0, 1, 2]])
    np.save(n, np.zeros((2, 2)))
    with pytest.raises(UserError, match=r"shape \(2, 2\)"):
        read_queries_file(n)
    p.write_text("1 2 3\n1 2\n")
    with pytest.raises(UserError, match="line 2 has 2 values"):
        read_queries_file(p)
    p.write_text("t x y\n")
    with pytest.raises(UserError, match="no query rows"):
        read_queries_file(p)


def test_queries_to_clip_time_range():
    clip = Clip(np.zeros((5, 24, 32, 3), np.uint8), frame_indices=np.arange(10, 15))
    q = queries_to_clip(np.array([[10, 0, 0], [14, 63, 47]], np.float32), clip, (48, 64))
    np.testing.assert_allclose(q, [[0, -0.25, -0.25], [4, 31.25, 23.25]])
    with pytest.raises(UserError, match=r"rows 0 .*frames 10\.\.14"):
        queries_to_clip(np.array([[3, 0, 0]], np.float32), clip, (48, 64))


def test_read_mask(tmp_path):
    import cv2

    m = np.zeros((96, 128), np.uint8)
    m[:48, :64] = 255
    cv2.imwrite(str(tmp_path / "m.png"), m)
    mask = read_mask(tmp_path / "m.png", (48, 64))
    assert mask.shape == (48, 64) and mask[:24, :32].all() and not mask[24:].any()
    with pytest.raises(UserError, match="aspect ratio"):
        read_mask(tmp_path / "m.png", (64, 64))
    cv2.imwrite(str(tmp_path / "z.png"), np.zeros((4, 4), np.uint8))
    with pytest.raises(UserError, match="all zero"):
        read_mask(tmp_path / "z.png", (4, 4))


def test_example_video_is_the_documented_one():
    clip = load_clip(EXAMPLE, stride=29)
    assert EXAMPLE.stat().st_size < 2_000_000 and clip.frames.shape == (3, 480, 368, 3)
    assert (EXAMPLE.parent / "LICENSE.md").read_text().count("CC-BY-NC 4.0") >= 1


def test_track_mask_selects_grid_points(tiny_ckpt, tmp_path):
    import cv2

    mask = np.zeros((480, 368), np.uint8)
    mask[:, :184] = 255  # left half of the frame
    cv2.imwrite(str(tmp_path / "mask.png"), mask)
    out = tmp_path / "m"
    rc = main(["track", str(EXAMPLE), "--model", str(tiny_ckpt), "--mask", str(tmp_path / "mask.png"),
               "--grid-size", "4", "--max-frames", "4", "--no-video", "--output", str(out)])
    assert rc == 0
    q = Tracks.load(out / "tracks.npz").queries
    assert 0 < len(q) < 16 and (q[:, 1] < 184).all()


@pytest.mark.parametrize("script,ckpt,frames", [("01_track_video.py", "tiny_ckpt", 12),
                                                ("02_online_streaming.py", "tiny_online_ckpt", 20)])
def test_examples_run(script, ckpt, frames, request, tmp_path, capsys):
    import runpy

    example = runpy.run_path(str(EXAMPLE.parents[1] / script), run_name="example")
    out = example["main"](["--model", str(request.getfixturevalue(ckpt)), "--max-frames", str(frames),
                           "--grid-size", "3", "--output", str(tmp_path / "out")])
    tracks = Tracks.load(out / "tracks.npz")
    assert tracks.xy.shape == (frames, 9, 2) and tracks.frame_size == (480, 368)
    text = capsys.readouterr().out
    assert "9 tracks" in text
    if script.startswith("01"):
        assert probe_video(out / "tracks.mp4").num_frames == frames
    else:  # the first window (16 frames pushed) made frames 0..7 final while reading
        assert "frame   15: frames 0..7 final" in text
