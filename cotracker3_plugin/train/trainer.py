"""A reusable training loop: optimiser, one-cycle schedule, autocast, DDP, resumable checkpoints.

:class:`Trainer` knows nothing about tracking: it takes a model, a :class:`BatchStream` and a
*step function* ``loss_fn(model, batch, ctx) -> dict`` returning named scalar losses with a
``"total"`` entry. :func:`supervised_step` is the step function of supervised (Kubric-style)
training; pseudo-label fine-tuning plugs in its own.

Resuming is exact: a checkpoint holds the model, optimiser, scheduler (and grad scaler), the step,
and per rank the Python/NumPy/torch RNG states, the query-sampling generator and the data stream
position, so a run stopped after k steps and resumed ends with the same weights, bit for bit (on
the same hardware and thread count), as an uninterrupted run.

Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1) :func:`init_distributed` starts a process group
(gloo on CPU, nccl on CUDA), the model is wrapped in ``DistributedDataParallel``, each rank reads
its own share of the data with its own seeds, and rank 0 writes checkpoints and logs.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from cotracker3_plugin._atomic import atomic_path
from cotracker3_plugin.errors import CheckpointError, UserError
from cotracker3_plugin.train.config import TrainerConfig
from cotracker3_plugin.train.data import BatchStream, TrackingBatch, guard_queries, sample_queries
from cotracker3_plugin.train.losses import LossConfig, cotracker_loss

log = logging.getLogger(__name__)

CHECKPOINT_RE = re.compile(r"^step_(\d+)\.pth$")


@dataclass
class StepContext:
    """What a step function may use besides the model and the batch."""

    device: torch.device
    generator: torch.Generator
    """CPU generator for the step's random choices (query sampling); checkpointed."""
    autocast: Callable[[], contextlib.AbstractContextManager]
    """Context manager for the forward pass (mixed precision on CUDA, a no-op on CPU)."""
    step: int
    """Index of the step being taken (0-based)."""


LossFn = Callable[[nn.Module, TrackingBatch, StepContext], dict[str, torch.Tensor]]
Evaluator = Callable[[nn.Module], dict[str, float]]


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` did."""

    step: int
    """Steps completed in total (including those of resumed runs)."""
    resumed_from: int | None
    """Step of the checkpoint this invocation resumed from, or None."""
    stopped_early: bool
    """True if stop_after, stop_after_seconds (or an interrupt) ended the run before num_steps."""
    last_losses: dict[str, float] = field(default_factory=dict)
    losses: list[dict[str, float]] = field(default_factory=list)
    """Every step's losses of this invocation (rank-local)."""
    evaluations: list[dict[str, float]] = field(default_factory=list)
    checkpoint: Path | None = None
    """The newest checkpoint written."""
    model: nn.Module | None = None
    """The trained (unwrapped) model."""


# -- distributed helpers --------------------------------------------------------------------------


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """Join the torchrun process group if ``WORLD_SIZE`` > 1 (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def current_dist() -> DistInfo:
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo()


def _barrier(info: DistInfo) -> None:
    if info.world_size > 1:
        dist.barrier()


# -- RNG state (stored so that torch.load(weights_only=True) can read it) ------------------------------


def _rng_state(generator: torch.Generator, stream: BatchStream) -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np.asarray(np_state[1]).astype(np.int64)), *map(
            lambda v: float(v) if isinstance(v, float) else int(v), np_state[2:])),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generator": generator.get_state(),
        "stream": stream.state_dict(),
    }


def _set_rng_state(state: dict[str, Any], generator: torch.Generator, stream: BatchStream) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generator.set_state(state["generator"])
    stream.load_state_dict(state["stream"])


# -- the trainer ------------------------------------------------------------------------------------


class Trainer:
    """Runs ``num_steps`` optimiser steps of ``loss_fn`` over batches of ``stream``.

    Args:
        model: the network (moved to the device here; wrapped in DDP under torchrun).
        stream: this rank's batch stream.
        loss_fn: step function returning named scalar losses including ``"total"``.
        cfg: loop settings.
        evaluator: optional ``f(model) -> metrics`` run on rank 0 every ``eval_every`` steps and at
            the end, with the model in eval mode under no-grad.
        extra_state: optional object with ``state_dict()``/``load_state_dict()`` saved per rank in
            checkpoints (e.g. a teacher pool's RNG).
        on_step: optional ``f(step, losses)`` called after every step on rank 0 (progress bars).
        checkpoint_meta: extra JSON-able information stored in every checkpoint.
    """

    def __init__(self, model: nn.Module, stream: BatchStream, loss_fn: LossFn, cfg: TrainerConfig, *,
                 evaluator: Evaluator | None = None, extra_state: Any = None,
                 on_step: Callable[[int, dict[str, float]], None] | None = None,
                 checkpoint_meta: dict[str, Any] | None = None, device: torch.device | None = None) -> None:
        self.cfg = cfg
        self.dist = current_dist()
        self.device = device if device is not None else torch.device("cpu")
        self.model = model.to(self.device)
        self.stream = stream
        self.loss_fn = loss_fn
        self.evaluator = evaluator
        self.extra_state = extra_state
        self.on_step = on_step
        self.checkpoint_meta = checkpoint_meta or {}
        self.out = Path(cfg.output_dir)
        self.ckpt_dir = self.out / "checkpoints"
        self.generator = torch.Generator().manual_seed(cfg.seed * 1000 + self.dist.rank)
        params = [p for p in self.model.parameters() if p.requires_grad]
        o = cfg.optim
        self.optimizer = torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay, eps=o.eps)
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, o.lr, total_steps=cfg.num_steps + o.schedule_extra_steps, pct_start=o.pct_start,
            cycle_momentum=False, anneal_strategy="cos")
        self.amp_dtype = self._amp_dtype()
        log.info("training precision: %s on %s", {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[
            self.amp_dtype], self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.ddp: nn.Module = self.model
        if self.dist.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.step = 0
        self._tb = None

    # -- precision --------------------------------------------------------------------------------

    def _amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype of the forward pass (None: fp32).

        ``auto`` is bf16 on CUDA devices that support it (the official runs) and fp32 elsewhere: CPU
        training stays reproducible and bit-exact on resume. An explicit ``bf16`` is honoured on CPU
        too (torch's CPU autocast; emulated, so slow, unless the CPU has bf16 units): that is how the
        bf16 step is checked against fp32 without a GPU. fp16 needs CUDA (its gradient scaler)."""
        p = self.cfg.precision
        if self.device.type != "cuda":
            if p == "fp16":
                log.warning("--precision fp16 needs CUDA; training in fp32 on %s", self.device.type)
                return None
            return torch.bfloat16 if p == "bf16" else None
        if p == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
        return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[p]

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision for the forward pass (the step functions compute the losses in fp32 after it);
        no autocast region at all in fp32, so fp32 steps stay bit-identical to the official code."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    # -- checkpoints ------------------------------------------------------------------------------

    def checkpoints(self) -> list[tuple[int, Path]]:
        """(step, path) of the checkpoints in output_dir/checkpoints, oldest first."""
        if not self.ckpt_dir.is_dir():
            return []
        found = []
        for p in self.ckpt_dir.iterdir():
            m = CHECKPOINT_RE.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
        return sorted(found)

    def _gather(self, obj: Any) -> list[Any]:
        if self.dist.world_size == 1:
            return [obj]
        out: list[Any] = [None] * self.dist.world_size
        dist.all_gather_object(out, obj)
        return out

    def save_checkpoint(self) -> Path | None:
        """Write a resumable checkpoint of the current step (every rank must call this)."""
        rank_state = {"rng": _rng_state(self.generator, self.stream)}
        if self.extra_state is not None:
            rank_state["extra"] = self.extra_state.state_dict()
        states = self._gather(rank_state)
        path = None
        if self.dist.is_main:
            path = self.ckpt_dir / f"step_{self.step:08d}.pth"
            payload = {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "step": self.step,
                "world_size": self.dist.world_size,
                "ranks": states,
                "meta": self.checkpoint_meta,
            }
            with atomic_path(path) as tmp:
                torch.save(payload, tmp)
            for _, old in self.checkpoints()[: -max(1, self.cfg.keep_checkpoints)]:
                old.unlink(missing_ok=True)
            log.info("checkpoint %s", path)
        _barrier(self.dist)
        return path

    def load_checkpoint(self, path: Path) -> None:
        try:
            ck = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointError(f"cannot read the training checkpoint {path} ({type(e).__name__}: {e}). "
                                  "Delete it to resume from an older one, or use another --output-dir.") from e
        if ck.get("world_size", 1) != self.dist.world_size:
            raise UserError(f"{path} was written by a run with {ck.get('world_size')} processes, this run has "
                            f"{self.dist.world_size}; resume with the same number of processes or use another "
                            "--output-dir.")
        total = ck["scheduler"].get("total_steps")
        if total is not None and total != self.scheduler.total_steps:
            extra = self.cfg.optim.schedule_extra_steps
            raise UserError(f"{path} belongs to a run of --num-steps {total - extra}, this one asks for "
                            f"{self.cfg.num_steps}; the learning-rate schedule depends on it. Resume with the "
                            "same --num-steps, or start a new --output-dir with --init-from "
                            f"{self.out / 'final.safetensors'} (or a checkpoint's weights).")
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        self.scaler.load_state_dict(ck["scaler"])
        self.step = int(ck["step"])
        mine = ck["ranks"][self.dist.rank]
        _set_rng_state(mine["rng"], self.generator, self.stream)
        if self.extra_state is not None and "extra" in mine:
            self.extra_state.load_state_dict(mine["extra"])

    # -- logs -------------------------------------------------------------------------------------

    def _trim_csv(self, name: str) -> None:
        """Drop rows past the resumed step (they were written after the last checkpoint)."""
        path = self.out / name
        if not path.is_file():
            return
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            return
        keep = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= self.step]
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            csv.writer(f).writerows(keep)

    def _write_row(self, name: str, row: dict[str, float]) -> None:
        path = self.out / name
        new = not path.is_file()
        if not new:
            with open(path, newline="") as f:
                header = next(csv.reader(f), [])
            if set(row) - set(header):  # a new column: rewrite with the union header
                with open(path, newline="") as f:
                    old = list(csv.DictReader(f))
                header = header + [k for k in row if k not in header]
                with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
                    w = csv.DictWriter(f, header)
                    w.writeheader()
                    w.writerows(old)
        else:
            header = list(row)
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, header)
            if new:
                w.writeheader()
            w.writerow(row)
        if self._tb is not None:
            for k, v in row.items():
                if k != "step":
                    self._tb.add_scalar(f"{name.split('.')[0]}/{k}", v, int(row["step"]))

    def _open_tensorboard(self) -> None:
        if not (self.cfg.tensorboard and self.dist.is_main):
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.debug("tensorboard is not installed; logging to CSV only")
            return
        self._tb = SummaryWriter(str(self.out / "tensorboard"))

    # -- evaluation -------------------------------------------------------------------------------

    def evaluate(self) -> dict[str, float] | None:
        """Run the evaluator on rank 0 (every rank must call this: the others wait at a barrier)."""
        if self.evaluator is None and self.dist.world_size == 1:
            return None
        metrics = None
        if self.dist.is_main and self.evaluator is not None:
            was_training = self.model.training
            self.model.eval()
            with torch.no_grad(), self.autocast():
                metrics = {"step": self.step, **self.evaluator(self.model)}
            self.model.train(was_training)
            self._write_row("eval.csv", metrics)
            log.info("step %d evaluation: %s", self.step,
                     ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "step"))
        _barrier(self.dist)
        return metrics

    # -- the loop ---------------------------------------------------------------------------------

    def _one_step(self) -> dict[str, float]:
        batch = self.stream.next_batch().to(self.device)
        ctx = StepContext(self.device, self.generator, self.autocast, self.step)
        self.optimizer.zero_grad(set_to_none=True)
        losses = self.loss_fn(self.ddp, batch, ctx)
        total = losses["total"]
        if not torch.isfinite(total):
            raise FloatingPointError(f"non-finite loss at step {self.step}: {float(total)}")
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = float("nan")
        if self.cfg.optim.grad_clip > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip))
        self.scaler.step(self.optimizer)
        self.scheduler.step()
        self.scaler.update()
        self.step += 1
        out = {k: float(v.detach()) for k, v in losses.items()}
        out["grad_norm"] = grad_norm
        out["lr"] = self.scheduler.get_last_lr()[0]
        return out

    def _out_of_time(self, deadline: float) -> bool:
        """Past the wall-clock deadline? Rank 0's clock decides for all ranks (they must stop together)."""
        late = time.perf_counter() >= deadline
        if self.dist.world_size > 1:
            flag = torch.tensor([float(late)], device=self.device if self.device.type == "cuda" else "cpu")
            dist.broadcast(flag, src=0)
            late = bool(flag.item())
        return late

    def fit(self) -> TrainResult:
        """Train until ``num_steps`` (or ``stop_after`` steps of this call); resumes automatically."""
        cfg = self.cfg
        resumed = None
        found = self.checkpoints() if cfg.resume else []
        if found:
            self.load_checkpoint(found[-1][1])
            resumed = self.step
            log.info("resumed from %s (step %d of %d)", found[-1][1], self.step, cfg.num_steps)
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            if resumed is not None:
                self._trim_csv("log.csv")
                self._trim_csv("eval.csv")
            self._open_tensorboard()
        _barrier(self.dist)
        result = TrainResult(step=self.step, resumed_from=resumed, stopped_early=False, model=self.model)
        if resumed is None and cfg.eval_every and self.step == 0:
            ev = self.evaluate()
            if ev:
                result.evaluations.append(ev)
        self.model.train()
        limit = cfg.num_steps if cfg.stop_after is None else min(cfg.num_steps, self.step + cfg.stop_after)
        last_saved = self.step
        t0 = time.perf_counter()
        deadline = None if cfg.stop_after_seconds is None else t0 + cfg.stop_after_seconds
        try:
            while self.step < limit:
                if deadline is not None and self._out_of_time(deadline):
                    log.info("stop_after_seconds reached at step %d; rerun to continue", self.step)
                    break
                losses = self._one_step()
                losses["seconds"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                result.losses.append(losses)
                result.last_losses = losses
                if self.dist.is_main:
                    if cfg.log_every and (self.step % cfg.log_every == 0 or self.step == limit):
                        self._write_row("log.csv", {"step": self.step, **losses})
                    if self.on_step is not None:
                        self.on_step(self.step, losses)
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    result.checkpoint = self.save_checkpoint() or result.checkpoint
                    last_saved = self.step
                if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.num_steps:
                    ev = self.evaluate()
                    if ev:
                        result.evaluations.append(ev)
        except KeyboardInterrupt:
            # keep the finished steps: a rerun continues from here
            if self.step > last_saved and self.dist.world_size == 1:
                result.checkpoint = self.save_checkpoint()
            raise
        if self.step > last_saved:
            result.checkpoint = self.save_checkpoint() or result.checkpoint
        result.step = self.step
        result.stopped_early = self.step < cfg.num_steps
        if not result.stopped_early and cfg.eval_every:
            ev = self.evaluate()
            if ev:
                result.evaluations.append(ev)
        if self._tb is not None:
            self._tb.close()
        return result


# -- the supervised step -------------------------------------------------------------------------------


def supervised_step(online: bool, window_len: int, *, iters: int = 4, query_sampling: str = "random",
                    loss_cfg: LossConfig | None = None) -> LossFn:
    """Step function of supervised training: sample queries from the ground truth (§4.2), run the
    model in training mode, return :func:`cotracker_loss` terms (computed in fp32 outside autocast)."""

    def step(model: nn.Module, batch: TrackingBatch, ctx: StepContext) -> dict[str, torch.Tensor]:
        queries = sample_queries(batch.trajectory, batch.visibility, query_sampling, ctx.generator)
        queries, valid = guard_queries(queries, batch.trajectory, batch.valid)
        with ctx.autocast():
            out = model(batch.video, queries, iters=iters, is_train=True)
        return cotracker_loss(out[3], batch.trajectory, batch.visibility, valid, online=online,
                              window_len=window_len, cfg=loss_cfg)

    return step


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed python, numpy and torch (model initialisation happens inside)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    yield

