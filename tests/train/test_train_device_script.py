"""scripts/train_device.sh dry-run on CPU with a tiny model: chunked stages resume from the carried
run folder, and the finished run leaves final weights and the metrics table in $OUT."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "train_device.sh"


def _frames_folder(path: Path, t: int = 12, h: int = 72, w: int = 96) -> None:
    """A real-video stand-in: a folder of PNG frames of a texture sliding right."""
    rng = np.random.default_rng(0)
    big = cv2.GaussianBlur((rng.random((h, w + 2 * t)) * 255).astype(np.uint8), (3, 3), 0)
    path.mkdir(parents=True)
    for i in range(t):
        cv2.imwrite(str(path / f"{i:03d}.png"), np.repeat(big[:, 2 * i:2 * i + w, None], 3, axis=2))


def _run(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), "small"], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_train_device_script_resumes_chunks_and_writes_metrics(tmp_path):
    _frames_folder(tmp_path / "videos" / "clip")
    run = tmp_path / "run"
    env = {**os.environ, "TD_PYTHON": sys.executable, "TD_DEVICE": "cpu", "TD_ARCH": "tiny", "TD_RUN": str(run),
           "TD_VIDEOS": str(tmp_path / "videos"), "TD_PRETRAIN_STEPS": "3", "TD_HIRES_STEPS": "2",
           "TD_FINETUNE_STEPS": "2", "TD_SIZE_LO": "32 48", "TD_SIZE_HI": "48 64", "TD_SEQ_LEN": "8",
           "TD_FT_SEQ_LEN": "8", "TD_TRACKS": "8", "TD_EVAL_SAMPLES": "1", "TD_CHUNK_STEPS": "2",
           "TD_BUDGET_S": "300", "OMP_NUM_THREADS": "1", "OUT": str(tmp_path / "out1")}
    # first call: the pre-training stage stops after its 2-step chunk, with a checkpoint
    first = _run(env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "stage pretrain stopped before its last step; rerun to continue" in first.stdout
    assert [p.name for p in (run / "pretrain" / "checkpoints").iterdir()] == ["step_00000002.pth"]
    assert (tmp_path / "out1" / "run" / "pretrain" / "checkpoints" / "step_00000002.pth").is_file()
    # the next call starts from the carried copy (as a device call would): the same run folder, from $OUT
    carried = tmp_path / "carried"
    shutil.copytree(tmp_path / "out1" / "run", carried)
    env.update(TD_RUN=str(carried), OUT=str(tmp_path / "out2"))
    second = _run(env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "resumed from" in second.stderr and "step 2 of 3" in second.stderr
    assert "all stages done" in second.stdout
    with open(carried / "pretrain" / "log.csv", newline="") as f:
        # rows are written every 10 steps and at the end of a chunk: step 2 by the first call, 3 after resuming
        assert [r["step"] for r in csv.DictReader(f)] == ["2", "3"]
    out = tmp_path / "out2" / "run"
    for stage in ("pretrain", "pretrain192", "finetune"):
        assert (out / stage / "final.safetensors").is_file(), stage
        assert not (out / stage / "checkpoints").exists()  # finished stages keep only their weights
    table = (out / "metrics.md").read_text()
    assert "| pretrain | yes | 3 |" in table and "| finetune | yes | 2 |" in table
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["stage"] for r in rows] == ["pretrain", "pretrain192", "finetune"]
    assert all(0 <= float(r["average_pts_within_thresh"]) <= 1 for r in rows)


def test_stop_after_seconds_stops_at_a_step_boundary_and_resumes(tmp_path):
    import torch

    from cotracker3_plugin.train.config import OptimConfig, TrainConfig
    from cotracker3_plugin.train.supervised import run_training

    torch.set_num_threads(1)
    cfg = dict(output_dir=tmp_path / "t", model="tiny", crop_size=(32, 48), seq_len=8, random_seq_len=False,
               traj_per_sample=8, num_steps=2, eval_every=0, tensorboard=False, optim=OptimConfig(), seed=1)
    stopped = run_training(TrainConfig(**cfg, stop_after_seconds=0.0))
    assert stopped.stopped_early and stopped.step == 0
    done = run_training(TrainConfig(**cfg, stop_after_seconds=600.0))
    assert not done.stopped_early and done.step == 2 and (tmp_path / "t" / "final.safetensors").is_file()


def test_prepare_needs_real_videos(tmp_path):
    env = {**os.environ, "TD_RUN": str(tmp_path / "run"), "COTRACKER3_SHARED": str(tmp_path / "nowhere")}
    r = subprocess.run(["bash", str(SCRIPT), "small", "--prepare"], env=env, capture_output=True, text=True)
    assert r.returncode == 2 and "no real videos" in r.stderr
    (tmp_path / "shared" / "data" / "videos").mkdir(parents=True)
    for name in ("a.mp4", "bear.mp4"):
        (tmp_path / "shared" / "data" / "videos" / name).write_bytes(b"x")
    env["COTRACKER3_SHARED"] = str(tmp_path / "shared")
    r = subprocess.run(["bash", str(SCRIPT), "small", "--prepare"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "run" / "real_videos").iterdir()) == ["a.mp4"]  # bear: BADJA
