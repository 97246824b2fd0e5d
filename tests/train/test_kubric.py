"""Kubric MOVi-F reader on tiny fake sequences written in the official layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cotracker3_plugin.errors import UserError
from cotracker3_plugin.train.data import BatchStream
from cotracker3_plugin.train.kubric import KubricConfig, KubricMovifDataset, eraser, write_fake_sequence

T, H, W, N = 24, 64, 80, 300


def _ramp_sequence(root, name: str, seed: int):
    """Frames whose colour encodes the pixel position (R = 3x, G = 3y); points that drift."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    frame = np.stack([3 * xx, 3 * yy, np.full_like(xx, 128)], -1).astype(np.uint8)
    frames = np.repeat(frame[None], T, 0)
    start = rng.uniform([2, 2], [W - 3, H - 3], (N, 2))
    coords = (start[:, None] + np.zeros((1, T, 1))).astype(np.float32)  # static points (N, T, 2)
    occluded = rng.random((N, T)) < 0.2
    write_fake_sequence(root, name, frames, coords, occluded)
    return coords, occluded


@pytest.fixture
def kubric_root(tmp_path):
    nested = tmp_path / "kubric" / "kubric_movi_f_120_frames_dense" / "movi_f"
    truth = {f"seq{i}": _ramp_sequence(nested, f"seq{i}", i) for i in range(3)}
    return tmp_path, truth


def test_layout_and_occlusion_flag_negation(kubric_root):
    root, truth = kubric_root
    cfg = KubricConfig(crop_size=(48, 64), seq_len=T, random_seq_len=False, random_frame_rate=False,
                       traj_per_sample=32, use_augs=False, include_last_frame=False)
    ds = KubricMovifDataset(root, cfg)  # the official dataset root is accepted
    assert len(ds) == 3 * 4
    s = ds.sample(1, np.random.default_rng(0))
    assert s is not None and s.name == "seq1"
    assert s.video.shape == (T, 3, 48, 64) and s.video.dtype == torch.float32
    assert s.trajectory.shape == (T, 32, 2) and s.visibility.shape == (T, 32) and s.valid.shape == (T, 32)
    # no augmentation: a plain crop, so the colour under every point decodes to its original position
    coords, occluded = truth["seq1"]
    frame0 = s.video[0].permute(1, 2, 0).numpy()
    for n in range(32):
        x, y = s.trajectory[0, n].tolist()
        ox, oy = frame0[0, 0, 0] / 3, frame0[0, 0, 1] / 3  # crop offset
        match = np.flatnonzero((np.abs(coords[:, 0, 0] - (x + ox)) < 1e-3) & (np.abs(coords[:, 0, 1] - (y + oy)) < 1e-3))
        assert len(match) >= 1
        inside = 0 <= x <= 63 and 0 <= y <= 47
        # "visibility" in the .npy is an occlusion flag
        assert bool(s.visibility[:, n].numpy().tolist() == list(~occluded[match[0]] & inside))
    # every track is visible in the first or the middle frame
    assert (s.visibility[0] | s.visibility[T // 2]).all()
    # too few candidates: unusable sample
    big = KubricMovifDataset(root, KubricConfig(crop_size=(48, 64), seq_len=T, random_seq_len=False,
                                                 random_frame_rate=False, traj_per_sample=5000, use_augs=False))
    assert big.sample(0, np.random.default_rng(0)) is None


def test_augmented_geometry(kubric_root):
    root, _ = kubric_root
    cfg = KubricConfig(crop_size=(48, 64), seq_len=16, traj_per_sample=64, color_prob=0.0, blur_prob=0.0,
                       eraser_prob=0.0, pad_max=6, max_crop_offset=4)
    ds = KubricMovifDataset(root, cfg)
    spreads, erased, lengths = [], 0, set()
    for i in range(6):
        s = ds.sample(i, np.random.default_rng([5, i]))
        assert s is not None
        L = s.video.shape[0]
        lengths.add(L)
        assert 8 <= L < 16
        video = s.video.permute(0, 2, 3, 1).numpy()
        decoded = np.full((L, 64, 2), np.nan)
        for t in range(L):
            xy = s.trajectory[t].numpy()
            vis = s.visibility[t].numpy()
            # flips map x -> W - x, so a visible point lies within one pixel of the pixel showing it
            ix = np.clip(np.round(xy[vis, 0]).astype(int), 0, 63)
            iy = np.clip(np.round(xy[vis, 1]).astype(int), 0, 47)
            col = video[t, iy, ix]
            ok = col[:, 2] == 128  # not the zero padding
            erased += int((~ok).sum())
            decoded[t, np.flatnonzero(vis)[ok]] = col[ok, :2] / 3.0
        # the fake points are static, so every visible sighting decodes to the same source pixel
        spreads.append(np.nanmax(decoded, 0) - np.nanmin(decoded, 0))
        assert (s.visibility[0] | s.visibility[L // 2] | s.visibility[L - 1]).all()
    assert len(lengths) > 1
    assert erased == 0
    spread = np.concatenate(spreads)
    spread = spread[~np.isnan(spread)]
    assert len(spread) > 300 and spread.max() <= 2.0 and np.median(spread) <= 1.0


def test_eraser_occludes_exactly_the_points_it_covers():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(6)]
    original = [f.copy() for f in frames]
    trajs = rng.uniform([0, 0], [W - 1, H - 1], (6, 500, 2)).astype(np.float32)
    visible = np.ones((6, 500), bool)
    eraser(frames, trajs, visible, np.random.default_rng(1), prob=1.0)
    assert visible[0].all() and np.array_equal(frames[0], original[0])  # the first frame is kept
    for t in range(1, 6):
        ix, iy = np.floor(trajs[t, :, 0]).astype(int), np.floor(trajs[t, :, 1]).astype(int)
        changed = (frames[t][iy, ix] != original[t][iy, ix]).any(-1)
        assert np.array_equal(changed, ~visible[t])
    assert (~visible).sum() > 50


def test_deterministic_stream_and_errors(kubric_root, tmp_path):
    root, _ = kubric_root
    cfg = KubricConfig(crop_size=(48, 64), seq_len=16, traj_per_sample=32, color_prob=1.0, blur_prob=1.0)
    ds = KubricMovifDataset(root, cfg)
    a = BatchStream(ds, seed=3, rank=1, world_size=2).next_batch()
    b = BatchStream(ds, seed=3, rank=1, world_size=2).next_batch()
    c = BatchStream(ds, seed=3, rank=0, world_size=2).next_batch()
    assert torch.equal(a.video, b.video) and torch.equal(a.trajectory, b.trajectory)
    assert not torch.equal(a.trajectory[:, :1], c.trajectory[:, :1]) or a.names != c.names
    with pytest.raises(UserError, match="no Kubric sequences"):
        KubricMovifDataset(tmp_path / "kubric")
    with pytest.raises(UserError, match="does not exist"):
        KubricMovifDataset(tmp_path / "missing")
