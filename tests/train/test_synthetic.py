"""The synthetic generator's ground truth agrees exactly with what it renders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cotracker3_plugin.train.synthetic import (
    SyntheticConfig,
    SyntheticGenerator,
    project_points,
    render,
)


def _bilinear(img: np.ndarray, xy: np.ndarray) -> np.ndarray:
    x0, y0 = np.floor(xy[:, 0]).astype(int), np.floor(xy[:, 1]).astype(int)
    fx, fy = (xy[:, 0] - x0)[:, None], (xy[:, 1] - y0)[:, None]
    return ((1 - fx) * (1 - fy) * img[y0, x0] + fx * (1 - fy) * img[y0, x0 + 1]
            + (1 - fx) * fy * img[y0 + 1, x0] + fx * fy * img[y0 + 1, x0 + 1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tracks_reproject_onto_rendered_texture(seed):
    """Layers textured with coordinate ramps: the rendered colour under every visible GT point
    decodes to that point's texture coordinate, and the visibility matches the rendered depth order."""
    cfg = SyntheticConfig(lighting=0.0, num_frames=12, max_objects=5, min_objects=3)
    gen = SyntheticGenerator(cfg)
    rng = np.random.default_rng(seed)
    scene = gen.make_scene(rng)
    for i, layer in enumerate(scene.layers):
        h, w = layer.mask.shape
        v, u = np.mgrid[0:h, 0:w].astype(np.float32)
        layer.texture = np.stack([u, v, np.full_like(u, 1000.0 * i)], -1)
    ids, uv = gen.candidate_points(scene, rng, 400)
    traj, vis = project_points(scene, ids, uv)
    frames, labels = render(scene)
    H, W = cfg.height, cfg.width
    errors, agree, total, hidden, checked = [], 0, 0, 0, 0
    for t in range(cfg.num_frames):
        xy = traj[t]
        inside = (xy[:, 0] >= 0) & (xy[:, 0] < W - 1) & (xy[:, 1] >= 0) & (xy[:, 1] < H - 1)
        # visibility vs the label of the nearest rendered pixel (boundary pixels may differ)
        ix, iy = np.round(xy[inside, 0]).astype(int), np.round(xy[inside, 1]).astype(int)
        agree += int((vis[t, inside] == (labels[t, iy, ix] == ids[inside])).sum())
        total += int(inside.sum())
        # exact position: points whose four neighbouring pixels all show their own layer
        x0, y0 = np.floor(xy[inside, 0]).astype(int), np.floor(xy[inside, 1]).astype(int)
        own = np.ones(len(x0), bool)
        for dy in (0, 1):
            for dx in (0, 1):
                own &= labels[t, y0 + dy, x0 + dx] == ids[inside]
        sel = np.flatnonzero(inside)[own]
        # (a front layer's sliver thinner than a pixel may hide a point between pixel centres)
        hidden += int((~vis[t, sel]).sum())
        checked += len(sel)
        # the ramp textures are reflected beyond their edges, so stay 2 texels inside
        sizes = np.array([scene.layers[i].mask.shape[::-1] for i in ids[sel]])
        sel = sel[((uv[sel] >= 2) & (uv[sel] <= sizes - 3)).all(1)]
        decoded = _bilinear(frames[t], xy[sel])
        assert np.allclose(decoded[:, 2], 1000.0 * ids[sel])
        errors.append(np.abs(decoded[:, :2] - uv[sel]).max(initial=0.0))
    assert total > 1000
    assert agree / total > 0.97
    assert hidden <= 0.002 * checked
    # cv2 warps with 1/32-pixel fixed point; the local linearisation of the homography adds a little
    assert max(errors) < 0.02


def test_sample_layout_determinism_and_track_selection():
    cfg = SyntheticConfig(num_frames=16, num_tracks=48)
    gen = SyntheticGenerator(cfg)
    a = gen.sample(3, np.random.default_rng([7, 3]))
    b = gen.sample(3, np.random.default_rng([7, 3]))
    c = gen.sample(4, np.random.default_rng([7, 4]))
    assert a is not None and b is not None and c is not None
    assert a.video.shape == (16, 3, 96, 128) and a.video.dtype == torch.float32
    assert a.trajectory.shape == (16, 48, 2) and a.visibility.shape == (16, 48) and a.valid.shape == (16, 48)
    assert 0 <= a.video.min() and a.video.max() <= 255
    assert torch.equal(a.video, b.video) and torch.equal(a.trajectory, b.trajectory)
    assert not torch.equal(a.video, c.video)
    # every track visible at the first, middle or last frame (the official candidate rule)
    assert (a.visibility[0] | a.visibility[8] | a.visibility[15]).all()
    # visible points are inside the frame
    xy = a.trajectory[a.visibility]
    assert (xy[:, 0] >= 0).all() and (xy[:, 0] <= 127).all() and (xy[:, 1] >= 0).all() and (xy[:, 1] <= 95).all()


def test_occlusions_and_leaving_the_frame_happen():
    gen = SyntheticGenerator(SyntheticConfig(num_frames=24, leave_frame_prob=1.0, motion_blur_prob=0.5,
                                             blur_samples=3))
    occluded_inside, outside = 0, 0
    for i in range(3):
        s = gen.sample(i, np.random.default_rng(i))
        x, y = s.trajectory[..., 0], s.trajectory[..., 1]
        inside = (x >= 0) & (x <= 127) & (y >= 0) & (y <= 95)
        occluded_inside += int((inside & ~s.visibility).sum())
        outside += int((~inside).sum())
        assert not (~inside & s.visibility).any()
    assert occluded_inside > 50 and outside > 50


def test_image_folder_textures(tmp_path):
    import cv2

    from cotracker3_plugin.errors import UserError

    img = np.zeros((80, 90, 3), np.uint8)
    img[..., 2] = 255  # BGR: pure red
    cv2.imwrite(str(tmp_path / "a.png"), img)
    cv2.imwrite(str(tmp_path / "b.jpg"), img)
    gen = SyntheticGenerator(SyntheticConfig(num_frames=6, image_dir=tmp_path, image_prob=1.0, lighting=0.0))
    assert len(gen.images) == 2
    s = gen.sample(0, np.random.default_rng(0))
    red = (s.video[:, 0] > 250) & (s.video[:, 1] < 5) & (s.video[:, 2] < 5)
    assert red.float().mean() > 0.95
    with pytest.raises(UserError, match="does not exist"):
        SyntheticGenerator(SyntheticConfig(image_dir=tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images or videos"):
        SyntheticGenerator(SyntheticConfig(image_dir=tmp_path / "empty"))


def test_video_frames_as_textures(tmp_path, make_video):
    """Videos in the texture folder give every video_frame_stride-th frame: frames 0, 6, 12, 18 are
    green, all others red, so with stride 6 no red may appear."""
    frames = np.zeros((20, 64, 80, 3), np.uint8)
    frames[..., 0] = 255
    frames[::6] = (0, 255, 0)
    (tmp_path / "tex").mkdir()
    make_video("tex/clip.mp4", frames)
    gen = SyntheticGenerator(SyntheticConfig(num_frames=6, image_dir=tmp_path / "tex", image_prob=1.0,
                                             lighting=0.0, video_frame_stride=6))
    assert [p.name for p in gen.images] == ["clip.mp4"]
    for seed in range(3):
        v = gen.sample(seed, np.random.default_rng(seed)).video
        green = (v[:, 1] > 200) & (v[:, 0] < 60)
        assert green.float().mean() > 0.95
        assert not ((v[:, 0] > 200) & (v[:, 1] < 60)).any()
