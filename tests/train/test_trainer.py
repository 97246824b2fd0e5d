"""The training loop: learning, exact resume, DDP (gloo), CLI and --init-from."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from ddp_helpers import run_two_ranks

from cotracker3_plugin.errors import UserError
from cotracker3_plugin.train.config import OptimConfig, TrainConfig
from cotracker3_plugin.train.supervised import build_model, run_training


def tiny(tmp_path, name: str, **kw) -> TrainConfig:
    base = dict(output_dir=tmp_path / name, model="tiny", crop_size=(32, 48), seq_len=8, random_seq_len=False,
                traj_per_sample=16, num_steps=6, checkpoint_every=2, eval_every=0, log_every=1,
                tensorboard=False, optim=OptimConfig(lr=2e-3, pct_start=0.1), seed=3)
    base.update(kw)
    return TrainConfig(**base)


def test_tiny_model_loss_falls(tmp_path):
    torch.set_num_threads(1)
    cfg = tiny(tmp_path, "learn", num_steps=50, checkpoint_every=0, eval_every=50, eval_samples=2, seed=0)
    r = run_training(cfg)
    total = [step["total"] for step in r.losses]
    assert len(total) == 50 and r.step == 50 and not r.stopped_early
    assert np.mean(total[-10:]) < 0.85 * np.mean(total[:10])
    assert (cfg.output_dir / "final.safetensors").is_file()
    assert [e["step"] for e in r.evaluations] == [0, 50]
    assert (cfg.output_dir / "log.csv").read_text().count("\n") == 51


def test_resume_continues_identically(tmp_path):
    torch.set_num_threads(1)
    full = run_training(tiny(tmp_path, "full"))
    part = run_training(tiny(tmp_path, "split", stop_after=3))
    assert part.stopped_early and part.step == 3
    assert not (tmp_path / "split" / "final.safetensors").exists()
    ckpts = sorted(p.name for p in (tmp_path / "split" / "checkpoints").iterdir())
    assert ckpts == ["step_00000002.pth", "step_00000003.pth"]
    rest = run_training(tiny(tmp_path, "split"))
    assert rest.resumed_from == 3 and rest.step == 6
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, rest.model.state_dict()[k]), k
    assert [s["total"] for s in full.losses[3:]] == [s["total"] for s in rest.losses]
    rows = (tmp_path / "split" / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4", "5", "6"]
    # a different schedule length cannot resume silently
    with pytest.raises(UserError, match="--num-steps 6"):
        run_training(tiny(tmp_path, "split", num_steps=8))


def test_ddp_two_processes_gloo(tmp_path):
    # rank 0 alone evaluates (at steps 0 and 2): the other rank must wait for it, not deadlock
    cfg = tiny(tmp_path, "ddp", num_steps=3, checkpoint_every=3, eval_every=2, eval_samples=1)
    a, b = run_two_ranks(run_training, cfg, tmp_path)
    for k, v in a["state"].items():
        assert torch.equal(v, b["state"][k]), k
    assert a["losses"] != b["losses"]  # each rank trained on its own share of the data
    ck = torch.load(tmp_path / "ddp" / "checkpoints" / "step_00000003.pth", weights_only=True)
    assert ck["world_size"] == 2 and len(ck["ranks"]) == 2
    assert ck["ranks"][0]["rng"]["stream"] != ck["ranks"][1]["rng"]["stream"] or \
        not torch.equal(ck["ranks"][0]["rng"]["generator"], ck["ranks"][1]["rng"]["generator"])


def test_cli_and_init_from(tmp_path):
    from cotracker3_plugin.cli import main
    from cotracker3_plugin.weights import load_model

    torch.set_num_threads(1)
    out = tmp_path / "cli"
    code = main(["train", "--output-dir", str(out), "--model", "tiny", "--online", "--crop-size", "32", "48",
                 "--seq-len", "12", "--traj-per-sample", "8", "--num-steps", "2", "--eval-every", "0",
                 "--no-tensorboard"])
    assert code == 0
    model = load_model(out / "final.safetensors")
    assert type(model).__name__ == "CoTrackerThreeOnline" and model.window_len == 8
    cfg = dataclasses.replace(tiny(tmp_path, "init"), online=True, init_from=out / "final.safetensors")
    again = build_model(cfg)
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
    assert tuple(again.model_resolution) == (32, 48)
    # training at another crop size makes it the model resolution of the continued model
    bigger = build_model(dataclasses.replace(cfg, crop_size=(64, 96)))
    assert tuple(bigger.model_resolution) == (64, 96) and bigger.window_len == 8
    # user errors are reported, not raised
    assert main(["train", "--output-dir", str(tmp_path / "bad"), "--crop-size", "30", "48"]) == 2
    assert main(["train", "--data", "kubric", "--output-dir", str(tmp_path / "bad")]) == 2
