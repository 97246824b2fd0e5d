"""SIFT query sampling, the skip rule, real-video clips and the KLT teacher."""

import numpy as np
import pytest
import torch

from cotracker3_plugin.train.real_videos import RealVideoConfig, RealVideoDataset, cut_clip
from cotracker3_plugin.train.sift_queries import sample_sift_queries
from cotracker3_plugin.train.teachers import (
    KLTTeacher,
    LKRefinedTeacher,
    PseudoLabels,
    TeacherPool,
    helper_grid,
)


def _textured_video(t=12, h=96, w=128, shift=2, seed=0):
    rng = np.random.default_rng(seed)
    big = (rng.random((h, w + shift * t)) * 255).astype(np.uint8)
    big = np.repeat(big[..., None], 3, axis=2)
    import cv2

    big = cv2.GaussianBlur(big, (3, 3), 0)
    return np.stack([big[:, i * shift:i * shift + w] for i in range(t)])


def test_sift_queries_on_texture_are_integer_and_early():
    frames = _textured_video(t=20)
    out = sample_sift_queries(frames, num_queries=64, rng=np.random.default_rng(0))
    assert out.ok and out.queries.shape == (64, 3) and out.num_found >= 64
    assert (out.queries[:, 0] <= int(0.25 * 20)).all()  # first quarter of the clip only
    np.testing.assert_array_equal(out.queries, np.floor(out.queries))  # truncated to integers


def test_sift_skip_rule_on_featureless_video():
    frames = np.full((10, 64, 80, 3), 128, np.uint8)  # a blank wall: no keypoints
    out = sample_sift_queries(frames, num_queries=32, rng=np.random.default_rng(0))
    assert not out.ok and out.num_found == 0
    q = out.queries
    assert q.shape == (32, 3) and (q[:, 0] < 10).all() and (q[:, 1] < 80).all() and (q[:, 2] < 64).all()


def test_klt_teacher_follows_a_translation():
    frames = _textured_video(t=8, shift=2)
    video = torch.from_numpy(frames).permute(0, 3, 1, 2).float()[None]
    queries = torch.tensor([[[0.0, 60.0, 40.0], [0.0, 70.0, 50.0]]])
    labels = KLTTeacher()(video, queries)
    assert labels.tracks.shape == (1, 8, 2, 2) and labels.teacher == "klt"
    # content moves left by 2 px per frame
    expected_x = queries[0, :, 1][None] - 2 * torch.arange(8)[:, None]
    assert torch.allclose(labels.tracks[0, :, :, 0], expected_x, atol=0.5)
    assert labels.visible.all()


def test_lk_refined_teacher_sharpens_a_coarse_teachers_labels():
    frames = _textured_video(t=8, shift=2)
    video = torch.from_numpy(frames).permute(0, 3, 1, 2).float()[None]
    queries = torch.tensor([[[0.0, 60.0, 40.0], [0.0, 70.0, 50.0], [0.0, 50.0, 30.0]]])
    truth = queries[0, :, 1:][None].repeat(8, 1, 1)
    truth[..., 0] -= 2 * torch.arange(8)[:, None]  # content moves left by 2 px per frame

    class Coarse:  # right association, 2-3 px off; the third label is hidden, wrongly
        name = "coarse"

        def __call__(self, video, queries):
            noisy = truth + torch.tensor([2.5, -2.0])
            noisy[0] = queries[0, :, 1:]
            visible = torch.ones(8, 3, dtype=torch.bool)
            visible[:, 2] = False
            return PseudoLabels(noisy[None], visible[None], self.name)

    labels = LKRefinedTeacher(Coarse())(video, queries)
    # chained KLT holds all three points through this clean clip: sub-pixel labels, all visible
    assert labels.teacher == "coarse+lk" and labels.visible.all()
    assert (labels.tracks[0] - truth).abs().max() < 0.3

    from cotracker3_plugin.train.finetune import build_teachers

    assert [t.name for t in build_teachers(["klt+lk", "klt"], student=None)] == ["klt+lk", "klt"]


def test_teacher_pool_is_uniform_and_resumable():
    pool = TeacherPool([KLTTeacher(), KLTTeacher(), KLTTeacher()], seed=3)
    state = pool.state_dict()
    draws = [pool.teachers.index(pool.draw()) for _ in range(300)]
    assert set(np.bincount(draws)) and min(np.bincount(draws)) > 70
    pool.load_state_dict(state)
    assert [pool.teachers.index(pool.draw()) for _ in range(10)] == draws[:10]


def test_helper_grid_matches_official_layout():
    g = helper_grid(5, 384, 512)
    assert g.shape == (25, 3) and (g[:, 0] == 0).all()
    assert g[0, 1].item() == pytest.approx(8.0) and g[4, 1].item() == pytest.approx(504.0)


def test_cut_clip_pingpong_stride_and_crop():
    frames = np.arange(10)[:, None, None, None] * np.ones((1, 50, 60, 3), np.uint8)
    cfg = RealVideoConfig(seq_len=16, random_seq_len=False, random_frame_rate=True, crop_size=(40, 48))
    clip = cut_clip(frames, cfg, np.random.default_rng(0))
    assert clip.shape == (16, 40, 48, 3)
    steps = np.abs(np.diff(clip[:, 0, 0, 0].astype(int)))
    assert set(steps) <= {1}  # ping-pong keeps consecutive frames adjacent


def test_real_video_dataset_on_shared_videos(data_dir):
    cfg = RealVideoConfig(root=data_dir / "videos", seq_len=12, crop_size=(96, 128), max_side=256)
    ds = RealVideoDataset(cfg, length=4, seed=1)
    a, b = ds[2], ds[2]
    assert a["video"].shape[1:] == (3, 96, 128) and 6 <= a["video"].shape[0] < 12
    assert torch.equal(a["video"], b["video"])  # deterministic per index
