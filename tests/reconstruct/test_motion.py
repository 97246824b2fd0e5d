"""Motion segmentation on synthetic tracks with known labels: two-view test, multi-view test, masks."""

import numpy as np

from cotracker3_plugin.reconstruct.correspondences import frame_pairs, usable_observations
from cotracker3_plugin.reconstruct.mapping import make_camera
from cotracker3_plugin.reconstruct.motion import MotionConfig, moving_masks, multiview_test, segment_motion
from cotracker3_plugin.reconstruct.synthetic import look_at, make_synthetic_scene


def test_two_view_test_catches_an_object_that_breaks_the_epipolar_geometry():
    s = make_synthetic_scene(16, 300, moving_fraction=0.15, seed=3)
    u = usable_observations(s.tracks)
    seg = segment_motion(s.tracks.xy, u, frame_pairs(16, 4))
    assert len(seg.geometries) == len(frame_pairs(16, 4))
    caught = seg.dynamic[s.moving].mean()
    false_alarm = seg.dynamic[~s.moving].mean()
    assert caught > 0.9, caught
    assert false_alarm < 0.02, false_alarm


def _follow_shot(seed: int = 0):
    """A camera walking sideways on a slight arc while a box walks beside it, the same way: the box stays in
    view and moves along the epipolar lines, so most frame pairs cannot tell it from a far static object."""
    rng = np.random.default_rng(seed)
    T, h, w, f = 30, 480, 640, 500.0
    K = np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1.0]])
    room = rng.uniform([-6, -2, 6], [6, 2, 12], (500, 3))
    box = rng.uniform([-0.5, -1, 3], [0.5, 1, 3.5], (150, 3))
    s = np.linspace(0, 1, T)
    centres = np.stack([2.0 * s - 1, np.zeros(T), 0.8 * (s - 0.5) ** 2], axis=1)
    wfc = np.stack([look_at(c, c + np.array([0.15 * (si - 0.5), 0, 1.0])) for c, si in zip(centres, s)])
    # The box keeps pace with the camera, swaying a little as a walker does.
    walk = np.stack([1.6 * s - 0.8 + 0.08 * np.sin(4 * np.pi * s), 0.03 * np.sin(8 * np.pi * s), 0 * s], 1)
    pts = np.concatenate([np.repeat(room[None], T, 0), box[None] + walk[:, None]], 1)
    cfw = np.linalg.inv(wfc)
    pc = np.einsum("tij,tnj->tni", cfw[:, :3, :3], pts) + cfw[:, None, :3, 3]
    xy = np.einsum("ij,tnj->tni", K, pc)
    xy = xy[..., :2] / xy[..., 2:] + rng.normal(0, 0.3, (T, len(room) + len(box), 2))
    vis = (xy[..., 0] > 4) & (xy[..., 0] < w - 5) & (xy[..., 1] > 4) & (xy[..., 1] < h - 5)
    moving = np.r_[np.zeros(len(room), bool), np.ones(len(box), bool)]
    return xy, vis, moving, wfc, K, (h, w)


def test_multiview_test_catches_what_moves_along_the_epipolar_lines():
    xy, vis, moving, wfc, K, (h, w) = _follow_shot()
    seg = segment_motion(xy, vis, frame_pairs(len(xy), 5))
    assert seg.dynamic[moving].mean() < 0.5  # the two-view test misses most of the box
    cam = make_camera("SIMPLE_PINHOLE", w, h, K[0, 0], colmap_pixels=False)
    test = multiview_test(xy, vis, wfc, np.ones(len(xy), bool), cam, limit=1.5)
    dyn = test.dynamic()
    assert dyn[moving].mean() > 0.95, dyn[moving].mean()
    assert dyn[~moving].mean() < 0.02, dyn[~moving].mean()
    # Observations: the room's fit within the limit, the box's do not.
    assert test.moving_obs[:, ~moving][vis[:, ~moving]].mean() < 0.02
    assert test.moving_obs[:, moving][vis[:, moving]].mean() > 0.8


def test_a_static_track_that_slips_onto_an_occluder_moves_only_there():
    xy, vis, moving, wfc, K, (h, w) = _follow_shot(1)
    slipped = np.flatnonzero(~moving & vis.all(0))[:20]
    xy[20:25, slipped] += [40.0, -25.0]  # five frames on something else
    cam = make_camera("SIMPLE_PINHOLE", w, h, K[0, 0], colmap_pixels=False)
    test = multiview_test(xy, vis, wfc, np.ones(len(xy), bool), cam, limit=1.5)
    assert not test.dynamic()[slipped].any()  # most of each track still fits its point
    obs = test.moving_obs[:, slipped] & vis[:, slipped]
    assert obs[20:25].sum() >= 0.95 * vis[20:25, slipped].sum() and obs[:20].sum() == 0 and obs[25:].sum() == 0


def test_masks_cover_the_moving_region_and_nothing_else():
    rng = np.random.default_rng(0)
    h, w = 240, 320
    xy = rng.uniform([0, 0], [w - 1, h - 1], (1, 3000, 2))
    inside = (xy[0, :, 0] > 100) & (xy[0, :, 0] < 200) & (xy[0, :, 1] > 60) & (xy[0, :, 1] < 160)
    moving = inside[None].copy()
    moving[0, np.flatnonzero(inside)[::4]] = False  # a quarter of the subject's tracks escaped detection
    moving[0, np.flatnonzero(~inside)[:5]] = True  # a few stray false alarms outside
    usable = np.ones((1, 3000), bool)
    m = moving_masks(xy, usable, moving, usable, (h, w), MotionConfig(mask_dilation=0))[0]
    truth = np.zeros((h, w), bool)
    truth[60:160, 100:200] = True
    iou = (m & truth).sum() / (m | truth).sum()
    assert iou > 0.85, iou
    assert (m & ~truth).sum() < 0.08 * truth.sum()  # a px or two around the outline, no stray blobs
    assert not moving_masks(xy, usable, np.zeros_like(moving), usable, (h, w)).any()
