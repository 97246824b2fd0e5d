"""Peak memory of tracking a long clip: 3000 synthetic 640x480 frames on CPU (goal <= 8 GiB).

Two bounded-memory routes of ``cotracker3_plugin.predict``:

* ``windowed``: the offline model on overlapping windows (``track(..., window=, overlap=)``);
  the clip is one uint8 array in memory (3000 x 480 x 640 x 3 = 2.6 GiB, counted in the peak);
* ``online``: an ``OnlineSession`` fed frame by frame from a generator (the clip is never
  held in memory).

Each route runs in a fresh process; peak RSS is that process's ``ru_maxrss``. ``--model small``
uses the small architecture at 384x512 (fast enough for 3000 frames on a 2-core CPU);
``--model full`` the official one (about 1.6 frames/s on 2 cores: ~30 min per route);
``--model oracle`` replaces the network by a stub (no activations) to measure the predictor's
own memory over the full length; ``--resolution 96 128`` runs the model at a lower resolution (the frames are still 640x480).

    python benchmarks/long_video_memory.py --model small --frames 3000
    python benchmarks/long_video_memory.py --model full --frames 180 --threads 1

Measured (2-core AMD EPYC, 1 thread, 2026-11-25): the official architecture on 180 frames peaks at
2.37 GiB windowed (0.37 frames/s) and 1.98 GiB online (0.25 frames/s). Per window the network's
memory is constant (a 60-frame window: 2.3 GiB with the feature CNN at 16 frames per call), so
3000 frames add only the clip itself (2.6 GiB for the windowed route; nothing for the online
one). 3000 frames end to end through the CLI: tests/cli/test_long_video.py (slow).
    python benchmarks/long_video_memory.py --model small --resolution 96 128 --frames 3000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch


def synthetic_frames(n: int, h: int = 480, w: int = 640):
    """A textured background scrolling diagonally, one frame at a time."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (h + 64, w + 64, 3), dtype=np.uint8)
    for t in range(n):
        dy, dx = (t // 2) % 64, t % 64
        yield base[dy:dy + h, dx:dx + w]


class OracleModel(torch.nn.Module):
    """No network: points move 1 px/frame. Measures the predictor's own memory (input, buffers,
    resizing, outputs) without the network's activations, which are constant per window."""

    def __init__(self, online: bool, resolution: tuple[int, int] | None):
        super().__init__()
        self.model_resolution = tuple(resolution or (384, 512))
        self.window_len = 16 if online else 60
        self.online_ind = 0
        if online:
            self.init_video_online_processing = self._reset

    def _reset(self) -> None:
        self.online_ind = 0

    def forward(self, video, queries, iters=4, is_train=False, is_online=False):
        t = video.shape[1] + (self.online_ind if is_online else 0)
        if is_online:
            self.online_ind += self.window_len // 2
        frames = torch.arange(t, dtype=torch.float32)[None, :, None, None]
        coords = queries[:, None, :, 1:] + (frames - queries[:, None, :, :1])
        p = torch.full(coords.shape[:3], 0.9)
        return coords, p, p.clone(), None


def build(kind: str, online: bool, resolution: tuple[int, int] | None = None):
    import dataclasses

    from cotracker3_plugin.model import CoTrackerConfig, CoTrackerThreeOffline, CoTrackerThreeOnline

    torch.manual_seed(0)
    if kind == "oracle":
        return OracleModel(online, resolution)
    if kind == "small":
        cfg = CoTrackerConfig.small(online=online)
    else:
        cfg = CoTrackerConfig.online() if online else CoTrackerConfig.offline()
    if resolution is not None:
        cfg = dataclasses.replace(cfg, model_resolution=tuple(resolution))
    return (CoTrackerThreeOnline if online else CoTrackerThreeOffline)(cfg).eval()


def run_one(route: str, kind: str, frames: int, grid: int, window: int, overlap: int,
            resolution: tuple[int, int] | None = None) -> dict:
    from cotracker3_plugin.predict import OnlineSession, track

    t0 = time.perf_counter()
    if route == "windowed":
        video = np.empty((frames, 480, 640, 3), np.uint8)
        for i, f in enumerate(synthetic_frames(frames)):
            video[i] = f
        tracks = track(video, build(kind, False, resolution), grid_size=grid, window=window, overlap=overlap)
    else:
        session = OnlineSession(build(kind, True, resolution), grid_size=grid)
        for f in synthetic_frames(frames):
            session.push(f)
        tracks = session.finish()
    return {"route": route, "model": kind, "frames": frames, "grid": grid,
            "seconds": time.perf_counter() - t0, "points": tracks.num_points,
            "out_frames": tracks.num_frames,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["small", "full", "oracle"], default="small")
    ap.add_argument("--routes", nargs="+", default=["windowed", "online"], choices=["windowed", "online"])
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--grid", type=int, default=10)
    ap.add_argument("--window", type=int, default=60)
    ap.add_argument("--overlap", type=int, default=15)
    ap.add_argument("--resolution", type=int, nargs=2, metavar=("H", "W"),
                    help="model resolution (default: the model's 384 512); smaller runs faster "
                         "on a CPU, memory behaviour over time is the same")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--single", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.single:
        print(json.dumps(run_one(args.single, args.model, args.frames, args.grid, args.window,
                                 args.overlap, args.resolution)))
        return 0
    res = "x".join(map(str, args.resolution)) if args.resolution else "384x512"
    print(f"model resolution {res}, window {args.window}, overlap {args.overlap}, grid {args.grid}")
    print(f"{'route':9} {'model':6} {'frames':>6} {'seconds':>8} {'frames/s':>8} {'peak RSS GiB':>12}  goal <= 8 GiB")
    ok = True
    for route in args.routes:
        cmd = [sys.executable, __file__, "--single", route, "--model", args.model, "--frames",
               str(args.frames), "--grid", str(args.grid), "--window", str(args.window),
               "--overlap", str(args.overlap), "--threads", str(args.threads)]
        if args.resolution:
            cmd += ["--resolution", *map(str, args.resolution)]
        row = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                         .strip().splitlines()[-1])
        ok &= row["peak_rss_gib"] <= 8
        print(f"{route:9} {row['model']:6} {row['frames']:>6} {row['seconds']:8.1f} "
              f"{row['frames'] / row['seconds']:8.2f} {row['peak_rss_gib']:12.2f}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
