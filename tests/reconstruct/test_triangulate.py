"""Dense triangulation with known cameras."""

import numpy as np

from cotracker3_plugin.reconstruct.mapping import make_camera
from cotracker3_plugin.reconstruct.synthetic import make_synthetic_scene
from cotracker3_plugin.reconstruct.triangulate import triangulate_tracks


def test_triangulation_with_true_poses_recovers_points_and_rejects_bad_observations():
    s = make_synthetic_scene(12, 200, noise_px=0.5, seed=1)
    h, w = s.tracks.frame_size
    cam = make_camera("PINHOLE", w, h, 600.0, colmap_pixels=False)
    xy = s.tracks.xy.astype(np.float64).copy()
    xy[5, :20] += 40.0  # a slip of 40 px in one frame for 20 tracks
    registered = np.ones(12, dtype=bool)
    registered[7] = False
    tri = triangulate_tracks(xy, s.tracks.visible, s.world_from_cam, registered, [cam], np.zeros(12, int),
                             max_error=3.0)
    assert len(tri.points) >= 195
    err = np.linalg.norm(tri.points - s.points[tri.track_ids], axis=1)
    assert np.median(err) < 0.01 and err.max() < 0.1
    slipped = tri.track_ids < 20
    assert slipped.sum() >= 18 and not tri.inlier_obs[5, slipped].any()
    assert not tri.inlier_obs[7].any()  # unregistered frame unused
    assert tri.errors.mean() < 1.0


def test_triangulation_drops_tiny_angles():
    s = make_synthetic_scene(3, 50, arc_deg=0.2, noise_px=0.0)
    h, w = s.tracks.frame_size
    cam = make_camera("PINHOLE", w, h, 600.0, colmap_pixels=False)
    tri = triangulate_tracks(s.tracks.xy.astype(np.float64), s.tracks.visible, s.world_from_cam,
                             np.ones(3, bool), [cam], np.zeros(3, int), min_angle_deg=1.0)
    assert len(tri.points) == 0


def test_short_tracks_two_cameras_give_the_exact_points_and_inliers():
    """Noise-free short tracks (a few frames each) seen by a distorted and an undistorted camera:
    every track with two registered views gives its exact point, a slipped observation is the
    only one dropped, and the reported angle of a two-view point is the angle between its rays."""
    import pycolmap

    from cotracker3_plugin.reconstruct.synthetic import look_at

    rng = np.random.default_rng(3)
    T, N = 30, 400
    wfc = np.stack([look_at(np.array([5 * np.sin(a), 0.2 * np.cos(4 * a), 6 - 5 * np.cos(a)]), np.array([0, 0, 6.0]))
                    for a in np.linspace(-0.5, 0.5, T)])
    X = np.stack([rng.uniform(-2, 2, N), rng.uniform(-1.5, 1.5, N), rng.uniform(5, 7, N)], 1)
    cams = [pycolmap.Camera(model="SIMPLE_RADIAL", width=640, height=480, params=[500, 319.5, 239.5, -0.1]),
            pycolmap.Camera(model="PINHOLE", width=640, height=480, params=[600, 610, 320, 240])]
    cidx = rng.integers(0, 2, T)
    cfw = np.linalg.inv(wfc)
    pc = np.einsum("tij,nj->tni", cfw[:, :3, :3], X) + cfw[:, None, :3, 3]
    xy = np.stack([cams[c].img_from_cam(p) for c, p in zip(cidx, pc)])
    length = rng.integers(1, 13, N)
    first = rng.integers(0, T - length + 1)
    usable = (np.arange(T)[:, None] >= first) & (np.arange(T)[:, None] < first + length)
    registered = np.ones(T, bool)
    registered[4] = False
    slipped = np.flatnonzero(length >= 8)[:30]
    slip_frame = first[slipped] + 3
    xy[slip_frame, slipped] += 25.0
    expected = usable & registered[:, None]
    expected[slip_frame, slipped] = False
    ids = np.flatnonzero(expected.sum(0) >= 2)
    assert 0 < len(ids) < N and len(slipped) == 30
    for it in (0, 3):
        tri = triangulate_tracks(xy, usable, wfc, registered, cams, cidx, min_angle_deg=0.0, chunk=128,
                                 refine_iters=it)
        np.testing.assert_array_equal(tri.track_ids, ids)
        np.testing.assert_array_equal(tri.inlier_obs, expected[:, ids])
        np.testing.assert_array_equal(tri.num_views, expected[:, ids].sum(0))
        # Without refinement the solver's 1e-9 ridge biases narrow two-view points by ~1e-6.
        rel = np.linalg.norm(tri.points - X[ids], axis=1) / np.linalg.norm(X[ids], axis=1)
        assert rel.max() < (1e-5 if it == 0 else 1e-8)
        assert tri.errors.max() < (1e-3 if it == 0 else 1e-6)
        two = tri.num_views == 2
        views = expected[:, ids[two]]
        f0, f1 = np.argmax(views, 0), T - 1 - np.argmax(views[::-1], 0)
        rays = [tri.points[two] - wfc[f, :3, 3] for f in (f0, f1)]
        rays = [r / np.linalg.norm(r, axis=1, keepdims=True) for r in rays]
        exact = np.degrees(np.arccos(np.clip((rays[0] * rays[1]).sum(1), -1, 1)))
        np.testing.assert_allclose(tri.angles[two], exact, rtol=1e-9, atol=1e-9)
        assert two.sum() > 10 and (tri.angles[~two] > 0).all()
