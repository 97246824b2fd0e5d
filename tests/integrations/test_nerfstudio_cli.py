"""ns-process-data-track command line: flags, a full run on a small video, user errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("nerfstudio.process_data.colmap_utils")

from cotracker3_nerfstudio import cli  # noqa: E402
from cotracker3_nerfstudio import process_data as pd  # noqa: E402
from test_nerfstudio import T, synthetic  # noqa: E402  (tests/integrations is on sys.path)

import cotracker3_plugin.reconstruct as reconstruct_pkg  # noqa: E402
from cotracker3_plugin.io import write_video  # noqa: E402


def test_help_lists_ns_process_data_flags(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["video", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--data", "--output-dir", "--num-frames-target", "--num-downscales", "--tracker",
                 "--camera-type", "--skip-image-processing", "--verbose", "--reconstruct.mapper"):
        assert flag in text, flag


def test_video_run_writes_dataset(tmp_path, monkeypatch, capsys):
    clip, tracks, scene = synthetic()
    video = tmp_path / "v.mp4"
    write_video(video, iter(clip.frames), fps=10.0)
    # The tracker and the mapper are stubbed: this test is about the command, not their accuracy.
    seen = {}

    def fake_tracker(config):
        seen["tracker"] = config.tracker
        return lambda c: tracks

    def fake_reconstruct(tr, c, cfg):
        seen["camera_model"] = cfg.camera_model
        seen["frames"] = c.num_frames
        return reconstruct_pkg.ReconstructResult(scene, reconstruct_pkg.ReconstructReport(), tr)

    monkeypatch.setattr(pd, "default_tracker", fake_tracker)
    monkeypatch.setattr(reconstruct_pkg, "reconstruct_detailed", fake_reconstruct)
    out = tmp_path / "ds"
    code = cli.main(["video", "--data", str(video), "--output-dir", str(out), "--tracker", "klt",
                     "--num-downscales", "1", "--camera-type", "pinhole"])
    assert code == 0
    assert seen == {"tracker": "klt", "camera_model": "PINHOLE", "frames": T}
    tf = json.loads((out / "transforms.json").read_text())
    assert len(tf["frames"]) == T - 1 and tf["k1"] == 0.0
    assert len(list((out / "images_2").iterdir())) == T
    assert "registered 9 of 10 frames" in capsys.readouterr().out


def test_user_errors_exit_2_without_traceback(tmp_path, capsys):
    assert cli.main(["video", "--data", str(tmp_path / "missing.mp4"), "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "missing.mp4" in err and "Traceback" not in err
    (tmp_path / "exists").mkdir()
    assert cli.main(["images", "--data", str(tmp_path), "--output-dir", str(tmp_path / "exists")]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_num_frames_target_strides_the_video(tmp_path):
    frames = np.zeros((12, 32, 48, 3), np.uint8)
    frames[:, :, :, 0] = np.arange(12)[:, None, None] * 20
    video = tmp_path / "v.mp4"
    write_video(video, iter(frames), fps=12.0)
    clip = pd.load_input(video, num_frames_target=4)
    assert clip.num_frames == 4 and clip.frame_indices.tolist() == [0, 3, 6, 9]


def test_missing_nerfstudio_is_a_user_error_naming_the_install(tmp_path, monkeypatch):
    import sys

    clip, tracks, scene = synthetic()
    monkeypatch.setitem(sys.modules, "nerfstudio.process_data", None)  # import now raises ImportError
    with pytest.raises(pd.NerfstudioMissingError, match="pip install --no-deps nerfstudio==1.1.5"):
        pd.process_data(clip, tmp_path / "o", tracker=tracks, scene=scene)
    assert not (tmp_path / "o").exists()
