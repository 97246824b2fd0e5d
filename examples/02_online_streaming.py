"""Track points while the video is still being read, with the online model.

    python examples/02_online_streaming.py
    python examples/02_online_streaming.py --video my.mp4 --model cotracker3_online

Frames are decoded one at a time (iter_frames never holds the whole video) and pushed into an
OnlineSession; every 8 frames the model runs on the last 16 and the tracks of those frames
become final. The same loop works for a camera feed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cotracker3_plugin.io import iter_frames
from cotracker3_plugin.predict import OnlineSession
from cotracker3_plugin.weights import load_model

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=HERE / "data" / "cat.mp4", help="video file or image folder")
    parser.add_argument("--model", default=None,
                        help="cotracker3_online, a checkpoint path, or unset for the bundled model")
    parser.add_argument("--grid-size", type=int, default=10, help="track a grid of N x N points")
    parser.add_argument("--max-frames", type=int, default=None, help="read at most this many frames")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps")
    parser.add_argument("--output", type=Path, default=Path("outputs") / "example_02")
    args = parser.parse_args(argv)

    model = load_model(args.model, online=True, device=args.device)
    session = OnlineSession(model, grid_size=args.grid_size)

    for index, frame in iter_frames(args.video, max_frames=args.max_frames, max_side=960):
        final = session.push(frame)  # None until a window completes
        if final is not None:
            first = int(final.meta["first_frame"])
            print(f"frame {index:4d}: frames {first}..{first + final.num_frames - 1} final, "
                  f"{100 * final.mean_visibility():.0f}% visible")

    tracks = session.finish()  # runs the model on the last, partial window
    print(f"{tracks.num_points} tracks over {tracks.num_frames} frames")
    args.output.mkdir(parents=True, exist_ok=True)
    tracks.save(args.output / "tracks.npz")
    print(f"wrote {args.output / 'tracks.npz'}")
    return args.output


if __name__ == "__main__":
    main()
