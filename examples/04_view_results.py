"""View tracks (and a reconstruction) in the browser with viser.

    python examples/04_view_results.py OUTPUT_DIR            # a folder from `cotracker3 track/reconstruct/run`
    python examples/04_view_results.py --demo                # a synthetic scene, no model needed
    python examples/04_view_results.py --demo --export demo.html --render demo.mp4

The same as `cotracker3 view OUTPUT_DIR`, written out with the Python API:
``load_output`` reads tracks.npz / scene.npz / the frames, ``show`` serves the viewer
(open the printed URL), and the handle exports a self-contained .html that plays
without Python, or renders the 2D overlay to mp4.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cotracker3_viser import ViewerConfig, load_output, show
from cotracker3_viser.export import export_recording, render_video
from cotracker3_viser.synthetic import make_synthetic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("output_dir", nargs="?", type=Path, help="output folder holding tracks.npz")
    ap.add_argument("--demo", action="store_true", help="show a synthetic scene instead")
    ap.add_argument("--video", type=Path, default=None, help="the video, if the folder does not name it")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--export", type=Path, default=None, help="write a .html or .viser recording and exit")
    ap.add_argument("--render", type=Path, default=None, help="write the 2D overlay as mp4 and exit")
    args = ap.parse_args()
    if args.demo:
        clip, tracks, scene = make_synthetic(num_points=2000, num_frames=60, size=(240, 320))
    elif args.output_dir is not None:
        loaded = load_output(args.output_dir, args.video)
        clip, tracks, scene = loaded.clip, loaded.tracks, loaded.scene
    else:
        ap.error("give an OUTPUT_DIR or --demo")

    if args.render:
        render_video(clip, tracks, args.render)
        print(f"wrote {args.render}")
    handle = show(clip, tracks, scene, port=args.port, block=False, config=ViewerConfig(trail_length=12))
    if args.export:
        export_recording(handle.viewer, args.export)
        print(f"wrote {args.export}")
    if args.export or args.render:
        handle.stop()
        return
    print(f"Viewer running at {handle.url} (Ctrl-C to stop)")
    handle.wait()


if __name__ == "__main__":
    main()
