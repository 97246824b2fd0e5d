"""Tracking speed and peak memory of ``track()``: offline and online, several clip lengths and grids.

Each configuration runs in a fresh process (so its peak RSS is its own), with the official
architecture (random weights: the same FLOPs as the trained ones). The input is the reference
clip ``video_48_u8`` (216x389, resized inside to the model resolution 384x512, like the official
timing in ../shared/reference/README.md), looped back and forth for more than 48 frames.

Modes, each timed in the same run: ``exact`` (the default: the official computation, equal to
it within the parity tolerances), ``fast`` (``model.set_fast()``: fused attention and a
gather-based correlation), ``fast-whole`` (fast, but the correlation volumes of the whole clip at
once, as before they were computed in chunks of frames at inference) and, with ``--official DIR``, the **official** predictors themselves
(``CoTrackerPredictor`` / ``CoTrackerOnlinePredictor`` imported from a checkout of
facebookresearch/co-tracker at ``DIR``, randomly initialised, driven the way its demos drive
them). The official code is never part of this package: point ``--official`` at your own
checkout. Ratios are against the first mode of each configuration.

    python benchmarks/track_speed.py                       # 48 frames, grid 10, both models
    python benchmarks/track_speed.py --official ../co-tracker --modes official exact fast
    python benchmarks/track_speed.py --frames 24 48 120 --grids 10 30

Measured 2026-12-01 (1 thread, the other core busy), offline, 24 frames, grid 20: fast-whole 54.3 s,
peak 1822 MiB; fast (chunked correlation) 52.4 s, 1850 MiB (1.04x). With the official network the
features dominate memory; the chunks matter for small networks and many tracks: the bundled model on
examples/data/cat.mp4 (400 tracks, 87 frames, `cotracker3 track`) peaked at 1.88 GiB before, 0.98 GiB after,
with identical tracks.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("COTRACKER3_SHARED", ROOT.parent / "shared"))


def load_clip(frames: int) -> np.ndarray:
    path = SHARED / "reference" / "fixtures.npz"
    if path.is_file():
        with np.load(path) as z:
            base = z["video_48_u8"]
    else:  # synthetic stand-in of the same size
        base = np.random.default_rng(0).integers(0, 255, (48, 216, 389, 3), dtype=np.uint8)
    idx = np.arange(frames) % (2 * len(base) - 2)
    idx = np.where(idx < len(base), idx, 2 * len(base) - 2 - idx)  # ping-pong
    return np.ascontiguousarray(base[idx])


def run_official(kind: str, video: np.ndarray, grid: int, device: str, checkout: str) -> np.ndarray:
    """The official predictor on ``video``, streamed like its online demo for the online model."""
    sys.path.insert(0, checkout)
    from cotracker.predictor import CoTrackerOnlinePredictor, CoTrackerPredictor

    torch.manual_seed(0)
    if kind == "offline":
        predictor = CoTrackerPredictor(checkpoint=None, window_len=60, v2=False).eval().to(device)
        clip = torch.from_numpy(video).permute(0, 3, 1, 2)[None].float().to(device)
        tracks, _ = predictor(clip, grid_size=grid)
        return tracks.cpu().numpy()
    predictor = CoTrackerOnlinePredictor(checkpoint=None, window_len=16, v2=False).eval().to(device)
    step = predictor.step
    first, tracks = True, None
    for i in range(len(video)):
        if i % step == 0 and i != 0:
            chunk = torch.from_numpy(video[max(0, i - 2 * step):i]).permute(0, 3, 1, 2)[None]
            tracks, _ = predictor(chunk.float().to(device), is_first_step=first, grid_size=grid)
            first = False
    last = len(video) - 1  # the demo's final call: the last (last % step) + step + 1 frames
    tail = torch.from_numpy(video[len(video) - min(last % step + step + 1, 2 * step):]).permute(0, 3, 1, 2)[None]
    tracks, _ = predictor(tail.float().to(device), is_first_step=first, grid_size=grid)
    return tracks.cpu().numpy()


def run_one(kind: str, frames: int, grid: int, mode: str, device: str, threads: int,
            official: str | None = None) -> dict:
    torch.set_num_threads(threads)
    from cotracker3_plugin.model import CoTrackerConfig, CoTrackerThreeOffline, CoTrackerThreeOnline
    from cotracker3_plugin.predict import track

    video = load_clip(frames)
    if mode == "official":
        t0 = time.perf_counter()
        xy = run_official(kind, video, grid, device, official)
        seconds = time.perf_counter() - t0
        return {"model": kind, "frames": frames, "grid": grid, "mode": mode, "device": device,
                "seconds": seconds, "fps": frames / seconds,
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "xy_checksum": float(np.abs(xy).sum())}
    online = kind == "online"
    torch.manual_seed(0)
    cls = CoTrackerThreeOnline if online else CoTrackerThreeOffline
    model = cls(CoTrackerConfig.online() if online else CoTrackerConfig.offline()).eval().to(device)
    if mode.startswith("fast"):
        model.set_fast(True)
    if mode.endswith("-whole"):
        import cotracker3_plugin.model.cotracker3 as net

        net.INFERENCE_CORRELATION_ROWS = 1 << 62
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    tracks = track(video, model, grid_size=grid)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    out = {
        "model": kind, "frames": frames, "grid": grid, "mode": mode, "device": device,
        "seconds": seconds, "fps": frames / seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_mib": rss_before,
        "xy_checksum": float(np.abs(tracks.xy).sum()),
    }
    if device.startswith("cuda"):
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, nargs="+", default=[48])
    ap.add_argument("--grids", type=int, nargs="+", default=[10])
    ap.add_argument("--models", nargs="+", default=["offline", "online"], choices=["offline", "online"])
    ap.add_argument("--modes", nargs="+", default=["exact", "fast"], choices=["official", "exact", "fast", "fast-whole"])
    ap.add_argument("--official", metavar="DIR", help="a checkout of facebookresearch/co-tracker (for mode official)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--single", help=argparse.SUPPRESS)  # internal: one configuration
    args = ap.parse_args()

    if args.single:
        kind, frames, grid, mode = args.single.split(",")
        print(json.dumps(run_one(kind, int(frames), int(grid), mode, args.device, args.threads, args.official)))
        return 0

    if "official" in args.modes and not args.official:
        ap.error("mode official needs --official DIR (a checkout of facebookresearch/co-tracker)")
    rows = []
    print(f"device={args.device} threads={args.threads} torch={torch.__version__}", flush=True)
    header = f"{'model':8} {'frames':>6} {'grid':>4} {'mode':6} {'seconds':>8} {'frames/s':>8} {'peak RSS MiB':>12} {'vs first':>8}"
    print(header)
    for kind in args.models:
        for frames in args.frames:
            for grid in args.grids:
                base = None
                for mode in args.modes:
                    cmd = [sys.executable, __file__, "--single", f"{kind},{frames},{grid},{mode}",
                           "--device", args.device, "--threads", str(args.threads)]
                    cmd += ["--official", args.official] if args.official else []
                    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
                    row = json.loads(res.stdout.strip().splitlines()[-1])
                    rows.append(row)
                    base = row["seconds"] if base is None else base
                    ratio = f"{base / row['seconds']:.2f}x" if base else "-"
                    print(f"{kind:8} {frames:>6} {grid:>4} {mode:6} {row['seconds']:8.1f} "
                          f"{row['fps']:8.2f} {row['peak_rss_mib']:12.0f} {ratio:>8}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
