"""`cotracker3 reconstruct` on a tracks folder (no model needed)."""

import json

import numpy as np
import pycolmap
import pytest

from cotracker3_plugin.cli import main
from cotracker3_plugin.reconstruct import Scene
from cotracker3_plugin.reconstruct.synthetic import make_synthetic_scene


@pytest.fixture(scope="module")
def tracks_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run") / "synthetic"
    folder.mkdir()
    make_synthetic_scene(16, 250, noise_px=0.5, seed=5).tracks.save(folder / "tracks.npz")
    return folder


def test_reconstruct_tracks_folder_in_place(tracks_folder, capsys):
    args = ["reconstruct", str(tracks_folder), "--reconstruct.num-threads", "2", "--image-ext", "jpg"]
    assert main(args) == 0
    assert "Registered 16/16 frames" in capsys.readouterr().out
    report = json.loads((tracks_folder / "report.json").read_text())
    assert report["frames_registered"] == 16 and report["points"] > 200
    assert report["mean_reprojection_error"] < 1.5
    assert {"reconstruct", "export", "reconstruct.mapping", "total"} <= set(report["runtime_s"])
    scene = Scene.load(tracks_folder / "scene.npz")
    assert scene.num_registered == 16 and len(scene.points) == report["points"]
    assert np.all(scene.colors == 128)  # no source video: grey
    rec = pycolmap.Reconstruction(str(tracks_folder / "colmap" / "sparse" / "0"))
    assert rec.num_reg_images() == 16 and rec.image(1).name == "frame_00001.jpg"
    assert (tracks_folder / "points.ply").stat().st_size > 200 * 15

    # A second run refuses to overwrite, and says how to proceed.
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_reconstruct_to_new_output_folder(tracks_folder, tmp_path):
    out = tmp_path / "recon"
    assert main(["reconstruct", str(tracks_folder), "--output", str(out), "--reconstruct.mapper", "global",
                 "--reconstruct.num-threads", "2"]) == 0
    assert {p.name for p in out.iterdir()} >= {"tracks.npz", "scene.npz", "colmap", "points.ply",
                                                 "report.json"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_missing_input_is_a_user_error(tmp_path, capsys):
    assert main(["reconstruct", str(tmp_path / "nope.mp4")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_reconstruct_video_tracks_then_maps(tmp_path, monkeypatch, data_dir):
    """The video path: decode (the fox image folder), track (KLT stands in for the model),
    reconstruct, write."""
    import cotracker3_plugin.cli.reconstruct as cli_rec
    import cotracker3_plugin.predict as predict
    from cotracker3_plugin.evaluate.klt import klt_track
    from cotracker3_plugin.tracks import Tracks

    calls = {}

    def fake_track(clip, model, *, queries, backward_tracking, window, progress):
        calls["queries"] = queries
        xy, vis = klt_track(clip.frames, queries, sticky_loss=True)
        return Tracks(xy, vis, vis.astype(np.float32), queries, clip.frame_size)

    monkeypatch.setattr(cli_rec, "load_model_verbose", lambda *a, **k: "klt")
    monkeypatch.setattr(predict, "track", fake_track)
    out = tmp_path / "fox"
    code = main(["reconstruct", str(data_dir / "fox" / "images"), "--output", str(out),
                 "--max-frames", "10", "--max-side", "320", "--grid-size", "16", "--query-frames", "2",
                 "--reconstruct.num-threads", "2"])
    assert code == 0
    q = calls["queries"]
    assert q.shape == (2 * 256, 3) and set(q[:, 0].tolist()) == {0.0, 9.0}
    report = json.loads((out / "report.json").read_text())
    assert report["frames"] == 10 and report["frame_size"] == [320, 180]
    assert report["frames_registered"] >= 8
    scene = Scene.load(out / "scene.npz")
    assert len(scene.points) > 0 and scene.colors.std() > 0  # coloured from the video
