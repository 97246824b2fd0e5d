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
