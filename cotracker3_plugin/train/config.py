"""Configuration of supervised CoTracker3 training (defaults = the official Kubric recipe, §4.4).

:class:`TrainerConfig` holds what any training loop needs (optimiser, schedule, precision,
checkpoints, logging) and is reused by pseudo-label fine-tuning; :class:`TrainConfig` adds the
supervised data source and the model choice. Field docstrings are the ``--help`` text.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cotracker3_plugin.train.losses import LossConfig
from cotracker3_plugin.train.synthetic import SyntheticConfig
from cotracker3_plugin.train.synthetic3d import Synthetic3DConfig


@dataclass
class OptimConfig:
    """AdamW with a one-cycle learning-rate schedule and gradient clipping."""

    lr: float = 5e-4
    """Peak learning rate."""
    weight_decay: float = 5e-4
    """AdamW weight decay (official launch scripts: 5e-4)."""
    eps: float = 1e-8
    """AdamW epsilon."""
    pct_start: float = 0.05
    """Fraction of the schedule spent warming up (0 = cosine decay from the peak)."""
    schedule_extra_steps: int = 100
    """The one-cycle schedule spans num_steps + this many steps (as the official code)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0 disables clipping)."""


@dataclass
class TrainerConfig:
    """The training loop: steps, optimiser, precision, devices, checkpoints and logs."""

    output_dir: Path = Path("runs/train")
    """Folder for checkpoints (checkpoints/), logs (log.csv, eval.csv) and the final weights.
    A run restarted with the same folder resumes from its newest checkpoint."""
    num_steps: int = 50_000
    """Optimiser steps of the whole run (per rank; every rank takes one batch per step)."""
    batch_size: int = 1
    """Clips per step and rank."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimiser and schedule."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """Autocast precision of the forward pass (losses are computed in fp32): auto = bf16 on CUDA GPUs that
    support it (as the official runs), fp32 on CPU; bf16 also runs on CPU when asked (emulated unless the CPU
    has bf16 units: for checks, not speed); fp16 needs CUDA (with a gradient scaler)."""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N (under torchrun each rank uses cuda:LOCAL_RANK)."""
    seed: int = 42
    """Seed of the model initialisation, the data stream and the query sampling."""
    checkpoint_every: int = 1000
    """Save a resumable checkpoint every this many steps (0: only at the end or when stopped)."""
    keep_checkpoints: int = 3
    """How many of the newest checkpoints to keep."""
    resume: bool = True
    """Resume from the newest checkpoint in output_dir/checkpoints if there is one."""
    stop_after: int | None = None
    """Stop (with a checkpoint) after this many steps of this invocation; rerun to continue.
    Useful for time-limited jobs; the continuation is identical to an uninterrupted run."""
    stop_after_seconds: float | None = None
    """Stop (with a checkpoint) at the first step boundary after this many seconds of training in this
    invocation; rerun to continue. For jobs with a wall-clock limit (scripts/train_device.sh); the
    continuation is the same as with --stop-after."""
    eval_every: int = 1000
    """Evaluate on held-out clips every this many steps (0 disables); also at the end."""
    log_every: int = 10
    """Write a log.csv row every this many steps."""
    tensorboard: bool = True
    """Also write TensorBoard scalars when the tensorboard package is installed."""


@dataclass
class TrainConfig(TrainerConfig):
    """Supervised training on synthetic ground truth or the official Kubric MOVi-F set."""

    data: Literal["synthetic", "synthetic3d", "kubric"] = "synthetic"
    """Training data: synthetic (layered 2-D clips made on the fly; mixed with 3-D ones by
    --synthetic3d-ratio), synthetic3d (ray-cast 3-D rooms with boxes and spheres, a hand-held camera
    and independently moving objects: parallax and self-occlusion), or kubric (MOVi-F from --kubric-root)."""
    synthetic3d_ratio: float = 0.0
    """With --data synthetic: the share of clips drawn from the 3-D generator instead of the layered
    one (0: layered only; 1: the same as --data synthetic3d). Any share > 0 also adds held-out
    3-D clips to the evaluation (columns prefixed synthetic3d_)."""
    kubric_root: Path | None = None
    """Kubric folder (sequence folders, or the dataset root above kubric/...). Its .npy files are
    pickles: only use data you trust."""
    model: Literal["official", "small", "tiny"] = "official"
    """Architecture: the official network (25 M parameters), the small bundled variant (2.6 M),
    or a tiny one for tests and smoke runs."""
    online: bool = False
    """Train the online (sliding-window) model instead of the offline one."""
    init_from: Path | None = None
    """Start from these weights (.pth or .safetensors); their architecture replaces --model."""
    crop_size: tuple[int, int] = (384, 512)
    """(H, W) of training clips; also the model resolution (it scales the motion encoding).
    Must be divisible by 4. On CPU use e.g. 96 128."""
    seq_len: int | None = None
    """Frames per clip (default: 60 offline, 64 online)."""
    random_seq_len: bool | None = None
    """Draw the clip length from [seq_len / 2, seq_len) (default: on for offline, off for online)."""
    traj_per_sample: int | None = None
    """Tracks per clip (default: 512 offline, 384 online)."""
    iters: int = 4
    """Refinement iterations during training."""
    fast: bool = True
    """Use the model's faster kernels (fused attention, 2-D sampling); numerically equivalent up to
    rounding, about a third faster on CPU."""
    query_sampling: Literal["auto", "random", "first"] = "auto"
    """Query frames: random visible frame (official offline), first visible frame with a quarter
    random (official online); auto picks by model kind."""
    loss: LossConfig = field(default_factory=LossConfig)
    """Loss weights and constants."""
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    """Look of synthetic clips (its frame count, size and track count follow seq_len, crop_size
    and traj_per_sample)."""
    synthetic3d: Synthetic3DConfig = field(default_factory=Synthetic3DConfig)
    """Look of 3-D synthetic clips (frame count, size and track count follow seq_len, crop_size and
    traj_per_sample, as for --synthetic)."""
    eval_samples: int = 8
    """Held-out synthetic clips used by the periodic evaluation."""
    eval_iters: int = 4
    """Refinement iterations during evaluation (the official predictors use 6)."""
    verbose: bool = False
    """Debug logging and full tracebacks."""

    # -- resolved defaults -------------------------------------------------------------------

    @property
    def resolved_seq_len(self) -> int:
        return self.seq_len if self.seq_len is not None else (64 if self.online else 60)

    @property
    def resolved_random_seq_len(self) -> bool:
        return self.random_seq_len if self.random_seq_len is not None else not self.online

    @property
    def resolved_traj_per_sample(self) -> int:
        return self.traj_per_sample if self.traj_per_sample is not None else (384 if self.online else 512)

    @property
    def resolved_query_sampling(self) -> str:
        if self.query_sampling != "auto":
            return self.query_sampling
        return "first" if self.online else "random"

    def _clip_shape(self, length: int | None) -> dict:
        """The clip-shape fields both synthetic generators take from this config."""
        T = self.resolved_seq_len
        return dict(num_frames=T, min_frames=T // 2 if self.resolved_random_seq_len else 0,
                    height=self.crop_size[0], width=self.crop_size[1], num_tracks=self.resolved_traj_per_sample,
                    include_last_frame=self.resolved_query_sampling == "random",
                    **({"length": length} if length is not None else {}))

    def synthetic_config(self, *, length: int | None = None) -> SyntheticConfig:
        """The synthetic generator's settings with clip shape taken from this config."""
        return dataclasses.replace(self.synthetic, **self._clip_shape(length))


    @property
    def resolved_synthetic3d_ratio(self) -> float:
        """Share of training clips from the 3-D generator (1 with --data synthetic3d)."""
        if self.data == "synthetic3d":
            return 1.0
        return self.synthetic3d_ratio if self.data == "synthetic" else 0.0

    def synthetic3d_config(self, *, length: int | None = None) -> Synthetic3DConfig:
        """The 3-D generator's settings with clip shape taken from this config."""
        return dataclasses.replace(self.synthetic3d, **self._clip_shape(length))


def tiny_model_config(online: bool, resolution: tuple[int, int]):
    """A very small CoTracker3 (about 0.1 M parameters, 5x5 patches, 2 pyramid levels) for tests."""
    from cotracker3_plugin.model import CoTrackerConfig

    return CoTrackerConfig(
        window_len=8 if online else 16, corr_radius=2, corr_levels=2, num_virtual_tracks=8, latent_dim=16,
        encoder_dims=(8, 12, 16, 16), encoder_fuse_dim=32, corr_hidden_dim=32, corr_out_dim=16,
        hidden_size=32, num_heads=2, time_depth=1, space_depth=1, model_resolution=tuple(resolution),
    )


def model_config(kind: str, online: bool, resolution: tuple[int, int]):
    """The CoTrackerConfig of ``official``, ``small`` or ``tiny`` at the given model resolution."""
    from cotracker3_plugin.model import CoTrackerConfig

    if kind == "tiny":
        return tiny_model_config(online, resolution)
    base = CoTrackerConfig.small(online=online) if kind == "small" else (
        CoTrackerConfig.online() if online else CoTrackerConfig.offline())
    return dataclasses.replace(base, model_resolution=tuple(resolution))
