"""Usable observations, frame pairs and the moving-track filter."""

import numpy as np

from cotracker3_plugin.reconstruct.correspondences import (
    frame_pairs,
    moving_track_filter,
    usable_observations,
)
from cotracker3_plugin.reconstruct.synthetic import make_synthetic_scene


def test_frame_pairs_window_and_long_range():
    pairs = frame_pairs(40, window=5)
    assert (0, 5) in pairs and (0, 6) not in pairs
    assert {(0, 10), (0, 20), (3, 23)} <= set(pairs) and (0, 40) not in pairs
    assert all(i < j for i, j in pairs) and len(pairs) == len(set(pairs))
    assert len(frame_pairs(40, window=5, long_range=False)) == sum(min(5, 39 - i) for i in range(40))


def test_usable_observations_margin_confidence_and_mask():
    s = make_synthetic_scene(4, 50, noise_px=0.0)
    tr = s.tracks
    u = usable_observations(tr, margin=0)
    np.testing.assert_array_equal(u, tr.visible)
    u20 = usable_observations(tr, margin=20)
    assert u20.sum() < u.sum() and np.all(tr.inside_frame(20)[u20])
    mask = np.zeros(tr.frame_size, dtype=bool)
    mask[:, : tr.frame_size[1] // 2] = True  # ignore the left half
    um = usable_observations(tr, margin=0, exclude_mask=mask)
    assert np.all(tr.xy[..., 0][um] >= tr.frame_size[1] // 2 - 1)
    conf = tr.confidence.copy()
    conf[0] = 0.3
    tr.confidence = conf
    assert not usable_observations(tr, min_confidence=0.5)[0].any()


def test_moving_tracks_are_rejected():
    s = make_synthetic_scene(16, 300, moving_fraction=0.15, seed=3)
    u = usable_observations(s.tracks)
    static, geoms = moving_track_filter(s.tracks, u, frame_pairs(16, 4), threshold=2.0)
    assert len(geoms) > 0
    caught = (~static[s.moving]).mean()
    false_alarm = (~static[~s.moving]).mean()
    assert caught > 0.9, caught
    assert false_alarm < 0.02, false_alarm


def _moving_texture(seed: int, T: int, gain_per_frame: float = 0.0, noise_px: float = 2.5, top: float = 255):
    """A smooth random texture moving by known sub-pixel shifts (exposure rising by ``gain_per_frame``),
    grid queries on frame 0 and coarse tracks = truth + ``noise_px`` Gaussian noise."""
    import cv2

    from cotracker3_plugin.tracks import Tracks

    rng = np.random.default_rng(seed)
    H, W = 120, 160
    base = cv2.GaussianBlur(rng.uniform(0, top, (H + 40, W + 40)).astype(np.float32), (0, 0), 2.0)
    shifts = np.array([[1.7 * t, -0.9 * t] for t in range(T)])
    frames = np.stack([
        np.repeat(((1 + gain_per_frame * t) * cv2.warpAffine(base, np.float32([[1, 0, -20 + dx], [0, 1, -20 + dy]]),
                                                              (W, H)))[..., None], 3, -1).clip(0, 255).astype(np.uint8)
        for t, (dx, dy) in enumerate(shifts)])
    gx, gy = np.meshgrid(np.linspace(25, W - 25, 8), np.linspace(25, H - 25, 6))
    q = np.stack([gx.ravel(), gy.ravel()], -1)
    truth = q[None] + shifts[:, None]
    coarse = truth + rng.normal(0, noise_px, truth.shape)
    coarse[0] = q
    vis = np.ones(truth.shape[:2], bool)
    return frames, truth, Tracks(coarse, vis, vis.astype(np.float32), np.c_[np.zeros(len(q)), q], (H, W))


def test_refine_observations_sharpens_coarse_tracks_and_drops_wrong_ones():
    from cotracker3_plugin.reconstruct.correspondences import refine_observations

    frames, truth, tr = _moving_texture(0, 6)
    coarse = tr.xy
    coarse[3, 0] += 40.0  # a wrong association: LK must not pull it back, and it is dropped
    xy, kept = refine_observations(tr, frames, tr.visible)
    assert not kept[3, 0] and kept.mean() > 0.9
    err_before = np.linalg.norm(coarse - truth, axis=-1)[1:][kept[1:]]
    err_after = np.linalg.norm(xy - truth, axis=-1)[1:][kept[1:]]
    assert np.median(err_before) > 2.0 and np.median(err_after) < 0.1, (np.median(err_before), np.median(err_after))


def test_refine_observations_chains_from_the_nearest_kept_frame_when_the_query_frame_differs():
    import cv2

    from cotracker3_plugin.reconstruct.correspondences import refine_observations
    from cotracker3_plugin.tracks import Tracks

    # The texture turns 4 degrees per frame about the image centre: 28 degrees from the query frame
    # at the end, too much for translation-only LK from the query patch, 4 degrees from the previous frame
    # (LK's translation model is biased by ~0.1 px per degree of in-patch rotation: errors grow with the angle).
    rng = np.random.default_rng(1)
    T, H, W = 8, 160, 160
    base = cv2.GaussianBlur(rng.uniform(0, 255, (H, W)).astype(np.float32), (0, 0), 2.5)
    c = (W / 2 - 0.5, H / 2 - 0.5)
    mats = [cv2.getRotationMatrix2D(c, 4.0 * t, 1.0) for t in range(T)]
    frames = np.stack([np.repeat(cv2.warpAffine(base, m, (W, H), borderMode=cv2.BORDER_REFLECT)[..., None], 3, -1)
                       .clip(0, 255).astype(np.uint8) for m in mats])
    ang = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    q = np.stack([c[0] + 45 * np.cos(ang), c[1] + 45 * np.sin(ang)], -1)
    truth = np.stack([q @ m[:, :2].T + m[:, 2] for m in mats])
    coarse = truth + rng.normal(0, 2.0, truth.shape)
    coarse[0] = q
    vis = np.ones(truth.shape[:2], bool)
    tr = Tracks(coarse, vis, vis.astype(np.float32), np.c_[np.zeros(len(q)), q], (H, W))
    xy, kept = refine_observations(tr, frames, vis)
    assert kept[-1].mean() > 0.8, kept.sum(1)  # from the query frame alone: 1 of 12
    before = np.linalg.norm(coarse - truth, axis=-1)[1:][kept[1:]]
    after = np.linalg.norm(xy - truth, axis=-1)[1:][kept[1:]]
    assert np.median(before) > 2.0 and np.median(after) < 1.0, (np.median(before), np.median(after))


def test_refine_observations_ignores_exposure_changes():
    from cotracker3_plugin.reconstruct.correspondences import refine_observations

    # exposure rising 12 % per frame (a phone's auto-exposure)
    frames, truth, tr = _moving_texture(2, 8, gain_per_frame=0.12, noise_px=2.0, top=150)
    xy, kept = refine_observations(tr, frames, tr.visible)
    assert kept.mean() > 0.95, kept.sum(1)  # raw intensities: every observation after frame 0 was dropped
    assert np.median(np.linalg.norm(xy - truth, axis=-1)[1:]) < 0.1
