"""Make a TAP-Vid-format evaluation set with exact ground truth from real images.

Each video is a real image (a video frame, a photo) seen through a smoothly moving virtual
camera (rotation, zoom, translation, a little perspective: one homography per frame), with
real-image occluders sliding over it. Ground-truth tracks are exact (the homographies are
known), occlusion comes from the occluders' masks and from leaving the frame. The same
--seed gives the same set.

Writes OUTPUT/benchmark.pkl (TAP-Vid DAVIS layout: name -> video, points normalised by
size-1, occluded), OUTPUT/benchmark.npz (the same plus homographies and pixel tracks) and
OUTPUT/meta.json. Evaluate with `cotracker3 evaluate --dataset benchmark --data OUTPUT`.

Examples:
  cotracker3 make-benchmark --output bench
  cotracker3 make-benchmark --output bench_big --num-videos 30 --seed 1 --sources my_photos/ clip.mp4
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import tyro

from cotracker3_plugin.evaluate.make_benchmark import BenchmarkConfig, make_benchmark, write_benchmark

log = logging.getLogger("cotracker3_plugin.cli.make_benchmark")


@tyro.conf.configure(tyro.conf.FlagCreatePairsOff)
@dataclass
class Config:
    """Options of `cotracker3 make-benchmark`."""

    output: Path = Path("benchmark")
    """Output folder (written atomically)."""
    benchmark: Annotated[BenchmarkConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=BenchmarkConfig)
    """How to make the benchmark (flags without a prefix: --seed, --num-videos, ...)."""
    overwrite: bool = False
    """Replace the output folder if it exists."""
    verbose: bool = False
    """Debug logging, and full tracebacks on errors."""


def run(cfg: Config) -> int:
    bench = cfg.benchmark
    if cfg.output.exists() and not cfg.overwrite:
        # Fail before the work, not after it (write_benchmark checks again).
        from cotracker3_plugin.errors import OutputExistsError

        raise OutputExistsError(f"The output folder {cfg.output} already exists. Choose another "
                                "--output folder, or pass --overwrite to replace it.")
    videos = make_benchmark(bench, progress=log.info)
    write_benchmark(videos, cfg.output, bench, overwrite=cfg.overwrite)
    n_pts = sum(len(v.points) for v in videos.values())
    n_frames = sum(len(v.video) for v in videos.values())
    print(f"Wrote {len(videos)} videos ({n_frames} frames, {n_pts} tracks) to {cfg.output}")
    return 0
