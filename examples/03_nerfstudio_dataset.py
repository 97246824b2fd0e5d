"""Turn a video into a nerfstudio dataset with a track step, then load it with nerfstudio's own parser.

    python examples/03_nerfstudio_dataset.py                                   # the bundled cat clip
    python examples/03_nerfstudio_dataset.py --data my.mp4 --tracker cotracker3 --model cotracker3_offline
    python examples/03_nerfstudio_dataset.py --data ../shared/data/fox/images --tracker klt --max-side 480

Writes outputs/example_03/ (images/, images_2/, colmap/sparse/0, transforms.json,
sparse_pc.ply, tracks.npz, scene.npz) — the same as
`ns-process-data-track video --data VIDEO --output-dir outputs/example_03`, written out as
library calls. Needs nerfstudio's process-data utilities (see the README, nerfstudio set-up).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cotracker3_nerfstudio.process_data import ProcessDataConfig, process_data, registered_summary

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE / "data" / "cat.mp4", help="video file or image folder")
    parser.add_argument("--tracker", default="cotracker3", choices=["cotracker3", "cotracker3-online", "klt"])
    parser.add_argument("--model", default=None, help="checkpoint name or path; unset: the bundled model")
    parser.add_argument("--max-side", type=int, default=640, help="longer side of the frames, pixels")
    parser.add_argument("--output", type=Path, default=Path("outputs") / "example_03")
    args = parser.parse_args(argv)

    # 1. Decode, track, estimate cameras and points, write the dataset (atomically).
    config = ProcessDataConfig(tracker=args.tracker, model=args.model, max_side=args.max_side,
                               num_downscales=1, overwrite=True)
    out = process_data(args.data, args.output, config)
    s = registered_summary(out)
    print(f"{out}: {s['registered']} of {s['frames']} frames registered, {s['points']} points")

    # 2. nerfstudio reads it like any ns-process-data output (poses, intrinsics, point cloud).
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    outputs = NerfstudioDataParserConfig(data=out, load_3D_points=True).setup().get_dataparser_outputs("train")
    cams = outputs.cameras
    print(f"nerfstudio: {len(cams)} training cameras, fx={cams.fx[0].item():.1f}px, "
          f"{len(outputs.metadata['points3D_xyz'])} points; train with: ns-train splatfacto --data {out}")
    return out


if __name__ == "__main__":
    main()
