"""Supervised training end to end: build model, data, loss and evaluator from a TrainConfig, then run.

``cotracker3 train`` is a thin wrapper around :func:`run_training`; it also works under
``torchrun --nproc-per-node K -m cotracker3_plugin train ...`` (one process per device).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path

import torch

from cotracker3_plugin.errors import UserError
from cotracker3_plugin.train.config import TrainConfig, model_config
from cotracker3_plugin.train.data import BatchStream, MixedSource
from cotracker3_plugin.train.evaluation import HeldOutEvaluator
from cotracker3_plugin.train.synthetic import SyntheticGenerator
from cotracker3_plugin.train.synthetic3d import Synthetic3DGenerator
from cotracker3_plugin.train.trainer import (
    DistInfo,
    Evaluator,
    Trainer,
    TrainResult,
    init_distributed,
    seeded,
    supervised_step,
)

log = logging.getLogger(__name__)


def resolve_train_device(device: str, info: DistInfo) -> torch.device:
    """auto: CUDA (cuda:LOCAL_RANK under torchrun) if available, else CPU (MPS is not used for training)."""
    name = (device or "auto").lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {device} asks for CUDA, which this torch build ({torch.__version__}) "
                            "does not have. Use --device cpu.")
        if info.world_size > 1:
            dev = torch.device("cuda", info.local_rank)
        elif dev.index is None:
            dev = torch.device("cuda", 0)
        torch.cuda.set_device(dev)
    return dev


def validate(cfg: TrainConfig) -> None:
    h, w = cfg.crop_size
    if h % 4 or w % 4 or h < 32 or w < 32:
        raise UserError(f"--crop-size {h} {w}: both sides must be multiples of 4 and at least 32 "
                        "(e.g. 384 512 for the official recipe, 96 128 on CPU).")
    if cfg.num_steps < 1:
        raise UserError("--num-steps must be at least 1.")
    if not 0.0 <= cfg.synthetic3d_ratio <= 1.0:
        raise UserError(f"--synthetic3d-ratio {cfg.synthetic3d_ratio}: give a share between 0 and 1 "
                        "(e.g. 0.5 for half 3-D, half layered clips).")
    if cfg.data != "synthetic" and cfg.synthetic3d_ratio > 0:
        raise UserError(f"--synthetic3d-ratio mixes 3-D clips into --data synthetic; it has no meaning with "
                        f"--data {cfg.data}. Drop it (--data synthetic3d alone trains on 3-D clips only).")
    if cfg.data == "kubric" and cfg.kubric_root is None:
        raise UserError("--data kubric needs --kubric-root PATH (the folder of Kubric MOVi-F sequences).")
    if cfg.online and cfg.resolved_seq_len <= 8:
        raise UserError(f"the online model needs clips longer than 8 frames (got --seq-len {cfg.resolved_seq_len}).")
    if cfg.init_from is not None and not Path(cfg.init_from).is_file():
        raise UserError(f"--init-from {cfg.init_from} does not exist; pass a .pth or .safetensors checkpoint.")


def build_model(cfg: TrainConfig) -> torch.nn.Module:
    """The network to train: from --init-from (its architecture) or a fresh --model of the chosen kind."""
    from cotracker3_plugin.weights import build_model as _build
    from cotracker3_plugin.weights import load_model

    if cfg.init_from is not None:
        model = load_model(cfg.init_from, online=cfg.online)
        if tuple(model.model_resolution) != tuple(cfg.crop_size):
            log.info("%s was built for model resolution %s; training (and the saved model) use the crop "
                     "size %s", cfg.init_from, model.model_resolution, tuple(cfg.crop_size))
            model.set_model_resolution(tuple(cfg.crop_size))
        return model.train()
    return _build(model_config(cfg.model, cfg.online, cfg.crop_size), cfg.online).train()


def build_source(cfg: TrainConfig):
    if cfg.data == "kubric":
        from cotracker3_plugin.train.kubric import KubricConfig, KubricMovifDataset

        kcfg = KubricConfig(
            crop_size=tuple(cfg.crop_size), seq_len=cfg.resolved_seq_len, random_seq_len=cfg.resolved_random_seq_len,
            random_frame_rate=cfg.resolved_random_seq_len, traj_per_sample=cfg.resolved_traj_per_sample,
            include_last_frame=cfg.resolved_query_sampling == "random",
        )
        return KubricMovifDataset(Path(cfg.kubric_root), kcfg)  # type: ignore[arg-type]
    ratio = cfg.resolved_synthetic3d_ratio
    if ratio >= 1.0:
        return Synthetic3DGenerator(cfg.synthetic3d_config())
    layered = SyntheticGenerator(cfg.synthetic_config())
    if ratio <= 0.0:
        return layered
    return MixedSource([layered, Synthetic3DGenerator(cfg.synthetic3d_config())], [1.0 - ratio, ratio])


def build_evaluator(cfg: TrainConfig, device: torch.device) -> Evaluator:
    """Held-out synthetic clips: always the layered ones (comparable across runs), plus 3-D ones
    (metrics prefixed ``synthetic3d_``) when the run trains on 3-D clips."""
    held_out = SyntheticGenerator(dataclasses.replace(cfg.synthetic_config(), min_frames=0))
    layered = HeldOutEvaluator.synthetic(held_out, cfg.eval_samples, iters=cfg.eval_iters, device=device)
    if cfg.resolved_synthetic3d_ratio <= 0:
        return layered
    gen3d = Synthetic3DGenerator(dataclasses.replace(cfg.synthetic3d_config(), min_frames=0))
    in3d = HeldOutEvaluator.synthetic(gen3d, cfg.eval_samples, iters=cfg.eval_iters, device=device)

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        return {**layered(model), **{f"synthetic3d_{k}": v for k, v in in3d(model).items()}}

    return evaluate


def run_training(cfg: TrainConfig, on_step: Callable[[int, dict[str, float]], None] | None = None) -> TrainResult:
    """Train as configured; resumes from output_dir's newest checkpoint; writes final weights on rank 0.

    Final weights: ``output_dir/final.safetensors`` (via :func:`cotracker3_plugin.weights.save_checkpoint`,
    loadable with ``load_model``) when the run reaches ``num_steps``.
    """
    validate(cfg)
    dev_type = "cuda" if (cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available())) else "cpu"
    info = init_distributed(dev_type)
    device = resolve_train_device(cfg.device, info)
    with seeded(cfg.seed):  # identical initial weights on every rank
        model = build_model(cfg)
    if hasattr(model, "set_fast"):
        model.set_fast(cfg.fast)
    source = build_source(cfg)
    stream = BatchStream(source, cfg.batch_size, seed=cfg.seed, rank=info.rank, world_size=info.world_size)
    loss_fn = supervised_step(cfg.online, model.window_len, iters=cfg.iters,
                              query_sampling=cfg.resolved_query_sampling, loss_cfg=cfg.loss)
    evaluator = None
    if cfg.eval_every and cfg.eval_samples > 0 and info.is_main:
        evaluator = build_evaluator(cfg, device)
    meta = {"model_config": model.config.to_dict(), "online": cfg.online}
    trainer = Trainer(model, stream, loss_fn, cfg, evaluator=evaluator, on_step=on_step,
                      checkpoint_meta=meta, device=device)
    if info.is_main:
        Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(cfg.output_dir) / "config.json").write_text(json.dumps(_jsonable(cfg), indent=2))
    result = trainer.fit()
    if not result.stopped_early and info.is_main:
        from cotracker3_plugin.weights import save_checkpoint

        final = save_checkpoint(model, Path(cfg.output_dir) / "final.safetensors", step=result.step,
                                recipe="cotracker3_plugin train", data=cfg.data)
        log.info("final weights: %s", final)
    return result


def _jsonable(obj):
    if dataclasses.is_dataclass(obj):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj
