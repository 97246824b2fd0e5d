"""Clips per second of the synthetic generators (layered 2-D and ray-cast 3-D) on one CPU core.

Training makes its clips on the fly in the training process, so a generator slower than a training
step stalls the GPU. Prints wall and CPU clips/s per generator and size (CPU time is less sensitive to
other load on a shared machine). Example::

    python benchmarks/synthetic_speed.py --clips 10 --sizes 96x128 192x256 --frames 24
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from cotracker3_plugin.train.synthetic import SyntheticConfig, SyntheticGenerator
from cotracker3_plugin.train.synthetic3d import Synthetic3DConfig, Synthetic3DGenerator


def measure(gen, clips: int) -> tuple[float, float, int]:
    """(wall clips/s, CPU clips/s, usable clips) over ``clips`` seeds after one warm-up clip."""
    gen.sample(10_000, np.random.default_rng(10_000))
    t0, c0 = time.perf_counter(), time.process_time()
    usable = sum(gen.sample(i, np.random.default_rng(i)) is not None for i in range(clips))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return clips / wall, clips / cpu, usable


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=10)
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--tracks", type=int, default=64)
    p.add_argument("--sizes", nargs="+", default=["96x128", "192x256"])
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    import cv2

    cv2.setNumThreads(1)
    print("one thread; timings on a shared machine are noisy (compare rows of one run)")
    for size in a.sizes:
        h, w = (int(v) for v in size.split("x"))
        for name, gen in (
            ("layered", SyntheticGenerator(SyntheticConfig(num_frames=a.frames, height=h, width=w, num_tracks=a.tracks))),
            ("3d", Synthetic3DGenerator(Synthetic3DConfig(num_frames=a.frames, height=h, width=w,
                                                          num_tracks=a.tracks))),
        ):
            wall, cpu, usable = measure(gen, a.clips)
            print(f"{name:8s} {h}x{w} T={a.frames}: {wall:5.2f} clips/s wall, {cpu:5.2f} clips/s CPU "
                  f"({usable}/{a.clips} usable)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
