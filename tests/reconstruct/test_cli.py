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
