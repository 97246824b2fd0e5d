"""Usable observations and frame pairs."""

import numpy as np

from cotracker3_plugin.reconstruct.correspondences import frame_pairs, usable_observations
from cotracker3_plugin.reconstruct.synthetic import make_synthetic_scene
from cotracker3_plugin.tracks import Tracks


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


def test_split_tracks_cuts_staggered_pieces_and_keeps_every_observation():
    from cotracker3_plugin.reconstruct.correspondences import split_tracks

    T, N, span = 30, 40, 6
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (T, N, 2)).astype(np.float32)
    usable = rng.random((T, N)) < 0.8
    usable[:, 0] = False
    usable[3, 0] = True  # a lone observation: no piece
    usable[:, 1:6] = True  # fully seen tracks: their pieces start at the boundaries
    tracks = Tracks(xy=xy, visible=usable.copy(), confidence=usable.astype(np.float32),
                    queries=np.zeros((N, 3), np.float32), frame_size=(100, 100), meta={"tracker": "klt"})
    pieces, used, parent = split_tracks(tracks, usable, span)
    assert used.shape == (T, pieces.num_points) and len(parent) == pieces.num_points
    assert 0 not in parent and used.sum(0).min() >= 2
    # Every observation of a piece is its parent's, at the same position, within span frames.
    t, p = np.nonzero(used)
    assert np.array_equal(pieces.xy[t, p], xy[t, parent[p]]) and usable[t, parent[p]].all()
    first, last = used.argmax(0), T - 1 - used[::-1].argmax(0)
    assert (last - first < span).all()
    assert np.array_equal(pieces.queries[:, 0], first) and np.array_equal(pieces.queries[:, 1:], xy[first, parent])
    # Observations in pieces of >= 2: all of the parents' but the lone ones; the boundaries differ by track.
    counts = np.zeros((T, N), int)
    np.add.at(counts, (t, parent[p]), 1)
    assert counts.max() == 1 and counts[:, 1:].sum() >= 0.9 * usable[:, 1:].sum()
    second_start = {int(np.sort(first[parent == n])[1]) for n in range(1, 6)}
    assert len(second_start) > 1 and all(0 < b <= 2 * span for b in second_start)  # (a 1-frame first piece is dropped)
