"""Dense triangulation: points, time, points/s, peak memory and accuracy as the query grid grows.

Runs :func:`cotracker3_plugin.reconstruct.densify.densify` on the rendered scenes of
``../shared/data/scenes`` with their ground-truth cameras (so the numbers judge densification,
not the camera solve):

- ``static_room``: accuracy = depth error of each point in its query camera against the
  rendered depth, in % of the camera path radius (median, share within 2 %);
- ``dynamic_room``: the same, plus the points made from pixels of the moving subjects (gt
  ``objid`` > 0 at the query pixel): with ``exclude_mask = objid > 0`` (must be 0) and, as a
  control, without any mask (what the geometric filters alone let through).

Every configuration runs in its own process, so that peak RSS (``resource.getrusage``) is its
own. The CPU model is printed from ``lscpu``.

  python benchmarks/densify.py                          # grids 16 32 48 64, KLT, both scenes
  python benchmarks/densify.py --grids 64 --tracker bundled --query-frames 16
  python benchmarks/densify.py --smoke                  # grid 16, 2 query frames: a quick check
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

ROOT = Path(__file__).resolve().parents[1]
SCENES = Path(os.environ.get("COTRACKER3_SHARED", ROOT.parent / "shared")) / "data" / "scenes"


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown (lscpu failed)"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def run_one(scene_name: str, grid: int, query_frames: int, tracker: str, masked: bool, photometric: bool = True,
            drop_unrefined: bool = True, max_depth_per_pixel: float | None = 0.05) -> dict:
    """One densify run in this process; returns its numbers (peak RSS of this process)."""
    import torch

    from cotracker3_plugin.evaluate.dense_depth import depth_errors
    from cotracker3_plugin.io import load_clip
    from cotracker3_plugin.reconstruct.densify import DensifyConfig, densify, make_track_fn
    from cotracker3_plugin.reconstruct.scene import Scene

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    folder = SCENES / scene_name
    with np.load(folder / "gt.npz") as z:
        gt = {k: z[k] for k in z.files}
    clip = load_clip(folder / "video.mp4")
    t = clip.num_frames
    scene = Scene(intrinsics=gt["K"][None], image_size=clip.frame_size, camera_index=np.zeros(t, np.int64),
                  world_from_cam=gt["cam_to_world"], registered=np.ones(t, bool), points=np.zeros((0, 3)),
                  colors=np.zeros((0, 3), np.uint8), track_ids=np.zeros(0, np.int64))
    if tracker == "klt":
        track_fn = make_track_fn("klt")
    else:
        from cotracker3_plugin.weights import load_model

        track_fn = make_track_fn(load_model(None, device="cuda" if torch.cuda.is_available() else "cpu"))
    moving = gt["objid"] > 0 if "objid" in gt else None
    mask = moving if masked else None
    start = time.perf_counter()
    cloud = densify(scene, clip, track_fn, DensifyConfig(grid_size=grid, num_query_frames=query_frames,
                                                           photometric=photometric, drop_unrefined=drop_unrefined,
                                                           max_depth_per_pixel=max_depth_per_pixel),
                    exclude_mask=mask)
    seconds = time.perf_counter() - start
    err = depth_errors(cloud.points, cloud.query_frames, gt["K"], gt["cam_to_world"], gt["depth"])
    row = {
        "scene": scene_name, "tracker": tracker, "grid": grid, "query_frames": query_frames,
        "mask": "objid>0" if masked else ("none" if moving is not None else "-"),
        "queries": cloud.stats.queries, "points": len(cloud), "seconds": round(seconds, 2),
        "points_per_s": round(len(cloud) / max(seconds, 1e-9), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "median_err_pct_radius": round(100 * float(np.median(err)), 3) if len(err) else None,
        "within_2pct": round(100 * float(np.mean(err <= 0.02)), 1) if len(err) else None,
        "removed": cloud.stats.removed(), "refined": cloud.stats.refined,
        "photometric_s": round(cloud.stats.photometric_s, 2),
    }
    if moving is not None:
        xi, yi = np.rint(cloud.query_xy).astype(np.int64).T
        row["on_moving"] = int(moving[cloud.query_frames, yi, xi].sum())
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grids", type=int, nargs="+", default=[16, 32, 48, 64])
    ap.add_argument("--query-frames", type=int, default=16)
    ap.add_argument("--scenes", nargs="+", default=["static_room", "dynamic_room"])
    ap.add_argument("--tracker", choices=["klt", "bundled"], default="klt")
    ap.add_argument("--photometric", choices=["on", "off", "keep"], default="on",
                    help="photometric depth sweep: on (the default: points it cannot refine are dropped), off, or keep (on, keeping the points it cannot refine)")
    ap.add_argument("--max-depth-per-pixel", type=float, default=0.05,
                    help="DensifyConfig.max_depth_per_pixel (0: off)")
    ap.add_argument("--smoke", action="store_true", help="grid 16, 2 query frames")
    ap.add_argument("--one", nargs=3, metavar=("SCENE", "GRID", "MASKED"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        scene, grid, masked = args.one
        print(json.dumps(run_one(scene, int(grid), args.query_frames, args.tracker, masked == "1",
                                 args.photometric != "off", args.photometric != "keep",
                                 args.max_depth_per_pixel or None)))
        return 0
    if args.smoke:
        args.grids, args.query_frames = [16], 2
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs)")
    print(f"tracker {args.tracker}, {args.query_frames} query frames, photometric sweep {args.photometric}, "
          f"max depth per pixel {args.max_depth_per_pixel}, ground-truth cameras\n")
    cols = ["scene", "mask", "grid", "queries", "points", "seconds", "points_per_s", "peak_rss_mb",
            "median_err_pct_radius", "within_2pct", "on_moving"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for scene in args.scenes:
        for grid in args.grids:
            for masked in ([True, False] if scene == "dynamic_room" else [False]):
                cmd = [sys.executable, __file__, "--one", scene, str(grid), "1" if masked else "0",
                       "--query-frames", str(args.query_frames), "--tracker", args.tracker,
                       "--photometric", args.photometric, "--max-depth-per-pixel", str(args.max_depth_per_pixel)]
                out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
                if out.returncode != 0:
                    print(f"| {scene} | failed: {out.stderr.strip().splitlines()[-1:]} |")
                    continue
                row = json.loads(out.stdout.strip().splitlines()[-1])
                print("| " + " | ".join(str(row.get(c, "-")) for c in cols) + " |", flush=True)
                print(f"  removed by filter: {row['removed']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
