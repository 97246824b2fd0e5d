"""Usable observations and frame pairs."""

import numpy as np

from cotracker3_plugin.reconstruct.correspondences import frame_pairs, usable_observations
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
