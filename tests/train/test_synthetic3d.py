"""The 3-D synthetic generator: exact tracks, occlusion by depth, independent object motion,
determinism, the trainer's sample layout, and a short training run on its clips."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from cotracker3_plugin.train.data import MixedSource, collate
from cotracker3_plugin.train.synthetic import SyntheticConfig, SyntheticGenerator, procedural_texture
from cotracker3_plugin.train.synthetic3d import (
    NEAR,
    Scene3D,
    Synthetic3DConfig,
    Synthetic3DGenerator,
    build_atlas,
    look_at,
    render_frame,
    static_shape,
    track_points,
)

H, W = 48, 64


def _generated(seed: int = 0, **kw):
    cfg = Synthetic3DConfig(num_frames=12, height=H, width=W, num_tracks=48, **kw)
    gen = Synthetic3DGenerator(cfg)
    for i in range(seed, seed + 20):
        out = gen.sample_with_scene(i, np.random.default_rng([7, i]))
        if out is not None:
            return out
    raise AssertionError("no usable sample in 20 seeds")


def _reproject(scene: Scene3D, shape_id: int, local: np.ndarray, t: int) -> tuple[np.ndarray, float]:
    """Pixel position and depth of one surface point, written out independently of the generator."""
    sh = scene.shapes[shape_id]
    world = sh.rotation[t] @ local + sh.position[t]
    cam = scene.cam_rotation[t].T @ (world - scene.cam_position[t])
    p = scene.K @ (cam / cam[2])
    return p[:2], float(cam[2])


def test_tracks_are_the_projections_of_fixed_surface_points():
    sample, scene, sid, local = _generated(0)
    T, N = sample.visibility.shape
    err = 0.0
    for j in range(N):
        sh = scene.shapes[int(sid[j])]
        if sh.kind == "sphere":  # the tracked point lies on its surface
            assert abs(np.linalg.norm(local[j]) - sh.extent[0]) < 1e-6
        else:
            assert np.isclose(np.abs(local[j]), sh.extent, atol=1e-6).any()
        for t in range(T):
            xy, z = _reproject(scene, int(sid[j]), local[j], t)
            if z > NEAR:
                err = max(err, float(np.abs(xy - sample.trajectory[t, j].numpy()).max()))
            else:
                assert not sample.visibility[t, j]
    assert err < 1e-4, err


def test_visibility_agrees_with_the_rendered_depth():
    """Visible iff the point's depth equals the renderer's z-buffer at its position: the camera is
    shifted by the sub-pixel offset so that the track lands on a pixel centre, then rendered."""
    sample, scene, sid, local = _generated(1)
    traj, vis = sample.trajectory.numpy().astype(np.float64), sample.visibility.numpy()
    t_idx, j_idx = np.nonzero(vis | ((traj[..., 0] >= 0) & (traj[..., 0] <= W - 1) & (traj[..., 1] >= 0)
                                     & (traj[..., 1] <= H - 1)))
    rng = np.random.default_rng(0)
    occluded = [k for k in range(len(t_idx)) if not vis[t_idx[k], j_idx[k]]]
    seen = [k for k in range(len(t_idx)) if vis[t_idx[k], j_idx[k]]]
    picks = rng.permutation(occluded)[:25].tolist() + rng.permutation(seen)[:25].tolist()
    assert len(occluded) >= 5, "the sample has too few occluded observations to test"
    for k in picks:
        t, j = int(t_idx[k]), int(j_idx[k])
        xy, z = _reproject(scene, int(sid[j]), local[j], t)
        if z <= NEAR:
            assert not vis[t, j]
            continue
        px = np.clip(np.rint(xy), 0, [W - 1, H - 1])
        K = scene.K.copy()
        K[:2, 2] += px - xy  # the exact position becomes the centre of pixel px
        shifted = dataclasses.replace(scene, K=K)
        _, zbuf = render_frame(shifted, t)
        at = float(zbuf[int(px[1]), int(px[0])])
        assert (abs(at - z) < 1e-3 * z) == vis[t, j], (t, j, z, at, vis[t, j])
        assert at <= z * (1 + 1e-3)  # nothing is rendered behind a tracked surface point


def _corridor_scene(T: int = 11) -> Scene3D:
    """A room (8 x 3 x 8 m), a 0.6 m box in its middle, and a camera sliding sideways from x = -1.5
    to 1.5 at z = -3, looking straight ahead (+z)."""
    room = static_shape("room", [4.0, 1.5, 4.0], [0.0, 1.5, 0.0], T, textures=tuple(range(6)))
    box = static_shape("box", [0.3, 0.3, 0.3], [0.0, 1.0, 0.0], T, textures=(6, 7, 8))
    cam = np.stack([[-1.5 + 0.3 * t, 1.0, -3.0] for t in range(T)])
    rot = np.stack([look_at(c, c + [0.0, 0.0, 1.0]) for c in cam])
    f = 50.0
    K = np.array([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1]])
    rng = np.random.default_rng(0)
    atlas = build_atlas([procedural_texture(rng, 32, 32) for _ in range(9)], [8.0] * 9, [False] * 9)
    return Scene3D([room, box], K, rot, cam, H, W, atlas)


def test_a_point_behind_a_box_is_occluded_only_while_the_box_hides_it():
    scene = _corridor_scene()
    # the back wall's point (0, 1, 4), the box's front face centre, and its back face centre
    sid = np.array([0, 1, 1])
    local = np.array([[0.0, -0.5, 4.0], [0.0, 0.0, -0.3], [0.0, 0.0, 0.3]])
    traj, vis = track_points(scene, sid, local)
    # The line from the camera at x_c to the wall point passes the box (|x| <= 0.3 for z in
    # [-0.3, 0.3]) iff 0.529 |x_c| <= 0.3: x_c in {-0.3, 0, 0.3}, frames 4, 5, 6.
    np.testing.assert_array_equal(vis[:, 0], [True] * 4 + [False] * 3 + [True] * 4)
    assert vis[:, 1].all() and not vis[:, 2].any()  # the front face is seen, the back face never
    # the renderer's z-buffer says the same at the wall point's pixel
    for t, expected in ((0, 7.0), (5, 2.7)):
        _, zbuf = render_frame(scene, t)
        x, y = np.rint(traj[t, 0]).astype(int)
        assert abs(zbuf[y, x] - expected) < 0.05 * expected, (t, zbuf[y, x])


def test_moving_objects_move_independently_of_the_camera_and_each_other():
    cfg = Synthetic3DConfig(num_frames=12, height=H, width=W, num_tracks=48, min_moving=2, max_moving=3)
    gen = Synthetic3DGenerator(cfg)
    for i in range(30):
        out = gen.sample_with_scene(i, np.random.default_rng([11, i]))
        if out is not None and sum(s.moving for s in out[1].shapes) >= 2:
            break
    else:
        pytest.fail("no sample with two moving objects")
    sample, scene, sid, local = out
    assert not scene.shapes[0].moving  # the room stands still; the camera moves
    assert np.ptp(scene.cam_position, axis=0).max() > 0.05

    def motion(shape) -> np.ndarray:  # pose at the last frame relative to the first (4x4)
        def pose(t):
            m = np.eye(4)
            m[:3, :3], m[:3, 3] = shape.rotation[t], shape.position[t]
            return m
        return pose(-1) @ np.linalg.inv(pose(0))

    moving = [s for s in scene.shapes if s.moving]
    rel = [motion(s) for s in moving]
    for a in range(len(rel)):
        assert not np.allclose(rel[a], np.eye(4), atol=1e-3)
        for b in range(a + 1, len(rel)):
            assert not np.allclose(rel[a], rel[b], atol=1e-3)
    # a point on a moving object leaves the track its world position would have had if it stood
    # still; a room point is exactly that static track
    T = scene.num_frames
    for j in range(len(sid)):
        sh = scene.shapes[int(sid[j])]
        world0 = sh.to_world(0, local[j][None])[0]
        static = []
        for t in range(T):
            cam = scene.cam_rotation[t].T @ (world0 - scene.cam_position[t])
            static.append((scene.K @ (cam / cam[2]))[:2] if cam[2] > NEAR else np.full(2, np.nan))
        dev = np.nanmax(np.abs(np.array(static) - sample.trajectory[:, j].numpy()))
        if sh.moving:
            assert dev > 0.5, (j, dev)
        else:
            assert dev < 1e-3, (j, dev)


def test_same_seed_same_clip_and_trainer_layout():
    cfg = Synthetic3DConfig(num_frames=10, min_frames=6, height=H, width=W, num_tracks=32)
    gen = Synthetic3DGenerator(cfg)
    a = gen.sample(3, np.random.default_rng([5, 3]))
    b = gen.sample(3, np.random.default_rng([5, 3]))
    c = gen.sample(4, np.random.default_rng([5, 4]))
    assert a is not None and b is not None and c is not None
    for k in ("video", "trajectory", "visibility", "valid"):
        assert torch.equal(getattr(a, k), getattr(b, k)), k
    assert not torch.equal(a.trajectory[0], c.trajectory[0])
    T = a.video.shape[0]
    assert 6 <= T < 10
    assert a.video.shape == (T, 3, H, W) and a.video.dtype == torch.float32
    assert 0 <= float(a.video.min()) and float(a.video.max()) <= 255 and float(a.video.std()) > 10
    assert a.trajectory.shape == (T, 32, 2) and a.trajectory.dtype == torch.float32
    assert a.visibility.shape == (T, 32) and a.visibility.dtype == torch.bool
    assert a.valid.shape == (T, 32) and a.valid.dtype == torch.float32 and bool((a.valid == 1).all())
    assert a.visibility[[0, T // 2, T - 1]].any(0).all()  # seen at the first, middle or last frame
    # it stacks with layered clips (the mixed stream does that)
    layered = SyntheticGenerator(SyntheticConfig(num_frames=8, height=H, width=W, num_tracks=32))
    l_sample = next(s for i in range(10) if (s := layered.sample(i, np.random.default_rng(i))) is not None)
    batch = collate([a, l_sample])
    assert batch.video.shape == (2, 8, 3, H, W) and batch.trajectory.shape == (2, 8, 32, 2)


def test_mixed_source_draws_both_kinds_by_the_sample_seed():
    small = dict(num_frames=6, height=32, width=48, num_tracks=8)
    mix = MixedSource([SyntheticGenerator(SyntheticConfig(**small)), Synthetic3DGenerator(Synthetic3DConfig(**small))],
                      [0.5, 0.5])
    names = [s.name.split("-")[0] for i in range(12) if (s := mix.sample(i, np.random.default_rng([1, i])))]
    assert {"synthetic", "synthetic3d"} <= set(names)
    again = [s.name.split("-")[0] for i in range(12) if (s := mix.sample(i, np.random.default_rng([1, i])))]
    assert names == again


def test_two_training_steps_on_3d_clips(tmp_path):
    from cotracker3_plugin.cli import main

    torch.set_num_threads(1)
    out = tmp_path / "run3d"
    code = main(["train", "--output-dir", str(out), "--model", "tiny", "--data", "synthetic3d", "--crop-size", "32",
                 "48", "--seq-len", "8", "--random-seq-len", "False", "--traj-per-sample", "16", "--num-steps", "2",
                 "--eval-every", "2", "--eval-samples", "1", "--log-every", "1", "--no-tensorboard"])
    assert code == 0 and (out / "final.safetensors").is_file()
    header = (out / "eval.csv").read_text().splitlines()[0]
    assert "synthetic3d_average_jaccard" in header and "average_jaccard" in header
    assert (out / "log.csv").read_text().count("\n") == 3
