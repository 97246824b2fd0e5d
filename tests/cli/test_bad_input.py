"""Bad input to the main job (`cotracker3 run`) and to `cotracker3 track`, as a new user meets it.

Each case checks: a non-zero exit code, one clear message naming the problem and the fix,
no traceback (without --verbose), and nothing half-written.
"""

from __future__ import annotations

import errno
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from cotracker3_plugin.cli import main
from cotracker3_plugin.tracks import Tracks


def _fails(args: list[str], capsys, *words: str) -> str:
    code = main(args)
    err = capsys.readouterr().err
    assert code != 0, f"expected failure for {args}"
    assert "Traceback" not in err, err
    for w in words:
        assert w.lower() in err.lower(), f"{w!r} not in message:\n{err}"
    return err


def _no_leftovers(folder: Path) -> None:
    leftovers = [p.name for p in folder.iterdir() if ".partial" in p.name or p.name.endswith(".tmp")]
    assert not leftovers, leftovers


def test_missing_file(tmp_path, capsys):
    _fails(["run", str(tmp_path / "nope.mp4"), "--output", str(tmp_path / "o")], capsys, "does not exist")
    assert not (tmp_path / "o").exists()


def test_directory_instead_of_file(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    _fails(["run", str(tmp_path / "empty"), "--output", str(tmp_path / "o")], capsys, "empty")
    assert not (tmp_path / "o").exists()


def test_not_a_video(tmp_path, capsys):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is a shopping list, not a video\n" * 50)
    _fails(["run", str(bad), "--output", str(tmp_path / "o")], capsys, "not a video")
    assert not (tmp_path / "o").exists()


def test_truncated_mp4_with_nothing_decodable(make_video, tmp_path, capsys):
    full = make_video("full.mp4", num=30)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[:600])
    _fails(["run", str(cut), "--output", str(tmp_path / "o")], capsys, str(cut.name))
    assert not (tmp_path / "o").exists()


def test_zero_frame_video(tmp_path, capsys):
    import av

    path = tmp_path / "zero.mp4"
    with av.open(str(path), "w") as c:  # the mp4 muxer drops a video stream that got no frames
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        c.start_encoding()
        for packet in s.encode():
            c.mux(packet)
    assert path.is_file()
    _fails(["run", str(path), "--output", str(tmp_path / "o")], capsys, "has no video frames")
    assert not (tmp_path / "o").exists()


def test_single_frame(make_video, tmp_path, capsys):
    path = make_video("one.mp4", num=1)
    _fails(["run", str(path), "--output", str(tmp_path / "o")], capsys, "at least 2")
    assert not (tmp_path / "o").exists()


def test_output_folder_exists(make_video, tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    _fails(["run", str(make_video(num=4)), "--output", str(out)], capsys, "already exists", "--overwrite")
    assert (out / "keep.txt").read_text() == "mine"


def test_checkpoint_that_is_not_a_checkpoint(make_video, tmp_path, capsys):
    ckpt = tmp_path / "model.pth"
    ckpt.write_bytes(b"\x00garbage" * 100)
    _fails(["run", str(make_video(num=4)), "--model", str(ckpt), "--output", str(tmp_path / "o")],
           capsys, "model.pth")
    assert not (tmp_path / "o").exists()


def test_checkpoint_with_wrong_keys(make_video, tmp_path, capsys):
    ckpt = tmp_path / "wrong.pth"
    torch.save({"encoder.weight": torch.zeros(3), "head.bias": torch.zeros(2)}, ckpt)
    _fails(["run", str(make_video(num=4)), "--model", str(ckpt), "--output", str(tmp_path / "o")],
           capsys, "encoder.weight")
    assert not (tmp_path / "o").exists()


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_would_execute_code_is_never_run(make_video, tmp_path, capsys):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.pth"
    with open(ckpt, "wb") as f:
        pickle.dump({"state_dict": _Evil(str(marker))}, f)
    err = _fails(["run", str(make_video(num=4)), "--model", str(ckpt), "--output", str(tmp_path / "o")],
                 capsys, "evil.pth")
    assert not marker.exists(), "the pickle's code ran"
    assert "UserWarning" not in err  # torch's warning about the pickle protocol is not shown
    # the same payload in torch's zip format: refused, naming the call it wanted
    torch.save({"state_dict": _Evil(str(marker))}, ckpt)
    err = _fails(["track", str(make_video(num=4)), "--model", str(ckpt), "--output", str(tmp_path / "o")],
                 capsys, "evil.pth", "system, which was refused")
    assert not marker.exists(), "the pickle's code ran"


def test_queries_outside_the_frame(make_video, tiny_ckpt, tmp_path, capsys):
    q = tmp_path / "q.csv"
    q.write_text("t,x,y\n0,10,10\n0,500,20\n")
    _fails(["track", str(make_video(num=6)), "--model", str(tiny_ckpt), "--queries", str(q),
            "--output", str(tmp_path / "o")], capsys, "500")
    assert not (tmp_path / "o").exists()


def test_huge_frames_refused_with_estimate(make_video, tiny_ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COTRACKER3_DECODE_LIMIT_GIB", "0.00001")  # pretend 64x48 frames are huge
    _fails(["track", str(make_video(num=6)), "--model", str(tiny_ckpt), "--max-side", "0",
            "--output", str(tmp_path / "o")], capsys, "--max-side")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("kind", ["rotation", "10bit", "gray"])
def test_odd_videos_are_handled(kind, make_video, pattern_frames, tiny_ckpt, tmp_path, capsys):
    frames = pattern_frames(6, 48, 64)
    opts = {"rotation": {"rotation": 90},
            "10bit": {"pix_fmt": "yuv420p10le", "codec": "libx265" if False else "libx264"},
            "gray": {"pix_fmt": "gray", "codec": "ffv1", "name": "g.mkv"}}[kind]
    name = opts.pop("name", "v.mp4")
    path = make_video(name, frames=frames, **opts)
    out = tmp_path / "o"
    assert main(["track", str(path), "--model", str(tiny_ckpt), "--grid-size", "3", "--no-video",
                 "--output", str(out)]) == 0, capsys.readouterr().err
    tr = Tracks.load(out / "tracks.npz")
    assert tr.frame_size == ((64, 48) if kind == "rotation" else (48, 64))
    assert np.isfinite(tr.xy).all()


def test_ctrl_c_in_the_middle_removes_partial_outputs(make_video, tmp_path, capsys, monkeypatch):
    import cotracker3_plugin.reconstruct as reconstruct_mod

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(reconstruct_mod, "reconstruct_detailed", interrupted)
    code = main(["run", str(make_video(num=6)), "--tracker", "klt", "--output", str(tmp_path / "o")])
    assert code == 130 and "Interrupted" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    _no_leftovers(tmp_path)


def test_disk_full_while_writing(make_video, tiny_ckpt, tmp_path, capsys, monkeypatch):
    def full(self, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(Tracks, "save", full)
    _fails(["track", str(make_video(num=6)), "--model", str(tiny_ckpt), "--grid-size", "3",
            "--output", str(tmp_path / "o")], capsys, "disk is full", "free some space")
    assert not (tmp_path / "o").exists()
    _no_leftovers(tmp_path)


def test_disk_full_while_writing_the_dataset_images(tmp_path, capsys, monkeypatch):
    # cv2.imwrite only returns False on a full disk; the dataset writer must report ENOSPC and the
    # message must name the folder the user asked for, not the atomic writer's temporary one.
    from pathlib import Path as _Path

    from cotracker3_nerfstudio.process_data import write_images

    from cotracker3_plugin._atomic import atomic_dir
    from cotracker3_plugin.cli._common import run_reporting_errors

    real = _Path.write_bytes

    def full(self, data):
        if self.suffix == ".png":
            real(self, data[: len(data) // 2])  # what a full disk leaves: a cut file
            raise OSError(errno.ENOSPC, "No space left on device")  # write() errors name no file
        return real(self, data)

    monkeypatch.setattr(_Path, "write_bytes", full)

    def export():
        with atomic_dir(tmp_path / "dataset") as tmp:
            write_images(np.zeros((2, 16, 16, 3), np.uint8), tmp / "images", ["a.png", "b.png"], 1)

    assert run_reporting_errors(export) == 2
    err = capsys.readouterr().err
    assert "disk is full" in err and f"{tmp_path / 'dataset' / 'images' / 'a.png'}." in err, err
    assert ".partial" not in err and not (tmp_path / "dataset").exists()
    _no_leftovers(tmp_path)


def test_a_pan_without_parallax_says_no_3d_and_still_writes_the_tracks(make_video, tmp_path, capsys):
    # A camera that only turns (here: the image slides across the frame, one homography): no depth can
    # be measured. The run must say so and why, and leave the tracks, complete, and nothing else.
    import cv2

    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 255, (200, 480, 3), dtype=np.uint8), (5, 5), 0)
    frames = np.stack([texture[20:180, 4 * i: 4 * i + 240] for i in range(24)])
    video = make_video("pan.mp4", frames=frames)
    out = tmp_path / "out"
    err = _fails(["run", str(video), "--tracker", "klt", "--output", str(out), "--no-dense"], capsys,
                 "no 3d", "camera only turned", "tracks were written")
    assert "Film while walking around the subject" in err
    assert sorted(p.name for p in out.iterdir()) == ["summary.json", "tracks.npz"]
    assert Tracks.load(out / "tracks.npz").num_frames == 24
    _no_leftovers(tmp_path)
