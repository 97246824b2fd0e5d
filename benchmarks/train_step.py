"""Wall time of one CoTracker3 training step (forward, loss, backward, AdamW) on CPU or GPU.

Runs the real training loop (:class:`cotracker3_plugin.train.trainer.Trainer` with the supervised
step) on one pre-rendered synthetic clip repeated, so data generation is not timed. Cases:

* ``small-offline`` / ``small-online``: the small bundled architecture, 96x128, 24 frames, 64 tracks
  (a CPU training setting);
* ``official-offline`` / ``official-online``: the official architecture at 384x512 with
  ``--official-frames`` frames and ``--official-tracks`` tracks (the official recipe is 60 frames /
  512 tracks offline and 64 / 384 online; the defaults here are smaller so a step fits a 2-core,
  ~16 GB machine; pass the official numbers on bigger hardware).

Every case runs once per ``--precisions`` entry (fp32, and bf16 autocast of the forward pass as the
trainer's ``--precision bf16``; on a CPU without bf16 units bf16 is emulated and slower: the row is a
smoke run there, the numbers that matter come from GPUs).

Prints per case: median and min wall seconds per step, CPU seconds per step (with --threads 1
this is close to the wall time on an idle machine and much less sensitive to other load), peak
resident memory, and the CPU time per (frame x track) relative to the first case. Example::

    python benchmarks/train_step.py --cases small-offline small-online --steps 3
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cotracker3_plugin.train.config import OptimConfig, TrainerConfig, model_config
from cotracker3_plugin.train.data import BatchStream
from cotracker3_plugin.train.synthetic import SyntheticConfig, SyntheticGenerator
from cotracker3_plugin.train.trainer import Trainer, supervised_step
from cotracker3_plugin.weights import build_model


class _Repeat:
    """A sample source that always returns the same clip."""

    def __init__(self, sample):
        self.s = sample

    def __len__(self):
        return 1

    def sample(self, index, rng):
        return self.s


def run_case(kind: str, online: bool, size: tuple[int, int], frames: int, tracks: int, steps: int,
             device: torch.device, fast: bool = True, precision: str = "fp32") -> dict:
    gen = SyntheticGenerator(SyntheticConfig(num_frames=frames, height=size[0], width=size[1], num_tracks=tracks,
                                             candidates_per_track=2))
    sample = None
    i = 0
    while sample is None:
        sample = gen.sample(i, np.random.default_rng(i))
        i += 1
    torch.manual_seed(0)
    model = build_model(model_config(kind, online, size), online)
    model.set_fast(fast)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainerConfig(output_dir=Path(tmp), num_steps=steps + 1, checkpoint_every=0, eval_every=0,
                            log_every=0, tensorboard=False, optim=OptimConfig(), precision=precision)
        step = supervised_step(online, model.window_len, iters=4, query_sampling="first" if online else "random")
        trainer = Trainer(model, BatchStream(_Repeat(sample)), step, cfg, device=device)
        times, cpu = [], []
        for _ in range(steps + 1):  # the first step warms up allocators and kernels
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
            trainer._one_step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    params = sum(p.numel() for p in model.parameters())
    return {"params": params, "frames": frames, "tracks": tracks, "size": size, "times": times[1:],
            "median": statistics.median(times[1:]), "min": min(times[1:]), "cpu": statistics.median(cpu[1:]),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", default=["small-offline", "small-online", "official-offline",
                                                    "official-online"])
    p.add_argument("--steps", type=int, default=3, help="timed steps per case (after one warm-up step)")
    p.add_argument("--official-frames", type=int, default=24)
    p.add_argument("--official-tracks", type=int, default=128)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-fast", action="store_true", help="use the model's reference kernels")
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "fp16"],
                   help="one row per precision of the forward pass (the trainer's --precision)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads; shared machines are noisy: "
          "compare cases measured in the same run")
    base = None
    for case in a.cases:
        kind, mode = case.split("-")
        online = mode == "online"
        if kind == "small":
            size, frames, tracks = (96, 128), 24, 64
        else:
            size, frames, tracks = (384, 512), a.official_frames, a.official_tracks
        for precision in a.precisions:
            r = run_case(kind, online, size, frames, tracks, a.steps, device, fast=not a.no_fast,
                         precision=precision)
            per = r["cpu"] / (frames * tracks)
            base = base or per
            print(f"{case:18s} {precision:4s} {r['params'] / 1e6:5.2f} M params  {size[0]}x{size[1]} T={frames:3d} "
                  f"N={tracks:4d}  wall median {r['median']:7.2f} s/step (min {r['min']:7.2f})  CPU {r['cpu']:7.2f} "
                  f"s/step  peak RSS {r['peak_rss_mib']:6.0f} MiB  CPU per frame*track x{per / base:.2f} vs first row",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
