"""Pseudo-label fine-tuning: the step, frozen vis/conf head, exact resume, cache shards, CLI."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch
from ddp_helpers import run_two_ranks

from cotracker3_plugin.train.config import OptimConfig, tiny_model_config
from cotracker3_plugin.train.finetune import (
    FinetuneConfig,
    FinetuneState,
    RealBatch,
    RealDataConfig,
    label_batch,
    run_finetune,
)
from cotracker3_plugin.train.pseudo_label_cache import (
    CachedPseudoLabels,
    list_shards,
    precompute_pseudo_labels,
)
from cotracker3_plugin.train.teachers import KLTTeacher, TeacherPool
from cotracker3_plugin.weights import build_model, load_model, save_checkpoint

H, W = 40, 56


def _texture_clip(rng, t, shift):
    big = (rng.random((H + 8, W + abs(shift) * t + 8)) * 255).astype(np.uint8)
    big = cv2.GaussianBlur(big, (3, 3), 0)
    x0 = [4 + (i * shift if shift > 0 else (t - 1 - i) * -shift) for i in range(t)]
    return np.stack([np.repeat(big[4:4 + H, x:x + W, None], 3, axis=2) for x in x0])


@pytest.fixture(scope="module")
def video_root(tmp_path_factory):
    """Two textured 'real' clips (image folders) moving sideways and one featureless clip."""
    root = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    clips = {"pan_left": _texture_clip(rng, 14, 1), "pan_right": _texture_clip(rng, 14, -2),
             "wall": np.full((14, H, W, 3), 120, np.uint8)}
    for name, frames in clips.items():
        (root / name).mkdir()
        for i, f in enumerate(frames):
            cv2.imwrite(str(root / name / f"{i:03d}.png"), f[..., ::-1])
    return root


@pytest.fixture(scope="module")
def student_path(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(tiny_model_config(False, (32, 48)), False)
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


def _cfg(tmp_path, name, student_path, video_root, **kw) -> FinetuneConfig:
    base = dict(output_dir=tmp_path / name, init_from=str(student_path), num_steps=4, checkpoint_every=2,
                eval_every=0, log_every=1, tensorboard=False, teachers=("self", "klt"),
                data=RealDataConfig(root=video_root), crop_size=(32, 48), seq_len=8, random_seq_len=False,
                traj_per_sample=16, optim=OptimConfig(lr=1e-3, weight_decay=1e-5, pct_start=0.0, grad_clip=10.0),
                seed=1)
    base.update(kw)
    return FinetuneConfig(**base)


def test_defaults_are_the_official_recipe():
    cfg = FinetuneConfig()
    o = cfg.optim
    assert (o.lr, o.weight_decay, o.pct_start, o.grad_clip, o.schedule_extra_steps) == (5e-5, 1e-5, 0.0, 10.0, 100)
    assert cfg.traj_per_sample == 384 and cfg.iters == 4 and cfg.num_steps == 15_000
    assert cfg.loss.visibility_weight == 0 and cfg.loss.confidence_weight == 0
    assert (cfg.loss.visible_weight, cfg.loss.occluded_weight, cfg.loss.huber_delta) == (0.05, 0.01, 6.0)
    assert dataclasses.replace(cfg, online=False).resolved_seq_len == 80
    assert dataclasses.replace(cfg, online=True).resolved_seq_len == 64
    assert dataclasses.replace(cfg, online=True).resolved_random_seq_len is False


def test_finetune_trains_all_but_vis_conf_head(tmp_path, student_path, video_root):
    torch.set_num_threads(1)
    r = run_finetune(_cfg(tmp_path, "run", student_path, video_root))
    assert r.step == 4 and not r.stopped_early
    before = load_model(student_path).state_dict()
    after = r.model.state_dict()
    head = [k for k in after if k.startswith("updateformer.vis_conf_head.")]
    assert head and all(torch.equal(before[k], after[k]) for k in head)
    changed = [k for k in after if k not in head and k != "time_emb" and not torch.equal(before[k], after[k])]
    assert len(changed) > 0.8 * (len(after) - len(head) - 1)
    for step in r.losses:
        assert "visibility_bce" not in step and "confidence_bce" not in step
        assert step["total"] == pytest.approx(step["track_visible_weighted"] + step["track_occluded_weighted"])
    # the blank wall clip falls to the SIFT skip rule at some point in 4 steps of 3 videos
    assert r.losses[-1]["sift_skipped_total"] >= 1
    assert (tmp_path / "run" / "final.safetensors").is_file()
    # a resumable training checkpoint loads as a model too (its architecture is in its metadata)
    from cotracker3_plugin.train.finetune import load_weights

    mid = load_weights(str(tmp_path / "run" / "checkpoints" / "step_00000004.pth")).state_dict()
    assert all(torch.equal(mid[k], v) for k, v in after.items())
    assert (tmp_path / "run" / "log.csv").read_text().count("\n") == 5


@pytest.mark.parametrize("teachers", [("self", "klt"), ("self+lk",)])  # self+lk alone: drawn after the resume
def test_resume_is_identical(tmp_path, student_path, video_root, teachers):
    torch.set_num_threads(1)
    full = run_finetune(_cfg(tmp_path, "full", student_path, video_root, teachers=teachers))
    part = run_finetune(_cfg(tmp_path, "split", student_path, video_root, stop_after=2, teachers=teachers))
    assert part.stopped_early and part.step == 2
    rest = run_finetune(_cfg(tmp_path, "split", student_path, video_root, teachers=teachers))
    assert rest.resumed_from == 2 and rest.step == 4
    assert [s["total"] for s in full.losses[2:]] == [s["total"] for s in rest.losses]
    assert [s["teacher_index"] for s in full.losses[2:]] == [s["teacher_index"] for s in rest.losses]
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, rest.model.state_dict()[k]), k


def test_label_batch_skip_rule_and_one_teacher_per_batch():
    wall = torch.full((2, 8, 3, H, W), 120.0)
    wall[0] = torch.from_numpy(_texture_clip(np.random.default_rng(1), 8, 1)).permute(0, 3, 1, 2).float()
    pool = TeacherPool([KLTTeacher(), KLTTeacher()], seed=0)
    state = FinetuneState(pool)
    batch = label_batch(RealBatch(wall, ["tex", "wall"]), pool, state, 16, torch.Generator().manual_seed(0))
    assert batch.ok.tolist() == [True, False] and state.skipped == 1 and state.clips == 2
    assert batch.queries.shape == (2, 16, 3) and batch.trajectory.shape == (2, 8, 16, 2)
    assert sum(state.teacher_batches) == 1 and batch.teachers == ["klt", "klt"]
    q = batch.queries[0]
    assert (q[:, 0] <= 2).all()  # SIFT queries from the first quarter of the clip
    # KLT follows the 1 px/frame pan to the left for textured points queried at frame 0
    at0 = q[:, 0] == 0
    if at0.any():
        dx = batch.trajectory[0, 4, at0, 0] - q[at0, 1]
        assert torch.median(dx).item() == pytest.approx(-4.0, abs=0.5)


def test_cache_shards_written_resumed_and_trainable(tmp_path, student_path, video_root):
    torch.set_num_threads(1)
    cfg = _cfg(tmp_path, "from_cache", student_path, video_root, cache_dir=tmp_path / "cache")
    clip_cfg = dataclasses.replace(cfg, online=False).clip_config()
    teachers = [KLTTeacher()]
    rep = precompute_pseudo_labels(clip_cfg, teachers, tmp_path / "cache", clips_per_video=2, num_queries=16)
    shards = list_shards(tmp_path / "cache")
    assert rep.written == 6 and len(shards) == 6 and rep.sift_failed == 2  # the wall's two clips
    with np.load(shards[0]) as z:
        assert z["tracks"].shape == (8, 16, 2) and z["visible"].dtype == bool and str(z["teacher"]) == "klt"
        first = {k: z[k] for k in z.files}
    shards[0].unlink()
    again = precompute_pseudo_labels(clip_cfg, teachers, tmp_path / "cache", clips_per_video=2, num_queries=16)
    assert (again.written, again.existing) == (1, 5)
    with np.load(shards[0]) as z:
        for k, v in first.items():
            np.testing.assert_array_equal(z[k], v)
    # two processes (rank r takes videos r, r+2, ...) make the same shards as one
    for rank in (0, 1):
        precompute_pseudo_labels(clip_cfg, teachers, tmp_path / "cache2", clips_per_video=2, num_queries=16,
                                 rank=rank, world_size=2)
    assert [p.name for p in list_shards(tmp_path / "cache2")] == [p.name for p in shards]
    # cached sample = the clip the labels were made on
    s = CachedPseudoLabels(tmp_path / "cache", clip_cfg).sample(0)
    assert s.video.shape == (8, 3, 32, 48) and s.trajectory.shape == (8, 16, 2) and s.ok
    r = run_finetune(dataclasses.replace(cfg, num_steps=2))
    assert r.step == 2 and all(np.isfinite(x["total"]) for x in r.losses)


def test_cli_precompute_then_train_and_errors(tmp_path, student_path, video_root):
    from cotracker3_plugin.cli import main

    torch.set_num_threads(1)
    common = ["--init-from", str(student_path), "--data.root", str(video_root), "--crop-size", "32", "48",
              "--seq-len", "8", "--traj-per-sample", "16", "--teachers", "klt", "--no-tensorboard",
              "--eval-every", "0"]
    assert main(["finetune", "--precompute", "--cache-dir", str(tmp_path / "c"), *common]) == 0
    assert len(list_shards(tmp_path / "c")) == 3
    assert main(["finetune", "--cache-dir", str(tmp_path / "c"), "--num-steps", "1",
                 "--output-dir", str(tmp_path / "o"), *common]) == 0
    assert load_model(tmp_path / "o" / "final.safetensors").window_len == 16
    # a different setting cannot silently extend an existing cache
    other = [a if a != "16" else "8" for a in common]  # --traj-per-sample 8
    assert main(["finetune", "--precompute", "--cache-dir", str(tmp_path / "c"), *other]) == 2
    assert main(["finetune", "--precompute", *common]) == 2  # no --cache-dir
    assert main(["finetune", "--data.root", str(tmp_path / "none"), "--init-from", str(student_path),
                 "--output-dir", str(tmp_path / "x")]) == 2


@pytest.mark.slow
def test_ddp_two_processes_share_weights_not_data(tmp_path, student_path, video_root):
    cfg = _cfg(tmp_path, "ddp", student_path, video_root, num_steps=3, checkpoint_every=3)
    a, b = run_two_ranks(run_finetune, cfg, tmp_path)
    for k, v in a["state"].items():
        assert torch.equal(v, b["state"][k]), k
    assert a["losses"] != b["losses"]  # rank r reads its own clips
    ck = torch.load(tmp_path / "ddp" / "checkpoints" / "step_00000003.pth", weights_only=True)
    assert len(ck["ranks"]) == 2 and all("extra" in r for r in ck["ranks"])


def test_real_sample_has_one_home_and_the_cache_does_not_import_the_loop():
    import subprocess
    import sys

    code = ("import sys; import cotracker3_plugin.train.pseudo_label_cache as c; "
            "assert 'cotracker3_plugin.train.finetune' not in sys.modules; "
            "import cotracker3_plugin.train.finetune as f, cotracker3_plugin.train.real_videos as r; "
            "assert c.RealSample is f.RealSample is r.RealSample; "
            "assert f.CachedPseudoLabels is c.CachedPseudoLabels")
    subprocess.run([sys.executable, "-c", code], check=True)
