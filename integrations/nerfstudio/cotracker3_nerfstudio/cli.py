"""ns-process-data-track: ns-process-data with point tracking (CoTracker3) in place of feature matching.

Turns a video (``video``) or a folder of frames (``images``) into a nerfstudio dataset:
images/, images_2/ ..., colmap/sparse/0, transforms.json and sparse_pc.ply exactly as
ns-process-data lays them out, plus tracks.npz (the point tracks) and scene.npz.
Then train as usual: ``ns-train splatfacto --data OUTPUT_DIR``.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from cotracker3_nerfstudio.process_data import ProcessDataConfig, process_data, registered_summary
from cotracker3_plugin.cli._common import run_reporting_errors


@dataclass(kw_only=True)
class _Command(ProcessDataConfig):
    data: Path
    """The video file (video) or the folder of frames (images)."""
    output_dir: Path
    """Where to write the nerfstudio dataset (created atomically)."""

    def config(self) -> ProcessDataConfig:
        fields = ProcessDataConfig.__dataclass_fields__
        return ProcessDataConfig(**{k: getattr(self, k) for k in fields})


@dataclass
class ProcessVideo(_Command):
    """Track points through a video, estimate cameras and points, write a nerfstudio dataset."""


@dataclass
class ProcessImages(_Command):
    """Track points through a folder of frames of one sequence (name order), write a nerfstudio dataset."""


def _parse(args: list[str] | None) -> _Command:
    import tyro

    commands = {
        "video": Annotated[ProcessVideo, tyro.conf.subcommand(name="video", description=ProcessVideo.__doc__)],
        "images": Annotated[ProcessImages, tyro.conf.subcommand(name="images",
                                                                description=ProcessImages.__doc__)],
    }
    return tyro.cli(commands["video"] | commands["images"], args=args, prog="ns-process-data-track",
                    description=__doc__)


def main(args: list[str] | None = None) -> int:
    """Parse ``args`` (default: sys.argv), run, print a summary; returns the exit code."""
    raw = list(sys.argv[1:] if args is None else args)
    verbose = "--verbose" in raw
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    cmd = _parse(raw)
    start = time.perf_counter()
    result: list[Path] = []
    code = run_reporting_errors(lambda: result.append(process_data(cmd.data, cmd.output_dir, cmd.config())),
                                verbose=verbose)
    if code:
        return code
    out = result[0]
    s = registered_summary(out)
    print(f"Tracked {s['tracks']} points through {s['frames']} frames; registered {s['registered']} of "
          f"{s['frames']} frames ({100 * s['registered_share']:.0f}%), {s['points']} 3D points, "
          f"{time.perf_counter() - start:.1f} s.")
    print(f"Wrote {out}/transforms.json. Train with: ns-train splatfacto --data {out}")
    return 0


def entrypoint() -> None:
    """Console script ``ns-process-data-track``."""
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    entrypoint()
