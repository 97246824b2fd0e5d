"""The trainer's precision option: a bf16 (autocast) step stays close to the fp32 step.

Measured through the trainer on this fixed batch (2 clips of 12 frames, 32x48, 24 tracks; CPU
autocast), tiny and small models, fast and reference kernels alike: relative loss difference
4.5e-5 to 4.8e-5, relative gradient-norm difference 5e-5 to 2.5e-4, gradient cosine similarity
0.99999, ||g_bf16 - g_fp32|| / ||g_fp32|| 0.0037 to 0.0041 (about bf16's rounding, 2^-8). The bounds
below leave a factor of about 10 (more for the cosine); CUDA runs the same test when it is there.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from cotracker3_plugin.train.config import OptimConfig, TrainerConfig, model_config
from cotracker3_plugin.train.data import BatchStream
from cotracker3_plugin.train.synthetic import SyntheticConfig, SyntheticGenerator
from cotracker3_plugin.train.trainer import Trainer, supervised_step
from cotracker3_plugin.weights import build_model

#: Tolerances of a bf16 step against the fp32 step on the same batch, weights and queries.
LOSS_RTOL = 1e-3
GRAD_NORM_RTOL = 1e-2
GRAD_COSINE_MIN = 0.9997
GRAD_DIFF_RTOL = 0.04


class _Repeat:
    """A sample source that always returns the same clips (a fixed batch)."""

    def __init__(self, samples):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def sample(self, index, rng):
        return self.samples[index]


@pytest.fixture(scope="module")
def fixed_clips():
    gen = SyntheticGenerator(SyntheticConfig(num_frames=12, height=32, width=48, num_tracks=24))
    return [s for i in range(8) if (s := gen.sample(i, np.random.default_rng(i))) is not None][:2]


def _step(model, clips, precision: str, device: str, tmp_path) -> tuple[dict[str, float], torch.Tensor, Trainer]:
    """One trainer step; returns its losses and the gradient it took (no clipping)."""
    cfg = TrainerConfig(output_dir=tmp_path / precision, num_steps=1, batch_size=2, precision=precision,  # type: ignore[arg-type]
                        checkpoint_every=0, eval_every=0, log_every=0, tensorboard=False,
                        optim=OptimConfig(grad_clip=0.0), seed=5)
    stream = BatchStream(_Repeat(clips), batch_size=2, shuffle=False)
    trainer = Trainer(model, stream, supervised_step(False, model.window_len, iters=4), cfg,
                      device=torch.device(device))
    losses = trainer._one_step()
    grad = torch.cat([p.grad.flatten().double().cpu() for p in model.parameters() if p.grad is not None])
    return losses, grad, trainer


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
@pytest.mark.parametrize("fast", [True, False])
def test_bf16_step_matches_fp32_within_tolerance(fixed_clips, tmp_path, device, fast):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    base = build_model(model_config("tiny", False, (32, 48)), False)
    base.set_fast(fast)
    l32, g32, t32 = _step(copy.deepcopy(base), fixed_clips, "fp32", device, tmp_path)
    try:
        l16, g16, t16 = _step(copy.deepcopy(base), fixed_clips, "bf16", device, tmp_path)
    except RuntimeError as e:  # the fast correlation's known bf16 dtype mismatch, fixed in model/correlation.py
        if fast and "expected dtype" in str(e):
            pytest.xfail(f"fast correlation under bf16 autocast not fixed in this tree yet: {e}")
        raise
    assert t32.amp_dtype is None and t16.amp_dtype is torch.bfloat16
    assert abs(l16["total"] - l32["total"]) <= LOSS_RTOL * abs(l32["total"]), (l16["total"], l32["total"])
    n32, n16 = float(g32.norm()), float(g16.norm())
    cosine = float(g16 @ g32) / (n16 * n32)
    diff = float((g16 - g32).norm()) / n32
    assert abs(n16 - n32) <= GRAD_NORM_RTOL * n32, (n16, n32)
    assert cosine >= GRAD_COSINE_MIN, cosine
    assert diff <= GRAD_DIFF_RTOL, diff


def test_auto_precision_is_fp32_on_cpu(fixed_clips, tmp_path):
    torch.manual_seed(0)
    model = build_model(model_config("tiny", False, (32, 48)), False)
    _, _, trainer = _step(model, fixed_clips, "auto", "cpu", tmp_path)
    assert trainer.amp_dtype is None
