"""Server-side time to push one frame update in the viser viewer (20k points x 300 frames).

Builds a synthetic clip/tracks/scene (cotracker3_viser.synthetic), starts the viewer on a
free localhost port, optionally connects headless Chromium (so messages really go over the
websocket), then steps the frame slider through the clip and reports the time of each
``set_frame`` call: drawing the 2D overlay, encoding it, lifting the 3D trails and queueing
all scene/GUI messages.

    python benchmarks/viewer_update.py                  # 20k points, 300 frames
    python benchmarks/viewer_update.py --points 2000 --frames 60 --browser
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from cotracker3_viser.server import headless_viewer
from cotracker3_viser.synthetic import make_synthetic
from cotracker3_viser.viewer import ViewerConfig

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def measure(clip, tracks, scene, cfg: ViewerConfig, steps: int, browser: bool) -> dict[str, float]:
    with headless_viewer(clip, tracks, scene, cfg) as viewer:
        ctx = None
        if browser:
            from playwright.sync_api import sync_playwright

            ctx = sync_playwright().start()
            b = ctx.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = b.new_page(viewport={"width": 1000, "height": 700})
            page.goto(f"http://127.0.0.1:{viewer.server.get_port()}")
            page.get_by_text("Playback").first.wait_for(timeout=60000)
            time.sleep(1.0)
        viewer.update_times.clear()
        start, cpu0 = time.perf_counter(), time.process_time()
        for t in range(1, min(steps, clip.num_frames - 1) + 1):
            viewer.set_frame(t)
        total, cpu = time.perf_counter() - start, time.process_time() - cpu0
        times = np.array(viewer.update_times) * 1000
        if ctx is not None:
            ctx.stop()
    return {"median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)),
            "cpu_ms": 1000 * cpu / len(times), "fps_equiv": len(times) / total}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=20000)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--steps", type=int, default=60, help="frame updates to time")
    ap.add_argument("--size", type=int, nargs=2, default=(360, 640), metavar=("H", "W"))
    ap.add_argument("--browser", action="store_true", help="connect headless Chromium while timing")
    args = ap.parse_args()

    t0 = time.perf_counter()
    clip, tracks, scene = make_synthetic(args.points, args.frames, tuple(args.size))
    print(f"synthetic data: {args.points} points x {args.frames} frames at {args.size[1]}x{args.size[0]} "
          f"in {time.perf_counter() - t0:.1f} s")
    cases = [
        ("scene, trails 10, max_trails 5000", scene, ViewerConfig(trail_length=10, max_trails=5000)),
        ("scene, trails 10, all 20k trails", scene, ViewerConfig(trail_length=10, max_trails=args.points)),
        ("scene, no 3D trails (trail 0)", scene, ViewerConfig(trail_length=0)),
        ("no scene (2D only), trails 10", None, ViewerConfig(trail_length=10)),
    ]
    # Wall times suffer from other processes on a shared machine; CPU ms (all threads of
    # this process, per update) is the steadier number.
    print(f"{'case':40s} {'median ms':>10s} {'p90 ms':>8s} {'CPU ms':>8s} {'updates/s':>10s}")
    for name, sc, cfg in cases:
        r = measure(clip, tracks, sc, cfg, args.steps, args.browser)
        print(f"{name:40s} {r['median_ms']:10.1f} {r['p90_ms']:8.1f} {r['cpu_ms']:8.1f} {r['fps_equiv']:10.1f}")


if __name__ == "__main__":
    main()
