"""Track a grid of points through a video and save the tracks and an overlay video.

    python examples/01_track_video.py                        # the bundled cat clip
    python examples/01_track_video.py --video my.mp4 --model cotracker3_offline

Writes outputs/example_01/tracks.npz (cotracker3_plugin.tracks.Tracks) and tracks.mp4.
The same as `cotracker3 track VIDEO`, written out as library calls.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cotracker3_plugin.io import load_clip, write_overlay
from cotracker3_plugin.predict import track
from cotracker3_plugin.weights import load_model

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=HERE / "data" / "cat.mp4", help="video file or image folder")
    parser.add_argument("--model", default=None,
                        help="cotracker3_offline, cotracker3_online, a checkpoint path, or unset for the bundled model")
    parser.add_argument("--grid-size", type=int, default=10, help="track a grid of N x N points")
    parser.add_argument("--max-frames", type=int, default=None, help="read at most this many frames")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps")
    parser.add_argument("--output", type=Path, default=Path("outputs") / "example_01")
    args = parser.parse_args(argv)

    # 1. Decode: (T, H, W, 3) uint8 RGB frames, rotation applied, longer side at most 960 px.
    clip = load_clip(args.video, max_frames=args.max_frames, max_side=960)
    print(f"{clip.source}: {len(clip)} frames, {clip.width}x{clip.height}, {clip.fps:g} fps")

    # 2. The model (weights are cached after the first download for the official names).
    model = load_model(args.model, device=args.device)

    # 3. Track: queries on a grid on frame 0; xy are pixels of the clip (x right, y down).
    tracks = track(clip, model, grid_size=args.grid_size)
    print(f"{tracks.num_points} tracks, {100 * tracks.mean_visibility():.0f}% visible on average")

    # 4. Save: the tracks and the frames with the tracks drawn on them.
    args.output.mkdir(parents=True, exist_ok=True)
    tracks.save(args.output / "tracks.npz")
    write_overlay(args.output / "tracks.mp4", clip, tracks)
    print(f"wrote {args.output / 'tracks.npz'} and {args.output / 'tracks.mp4'}")
    return args.output


if __name__ == "__main__":
    main()
