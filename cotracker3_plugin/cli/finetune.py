"""Fine-tune a trained CoTracker3 on real, unlabelled videos with pseudo-labels from frozen teachers.

The paper's recipe (ARCHITECTURE.md §5): per batch one teacher, drawn uniformly from --teachers,
labels SIFT query points on a random real clip; the student learns the teacher's tracks (track
losses only, vis/conf head frozen). Defaults are the official ones: AdamW lr 5e-5, weight decay
1e-5, no warm-up, gradient clipping 10, 15k steps, 384 tracks, clips of 40-79 frames (offline)
or 64 (online) at 384x512.

    cotracker3 finetune --init-from runs/pretrain/final.safetensors --data.root VIDEOS \\
        --teachers self klt --output-dir runs/finetune

CPU-friendly overrides for a small model: --crop-size 96 128 --seq-len 24 --traj-per-sample 64
--data.max-side 256 --num-steps 500. Teachers: `self` (the student's own initial weights), `klt`,
a checkpoint path, or cotracker3_offline / cotracker3_online (optionally prefixed online:/offline:);
append +lk (e.g. self+lk) for chained KLT's labels while KLT holds a point and that teacher's, sharpened
by Lucas-Kanade, after.

Pseudo-labels can be made once and reused: add --precompute --cache-dir DIR (one .npz shard per clip,
resumable, `torchrun --nproc-per-node K -m cotracker3_plugin finetune --precompute ...` splits the
videos over K processes), then train with --cache-dir DIR. Rerunning with the same --output-dir
resumes; the final weights (output-dir/final.safetensors) load with `cotracker3 track --model PATH`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from cotracker3_plugin.cli._common import training_progress
from cotracker3_plugin.train.finetune import FinetuneConfig

log = logging.getLogger("cotracker3_plugin.cli.finetune")


@dataclass
class Config(FinetuneConfig):
    """Pseudo-label fine-tuning (see the command's description)."""


def _precompute(cfg: Config) -> int:
    import os

    import torch
    from tqdm import tqdm

    from cotracker3_plugin.train.finetune import build_student, build_teachers, validate
    from cotracker3_plugin.train.pseudo_label_cache import precompute_pseudo_labels
    from cotracker3_plugin.train.real_videos import list_videos
    from cotracker3_plugin.train.supervised import resolve_train_device
    from cotracker3_plugin.train.trainer import DistInfo, seeded

    validate(cfg)
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_train_device(cfg.device, DistInfo(rank, world, int(os.environ.get("LOCAL_RANK", "0"))))
    with seeded(cfg.seed):
        student = build_student(cfg)  # only needed for the `self` teacher
    from cotracker3_plugin.train.finetune import _resolved

    cfg = _resolved(cfg, student)  # type: ignore[assignment]
    teachers = build_teachers(cfg.teachers, student, device, iters=cfg.teacher_iters, seed=cfg.seed)
    del student
    total = len(range(rank, len(list_videos(cfg.data.root)), world)) * cfg.clips_per_video
    start = time.perf_counter()
    with tqdm(total=total, unit="clip", dynamic_ncols=True, disable=rank != 0) as bar, torch.no_grad():
        report = precompute_pseudo_labels(
            cfg.clip_config(), teachers, cfg.cache_dir, clips_per_video=cfg.clips_per_video,  # type: ignore[arg-type]
            num_queries=cfg.traj_per_sample, seed=cfg.seed, rank=rank, world_size=world, device=device,
            progress=lambda _msg: bar.update(1))
        bar.update(report.existing)
    print(f"rank {rank}: {report.written} shards written, {report.existing} already present, "
          f"{report.sift_failed} clips with too few SIFT points, in {(time.perf_counter() - start) / 60:.1f} min "
          f"-> {cfg.cache_dir}")
    return 0


def run(cfg: Config) -> int:
    if cfg.precompute:
        return _precompute(cfg)
    from cotracker3_plugin.train.finetune import run_finetune
    from cotracker3_plugin.train.trainer import current_dist

    start = time.perf_counter()
    with training_progress(cfg.num_steps, skipped="sift_skipped_total") as on_step:
        result = run_finetune(cfg, on_step=on_step)
    if current_dist().is_main:
        minutes = (time.perf_counter() - start) / 60
        if result.stopped_early:
            print(f"Stopped at step {result.step} of {cfg.num_steps} after {minutes:.1f} min; "
                  f"rerun the same command to continue (checkpoint {result.checkpoint}).")
        else:
            print(f"Fine-tuned {result.step} steps in {minutes:.1f} min; final weights "
                  f"{cfg.output_dir / 'final.safetensors'}")
        if result.evaluations:
            last = result.evaluations[-1]
            print("Held-out synthetic: " + ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k != "step"))
    return 0
