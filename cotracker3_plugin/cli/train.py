"""Train CoTracker3 with ground-truth tracks: synthetic clips made on the fly, or Kubric MOVi-F.

Defaults follow the official Kubric recipe (AdamW 5e-4, one-cycle schedule, 50k steps, offline
clips of 30-59 frames with 512 tracks at 384x512, 4 iterations). A quick CPU run of the small
model on synthetic data:

    cotracker3 train --model small --crop-size 96 128 --seq-len 24 --traj-per-sample 64 \\
        --num-steps 2000 --output-dir runs/small

3-D synthetic clips (ray-cast rooms with boxes and spheres, a hand-held camera, objects moving on
their own: parallax and self-occlusion the layered clips lack): --data synthetic3d, or mix them in
with --synthetic3d-ratio 0.5.

Rerunning with the same --output-dir resumes from the newest checkpoint. Several GPUs (or CPU
processes, gloo): ``torchrun --nproc-per-node 4 -m cotracker3_plugin train ...``.
The final weights (output-dir/final.safetensors) load with ``cotracker3 track --model PATH``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from cotracker3_plugin.cli._common import training_progress
from cotracker3_plugin.train.config import TrainConfig

log = logging.getLogger("cotracker3_plugin.cli.train")


@dataclass
class Config(TrainConfig):
    """Supervised CoTracker3 training (see the command's description)."""


def run(cfg: Config) -> int:
    from cotracker3_plugin.train.supervised import run_training
    from cotracker3_plugin.train.trainer import current_dist

    start = time.perf_counter()
    with training_progress(cfg.num_steps) as on_step:
        result = run_training(cfg, on_step=on_step)
    if current_dist().is_main:
        minutes = (time.perf_counter() - start) / 60
        where = cfg.output_dir
        if result.stopped_early:
            print(f"Stopped at step {result.step} of {cfg.num_steps} after {minutes:.1f} min; "
                  f"rerun the same command to continue (checkpoint {result.checkpoint}).")
        else:
            print(f"Trained {result.step} steps in {minutes:.1f} min; final weights {where / 'final.safetensors'}")
        if result.evaluations:
            last = result.evaluations[-1]
            print("Held-out synthetic: " + ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k != "step"))
    return 0
