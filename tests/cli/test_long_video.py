"""A long video through `cotracker3 track` and `cotracker3 reconstruct` in bounded memory (slow).

3000 frames of 640x480 (a synthetic two-layer scene with parallax, H.264) are tracked with the
bundled model on overlapping 60-frame windows, then reconstructed from a subsample of the frames. Each
command runs in its own process; its peak resident memory is read from ``os.wait4`` and must
stay under 8 GiB (the decoded clip alone is 2.6 GiB). The numbers are printed (``pytest -s``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from cotracker3_plugin.tracks import Tracks

pytestmark = [pytest.mark.slow, pytest.mark.timeout(5400)]  # ~20-40 min on 2 CPU cores

# COTRACKER3_LONG_FRAMES shortens the clip for a quick check of the test itself.
NUM_FRAMES = int(os.environ.get("COTRACKER3_LONG_FRAMES", 3000))
HEIGHT, WIDTH = 480, 640
LIMIT_GIB = 8.0


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    noise = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 2.0)


def write_parallax_video(path: Path, num: int = NUM_FRAMES, h: int = HEIGHT, w: int = WIDTH) -> None:
    """A far layer drifting 0.4 px/frame behind a near band (lower half) moving 1.5 px/frame."""
    rng = np.random.default_rng(0)
    far, near = _texture(rng, h, 2048), _texture(rng, h // 2, 2048)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(30))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "18"}
        for t in range(num):
            frame = np.roll(far, -int(0.4 * t), axis=1)[:, :w].copy()
            frame[h // 2:] = np.roll(near, -int(1.5 * t), axis=1)[:, :w]
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def run_measured(args: list[str], cwd: Path) -> tuple[float, float]:
    """Run ``cotracker3 ARGS`` in a child process; return (seconds, peak RSS in GiB)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "cotracker3_plugin.cli", *args], cwd=cwd)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, f"cotracker3 {' '.join(args)} exited with {proc.returncode}"
    return time.perf_counter() - t0, usage.ru_maxrss / 2**20


def test_3000_frames_track_and_reconstruct_in_bounded_memory(tmp_path):
    video = tmp_path / "long.mp4"
    write_parallax_video(video)

    secs_track, rss_track = run_measured(
        ["track", str(video), "--window", "60", "--grid-size", "10", "--no-video", "--device", "cpu",
         "--output", str(tmp_path / "tracks")], tmp_path)
    tracks = Tracks.load(tmp_path / "tracks" / "tracks.npz")
    assert tracks.num_frames == NUM_FRAMES and tracks.num_points == 100
    assert np.isfinite(tracks.xy).all()

    secs_rec, rss_rec = run_measured(
        ["reconstruct", str(tmp_path / "tracks"), "--reconstruct.max-frames", "100",
         "--output", str(tmp_path / "scene")], tmp_path)
    report = json.loads((tmp_path / "scene" / "report.json").read_text())

    print(f"\n{NUM_FRAMES}x{WIDTH}x{HEIGHT}: track {secs_track:.0f} s, peak RSS {rss_track:.2f} GiB; "
          f"reconstruct {secs_rec:.0f} s, peak RSS {rss_rec:.2f} GiB; report {json.dumps(report)[:400]}")
    assert rss_track < LIMIT_GIB, f"track peaked at {rss_track:.2f} GiB"
    assert rss_rec < LIMIT_GIB, f"reconstruct peaked at {rss_rec:.2f} GiB"
