"""Pseudo-label fine-tuning on real, unlabelled videos (ARCHITECTURE.md §5, pitfall 18).

Every step: cut a real clip (random length, frame stride and crop; no augmentation), sample
SIFT queries on it (a clip with too few keypoints gets uniform queries and a zero valid mask: it
is *skipped* but the step still runs), draw ONE teacher uniformly at random for the batch, take
its tracks and ``visibility > 0.9`` as pseudo ground truth, and train the student with the
track losses only: 0.05 Huber (delta 6) on pseudo-visible points + 0.01 L1 on pseudo-occluded
points (gamma 0.8, the windows and masks of the supervised loss). There is no visibility or
confidence loss and ``updateformer.vis_conf_head`` is frozen. Optimisation: AdamW lr 5e-5,
weight decay 1e-5, one-cycle without warm-up over num_steps + 100, gradient clipping at 10.

Teachers are given as specs (:func:`build_teachers`): ``self`` (a frozen copy of the student's
initial weights, the paper's self-training), ``klt`` (OpenCV Lucas-Kanade), a checkpoint path or
an official name, optionally prefixed ``online:``/``offline:``; a ``+lk`` suffix wraps any of them in
:class:`~cotracker3_plugin.train.teachers.LKRefinedTeacher` (chained KLT's labels while KLT holds a
point, then the teacher's, sharpened by Lucas-Kanade).

Pseudo-labels are made on the fly, or read from a cache written beforehand by
:mod:`cotracker3_plugin.train.pseudo_label_cache` (``--cache-dir``).

The :class:`~cotracker3_plugin.train.trainer.Trainer` provides the loop: exact resume (the teacher
pool's RNG, the teachers' helper-query RNGs and the skip counters are checkpointed with the data
stream position), DDP with one data share per rank, CSV logs and the held-out evaluation.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cotracker3_plugin.errors import UserError
from cotracker3_plugin.train.config import OptimConfig, TrainerConfig
from cotracker3_plugin.train.data import BatchStream
from cotracker3_plugin.train.losses import LossConfig, cotracker_loss
from cotracker3_plugin.train.pseudo_label_cache import CachedPseudoLabels
from cotracker3_plugin.train.real_videos import (
    RealSample,
    RealVideoConfig,
    apply_plan,
    decode_video,
    list_videos,
    plan_clip,
)
from cotracker3_plugin.train.sift_queries import sample_sift_queries
from cotracker3_plugin.train.teachers import (
    CoTrackerTeacher,
    LKRefinedTeacher,
    Teacher,
    TeacherPool,
    build_teacher,
    frames_uint8,
)
from cotracker3_plugin.train.trainer import StepContext, Trainer, TrainResult

log = logging.getLogger(__name__)

#: Pseudo-visibility threshold on the teacher's visibility probability (official: 0.9).
PSEUDO_VIS_THRESHOLD = 0.9


# -- configuration ----------------------------------------------------------------------------------


@dataclass
class RealDataConfig:
    """The real, unlabelled videos and how extra footage is made from them."""

    root: Path = Path("videos")
    """Folder of videos (any size, length, fps) and/or sub-folders of JPEG/PNG frames, searched recursively."""
    max_side: int | None = None
    """Downscale decoded videos so the longer side is at most this (None: keep their size)."""
    random_frame_rate: bool = True
    """Random frame stride r ~ U{1..min(4, len // L) - 1}, as the official sampler."""
    scale_range: tuple[float, float] = (1.0, 1.0)
    """Random zoom of the whole clip before cropping (1 1: none, the official recipe)."""
    reverse_prob: float = 0.0
    """Probability of playing a clip backwards (0: the official recipe)."""
    num_samples: int | None = None
    """Clips per data 'epoch' (default: the number of videos); clips are random, so this only sets
    how often the shuffled video order is redrawn."""


def _finetune_optim() -> OptimConfig:
    return OptimConfig(lr=5e-5, weight_decay=1e-5, pct_start=0.0, grad_clip=10.0)


def _finetune_loss() -> LossConfig:
    return LossConfig(visibility_weight=0.0, confidence_weight=0.0)


@dataclass
class FinetuneConfig(TrainerConfig):
    """Pseudo-label fine-tuning of a trained CoTracker3 on real videos (official defaults, §5)."""

    output_dir: Path = Path("runs/finetune")
    """Folder for checkpoints (checkpoints/), logs (log.csv, eval.csv) and final.safetensors.
    A run restarted with the same folder resumes from its newest checkpoint."""
    num_steps: int = 15_000
    """Optimiser steps of the whole run (official README: 15,000 on 32 GPUs)."""
    optim: OptimConfig = field(default_factory=_finetune_optim)
    """Optimiser and schedule (official fine-tuning: lr 5e-5, weight decay 1e-5, no warm-up, clip 10)."""
    seed: int = 0
    """Seed of the data stream, query sampling and teacher draws."""
    init_from: str | None = None
    """The student's starting weights: a .pth/.safetensors file, an official name
    (cotracker3_offline, cotracker3_online) or None for the bundled small model."""
    online: bool | None = None
    """Fine-tune the online model (True) or the offline one (False); default: the checkpoint's kind."""
    teachers: tuple[str, ...] = ("self", "klt")
    """Teacher specs, one drawn uniformly per batch: self (frozen copy of the student's initial
    weights), klt (Lucas-Kanade), a checkpoint path or official name (prefix online:/offline: to
    pick the network kind); a +lk suffix (self+lk) takes chained KLT's labels while KLT holds a point and that teacher's, sharpened by Lucas-Kanade, after."""
    teacher_iters: int = 4
    """Refinement iterations of CoTracker3 teachers (official: 4)."""
    data: RealDataConfig = field(default_factory=RealDataConfig)
    """Real videos."""
    crop_size: tuple[int, int] = (384, 512)
    """(H, W) random crop of the real clips; also the student's model resolution (official 384 512). On CPU
    use e.g. 96 128."""
    seq_len: int | None = None
    """Frames per clip (default: 80 offline, 64 online)."""
    random_seq_len: bool | None = None
    """Draw the clip length from [seq_len / 2, seq_len) (default: on offline, off online)."""
    traj_per_sample: int = 384
    """SIFT queries (tracks) per clip (official: 384)."""
    iters: int = 4
    """Refinement iterations of the student during training."""
    loss: LossConfig = field(default_factory=_finetune_loss)
    """Loss weights; fine-tuning uses the track terms only (visibility/confidence weights 0)."""
    freeze_vis_conf_head: bool = True
    """Freeze updateformer.vis_conf_head (official fine-tuning does: no visibility/confidence labels)."""
    cache_dir: Path | None = None
    """Read pseudo-labels from this cache (written with --precompute) instead of labelling on the fly."""
    precompute: bool = False
    """Only write the pseudo-label cache to --cache-dir (one shard per clip; resumable; under
    torchrun rank r labels videos r, r+W, ...) and exit."""
    clips_per_video: int = 1
    """Clips labelled per video by --precompute."""
    eval_samples: int = 8
    """Held-out synthetic clips used by the periodic evaluation (0: none)."""
    eval_iters: int = 4
    """Refinement iterations during evaluation."""
    verbose: bool = False
    """Debug logging and full tracebacks."""

    @property
    def resolved_seq_len(self) -> int:
        return self.seq_len if self.seq_len is not None else (64 if self.online else 80)

    @property
    def resolved_random_seq_len(self) -> bool:
        return self.random_seq_len if self.random_seq_len is not None else not self.online

    def clip_config(self) -> RealVideoConfig:
        """How clips are cut (the RealVideoConfig of the sampler)."""
        d = self.data
        return RealVideoConfig(root=Path(d.root), seq_len=self.resolved_seq_len,
                               random_seq_len=self.resolved_random_seq_len, random_frame_rate=d.random_frame_rate,
                               crop_size=tuple(self.crop_size), max_side=d.max_side,
                               scale_range=tuple(d.scale_range), reverse_prob=d.reverse_prob)


# -- data ---------------------------------------------------------------------------------------------


@dataclass
class RealBatch:
    """A stack of :class:`RealSample` (cut to the shortest clip and smallest frame)."""

    video: torch.Tensor
    names: list[str]
    queries: torch.Tensor | None = None
    trajectory: torch.Tensor | None = None
    visibility: torch.Tensor | None = None
    ok: torch.Tensor | None = None
    teachers: list[str] = field(default_factory=list)

    def to(self, device: torch.device | str) -> RealBatch:
        def move(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.to(device)

        return RealBatch(self.video.to(device), self.names, move(self.queries), move(self.trajectory),
                         move(self.visibility), move(self.ok), self.teachers)


def collate_real(samples: list[RealSample]) -> RealBatch:
    t = min(s.video.shape[0] for s in samples)
    h = min(s.video.shape[2] for s in samples)
    w = min(s.video.shape[3] for s in samples)
    batch = RealBatch(torch.stack([s.video[:t, :, :h, :w] for s in samples]), [s.name for s in samples])
    if samples[0].queries is not None:
        n = min(len(s.queries) for s in samples)  # type: ignore[arg-type]
        batch.queries = torch.stack([s.queries[:n] for s in samples])  # type: ignore[index]
        batch.trajectory = torch.stack([s.trajectory[:t, :n] for s in samples])  # type: ignore[index]
        batch.visibility = torch.stack([s.visibility[:t, :n] for s in samples])  # type: ignore[index]
        batch.ok = torch.tensor([s.ok for s in samples])
        batch.teachers = [s.teacher for s in samples]
    return batch


class RealClipSource:
    """Sample source of random real clips (the BatchStream gives the seeded generator)."""

    def __init__(self, cfg: RealVideoConfig, num_samples: int | None = None) -> None:
        self.cfg = cfg
        self.videos = list_videos(cfg.root)
        self.num_samples = num_samples or len(self.videos)

    def __len__(self) -> int:
        return self.num_samples

    def sample(self, index: int, rng: np.random.Generator) -> RealSample:
        path = self.videos[index % len(self.videos)]
        frames = decode_video(path, self.cfg.max_side)
        clip = apply_plan(frames, plan_clip(len(frames), frames.shape[1:3], self.cfg, rng))
        h, w = (clip.shape[1] // 4) * 4, (clip.shape[2] // 4) * 4  # the model needs multiples of 4
        video = torch.from_numpy(np.ascontiguousarray(clip[:, :h, :w])).permute(0, 3, 1, 2).float()
        return RealSample(video, f"{path.name}#{index}")


class RealBatchStream(BatchStream):
    """:class:`BatchStream` over real clips (same resumable, per-rank sharded positions)."""

    def next_batch(self) -> RealBatch:  # type: ignore[override]
        return collate_real([self._next_sample() for _ in range(self.batch_size)])  # type: ignore[misc]


# -- teachers -------------------------------------------------------------------------------------------


def build_teachers(specs: Sequence[str], student: nn.Module, device: torch.device | str = "cpu",
                   *, iters: int = 4, seed: int = 0) -> list[Teacher]:
    """Teachers from specs; ``self`` is a frozen copy of ``student`` as it is now (call before training)."""
    if not specs:
        raise UserError("no teacher given. Pass --teachers with at least one of: self, klt, a checkpoint "
                        "path or an official name.")
    out: list[Teacher] = []
    for i, spec in enumerate(specs):
        refine = spec.endswith("+lk")
        spec = spec.removesuffix("+lk")
        if spec == "self":
            frozen = copy.deepcopy(student).to(device)
            out.append(CoTrackerTeacher(frozen, name="self", iters=iters, vis_threshold=PSEUDO_VIS_THRESHOLD,
                                        seed=seed * 100 + i))
        else:
            t = build_teacher(spec, device=device)
            if isinstance(t, CoTrackerTeacher):
                t.iters = iters
                t.rng.manual_seed(seed * 100 + i)
            out.append(t)
        if refine:
            out[-1] = LKRefinedTeacher(out[-1])
    return out


class FinetuneState:
    """Per-rank state saved in checkpoints: teacher draws, teacher RNGs and the skip counters."""

    def __init__(self, pool: TeacherPool) -> None:
        self.pool = pool
        self.skipped = 0
        """Clips skipped by the SIFT rule so far."""
        self.clips = 0
        """Clips seen so far."""
        self.teacher_batches = [0] * len(pool.teachers)

    def state_dict(self) -> dict:
        rngs = [t.rng.get_state() if isinstance(getattr(t, "rng", None), torch.Generator) else None
                for t in self.pool.teachers]
        return {"pool": self.pool.state_dict(), "teacher_rngs": rngs, "skipped": self.skipped,
                "clips": self.clips, "teacher_batches": list(self.teacher_batches)}

    def load_state_dict(self, state: dict) -> None:
        self.pool.load_state_dict(state["pool"])
        for t, s in zip(self.pool.teachers, state["teacher_rngs"], strict=True):
            if s is not None:
                t.rng.set_state(s)  # type: ignore[attr-defined]
        self.skipped = int(state["skipped"])
        self.clips = int(state["clips"])
        self.teacher_batches = [int(v) for v in state["teacher_batches"]]


def freeze_vis_conf_head(model: nn.Module) -> list[str]:
    """Freeze ``updateformer.vis_conf_head``; returns the frozen parameter names."""
    names = []
    for name, p in model.named_parameters():
        if name.startswith("updateformer.vis_conf_head."):
            p.requires_grad_(False)
            names.append(name)
    if not names:
        raise ValueError("the model has no updateformer.vis_conf_head")
    return names


# -- the step ---------------------------------------------------------------------------------------------


def _uses_occluded_loss(teacher_name: str) -> bool:
    # The official code drops the occluded-point loss for TAPIR's labels.
    return not teacher_name.lower().startswith("tapir")


def label_batch(batch: RealBatch, pool: TeacherPool, state: FinetuneState, num_queries: int,
                generator: torch.Generator, autocast: Callable | None = None) -> RealBatch:
    """SIFT queries + pseudo-labels of ONE teacher drawn for the whole batch (in place, returned)."""
    B, T = batch.video.shape[:2]
    queries, oks = [], []
    for b in range(B):
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        sq = sample_sift_queries(frames_uint8(batch.video[b]), num_queries, rng=np.random.default_rng(seed))
        if not sq.ok:
            state.skipped += 1
            log.info("clip %s skipped: SIFT found %d < %d points (%d skipped of %d)", batch.names[b],
                     sq.num_found, num_queries, state.skipped, state.clips + b + 1)
        queries.append(torch.from_numpy(sq.queries))
        oks.append(sq.ok)
    state.clips += B
    q = torch.stack(queries).to(batch.video.device)
    k = int(pool.rng.integers(len(pool.teachers)))  # the pool's uniform draw, index kept for the log
    teacher = pool.teachers[k]
    state.teacher_batches[k] += 1
    with autocast() if autocast is not None else contextlib.nullcontext():
        labels = teacher(batch.video, q)
    batch.queries = q
    batch.trajectory = labels.tracks.float()
    batch.visibility = labels.visible.bool()
    batch.ok = torch.tensor(oks, device=batch.video.device)
    batch.teachers = [teacher.name] * B
    return batch


def pseudo_label_step(pool: TeacherPool | None, state: FinetuneState | None, *, online: bool, window_len: int,
                      num_queries: int = 384, iters: int = 4, loss_cfg: LossConfig | None = None):
    """Step function for :class:`Trainer`: label (unless the batch is cached), run the student, loss."""
    base_cfg = loss_cfg or _finetune_loss()

    def step(model: nn.Module, batch: RealBatch, ctx: StepContext) -> dict[str, torch.Tensor]:
        if batch.queries is None:
            if pool is None or state is None:
                raise RuntimeError("batch has no pseudo-labels and no teacher pool was given")
            label_batch(batch, pool, state, num_queries, ctx.generator, ctx.autocast)
        elif state is not None:
            state.clips += len(batch.names)
            state.skipped += int((~batch.ok).sum())
        assert batch.trajectory is not None and batch.visibility is not None and batch.ok is not None
        B, T, N = batch.visibility.shape
        valid = batch.ok.float()[:, None, None].expand(B, T, N)
        cfg = base_cfg
        if not all(_uses_occluded_loss(t) for t in batch.teachers):
            cfg = dataclasses.replace(cfg, occluded_weight=0.0)
        with ctx.autocast():
            out = model(batch.video, batch.queries, iters=iters, is_train=True)
        losses = cotracker_loss(out[3], batch.trajectory, batch.visibility, valid, online=online,
                                window_len=window_len, cfg=cfg)
        losses["pseudo_visible_frac"] = batch.visibility.float().mean()
        if state is not None:
            losses["sift_skipped_total"] = torch.tensor(float(state.skipped))
        if pool is not None and batch.teachers:
            names = [t.name for t in pool.teachers]
            if batch.teachers[0] in names:
                losses["teacher_index"] = torch.tensor(float(names.index(batch.teachers[0])))
        return losses

    return step


# -- end to end -----------------------------------------------------------------------------------------


def validate(cfg: FinetuneConfig) -> None:
    h, w = cfg.crop_size
    if h % 4 or w % 4 or h < 32 or w < 32:
        raise UserError(f"--crop-size {h} {w}: both sides must be multiples of 4 and at least 32 "
                        "(384 512 for the official recipe, e.g. 96 128 on CPU).")
    if cfg.num_steps < 1:
        raise UserError("--num-steps must be at least 1.")
    if cfg.traj_per_sample < 1:
        raise UserError("--traj-per-sample must be at least 1.")
    if cfg.precompute and cfg.cache_dir is None:
        raise UserError("--precompute writes a pseudo-label cache: pass --cache-dir DIR for it.")
    if cfg.cache_dir is not None and not cfg.precompute and not Path(cfg.cache_dir).is_dir():
        raise UserError(f"--cache-dir {cfg.cache_dir} does not exist. Write it first with --precompute "
                        "(same options), or drop --cache-dir to label on the fly.")
    if cfg.seq_len is not None and cfg.seq_len < 2:
        raise UserError("--seq-len must be at least 2.")


def load_weights(spec: str | None, *, online: bool | None = None, device: torch.device | str = "cpu") -> nn.Module:
    """``weights.load_model``, plus resumable training checkpoints (``checkpoints/step_*.pth`` of
    ``cotracker3 train``/``finetune``, whose architecture is in their metadata)."""
    from cotracker3_plugin.errors import CheckpointError
    from cotracker3_plugin.weights import build_model, load_model

    path = Path(spec) if spec is not None else None
    if path is not None and path.suffix == ".pth" and path.is_file():
        try:
            ck = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointError(f"cannot read {path} ({type(e).__name__}: {e}). Pass a .pth/.safetensors "
                                  "checkpoint.") from e
        meta = ck.get("meta", {}) if isinstance(ck, dict) else {}
        if isinstance(meta, dict) and "model_config" in meta and "model" in ck:
            from cotracker3_plugin.model import CoTrackerConfig

            config = CoTrackerConfig.from_dict(meta["model_config"])
            file_online = bool(meta.get("online", False))
            if online is not None and online != file_online:
                raise UserError(f"{path} is a training checkpoint of the {'online' if file_online else 'offline'} "
                                "model; convert it with weights.save_checkpoint to switch kinds, or drop --online.")
            model = build_model(config, file_online)
            model.load_state_dict(ck["model"])
            return model.to(device).eval()
    return load_model(spec, online=online, device=device)


def build_student(cfg: FinetuneConfig) -> nn.Module:
    """The student in train mode, with vis_conf_head frozen unless disabled."""
    model = load_weights(cfg.init_from, online=cfg.online)
    if tuple(model.model_resolution) != tuple(cfg.crop_size):
        log.info("the student was built for model resolution %s; fine-tuning (and the saved model) use the "
                 "crop size %s", tuple(model.model_resolution), tuple(cfg.crop_size))
        model.set_model_resolution(tuple(cfg.crop_size))
    if cfg.freeze_vis_conf_head:
        freeze_vis_conf_head(model)
    return model.train()


def _resolved(cfg: FinetuneConfig, model: nn.Module) -> FinetuneConfig:
    """Fill ``online`` from the checkpoint so that the clip length defaults follow the model kind."""
    from cotracker3_plugin.predict.api import is_online_model

    return dataclasses.replace(cfg, online=is_online_model(model))


def run_finetune(cfg: FinetuneConfig, on_step: Callable[[int, dict[str, float]], None] | None = None
                 ) -> TrainResult:
    """Fine-tune as configured (resumes from output_dir); final weights ``output_dir/final.safetensors``."""
    from cotracker3_plugin.train.evaluation import HeldOutEvaluator
    from cotracker3_plugin.train.supervised import _jsonable, resolve_train_device
    from cotracker3_plugin.train.synthetic import SyntheticConfig, SyntheticGenerator
    from cotracker3_plugin.train.trainer import init_distributed, seeded

    validate(cfg)
    dev_type = "cuda" if (cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available())) \
        else "cpu"
    info = init_distributed(dev_type)
    device = resolve_train_device(cfg.device, info)
    with seeded(cfg.seed):
        model = build_student(cfg)
    cfg = _resolved(cfg, model)
    pool = state = None
    if cfg.cache_dir is not None:
        source = CachedPseudoLabels(Path(cfg.cache_dir), cfg.clip_config())
        state = FinetuneState(TeacherPool([_NamedTeacher(n) for n in source.teacher_names] or [_NamedTeacher("")]))
    else:
        source = RealClipSource(cfg.clip_config(), cfg.data.num_samples)
        # "self" is the student's weights *before* training (a resumed run reloads the student later).
        teachers = build_teachers(cfg.teachers, model, device, iters=cfg.teacher_iters, seed=cfg.seed)
        pool = TeacherPool(teachers, seed=cfg.seed * 1000 + info.rank)
        state = FinetuneState(pool)
    stream = RealBatchStream(source, cfg.batch_size, seed=cfg.seed, rank=info.rank,  # type: ignore[arg-type]
                             world_size=info.world_size)
    loss_fn = pseudo_label_step(pool, state, online=bool(cfg.online), window_len=model.window_len,
                                num_queries=cfg.traj_per_sample, iters=cfg.iters, loss_cfg=cfg.loss)
    evaluator = None
    if cfg.eval_every and cfg.eval_samples > 0 and info.is_main:
        T = cfg.resolved_seq_len
        held = SyntheticGenerator(SyntheticConfig(num_frames=T, height=cfg.crop_size[0], width=cfg.crop_size[1],
                                                  num_tracks=min(cfg.traj_per_sample, 256)))
        evaluator = HeldOutEvaluator.synthetic(held, cfg.eval_samples, iters=cfg.eval_iters, device=device)
    meta = {"model_config": model.config.to_dict(), "online": cfg.online, "teachers": list(cfg.teachers)}
    trainer = Trainer(model, stream, loss_fn, cfg, evaluator=evaluator, extra_state=state, on_step=on_step,
                      checkpoint_meta=meta, device=device)
    if info.is_main:
        Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(cfg.output_dir) / "config.json").write_text(json.dumps(_jsonable(cfg), indent=2))
    result = trainer.fit()
    if state is not None:
        log.info("SIFT skip rule: %d of %d clips skipped", state.skipped, state.clips)
    if not result.stopped_early and info.is_main:
        from cotracker3_plugin.weights import save_checkpoint

        final = save_checkpoint(model, Path(cfg.output_dir) / "final.safetensors", step=result.step,
                                recipe="cotracker3_plugin finetune", teachers=",".join(cfg.teachers),
                                init_from=str(cfg.init_from))
        log.info("final weights: %s", final)
    return result


class _NamedTeacher:
    """Placeholder teacher for cached labels (keeps FinetuneState's layout)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, video, queries):  # pragma: no cover - never called
        raise RuntimeError("cached pseudo-labels need no teacher")
